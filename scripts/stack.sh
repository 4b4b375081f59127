#!/usr/bin/env bash
# The local stack: a source MariaDB, two destination MariaDB servers and an
# Apache Kafka broker, all on loopback, with their data under $STACK_DIR.
# Installs what is missing on a fresh Debian machine (MariaDB from Debian's
# packages; Kafka with Maven from Maven Central, once per machine).
#
#   scripts/stack.sh up       start what is not running (idempotent)
#   scripts/stack.sh down     stop what `up` started, keep the data
#   scripts/stack.sh reset    stop and delete all data
#   scripts/stack.sh status   what runs where
#   scripts/stack.sh mariadb NAME PORT SERVER_ID [secure]
#                             one more MariaDB, configured like the source
#                             (`secure`: TLS connections only,
#                             require_secure_transport=ON)
#   scripts/stack.sh stop NAME  stop one server
#
# Environment (defaults in brackets):
#   STACK_DIR         [<repo>/.stack]  data, logs and pid files
#   STACK_SOURCE_PORT [3307]           source MariaDB (server_id 1)
#   STACK_DEST_PORT   [3308]           destination MariaDB (server_id 2)
#   STACK_DEST2_PORT  [3309]           second destination (server_id 3, binlog
#                                      off), for fan-out tests
#   STACK_KAFKA_PORT  [9092]           Kafka broker
#   STACK_KAFKA_CONTROLLER_PORT [broker port + 1]
#                                      its KRaft controller
#   STACK_KAFKA_SSL_PORT [broker port + 2]
#                                      its TLS listener
#   STACK_KAFKA_HEAP  [1g]             the broker's Java heap
#   STACK_REGISTRY_PORT [18081]        Apicurio Registry (its management
#                                      port the next one); 0: not started
#
# TLS: every server takes TLS connections with a certificate for 127.0.0.1
# and localhost, signed by a CA the script makes once: $STACK_DIR/tls/
# ca.pem (trust this), server.pem/.key, client.pem/.key (a client
# certificate signed by the same CA) and other-ca.pem (a CA that signed
# nothing here, to see a wrong CA refused).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${STACK_DIR:-$repo/.stack}
SOURCE_PORT=${STACK_SOURCE_PORT:-3307}
DEST_PORT=${STACK_DEST_PORT:-3308}
DEST2_PORT=${STACK_DEST2_PORT:-3309}
KAFKA_PORT=${STACK_KAFKA_PORT:-9092}
CONTROLLER_PORT=${STACK_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
SSL_PORT=${STACK_KAFKA_SSL_PORT:-$((KAFKA_PORT + 2))}
TLS_DIR=$STACK_DIR/tls
# Apache Kafka, as scripts/kafka/pom.xml names it, fetched once into a
# directory outside the checkout so that clones share it.
KAFKA_VERSION=$(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$repo/scripts/kafka/pom.xml")
KAFKA_HOME=${KAFKA_HOME:-$HOME/.local/share/tributary/kafka-$KAFKA_VERSION}

# Apicurio Registry, the schema registry (its Confluent-compatible API):
# the project's own distribution from Maven Central, fetched once. It needs
# Java 21 or newer.
REGISTRY_PORT=${STACK_REGISTRY_PORT:-18081}
REGISTRY_VERSION=3.3.3
REGISTRY_HOME=${REGISTRY_HOME:-$HOME/.local/share/tributary/apicurio-registry-$REGISTRY_VERSION}

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    log "installing Debian packages: $*"
    as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >/dev/null
}

mariadbd_bin() { command -v mariadbd || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; } || true; }

kafka_installed() { [ -f "$KAFKA_HOME/libs/.complete" ]; }

