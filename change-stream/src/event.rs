//! The change-event model: what one record on a table topic says.

use std::fmt;

use crate::position::{ChangeOrder, Gtid};
use crate::value::Cell;

/// The operation of a change record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A row read by the snapshot.
    Read,
    /// A row inserted.
    Create,
    /// A row updated (`before` and `after` both present).
    Update,
    /// A row deleted.
    Delete,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }

    pub fn from_code(code: &str) -> Option<Op> {
        Some(match code {
            "r" => Op::Read,
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The `source` block of a record (see `schemas/source.avsc`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SourceInfo {
    pub version: String,
    pub name: String,
    pub server_id: u32,
    pub gtid: Option<String>,
    pub file: String,
    pub pos: u64,
    pub row: u32,
    pub db: String,
    pub table: Option<String>,
    pub ts_ms: i64,
    pub snapshot: bool,
}

impl SourceInfo {
    /// The record's place in the source's history (see [`ChangeOrder`]);
    /// `None` for snapshot records, which all sit at the snapshot point, and
    /// for definitions read at start.
    pub fn change_order(&self) -> Option<ChangeOrder> {
        if self.snapshot {
            return None;
        }
        let gtid: Gtid = self.gtid.as_deref()?.parse().ok()?;
        Some(ChangeOrder::new(gtid, self.pos, self.row))
    }
}

/// The `transaction` block of a record (see `schemas/transaction_block.avsc`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TransactionBlock {
    /// The transaction's GTID.
    pub id: String,
    /// The record's place among the transaction's records, from 1.
    pub total_order: u64,
    /// Its place among the transaction's records of its table, from 1.
    pub data_collection_order: u64,
}

/// Bytes that a heap allocation of `len` bytes takes from the allocator
/// (glibc's: 8 bytes of header, 16-byte steps, 32 at least).
fn allocated(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len + 8).next_multiple_of(16).max(32)
    }
}

impl ChangeRecord {
    /// About how much memory the decoded record holds besides itself: what
    /// a budget of records held in memory counts. For rows of small values
    /// it is several times the record's Avro bytes (every value and every
    /// string of the `source` block is an allocation of its own).
    pub fn heap_bytes(&self) -> usize {
        let row = |r: &Option<Vec<Cell>>| {
            r.as_ref().map_or(0, |cells| {
                allocated(cells.capacity() * std::mem::size_of::<Cell>())
                    + cells
                        .iter()
                        .map(|c| match c {
                            Cell::Decimal(s) | Cell::Text(s) => allocated(s.capacity()),
                            Cell::Bytes(b) => allocated(b.capacity()),
                            _ => 0,
                        })
                        .sum::<usize>()
            })
        };
        let s = &self.source;
        let strings = [&s.version, &s.name, &s.file, &s.db]
            .into_iter()
            .chain(s.gtid.as_ref())
            .chain(s.table.as_ref())
            .chain(self.transaction.as_ref().map(|t| &t.id))
            .map(|s| allocated(s.capacity()))
            .sum::<usize>();
        row(&self.before) + row(&self.after) + strings
    }
}

/// A decoded change record.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRecord {
    pub op: Op,
    pub before: Option<Vec<Cell>>,
    pub after: Option<Vec<Cell>>,
    pub ts_ms: i64,
    pub source: SourceInfo,
    /// `None` for snapshot records (and records of an earlier version).
    pub transaction: Option<TransactionBlock>,
}
