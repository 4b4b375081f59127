//! Intake: consumed records into a batch.
//!
//! Up to `apply.batch_max_records` records or `apply.batch_max_bytes` bytes
//! are taken, or what arrives within `apply.batch_linger_ms` of the first.
//! Before any of them is taken, the schema-changes topic is read up to its
//! end as of then (`consume.rs`), so that every schema change written
//! before them is queued (`ddl.rs`) and they can be placed by it. Then each
//! goes where it belongs:
//! - a record at or past the offset where a queued schema change falls in
//!   its partition holds the partition there (paused, fetched again from
//!   that offset once the statement is applied);
//! - a transaction boundary (`<prefix>.transaction`) to the ordering stage;
//! - a change record, decoded, mapped and filtered (`[[filter]]`), to the
//!   ordering stage, which holds a binlog record until its transaction is
//!   whole (`apply.consistency = "transaction"`), or into the batch as it
//!   comes.
//!
//! Whether a record is applied already, or sent twice by the source, is
//! the ordering stage's cursors' to say ([`Assembly`]), in both modes: the
//! one place that knows each partition's position.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use change_stream::schema_change::SchemaChange;
use change_stream::table::TableId;
use change_stream::topics;
use change_stream::transaction::TransactionEvent;
use rdkafka::Message;
use tokio::sync::watch;

use crate::apply::Change;
use crate::config::Config;
use crate::consume::{Input, SchemaFeed};
use crate::ddl::{DdlQueue, Pending};
use crate::decode::Registry;
use crate::error::SinkError;
use crate::lanes::Lanes;
use crate::mapping::Mapping;
use crate::order::Assembly;
use crate::state::{record_order, Partition, PartitionState};

/// The longest a batch waits for its first record.
const SCHEMA_CHANGES_EVERY: Duration = Duration::from_secs(1);

/// What one round of intake collected.
pub struct Batch {
    /// Changes to apply as they come, each with the lane of its topic.
    pub changes: Vec<(usize, Change)>,
    /// Partitions consumed from (their positions may have moved).
    pub moved: HashSet<Partition>,
    /// Record bytes taken.
    pub bytes: usize,
}

/// A record as consumed, kept until the schema changes before it are read:
/// its payload is a range of the batch's buffer.
struct Consumed {
    key: Partition,
    offset: i64,
    payload: Option<std::ops::Range<usize>>,
}

pub struct Intake {
    pub input: Input,
    schema_feed: SchemaFeed,
    /// The records of a batch and their payloads, kept from batch to batch
    /// with their capacity: filled afresh, they had the kernel zero new
    /// pages for every batch.
    consumed: Vec<Consumed>,
    payloads: Vec<u8>,
    prefix: String,
    mapping: Mapping,
    /// `[[filter]]`: INSERT, UPDATE, DELETE allowed, per source table.
    row_ops: HashMap<TableId, [bool; 3]>,
    schema_changes: String,
    /// The schema of schema changes: a record of a table topic with it was
    /// written by an earlier version (a marker), and is passed over.
    schema_change_fingerprint: u64,
    /// Binlog records are held until their transactions are whole.
    whole: bool,
    /// Partitions not fetched while the held records are over budget
    /// (see `order.rs`), and the oldest transaction then: they are fetched
    /// again once it is applied.
    paused: HashSet<Partition>,
    paused_for: Option<String>,
    /// The destination's server id: a change made there (its record's
    /// `source.server_id`) came back around a ring and is passed over, as
    /// a native replica passes over events of its own server id.
    pub home: Option<u32>,
}

