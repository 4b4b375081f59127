//! source-connector: reads a consistent snapshot of a MariaDB server, then
//! its binlog from exactly that point, and writes Avro change records to
//! Kafka.
//!
//! Stages, one file each: `schema.rs` (table definitions), `snapshot.rs`
//! (the consistent snapshot and its hand-over to the binlog), `binlog.rs`
//! (the replica connection), `convert.rs` (MariaDB values), `encode.rs`
//! (records), `produce.rs` (the producer and position tracking),
//! `checkpoint.rs` (the stored position); `status.rs` answers `status`.
//! This file wires them.

mod binlog;
mod check;
mod checkpoint;
mod config;
mod convert;
mod ddl;
mod encode;
mod error;
mod filter;
mod produce;
mod schema;
mod selection;
mod snapshot;
mod status;
mod tablemap;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use change_stream::event::SourceInfo;
use change_stream::kafka::TopicSpec;
use change_stream::schema_change::SchemaChange;
use change_stream::table::TableId;
use change_stream::topics;
use clap::{Parser, Subcommand};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::watch;

use crate::binlog::BinlogReader;
use crate::checkpoint::StoredPosition;
use crate::config::Config;
use crate::encode::{Encoder, TableCtx};
use crate::error::{describe_mysql, SourceError};
use crate::produce::Output;

