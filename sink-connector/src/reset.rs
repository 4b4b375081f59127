//! `sink-connector reset`: where the next run starts reading.
//!
//! The sink's positions are its rows in `<state_database>.applied`, one per
//! topic partition of its prefix (table topics, the schema-changes and the
//! transaction topic). `--to-beginning` deletes them: the next run replays
//! every topic from its start, as a first start does. `--to-timestamp T`
//! sets each partition at its first record stamped `T` or later (Kafka's
//! record time, which the source sets when it reads a change: its commit
//! time while it keeps up, later while it catches up), with no record of
//! what was applied before it, so everything from there is applied again:
//! for a destination restored from a backup taken at `T`. Changes are full
//! row images, so those applied twice leave the rows as they were.
//!
//! `--drop-databases` first drops the databases the prefix's tables land
//! in at the destination (as `[mapping]` names them), with `--yes` only:
//! with `--to-beginning` that rebuilds the destination from the topics
//! alone. The sink must be stopped: a running one answering at `[http]
//! listen` is refused, and one without it would write its own positions
//! over these.

use std::collections::BTreeSet;
use std::time::Duration;

use change_stream::table::quote_ident;
use change_stream::topics;
use mysql_async::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::Config;
use crate::decode::Registry;
use crate::error::{from_mysql, SinkError};
use crate::state::PartitionState;

/// Where the next run starts.
pub enum From {
    Beginning,
    /// Unix milliseconds.
    Timestamp(i64),
}

/// Resets the sink's positions (and, with `drop_databases`, its
/// databases at the destination).
pub async fn reset(
    config: &Config,
    from: From,
    drop_databases: bool,
    yes: bool,
) -> Result<(), SinkError> {
    if let Some(listen) = &config.http.listen {
        if change_stream::telemetry::fetch(listen).await.is_some() {
            return Err(SinkError::Config {
                message: format!(
                    "the sink runs (it answers at {listen}): stop it before resetting its positions"
                ),
            });
        }
    }
    let prefix = &config.kafka.topic_prefix;
    let state_db = &config.destination.state_database;
    let client_config = change_stream::kafka::client_config(
        &config.kafka.bootstrap_servers,
        &config.kafka.properties,
    );
    let mut applier = crate::state_session(config).await?;
    if drop_databases {
        let mut registry = Registry::new(client_config.clone(), prefix);
        registry.refresh_definitions().await?;
        let mapping = config.mapping()?;
        let databases: BTreeSet<String> = registry
            .definitions()
            .iter()
            .map(|d| mapping.schema(d).id.database.clone())
            .filter(|d| d != state_db)
            .collect();
        let list = databases.iter().cloned().collect::<Vec<_>>().join(", ");
        if !yes {
            return Err(SinkError::Config {
                message: format!(
                    "--drop-databases would drop {} database(s) at the destination: {list}; add --yes to drop them",
                    databases.len()
                ),
            });
        }
        for d in &databases {
            applier
                .conn()
                .query_drop(format!("DROP DATABASE IF EXISTS {}", quote_ident(d)))
                .await
                .map_err(|e| from_mysql(&format!("cannot drop database {d}"), e))?;
        }
        println!("dropped {} database(s): {list}", databases.len());
        // What the dropped tables had pending goes with them.
        for table in ["ddl_journal", "deferred_indexes"] {
            applier
                .conn()
                .exec_drop(
                    format!(
                        "DELETE FROM {}.{} WHERE `topic_prefix` = ?",
                        quote_ident(state_db),
                        quote_ident(table)
                    ),
                    (prefix,),
                )
                .await
                .map_err(|e| from_mysql("cannot update the state database", e))?;
        }
    }
    let like = format!("{}.%", prefix.replace('_', "\\_").replace('%', "\\%"));
    let conn = applier.conn();
    conn.exec_drop(
        format!(
            "DELETE FROM {}.`applied` WHERE `topic` LIKE ?",
            quote_ident(state_db)
        ),
        (&like,),
    )
    .await
    .map_err(|e| from_mysql("cannot reset the state table", e))?;
    match from {
        From::Beginning => {
            println!("the next run of the sink reads the topics of {prefix} from their beginning");
        }
        From::Timestamp(ts) => {
            let positions = offsets_at(config, ts).await?;
            let states: Vec<((String, i32), PartitionState)> = positions
                .into_iter()
                .map(|(topic, partition, offset)| {
                    (
                        (topic, partition),
                        PartitionState {
                            next_offset: offset,
                            last: Default::default(),
                        },
                    )
                })
                .collect();
            if !states.is_empty() {
                let refs: Vec<_> = states.iter().map(|(p, s)| (p, s)).collect();
                conn.query_drop(crate::state::save_sql(
                    state_db,
                    &config.kafka.group_id,
                    &refs,
                ))
                .await
                .map_err(|e| from_mysql("cannot reset the state table", e))?;
            }
            println!(
                "the next run of the sink reads the {} partition(s) of {prefix} from their first record stamped at or after {ts} ms",
                states.len()
            );
        }
    }
    Ok(())
}

/// Each partition of the prefix's topics and its first offset stamped at
/// or after `ts` (its end when none is).
async fn offsets_at(config: &Config, ts: i64) -> Result<Vec<(String, i32, i64)>, SinkError> {
    let kafka = &config.kafka;
    let mut cc = change_stream::kafka::client_config(&kafka.bootstrap_servers, &kafka.properties);
    cc.set("group.id", format!("{}-reset", kafka.group_id));
    let prefix = kafka.topic_prefix.clone();
    let servers = kafka.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || {
        let failed = |e: String| SinkError::Config {
            message: format!("Kafka at {servers}: {e}; check [kafka] bootstrap_servers"),
        };
        let timeout = Duration::from_secs(10);
        let consumer: BaseConsumer = cc.create().map_err(|e| failed(e.to_string()))?;
        let metadata = consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| failed(e.to_string()))?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for t in metadata.topics() {
            let name = t.name();
            let ours = topics::is_table_topic(&prefix, name)
                || name == topics::schema_changes_topic(&prefix)
                || name == topics::transaction_topic(&prefix);
            if ours {
                for p in t.partitions() {
                    tpl.add_partition_offset(name, p.id(), rdkafka::Offset::Offset(ts))
                        .map_err(|e| failed(e.to_string()))?;
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(Vec::new());
        }
        let found = consumer
            .offsets_for_times(tpl, timeout)
            .map_err(|e| failed(e.to_string()))?;
        let mut out = Vec::new();
        for e in found.elements() {
            let offset = match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                // No record that late: from the end.
                _ => {
                    change_stream::kafka::watermarks(&consumer, e.topic(), e.partition(), timeout)
                        .map_err(|e| failed(e.to_string()))?
                        .1
                }
            };
            out.push((e.topic().to_string(), e.partition(), offset));
        }
        Ok(out)
    })
    .await
    .expect("blocking task")
}

/// `T` of `--to-timestamp`: Unix milliseconds, or an RFC 3339 UTC time
/// (`2026-12-01T10:00:00Z`).
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            format!(
                "--to-timestamp {text}: give Unix milliseconds or a UTC time such as 2026-12-01T10:00:00Z"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_both_forms() {
        assert_eq!(parse_timestamp("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500)
        );
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2023-13-14T22:13:20Z").is_err());
    }
}
