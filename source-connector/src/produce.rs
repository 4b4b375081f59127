//! Writing records to Kafka, and storing the position once they are safe.
//!
//! Records are handed to an idempotent producer without waiting: librdkafka
//! batches and pipelines them, retries without duplicates and keeps their
//! order per partition. Each record is numbered in send order, and its
//! number is all the producer carries for it (no future, no allocation):
//! librdkafka's delivery callback marks the number acknowledged ([`Acks`]),
//! and since deliveries to different partitions come back in any order,
//! what counts is the *low watermark*, the count of records acknowledged
//! from the first without a gap. A *checkpoint* (the position reached after
//! a transaction or a snapshot chunk) carries the number of the next
//! record; once the watermark reaches it, every record sent before it is
//! acknowledged and its position becomes the one to store. A tracker task
//! keeps the checkpoints in order and writes the latest acknowledged one
//! to the positions topic every `kafka.position_interval_ms` and on
//! shutdown.
//!
//! A record the broker refuses for good (too large, no such topic) stops the
//! connector with an error naming its topic, partition and size; the
//! position stays before it, so nothing after it is skipped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use change_stream::avro::AvroSchema;
use change_stream::kafka::{describe, TopicSpec};
use change_stream::topics;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::checkpoint::{StoredPosition, POSITION_KEY};
use crate::config::{KafkaSection, OversizedPolicy};
use crate::error::SourceError;

/// What the tracker is told, each with the number of the next record: it
/// applies once every record before that is acknowledged.
enum Pending {
    Checkpoint(u64, Box<StoredPosition>),
    Flush(u64, oneshot::Sender<Option<StoredPosition>>),
}

/// The delivery number of the position records the tracker writes (one at
/// a time, outside the numbering of the others).
const POSITION_RECORD: usize = usize::MAX;

/// What librdkafka's delivery callback and the tracker share.
#[derive(Default)]
struct Acks {
    state: Mutex<AckState>,
    /// Told when the watermark reaches `wanted`, on a failure, and when the
    /// position record is delivered.
    changed: Notify,
}

#[derive(Default)]
struct AckState {
    /// Every record numbered below this is acknowledged.
    below: u64,
    /// Whether each record from `below` on is acknowledged yet.
    ahead: VecDeque<bool>,
    /// The watermark the tracker waits for.
    wanted: Option<u64>,
    /// The first delivery that failed for good.
    failure: Option<SourceError>,
    /// The outcome of the last position record.
    position: Option<Result<(), String>>,
}

impl AckState {
    fn ack(&mut self, seq: u64) -> bool {
        let Some(i) = seq.checked_sub(self.below) else {
            return false;
        };
        let i = i as usize;
        if i >= self.ahead.len() {
            self.ahead.resize(i + 1, false);
        }
        self.ahead[i] = true;
        while self.ahead.front() == Some(&true) {
            self.ahead.pop_front();
            self.below += 1;
        }
        self.wanted.is_some_and(|w| self.below >= w)
    }
}

/// The producer's context: deliveries are marked in [`Acks`].
struct Deliveries {
    acks: Arc<Acks>,
    oversized: OversizedPolicy,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let mut st = self.acks.state.lock().expect("acks lock");
        if seq == POSITION_RECORD {
            st.position = Some(result.as_ref().map(|_| ()).map_err(|(e, _)| describe(e)));
            drop(st);
            self.acks.changed.notify_one();
            return;
        }
        let failure = match result {
            Ok(_) => None,
            // The producer retries transient failures for ever
            // (message.timeout.ms = 0); what comes back is final.
            Err((e, m)) if self.oversized == OversizedPolicy::Skip && too_large(e) => {
                let what = describe_message(m);
                tracing::warn!(record = %what, error = %e, "record the broker refuses as too large skipped (kafka.oversized_records = skip); the destination will lack this change");
                OVERSIZED_SKIPPED.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err((e, m)) => {
                let hint = if too_large(e) {
                    "; raise the broker's message.max.bytes and the topic's max.message.bytes, or set kafka.oversized_records = \"skip\""
                } else {
                    ""
                };
                Some(SourceError::Refused(format!(
                    "the broker refused the record of {}: {}{hint}",
                    describe_message(m),
                    describe(e)
                )))
            }
        };
        let wake = match failure {
            None => st.ack(seq as u64),
            Some(e) => {
                st.failure.get_or_insert(e);
                true
            }
        };
        drop(st);
        if wake {
            self.acks.changed.notify_one();
        }
    }
}

type KafkaProducer = ThreadedProducer<Deliveries>;

/// Settings of created table topics.
#[derive(Clone, Debug)]
struct TopicDefaults {
    partitions: i32,
    replication_factor: i32,
    config: std::collections::BTreeMap<String, String>,
}

