//! Schema at the destination: tables created from the source's definitions,
//! and DDL statements applied in order with the rows.
//!
//! ## Order
//! Each schema change comes on the schema-changes topic (read to its end
//! before any table record is taken, `consume.rs`), and says, for each
//! partition of the topics of the tables it acts on, the offset of the
//! first record written after it. A partition that delivers a record at or
//! past that offset while the change is queued is *held*: paused, and
//! whatever it delivers from there is dropped (it is fetched again later).
//! The statement at the head of the queue is applied once every partition
//! it names is read up to its offset: held there, or consumed that far, or
//! with only commit markers and aborted records left below it (the
//! consumer's position is past them). Then the held partitions resume at
//! their offsets. So a statement runs after every row written before it
//! and before every row written after it, for every table it touches, and
//! statements run in the source's order.
//!
//! ## Restarts
//! The positions reached (the schema-changes offset, and each partition's
//! offset where the statement falls) are stored after the statement runs;
//! how a statement that ran just before a crash is recognised, so that it
//! does not run twice, is `schema_apply.rs`'s part.
//!
//! A table's definition as the source read it at start is a schema change
//! too, placed before the table's rows: the sink creates the table
//! (and its database) from the source's own `SHOW CREATE TABLE` if it is
//! missing, before applying them.

use std::collections::{HashMap, VecDeque};

use change_stream::schema_change::SchemaChange;
use change_stream::table::{quote_ident, TableId, TableSchema};
use change_stream::topics;
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::error::{from_mysql, SinkError};
use crate::state::{Partition, RecordOrder};

/// Whether the table exists at the destination.
pub async fn table_exists(conn: &mut Conn, table: &TableId) -> Result<bool, SinkError> {
    let n: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (table.database.as_str(), table.table.as_str()),
        )
        .await
        .map_err(|e| from_mysql("cannot look up tables", e))?;
    Ok(n.unwrap_or(0) > 0)
}

/// Creates the database if it does not exist.
pub async fn ensure_database(conn: &mut Conn, database: &str) -> Result<(), SinkError> {
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS {}",
        quote_ident(database)
    ))
    .await
    .map_err(|e| from_mysql(&format!("cannot create database {database}"), e))
}

/// Creates the table (and its database) if it does not exist.
pub async fn ensure_table(conn: &mut Conn, table: &TableSchema) -> Result<bool, SinkError> {
    if table_exists(conn, &table.id).await? {
        return Ok(false);
    }
    if table.create_table.trim().is_empty() {
        return Err(SinkError::Record(format!(
            "table {} does not exist at the destination and its definition carries no CREATE TABLE",
            table.id
        )));
    }
    create_table(conn, &table.id, &table.create_table).await?;
    tracing::info!(table = %table.id, "created table at the destination");
    Ok(true)
}

/// Runs a `CREATE TABLE` statement of the source's (which names the table
/// without its database) in the table's database, creating that first.
pub async fn create_table(conn: &mut Conn, id: &TableId, create: &str) -> Result<(), SinkError> {
    ensure_database(conn, &id.database).await?;
    let db = quote_ident(&id.database);
    conn.query_drop(format!("USE {db}"))
        .await
        .map_err(|e| from_mysql(&format!("cannot use database {}", id.database), e))?;
    conn.query_drop(create)
        .await
        .map_err(|e| from_mysql(&format!("cannot create table {id}"), e))
}

