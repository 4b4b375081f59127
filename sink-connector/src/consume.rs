//! Consuming the table topics of one prefix.
//!
//! Partitions are assigned by the sink itself (no group rebalancing): every
//! partition of every topic `<prefix>.<database>.<table>`, found by listing
//! the cluster's topics at start and every `kafka.topic_refresh_secs`, starts
//! at the offset the destination's state table gives, or at the beginning.
//! The consumer group is used only to commit offsets for monitoring. When
//! transactions are kept whole the transaction topic is consumed too.
//!
//! ## Schema changes
//! The schema-changes topic has a consumer of its own ([`SchemaFeed`]). A
//! schema change says at which offset of each partition of its tables'
//! topics it falls, but nothing in those partitions says so: before a
//! table record is taken, the sink must know of every schema change
//! written before it. The source has a schema change on its topic before
//! anything written after it is visible, so it is enough to read the
//! schema-changes topic up to its end as of a moment after the record
//! came: each batch of records, once collected, waits for that
//! ([`SchemaFeed::catch_up`]). The end is the high watermark, records not
//! committed yet included, since the commit that makes a record visible
//! may reach the schema-changes topic a moment after the record's own
//! partition; such records are read once they are committed (or passed
//! over once aborted).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use change_stream::kafka::describe;
use change_stream::topics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaSection;
use crate::error::SinkError;
use crate::state::{Partition, PartitionState};

/// The source's server as the source connector described it on the
/// positions topic: its `server_id` and version; `None` if not there (yet).
pub async fn source_server(
    client_config: &ClientConfig,
    prefix: &str,
) -> Option<(Option<u32>, Option<String>)> {
    let topic = topics::positions_topic(prefix);
    let cc = client_config.clone();
    let records = tokio::task::spawn_blocking(move || {
        change_stream::kafka::read_to_end(&cc, &topic, Duration::from_secs(30))
    })
    .await
    .ok()?
    .ok()?;
    let value = records
        .into_iter()
        .filter(|(k, _)| k.as_deref() == Some(topics::SOURCE_SERVER_KEY.as_bytes()))
        .filter_map(|(_, v)| v)
        .next_back()?;
    let v: serde_json::Value = serde_json::from_slice(&value).ok()?;
    Some((
        v["server_id"].as_u64().and_then(|n| u32::try_from(n).ok()),
        v["version"].as_str().map(str::to_string),
    ))
}

pub struct Input {
    pub consumer: StreamConsumer,
    prefix: String,
    /// The transaction topic, when it is consumed.
    transaction_topic: Option<String>,
    assigned: HashSet<Partition>,
    /// Partitions per topic, as last listed.
    partition_counts: HashMap<String, i32>,
}

