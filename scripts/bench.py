"""The benchmark (run by scripts/bench.sh, which installs what it needs).

Prints figures beside the baselines of the same run and writes them to
.stack/bench/result.json; asserts nothing. Everything runs on the local
stack: source :3307, destination :3308, second destination :3309 (the
native replica), Kafka :9092.

Figures (rows are sysbench's, 4 tables x 250,000 by default):
- full_sync_rows_per_s: the pipeline, from start until the destination has
  every row and CHECKSUM TABLE matches; beside dump_rows_per_s
  (mariadb-dump --single-transaction | mariadb) and myloader_rows_per_s
  (mydumper then myloader, 2 threads each), each into an empty database of
  the same destination server.
- cdc_catchup_events_per_s: the sink stopped while BENCH_CDC_TXNS sysbench
  write-only transactions run (the source connector running, so the backlog
  is in Kafka), then started: row events / seconds until the sink's applied
  positions, which commit with the rows, reach the end of every table topic
  (then CHECKSUM TABLE must match). Polling checksums instead would load
  both servers during the measurement. Beside native_catchup_events_per_s: a native replica
  (4 parallel threads, optimistic) stopped during the same load, then
  started, until MASTER_GTID_WAIT returns.
  The sink keeps source transactions whole (apply.consistency =
  "transaction", the default); cdc_catchup_row_events_per_s is the same
  measurement, at the end of the run, with apply.consistency = "row".
- source_catchup_events_per_s: the source connector stopped during such a
  load, then started, until its stored position (every change acknowledged
  by Kafka) reaches the source's GTID position.
- latency_p50_ms, latency_p99_ms: sysbench at a fixed rate for a while; a
  heartbeat row is updated at the source every 50 ms, and the destination
  polled every 2 ms: latency = when the destination first shows a beat
  minus when its UPDATE committed at the source, both read on this process's
  clock.
- source/sink_cpu_s_per_million_rows (full sync) and source/sink_peak_rss_mb
  (every process of the run).
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time

import pymysql
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

TABLES = int(os.environ.get("BENCH_TABLES", 4))
ROWS = int(os.environ.get("BENCH_ROWS", 250_000))
CDC_TXNS = int(os.environ.get("BENCH_CDC_TXNS", 50_000))
LAT_RATE = int(os.environ.get("BENCH_LATENCY_RATE", 500))
LAT_SECS = int(os.environ.get("BENCH_LATENCY_SECS", 60))
SOURCE = int(os.environ.get("STACK_SOURCE_PORT", 3307))
DEST = int(os.environ.get("STACK_DEST_PORT", 3308))
DEST2 = int(os.environ.get("STACK_DEST2_PORT", 3309))
KAFKA = f"127.0.0.1:{os.environ.get('STACK_KAFKA_PORT', 9092)}"
WORK = os.path.join(".stack", "bench")
os.makedirs(WORK, exist_ok=True)
# Each write-only transaction updates two rows, deletes one, inserts one.
EVENTS_PER_TXN = 4


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def conn(port, db=None):
    return pymysql.connect(host="127.0.0.1", port=port, user="root", password="",
                           database=db, autocommit=True)


def q(port, sql):
    with conn(port) as c, c.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def tables():
    return [f"sbtest.sbtest{t}" for t in range(1, TABLES + 1)]


def checksums(port):
    try:
        return [r[1] for r in q(port, "CHECKSUM TABLE " + ", ".join(tables()))]
    except pymysql.MySQLError:
        return None


def sysbench(*args, port=SOURCE):
    cmd = ["sysbench", "oltp_write_only", "--db-driver=mysql", "--mysql-host=127.0.0.1",
           f"--mysql-port={port}", "--mysql-user=root", "--mysql-db=sbtest",
           f"--tables={TABLES}", f"--table-size={ROWS}", *args]
    with open(os.path.join(WORK, "sysbench.log"), "a") as out:
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)


def wait(what, cond, timeout=3600, every=0.2, procs=()):
    start = time.time()
    while not cond():
        for p in procs:
            if p.poll() is not None:
                sys.exit(f"bench: {p.label} exited while waiting for {what}; see {p.log}")
        if time.time() - start > timeout:
            sys.exit(f"bench: timed out waiting for {what}")
        time.sleep(every)


def equal(port):
    want = checksums(SOURCE)
    return lambda: checksums(port) == want


class Connector:
    """A connector process, with its CPU and peak memory."""

    peak_rss = {}

    def __init__(self, binary, config):
        self.label = binary
        self.log = os.path.join(WORK, f"{binary}.log")
        self.log_start = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        self.proc = subprocess.Popen(
            [f"target/release/{binary}", "run", "--config", config],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT)

    def logged(self, text):
        """Whether this process has logged `text`."""
        with open(self.log, "rb") as f:
            f.seek(self.log_start)
            return text.encode() in f.read()

    def poll(self):
        return self.proc.poll()

    def cpu(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_peak_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        Connector.peak_rss[self.label] = max(Connector.peak_rss.get(self.label, 0.0),
                                             self.rss_peak_mb())
        self.proc.terminate()
        self.proc.wait(120)


def server_cpu():
    """CPU seconds used so far by the stack's servers and broker."""
    out = {}
    for name in ("source", "dest", "dest2", "kafka"):
        try:
            pid = open(os.path.join(".stack", f"{name}.pid")).read().strip()
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return out


