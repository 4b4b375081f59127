//! Turning row changes into Kafka records.
//!
//! One record per row change on the table's topic, keyed by the Avro key of
//! the row's key columns. A delete is followed by a tombstone (same key, no
//! value) so that compacted topics forget the row. An update that changes
//! the key is written as a delete of the old key (and its tombstone) and a
//! create of the new one, so that every record of a key stays in that key's
//! partition.
//!
//! A binlog record also carries its transaction's GTID and its place in
//! it (the `transaction` block); the transaction's first record is preceded
//! by its BEGIN on the transaction topic, and [`Encoder::end`] writes its
//! END with the counts per table (`change_stream::transaction`).

use std::sync::Arc;

use change_stream::avro::{display_cell, TableCodec};
use change_stream::event::{Op, SourceInfo, TransactionBlock};
use change_stream::table::{TableId, TableSchema};
use change_stream::transaction::{data_collection, TransactionEvent, END};
use change_stream::value::Cell;

use crate::error::SourceError;
use crate::produce::Output;
use crate::selection::Selection;

/// What the source knows of one selected table.
#[derive(Debug)]
pub struct TableCtx {
    /// The table as synchronized (without excluded columns): what the
    /// records carry and the snapshot reads.
    pub schema: TableSchema,
    /// The table as the server has it: what binlog rows carry.
    pub full: TableSchema,
    /// Indexes into `full.columns` of `schema`'s columns; `None` when all.
    pub projection: Option<Vec<usize>>,
    pub codec: TableCodec,
    pub topic: String,
    /// The table's row filter, bound to `full`'s columns.
    pub filter: Option<crate::filter::RowFilter>,
}

impl TableCtx {
    /// The table `full` as `selection` synchronizes it.
    pub fn new(
        prefix: &str,
        full: TableSchema,
        selection: &Selection,
    ) -> Result<Arc<Self>, SourceError> {
        let (schema, projection) = selection.project(full.clone())?;
        let filter = selection
            .row_filter(&full.id)
            .map(|condition| {
                crate::filter::RowFilter::new(condition, &full).map_err(|e| SourceError::Config {
                    message: format!(
                        "row filter of {}: {e}; fix its [[source.row_filter]] `where`",
                        full.id
                    ),
                })
            })
            .transpose()?;
        let codec = TableCodec::new(prefix, &schema)?;
        let topic =
            change_stream::topics::table_topic(prefix, &schema.id.database, &schema.id.table);
        Ok(Arc::new(Self {
            schema,
            full,
            projection,
            codec,
            topic,
            filter,
        }))
    }

    /// A row of the full table reduced to the synchronized columns.
    pub fn project(&self, row: Vec<Cell>) -> Vec<Cell> {
        match &self.projection {
            None => row,
            Some(kept) => {
                let mut row: Vec<Option<Cell>> = row.into_iter().map(Some).collect();
                kept.iter()
                    .map(|&i| row[i].take().unwrap_or(Cell::Null))
                    .collect()
            }
        }
    }

    fn describe_key(&self, row: &[Cell]) -> String {
        let key: Vec<String> = if self.schema.key.is_empty() {
            vec!["(no key)".into()]
        } else {
            self.schema
                .key
                .iter()
                .map(|&i| {
                    let mut s = display_cell(&row[i]);
                    s.truncate(64);
                    format!("{}={s}", self.schema.columns[i].name)
                })
                .collect()
        };
        format!("table {}, key {}", self.schema.id, key.join(","))
    }
}

/// The change records a source transaction has had so far: the places its
/// records carry, and the counts of its END.
#[derive(Debug, Default)]
pub struct TxnEvents {
    /// The GTID.
    id: String,
    ts_ms: i64,
    total: u64,
    /// Records per table, in the order the tables first appear.
    tables: Vec<(TableId, u64)>,
}

impl TxnEvents {
    /// Starts counting the transaction `id`.
    pub fn start(&mut self, id: String, ts_ms: i64) {
        self.id = id;
        self.ts_ms = ts_ms;
        self.total = 0;
        self.tables.clear();
    }

    /// The block of its next record, of `table`.
    fn next(&mut self, table: &TableId) -> TransactionBlock {
        self.total += 1;
        // Most transactions touch a few tables, and runs of one.
        let n = match self.tables.iter_mut().rev().find(|(t, _)| t == table) {
            Some((_, n)) => n,
            None => {
                self.tables.push((table.clone(), 0));
                &mut self.tables.last_mut().expect("just pushed").1
            }
        };
        *n += 1;
        TransactionBlock {
            id: self.id.clone(),
            total_order: self.total,
            data_collection_order: *n,
        }
    }

    /// Takes back the last record of `table` counted: it was not sent
    /// (too large, skipped), so the END must not count it.
    fn unnext(&mut self, table: &TableId) {
        self.total -= 1;
        if let Some(i) = self.tables.iter().rposition(|(t, _)| t == table) {
            self.tables[i].1 -= 1;
            if self.tables[i].1 == 0 {
                self.tables.remove(i);
            }
        }
    }
}

