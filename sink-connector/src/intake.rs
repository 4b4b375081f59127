//! Intake: consumed records into a batch.
//!
//! Up to `apply.batch_max_records` records or `apply.batch_max_bytes` bytes
//! are taken, or what arrives within `apply.batch_linger_ms` of the first.
//! Each goes where it belongs:
//! - a schema change (`<prefix>.schema-changes`) to the DDL queue, which
//!   runs them in order (`ddl.rs`);
//! - a schema-change marker in a table topic holds its partition there
//!   (paused, fetched again past it once the statement is applied);
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
use crate::consume::Input;
use crate::ddl::{DdlQueue, Held, Pending};
use crate::decode::Registry;
use crate::error::SinkError;
use crate::lanes::Lanes;
use crate::mapping::Mapping;
use crate::order::Assembly;
use crate::state::{record_order, Partition, PartitionState, RecordOrder};

/// What one round of intake collected.
pub struct Batch {
    /// Changes to apply as they come, each with the lane of its topic.
    pub changes: Vec<(usize, Change)>,
    /// Partitions consumed from (their positions may have moved).
    pub moved: HashSet<Partition>,
    /// Record bytes taken.
    pub bytes: usize,
}

pub struct Intake {
    pub input: Input,
    mapping: Mapping,
    /// `[[filter]]`: INSERT, UPDATE, DELETE allowed, per source table.
    row_ops: HashMap<TableId, [bool; 3]>,
    schema_changes: String,
    marker_fingerprint: u64,
    /// Binlog records are held until their transactions are whole.
    whole: bool,
    /// Partitions not fetched while the held records are over budget
    /// (see `order.rs`), and the oldest transaction then: they are fetched
    /// again once it is applied.
    paused: HashSet<Partition>,
    paused_for: Option<String>,
}

impl Intake {
    pub fn new(config: &Config, input: Input) -> Result<Self, SinkError> {
        Ok(Self {
            input,
            mapping: config.mapping()?,
            row_ops: HashMap::new(),
            schema_changes: topics::schema_changes_topic(&config.kafka.topic_prefix),
            marker_fingerprint: change_stream::schema_change::schema().fingerprint,
            whole: config.apply.consistency == crate::config::Consistency::Transaction,
            paused: HashSet::new(),
            paused_for: None,
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
        let linger = Duration::from_millis(config.apply.batch_linger_ms);
        // Sized once: growing it change by change copied it and had the
        // kernel zero fresh pages at every doubling.
        let mut batch = Batch {
            changes: Vec::with_capacity(config.apply.batch_max_records.min(16_384)),
            moved: HashSet::new(),
            bytes: 0,
        };
        let mut count = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        while count < config.apply.batch_max_records && batch.bytes < config.apply.batch_max_bytes {
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
            count += 1;
            let key: Partition = (msg.topic().to_string(), msg.partition());
            let offset = msg.offset();
            if key.0 == self.schema_changes {
                // Schema changes queue up; they run in order.
                let st = applied.get(&key).cloned().unwrap_or_default();
                if offset < st.next_offset || ddl_queue.queued(offset) {
                    continue;
                }
                let Some(payload) = msg.payload() else {
                    continue;
                };
                let change = SchemaChange::decode(payload)?;
                let order = change.source.change_order().map(|o| (o, 0));
                if order.is_some_and(|o| st.last.covers(&o)) || ddl_queue.has(&change.id()) {
                    continue; // sent again by the source after its restart
                }
                ddl_queue.push(Pending {
                    offset,
                    order,
                    change,
                });
                continue;
            }
            if ddl_queue.is_held(&key) || self.paused.contains(&key) {
                continue; // fetched again once it is let go
            }
            if assembly.consumed(&key, offset) {
                continue; // already applied
            }
            if !batch.moved.contains(&key) {
                batch.moved.insert(key.clone());
            }
            let Some(payload) = msg.payload() else {
                assembly.pass(&key, offset, None);
                continue; // tombstone
            };
            if assembly.is_transaction_topic(&key) {
                let event = TransactionEvent::decode(payload)
                    .map_err(|e| SinkError::Record(format!("{} offset {offset}: {e}", key.0)))?;
                assembly.boundary(offset, event);
                continue;
            }
            if let Some((change, order)) = marker(payload, self.marker_fingerprint)? {
                if order.is_some_and(|o| assembly.sent_twice(&key, &o)) {
                    assembly.pass(&key, offset, None); // sent again by the source
                    continue;
                }
                ddl_queue.hold(
                    key.clone(),
                    Held {
                        offset,
                        id: change.id(),
                        order,
                    },
                );
                self.input.pause(&key)?;
                continue;
            }
            batch.bytes += payload.len();
            let (mut change, allowed) = admit(
                config,
                &self.mapping,
                &mut self.row_ops,
                registry,
                &key,
                offset,
                payload,
            )
            .await?;
            let order = record_order(&change.record);
            if order.is_some_and(|o| assembly.sent_twice(&key, &o)) {
                assembly.pass(&key, offset, None); // sent again by the source
                continue;
            }
            let lane = lanes.lane(&key.0);
            // The id moves out of the record: nothing reads it after.
            let id = change
                .record
                .transaction
                .as_mut()
                .filter(|_| self.whole)
                .map(|t| std::mem::take(&mut t.id));
            match id {
                Some(id) => assembly.hold(
                    &key,
                    offset,
                    order,
                    id,
                    (lane, change),
                    allowed,
                    payload.len(),
                ),
                None => {
                    assembly.pass(&key, offset, order);
                    if allowed {
                        batch.changes.push((lane, change));
                    }
                }
            }
        }
        Ok(batch)
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

/// A schema-change marker in a table topic, with its place; `None` for
/// any other record.
fn marker(
    payload: &[u8],
    fingerprint: u64,
) -> Result<Option<(SchemaChange, Option<RecordOrder>)>, SinkError> {
    if !change_stream::avro::split_single_object(payload).is_ok_and(|(fp, _)| fp == fingerprint) {
        return Ok(None);
    }
    let change = SchemaChange::decode(payload)?;
    let order = change.source.change_order().map(|o| (o, 0));
    Ok(Some((change, order)))
}