impl Intake {
    /// Intake from `input`, reading schema changes from `schema_feed`.
    pub fn new(config: &Config, input: Input, schema_feed: SchemaFeed) -> Result<Self, SinkError> {
        Ok(Self {
            input,
            schema_feed,
            consumed: Vec::new(),
            payloads: Vec::new(),
            prefix: config.kafka.topic_prefix.clone(),
            mapping: config.mapping()?,
            row_ops: HashMap::new(),
            schema_changes: topics::schema_changes_topic(&config.kafka.topic_prefix),
            schema_change_fingerprint: change_stream::schema_change::schema().fingerprint,
            whole: config.apply.consistency == crate::config::Consistency::Transaction,
            paused: HashSet::new(),
            paused_for: None,
            home: None,
        })
    }

    /// Keeps the held records within `budget` bytes: stops fetching the
    /// partitions the ordering stage names, and fetches them again once
    /// the oldest transaction has changed.
    pub fn bound(
        &mut self,
        assembly: &Assembly,
        ddl_queue: &DdlQueue,
        budget: usize,
    ) -> Result<(), SinkError> {
        if !self.paused.is_empty() && assembly.head() != self.paused_for.as_deref() {
            for p in self.paused.drain() {
                self.input.resume_at(&p, assembly.next_offset(&p))?;
            }
        }
        for p in assembly.over(budget) {
            if !ddl_queue.is_held(&p) && !self.paused.contains(&p) {
                tracing::debug!(topic = %p.0, partition = p.1, "over the budget of held records: not fetched until the oldest transaction is applied");
                self.input.pause(&p)?;
                self.paused.insert(p);
                self.paused_for = assembly.head().map(str::to_string);
            }
        }
        Ok(())
    }

    /// Whether a partition is not fetched for the budget of held records
    /// (what it delivered past its position was dropped).
    pub fn is_paused(&self, p: &Partition) -> bool {
        self.paused.contains(p)
    }

    /// Collects one batch; waits up to `idle` for its first record.
    #[allow(clippy::too_many_arguments)] // the stages' state, lent for one batch
    pub async fn batch(
        &mut self,
        config: &Config,
        registry: &mut Registry,
        assembly: &mut Assembly,
        ddl_queue: &mut DdlQueue,
        applied: &HashMap<Partition, PartitionState>,
        lanes: &mut Lanes,
        shutdown: &mut watch::Receiver<bool>,
        idle: Duration,
    ) -> Result<Batch, SinkError> {
        // Schema changes that name no table (views, routines) come with no
        // record: the schema-changes topic is looked at this often at least.
        let idle = idle.min(SCHEMA_CHANGES_EVERY);
        let mut consumed = std::mem::take(&mut self.consumed);
        let mut payloads = std::mem::take(&mut self.payloads);
        consumed.clear();
        payloads.clear();
        let batch = match self
            .collect(config, lanes, shutdown, idle, &mut consumed, &mut payloads)
            .await
        {
            Ok(()) => {
                self.take_all(
                    config, registry, assembly, ddl_queue, applied, lanes, shutdown, &consumed,
                    &payloads,
                )
                .await
            }
            Err(e) => Err(e),
        };
        self.consumed = consumed;
        self.payloads = payloads;
        batch
    }

    /// Takes the records of a batch, once every schema change written
    /// before them is queued.
    #[allow(clippy::too_many_arguments)] // the stages' state, lent for one batch
    async fn take_all(
        &mut self,
        config: &Config,
        registry: &mut Registry,
        assembly: &mut Assembly,
        ddl_queue: &mut DdlQueue,
        applied: &HashMap<Partition, PartitionState>,
        lanes: &mut Lanes,
        shutdown: &mut watch::Receiver<bool>,
        consumed: &[Consumed],
        payloads: &[u8],
    ) -> Result<Batch, SinkError> {
        // Every schema change written before these records, queued first.
        // (Before the source connector has made the topic, only when
        // records wait for it.)
        let needed = consumed
            .iter()
            .any(|c| !assembly.is_transaction_topic(&c.key));
        if needed || self.input.partitions(&self.schema_changes).is_some() {
            for (offset, payload) in self.schema_feed.catch_up(shutdown).await? {
                self.queue_schema_change(ddl_queue, applied, offset, &payload)?;
            }
        }
        if *shutdown.borrow() {
            return Ok(Batch {
                changes: Vec::new(),
                moved: HashSet::new(),
                bytes: 0,
            });
        }
        // Sized once: growing it change by change copied it and had the
        // kernel zero fresh pages at every doubling.
        let mut batch = Batch {
            changes: Vec::with_capacity(consumed.len()),
            moved: HashSet::new(),
            bytes: 0,
        };
        for c in consumed {
            let payload = c.payload.clone().map(|r| &payloads[r]);
            self.take(
                config, registry, assembly, ddl_queue, lanes, &mut batch, c, payload,
            )
            .await?;
        }
        Ok(batch)
    }

