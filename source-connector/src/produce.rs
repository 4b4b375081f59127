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
//!
//! ## Exactly once (`kafka.exactly_once`, the default)
//! The producer is then transactional: records go out in Kafka
//! transactions, and the position record that describes them is written in
//! the same transaction, so a `read_committed` consumer sees either both or
//! neither. After a `kill -9` the next process, with the same
//! `transactional.id`, has the broker abort what the dead one left open
//! before reading the position back; what it reads on from is exactly what
//! was committed, and nothing committed is sent again.
//!
//! A commit must fall where the stored position describes every record
//! before it: between source transactions, and between snapshot chunks.
//! The stretches where that does not hold are *units* ([`Unit`]): the
//! binlog reader holds one from a transaction's first event until it is
//! between transactions and either the tracker wants to commit or the
//! binlog has nothing ready; each snapshot connection holds one for a
//! chunk, from its first row to its checkpoint, or to a checkpoint of the
//! rows sent so far when a commit is wanted in the middle of it. The tracker commits every
//! `kafka.commit_interval_ms` (every second at least during the snapshot,
//! whose rows nobody waits for): it closes the [`Gate`] (no new unit
//! starts), waits until the open ones end, holds off every send while it
//! writes the latest position and commits, then opens the gate. A failed
//! attempt aborts the open transaction instead ([`Output::recover`]): the
//! connector reads on from the last committed position. A unit dropped
//! without being finished (its attempt failed inside it) has the next
//! commit turn into that abort, since the transaction holds part of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use change_stream::avro::AvroSchema;
use change_stream::kafka::{describe, TopicSpec};
use change_stream::registry::Registry;
use change_stream::topics;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, OwnedHeaders};
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
    /// Exactly once: drop what was sent since the last commit.
    Abort(oneshot::Sender<Option<StoredPosition>>),
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

/// Where units may start, and how many are open (exactly once).
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Notify,
}

#[derive(Default)]
struct GateState {
    open_units: usize,
    /// The tracker wants to commit: no new unit starts.
    closing: bool,
}

impl Gate {
    /// Waits until `ready` holds of the state, then applies `then`.
    async fn wait(&self, ready: impl Fn(&GateState) -> bool, then: impl Fn(&mut GateState)) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut st = self.state.lock().expect("gate lock");
                if ready(&st) {
                    then(&mut st);
                    return;
                }
            }
            changed.await;
        }
    }

    async fn enter(&self) {
        self.wait(|s| !s.closing, |s| s.open_units += 1).await;
    }

    fn leave(&self) {
        self.state.lock().expect("gate lock").open_units -= 1;
        self.changed.notify_waiters();
    }

    /// Closes the gate and waits until every open unit has ended.
    async fn close(&self) {
        self.state.lock().expect("gate lock").closing = true;
        self.wait(|s| s.open_units == 0, |_| {}).await;
    }

    fn open(&self) {
        self.state.lock().expect("gate lock").closing = false;
        self.changed.notify_waiters();
    }

    fn closing(&self) -> bool {
        self.state.lock().expect("gate lock").closing
    }
}

/// What senders and the tracker share when writing in Kafka transactions.
#[derive(Default)]
struct Transactions {
    gate: Gate,
    /// Held (shared) by every send, and exclusively by a commit: librdkafka
    /// refuses records while a transaction is being committed.
    sending: tokio::sync::RwLock<()>,
    /// Why the open transaction was aborted, until [`Output::recover`]:
    /// what the connector sends meanwhile would be lost.
    aborted: Mutex<Option<String>>,
    /// A unit ended without [`Unit::finish`] (its attempt failed): the open
    /// transaction holds part of it and must be aborted, not committed.
    abandoned: std::sync::atomic::AtomicBool,
}

/// A stretch of records the stored position cannot describe until it ends
/// (see the module's essay); no commit falls inside it. Ended by
/// [`Unit::finish`] once its position is checkpointed; dropped otherwise,
/// it has the open transaction aborted.
pub struct Unit(Option<Arc<Transactions>>);

impl Unit {
    /// Ends the unit, its position checkpointed.
    pub fn finish(mut self) {
        if let Some(t) = self.0.take() {
            t.gate.leave();
        }
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abandoned.store(true, Ordering::SeqCst);
            t.gate.leave();
        }
    }
}