impl Input {
    pub fn new(
        client_config: &ClientConfig,
        kafka: &KafkaSection,
        transactions: bool,
        batch_records: usize,
    ) -> Result<Self, SinkError> {
        let mut c = client_config.clone();
        // Kafka returns a record larger than the fetch limits whole, alone
        // in its response: the response limit must hold the largest one
        // (librdkafka's default, 100 MB, holds the default 64 MiB).
        let response = (kafka.message_max_bytes + (1 << 20)).max(100_000_000);
        c.set("group.id", &kafka.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("receive.message.max.bytes", response.to_string())
            .set(
                "queued.max.messages.kbytes",
                (kafka.fetch_buffer_bytes / 1024).to_string(),
            )
            // librdkafka fetches ahead until a partition has this many
            // records queued (100,000 by default) or the bytes above; each
            // queued record also costs a few hundred bytes of its own,
            // more than a small record's payload. Two batches ahead keep
            // the sink fed.
            .set(
                "queued.min.messages",
                (2 * batch_records).max(1000).to_string(),
            )
            // Once the prefetch queue is over a threshold, librdkafka puts
            // off the partition's next fetch by this much (1 s by default):
            // the sink emptied the queue in half of that and then waited.
            .set("fetch.queue.backoff.ms", "10");
        // The user's settings win over these.
        for (k, v) in &kafka.properties {
            c.set(k, v);
        }
        let consumer: StreamConsumer = c
            .create()
            .map_err(|e| SinkError::Kafka(format!("cannot create the consumer: {e}")))?;
        Ok(Self {
            consumer,
            prefix: kafka.topic_prefix.clone(),
            transaction_topic: transactions.then(|| topics::transaction_topic(&kafka.topic_prefix)),
            assigned: HashSet::new(),
            partition_counts: HashMap::new(),
        })
    }

    /// Assigns the partitions of table topics not assigned yet, each from
    /// its applied offset. Returns how many were added.
    pub fn discover(
        &mut self,
        applied: &HashMap<Partition, PartitionState>,
    ) -> Result<usize, SinkError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| SinkError::Kafka(format!("cannot list topics: {}", describe(&e))))?;
        let mut tpl = TopicPartitionList::new();
        let mut added = Vec::new();
        let schema_changes = topics::schema_changes_topic(&self.prefix);
        for t in metadata.topics() {
            if t.name() == schema_changes && t.error().is_none() {
                // Read by a consumer of its own; known to be there.
                self.partition_counts
                    .insert(t.name().to_string(), t.partitions().len() as i32);
            }
            let ours = topics::is_table_topic(&self.prefix, t.name())
                || self.transaction_topic.as_deref() == Some(t.name());
            if !ours || t.error().is_some() {
                continue;
            }
            self.partition_counts
                .insert(t.name().to_string(), t.partitions().len() as i32);
            for p in t.partitions() {
                let key = (t.name().to_string(), p.id());
                if self.assigned.contains(&key) {
                    continue;
                }
                let offset = applied
                    .get(&key)
                    .map_or(Offset::Beginning, |s| Offset::Offset(s.next_offset));
                tpl.add_partition_offset(t.name(), p.id(), offset)
                    .map_err(|e| SinkError::Kafka(e.to_string()))?;
                added.push(key);
            }
        }
        if added.is_empty() {
            return Ok(0);
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| SinkError::Kafka(format!("cannot assign partitions: {}", describe(&e))))?;
        let n = added.len();
        for key in added {
            tracing::info!(topic = %key.0, partition = key.1, "consuming");
            self.assigned.insert(key);
        }
        Ok(n)
    }

    /// Whether partition 0 of `topic` holds records (a topic not created
    /// yet holds none).
    pub fn holds_records(&self, topic: &str) -> Result<bool, SinkError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| SinkError::Kafka(format!("cannot list topics: {}", describe(&e))))?;
        if metadata
            .topics()
            .first()
            .is_none_or(|t| t.error().is_some() || t.partitions().is_empty())
        {
            return Ok(false);
        }
        let (low, high) = self
            .consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .map_err(|e| {
                SinkError::Kafka(format!(
                    "cannot read the offsets of {topic}: {}",
                    describe(&e)
                ))
            })?;
        Ok(high > low)
    }

    /// Whether a table topic is assigned.
    pub fn has_table_topics(&self) -> bool {
        self.assigned
            .iter()
            .any(|(t, _)| topics::is_table_topic(&self.prefix, t))
    }

    /// The number of partitions of a topic, if it has been listed.
    pub fn partitions(&self, topic: &str) -> Option<i32> {
        self.partition_counts.get(topic).copied()
    }

    /// Where the consumer is in each assigned partition: the offset after
    /// the last record it handed over, or past the commit markers and
    /// aborted records that follow it.
    pub fn positions(&self) -> HashMap<Partition, i64> {
        let Ok(tpl) = self.consumer.position() else {
            return HashMap::new();
        };
        tpl.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect()
    }

    /// Stops fetching a partition (held where a schema change falls).
    pub fn pause(&self, (topic, partition): &Partition) -> Result<(), SinkError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, *partition);
        self.consumer.pause(&tpl).map_err(|e| {
            SinkError::Kafka(format!(
                "cannot pause {topic} [{partition}]: {}",
                describe(&e)
            ))
        })
    }

    /// Fetches a partition again from `offset`.
    pub fn resume_at(&self, (topic, partition): &Partition, offset: i64) -> Result<(), SinkError> {
        self.consumer
            .seek(
                topic,
                *partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            )
            .map_err(|e| {
                SinkError::Kafka(format!(
                    "cannot seek {topic} [{partition}]: {}",
                    describe(&e)
                ))
            })?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, *partition);
        self.consumer.resume(&tpl).map_err(|e| {
            SinkError::Kafka(format!(
                "cannot resume {topic} [{partition}]: {}",
                describe(&e)
            ))
        })
    }

    /// Commits offsets to the consumer group, for lag monitoring only.
    pub fn commit_hint(&self, applied: &[(&Partition, &PartitionState)]) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), state) in applied {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(state.next_offset));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "offset commit (a monitoring hint) failed");
        }
    }
}

