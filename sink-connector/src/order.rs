//! Ordering: whole source transactions, in the source's commit order
//! (`apply.consistency = "transaction"`).
//!
//! A source transaction's records are spread over the topics of the tables
//! it touched and, with `kafka.partitions > 1`, over their partitions;
//! the consumer hands them over in whatever order the partitions arrive.
//! Applied as they come, a reader at the destination could see half of a
//! transfer. The transaction topic says what a transaction is: its END,
//! in commit order, counts its records per table. So each binlog record
//! (one with a `transaction` block) is *held* here under its transaction's
//! id, and a transaction is released only when it is the oldest one not
//! released yet and every record its END counts is held. The released
//! transactions of a batch are applied in one destination transaction, in
//! commit order: a reader sees the source's state after some transaction,
//! never a part of one. Snapshot records (no block) are not held: during
//! the full synchronization a table is partly loaded anyway.
//!
//! ## Positions
//! The cursors here are every table partition's position in both modes
//! (in row mode nothing is held, and a position is what was consumed): the
//! one place that says whether a record is applied already.
//! Every partition's stored position must stay below the first record not
//! applied yet, or a restart would skip it. A partition's records are in
//! commit order, and transactions are released in commit order, so the
//! records held on a partition are released from the front: each
//! partition keeps the queue of its held records (offset, the partition's
//! state just before it, its transaction), and its position is the front's
//! state, or, with nothing held, the state after everything consumed.
//! The transaction topic is a partition like the others, its ENDs held by
//! their transaction. Since nothing is stored past a held record, a crash
//! loses the held records and the restart consumes them again.
//!
//! ## Records sent twice
//! A source that restarts sends again what followed its stored position.
//! A record is skipped when its place is at or before the last consumed
//! on its partition ([`Applied`]), as in row mode; an END when its GTID is
//! at or before the last END consumed in its domain. A transaction's counts
//! are reached with the first copies and whatever copy completes them.
//!
//! ## Records that are gone
//! A table topic is compacted: once a later record of the same key is in
//! the partition, Kafka may drop an earlier one, and a replay from the
//! start (a destination rebuilt from the topics) then finds fewer records
//! of a transaction than its END counts. Since a partition is in commit
//! order, a record of a later transaction on it (the same GTID domain, a
//! greater sequence number) says that it has nothing more of the earlier
//! one: a transaction is also whole once, for each table it has fewer
//! records of than counted, every partition of the table's topic has
//! passed it ([`Assembly::passed`]). A dropped record always has a later
//! one of its key after it, in its partition, so this happens at the
//! latest when that one is consumed.
//!
//! Should the transaction topic lose its head (records removed by hand),
//! a replay meets records of transactions whose BEGIN and END are gone.
//! ENDs come in commit order, so a transaction held without its END, older
//! than an END read (in its GTID domain), never gets one: it is released
//! in its place with what is held of it ([`Assembly::orphan`]); a record
//! of it that comes later on another partition still comes before any
//! later transaction's on that partition, and is released the same way
//! before them.
//!
//! ## Memory
//! A transaction too large to hold is streamed ([`Assembly::stream`]).
//! While the oldest transaction waits for its last records, later ones
//! pile up; over the budget, the partitions whose first held record is of
//! a later transaction are not fetched ([`Assembly::over`]): they have
//! nothing more of the oldest, which therefore still becomes whole, and
//! they are fetched again from their last consumed record once it is
//! released.
//!
//! ## DDL
//! A schema change on a table waits, where it falls in the table's
//! partitions, for every record before it there (`ddl.rs`); here it also
//! waits until no transaction older than it (same GTID domain, smaller
//! sequence number) is held ([`Assembly::holds_before`]) and nothing is
//! held on those partitions ([`Assembly::holds`]), so that rows held under
//! an older transaction are never applied after it.

use std::collections::{HashMap, VecDeque};

use change_stream::position::{ChangeOrder, Gtid};
use change_stream::transaction::TransactionEvent;