/// The producer's context: deliveries are marked in [`Acks`].
struct Deliveries {
    acks: Arc<Acks>,
    oversized: OversizedPolicy,
    /// Exactly once: a failed delivery fails the transaction; one that
    /// timed out is aborted and read again rather than fatal.
    transactional: bool,
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
            Err((e, _)) if self.transactional && timed_out(e) => None,
            Err((e, m))
                if self.oversized == OversizedPolicy::Skip
                    && too_large(e)
                    && !self.transactional =>
            {
                let what = describe_message(m);
                tracing::warn!(record = %what, error = %e, "record the broker refuses as too large skipped (kafka.oversized_records = skip); the destination will lack this change");
                OVERSIZED_SKIPPED.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err((e, m)) => {
                let hint = if too_large(e) && self.transactional {
                    "; raise the broker's message.max.bytes and the topic's max.message.bytes, or lower kafka.message_max_bytes to them (larger records are then skipped before they are sent with kafka.oversized_records = \"skip\")"
                } else if too_large(e) {
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
    next: Arc<AtomicU64>,
    client_config: ClientConfig,
    /// Settings of the table topics the connector creates.
    table_topics: TopicDefaults,
    pending: mpsc::UnboundedSender<Pending>,
    /// What the tracker takes when it starts.
    unstarted: Option<(mpsc::UnboundedReceiver<Pending>, Arc<Acks>, Duration)>,
    tracker: Option<JoinHandle<Result<(), SourceError>>>,
    prefix: String,
    published_schemas: std::collections::HashSet<u64>,
    message_max_bytes: u64,
    oversized: OversizedPolicy,
    /// With exactly-once.
    transactions: Option<Arc<Transactions>>,
    /// The connector's own unit, when open (the binlog reader's).
    flow: Option<Unit>,
    /// Reads partitions' ends, committed or not ([`Output::topic_offsets`]).
    ends: std::sync::OnceLock<rdkafka::consumer::BaseConsumer>,
    /// Schema-registry mode: what turns records into the wire format.
    registry: Option<Arc<Registry>>,
}

/// How long a Kafka transaction may stay open: the broker's default
/// `transaction.max.timeout.ms`.
const TRANSACTION_TIMEOUT_MS: u64 = 900_000;

/// The producer's transactional id: one source connector per topic prefix.
pub fn transactional_id(prefix: &str) -> String {
    format!("{prefix}.source-connector")
}

impl Output {
    /// Creates the producer. With `kafka.exactly_once` this also has the
    /// broker end what an earlier process of the same transactional id left
    /// open (aborting it), so call it before reading the stored position.
    /// Nothing is sent until [`Output::start`].
    pub fn new(client_config: ClientConfig, kafka: &KafkaSection) -> Result<Self, SourceError> {
        let max_records = max_buffered_records(kafka.buffer_max_bytes);
        let transactional_id = transactional_id(&kafka.topic_prefix);
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
        if kafka.exactly_once {
            // A transaction holds a whole source transaction, however
            // large: the longest the broker allows by default. A record
            // cannot wait longer than its transaction.
            pc.set("transactional.id", &transactional_id)
                .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string())
                .set("message.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string());
        }
        for (k, v) in &kafka.properties {
            pc.set(k, v);
        }
        let acks = Arc::new(Acks::default());
        let producer: KafkaProducer = pc
            .create_with_context(Deliveries {
                acks: acks.clone(),
                oversized: kafka.oversized_records,
                transactional: kafka.exactly_once,
            })
            .map_err(|e| SourceError::Kafka(format!("cannot create the producer: {e}")))?;
        let producer = Arc::new(producer);
        let transactions = if kafka.exactly_once {
            let begin = |what: &str, e: KafkaError| {
                SourceError::Kafka(format!(
                    "cannot {what} Kafka transactions (transactional.id {transactional_id}): {}; the broker must allow transactions (its transaction.state.log settings), or set kafka.exactly_once = false",
                    describe(&e)
                ))
            };
            tokio::task::block_in_place(|| {
                producer
                    .init_transactions(Duration::from_secs(60))
                    .map_err(|e| begin("start", e))?;
                producer.begin_transaction().map_err(|e| begin("begin", e))
            })?;
            Some(Arc::new(Transactions::default()))
        } else {
            None
        };
        // Checkpoints and flushes, kept in the order they are made.
        let (tx, rx) = mpsc::unbounded_channel();
        let interval = if kafka.exactly_once {
            kafka.commit_interval_ms
        } else {
            kafka.position_interval_ms
        };
        Ok(Self {
            producer,
            next: Arc::new(AtomicU64::new(0)),
            client_config,
            table_topics: TopicDefaults {
                partitions: kafka.partitions,
                replication_factor: kafka.replication_factor,
                config: kafka.table_topic_config.clone(),
            },
            pending: tx,
            unstarted: Some((rx, acks, Duration::from_millis(interval))),
            tracker: None,
            prefix: kafka.topic_prefix.clone(),
            published_schemas: Default::default(),
            message_max_bytes: kafka.message_max_bytes,
            oversized: kafka.oversized_records,
            transactions,
            flow: None,
            ends: std::sync::OnceLock::new(),
            registry: None,
        })
    }

    /// Schema-registry mode: records sent from now on are in the wire
    /// format of `registry`.
    pub fn use_registry(&mut self, registry: Arc<Registry>) {
        self.registry = Some(registry);
    }

    /// Starts tracking from the stored position `initial`.
    pub fn start(&mut self, initial: Option<StoredPosition>) {
        let Some((rx, acks, interval)) = self.unstarted.take() else {
            return;
        };
        let topic = topics::positions_topic(&self.prefix);
        let producer = self.producer.clone();
        self.tracker = Some(match &self.transactions {
            None => tokio::spawn(track(rx, acks, producer, topic, interval, initial)),
            Some(t) => tokio::spawn(
                Committer {
                    rx,
                    acks,
                    producer,
                    topic,
                    transactions: t.clone(),
                    next: self.next.clone(),
                    committed_next: 0,
                    latest: initial.clone(),
                    stored: initial,
                }
                .run(interval),
            ),
        });
    }

    /// Whether records go out in Kafka transactions.
    pub fn exactly_once(&self) -> bool {
        self.transactions.is_some()
    }

    /// Starts a unit (see the module's essay) for a snapshot connection;
    /// waits while a commit is under way. `None` without exactly-once.
    pub async fn unit(&self) -> Option<Unit> {
        let t = self.transactions.as_ref()?;
        t.gate.enter().await;
        Some(Unit(Some(t.clone())))
    }

    /// Starts the connector's own unit, unless one is open.
    pub async fn begin_unit(&mut self) {
        if self.flow.is_none() {
            self.flow = self.unit().await;
        }
    }

    /// Ends the connector's own unit, its position checkpointed.
    pub fn end_unit(&mut self) {
        if let Some(unit) = self.flow.take() {
            unit.finish();
        }
    }

    /// Whether the connector's own unit is open.
    pub fn in_unit(&self) -> bool {
        self.flow.is_some()
    }

    /// Whether the tracker waits for the open units to end, to commit.
    pub fn commit_wanted(&self) -> bool {
        self.transactions.as_ref().is_some_and(|t| t.gate.closing())
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

    /// Waits until every record sent so far is delivered (not committed:
    /// with exactly-once they stay in the open transaction).
    pub async fn delivered(&self) -> Result<(), SourceError> {
        let mut backoff = Duration::from_millis(1);
        while self.producer.flush(Duration::ZERO).is_err() {
            if self.pending.is_closed() {
                return Err(self.tracker_gone());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(10));
        }
        Ok(())
    }

    /// For each partition of `topic`, the offset the next record sent to it
    /// gets at the earliest: its end, counting records not committed yet.
    /// After [`Output::delivered`], every record sent before is below it.
    pub fn topic_offsets(&self, topic: &str) -> Result<Vec<i64>, SourceError> {
        let ends = match self.ends.get() {
            Some(c) => c,
            None => {
                let mut cc = self.client_config.clone();
                cc.set("isolation.level", "read_uncommitted")
                    .set("group.id", "tributary-source-offsets")
                    .set("enable.auto.commit", "false");
                let c = cc.create().map_err(|e| {
                    SourceError::Kafka(format!("cannot create a client to read offsets: {e}"))
                })?;
                self.ends.get_or_init(|| c)
            }
        };
        let partitions = self.partitions(topic)?;
        tokio::task::block_in_place(|| {
            (0..partitions)
                .map(|p| {
                    change_stream::kafka::watermarks(ends, topic, p, Duration::from_secs(30))
                        .map(|(_, high)| high)
                        .map_err(|e| SourceError::Kafka(e.to_string()))
                })
                .collect()
        })
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
        self.send_with(topic, key, payload, partition, None, what)
            .await
    }

    /// [`Output::send`] with headers.
    pub async fn send_with(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        partition: Option<i32>,
        headers: Option<OwnedHeaders>,
        what: impl FnOnce() -> String,
    ) -> Result<(), SourceError> {
        // Schema-registry mode: the same datum behind the registry's header.
        // Boxed, out of line: the registry's HTTP futures are then not part
        // of every send's future, nor of its callers'.
        let framed;
        let (key, payload) = match &self.registry {
            None => (key, payload),
            Some(registry) => {
                framed = Box::pin(frame(registry, topic, [key, payload])).await?;
                (framed[0].as_deref(), framed[1].as_deref())
            }
        };
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
        // Exactly once: no record while a transaction is being committed,
        // and none into one that was aborted.
        let _sending = match &self.transactions {
            Some(t) => {
                let guard = t.sending.read().await;
                if let Some(why) = t.aborted.lock().expect("aborted lock").clone() {
                    return Err(SourceError::Kafka(why));
                }
                Some(guard)
            }
            None => None,
        };
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
        if let Some(h) = headers {
            record = record.headers(h);
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
                // The open transaction failed (a record timed out): the
                // attempt ends, and the transaction is aborted.
                Err((e, _))
                    if self.exactly_once()
                        && e.rdkafka_error_code() == Some(RDKafkaErrorCode::State) =>
                {
                    return Err(SourceError::Kafka(format!(
                        "the open Kafka transaction failed: {}",
                        describe(&e)
                    )))
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

    /// Publishes a schema on the schemas topic (once per process); in
    /// schema-registry mode it is registered as the first record that
    /// uses it is sent.
    pub async fn publish_schema(&mut self, schema: &AvroSchema) -> Result<(), SourceError> {
        if !self.published_schemas.insert(schema.fingerprint) {
            return Ok(());
        }
        if let Some(registry) = &self.registry {
            registry.know(schema);
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
    /// acknowledged (with exactly-once: the position the next commit
    /// stores). Positions are kept in the order of these calls.
    pub fn checkpoint(&self, position: StoredPosition) -> Result<(), SourceError> {
        let next = self.next.load(Ordering::Relaxed);
        self.pending
            .send(Pending::Checkpoint(next, Box::new(position)))
            .map_err(|_| self.tracker_gone())
    }

    /// Ends the connector's own unit, waits until every record sent so far
    /// is acknowledged (committed) and the latest checkpoint is stored;
    /// returns that position.
    pub async fn flush(&mut self) -> Result<Option<StoredPosition>, SourceError> {
        self.end_unit();
        let next = self.next.load(Ordering::Relaxed);
        self.request(|tx| Pending::Flush(next, tx)).await
    }

    /// Has what was sent so far reach consumers no later than what is sent
    /// next (schemas before the rows that use them). Inside the
    /// connector's own unit with exactly-once there is nothing to do: the
    /// commit that ends it makes both visible.
    pub async fn order(&mut self) -> Result<(), SourceError> {
        if self.exactly_once() && self.in_unit() {
            return Ok(());
        }
        self.flush().await.map(|_| ())
    }

    /// After a failed attempt, the position to read on from. With
    /// exactly-once the open transaction is aborted, and what was sent
    /// after the last commit is read again; without, every record sent is
    /// flushed and the latest acknowledged position returned.
    pub async fn recover(&mut self) -> Result<Option<StoredPosition>, SourceError> {
        if !self.exactly_once() {
            return self.flush().await;
        }
        // Dropped, not finished: what it sent is aborted.
        self.flow = None;
        self.request(Pending::Abort).await
    }

    async fn request(
        &mut self,
        pending: impl FnOnce(oneshot::Sender<Option<StoredPosition>>) -> Pending,
    ) -> Result<Option<StoredPosition>, SourceError> {
        let (tx, rx) = oneshot::channel();
        if self.pending.send(pending(tx)).is_err() {
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
    mut rx: mpsc::UnboundedReceiver<Pending>,
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
                Pending::Abort(_) => 0,
            };
            if at > below {
                break;
            }
            match waiting.pop_front().expect("a front") {
                Pending::Checkpoint(_, p) => latest = Some(*p),
                Pending::Flush(_, done) | Pending::Abort(done) => {
                    store(&producer, &acks, &positions_topic, &latest, &mut stored).await?;
                    let _ = done.send(latest.clone());
                }
            }
        }
        {
            let mut st = acks.state.lock().expect("acks lock");
            st.wanted = waiting.front().map(|p| match p {
                Pending::Checkpoint(at, _) | Pending::Flush(at, _) => *at,
                Pending::Abort(_) => 0,
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

/// The tracker with exactly-once: commits the open Kafka transaction with
/// the latest position in it, every interval and on request.
struct Committer {
    rx: mpsc::UnboundedReceiver<Pending>,
    acks: Arc<Acks>,
    producer: Arc<KafkaProducer>,
    topic: String,
    transactions: Arc<Transactions>,
    /// The number of the next record (the connector's count).
    next: Arc<AtomicU64>,
    /// The number of the next record at the last commit.
    committed_next: u64,
    /// The latest checkpoint.
    latest: Option<StoredPosition>,
    /// The position in the last committed transaction.
    stored: Option<StoredPosition>,
}

impl Committer {
    async fn run(mut self, interval: Duration) -> Result<(), SourceError> {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = tokio::time::Instant::now();
        loop {
            tokio::select! {
                item = self.rx.recv() => match item {
                    None => return self.commit().await,
                    Some(item) => self.handle(item).await?,
                },
                _ = ticker.tick() => {
                    // Nobody waits for snapshot rows: fewer, larger
                    // transactions then.
                    let every = if self.latest.as_ref().is_some_and(|p| p.snapshot.is_some()) {
                        interval.max(Duration::from_secs(1))
                    } else {
                        interval
                    };
                    if last_commit.elapsed() + interval / 2 >= every {
                        last_commit = tokio::time::Instant::now();
                        self.commit().await?;
                        tracing::debug!(took_ms = last_commit.elapsed().as_millis() as u64, "committed");
                    }
                }
            }
        }
    }

    async fn handle(&mut self, item: Pending) -> Result<(), SourceError> {
        match item {
            Pending::Checkpoint(_, p) => self.latest = Some(*p),
            Pending::Flush(_, done) => {
                self.commit().await?;
                let _ = done.send(self.stored.clone());
            }
            Pending::Abort(done) => {
                self.abort().await?;
                let _ = done.send(self.stored.clone());
            }
        }
        Ok(())
    }

    /// Commits what was sent, with the latest position, at a point where
    /// no unit is open.
    async fn commit(&mut self) -> Result<(), SourceError> {
        let t = self.transactions.clone();
        t.gate.close().await;
        let sending = t.sending.write().await;
        // Every unit has ended: the positions they checkpointed are here.
        let mut replies = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            match item {
                Pending::Checkpoint(_, p) => self.latest = Some(*p),
                other => replies.push(other),
            }
        }
        let next = self.next.load(Ordering::Relaxed);
        let result = if t.abandoned.swap(false, Ordering::SeqCst) {
            Err(SourceError::Kafka(
                "an attempt failed in the middle of a source transaction or a snapshot chunk"
                    .into(),
            ))
        } else if next == self.committed_next && self.latest == self.stored {
            Ok(())
        } else {
            self.commit_now().await
        };
        let outcome = match result {
            Ok(()) => {
                self.committed_next = next;
                if let Some(p) = &self.latest {
                    p.report();
                }
                self.stored = self.latest.clone();
                Ok(())
            }
            // What the transaction held is gone: the attempt reading on
            // must end and start again from the stored position.
            Err(e) if !matches!(e, SourceError::Refused(_)) && !fenced(&e) => {
                tracing::warn!(error = %e, "the Kafka transaction was aborted; reading on from the last committed position");
                let aborted = self.abort_now().await;
                *t.aborted.lock().expect("aborted lock") = Some(e.to_string());
                aborted
            }
            Err(e) => Err(e),
        };
        // Opened even when the tracker stops: the connector then meets
        // the closed channel rather than waiting at the gate.
        drop(sending);
        t.gate.open();
        outcome?;
        for item in replies {
            Box::pin(self.handle(item)).await?;
        }
        Ok(())
    }

    async fn commit_now(&mut self) -> Result<(), SourceError> {
        if let Some(p) = &self.latest {
            if Some(p) != self.stored.as_ref() {
                let json = serde_json::to_vec(p).expect("position serializes");
                let record = BaseRecord::with_opaque_to(&self.topic, POSITION_RECORD)
                    .key(POSITION_KEY)
                    .payload(&json);
                self.producer.send(record).map_err(|(e, _)| {
                    SourceError::Kafka(format!(
                        "cannot store the position on {}: {}",
                        self.topic,
                        describe(&e)
                    ))
                })?;
            }
        }
        // Every record delivered first: rdkafka's commit flushes by polling
        // for 100 ms at a time while anything is on its way.
        let mut backoff = Duration::from_millis(1);
        while self.producer.flush(Duration::ZERO).is_err() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(10));
        }
        let producer = self.producer.clone();
        let outcome = tokio::task::spawn_blocking(move || loop {
            match producer.commit_transaction(Duration::from_secs(60)) {
                Err(KafkaError::Transaction(e)) if e.is_retriable() => continue,
                Err(e) => return Err(e),
                Ok(()) => return producer.begin_transaction(),
            }
        })
        .await
        .expect("blocking task");
        // A record refused for good says more than the commit's error.
        if let Some(e) = self.acks.state.lock().expect("acks lock").failure.take() {
            return Err(e);
        }
        outcome.map_err(|e| committing(&e))
    }

    /// Drops what was sent since the last commit.
    async fn abort(&mut self) -> Result<(), SourceError> {
        let t = self.transactions.clone();
        t.gate.close().await;
        let sending = t.sending.write().await;
        while let Ok(item) = self.rx.try_recv() {
            if let Pending::Flush(_, done) | Pending::Abort(done) = item {
                let _ = done.send(self.stored.clone());
            }
        }
        t.abandoned.store(false, Ordering::SeqCst);
        let result = if t.aborted.lock().expect("aborted lock").take().is_some() {
            Ok(()) // aborted already, and a new transaction begun
        } else {
            self.abort_now().await
        };
        // Positions checkpointed since describe records that are gone.
        self.latest = self.stored.clone();
        self.committed_next = self.next.load(Ordering::Relaxed);
        drop(sending);
        t.gate.open();
        result
    }

    async fn abort_now(&mut self) -> Result<(), SourceError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || loop {
            match producer.abort_transaction(Duration::from_secs(60)) {
                Err(KafkaError::Transaction(e)) if e.is_retriable() => continue,
                Err(e) => return Err(e),
                Ok(()) => return producer.begin_transaction(),
            }
        })
        .await
        .expect("blocking task")
        .map_err(|e| committing(&e))?;
        self.acks.state.lock().expect("acks lock").failure = None;
        self.latest = self.stored.clone();
        self.committed_next = self.next.load(Ordering::Relaxed);
        Ok(())
    }
}

/// A key and a payload in the wire format of `registry`.
async fn frame(
    registry: &Registry,
    topic: &str,
    parts: [Option<&[u8]>; 2],
) -> Result<[Option<Vec<u8>>; 2], SourceError> {
    let mut both = [None, None];
    for (i, bytes) in parts.into_iter().enumerate() {
        if let Some(b) = bytes {
            both[i] = Some(
                registry
                    .frame(topic, i == 0, b)
                    .await
                    .map_err(registry_error)?,
            );
        }
    }
    Ok(both)
}

/// A registry that does not answer is waited for, as the broker is; one
/// that refuses a schema stops the connector.
fn registry_error(e: change_stream::Error) -> SourceError {
    match e {
        change_stream::Error::RegistryUnreachable(m) => SourceError::Kafka(m),
        e => SourceError::Config {
            message: e.to_string(),
        },
    }
}

/// A failed commit or abort in words an operator can act on.
fn committing(e: &KafkaError) -> SourceError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::ProducerFenced)
        | Some(RDKafkaErrorCode::Fenced)
        | Some(RDKafkaErrorCode::InvalidProducerEpoch) => SourceError::Refused(format!(
            "another source connector with the same kafka.topic_prefix took over (the broker fenced this one off): {}; run one source connector per prefix",
            describe(e)
        )),
        _ => SourceError::Kafka(format!("cannot commit the Kafka transaction: {}", describe(e))),
    }
}

fn fenced(e: &SourceError) -> bool {
    matches!(e, SourceError::Refused(m) if m.contains("fenced"))
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

fn timed_out(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageTimedOut)
            | Some(RDKafkaErrorCode::PurgeQueue)
            | Some(RDKafkaErrorCode::PurgeInflight)
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
    p.report();
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
