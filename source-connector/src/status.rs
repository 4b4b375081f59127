//! `source-connector status`: where the connector is, without running it.
//!
//! What is stored tells most of it: the position on the positions topic
//! (with the full synchronization's progress while it runs) and the error
//! that last stopped the connector, beside it; the source server tells how
//! far its binlog has gone since, and its estimate of each table's rows.
//! When the connector runs with `[http] listen`, its own `/status` adds
//! what only the running process knows (rows read per table, rates, time
//! left, lag in time).

use std::collections::HashSet;
use std::time::Duration;

use change_stream::position::GtidPosition;
use change_stream::table::TableId;
use change_stream::telemetry::{LastError, Status};
use change_stream::topics;
use mysql_async::prelude::*;
use serde::Serialize;

use crate::checkpoint::StoredPosition;
use crate::config::Config;
use crate::error::{describe_mysql, SourceError};

/// What `status` prints.
#[derive(Serialize)]
struct Report {
    connector: &'static str,
    prefix: String,
    /// The running connector's own status, when it answers.
    live: Option<Status>,
    /// `[http] listen`, where the running connector was looked for.
    http: Option<String>,
    stored_position: Option<Stored>,
    /// The source server's binlog now, and how many transactions (summed
    /// over GTID domains) it is past the stored position.
    source_position: Option<String>,
    transactions_behind: Option<u64>,
    /// Why the source server could not be asked.
    source_error: Option<String>,
    full_synchronization: Synchronization,
    /// The error that last stopped the connector.
    last_error: Option<LastError>,
}

#[derive(Serialize)]
struct Stored {
    gtid: String,
    file: String,
    pos: u64,
}

#[derive(Serialize)]
struct Synchronization {
    /// `done`, `running` (stopped or not, it has not finished) or `not
    /// started`.
    state: &'static str,
    tables: Vec<TableState>,
}

#[derive(Serialize)]
struct TableState {
    table: String,
    /// `done`, `reading` (a part under way) or `waiting`.
    state: &'static str,
    estimated_rows: Option<u64>,
}

/// Prints where the connector is, as `text` or `json`.
pub async fn print(config: &Config, format: &str) -> Result<(), SourceError> {
    let live = match &config.http.listen {
        Some(l) => change_stream::telemetry::fetch(l).await,
        None => None,
    };
    let prefix = config.kafka.topic_prefix.clone();
    let (stored, last_error) = read_positions_topic(config).await?;
    let mut report = Report {
        connector: "source",
        prefix,
        live,
        http: config.http.listen.clone(),
        stored_position: stored.as_ref().map(|p| Stored {
            gtid: p.gtid.to_string(),
            file: p.file.clone(),
            pos: p.pos,
        }),
        source_position: None,
        transactions_behind: None,
        source_error: None,
        full_synchronization: Synchronization {
            state: match &stored {
                None => "not started",
                Some(p) if p.snapshot.is_some() => "running",
                Some(_) => "done",
            },
            tables: Vec::new(),
        },
        last_error,
    };
    if let Err(e) = ask_source(config, stored.as_ref(), &mut report).await {
        report.source_error = Some(e.to_string());
    }
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializes")
        ),
        _ => print!("{}", render(&report)),
    }
    Ok(())
}

/// The stored position and the last error, from the positions topic.
async fn read_positions_topic(
    config: &Config,
) -> Result<(Option<StoredPosition>, Option<LastError>), SourceError> {
    let kafka = &config.kafka;
    let cc = change_stream::kafka::client_config(&kafka.bootstrap_servers, &kafka.properties);
    let servers = kafka.bootstrap_servers.clone();
    let topic = topics::positions_topic(&kafka.topic_prefix);
    tokio::task::spawn_blocking(move || {
        change_stream::kafka::check_broker(&cc, Duration::from_secs(10)).map_err(|e| {
            SourceError::Kafka(format!(
                "cannot reach the broker at {servers}: {e}; check [kafka] bootstrap_servers"
            ))
        })?;
        let stored = crate::checkpoint::load(&cc, &topic)?;
        let records = change_stream::kafka::read_to_end(&cc, &topic, Duration::from_secs(30))
            .map_err(|e| SourceError::Kafka(e.to_string()))?;
        let last_error = records
            .into_iter()
            .filter(|(k, _)| k.as_deref() == Some(topics::LAST_ERROR_KEY.as_bytes()))
            .filter_map(|(_, v)| serde_json::from_slice::<LastError>(&v?).ok())
            .next_back();
        Ok((stored, last_error))
    })
    .await
    .expect("blocking task")
}