/// Encodes and sends records, reusing its buffers.
#[derive(Default)]
pub struct Encoder {
    key: Vec<u8>,
    old_key: Vec<u8>,
    value: Vec<u8>,
    /// The transaction topic, once known.
    transaction_topic: String,
}

impl Encoder {
    /// Writes the END of the transaction `txn` counts, if it had records;
    /// it is done with.
    pub async fn end(&mut self, out: &Output, txn: &mut TxnEvents) -> Result<(), SourceError> {
        if txn.total == 0 {
            return Ok(());
        }
        let event = TransactionEvent {
            status: END.into(),
            id: std::mem::take(&mut txn.id),
            event_count: Some(txn.total),
            data_collections: Some(
                txn.tables
                    .drain(..)
                    .map(|(t, n)| (data_collection(&t.database, &t.table), n))
                    .collect(),
            ),
            ts_ms: txn.ts_ms,
        };
        txn.total = 0;
        self.boundary(out, &event).await
    }

    /// Writes a BEGIN or END record on the transaction topic.
    async fn boundary(
        &mut self,
        out: &Output,
        event: &TransactionEvent,
    ) -> Result<(), SourceError> {
        if self.transaction_topic.is_empty() {
            self.transaction_topic = change_stream::topics::transaction_topic(out.prefix());
        }
        self.key.clear();
        change_stream::transaction::encode_key(&event.id, &mut self.key);
        self.value.clear();
        event.encode(&mut self.value);
        out.send(
            &self.transaction_topic,
            Some(&self.key),
            Some(&self.value),
            None,
            || format!("{} of transaction {}", event.status, event.id),
        )
        .await
    }

    /// Writes one row change (and its tombstone for a delete); `txn` is
    /// the transaction of a binlog change.
    #[allow(clippy::too_many_arguments)]
    pub async fn emit(
        &mut self,
        out: &Output,
        table: &TableCtx,
        op: Op,
        before: Option<&[Cell]>,
        after: Option<&[Cell]>,
        source: &SourceInfo,
        mut txn: Option<&mut TxnEvents>,
    ) -> Result<(), SourceError> {
        if let Some(t) = txn.as_deref_mut().filter(|t| t.total == 0) {
            let begin = TransactionEvent::begin(&t.id, t.ts_ms);
            self.boundary(out, &begin).await?;
        }
        let ts_ms = crate::binlog::now_ms();
        let codec = &table.codec;
        let key_row = after.or(before).expect("a change has an image");
        self.key.clear();
        let keyed = codec.encode_key(key_row, &mut self.key)?;
        // Records of tables without a key all go to partition 0, in order.
        let partition = (!keyed).then_some(0);
        if op == Op::Update && keyed {
            self.old_key.clear();
            codec.encode_key(
                before.expect("update has a before image"),
                &mut self.old_key,
            )?;
            if self.old_key != self.key {
                // Both records carry the update's coordinates; the sink
                // orders the create after the delete.
                let delete = (Op::Delete, before, None);
                self.send(
                    out,
                    table,
                    delete,
                    source,
                    txn.as_deref_mut(),
                    ts_ms,
                    true,
                    partition,
                )
                .await?;
                let create = (Op::Create, None, after);
                return self
                    .send(out, table, create, source, txn, ts_ms, false, partition)
                    .await;
            }
        }
        self.send(
            out,
            table,
            (op, before, after),
            source,
            txn,
            ts_ms,
            false,
            partition,
        )
        .await
    }

    /// Sends one record (and its tombstone for a delete), counted in its
    /// transaction `txn` unless skipped as too large.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &mut self,
        out: &Output,
        table: &TableCtx,
        (op, before, after): (Op, Option<&[Cell]>, Option<&[Cell]>),
        source: &SourceInfo,
        mut txn: Option<&mut TxnEvents>,
        ts_ms: i64,
        old_key: bool,
        partition: Option<i32>,
    ) -> Result<(), SourceError> {
        let block = txn.as_deref_mut().map(|t| t.next(&table.schema.id));
        let block = block.as_ref();
        self.value.clear();
        table
            .codec
            .encode_envelope(op, before, after, ts_ms, source, block, &mut self.value)
            .map_err(|e| {
                SourceError::Stream(change_stream::Error::Encode(format!(
                    "{}: {e}",
                    table.describe_key(after.or(before).expect("image"))
                )))
            })?;
        let key = if old_key { &self.old_key } else { &self.key };
        let key = (!key.is_empty()).then_some(key.as_slice());
        // A record skipped as too large is not counted in the END.
        if out.skips(key.map_or(0, <[u8]>::len) + self.value.len()) {
            if let Some(t) = txn {
                t.unnext(&table.schema.id);
            }
        }
        let image = after.or(before).expect("image");
        out.send(&table.topic, key, Some(&self.value), partition, || {
            table.describe_key(image)
        })
        .await?;
        if op == Op::Delete && key.is_some() {
            out.send(&table.topic, key, None, partition, || {
                format!("tombstone of {}", table.describe_key(image))
            })
            .await?;
        }
        Ok(())
    }
}