    /// The records of one batch, as consumed, into `out` and `payloads`.
    async fn collect(
        &mut self,
        config: &Config,
        lanes: &mut Lanes,
        shutdown: &mut watch::Receiver<bool>,
        idle: Duration,
        out: &mut Vec<Consumed>,
        payloads: &mut Vec<u8>,
    ) -> Result<(), SinkError> {
        let linger = Duration::from_millis(config.apply.batch_linger_ms);
        let mut bytes = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        while out.len() < config.apply.batch_max_records && bytes < config.apply.batch_max_bytes {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
                None => idle,
            };
            let msg = tokio::select! {
                m = tokio::time::timeout(wait, self.input.consumer.recv()) => m,
                _ = shutdown.changed() => break,
                _ = lanes.failed() => break, // the loop checks at once
            };
            let msg = match msg {
                Err(_) => break,
                // The client retries transport failures itself.
                Ok(Err(e)) if !change_stream::kafka::is_fatal(&e) => {
                    tracing::debug!(error = %e, "the consumer reported a transient error");
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(SinkError::Kafka(format!(
                        "cannot consume: {}",
                        change_stream::kafka::describe(&e)
                    )))
                }
                Ok(Ok(m)) => m,
            };
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
            let payload = match msg.payload() {
                None => None,
                Some(p) => {
                    let start = payloads.len();
                    // Schema-registry mode: single-object encoded here on.
                    change_stream::registry::unframe(p, payloads)
                        .await
                        .map_err(crate::error::from_registry)?;
                    Some(start..payloads.len())
                }
            };
            bytes += payload.as_ref().map_or(0, |r| r.len());
            out.push(Consumed {
                key: (msg.topic().to_string(), msg.partition()),
                offset: msg.offset(),
                payload,
            });
        }
        Ok(())
    }

    /// Queues a schema change read at `offset`, unless it is applied or
    /// queued already (the source sent it again).
    fn queue_schema_change(
        &self,
        ddl_queue: &mut DdlQueue,
        applied: &HashMap<Partition, PartitionState>,
        offset: i64,
        payload: &[u8],
    ) -> Result<(), SinkError> {
        let st = applied
            .get(&(self.schema_changes.clone(), 0))
            .cloned()
            .unwrap_or_default();
        if offset < st.next_offset {
            return Ok(());
        }
        let change = SchemaChange::decode(payload).map_err(|e| {
            SinkError::Record(format!("{} offset {offset}: {e}", self.schema_changes))
        })?;
        let pending = Pending::new(&self.prefix, offset, change);
        if pending.order.is_some_and(|o| st.last.covers(&o)) || ddl_queue.has(&pending.change.id())
        {
            return Ok(()); // sent again by the source after its restart
        }
        ddl_queue.push(pending);
        Ok(())
    }

    /// Takes one consumed record.
    #[allow(clippy::too_many_arguments)] // the stages' state, lent for one record
    async fn take(
        &mut self,
        config: &Config,
        registry: &mut Registry,
        assembly: &mut Assembly,
        ddl_queue: &mut DdlQueue,
        lanes: &mut Lanes,
        batch: &mut Batch,
        &Consumed {
            ref key, offset, ..
        }: &Consumed,
        payload: Option<&[u8]>,
    ) -> Result<(), SinkError> {
        if ddl_queue.is_held(key) || self.paused.contains(key) {
            return Ok(()); // fetched again once it is let go
        }
        if assembly.consumed(key, offset) {
            return Ok(()); // already applied
        }
        if let Some(held) = ddl_queue.boundary(key).filter(|h| offset >= h.at) {
            // After a schema change not applied yet.
            ddl_queue.hold(key.clone(), held);
            self.input.pause(key)?;
            return Ok(());
        }
        if !batch.moved.contains(key) {
            batch.moved.insert(key.clone());
        }
        let Some(payload) = payload else {
            assembly.pass(key, offset, None);
            return Ok(()); // tombstone
        };
        if assembly.is_transaction_topic(key) {
            let event = TransactionEvent::decode(payload)
                .map_err(|e| SinkError::Record(format!("{} offset {offset}: {e}", key.0)))?;
            assembly.boundary(offset, event);
            return Ok(());
        }
        if change_stream::avro::split_single_object(payload)
            .is_ok_and(|(fp, _)| fp == self.schema_change_fingerprint)
        {
            // A schema-change marker an earlier version wrote into the
            // table topic: the change itself is on the schema-changes
            // topic.
            assembly.pass(key, offset, None);
            return Ok(());
        }
        batch.bytes += payload.len();
        let (mut change, allowed) = admit(
            config,
            &self.mapping,
            &mut self.row_ops,
            registry,
            key,
            offset,
            payload,
        )
        .await?;
        let allowed = allowed && self.home != Some(change.record.source.server_id);
        let order = record_order(&change.record);
        if order.is_some_and(|o| assembly.sent_twice(key, &o)) {
            assembly.pass(key, offset, None); // sent again by the source
            return Ok(());
        }
        let lane = lanes.lane(&key.0);
        let footprint = change.footprint();
        // The id moves out of the record: nothing reads it after.
        let id = change
            .record
            .transaction
            .as_mut()
            .filter(|_| self.whole)
            .map(|t| std::mem::take(&mut t.id));
        match id {
            Some(id) => assembly.hold(key, offset, order, id, (lane, change), allowed, footprint),
            None => {
                assembly.pass(key, offset, order);
                if allowed {
                    batch.changes.push((lane, change));
                }
            }
        }
        Ok(())
    }
}