/// Why an existing destination table conflicts with a replicated one
/// (it has rows, or another definition), or `None`.
pub async fn conflict(conn: &mut Conn, table: &TableSchema) -> Result<Option<String>, SinkError> {
    if !table_exists(conn, &table.id).await? {
        return Ok(None);
    }
    let name = table.id.quoted();
    let has_rows: Option<i64> = conn
        .query_first(format!("SELECT 1 FROM {name} LIMIT 1"))
        .await
        .map_err(|e| from_mysql(&format!("cannot read {}", table.id), e))?;
    if has_rows.is_some() {
        return Ok(Some(format!("{} (has rows)", table.id)));
    }
    let create: Option<(String, String)> = conn
        .query_first(format!("SHOW CREATE TABLE {name}"))
        .await
        .map_err(|e| from_mysql(&format!("cannot read the definition of {}", table.id), e))?;
    let strip = |s: &str| -> String {
        match s.find(" AUTO_INCREMENT=") {
            Some(at) => {
                let rest = &s[at + 16..];
                let n = rest.chars().take_while(char::is_ascii_digit).count();
                format!("{}{}", &s[..at], &rest[n..])
            }
            None => s.to_string(),
        }
    };
    // Created by this sink for a full synchronization that stopped before
    // its first row: without the indexes it puts off.
    let loading = crate::indexes::split(table).map(|d| strip(&d.create));
    match create {
        Some((_, c)) if strip(&c) == strip(&table.create_table) => Ok(None),
        Some((_, c)) if loading.is_some_and(|l| l == strip(&c)) => Ok(None),
        _ => Ok(Some(format!("{} (another definition)", table.id))),
    }
}

