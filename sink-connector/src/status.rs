//! `sink-connector status`: where the sink is, without running it.
//!
//! The state database at the destination holds the positions applied (per
//! topic partition), the failed schema changes, the conflicts and the
//! error that last stopped the sink; the broker tells how far each topic
//! has gone past them. When the sink runs with `[http] listen`, its own
//! `/status` adds what only the running process knows (lag in time, rates).

use std::collections::HashMap;
use std::time::Duration;

use change_stream::telemetry::{LastError, Status};
use change_stream::topics;
use mysql_async::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

use crate::config::Config;
use crate::error::{from_mysql, SinkError};
use crate::state::{Partition, PartitionState};

#[derive(Serialize)]
struct Report {
    connector: &'static str,
    prefix: String,
    group_id: String,
    live: Option<Status>,
    http: Option<String>,
    /// Partitions with a position applied at the destination.
    partitions_applied: usize,
    /// Records on the topics past what is applied (commit markers of
    /// transactional producers count too), per topic.
    records_behind: u64,
    topics: Vec<TopicState>,
    failed_ddl: u64,
    conflicts: u64,
    last_error: Option<LastError>,
}

#[derive(Serialize)]
struct TopicState {
    topic: String,
    records_behind: u64,
}

/// Prints where the sink is, as `text` or `json`.
pub async fn print(config: &Config, format: &str) -> Result<(), SinkError> {
    let live = match &config.http.listen {
        Some(l) => change_stream::telemetry::fetch(l).await,
        None => None,
    };
    let prefix = config.kafka.topic_prefix.clone();
    let db = &config.destination.state_database;
    let mut applier = crate::state_session(config).await?;
    let conn = applier.conn();
    let applied = crate::state::load(conn, db, &prefix).await?;
    let failed_ddl = crate::state::failures(conn, db, &prefix).await?.len() as u64;
    let conflicts: Option<u64> = conn
        .exec_first(
            format!(
                "SELECT COUNT(*) FROM {}.`conflicts` WHERE `topic_prefix` = ?",
                change_stream::table::quote_ident(db)
            ),
            (&prefix,),
        )
        .await
        .map_err(|e| from_mysql("cannot count the conflicts", e))?;
    let last_error = crate::state::last_error(conn, db, &prefix, &config.kafka.group_id)
        .await?
        .map(|(at, message, resolved_at)| LastError {
            at,
            message,
            resolved_at,
        });
    let topics = behind(config, applied.clone()).await?;
    let report = Report {
        connector: "sink",
        prefix,
        group_id: config.kafka.group_id.clone(),
        live,
        http: config.http.listen.clone(),
        partitions_applied: applied.len(),
        records_behind: topics.iter().map(|t| t.records_behind).sum(),
        topics,
        failed_ddl,
        conflicts: conflicts.unwrap_or(0),
        last_error,
    };
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializes")
        ),
        _ => print!("{}", render(&report)),
    }
    Ok(())
}

/// Once the sink runs after a failure recorded (and not resolved yet),
/// the failure alert is resolved and the record says so.
pub async fn resolve_failure(config: &Config) {
    let (db, prefix, group) = (
        &config.destination.state_database,
        &config.kafka.topic_prefix,
        &config.kafka.group_id,
    );
    let Ok(mut applier) = crate::state_session(config).await else {
        return;
    };
    let last = match crate::state::last_error(applier.conn(), db, prefix, group).await {
        Ok(Some((at, message, None))) => (at, message),
        _ => return,
    };
    change_stream::telemetry::until_running().await;
    change_stream::alerts::failure_resolved(&config.alerts, "sink", prefix, &last.0, &last.1).await;
    if let Err(e) = crate::state::resolve_last_error(applier.conn(), db, prefix, group).await {
        tracing::warn!(error = %e, "the last error is not marked resolved");
    }
}