/// Decodes a record of table topic partition `key` into a change of its
/// destination table; with whether `[[filter]]` lets its operation through.
async fn admit(
    config: &Config,
    mapping: &Mapping,
    row_ops: &mut HashMap<TableId, [bool; 3]>,
    registry: &mut Registry,
    key: &Partition,
    offset: i64,
    payload: &[u8],
) -> Result<(Change, bool), SinkError> {
    let (record, table) = registry.decode(payload).await.map_err(|e| match e {
        // Reading the schemas topic failed (the broker away): retried.
        SinkError::Kafka(_) => e,
        e => SinkError::Record(format!(
            "{} partition {} offset {offset}: {e}",
            key.0, key.1
        )),
    })?;
    let source = table.id.clone();
    let table = mapping.shape(&table);
    if table.id.database == config.destination.state_database {
        return Err(SinkError::Config {
                message: format!(
                    "records of database {} arrive, which is the sink's state database; set destination.state_database to another name",
                    table.id.database
                ),
            });
    }
    let ops = match row_ops.get(&source) {
        Some(ops) => *ops,
        None => {
            let ops = ["INSERT", "UPDATE", "DELETE"].map(|o| config.allows(&source, o));
            row_ops.insert(source.clone(), ops);
            ops
        }
    };
    let allowed = match record.op {
        change_stream::event::Op::Read | change_stream::event::Op::Create => ops[0],
        change_stream::event::Op::Update => ops[1],
        change_stream::event::Op::Delete => ops[2],
    };
    Ok((
        Change {
            table,
            source,
            record,
        },
        allowed,
    ))
}