use crate::apply::Change;
use crate::state::{Applied, Partition, PartitionState, RecordOrder};

/// The place of a transaction in its GTID domain, as [`Applied`] compares
/// it (every record of a transaction shares its sequence number).
pub fn transaction_order(id: &str) -> Option<RecordOrder> {
    let gtid: Gtid = id.parse().ok()?;
    Some((ChangeOrder::new(gtid, 0, 0), 0))
}

/// What a partition has consumed, and what of it is held.
#[derive(Debug, Default)]
struct Cursor {
    /// The state after every record consumed.
    consumed: PartitionState,
    /// Held records, a run of one transaction's as its first: offset, the
    /// state just before it, its transaction.
    held: VecDeque<(i64, Applied, String)>,
}

impl Cursor {
    /// Takes a record that needs no holding.
    fn pass(&mut self, offset: i64, order: Option<RecordOrder>) {
        self.consumed.next_offset = offset + 1;
        if let Some(o) = order {
            self.consumed.last.advance(o);
        }
    }

    /// Takes a record held under transaction `id`.
    fn hold(&mut self, offset: i64, order: Option<RecordOrder>, id: &str) {
        // A run of records of one transaction needs only its first.
        if self.held.back().is_none_or(|(_, _, t)| t != id) {
            self.held
                .push_back((offset, self.consumed.last.clone(), id.to_string()));
        }
        self.pass(offset, order);
    }

    /// The position that may be stored.
    fn safe(&self) -> PartitionState {
        match self.held.front() {
            Some((offset, before, _)) => PartitionState {
                next_offset: *offset,
                last: before.clone(),
            },
            None => self.consumed.clone(),
        }
    }
}

/// A transaction's records held so far.
#[derive(Default)]
struct Held {
    /// With their lanes, in consumption order.
    changes: Vec<(usize, Change)>,
    /// Records per table (`database.table`), in the order first seen.
    counts: Vec<(String, u64)>,
    partitions: Vec<Partition>,
    bytes: usize,
}

/// An END read, not released yet.
struct End {
    id: String,
    counts: Vec<(String, u64)>,
}

impl Held {
    /// The records of `database.table` held.
    fn count(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(t, _)| t == name)
            .map_or(0, |(_, n)| *n)
    }
}

/// Whether `name` is the data collection `database.table` (without making
/// that string for every record).
fn names(name: &str, database: &str, table: &str) -> bool {
    name.len() == database.len() + 1 + table.len()
        && name.starts_with(database)
        && name.as_bytes()[database.len()] == b'.'
        && name.ends_with(table)
}

/// What a release hands to planning.
pub struct Released {
    /// Changes with their lanes, in commit order.
    pub changes: Vec<(usize, Change)>,
    /// The partitions whose positions moved.
    pub partitions: Vec<Partition>,
    pub transactions: usize,
    /// The changes end inside a transaction being streamed: the
    /// destination transaction is to be left open.
    pub open: bool,
}

/// Records held until their transactions are whole.
#[derive(Default)]
pub struct Assembly {
    /// The topic prefix, which names the tables' topics.
    prefix: String,
    /// The transaction topic's partition.
    topic: Partition,
    cursors: HashMap<Partition, Cursor>,
    held: HashMap<String, Held>,
    ends: VecDeque<End>,
    /// Transactions whose BEGIN is read and END not yet, in commit order.
    begun: VecDeque<String>,
    /// The transaction being streamed into an open destination
    /// transaction (see [`Assembly::stream`]).
    streaming: Option<String>,
    /// Transactions applied with records gone (see the module's essay).
    gone: u64,
    /// Held transactions whose END is not read, by GTID domain and
    /// sequence number.
    unended: std::collections::BTreeMap<(u32, u64), String>,
    /// The transactions of the ENDs read and not released.
    ended: std::collections::HashSet<String>,
    /// The greatest sequence number of an END read, per GTID domain.
    last_end: HashMap<u32, u64>,
    /// Transactions applied without their END ([`Assembly::orphan`]).
    orphaned: u64,
}