/// Fails, listing every table that conflicts, unless `on_conflict` is
/// `ignore`.
pub async fn check_conflicts(
    conn: &mut Conn,
    tables: &[std::sync::Arc<TableSchema>],
    mode: crate::config::ConflictMode,
) -> Result<(), SinkError> {
    if mode == crate::config::ConflictMode::Ignore {
        return Ok(());
    }
    let mut found = Vec::new();
    for t in tables {
        if let Some(why) = conflict(conn, t).await? {
            found.push(why);
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    Err(SinkError::Config {
        message: format!(
        "{} table(s) already exist at the destination: {}; drop or rename them, or set [schema] on_conflict = \"ignore\" to write into them",
        found.len(),
        found.join(", ")
    ),
    })
}

/// A schema change waiting on the schema-changes topic.
pub struct Pending {
    /// Its offset on the schema-changes topic.
    pub offset: i64,
    pub order: Option<RecordOrder>,
    pub change: SchemaChange,
    /// Where it falls in each partition of its tables' topics.
    pub falls: Vec<(Partition, i64)>,
}

impl Pending {
    /// A schema change read at `offset`, its tables' topics named with
    /// `prefix`.
    pub fn new(prefix: &str, offset: i64, change: SchemaChange) -> Self {
        let order = change.source.change_order().map(|o| (o, 0));
        let mut falls = Vec::new();
        for t in &change.tables {
            let topic = topics::table_topic(prefix, &t.id.database, &t.id.table);
            for (p, at) in t.topic_offsets.iter().enumerate() {
                let key = (topic.clone(), p as i32);
                if !falls.iter().any(|(k, _)| *k == key) {
                    falls.push((key, *at));
                }
            }
        }
        Self {
            offset,
            order,
            change,
            falls,
        }
    }
}

/// Where a partition waits for a schema change: the offset it falls at.
#[derive(Clone, Debug)]
pub struct Held {
    pub at: i64,
    pub id: String,
    pub order: Option<RecordOrder>,
}

/// Schema changes read, and partitions held where they fall.
#[derive(Default)]
pub struct DdlQueue {
    pending: VecDeque<Pending>,
    held: HashMap<Partition, Held>,
}

impl DdlQueue {
    pub fn push(&mut self, pending: Pending) {
        self.pending.push_back(pending);
    }

    pub fn hold(&mut self, partition: Partition, held: Held) {
        self.held.insert(partition, held);
    }

    /// Whether a schema change with this id is queued.
    pub fn has(&self, id: &str) -> bool {
        self.pending.iter().any(|p| p.change.id() == id)
    }

    pub fn is_held(&self, partition: &Partition) -> bool {
        self.held.contains_key(partition)
    }

    /// Where the first queued schema change that falls in `p` falls.
    pub fn boundary(&self, p: &Partition) -> Option<Held> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending.iter().find_map(|d| {
            d.falls.iter().find(|(k, _)| k == p).map(|(_, at)| Held {
                at: *at,
                id: d.change.id(),
                order: d.order,
            })
        })
    }

    pub fn head(&self) -> Option<&Pending> {
        self.pending.front()
    }

    /// If the head statement can run: every partition it falls in is held
    /// where it falls, or read that far (`reached`, given the partition
    /// and the offset). Returns them, with whether each is held.
    pub fn ready(
        &self,
        reached: impl Fn(&Partition, i64) -> bool,
    ) -> Option<Vec<(Partition, Held, bool)>> {
        let head = self.pending.front()?;
        let id = head.change.id();
        let mut out = Vec::with_capacity(head.falls.len());
        for (p, at) in &head.falls {
            match self.held.get(p) {
                Some(h) if h.id == id => out.push((p.clone(), h.clone(), true)),
                Some(_) => return None,
                None if reached(p, *at) => out.push((
                    p.clone(),
                    Held {
                        at: *at,
                        id: id.clone(),
                        order: head.order,
                    },
                    false,
                )),
                None => return None,
            }
        }
        Some(out)
    }

    /// Removes the head statement and lets its partitions go.
    pub fn pop(&mut self, released: &[(Partition, Held, bool)]) -> Option<Pending> {
        for (p, _, _) in released {
            self.held.remove(p);
        }
        self.pending.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use change_stream::event::SourceInfo;
    use change_stream::schema_change::{ChangeEffect, TableChange};

    /// An ALTER of `db.t` at binlog offset `pos`, falling at `offsets` in
    /// the partitions of its topic.
    fn alter(pos: u64, offsets: Vec<i64>) -> SchemaChange {
        SchemaChange {
            source: SourceInfo {
                file: "mariadb-bin.000001".into(),
                pos,
                ..SourceInfo::default()
            },
            database: "db".into(),
            kind: "ALTER TABLE".into(),
            ddl: Some("ALTER TABLE t ADD c INT".into()),
            sql_mode: None,
            tables: vec![TableChange {
                id: TableId::new("db", "t"),
                effect: ChangeEffect::Altered,
                definition: None,
                topic_offsets: offsets,
            }],
        }
    }

    #[test]
    fn a_statement_runs_once_each_partition_it_falls_in_is_read_up_to_it() {
        let (p0, p1) = (("x.db.t".to_string(), 0), ("x.db.t".to_string(), 1));
        let mut q = DdlQueue::default();
        q.push(Pending::new("x", 7, alter(100, vec![5, 0])));
        q.push(Pending::new("x", 8, alter(200, vec![9, 3])));
        assert_eq!(
            q.head().unwrap().falls,
            vec![(p0.clone(), 5), (p1.clone(), 0)]
        );
        // Records are placed by the first statement queued that falls in
        // their partition.
        let first = q.boundary(&p0).unwrap();
        assert_eq!((first.at, first.id.as_str()), (5, "mariadb-bin.000001:100"));
        // Partition 0 read to 4 only: not yet.
        let reached = |p: &Partition, at: i64| if *p == p0 { 4 >= at } else { 0 >= at };
        assert!(q.ready(reached).is_none());
        // Held where it falls (a record at 6 came): it runs, partition 1
        // having nothing before it.
        q.hold(p0.clone(), first);
        let released = q.ready(reached).expect("ready");
        assert_eq!(
            released
                .iter()
                .map(|(p, h, held)| (p.clone(), h.at, *held))
                .collect::<Vec<_>>(),
            vec![(p0.clone(), 5, true), (p1.clone(), 0, false)]
        );
        assert_eq!(q.pop(&released).unwrap().offset, 7);
        assert!(!q.is_held(&p0));
        // The next one falls further on.
        assert_eq!(q.boundary(&p0).unwrap().at, 9);
        assert_eq!(q.boundary(&p1).unwrap().at, 3);
        assert!(q.ready(|_, _| false).is_none());
        assert!(q.ready(|_, at| at <= 9).is_some());
    }
}