install_missing() {
    local pkgs=()
    [ -n "$(mariadbd_bin)" ] || pkgs+=(mariadb-server)
    command -v mariadb >/dev/null || pkgs+=(mariadb-client)
    command -v mariadb-install-db >/dev/null || [ -x /usr/bin/mariadb-install-db ] || pkgs+=(mariadb-server)
    if ! kafka_installed; then
        command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
        command -v mvn >/dev/null || pkgs+=(maven)
    fi
    # The certificates; and OpenSSL's headers, which building the
    # connectors needs (Kafka over TLS).
    { [ -f "$REGISTRY_HOME/.complete" ] || [ "$REGISTRY_PORT" = 0 ]; } || command -v mvn >/dev/null || pkgs+=(maven)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v pkg-config >/dev/null || pkgs+=(pkg-config)
    pkg-config --exists openssl 2>/dev/null || pkgs+=(libssl-dev)
    [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
    if ! kafka_installed; then
        log "fetching Apache Kafka $KAFKA_VERSION with Maven into $KAFKA_HOME"
        mkdir -p "$KAFKA_HOME"
        cp "$repo/scripts/kafka/pom.xml" "$KAFKA_HOME/pom.xml"
        rm -rf "$KAFKA_HOME/libs"
        mvn -q -B -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies \
            -DoutputDirectory="$KAFKA_HOME/libs" -DincludeScope=runtime >"$STACK_DIR/kafka-install.log" 2>&1 \
            || die "fetching Apache Kafka with Maven failed; see $STACK_DIR/kafka-install.log"
        touch "$KAFKA_HOME/libs/.complete"
    fi
}

# registry_java: a Java of version 21 or newer, if the machine has one.
registry_java() {
    local j v
    for j in "${REGISTRY_JAVA:-}" "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
        [ -n "$j" ] && [ -x "$j" ] || continue
        v=$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
        [ "${v%%.*}" -ge 21 ] 2>/dev/null && { echo "$j"; return; }
    done
}

registry_up() {
    local pidf=$STACK_DIR/registry.pid java
    [ "$REGISTRY_PORT" = 0 ] && return
    if pid_alive "$pidf"; then log "registry already running (pid $(cat "$pidf"), port $REGISTRY_PORT)"; return; fi
    java=$(registry_java)
    if [ -z "$java" ]; then
        log "warning: no Java 21 or newer here (set REGISTRY_JAVA); the schema registry is not started"
        return
    fi
    if [ ! -f "$REGISTRY_HOME/.complete" ]; then
        log "fetching Apicurio Registry $REGISTRY_VERSION with Maven into $REGISTRY_HOME"
        rm -rf "$REGISTRY_HOME"
        mkdir -p "$REGISTRY_HOME"
        mvn -q -B dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all" \
            -DoutputDirectory="$REGISTRY_HOME" >"$STACK_DIR/registry-install.log" 2>&1 \
            && tar -xzf "$REGISTRY_HOME/apicurio-registry-app-$REGISTRY_VERSION-all.tar.gz" -C "$REGISTRY_HOME" \
            && rm -f "$REGISTRY_HOME/apicurio-registry-app-$REGISTRY_VERSION-all.tar.gz" \
            || die "fetching Apicurio Registry with Maven failed; see $STACK_DIR/registry-install.log"
        touch "$REGISTRY_HOME/.complete"
    fi
    local jar
    jar=$(find "$REGISTRY_HOME" -name quarkus-run.jar | head -n 1)
    [ -n "$jar" ] || die "no quarkus-run.jar under $REGISTRY_HOME; remove it and run again"
    port_busy "$REGISTRY_PORT" && die "port $REGISTRY_PORT is taken by another process; set STACK_REGISTRY_PORT to a free port"
    # Schemas in memory (a test registry: they go with it); both ports on
    # loopback only.
    setsid "$java" -Xmx512m \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
        -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port=$((REGISTRY_PORT + 1)) \
        -jar "$jar" </dev/null >"$STACK_DIR/registry.log" 2>&1 &
    echo $! >"$pidf"
    local i
    for ((i = 0; i < 1200; i++)); do
        curl -sf -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects" && break
        pid_alive "$pidf" || die "the schema registry exited at start; see $STACK_DIR/registry.log"
        sleep 0.1
    done
    [ "$i" -lt 1200 ] || die "the schema registry did not start within 120s; see $STACK_DIR/registry.log"
    log "Apicurio Registry $REGISTRY_VERSION running on http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7 (pid $(cat "$pidf"))"
}

# certs_up: the stack's CA and certificates, made once.
certs_up() {
    [ -f "$TLS_DIR/.complete" ] && return
    log "making TLS certificates in $TLS_DIR"
    rm -rf "$TLS_DIR"
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR"
        set -e
        ca() { # NAME SUBJECT
            openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "$2" \
                -keyout "$1.key" -out "$1.pem" -addext basicConstraints=critical,CA:TRUE
        }
        signed() { # NAME SUBJECT EXTENSIONS
            openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key"
            openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
            printf '%s\n' "$3" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
                -days 3650 -sha256 -extfile "$1.ext" -out "$1.pem"
            rm -f "$1.csr" "$1.ext"
        }
        ca ca "/CN=tributary stack CA"
        ca other-ca "/CN=another CA"
        signed server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
        signed client "/CN=tributary-client" "extendedKeyUsage=clientAuth"
        # Kafka's PEM key store: the key, then the certificate.
        cat server.key server.pem >kafka-keystore.pem
        chmod 644 ./*.key
    ) >"$STACK_DIR/tls.log" 2>&1 || die "making the TLS certificates failed; see $STACK_DIR/tls.log"
    touch "$TLS_DIR/.complete"
}

kafka_java() { java -cp "$KAFKA_HOME/libs/*" "$@"; }

# pid_alive FILE: the pid in FILE runs and is the process we started.
pid_alive() {
    local f=$1 pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# mariadb_up NAME PORT SERVER_ID [binlog|nobinlog] [secure]
mariadb_up() {
    local name=$1 port=$2 server_id=$3 binlog=${4:-binlog} secure=${5:-}
    local dir=$STACK_DIR/$name
    local pidf=$STACK_DIR/$name.pid
    if pid_alive "$pidf"; then log "$name already running (pid $(cat "$pidf"), port $port)"; return; fi
    port_busy "$port" && die "port $port is taken by another process; set STACK_${name^^}_PORT to a free port"
    local user_opt=()
    [ "$(id -u)" = 0 ] && user_opt=(--user=root)
    if [ ! -d "$dir/mysql" ]; then
        log "initializing $name data directory $dir"
        # mariadbd has been seen to crash (signal 11) once in a while while
        # it bootstraps: the data directory is made again, up to three times.
        local try
        for try in 1 2 3; do
            [ "$try" = 1 ] || rm -rf "$dir"
            mkdir -p "$dir"
            mariadb-install-db --no-defaults --datadir="$dir" "${user_opt[@]}" \
                --auth-root-authentication-method=normal --skip-test-db >"$STACK_DIR/$name-install.log" 2>&1 \
                && break
            [ "$try" -lt 3 ] || die "mariadb-install-db failed for $name three times; see $STACK_DIR/$name-install.log"
            log "mariadb-install-db failed for $name (attempt $try; see $STACK_DIR/$name-install.log); trying again"
        done
        touch "$dir/.needs-grants"
    fi
    # The settings this tool needs: row-based binlog with full images and
    # full metadata; GTIDs; a unique server_id. The destination keeps its
    # own binlog too, so that it can be the source of a cascade.
    local binlog_opts=(--log-bin=mariadb-bin --log-slave-updates)
    [ "$binlog" = binlog ] || binlog_opts=(--skip-log-bin)
    local tls_opts=(--ssl-ca="$TLS_DIR/ca.pem" --ssl-cert="$TLS_DIR/server.pem" --ssl-key="$TLS_DIR/server.key")
    [ "$secure" = secure ] && tls_opts+=(--require-secure-transport=ON)
    # A server that exits at start is started again, up to three times, as
    # mariadb-install-db above: mariadbd has been seen to die at its first
    # start once in a while. What its log says is kept in the error.
    local try i started=
    for try in 1 2 3; do
        local seen=0
        [ -f "$STACK_DIR/$name.log" ] && seen=$(wc -l <"$STACK_DIR/$name.log")
        setsid "$(mariadbd_bin)" --no-defaults "${user_opt[@]}" \
            --datadir="$dir" --socket="$dir/mariadbd.sock" --pid-file="$dir/mariadbd.pid" \
            --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
            --log-error="$STACK_DIR/$name.log" \
            --server-id="$server_id" "${binlog_opts[@]}" "${tls_opts[@]}" \
            --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
            --binlog-expire-logs-seconds=604800 \
            --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
            --max-allowed-packet=1G --innodb-buffer-pool-size=512M \
            --innodb-log-file-size=256M --innodb-flush-log-at-trx-commit=2 \
            --max-connections=500 \
            </dev/null >/dev/null 2>&1 &
        echo $! >"$pidf"
        for ((i = 0; i < 600; i++)); do
            [ -S "$dir/mariadbd.sock" ] && mariadb --no-defaults --socket="$dir/mariadbd.sock" -uroot -e 'select 1' >/dev/null 2>&1 && { started=1; break; }
            pid_alive "$pidf" || break
            sleep 0.1
        done
        [ -n "$started" ] && break
        [ "$i" -lt 600 ] || die "$name did not answer within 60s; see $STACK_DIR/$name.log"
        local why
        why=$(tail -n +$((seen + 1)) "$STACK_DIR/$name.log" | grep -E '\[ERROR\]|signal [0-9]' | tail -n 3 | sed -E 's/^[0-9-]+ +[0-9:]+ [0-9]+ //' | tr '\n' ' ' || true)
        [ "$try" -lt 3 ] || die "$name exited at start three times (last: ${why:-no error logged}); see $STACK_DIR/$name.log"
        log "$name exited at start (attempt $try: ${why:-no error logged}); starting it again"
        sleep 1
    done
    if [ -f "$dir/.needs-grants" ]; then
        # root over TCP from loopback, with an empty password (a test stack).
        mariadb --no-defaults --socket="$dir/mariadbd.sock" -uroot -e "
            CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
            FLUSH PRIVILEGES;" || die "could not create the root@127.0.0.1 account on $name"
        rm -f "$dir/.needs-grants"
    fi
    log "$name running on 127.0.0.1:$port (server_id $server_id, pid $(cat "$pidf")${secure:+, TLS only})"
}

kafka_up() {
    local pidf=$STACK_DIR/kafka.pid dir=$STACK_DIR/kafka
    if pid_alive "$pidf"; then log "kafka already running (pid $(cat "$pidf"), port $KAFKA_PORT)"; return; fi
    port_busy "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; set STACK_KAFKA_PORT to a free port"
    port_busy "$SSL_PORT" && die "port $SSL_PORT is taken by another process; set STACK_KAFKA_SSL_PORT to a free port"
    port_busy "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT is taken by another process; set STACK_KAFKA_CONTROLLER_PORT to a free port"
    mkdir -p "$dir"
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@LOG_DIR@|$dir/data|g" \
        -e "s|@SSL_PORT@|$SSL_PORT|g" -e "s|@TLS_DIR@|$TLS_DIR|g" \
        "$repo/scripts/kafka/server.properties" >"$dir/server.properties"
    if [ ! -f "$dir/data/meta.properties" ]; then
        # KRaft storage, formatted once: topics survive a restart.
        local id
        id=$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
        kafka_java kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" --standalone \
            >"$STACK_DIR/kafka-format.log" 2>&1 || die "formatting Kafka's storage failed; see $STACK_DIR/kafka-format.log"
    fi
    local started_at
    started_at=$( (wc -l <"$STACK_DIR/kafka.log") 2>/dev/null || echo 0)
    setsid java -Xms256m -Xmx"${STACK_KAFKA_HEAP:-1g}" -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$repo/scripts/kafka/log4j2.properties" \
        -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$dir/server.properties" \
        </dev/null >>"$STACK_DIR/kafka.log" 2>&1 &
    echo $! >"$pidf"
    local i
    for ((i = 0; i < 1200; i++)); do
        tail -n +"$((started_at + 1))" "$STACK_DIR/kafka.log" | grep -q "Kafka Server started" && break
        pid_alive "$pidf" || die "kafka exited at start; see $STACK_DIR/kafka.log"
        sleep 0.1
    done
    [ "$i" -lt 1200 ] || die "kafka did not start within 120s; see $STACK_DIR/kafka.log"
    log "kafka $KAFKA_VERSION running on 127.0.0.1:$KAFKA_PORT, TLS on $SSL_PORT (pid $(cat "$pidf"))"
}

stop_one() { # NAME
    local name=$1 pidf=$STACK_DIR/$1.pid pid i
    if ! pid_alive "$pidf"; then rm -f "$pidf"; log "$name not running"; return; fi
    pid=$(cat "$pidf")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "$name did not stop in 60s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
    rm -f "$pidf"
    log "$name stopped"
}

status_one() { # NAME PORT
    local name=$1 port=$2 pidf=$STACK_DIR/$1.pid
    if pid_alive "$pidf"; then
        printf '%-8s running  127.0.0.1:%-5s pid %s\n' "$name" "$port" "$(cat "$pidf")"
    else
        printf '%-8s stopped  127.0.0.1:%s\n' "$name" "$port"
    fi
}

cmd=${1:-}
case "$cmd" in
up)
    mkdir -p "$STACK_DIR"
    install_missing
    certs_up
    mariadb_up source "$SOURCE_PORT" 1
    mariadb_up dest "$DEST_PORT" 2
    mariadb_up dest2 "$DEST2_PORT" 3 nobinlog
    kafka_up
    registry_up
    ;;
down)
    [ "$REGISTRY_PORT" = 0 ] || stop_one registry
    stop_one kafka
    stop_one dest2
    stop_one dest
    stop_one source
    ;;
reset)
    "$0" down
    rm -rf "$STACK_DIR"
    log "removed $STACK_DIR"
    ;;
mariadb)
    # One more MariaDB server on its own: stack.sh mariadb NAME PORT SERVER_ID
    # (tests that change a server's global settings use one of their own).
    [ $# -eq 4 ] || { [ $# -eq 5 ] && [ "$5" = secure ]; } || die "usage: $0 mariadb NAME PORT SERVER_ID [secure]"
    mkdir -p "$STACK_DIR"
    install_missing
    certs_up
    mariadb_up "$2" "$3" "$4" binlog "${5:-}"
    ;;
stop)
    [ $# -eq 2 ] || die "usage: $0 stop NAME"
    stop_one "$2"
    ;;
status)
    status_one source "$SOURCE_PORT"
    status_one dest "$DEST_PORT"
    status_one dest2 "$DEST2_PORT"
    status_one kafka "$KAFKA_PORT"
    [ "$REGISTRY_PORT" = 0 ] || status_one registry "$REGISTRY_PORT"
    ;;
*)
    echo "usage: $0 up|down|reset|status|mariadb NAME PORT SERVER_ID [secure]|stop NAME" >&2
    exit 2
    ;;
esac