/// The Kafka side of the source connector.
pub struct Output {
    producer: Arc<KafkaProducer>,
    /// The number of the next record.
    next: AtomicU64,
    client_config: ClientConfig,
    /// Settings of the table topics the connector creates.
    table_topics: TopicDefaults,
    pending: mpsc::Sender<Pending>,
    tracker: Option<JoinHandle<Result<(), SourceError>>>,
    prefix: String,
    published_schemas: std::collections::HashSet<u64>,
    message_max_bytes: u64,
    oversized: OversizedPolicy,
}

impl Output {
    pub fn new(
        client_config: ClientConfig,
        kafka: &KafkaSection,
        initial: Option<StoredPosition>,
    ) -> Result<Self, SourceError> {
        let max_records = max_buffered_records(kafka.buffer_max_bytes);
        let mut pc = client_config.clone();
        pc.set("enable.idempotence", "true")
            .set("acks", "all")
            // Never give up on a record while the broker is away: the
            // producer waits, reading pauses when the buffer is full, and
            // order is kept.
            .set("message.timeout.ms", "0")
            .set("compression.type", &kafka.compression)
            .set("linger.ms", "10")
            .set("batch.size", "1000000")
            .set("batch.num.messages", "10000")
            .set(
                "message.max.bytes",
                (kafka.message_max_bytes + 4096).to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                (kafka.buffer_max_bytes / 1024).max(1).to_string(),
            )
            .set("queue.buffering.max.messages", max_records.to_string());
        for (k, v) in &kafka.properties {
            pc.set(k, v);
        }
        let acks = Arc::new(Acks::default());
        let producer: KafkaProducer = pc
            .create_with_context(Deliveries {
                acks: acks.clone(),
                oversized: kafka.oversized_records,
            })
            .map_err(|e| SourceError::Kafka(format!("cannot create the producer: {e}")))?;
        let producer = Arc::new(producer);
        // Checkpoints and flushes: one per transaction at most.
        let (tx, rx) = mpsc::channel(4096);
        let tracker = tokio::spawn(track(
            rx,
            acks,
            producer.clone(),
            topics::positions_topic(&kafka.topic_prefix),
            Duration::from_millis(kafka.position_interval_ms),
            initial,
        ));
        Ok(Self {
            producer,
            next: AtomicU64::new(0),
            client_config,
            table_topics: TopicDefaults {
                partitions: kafka.partitions,
                replication_factor: kafka.replication_factor,
                config: kafka.table_topic_config.clone(),
            },
            pending: tx,
            tracker: Some(tracker),
            prefix: kafka.topic_prefix.clone(),
            published_schemas: Default::default(),
            message_max_bytes: kafka.message_max_bytes,
            oversized: kafka.oversized_records,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates the topics of these tables (topic name, whether the table
    /// has a key) that do not exist yet. The topic of a table without a key
    /// is never compacted: Kafka refuses records without a key on a
    /// compacted topic, and compaction would keep one record per key. So it
    /// keeps every record (`cleanup.policy=delete`, and `retention.ms=-1`
    /// unless `kafka.table_topic_config` sets another), and an existing one,
    /// created while the table had a key, is set so.
    pub async fn ensure_table_topics(&self, tables: &[(String, bool)]) -> Result<(), SourceError> {
        let specs: Vec<TopicSpec> = tables
            .iter()
            .map(|(name, keyed)| {
                let mut config = self.table_topics.config.clone();
                if !keyed {
                    config.insert("cleanup.policy".into(), "delete".into());
                    config
                        .entry("retention.ms".into())
                        .or_insert_with(|| "-1".into());
                }
                TopicSpec {
                    name: name.clone(),
                    partitions: self.table_topics.partitions,
                    replication_factor: self.table_topics.replication_factor,
                    config,
                }
            })
            .collect();
        let err = |e: change_stream::Error| SourceError::Kafka(e.to_string());
        change_stream::kafka::ensure_topics(&self.client_config, &specs)
            .await
            .map_err(err)?;
        let unkeyed: Vec<TopicSpec> = specs
            .into_iter()
            .zip(tables)
            .filter(|(_, (_, keyed))| !keyed)
            .map(|(spec, _)| spec)
            .collect();
        change_stream::kafka::set_topic_configs(&self.client_config, &unkeyed)
            .await
            .map_err(err)
    }

    /// Whether a topic exists (from the list of every topic, which, unlike
    /// asking for the topic by name, cannot create it).
    pub fn topic_exists(&self, topic: &str) -> Result<bool, SourceError> {
        let metadata = tokio::task::block_in_place(|| {
            self.producer
                .client()
                .fetch_metadata(None, Duration::from_secs(30))
        })
        .map_err(|e| SourceError::Kafka(format!("cannot list the topics: {}", describe(&e))))?;
        Ok(metadata.topics().iter().any(|t| t.name() == topic))
    }

    /// The number of partitions of a topic.
    pub fn partitions(&self, topic: &str) -> Result<i32, SourceError> {
        let metadata = tokio::task::block_in_place(|| {
            self.producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(30))
        })
        .map_err(|e| {
            SourceError::Kafka(format!(
                "cannot read the metadata of {topic}: {}",
                describe(&e)
            ))
        })?;
        Ok(metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32))
    }

    /// Whether a record of `size` bytes is skipped rather than sent
    /// (`kafka.oversized_records = "skip"`).
    pub fn skips(&self, size: usize) -> bool {
        size as u64 > self.message_max_bytes && self.oversized == OversizedPolicy::Skip
    }

    /// Sends one record. `what` names it in errors (table and key).
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        partition: Option<i32>,
        what: impl FnOnce() -> String,
    ) -> Result<(), SourceError> {
        let size = key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len);
        if size as u64 > self.message_max_bytes {
            let what = what();
            if self.oversized == OversizedPolicy::Skip {
                tracing::warn!(record = %what, size, limit = self.message_max_bytes, "record larger than kafka.message_max_bytes skipped (kafka.oversized_records = skip); the destination will lack this change");
                OVERSIZED_SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
            return Err(SourceError::Refused(format!(
                "record of {what} is {size} bytes, more than kafka.message_max_bytes ({}); raise it (and the broker's message.max.bytes and the topic's max.message.bytes), or set kafka.oversized_records = \"skip\"",
                self.message_max_bytes
            )));
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, seq as usize);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let mut backoff = Duration::from_millis(1);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // The producer's buffer is full: wait for the broker.
                    record = r;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                    if self.pending.is_closed() {
                        return Err(self.tracker_gone());
                    }
                }
                Err((e, _)) => {
                    return Err(SourceError::Refused(format!(
                        "cannot send record of {} ({size} bytes) to {topic}: {}",
                        what(),
                        describe(&e)
                    )))
                }
            }
        }
    }

    /// Publishes a schema on the schemas topic (once per process).
    pub async fn publish_schema(&mut self, schema: &AvroSchema) -> Result<(), SourceError> {
        if !self.published_schemas.insert(schema.fingerprint) {
            return Ok(());
        }
        let topic = topics::schemas_topic(&self.prefix);
        let key = schema.fingerprint_hex();
        self.send(
            &topic,
            Some(key.as_bytes()),
            Some(schema.json.as_bytes()),
            None,
            || format!("schema {key}"),
        )
        .await
    }

    /// Marks the position reached once every record sent so far is
    /// acknowledged.
    pub async fn checkpoint(&self, position: StoredPosition) -> Result<(), SourceError> {
        let next = self.next.load(Ordering::Relaxed);
        self.pending
            .send(Pending::Checkpoint(next, Box::new(position)))
            .await
            .map_err(|_| self.tracker_gone())
    }

    /// Waits until every record sent so far is acknowledged and the latest
    /// checkpoint is stored; returns that position.
    pub async fn flush(&mut self) -> Result<Option<StoredPosition>, SourceError> {
        let (tx, rx) = oneshot::channel();
        let next = self.next.load(Ordering::Relaxed);
        if self.pending.send(Pending::Flush(next, tx)).await.is_err() {
            return Err(self.join_tracker().await);
        }
        match rx.await {
            Ok(p) => Ok(p),
            Err(_) => Err(self.join_tracker().await),
        }
    }

    fn tracker_gone(&self) -> SourceError {
        SourceError::Kafka("the delivery tracker stopped; see the previous error".into())
    }

    /// The tracker's own error, once it has stopped.
    async fn join_tracker(&mut self) -> SourceError {
        match self.tracker.take() {
            Some(h) => match h.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => self.tracker_gone(),
                Err(e) => SourceError::Kafka(format!("delivery tracker failed: {e}")),
            },
            None => self.tracker_gone(),
        }
    }

    /// The error that stopped the tracker, if it has stopped.
    pub async fn failure(&mut self) -> Option<SourceError> {
        if self.tracker.as_ref().is_some_and(|h| h.is_finished()) {
            Some(self.join_tracker().await)
        } else {
            None
        }
    }

    /// Flushes and stores the final position.
    pub async fn close(mut self) -> Result<Option<StoredPosition>, SourceError> {
        let last = self.flush().await?;
        let _ = self.producer.flush(Duration::from_secs(30));
        Ok(last)
    }
}