/// mimalloc: the connectors allocate and free many small values per row
/// (decoded records, SQL literals), across threads; glibc's allocator spent
/// a third of the sink's time on that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "source-connector",
    version,
    about = "Streams a MariaDB server's tables into Kafka: a consistent snapshot, then the binlog"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `text` or `json` (one object per line); overrides `[log] format`.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot the configured databases, then stream their changes.
    Run {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the source server, the account and the broker, item by item;
    /// exits non-zero when an item fails.
    Check {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Print where the connector is (position, full synchronization, last
    /// error), without running it; with the running connector's own
    /// status when `[http] listen` answers.
    Status {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

impl Command {
    /// The config file the subcommand reads.
    fn config(&self) -> &std::path::Path {
        match self {
            Command::Run { config, .. }
            | Command::Check { config, .. }
            | Command::Status { config, .. } => config,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = change_stream::process::LogFormat::choose(
        cli.log_format.as_deref(),
        Some(cli.command.config()),
    );
    change_stream::process::run_main("source-connector", log_format, async {
        match cli.command {
            Command::Run { config: path } => {
                change_stream::process::stopping_while_starting_is_clean();
                run(Config::load(&path)?, &path).await
            }
            Command::Check { config, format } => {
                let report = check::report(&Config::load(&config)?).await;
                print!("{}", report.render(&format));
                if report.failed() {
                    return Err(SourceError::Precheck(report.summary()));
                }
                Ok(())
            }
            Command::Status { config, format } => {
                status::print(&Config::load(&config)?, &format).await
            }
        }
    })
}

/// Connection options for the source: UTC and utf8mb4 in every session.
pub(crate) fn source_opts(config: &Config) -> Result<Opts, SourceError> {
    let url = config.source.url.replacen("mariadb://", "mysql://", 1);
    let opts = Opts::from_url(&url).map_err(|e| SourceError::InvalidSetting {
        key: "source.url".into(),
        expected: "a mysql://user:password@host:port URL".into(),
        actual: e.to_string(),
    })?;
    Ok(config
        .source
        .security
        .apply(OptsBuilder::from_opts(opts))
        .prefer_socket(false)
        .init(vec![
            "SET time_zone = '+00:00'",
            "SET NAMES utf8mb4",
            "SET SESSION net_write_timeout = 3600",
        ])
        .into())
}

pub(crate) async fn connect(opts: &Opts, timeout_secs: u64) -> Result<Conn, SourceError> {
    let target = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
    match tokio::time::timeout(Duration::from_secs(timeout_secs), Conn::new(opts.clone())).await {
        Err(_) => Err(SourceError::Source(format!(
            "cannot connect to {target} within {timeout_secs}s: connection timed out; check [source] url"
        ))),
        Ok(Err(e)) => {
            let tls = opts.ssl_opts().is_some();
            let hint = change_stream::secure::hint("source", tls, &e.to_string());
            let failed = format!("cannot connect to {target}: {}", describe_mysql(&e));
            match hint {
                // Not retried: a certificate or a TLS setting is wrong.
                Some(hint) => Err(SourceError::Config {
                    message: format!("source MariaDB: {failed}; {hint}"),
                }),
                None => Err(SourceError::Source(failed)),
            }
        }
        Ok(Ok(c)) => Ok(c),
    }
}

/// Checks that the source is set up for row-based replication; returns its
/// server_id.
async fn check_source(conn: &mut Conn) -> Result<u32, SourceError> {
    let row: Option<(u32, String, String, String, String)> = conn
        .query_first(
            "SELECT @@server_id, @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata",
        )
        .await
        .map_err(|e| SourceError::Source(describe_mysql(&e)))?;
    let (server_id, log_bin, format, image, metadata) =
        row.ok_or_else(|| SourceError::Source("cannot read the binlog settings".into()))?;
    if log_bin != "1" && !log_bin.eq_ignore_ascii_case("ON") {
        return Err(SourceError::SourceSetup(
            "binlog is off (log_bin=OFF); start mariadbd with --log-bin".into(),
        ));
    }
    let wanted = [
        ("binlog_format", format, "ROW"),
        ("binlog_row_image", image, "FULL"),
        ("binlog_row_metadata", metadata, "FULL"),
    ];
    for (name, actual, expected) in wanted {
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(SourceError::SourceSetup(format!(
                "{name} is {actual}; set it to {expected} (SET GLOBAL {name}='{expected}' and in the server's config)"
            )));
        }
    }
    Ok(server_id)
}

/// Runs the connector after its precheck; its telemetry told how it
/// ends, and the error that stops it recorded for `status`.
async fn run(config: Config, path: &std::path::Path) -> Result<(), SourceError> {
    change_stream::telemetry::start(
        "source",
        &config.kafka.topic_prefix,
        config.http.listen.as_deref(),
    )
    .await
    .map_err(|message| SourceError::Config { message })?;
    change_stream::alerts::watch_lag(config.alerts.clone());
    if change_stream::progress::wanted() {
        change_stream::progress::show_snapshot();
    }
    if config.alerts.on_failure && config.alerts.delivered() {
        let config = config.clone();
        tokio::spawn(async move { status::resolve_failure(&config).await });
    }
    let result = async {
        check::report(&config)
            .await
            .gate(&format!(
                "source-connector check --config {}",
                path.display()
            ))
            .map_err(SourceError::Precheck)?;
        stream(&config).await
    }
    .await;
    match &result {
        Ok(()) => change_stream::telemetry::stopped(),
        Err(e) => {
            change_stream::telemetry::failed(&e.to_string());
            status::record_last_error(&config, &e.to_string()).await;
            change_stream::alerts::failure(
                &config.alerts,
                "source",
                &config.kafka.topic_prefix,
                &e.to_string(),
            )
            .await;
        }
    }
    result
}

/// Snapshot, then stream, until stopped or a definite error.
async fn stream(config: &Config) -> Result<(), SourceError> {
    let opts = source_opts(config)?;
    let mut conn = connect(&opts, config.source.connect_timeout_secs).await?;
    let source_server_id = check_source(&mut conn).await?;
    let source_version: String = conn
        .query_first("SELECT @@version")
        .await
        .map_err(|e| SourceError::Source(describe_mysql(&e)))?
        .unwrap_or_default();
    let selection = Arc::new(config.selection()?);
    let literal: Vec<String> = config
        .source
        .databases
        .iter()
        .filter(|d| !d.contains(['*', '?']))
        .cloned()
        .collect();
    schema::check_databases(&mut conn, &literal).await?;
    let databases = schema::selected_databases(&mut conn, &selection).await?;

    let kafka = &config.kafka;
    let client_config =
        change_stream::kafka::client_config(&kafka.bootstrap_servers, &kafka.properties);
    {
        let cc = client_config.clone();
        let servers = kafka.bootstrap_servers.clone();
        tokio::task::spawn_blocking(move || {
            change_stream::kafka::check_broker(&cc, Duration::from_secs(10))
        })
        .await
        .expect("blocking task")
        .map_err(|e| {
            let e = e.to_string();
            match change_stream::kafka::tls_hint(&e) {
                // Not retried: a TLS setting is wrong.
                Some(_) => SourceError::Config {
                    message: format!("cannot reach the broker at {servers}: {e}"),
                },
                None => SourceError::Kafka(format!(
                    "cannot reach the broker at {servers}: {e}; check [kafka] bootstrap_servers"
                )),
            }
        })?;
    }
    let prefix = kafka.topic_prefix.clone();
    let rf = kafka.replication_factor;
    let own_topic = |name: String, policy: &str, retention_ms: i64| TopicSpec {
        name,
        partitions: 1,
        replication_factor: rf,
        config: BTreeMap::from([
            ("cleanup.policy".to_string(), policy.to_string()),
            ("retention.ms".to_string(), retention_ms.to_string()),
        ]),
    };
    let own_topics = vec![
        own_topic(topics::positions_topic(&prefix), "compact", -1),
        own_topic(topics::schemas_topic(&prefix), "compact", -1),
        own_topic(
            topics::schema_changes_topic(&prefix),
            "delete",
            kafka.schema_changes_retention_ms,
        ),
        // Kept as long as the table topics' binlog records it tells the
        // transactions of.
        own_topic(topics::transaction_topic(&prefix), "delete", -1),
        // Only the latest matter: an hour.
        own_topic(topics::heartbeat_topic(&prefix), "delete", 3_600_000),
    ];
    change_stream::kafka::ensure_topics(&client_config, &own_topics)
        .await
        .map_err(|e| SourceError::Kafka(e.to_string()))?;
    // Before the position is read: with exactly-once this ends what an
    // earlier process left open.
    let mut out = Output::new(client_config.clone(), kafka)?;
    if let Some(url) = &kafka.schema_registry_url {
        let registry = change_stream::registry::Registry::new(url)?;
        out.use_registry(std::sync::Arc::new(registry));
        tracing::info!(registry = %change_stream::registry::shown(url), "keys and values in the schema registry's wire format");
    }
    let stored = {
        let cc = client_config.clone();
        let topic = topics::positions_topic(&prefix);
        tokio::task::spawn_blocking(move || checkpoint::load(&cc, &topic))
            .await
            .expect("blocking task")?
    };
    if let Some(p) = &stored {
        if p.server_id != source_server_id {
            return Err(SourceError::Config {
                message: format!(
                    "the position stored on {} belongs to the server with server_id {}, but [source] url reaches server_id {source_server_id}; use another kafka.topic_prefix or delete that topic",
                    topics::positions_topic(&prefix),
                    p.server_id
                ),
            });
        }
    }

    // Where the binlog is while the definitions are read: a schema change
    // between here and the snapshot point is replayed before the snapshot.
    let mut definitions_read_at: Option<change_stream::position::GtidPosition> = if stored.is_none()
    {
        let pos: Option<String> = conn
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .map_err(|e| SourceError::Source(describe_mysql(&e)))?;
        pos.and_then(|p| p.parse().ok())
    } else {
        None
    };
    let definitions: Vec<_> = schema::read_tables(&mut conn, &databases)
        .await?
        .into_iter()
        .filter(|t| selection.table(&t.id))
        .collect();
    let whole: Vec<String> = databases
        .iter()
        .filter(|d| selection.whole_database(d))
        .cloned()
        .collect();
    let (mut triggers, objects): (Vec<_>, Vec<_>) = schema::read_objects(&mut conn, &whole)
        .await?
        .into_iter()
        .partition(|o| o.kind == "TRIGGER");
    drop(conn);
    let mut tables = Vec::with_capacity(definitions.len());
    for def in definitions {
        if def.key.is_empty() {
            tracing::warn!(table = %def.id, "table has no primary key and no NOT NULL unique key: its rows are copied, and updates and deletes are matched on the whole row");
        }
        tables.push(TableCtx::new(&prefix, def, &selection)?);
    }
    check_topic_names(&tables)?;
    out.start(stored.clone());
    let table_topics: Vec<(String, bool)> = tables
        .iter()
        .map(|t| (t.topic.clone(), !t.schema.key.is_empty()))
        .collect();
    out.ensure_table_topics(&table_topics).await?;
    // What the sinks' precheck compares their destination with.
    let server = serde_json::json!({"server_id": source_server_id, "version": source_version});
    out.send(
        &topics::positions_topic(&prefix),
        Some(topics::SOURCE_SERVER_KEY.as_bytes()),
        Some(server.to_string().as_bytes()),
        None,
        || "the source server's description".to_string(),
    )
    .await?;
    // Definitions describe the schema at the start of the synchronization.
    // On a restart the binlog from the stored position carries every
    // schema change since, in order; the shapes of now would be too new.
    let first_start = stored.is_none();
    if stored.as_ref().is_some_and(|p| p.snapshot.is_none()) {
        triggers.clear(); // published after the snapshot, which is done
        change_stream::telemetry::snapshot_finished();
    }
    publish_definitions(&mut out, &tables, &objects, source_server_id, first_start).await?;
    out.flush().await?;
    tracing::info!(tables = tables.len(), position = ?stored.as_ref().map(|p| p.gtid.to_string()), "source connector started");

    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        change_stream::process::wait_for_signal().await;
        tracing::info!("stopping: finishing in-flight records and storing the position");
        let _ = shutdown_tx.send(true);
    });

    // The tables as the stream knows them; schema changes update it.
    let mut tables: HashMap<TableId, Arc<TableCtx>> = tables
        .into_iter()
        .map(|t| (t.schema.id.clone(), t))
        .collect();
    let mut position = stored;
    let mut retries = change_stream::retry::Retries::default();
    // The producer waits for the broker without end; this ends the wait
    // after the connection window, without flushing (the stored position
    // is before every record not acknowledged).
    let watch = change_stream::kafka::watch_broker(
        client_config.clone(),
        change_stream::retry::minutes(config.retry.connection_window_minutes),
        change_stream::kafka::PROBE_EVERY,
    );
    tokio::pin!(watch);
    let attempts = async {
        loop {
            let mut shutdown = shutdown.clone();
            let attempt = std::time::Instant::now();
            let result = sync(
                config,
                &opts,
                &mut out,
                &mut tables,
                &mut triggers,
                &mut definitions_read_at,
                position.clone(),
                source_server_id,
                &mut shutdown,
            )
            .await;
            let result = match result {
                Err(e) => Err(out.failure().await.unwrap_or(e)),
                ok => ok,
            };
            match result {
                Ok(()) => break,
                Err(e) if e.is_transient() && !*shutdown.borrow() => {
                    let window =
                        change_stream::retry::minutes(config.retry.connection_window_minutes);
                    let delay = match retries.failure(attempt.elapsed(), window) {
                        Ok(d) => d,
                        Err(failing) => {
                            let _ = out.recover().await;
                            return Err(SourceError::RetriesExhausted(format!(
                            "{e}; still failing after {} minutes of retries (retry.connection_window_minutes = {}); the position is stored: fix the cause and start the connector again",
                            failing.as_secs() / 60,
                            config.retry.connection_window_minutes
                        )));
                        }
                    };
                    let what = match e {
                        SourceError::SnapshotInterrupted(_) => {
                            "the snapshot met a schema change on the source; resuming it"
                        }
                        _ => "lost a connection; retrying from the last acknowledged position",
                    };
                    tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "{what}");
                    change_stream::telemetry::retrying(&e.to_string());
                    position = out.recover().await?.or(position);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    let _ = out.recover().await;
                    return Err(e);
                }
            }
        }
        Ok(())
    };
    tokio::select! {
        r = attempts => r?,
        message = &mut watch => return Err(SourceError::RetriesExhausted(message)),
    }
    let last = tokio::select! {
        r = out.close() => r?,
        message = &mut watch => return Err(SourceError::RetriesExhausted(message)),
    };
    tracing::info!(position = ?last.map(|p| p.gtid.to_string()), "source connector stopped");
    Ok(())
}

/// Two tables whose names differ only in characters that topic names
/// cannot hold would share a topic.
fn check_topic_names(tables: &[Arc<TableCtx>]) -> Result<(), SourceError> {
    let mut seen: HashMap<&str, &TableId> = HashMap::new();
    for t in tables {
        if let Some(other) = seen.insert(&t.topic, &t.schema.id) {
            return Err(SourceError::Config {
                message: format!(
                    "tables {other} and {} would both be written to topic {}; rename one of them",
                    t.schema.id, t.topic
                ),
            });
        }
        if t.topic.len() > topics::MAX_TOPIC_LEN {
            return Err(SourceError::Config {
                message: format!(
                    "topic name {} is longer than {} characters; use a shorter kafka.topic_prefix",
                    t.topic,
                    topics::MAX_TOPIC_LEN
                ),
            });
        }
    }
    Ok(())
}

/// Publishes every table's schemas; at the first start also its
/// definition as a schema change (placed before any row of its topic, so
/// that the sink creates the table before applying them), and the views
/// and routines.
async fn publish_definitions(
    out: &mut Output,
    tables: &[Arc<TableCtx>],
    objects: &[schema::ObjectDef],
    server_id: u32,
    first_start: bool,
) -> Result<(), SourceError> {
    out.publish_schema(change_stream::schema_change::schema())
        .await?;
    out.publish_schema(change_stream::transaction::schema())
        .await?;
    out.publish_schema(change_stream::transaction::key_schema())
        .await?;
    let now = binlog::now_ms();
    // Sequences before the tables whose defaults use them.
    let (sequences, objects): (Vec<_>, Vec<_>) = objects
        .iter()
        .partition(|o| matches!(o.kind, "SEQUENCE" | "SETVAL"));
    for o in sequences.into_iter().filter(|_| first_start) {
        publish_object(out, o, None, server_id).await?;
    }
    for t in tables {
        if let Some(k) = &t.codec.key {
            out.publish_schema(k).await?;
        }
        out.publish_schema(&t.codec.value).await?;
        if !first_start {
            continue;
        }
        let change = SchemaChange::definition(
            definition_source(
                out,
                server_id,
                &t.schema.id.database,
                &t.schema.id.table,
                now,
            ),
            t.schema.clone(),
        );
        ddl::publish(out, &change).await?;
    }
    for o in objects.into_iter().filter(|_| first_start) {
        publish_object(out, o, None, server_id).await?;
    }
    Ok(())
}

/// The `source` block of a definition read at start (no binlog position).
pub(crate) fn definition_source(
    out: &Output,
    server_id: u32,
    database: &str,
    name: &str,
    ts_ms: i64,
) -> SourceInfo {
    SourceInfo {
        version: change_stream::VERSION.to_string(),
        name: out.prefix().to_string(),
        server_id,
        gtid: None,
        file: String::new(),
        pos: 0,
        row: 0,
        db: database.to_string(),
        table: Some(name.to_string()),
        ts_ms,
        snapshot: true,
    }
}

/// Publishes the definition of a view, routine or trigger read at start.
async fn publish_object(
    out: &mut Output,
    object: &schema::ObjectDef,
    table: Option<&TableCtx>,
    server_id: u32,
) -> Result<(), SourceError> {
    let change = SchemaChange::object_definition(
        definition_source(
            out,
            server_id,
            &object.database,
            &object.name,
            binlog::now_ms(),
        ),
        &object.database,
        object.create.clone(),
        object.sql_mode.clone(),
        table.map(|t| t.schema.clone()),
    );
    ddl::publish(out, &change).await
}

/// One attempt: snapshot (fresh or resumed) if needed, then stream.
/// Returns `Ok` only on shutdown.
#[allow(clippy::too_many_arguments)] // the state one attempt carries over to the next
async fn sync(
    config: &Config,
    opts: &Opts,
    out: &mut Output,
    tables: &mut HashMap<TableId, Arc<TableCtx>>,
    triggers: &mut Vec<schema::ObjectDef>,
    definitions_read_at: &mut Option<change_stream::position::GtidPosition>,
    position: Option<StoredPosition>,
    source_server_id: u32,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let mut enc = Encoder::default();
    if let Some(p) = &position {
        // Before reading on from a stored position: is it still in the
        // source's binlog history?
        let mut conn = connect(opts, config.source.connect_timeout_secs).await?;
        binlog::check_history(&mut conn, p).await?;
        change_stream::telemetry::running();
    }
    let gtid = match position {
        Some(p) if p.snapshot.is_none() => p.gtid,
        position => {
            let snapshot = snapshot::Snapshot {
                config,
                opts,
                source_server_id,
            };
            match snapshot
                .run(
                    out,
                    &mut enc,
                    tables,
                    definitions_read_at,
                    position,
                    shutdown,
                )
                .await?
            {
                Some(gtid) => gtid,
                None => return Ok(()),
            }
        }
    };
    // Triggers come after the full synchronization: each behind the rows
    // of its table read so far.
    if !triggers.is_empty() {
        for t in triggers.iter() {
            let table = t.table.as_ref().and_then(|id| tables.get(id));
            publish_object(out, t, table.map(|t| t.as_ref()), source_server_id).await?;
        }
        out.flush().await?;
        triggers.clear();
    }
    let mut reader = BinlogReader::following(config, opts, &gtid, tables, out.prefix()).await?;
    change_stream::telemetry::running();
    let result = reader
        .read(
            out,
            &mut enc,
            source_server_id,
            None,
            binlog::Rows::All,
            true,
            shutdown,
        )
        .await;
    // Whatever ended the stream, keep the shapes its schema changes left.
    *tables = reader.close().await;
    result.map(|_| ())
}
