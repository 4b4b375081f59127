//! Consuming the table topics of one prefix.
//!
//! Partitions are assigned by the sink itself (no group rebalancing): every
//! partition of every topic `<prefix>.<database>.<table>`, found by listing
//! the cluster's topics at start and every `kafka.topic_refresh_secs`, starts
//! at the offset the destination's state table gives, or at the beginning.
//! The consumer group is used only to commit offsets for monitoring. The
//! schema-changes topic is consumed too, and, when transactions are kept
//! whole, the transaction topic.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use change_stream::kafka::describe;
use change_stream::topics;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaSection;
use crate::error::SinkError;
use crate::state::{Partition, PartitionState};

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
            let ours = topics::is_table_topic(&self.prefix, t.name())
                || t.name() == schema_changes
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

    /// Stops fetching a partition (held at a schema-change marker).
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