/// How many records may wait for the broker at once. Each costs some
/// hundreds of bytes beyond its own (librdkafka's message and its
/// bookkeeping), so small records are bounded by count as well as by
/// `kafka.buffer_max_bytes`: one record per KiB of the budget.
fn max_buffered_records(buffer_max_bytes: u64) -> usize {
    (buffer_max_bytes / 1024).clamp(1_000, 1_000_000) as usize
}

/// Records skipped as oversized since the process started.
pub static OVERSIZED_SKIPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn track(
    mut rx: mpsc::Receiver<Pending>,
    acks: Arc<Acks>,
    producer: Arc<KafkaProducer>,
    positions_topic: String,
    interval: Duration,
    initial: Option<StoredPosition>,
) -> Result<(), SourceError> {
    let mut latest = initial.clone();
    let mut stored = initial;
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // What the acknowledged records let through, in order.
        let below = {
            let mut st = acks.state.lock().expect("acks lock");
            if let Some(e) = st.failure.take() {
                return Err(e);
            }
            st.below
        };
        while let Some(front) = waiting.front() {
            let at = match front {
                Pending::Checkpoint(at, _) | Pending::Flush(at, _) => *at,
            };
            if at > below {
                break;
            }
            match waiting.pop_front().expect("a front") {
                Pending::Checkpoint(_, p) => latest = Some(*p),
                Pending::Flush(_, done) => {
                    store(&producer, &acks, &positions_topic, &latest, &mut stored).await?;
                    let _ = done.send(latest.clone());
                }
            }
        }
        {
            let mut st = acks.state.lock().expect("acks lock");
            st.wanted = waiting.front().map(|p| match p {
                Pending::Checkpoint(at, _) | Pending::Flush(at, _) => *at,
            });
            // Acknowledged in between: look again at once.
            if st.wanted.is_some_and(|w| st.below >= w) || st.failure.is_some() {
                continue;
            }
        }
        tokio::select! {
            item = rx.recv() => match item {
                Some(p) => waiting.push_back(p),
                None => {
                    store(&producer, &acks, &positions_topic, &latest, &mut stored).await?;
                    return Ok(());
                }
            },
            _ = acks.changed.notified() => {}
            _ = ticker.tick() => store(&producer, &acks, &positions_topic, &latest, &mut stored).await?,
        }
    }
}