impl Assembly {
    /// Starts from the stored positions.
    pub fn new(prefix: &str, applied: &HashMap<Partition, PartitionState>) -> Self {
        Self {
            prefix: prefix.to_string(),
            topic: (change_stream::topics::transaction_topic(prefix), 0),
            cursors: applied
                .iter()
                .map(|(p, s)| {
                    (
                        p.clone(),
                        Cursor {
                            consumed: s.clone(),
                            held: VecDeque::new(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The cursor of `p` (without a copy of its name per record).
    fn cursor(&mut self, p: &Partition) -> &mut Cursor {
        if !self.cursors.contains_key(p) {
            self.cursors.insert(p.clone(), Cursor::default());
        }
        self.cursors.get_mut(p).expect("just inserted")
    }

    pub fn is_transaction_topic(&self, p: &Partition) -> bool {
        *p == self.topic
    }

    /// Whether `offset` of `p` is consumed already (below its position).
    pub fn consumed(&self, p: &Partition, offset: i64) -> bool {
        self.cursors
            .get(p)
            .is_some_and(|c| offset < c.consumed.next_offset)
    }

    /// Takes a record that needs no holding (a tombstone, a snapshot row, a
    /// record handled elsewhere): the position
    /// moves past it once nothing before it is held.
    pub fn pass(&mut self, p: &Partition, offset: i64, order: Option<RecordOrder>) {
        self.cursor(p).pass(offset, order);
    }

    /// Whether a record at `order` on `p` was consumed already (sent twice).
    pub fn sent_twice(&self, p: &Partition, order: &RecordOrder) -> bool {
        self.cursors
            .get(p)
            .is_some_and(|c| c.consumed.last.covers(order))
    }

    /// Holds a binlog record of transaction `id`, to be applied on `lane`
    /// unless not `applied` (filtered out: it counts all the same).
    #[allow(clippy::too_many_arguments)]
    pub fn hold(
        &mut self,
        p: &Partition,
        offset: i64,
        order: Option<RecordOrder>,
        id: String,
        (lane, change): (usize, Change),
        applied: bool,
        bytes: usize,
    ) {
        self.cursor(p).hold(offset, order, &id);
        let h = match self.held.get_mut(&id) {
            Some(h) => h,
            None => {
                if !self.ended.contains(&id) {
                    if let Some((o, _)) = transaction_order(&id) {
                        if self.last_end.get(&o.domain).is_some_and(|l| *l > o.seq) {
                            // Its END would have come before one read.
                            self.orphan(id.clone(), o.domain, o.seq);
                        } else {
                            self.unended.insert((o.domain, o.seq), id.clone());
                        }
                    }
                }
                self.held.entry(id).or_default()
            }
        };
        let (database, table) = (&change.source.database, &change.source.table);
        match h.counts.iter_mut().find(|(t, _)| names(t, database, table)) {
            Some((_, n)) => *n += 1,
            None => h.counts.push((
                change_stream::transaction::data_collection(database, table),
                1,
            )),
        }
        if !h.partitions.contains(p) {
            h.partitions.push(p.clone());
        }
        if applied {
            h.changes.push((lane, change));
        }
        h.bytes += bytes;
    }

    /// Takes a record of the transaction topic.
    pub fn boundary(&mut self, offset: i64, event: TransactionEvent) {
        let p = self.topic.clone();
        let order = transaction_order(&event.id);
        if order.is_some_and(|o| self.sent_twice(&p, &o)) {
            self.pass(&p, offset, None);
            return;
        }
        if !event.is_end() {
            if !self.begun.contains(&event.id) {
                self.begun.push_back(event.id);
            }
            self.pass(&p, offset, None);
            return;
        }
        self.begun.retain(|id| *id != event.id);
        self.cursor(&p).hold(offset, order, &event.id);
        if let Some((o, _)) = order {
            self.unended.remove(&(o.domain, o.seq));
            self.orphans_before(o.domain, o.seq);
            let last = self.last_end.entry(o.domain).or_default();
            *last = (*last).max(o.seq);
        }
        self.ended.insert(event.id.clone());
        self.ends.push_back(End {
            id: event.id,
            counts: event.data_collections.unwrap_or_default(),
        });
    }

    /// Held transactions of `domain` before `seq` whose END was not read:
    /// it came before the END being read, and is gone from the topic (a
    /// head removed), or their records came after it was released. They
    /// are released in their place with what is held.
    fn orphans_before(&mut self, domain: u32, seq: u64) {
        let orphans: Vec<(u64, String)> = self
            .unended
            .range((domain, 0)..(domain, seq))
            .map(|((_, s), id)| (*s, id.clone()))
            .collect();
        for (s, id) in orphans {
            self.unended.remove(&(domain, s));
            self.orphan(id, domain, s);
        }
    }

    /// Has transaction `id` (of `domain`, sequence number `seq`) released
    /// with what is held of it, before the ENDs read of later ones.
    fn orphan(&mut self, id: String, domain: u32, seq: u64) {
        self.orphaned += 1;
        if self.orphaned == 1 {
            tracing::info!(transaction = %id, "records of a transaction whose END is not on the transaction topic (removed from it): applied in their place, as every later one like it");
        }
        let counts = self
            .held
            .get(&id)
            .map(|h| h.counts.clone())
            .unwrap_or_default();
        let at = self
            .ends
            .iter()
            .position(|e| {
                transaction_order(&e.id).is_some_and(|(o, _)| o.domain == domain && o.seq > seq)
            })
            .unwrap_or(self.ends.len());
        self.ended.insert(id.clone());
        self.ends.insert(at, End { id, counts });
    }

    /// Whether records of `p` are held.
    pub fn holds(&self, p: &Partition) -> bool {
        self.cursors.get(p).is_some_and(|c| !c.held.is_empty())
    }

    /// Whether a transaction older than `order` (its GTID domain, a smaller
    /// sequence number) is held or announced and not released.
    pub fn holds_before(&self, order: &RecordOrder) -> bool {
        let older = |id: &str| {
            transaction_order(id)
                .is_some_and(|(o, _)| o.domain == order.0.domain && o.seq < order.0.seq)
        };
        self.ends.iter().any(|e| older(&e.id)) || self.held.keys().any(|id| older(id))
    }

    /// Whether a destination transaction is open for a transaction being
    /// streamed.
    pub fn is_streaming(&self) -> bool {
        self.streaming.is_some()
    }

    /// A transaction too large to hold: once every older one is released,
    /// the oldest one (begun, its END not read yet, or read and not whole)
    /// holding more than `limit` bytes has its records handed over as they
    /// come, into one destination transaction left open until it is whole
    /// (a crash rolls it back; nothing of it is stored before). Returns its
    /// records held so far when it is to be streamed now.
    pub fn stream(&mut self, limit: usize) -> Option<Vec<(usize, Change)>> {
        let head = match (&self.streaming, self.ends.front()) {
            (Some(id), _) => id.clone(),
            (None, Some(end)) => end.id.clone(),
            (None, None) => self.begun.front()?.clone(),
        };
        let held = self.held.get_mut(&head)?;
        if held.bytes <= limit {
            return None;
        }
        if self.streaming.is_none() {
            tracing::info!(transaction = %head, held_bytes = held.bytes, "a transaction too large to hold is applied as it comes, in one destination transaction left open until it is whole");
        }
        held.bytes = 0;
        self.streaming = Some(head);
        Some(std::mem::take(&mut held.changes))
    }

    /// The oldest transaction not released: the one being streamed, the
    /// first END read, or the transaction begun.
    pub fn head(&self) -> Option<&str> {
        self.streaming
            .as_deref()
            .or(self.ends.front().map(|e| e.id.as_str()))
            .or(self.begun.front().map(String::as_str))
    }

    /// While the records held come to more than `budget` bytes, the table
    /// partitions to stop fetching: those whose first held record is of a
    /// transaction after the oldest. A partition's records are in commit
    /// order, so such a partition has nothing more of the oldest one, and
    /// the oldest can still become whole; the others are fetched again
    /// once it is released (from [`Assembly::next_offset`]).
    pub fn over(&self, budget: usize) -> Vec<Partition> {
        if self.held.values().map(|h| h.bytes).sum::<usize>() <= budget {
            return Vec::new();
        }
        let head = self.head();
        self.cursors
            .iter()
            .filter(|(p, c)| {
                **p != self.topic
                    && c.held
                        .front()
                        .is_some_and(|(_, _, id)| Some(id.as_str()) != head)
            })
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The offset after the last record of `p` consumed.
    pub fn next_offset(&self, p: &Partition) -> i64 {
        self.cursors.get(p).map_or(0, |c| c.consumed.next_offset)
    }

    /// After a batch: the whole transactions at the front, or else the
    /// next part of the oldest one if it is to be streamed (more than
    /// `limit` bytes held). `partitions` gives a topic's partition count.
    pub fn step(&mut self, limit: usize, partitions: impl Fn(&str) -> Option<i32>) -> Released {
        let mut out = self.release(partitions);
        let part = match (self.is_streaming(), out.transactions) {
            (true, _) => self.stream(0),
            (false, 0) => self.stream(limit),
            _ => None,
        };
        out.open = self.is_streaming();
        out.changes.extend(part.unwrap_or_default());
        out
    }

    /// Whether every partition of the topic of each table that `end`
    /// counts more records of than are held has consumed a record of a
    /// later transaction (see the module's essay). `partitions` gives a
    /// topic's partition count.
    fn passed(&self, end: &End, partitions: &impl Fn(&str) -> Option<i32>) -> bool {
        let Some((order, _)) = transaction_order(&end.id) else {
            return false;
        };
        let next = (
            ChangeOrder {
                seq: order.seq + 1,
                pos: 0,
                row: 0,
                ..order
            },
            0,
        );
        let held = self.held.get(&end.id);
        end.counts
            .iter()
            .filter(|(t, n)| held.map_or(0, |h| h.count(t)) < *n)
            .all(|(name, _)| {
                // `database.table`: each split whose topic exists.
                let mut topics = name.match_indices('.').filter_map(|(i, _)| {
                    let topic = change_stream::topics::table_topic(
                        &self.prefix,
                        &name[..i],
                        &name[i + 1..],
                    );
                    partitions(&topic).map(|n| (topic, n))
                });
                topics.next().is_some_and(|(topic, n)| {
                    (0..n).all(|p| {
                        self.cursors
                            .get(&(topic.clone(), p))
                            .is_some_and(|c| c.consumed.last.covers(&next))
                    })
                })
            })
    }

    /// Releases the whole transactions at the front, oldest first.
    /// `partitions` gives a topic's partition count.
    pub fn release(&mut self, partitions: impl Fn(&str) -> Option<i32>) -> Released {
        let mut out = Released {
            changes: Vec::new(),
            partitions: Vec::new(),
            transactions: 0,
            open: false,
        };
        while let Some(end) = self.ends.front() {
            let counted = self.held.get(&end.id).map_or(end.counts.is_empty(), |h| {
                end.counts.iter().all(|(t, n)| h.count(t) >= *n)
            });
            if !counted && !self.passed(end, &partitions) {
                break;
            }
            if !counted {
                tracing::debug!(transaction = %end.id, "transaction applied with fewer records than its END counts: the others are gone from the topics (compacted)");
                self.gone += 1;
                if self.gone == 1 {
                    tracing::info!(transaction = %end.id, "a transaction has fewer records on the topics than its END counts (compaction dropped earlier records of its keys): applied with what is left, as every later one like it");
                }
            }
            let end = self.ends.pop_front().expect("a front");
            self.ended.remove(&end.id);
            let held = self.held.remove(&end.id).unwrap_or_default();
            if self.streaming.as_ref() == Some(&end.id) {
                self.streaming = None;
            }
            out.transactions += 1;
            // In the source's order: records of other partitions may have
            // come in any order.
            let mut changes = held.changes;
            changes
                .sort_by_key(|(_, c)| c.record.transaction.as_ref().map_or(0, |t| t.total_order));
            out.changes.extend(changes);
            for p in held.partitions.iter().chain([&self.topic]) {
                let c = self.cursors.get_mut(p).expect("a held partition");
                while c.held.front().is_some_and(|(_, _, id)| *id == end.id) {
                    c.held.pop_front();
                }
                if !out.partitions.contains(p) {
                    out.partitions.push(p.clone());
                }
            }
        }
        out
    }

    /// The position of `p` that may be stored now.
    pub fn position(&self, p: &Partition) -> PartitionState {
        self.cursors.get(p).map(Cursor::safe).unwrap_or_default()
    }

    /// Sets a partition's position (a schema change that falls in it
    /// applied): nothing of it may be held.
    pub fn set(&mut self, p: &Partition, state: PartitionState) {
        let c = self.cursor(p);
        debug_assert!(c.held.is_empty());
        c.consumed = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use change_stream::event::{ChangeRecord, Op, SourceInfo, TransactionBlock};
    use change_stream::table::{KeyKind, TableId, TableSchema};
    use change_stream::transaction::END;

    fn change(table: &str, gtid: &str, total_order: u64) -> Change {
        let id = TableId::new("db", table);
        Change {
            table: Arc::new(TableSchema {
                id: id.clone(),
                columns: Vec::new(),
                key: Vec::new(),
                key_kind: KeyKind::None,
                create_table: String::new(),
            }),
            source: id,
            record: ChangeRecord {
                op: Op::Create,
                before: None,
                after: Some(Vec::new()),
                ts_ms: 0,
                source: SourceInfo::default(),
                transaction: Some(TransactionBlock {
                    id: gtid.into(),
                    total_order,
                    data_collection_order: 1,
                }),
            },
        }
    }

    fn end(id: &str, counts: &[(&str, u64)]) -> TransactionEvent {
        TransactionEvent {
            status: END.into(),
            id: id.into(),
            event_count: Some(counts.iter().map(|(_, n)| n).sum()),
            data_collections: Some(
                counts
                    .iter()
                    .map(|(t, n)| (format!("db.{t}"), *n))
                    .collect(),
            ),
            ts_ms: 0,
        }
    }

    fn order(gtid: &str, pos: u64) -> Option<RecordOrder> {
        Some((ChangeOrder::new(gtid.parse().unwrap(), pos, 0), 0))
    }

    #[test]
    fn transactions_are_released_whole_in_commit_order_and_positions_stay_below_held_records() {
        let (a, b) = (("t.db.a".to_string(), 0), ("t.db.b".to_string(), 0));
        let mut asm = Assembly::new("t", &HashMap::new());
        // T1 = a + b, T2 = a; b's record of T1 comes last.
        asm.hold(
            &a,
            0,
            order("0-1-1", 10),
            "0-1-1".into(),
            (0, change("a", "0-1-1", 1)),
            true,
            10,
        );
        asm.hold(
            &a,
            1,
            order("0-1-2", 20),
            "0-1-2".into(),
            (0, change("a", "0-1-2", 1)),
            true,
            10,
        );
        asm.boundary(0, end("0-1-1", &[("a", 1), ("b", 1)]));
        asm.boundary(1, end("0-1-2", &[("a", 1)]));
        // T2 is whole but T1 is not: nothing goes.
        assert_eq!(asm.release(|_| None).transactions, 0);
        assert_eq!(asm.position(&a).next_offset, 0);
        assert_eq!(asm.position(&("t.transaction".into(), 0)).next_offset, 0);
        assert!(asm.holds_before(&order("0-1-3", 0).unwrap()));
        assert!(!asm.holds_before(&order("0-1-1", 0).unwrap()));
        // A copy of T1's record of a, sent again, is seen as such.
        assert!(asm.sent_twice(&a, &order("0-1-1", 10).unwrap()));
        asm.hold(
            &b,
            0,
            order("0-1-1", 11),
            "0-1-1".into(),
            (1, change("b", "0-1-1", 2)),
            true,
            10,
        );
        let released = asm.release(|_| None);
        assert_eq!(released.transactions, 2);
        let tables: Vec<&str> = released
            .changes
            .iter()
            .map(|(_, c)| c.source.table.as_str())
            .collect();
        assert_eq!(tables, ["a", "b", "a"]);
        assert_eq!(asm.position(&a).next_offset, 2);
        assert_eq!(asm.position(&b).next_offset, 1);
        assert_eq!(asm.position(&("t.transaction".into(), 0)).next_offset, 2);
        assert!(!asm.holds_before(&order("0-1-9", 0).unwrap()));
        // An END sent again is not waited for.
        asm.boundary(2, end("0-1-2", &[("a", 1)]));
        assert_eq!(asm.release(|_| None).transactions, 0);
        assert_eq!(asm.position(&("t.transaction".into(), 0)).next_offset, 3);
    }

    #[test]
    fn a_large_transaction_is_streamed_once_every_older_one_is_released() {
        let a = ("t.db.a".to_string(), 0);
        let mut asm = Assembly::new("t", &HashMap::new());
        asm.boundary(0, TransactionEvent::begin("0-1-5", 0));
        for i in 0..3 {
            asm.hold(
                &a,
                i,
                order("0-1-5", 10 + i as u64),
                "0-1-5".into(),
                (0, change("a", "0-1-5", i as u64 + 1)),
                true,
                100,
            );
        }
        assert!(asm.stream(1000).is_none());
        let first = asm.stream(200).expect("streamed");
        assert_eq!(first.len(), 3);
        assert!(asm.is_streaming());
        // Nothing of it is stored before it is whole.
        assert_eq!(asm.position(&a).next_offset, 0);
        asm.hold(
            &a,
            3,
            order("0-1-5", 13),
            "0-1-5".into(),
            (0, change("a", "0-1-5", 4)),
            true,
            100,
        );
        assert_eq!(asm.stream(0).expect("more").len(), 1);
        asm.boundary(1, end("0-1-5", &[("a", 4)]));
        let released = asm.release(|_| None);
        assert_eq!((released.transactions, released.changes.len()), (1, 0));
        assert!(!asm.is_streaming());
        assert_eq!(asm.position(&a).next_offset, 4);
    }

    #[test]
    fn over_its_budget_only_partitions_past_the_oldest_transaction_stop() {
        let (a, b) = (("t.db.a".to_string(), 0), ("t.db.b".to_string(), 0));
        let mut asm = Assembly::new("t", &HashMap::new());
        // T1 = a + b; its record of b, on b's other partition, has not
        // come; T2's have, on a and on b's first partition.
        asm.boundary(0, end("0-1-1", &[("a", 1), ("b", 1)]));
        asm.hold(
            &a,
            0,
            order("0-1-1", 10),
            "0-1-1".into(),
            (0, change("a", "0-1-1", 1)),
            true,
            10,
        );
        asm.hold(
            &a,
            1,
            order("0-1-2", 20),
            "0-1-2".into(),
            (0, change("a", "0-1-2", 1)),
            true,
            500,
        );
        asm.hold(
            &b,
            0,
            order("0-1-2", 21),
            "0-1-2".into(),
            (0, change("b", "0-1-2", 2)),
            true,
            10,
        );
        assert_eq!(asm.head(), Some("0-1-1"));
        assert!(asm.over(1000).is_empty());
        // a still holds T1 first: it goes on; b holds only later ones.
        assert_eq!(asm.over(100), vec![b.clone()]);
        assert_eq!(asm.next_offset(&b), 1);
    }

    #[test]
    fn a_transaction_with_records_gone_is_whole_once_every_partition_passed_it() {
        let (a0, a1) = (("t.db.a".to_string(), 0), ("t.db.a".to_string(), 1));
        let mut asm = Assembly::new("t", &HashMap::new());
        // T1 counts three records of a; compaction left one, on a[0].
        asm.boundary(0, end("0-1-1", &[("a", 3)]));
        asm.hold(
            &a0,
            0,
            order("0-1-1", 10),
            "0-1-1".into(),
            (0, change("a", "0-1-1", 1)),
            true,
            10,
        );
        asm.hold(
            &a0,
            1,
            order("0-1-2", 20),
            "0-1-2".into(),
            (0, change("a", "0-1-2", 1)),
            true,
            10,
        );
        asm.boundary(1, end("0-1-2", &[("a", 1)]));
        let one = |t: &str| (t == "t.db.a").then_some(1);
        let two = |t: &str| (t == "t.db.a").then_some(2);
        // With a second partition that has not passed T1, it waits.
        assert_eq!(asm.release(two).transactions, 0);
        // Unknown topic: it waits too.
        assert_eq!(asm.release(|_| None).transactions, 0);
        let released = asm.release(one);
        assert_eq!(released.transactions, 2);
        assert_eq!(released.changes.len(), 2);
        assert_eq!(asm.position(&a0).next_offset, 2);
        // A record of the same transaction does not pass it.
        asm.boundary(2, end("0-1-3", &[("a", 2)]));
        asm.hold(
            &a1,
            0,
            order("0-1-3", 30),
            "0-1-3".into(),
            (0, change("a", "0-1-3", 1)),
            true,
            10,
        );
        assert_eq!(asm.release(two).transactions, 0);
    }

    #[test]
    fn records_whose_end_is_gone_are_released_in_their_place() {
        let a = ("t.db.a".to_string(), 0);
        let mut asm = Assembly::new("t", &HashMap::new());
        // T1's BEGIN and END were removed from the transaction topic; its
        // record and T2's are on the table's partition.
        asm.hold(
            &a,
            0,
            order("0-1-1", 10),
            "0-1-1".into(),
            (0, change("a", "0-1-1", 1)),
            true,
            10,
        );
        asm.hold(
            &a,
            1,
            order("0-1-2", 20),
            "0-1-2".into(),
            (0, change("a", "0-1-2", 1)),
            true,
            10,
        );
        assert_eq!(asm.release(|_| None).transactions, 0);
        asm.boundary(0, end("0-1-2", &[("a", 1)]));
        let released = asm.release(|_| None);
        assert_eq!(released.transactions, 2);
        let orders: Vec<&str> = released
            .changes
            .iter()
            .map(|(_, c)| c.record.transaction.as_ref().unwrap().id.as_str())
            .collect();
        assert_eq!(orders, ["0-1-1", "0-1-2"]);
        assert_eq!(asm.position(&a).next_offset, 2);
        // A later transaction's records before its END wait as before.
        asm.hold(
            &a,
            2,
            order("0-1-4", 40),
            "0-1-4".into(),
            (0, change("a", "0-1-4", 1)),
            true,
            10,
        );
        asm.boundary(1, end("0-1-3", &[]));
        assert_eq!(asm.release(|_| None).transactions, 1);
        assert_eq!(asm.position(&a).next_offset, 2);
    }

    #[test]
    fn data_collection_names_match_without_a_string_per_record() {
        assert!(names("shop.orders", "shop", "orders"));
        assert!(names("a.b.c", "a.b", "c"));
        assert!(!names("a.b.c", "a", "b"));
        assert!(!names("shop.order", "shop", "orders"));
        assert!(!names("shopxorders", "shop", "orders"));
    }
}
