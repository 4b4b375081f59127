//! `source-connector check`: whether the source server, the account and
//! the broker are ready, item by item (see `change_stream::check`). `run`
//! runs the same check first and refuses to start on a failed item.

use change_stream::check::{grantee, parse_version, Grants, Report, Status};
use change_stream::table::{TableId, TableSchema};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::config::Config;
use crate::error::describe_mysql;

/// Binlog retention needed when a full synchronization is still to run,
/// and when only the stream is (seconds).
const RETENTION_FULL: u64 = 7 * 86_400;
const RETENTION_INCREMENTAL: u64 = 86_400;

/// `kafka.transactions`: whether the broker takes Kafka transactions as
/// `kafka.exactly_once` needs, tried with a transactional id of the check's
/// own (the connector's would fence off a running connector).
async fn transactions(r: &mut Report, client_config: &rdkafka::ClientConfig, config: &Config) {
    use rdkafka::producer::{BaseProducer, Producer};
    let mut pc = client_config.clone();
    pc.set(
        "transactional.id",
        format!(
            "{}-check",
            crate::produce::transactional_id(&config.kafka.topic_prefix)
        ),
    );
    for (k, v) in &config.kafka.properties {
        pc.set(k, v);
    }
    let outcome = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = pc.create()?;
        producer.init_transactions(std::time::Duration::from_secs(15))
    })
    .await
    .expect("blocking task");
    let required = "the broker takes Kafka transactions (kafka.exactly_once)";
    match outcome {
        Ok(()) => r.pass("kafka.transactions", "transactions start", required),
        Err(e) => r.push(
            "kafka.transactions",
            Status::Fail,
            format!(
                "cannot start a Kafka transaction: {}",
                change_stream::kafka::describe(&e)
            ),
            required,
            "let the broker keep its transaction log (transaction.state.log.replication.factor and min.isr at most its number of brokers), or set kafka.exactly_once = false",
        ),
    }
}

/// Every item of the source side's check.
pub async fn report(config: &Config) -> Report {
    let mut r = Report::default();
    let url_fix = "check [source] url (host, port, user, password) and that the server runs";

    // The broker first: whether a full synchronization is still to run
    // depends on the stored position.
    let client_config = change_stream::kafka::client_config(
        &config.kafka.bootstrap_servers,
        &config.kafka.properties,
    );
    let mut full_sync_pending = true;
    if r.broker(&client_config, &config.kafka.bootstrap_servers)
        .await
    {
        let topic = change_stream::topics::positions_topic(&config.kafka.topic_prefix);
        let cc = client_config.clone();
        if let Ok(Ok(Some(p))) =
            tokio::task::spawn_blocking(move || crate::checkpoint::load(&cc, &topic)).await
        {
            full_sync_pending = p.snapshot.is_some();
        }
        if config.kafka.exactly_once {
            transactions(&mut r, &client_config, config).await;
        }
        if let Some(url) = &config.kafka.schema_registry_url {
            r.registry(url).await;
        }
    }

    let opts = match crate::source_opts(config) {
        Ok(o) => o,
        Err(e) => {
            r.push(
                "source.connect",
                Status::Fail,
                e.to_string(),
                "a valid URL",
                url_fix,
            );
            return r;
        }
    };
    let mut conn = match crate::connect(&opts, config.source.connect_timeout_secs).await {
        Ok(c) => c,
        Err(e) => {
            r.push(
                "source.connect",
                Status::Fail,
                e.to_string(),
                "a connection to the source",
                url_fix,
            );
            return r;
        }
    };
    r.pass(
        "source.connect",
        format!("connected to {}:{}", opts.ip_or_hostname(), opts.tcp_port()),
        "a connection to the source",
    );
    if let Err(e) = check_server(&mut conn, config, full_sync_pending, &mut r).await {
        r.push(
            "source.queries",
            Status::Fail,
            format!("a query failed: {}", describe_mysql(&e)),
            "the account can read server variables and information_schema",
            "grant the privileges listed under source.privileges",
        );
    }
    let _ = conn.disconnect().await;
    r.acknowledge(&config.check.acknowledge);
    r
}