def configs(prefix):
    src = open("examples/source.toml").read()
    src = src.replace('databases = ["shop"]', 'databases = ["sbtest"]')
    src = src.replace('topic_prefix = "shop"', f'topic_prefix = "{prefix}"')
    src = src.replace("127.0.0.1:3307", f"127.0.0.1:{SOURCE}").replace("127.0.0.1:9092", KAFKA)
    sink = open("examples/sink.toml").read()
    sink = sink.replace('topic_prefix = "shop"', f'topic_prefix = "{prefix}"')
    sink = sink.replace('group_id = "shop"', f'group_id = "{prefix}"')
    sink = sink.replace("127.0.0.1:3308", f"127.0.0.1:{DEST}").replace("127.0.0.1:9092", KAFKA)
    paths = (os.path.join(WORK, "source.toml"), os.path.join(WORK, "sink.toml"))
    for path, text in zip(paths, (src, sink)):
        with open(path, "w") as f:
            f.write(text)
    return paths


def stored_gtid(prefix):
    """The source connector's stored GTID position."""
    p = stored_position(prefix)
    return p and p["gtid"]


def stored_position(prefix):
    """The source connector's stored position (positions topic, as a
    read_committed consumer sees it)."""
    c = Consumer({"bootstrap.servers": KAFKA, "group.id": f"{prefix}-bench",
                  "enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 10})
    topic = f"{prefix}.positions"
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high <= low:
            return None
        c.assign([TopicPartition(topic, 0, low)])
        last = None
        while True:
            m = c.poll(5)
            if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
                break
            if not m.error() and m.key() == b"source" and m.value():
                last = json.loads(m.value())
        return last
    finally:
        c.close()


def drop_topics(prefix):
    """Deletes the run's topics: a run writes some gigabytes to Kafka."""
    admin = AdminClient({"bootstrap.servers": KAFKA})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{prefix}.")]
    for future in admin.delete_topics(names, operation_timeout=30).values() if names else ():
        future.result()


def table_topic_ends(prefix):
    """For every partition of the run's table topics, the offset after its
    last committed record (the source writes in Kafka transactions: the
    partition's end is a commit marker, which the sink never applies)."""
    c = Consumer({"bootstrap.servers": KAFKA, "group.id": f"{prefix}-bench",
                  "enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 10})
    try:
        ends = {}
        topics = c.list_topics(timeout=10).topics
        for name, meta in topics.items():
            if not name.startswith(f"{prefix}.sbtest."):
                continue
            for p in meta.partitions:
                low, high = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                back = 64
                while high > low:
                    c.assign([TopicPartition(name, p, max(low, high - back))])
                    last = None
                    while True:
                        m = c.poll(5)
                        if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
                            break
                        if not m.error():
                            last = m.offset()
                    if last is not None or high - back <= low:
                        ends[(name, p)] = last + 1 if last is not None else low
                        break
                    back *= 4
        return ends
    finally:
        c.close()


def sink_reached(prefix, ends):
    """Whether the sink has applied every record up to `ends` (its applied
    positions commit with the rows)."""
    def check():
        rows = q(DEST, "SELECT topic, kafka_partition, next_offset FROM tributary.applied "
                       f"WHERE topic LIKE '{prefix}.sbtest.%'")
        applied = {(t, p): n for t, p, n in rows}
        return all(applied.get(k, 0) >= end for k, end in ends.items())
    return check


def gtid_reached(position, target):
    """Whether a GTID position holds every domain's sequence of target."""
    if not position:
        return False
    have = {g.split("-")[0]: int(g.split("-")[2]) for g in position.split(",") if g}
    return all(have.get(g.split("-")[0], -1) >= int(g.split("-")[2])
               for g in target.split(",") if g)


def full_syncs(results):
    total = TABLES * ROWS
    for port in (SOURCE, DEST, DEST2):
        q(port, "DROP DATABASE IF EXISTS sbtest")
    q(SOURCE, "CREATE DATABASE sbtest")
    log(f"preparing sbtest: {TABLES} tables x {ROWS} rows")
    sysbench("--threads=2", "prepare")

    log("mariadb-dump | mariadb")
    t0 = time.time()
    servers = server_cpu()
    dump = subprocess.Popen(["mariadb-dump", "--no-defaults", "-h127.0.0.1", f"-P{SOURCE}", "-uroot",
                             "--single-transaction", "--databases", "sbtest"], stdout=subprocess.PIPE)
    subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{DEST}", "-uroot"],
                   stdin=dump.stdout, check=True)
    dump.wait()
    results["dump_seconds"] = time.time() - t0
    results["dump_dest_server_cpu_s"] = server_cpu()["dest"] - servers["dest"]
    assert checksums(DEST) == checksums(SOURCE), "the dump differs"
    q(DEST, "DROP DATABASE sbtest")

    log("mydumper then myloader, 2 threads each")
    out = os.path.join(WORK, "mydumper")
    subprocess.run(["rm", "-rf", out], check=True)
    t0 = time.time()
    servers = server_cpu()
    subprocess.run(["mydumper", "-h", "127.0.0.1", "-P", str(SOURCE), "-u", "root", "-B", "sbtest",
                    "-t", "2", "-o", out], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["myloader", "-h", "127.0.0.1", "-P", str(DEST), "-u", "root", "-d", out,
                    "-t", "2", "-o"], check=True, stdout=subprocess.DEVNULL)
    results["myloader_seconds"] = time.time() - t0
    results["myloader_dest_server_cpu_s"] = server_cpu()["dest"] - servers["dest"]
    assert checksums(DEST) == checksums(SOURCE), "myloader's copy differs"
    q(DEST, "DROP DATABASE sbtest")
    subprocess.run(["rm", "-rf", out], check=True)

    log("pipeline full synchronization")
    prefix = f"bench-{int(time.time())}"
    source_toml, sink_toml = configs(prefix)
    t0 = time.time()
    servers = server_cpu()
    sink = Connector("sink-connector", sink_toml)
    source = Connector("source-connector", source_toml)
    # Watched at little cost to the servers: the source's log, then the
    # sink's applied offsets; one CHECKSUM TABLE confirms (and is timed).
    wait("the snapshot", lambda: source.logged("snapshot finished"), every=0.05,
         procs=(source, sink))
    # The position that ends the snapshot is committed with its last rows.
    wait("the snapshot's end committed",
         lambda: (stored_position(prefix) or {"snapshot": 1}).get("snapshot") is None,
         every=0.05, procs=(source, sink))
    wait("the full synchronization", sink_reached(prefix, table_topic_ends(prefix)),
         every=0.05, procs=(source, sink))
    wait("the full synchronization", equal(DEST), every=0.05, procs=(source, sink))
    results["full_sync_seconds"] = time.time() - t0
    results["full_sync_cpu_s"] = {
        "source-connector": source.cpu(),
        "sink-connector": sink.cpu(),
        **{f"{k} server": v - servers.get(k, 0.0) for k, v in server_cpu().items()},
    }
    results["source_cpu_s_per_million_rows"] = source.cpu() / total * 1e6
    results["sink_cpu_s_per_million_rows"] = sink.cpu() / total * 1e6
    for k in ("dump", "myloader", "full_sync"):
        results[f"{k}_rows_per_s"] = total / results[f"{k}_seconds"]
    return prefix, source, sink


def start_native_replica():
    """The second destination as a native replica (4 parallel threads,
    optimistic), from a dump of the source with its GTID position."""
    q(DEST2, "STOP SLAVE")
    q(DEST2, "RESET SLAVE ALL")
    q(DEST2, "DROP DATABASE IF EXISTS sbtest")
    gtid = q(SOURCE, "SELECT @@gtid_binlog_pos")[0][0]
    dump = subprocess.Popen(["mariadb-dump", "--no-defaults", "-h127.0.0.1", f"-P{SOURCE}", "-uroot",
                             "--single-transaction", "--databases", "sbtest"], stdout=subprocess.PIPE)
    subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{DEST2}", "-uroot"],
                   stdin=dump.stdout, check=True)
    dump.wait()
    q(DEST2, f"SET GLOBAL gtid_slave_pos = '{gtid}'")
    q(DEST2, "SET GLOBAL slave_parallel_threads = 4")
    q(DEST2, "SET GLOBAL slave_parallel_mode = 'optimistic'")
    q(DEST2, f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={SOURCE}, MASTER_USER='root', "
             "MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos")
    q(DEST2, "START SLAVE")
    replica_wait()


def replica_wait():
    target = q(SOURCE, "SELECT @@gtid_binlog_pos")[0][0]
    q(DEST2, f"SELECT MASTER_GTID_WAIT('{target}', 3600)")


def catchups(results, prefix, source, sink):
    source_toml, sink_toml = configs(prefix)
    events = CDC_TXNS * EVENTS_PER_TXN
    start_native_replica()

    log(f"catch-up: {CDC_TXNS} write-only transactions with the sink and the replica stopped")
    q(DEST2, "STOP SLAVE")
    sink, results["cdc_catchup_seconds"] = sink_catchup(prefix, source, sink, sink_toml)
    t0 = time.time()
    q(DEST2, "START SLAVE")
    replica_wait()
    results["native_catchup_seconds"] = time.time() - t0
    assert checksums(DEST2) == checksums(SOURCE), "the native replica differs"

    log(f"source catch-up: {CDC_TXNS} transactions with the source connector stopped")
    source.stop()
    sysbench("--threads=4", f"--events={CDC_TXNS}", "--time=0", "--rate=0", "run")
    target = q(SOURCE, "SELECT @@gtid_binlog_pos")[0][0]
    t0 = time.time()
    source = Connector("source-connector", source_toml)
    wait("the source's catch-up", lambda: gtid_reached(stored_gtid(prefix), target), every=0.05,
         procs=(source, sink))
    results["source_catchup_seconds"] = time.time() - t0
    wait("the destination after the source's catch-up", equal(DEST), procs=(source, sink))
    replica_wait()
    for k in ("cdc", "native", "source"):
        results[f"{k}_catchup_events_per_s"] = events / results[f"{k}_catchup_seconds"]
    return source, sink


def latency(results, source, sink):
    log(f"latency: sysbench at {LAT_RATE} transactions/s for {LAT_SECS} s, a heartbeat every 50 ms")
    q(SOURCE, "CREATE TABLE IF NOT EXISTS sbtest.heartbeat (id INT PRIMARY KEY, beat BIGINT NOT NULL)")
    q(SOURCE, "REPLACE INTO sbtest.heartbeat VALUES (1, 0)")
    wait("the heartbeat table", lambda: q(DEST, "SELECT COUNT(*) FROM information_schema.TABLES "
                                                "WHERE TABLE_SCHEMA = 'sbtest' AND TABLE_NAME = 'heartbeat'")[0][0] == 1,
         procs=(source, sink))
    committed = {}
    samples = []
    done = threading.Event()

    def beat():
        c = conn(SOURCE)
        n = 0
        with c.cursor() as cur:
            while not done.is_set():
                n += 1
                cur.execute("UPDATE sbtest.heartbeat SET beat = %s WHERE id = 1", (n,))
                committed[n] = time.monotonic()
                time.sleep(0.05)

    def watch():
        c = conn(DEST)
        seen = 0
        with c.cursor() as cur:
            while not done.is_set():
                cur.execute("SELECT beat FROM sbtest.heartbeat WHERE id = 1")
                row = cur.fetchone()
                now = time.monotonic()
                if row and row[0] > seen:
                    seen = row[0]
                    if seen in committed:
                        samples.append((now - committed[seen]) * 1000)
                time.sleep(0.002)

    threads = [threading.Thread(target=beat), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    sysbench("--threads=4", f"--rate={LAT_RATE}", f"--time={LAT_SECS}", "run")
    done.set()
    for t in threads:
        t.join()
    samples.sort()
    results["latency_samples"] = len(samples)
    results["latency_p50_ms"] = statistics.median(samples) if samples else None
    results["latency_p99_ms"] = samples[int(len(samples) * 0.99) - 1] if samples else None


def row_catchup(results, prefix, source, sink):
    """The sink's catch-up again, records applied without transaction
    boundaries (last: a sink that ran in row mode cannot go back to
    transaction mode on the same destination)."""
    _, sink_toml = configs(prefix)
    row_toml = sink_toml.replace(".toml", "-row.toml")
    with open(row_toml, "w") as f:
        f.write(open(sink_toml).read() + '\n[apply]\nconsistency = "row"\n')
    log(f"catch-up in row mode: {CDC_TXNS} write-only transactions with the sink stopped")
    sink, seconds = sink_catchup(prefix, source, sink, row_toml)
    results["cdc_catchup_row_events_per_s"] = CDC_TXNS * EVENTS_PER_TXN / seconds
    return sink


def sink_catchup(prefix, source, sink, sink_toml):
    """With the sink stopped, CDC_TXNS write-only transactions into Kafka;
    then a sink with `sink_toml`, timed until it has applied them all.
    Returns that sink and the seconds."""
    sink.stop()
    sysbench("--threads=4", f"--events={CDC_TXNS}", "--time=0", "--rate=0", "run")
    target = q(SOURCE, "SELECT @@gtid_binlog_pos")[0][0]
    wait("the backlog in Kafka", lambda: gtid_reached(stored_gtid(prefix), target), every=0.5,
         procs=(source,))
    ends = table_topic_ends(prefix)
    t0 = time.time()
    sink = Connector("sink-connector", sink_toml)
    wait("the sink's catch-up", sink_reached(prefix, ends), every=0.02, procs=(source, sink))
    seconds = time.time() - t0
    assert checksums(DEST) == checksums(SOURCE), "the destination differs after the catch-up"
    return sink, seconds


def main():
    results = {"tables": TABLES, "rows_per_table": ROWS, "cdc_transactions": CDC_TXNS,
               "cores": os.cpu_count()}
    prefix = None
    try:
        prefix, source, sink = full_syncs(results)
        source, sink = catchups(results, prefix, source, sink)
        latency(results, source, sink)
        sink = row_catchup(results, prefix, source, sink)
        source.stop()
        sink.stop()
    finally:
        # The second destination is a test server again, whatever happened.
        q(DEST2, "STOP SLAVE")
        q(DEST2, "RESET SLAVE ALL")
        # What the loads leave behind: gigabytes of topics and of the
        # destination's binlog (nothing reads it).
        if prefix:
            drop_topics(prefix)
        q(DEST, "PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY")
    results["source_peak_rss_mb"] = Connector.peak_rss.get("source-connector")
    results["sink_peak_rss_mb"] = Connector.peak_rss.get("sink-connector")
    with open(os.path.join(WORK, "result.json"), "w") as f:
        json.dump(results, f, indent=2)
    r = results
    rows = [
        ("full sync, rows/s", r["full_sync_rows_per_s"], r["dump_rows_per_s"], "mariadb-dump | mariadb"),
        ("", None, r["myloader_rows_per_s"], "mydumper + myloader, 2 threads each"),
        ("sink catch-up, events/s", r["cdc_catchup_events_per_s"], r["native_catchup_events_per_s"],
         "native replica, 4 threads, optimistic"),
        ("  row mode", r["cdc_catchup_row_events_per_s"], r["native_catchup_events_per_s"],
         "the same native figure"),
        ("source catch-up, events/s", r["source_catchup_events_per_s"], None, ""),
    ]
    print(f"\nBenchmark ({TABLES} tables x {ROWS} rows; {CDC_TXNS} write-only transactions = "
          f"{CDC_TXNS * EVENTS_PER_TXN} row events; {r['cores']} cores)")
    print(f"{'':30} {'this pipeline':>14} {'baseline':>12}  {'ratio':>6}")
    for label, ours, base, what in rows:
        value = ours if ours is not None else rows[0][1]
        ratio = f"{value / base:.2f}x" if base else ""
        print(f"{label:30} {'' if ours is None else f'{ours:,.0f}':>14} "
              f"{'' if base is None else f'{base:,.0f}':>12}  {ratio:>6}  {what}")
    print(f"{'latency p50 / p99, ms':30} {r['latency_p50_ms']:>8.0f} / {r['latency_p99_ms']:<4.0f}"
          f"{'':15}at {LAT_RATE} txn/s for {LAT_SECS} s, {r['latency_samples']} heartbeats")
    print(f"{'CPU s per million rows':30} source {r['source_cpu_s_per_million_rows']:.1f}, "
          f"sink {r['sink_cpu_s_per_million_rows']:.1f} (full sync)")
    print(f"{'CPU s during the full sync':30} " + ", ".join(
        f"{k} {v:.1f}" for k, v in r["full_sync_cpu_s"].items()))
    print(f"{'dest server CPU s, baselines':30} mariadb-dump | mariadb {r['dump_dest_server_cpu_s']:.1f}, "
          f"myloader {r['myloader_dest_server_cpu_s']:.1f}")
    print(f"{'peak RSS, MB':30} source {r['source_peak_rss_mb']:.0f}, sink {r['sink_peak_rss_mb']:.0f}")
    print(f"written to {os.path.join(WORK, 'result.json')}")


if __name__ == "__main__":
    main()