/// A record the broker refused, as the producer hands it back: its topic
/// (which names the table), partition and size.
fn describe_message(m: &impl rdkafka::Message) -> String {
    let size = m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
    format!(
        "topic {} partition {} ({size} bytes{})",
        m.topic(),
        m.partition(),
        if m.payload().is_none() {
            ", a tombstone"
        } else {
            ""
        }
    )
}

fn too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge) | Some(RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

async fn store(
    producer: &KafkaProducer,
    acks: &Acks,
    topic: &str,
    latest: &Option<StoredPosition>,
    stored: &mut Option<StoredPosition>,
) -> Result<(), SourceError> {
    let Some(p) = latest else { return Ok(()) };
    if stored.as_ref() == Some(p) {
        return Ok(());
    }
    let failed =
        |e: String| SourceError::Kafka(format!("cannot store the position on {topic}: {e}"));
    let json = serde_json::to_vec(p).expect("position serializes");
    acks.state.lock().expect("acks lock").position = None;
    let mut record = BaseRecord::with_opaque_to(topic, POSITION_RECORD)
        .key(POSITION_KEY)
        .payload(&json);
    let mut backoff = Duration::from_millis(1);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
            Err((e, _)) => return Err(failed(describe(&e))),
        }
    }
    loop {
        let notified = acks.changed.notified();
        if let Some(outcome) = acks.state.lock().expect("acks lock").position.take() {
            outcome.map_err(failed)?;
            break;
        }
        notified.await;
    }
    *stored = Some(p.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_counts_acknowledged_records_without_a_gap() {
        let mut st = AckState {
            wanted: Some(3),
            ..AckState::default()
        };
        // Deliveries of two partitions come back interleaved.
        assert!(!st.ack(1));
        assert!(!st.ack(2));
        assert_eq!(st.below, 0);
        assert!(
            st.ack(0),
            "records 0..3 are all acknowledged: wake the tracker"
        );
        assert_eq!(st.below, 3);
        assert!(st.ahead.is_empty());
        st.wanted = Some(6);
        assert!(!st.ack(5));
        assert!(!st.ack(3));
        assert_eq!(st.below, 4);
        assert!(st.ack(4));
        assert_eq!(st.below, 6);
        // A number below the watermark (never sent twice) changes nothing.
        assert!(!st.ack(2));
        assert_eq!(st.below, 6);
    }
}