async fn check_server(
    conn: &mut Conn,
    config: &Config,
    full_sync_pending: bool,
    r: &mut Report,
) -> Result<(), mysql_async::Error> {
    // What is selected (checked in detail below).
    let selection = match config.selection() {
        Ok(s) => s,
        Err(e) => {
            r.push(
                "source.selection",
                Status::Fail,
                e.to_string(),
                "a valid selection",
                "fix [source] databases / tables / columns",
            );
            return Ok(());
        }
    };
    let databases = crate::schema::selected_databases(conn, &selection)
        .await
        .unwrap_or_default();
    // Version: a MariaDB with binlog_row_metadata (10.5 or newer).
    let version: String = conn
        .query_first("SELECT @@version")
        .await?
        .unwrap_or_default();
    match parse_version(&version) {
        Some(v) if version.contains("MariaDB") && v >= (10, 5, 0) => {
            r.pass("source.version", version.clone(), "MariaDB 10.5 or newer")
        }
        _ => r.push(
            "source.version",
            Status::Fail,
            version.clone(),
            "MariaDB 10.5 or newer",
            "point [source] url at a MariaDB server of version 10.5 or newer",
        ),
    }

    // Privileges.
    let user: String = conn
        .query_first("SELECT CURRENT_USER()")
        .await?
        .unwrap_or_default();
    let grants = read_grants(conn, &user).await?;
    let missing_global = grants.missing(
        &[
            &["REPLICATION SLAVE"],
            &["BINLOG MONITOR", "REPLICATION CLIENT"],
        ],
        false,
        &[],
    );
    let missing_db = grants.missing(&[&["SELECT"], &["SHOW VIEW"]], true, &databases);
    let required = "REPLICATION SLAVE and REPLICATION CLIENT (BINLOG MONITOR) globally; SELECT and SHOW VIEW on the selected databases (SELECT globally to read stored routines)";
    if missing_global.is_empty() && missing_db.is_empty() {
        r.pass("source.privileges", format!("{user} has them"), required);
    } else {
        let mut fix = Vec::new();
        if !missing_global.is_empty() {
            fix.push(format!(
                "GRANT {} ON *.* TO {}",
                missing_global
                    .iter()
                    .map(|p| p.split(" or ").last().unwrap_or(p))
                    .collect::<Vec<_>>()
                    .join(", "),
                grantee(&user)
            ));
        }
        for db in &databases {
            if !missing_db.is_empty() {
                fix.push(format!(
                    "GRANT {} ON `{db}`.* TO {}",
                    missing_db.join(", "),
                    grantee(&user)
                ));
            }
        }
        r.push(
            "source.privileges",
            Status::Fail,
            format!(
                "{user} lacks {}",
                missing_global
                    .iter()
                    .chain(&missing_db)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            required,
            fix.join("; "),
        );
    }

    // Binlog settings.
    let row: Option<(String, String, String, String, String, u32)> = conn
        .query_first(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, \
             @@log_bin_compress, @@server_id",
        )
        .await?;
    let (log_bin, format, image, metadata, compress, server_id) = row.unwrap_or_default();
    let on = |v: &str| v == "1" || v.eq_ignore_ascii_case("ON");
    if on(&log_bin) {
        r.pass("source.log_bin", "ON", "ON");
    } else {
        r.push(
            "source.log_bin",
            Status::Fail,
            "binlog is off (log_bin=OFF)",
            "ON",
            "start mariadbd with --log-bin (log_bin in the [mariadbd] section of its config)",
        );
    }
    for (name, actual, expected) in [
        ("binlog_format", format, "ROW"),
        ("binlog_row_image", image, "FULL"),
        ("binlog_row_metadata", metadata, "FULL"),
    ] {
        if actual.eq_ignore_ascii_case(expected) {
            r.pass(&format!("source.{name}"), actual, expected);
        } else {
            r.push(
                &format!("source.{name}"),
                Status::Fail,
                format!("{name} is {actual}"),
                expected,
                format!("SET GLOBAL {name} = '{expected}', and {name} = {expected} in the server's config"),
            );
        }
    }
    if on(&compress) {
        r.push(
            "source.log_bin_compress",
            Status::Fail,
            "ON",
            "OFF",
            "SET GLOBAL log_bin_compress = OFF, and in the server's config",
        );
    } else {
        r.pass("source.log_bin_compress", "OFF", "OFF");
    }

    // Retention: long enough to survive an outage of the connector.
    let expire: Option<(Option<u64>, Option<f64>)> = conn
        .query_first("SELECT @@binlog_expire_logs_seconds, @@expire_logs_days")
        .await
        .or_else(|_| Ok::<_, mysql_async::Error>(None))?;
    let seconds = match expire {
        Some((Some(s), _)) if s > 0 => s,
        Some((_, Some(d))) if d > 0.0 => (d * 86_400.0) as u64,
        _ => 0,
    };
    let (needed, why) = if full_sync_pending {
        (RETENTION_FULL, "7 days with a full synchronization to run")
    } else {
        (
            RETENTION_INCREMENTAL,
            "24 hours for incremental synchronization",
        )
    };
    let found = if seconds == 0 {
        "binlogs never expire".to_string()
    } else {
        format!("binlogs expire after {:.1} hours", seconds as f64 / 3600.0)
    };
    if seconds == 0 || seconds >= needed {
        r.pass("source.binlog_retention", found, format!("at least {why}"));
    } else {
        r.push(
            "source.binlog_retention",
            Status::Fail,
            found,
            format!("at least {why}"),
            format!(
                "SET GLOBAL binlog_expire_logs_seconds = {needed} (and in the server's config)"
            ),
        );
    }

    // server_id: not the source's own, and no other replica's.
    let ours = config.source.server_id;
    let hosts: Result<Vec<(u32, String, u32)>, _> = conn
        .query_map("SHOW SLAVE HOSTS", |row: mysql_async::Row| {
            (
                row.get::<u32, _>(0).unwrap_or(0),
                row.get::<String, _>(1).unwrap_or_default(),
                row.get::<u32, _>(2).unwrap_or(0),
            )
        })
        .await;
    let required = format!(
        "server_id {ours} differs from the source's ({server_id}) and from every replica's"
    );
    let fix = "set [source] server_id to a number no server or replica of this source uses";
    if server_id == ours {
        r.push(
            "source.server_id",
            Status::Fail,
            format!("the source itself has server_id {ours}"),
            required,
            fix,
        );
    } else {
        match hosts {
            Err(e) => r.push(
                "source.server_id",
                Status::Warning,
                format!("cannot list the replicas: {}", describe_mysql(&e)),
                required,
                "grant REPLICATION MASTER ADMIN to check",
            ),
            Ok(hosts) => match hosts.iter().find(|h| h.0 == ours) {
                None => r.pass("source.server_id", format!("{ours} is unused"), required),
                // A binlog client reports no port: most likely an earlier
                // connection of this connector that the server has not
                // dropped yet.
                Some((_, host, 0)) => r.push(
                    "source.server_id",
                    Status::Warning,
                    format!("a binlog client from {host} uses server_id {ours} (this connector's earlier connection, or another connector)"),
                    required,
                    "if it is another connector, give this one another [source] server_id",
                ),
                Some((_, host, port)) => r.push(
                    "source.server_id",
                    Status::Fail,
                    format!("the replica at {host}:{port} uses server_id {ours}"),
                    required,
                    fix,
                ),
            },
        }
    }

    // The selection: every entry names something that exists, and no key
    // column is excluded.
    let tables: Vec<TableSchema> = crate::schema::read_tables(conn, &databases)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|t| selection.table(&t.id))
        .collect();
    let all_tables: Vec<(String, String)> = conn
        .query("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'")
        .await?;
    let mut problems = Vec::new();
    for db in &config.source.databases {
        let exists = |d: &String| glob_like(db, d);
        if !all_tables.iter().map(|(d, _)| d).any(exists)
            && !databases.iter().any(|d| glob_like(db, d))
        {
            problems.push(if db.contains(['*', '?']) {
                format!("databases entry `{db}` matches no database")
            } else {
                format!("database `{db}` does not exist on the source")
            });
        }
    }
    for entry in &config.source.tables {
        let only =
            crate::selection::Selection::new(&[], &[], std::slice::from_ref(entry), &[], &[], &[]);
        if let Ok(only) = only {
            if !all_tables
                .iter()
                .any(|(d, t)| only.table(&TableId::new(d.as_str(), t.as_str())))
            {
                problems.push(format!("tables entry `{entry}` matches no table"));
            }
        }
    }
    for entry in &config.source.columns {
        let hit = tables.iter().any(|t| {
            t.columns
                .iter()
                .any(|c| column_named(entry, &t.id, &c.name))
        });
        if !hit {
            problems.push(format!(
                "columns entry `{entry}` matches no column of a selected table"
            ));
        }
    }
    for t in &tables {
        if let Err(e) = selection.project(t.clone()) {
            problems.push(e.to_string());
        }
    }
    let required =
        "every database, table and column the selection names exists; no key column excluded";
    if problems.is_empty() {
        r.pass(
            "source.selection",
            format!(
                "{} table(s) in {} database(s)",
                tables.len(),
                databases.len()
            ),
            required,
        );
    } else {
        r.push(
            "source.selection",
            Status::Fail,
            problems.join("; "),
            required,
            "fix [source] databases, tables, columns (or create what is missing)",
        );
    }

    // Row filters: each binds to its table's columns.
    let mut bad = Vec::new();
    let mut filtered = 0;
    for t in &tables {
        if let Some(cond) = selection.row_filter(&t.id) {
            filtered += 1;
            if let Err(e) = crate::filter::RowFilter::new(cond, t) {
                bad.push(format!("{}: {e}", t.id));
            }
        }
    }
    let required = "every row filter's condition names columns of its table";
    if bad.is_empty() {
        r.pass(
            "source.row_filters",
            format!("{filtered} table(s) filtered"),
            required,
        );
    } else {
        r.push(
            "source.row_filters",
            Status::Fail,
            bad.join("; "),
            required,
            "fix the `where` of [[source.row_filter]]",
        );
    }

    // Keys.
    let keyless: Vec<String> = tables
        .iter()
        .filter(|t| t.key.is_empty())
        .map(|t| format!("`{}`.`{}`", t.id.database, t.id.table))
        .collect();
    let required = "a primary key or a NOT NULL unique key on every table";
    if keyless.is_empty() {
        r.pass("source.keys", "every table has one", required);
    } else {
        r.push(
            "source.keys",
            Status::Warning,
            format!("{} table(s) have none: {}", keyless.len(), keyless.join(", ")),
            required,
            "add a primary key; until then their records have no Kafka key (all in partition 0) and the sink matches their updates and deletes on the whole row, one row at a time",
        );
    }

    // Foreign keys whose actions change other rows: InnoDB does that
    // inside the server, and the binlog does not show it.
    let actions: Vec<(String, String, String, String, String, String)> = conn
        .query(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME, DELETE_RULE, UPDATE_RULE \
             FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE DELETE_RULE NOT IN ('RESTRICT', 'NO ACTION') OR UPDATE_RULE NOT IN ('RESTRICT', 'NO ACTION') \
             ORDER BY 1, 2, 3",
        )
        .await?;
    let acting: Vec<String> = actions
        .iter()
        .filter(|(db, table, ..)| selection.table(&TableId::new(db.as_str(), table.as_str())))
        .map(|(db, table, name, parent, on_delete, on_update)| {
            let rules: Vec<String> = [("DELETE", on_delete), ("UPDATE", on_update)]
                .into_iter()
                .filter(|(_, rule)| !matches!(rule.as_str(), "RESTRICT" | "NO ACTION"))
                .map(|(op, rule)| format!("ON {op} {rule}"))
                .collect();
            format!("`{db}`.`{table}` {name} -> {parent} ({})", rules.join(", "))
        })
        .collect();
    let required = "no foreign key that changes rows itself (CASCADE, SET NULL, SET DEFAULT)";
    if acting.is_empty() {
        r.pass("source.foreign_keys", "none", required);
    } else {
        r.push(
            "source.foreign_keys",
            Status::Warning,
            format!("{} foreign key(s) act on their rows: {}", acting.len(), acting.join("; ")),
            required,
            "what these actions do at the source is not in the binlog and the sink applies rows without foreign key checks, so it does not happen at the destination: have the application change the child rows itself, or accept that the destination keeps them",
        );
    }
    Ok(())
}

/// Whether a `databases` entry (a name or pattern) matches `db`.
fn glob_like(pattern: &str, db: &str) -> bool {
    crate::selection::Selection::databases(&[pattern.to_string()]).whole_database(db)
}

/// Whether a `database.table.column` entry names this column.
fn column_named(entry: &str, table: &TableId, column: &str) -> bool {
    crate::selection::Selection::new(
        &[],
        &[],
        &["*.*".to_string()],
        &[],
        &[entry.to_string()],
        &[],
    )
    .is_ok_and(|s| s.column_listed(table, column))
}

async fn read_grants(conn: &mut Conn, user: &str) -> Result<Grants, mysql_async::Error> {
    let who = grantee(user);
    let global: Vec<String> = conn
        .exec(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
            (&who,),
        )
        .await?;
    let schema: Vec<(String, String)> = conn
        .exec(
            "SELECT TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
            (&who,),
        )
        .await?;
    Ok(Grants { global, schema })
}