/// The source server's binlog position and its tables' row estimates.
async fn ask_source(
    config: &Config,
    stored: Option<&StoredPosition>,
    report: &mut Report,
) -> Result<(), SourceError> {
    let opts = crate::source_opts(config)?;
    let mut conn = crate::connect(&opts, config.source.connect_timeout_secs).await?;
    let now: Option<String> = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .map_err(|e| SourceError::Source(describe_mysql(&e)))?;
    let now: Option<GtidPosition> = now.and_then(|p| p.parse().ok());
    if let Some(now) = &now {
        report.source_position = Some(now.to_string());
        if let Some(p) = stored {
            report.transactions_behind = Some(
                now.domains()
                    .map(|g| {
                        g.seq
                            .saturating_sub(p.gtid.get(g.domain).map_or(0, |s| s.seq))
                    })
                    .sum(),
            );
        }
    }
    let selection = config.selection()?;
    let databases = crate::schema::selected_databases(&mut conn, &selection).await?;
    let rows: Vec<(String, String, Option<u64>)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY 1, 2",
        )
        .await
        .map_err(|e| SourceError::Source(describe_mysql(&e)))?;
    let progress = stored.and_then(|p| p.snapshot.as_ref());
    let done: HashSet<&TableId> =
        progress.map_or(HashSet::new(), |p| p.tables_done.iter().collect());
    let reading: HashSet<&TableId> = progress.map_or(HashSet::new(), |p| {
        p.in_progress
            .iter()
            .filter(|t| t.last_key.is_some())
            .map(|t| &t.table)
            .collect()
    });
    let finished = report.full_synchronization.state == "done";
    for (database, table, estimate) in rows {
        let id = TableId::new(&database, &table);
        if !databases.contains(&database) || !selection.table(&id) {
            continue;
        }
        let state = if finished || done.contains(&id) {
            "done"
        } else if reading.contains(&id) {
            "reading"
        } else {
            "waiting"
        };
        report.full_synchronization.tables.push(TableState {
            table: id.to_string(),
            state,
            estimated_rows: estimate,
        });
    }
    Ok(())
}

fn render(r: &Report) -> String {
    let mut out = format!("source-connector, topic prefix {}\n", r.prefix);
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    match (&r.live, &r.http) {
        (Some(_), Some(at)) => line("state", format!("running (http://{at}/)")),
        (None, Some(at)) => line("state", format!("not running (no answer at {at})")),
        _ => line("state", "unknown ([http] listen is not set)".into()),
    }
    line(
        "stored position",
        r.stored_position
            .as_ref()
            .map_or("none: the connector has not started".into(), |p| {
                format!("{} at {}:{}", p.gtid, p.file, p.pos)
            }),
    );
    match (&r.source_position, &r.source_error) {
        (Some(now), _) => line(
            "source binlog",
            match r.transactions_behind {
                Some(n) => {
                    format!("{now} ({n} transaction(s) since the stored position, of any table)")
                }
                None => now.clone(),
            },
        ),
        (None, Some(e)) => line("source binlog", format!("cannot ask the source: {e}")),
        _ => {}
    }
    let sync = &r.full_synchronization;
    let done = sync.tables.iter().filter(|t| t.state == "done").count();
    line(
        "full synchronization",
        format!(
            "{}, {done} of {} tables done",
            sync.state,
            sync.tables.len()
        ),
    );
    if sync.state != "done" {
        for t in &sync.tables {
            let est = t.estimated_rows.map_or("?".into(), |e| e.to_string());
            line("", format!("{}  {}  ~{est} rows", t.table, t.state));
        }
    }
    line(
        "last error",
        r.last_error.as_ref().map_or("none recorded".into(), |e| {
            let resolved = e
                .resolved_at
                .as_ref()
                .map_or(String::new(), |at| format!(" (running again since {at})"));
            format!("{}  {}{resolved}", e.at, e.message)
        }),
    );
    if let Some(live) = &r.live {
        out.push_str("\nthe running connector:\n");
        out.push_str(&change_stream::telemetry::render(live));
    }
    out
}

/// Once the connector runs after a failure recorded (and not resolved
/// yet), the failure alert is resolved and the record says so.
pub async fn resolve_failure(config: &Config) {
    let last = match read_positions_topic(config).await {
        Ok((_, Some(last))) if last.resolved_at.is_none() => last,
        _ => return,
    };
    change_stream::telemetry::until_running().await;
    change_stream::alerts::failure_resolved(
        &config.alerts,
        "source",
        &config.kafka.topic_prefix,
        &last.at,
        &last.message,
    )
    .await;
    write_last_error(
        config,
        &LastError {
            resolved_at: Some(change_stream::process::now_rfc3339()),
            ..last
        },
    )
    .await;
}

/// Records on the positions topic the error that stops the connector, for
/// `status`; best effort (the broker may be what failed).
pub async fn record_last_error(config: &Config, message: &str) {
    let last = LastError {
        at: change_stream::process::now_rfc3339(),
        message: message.to_string(),
        resolved_at: None,
    };
    write_last_error(config, &last).await;
}

async fn write_last_error(config: &Config, last: &LastError) {
    let kafka = &config.kafka;
    let cc = change_stream::kafka::client_config(&kafka.bootstrap_servers, &kafka.properties);
    let topic = topics::positions_topic(&kafka.topic_prefix);
    let value = serde_json::to_string(last).expect("serializes");
    let _ = tokio::task::spawn_blocking(move || {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = cc.create().ok()?;
        // Never created here: a topic made by the broker's defaults would
        // not be compacted.
        let metadata = producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .ok()?;
        let t = metadata.topics().first()?;
        if t.error().is_some() || t.partitions().is_empty() {
            return None;
        }
        producer
            .send(
                BaseRecord::to(&topic)
                    .key(topics::LAST_ERROR_KEY)
                    .payload(&value),
            )
            .ok()?;
        producer.flush(Duration::from_secs(5)).ok()
    })
    .await;
}