/// Records past the applied positions, per topic of the prefix.
async fn behind(
    config: &Config,
    applied: HashMap<Partition, PartitionState>,
) -> Result<Vec<TopicState>, SinkError> {
    let kafka = &config.kafka;
    let mut cc = change_stream::kafka::client_config(&kafka.bootstrap_servers, &kafka.properties);
    cc.set("isolation.level", "read_committed")
        .set("group.id", format!("{}-status", kafka.group_id));
    let prefix = kafka.topic_prefix.clone();
    let servers = kafka.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || {
        let unreachable = |e: String| SinkError::Config {
            message: format!(
                "Kafka: cannot reach the broker at {servers}: {e}; check [kafka] bootstrap_servers"
            ),
        };
        change_stream::kafka::check_broker(&cc, Duration::from_secs(10))
            .map_err(|e| unreachable(e.to_string()))?;
        let consumer: BaseConsumer = cc.create().map_err(|e| unreachable(e.to_string()))?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| unreachable(e.to_string()))?;
        let mut behind: std::collections::BTreeMap<String, u64> = Default::default();
        // Short gaps are read to count records alone: a transactional
        // producer's commit marker takes an offset too.
        let mut short = rdkafka::TopicPartitionList::new();
        for t in metadata.topics() {
            let name = t.name();
            let ours = topics::is_table_topic(&prefix, name)
                || name == topics::schema_changes_topic(&prefix)
                || name == topics::transaction_topic(&prefix);
            if !ours {
                continue;
            }
            let n = behind.entry(name.to_string()).or_default();
            for p in t.partitions() {
                let (low, high) = change_stream::kafka::watermarks(
                    &consumer,
                    name,
                    p.id(),
                    Duration::from_secs(10),
                )
                .map_err(|e| unreachable(e.to_string()))?;
                let at = applied
                    .get(&(name.to_string(), p.id()))
                    .map_or(low, |s| s.next_offset.max(low));
                match high - at {
                    gap if gap <= 0 => {}
                    gap if gap <= SHORT_GAP => {
                        let _ =
                            short.add_partition_offset(name, p.id(), rdkafka::Offset::Offset(at));
                    }
                    gap => *n += gap as u64,
                }
            }
        }
        if short.count() > 0 {
            for (topic, n) in count_records(&cc, &short).map_err(unreachable)? {
                *behind.entry(topic).or_default() += n;
            }
        }
        Ok(behind
            .into_iter()
            .map(|(topic, records_behind)| TopicState {
                topic,
                records_behind,
            })
            .collect())
    })
    .await
    .expect("blocking task")
}

/// Gaps, in offsets, read record by record.
const SHORT_GAP: i64 = 1000;

/// The committed records from each partition's offset in `from` to its
/// end, per topic.
fn count_records(
    cc: &rdkafka::ClientConfig,
    from: &rdkafka::TopicPartitionList,
) -> Result<HashMap<String, u64>, String> {
    let mut cc = cc.clone();
    cc.set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10");
    let consumer: BaseConsumer<change_stream::kafka::EndsQuietly> = cc
        .create_with_context(change_stream::kafka::EndsQuietly)
        .map_err(|e| e.to_string())?;
    consumer.assign(from).map_err(|e| e.to_string())?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut ended = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ended < from.count() {
        if std::time::Instant::now() > deadline {
            return Err("timed out counting the records behind".into());
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                *counts
                    .entry(rdkafka::Message::topic(&m).to_string())
                    .or_default() += 1;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) if change_stream::kafka::is_fatal(&e) => return Err(e.to_string()),
            Some(Err(_)) => {}
        }
    }
    Ok(counts)
}

fn render(r: &Report) -> String {
    let mut out = format!(
        "sink-connector, topic prefix {}, group {}\n",
        r.prefix, r.group_id
    );
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    match (&r.live, &r.http) {
        (Some(_), Some(at)) => line("state", format!("running (http://{at}/)")),
        (None, Some(at)) => line("state", format!("not running (no answer at {at})")),
        _ => line("state", "unknown ([http] listen is not set)".into()),
    }
    line(
        "applied",
        format!(
            "{} partition(s) with a position; {} record(s) behind on {} topic(s)",
            r.partitions_applied,
            r.records_behind,
            r.topics.len()
        ),
    );
    for t in r.topics.iter().filter(|t| t.records_behind > 0) {
        line("", format!("{}  {} behind", t.topic, t.records_behind));
    }
    line(
        "failed schema changes",
        format!(
            "{} (sink-connector failed-ddl --config F lists them)",
            r.failed_ddl
        ),
    );
    line(
        "conflicts",
        format!(
            "{} (sink-connector conflicts --config F lists them)",
            r.conflicts
        ),
    );
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