/// The schema-changes topic, read by a consumer of its own (see the
/// module's essay).
pub struct SchemaFeed {
    consumer: Arc<BaseConsumer>,
    /// A `read_uncommitted` client, for the end of the topic counting
    /// records not committed yet.
    ends: Arc<BaseConsumer>,
    topic: String,
    /// The offset after the last record read (or where reading started).
    next: i64,
    assigned: bool,
}

/// How long a schema-changes record not committed yet is waited for before
/// the wait is logged.
const UNCOMMITTED_NOTICE: Duration = Duration::from_secs(5);

impl SchemaFeed {
    /// Reads from `start`, the offset after the last schema change applied.
    pub fn new(client_config: &ClientConfig, prefix: &str, start: i64) -> Result<Self, SinkError> {
        let create = |isolation: &str| -> Result<Arc<BaseConsumer>, SinkError> {
            let mut c = client_config.clone();
            c.set("group.id", "tributary-schema-changes")
                .set("enable.auto.commit", "false")
                // A head removed by retention: from what is left, never
                // from the end.
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "false")
                .set("fetch.wait.max.ms", "10")
                .set("isolation.level", isolation);
            c.create().map(Arc::new).map_err(|e| {
                SinkError::Kafka(format!("cannot create the schema-changes consumer: {e}"))
            })
        };
        Ok(Self {
            consumer: create("read_committed")?,
            ends: create("read_uncommitted")?,
            topic: topics::schema_changes_topic(prefix),
            next: start,
            assigned: false,
        })
    }

    /// Every schema change written before this call and not read yet, as
    /// (offset, value): the topic is read up to its end as of now. Waits
    /// while a record there is not committed yet; returns early, with what
    /// it has, once `stop` is set.
    pub async fn catch_up(
        &mut self,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Vec<(i64, Vec<u8>)>, SinkError> {
        let (ends, topic) = (self.ends.clone(), self.topic.clone());
        let end = tokio::task::spawn_blocking(move || {
            change_stream::kafka::watermarks(&*ends, &topic, 0, Duration::from_secs(30))
        })
        .await
        .expect("blocking task")
        .map_err(|e| SinkError::Kafka(e.to_string()))?
        .1;
        let mut out = Vec::new();
        if self.next >= end {
            return Ok(out);
        }
        if !self.assigned {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, 0, Offset::Offset(self.next))
                .map_err(|e| SinkError::Kafka(e.to_string()))?;
            self.consumer.assign(&tpl).map_err(|e| {
                SinkError::Kafka(format!("cannot assign {}: {}", self.topic, describe(&e)))
            })?;
            self.assigned = true;
        }
        let started = std::time::Instant::now();
        let mut noticed = false;
        while self.next < end && !*stop.borrow() {
            let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
            let (record, position) = tokio::task::spawn_blocking(move || {
                let record = match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => Some((m.offset(), m.payload().map(<[u8]>::to_vec))),
                    Some(Err(e)) if change_stream::kafka::is_fatal(&e) => return Err(e),
                    _ => None,
                };
                let position = consumer.position().ok().and_then(|tpl| {
                    match tpl.find_partition(&topic, 0).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    }
                });
                Ok((record, position))
            })
            .await
            .expect("blocking task")
            .map_err(|e| {
                SinkError::Kafka(format!("cannot read {}: {}", self.topic, describe(&e)))
            })?;
            if let Some((offset, payload)) = record {
                self.next = self.next.max(offset + 1);
                if let Some(p) = payload {
                    let p = change_stream::registry::unframed(p)
                        .await
                        .map_err(crate::error::from_registry)?;
                    out.push((offset, p));
                }
            }
            // Past commit markers and aborted records too.
            if let Some(p) = position {
                self.next = self.next.max(p);
            }
            if !noticed && started.elapsed() > UNCOMMITTED_NOTICE {
                noticed = true;
                tracing::info!(topic = %self.topic, offset = self.next, end, "waiting for a schema change not committed yet (the source connector is in the middle of a Kafka transaction, or stopped in one, which is aborted when it starts again)");
            }
        }
        Ok(out)
    }
}
