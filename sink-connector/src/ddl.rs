//! Schema at the destination: tables created from the source's definitions,
//! and DDL statements applied in order with the rows.
//!
//! ## Order
//! The source writes each DDL statement on tables as a marker into every
//! partition of those tables' topics, and once on the schema-changes topic.
//! The sink consumes all of them. A partition that reaches a marker is
//! *held*: paused, and whatever it delivers past the marker is dropped (it is
//! fetched again later). The statement at the head of the schema-changes
//! queue is applied once every partition it names is held at its marker;
//! then those partitions resume just past it. So a statement runs after
//! every row written before it and before every row written after it, for
//! every table it touches, and statements run in the source's order.
//!
//! ## Restarts
//! The positions reached (the schema-changes offset, and each held
//! partition's offset past its marker) are stored after the statement runs.
//! DDL commits on its own in MariaDB, so a crash in between runs the
//! statement again on restart; errors that only say it is already done
//! (table exists, unknown column ...) are then taken as success.
//!
//! A table's definition as the source read it at start is a schema change
//! too, with markers before the table's rows: the sink creates the table
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
    ensure_database(conn, &table.id.database).await?;
    let db = quote_ident(&table.id.database);
    // SHOW CREATE TABLE names the table without its database.
    conn.query_drop(format!("USE {db}"))
        .await
        .map_err(|e| from_mysql(&format!("cannot use database {}", table.id.database), e))?;
    conn.query_drop(table.create_table.as_str())
        .await
        .map_err(|e| from_mysql(&format!("cannot create table {}", table.id), e))?;
    tracing::info!(table = %table.id, "created table at the destination");
    Ok(true)
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
    match create {
        Some((_, c)) if strip(&c) == strip(&table.create_table) => Ok(None),
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
}

/// Where a held partition stopped.
#[derive(Clone, Debug)]
pub struct Held {
    pub offset: i64,
    pub id: String,
    pub order: Option<RecordOrder>,
}

/// Schema changes read, and partitions held at their markers.
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

    /// Whether the schema change at `offset` is already queued.
    pub fn queued(&self, offset: i64) -> bool {
        self.pending.iter().any(|p| p.offset == offset)
    }

    pub fn is_held(&self, partition: &Partition) -> bool {
        self.held.contains_key(partition)
    }

    /// The topics the head statement waits on, whose partitions are not all
    /// known yet (a table created by it).
    pub fn head(&self) -> Option<&Pending> {
        self.pending.front()
    }

    /// If the head statement can run: every partition of every table topic
    /// it names is held at its marker. `partitions` gives a topic's
    /// partition count, `None` when the topic is not known yet.
    pub fn ready(
        &self,
        prefix: &str,
        partitions: impl Fn(&str) -> Option<i32>,
    ) -> Option<Vec<(Partition, Held)>> {
        let head = self.pending.front()?;
        let id = head.change.id();
        let mut held = Vec::new();
        for t in &head.change.tables {
            let topic = topics::table_topic(prefix, &t.id.database, &t.id.table);
            for p in 0..partitions(&topic)? {
                let key = (topic.clone(), p);
                match self.held.get(&key) {
                    Some(h) if h.id == id => held.push((key, h.clone())),
                    _ => return None,
                }
            }
        }
        Some(held)
    }

    /// Removes the head statement and releases its partitions.
    pub fn pop(&mut self, released: &[(Partition, Held)]) -> Option<Pending> {
        for (p, _) in released {
            self.held.remove(p);
        }
        self.pending.pop_front()
    }
}

/// What running a statement at the destination came to.
pub enum Outcome {
    Applied,
    /// It had already been applied (a restart after it ran).
    AlreadyApplied(String),
    Failed(String),
}

/// Errors that mean the statement's effect is already there.
const ALREADY_DONE: [u16; 14] = [
    1007, // database exists
    1008, // database does not exist (DROP)
    1050, // table exists
    1051, // unknown table (DROP)
    1060, // duplicate column
    1061, // duplicate key name
    1091, // cannot drop: does not exist
    1146, // table does not exist
    1304, // routine exists
    1305, // routine does not exist
    1359, // trigger exists
    1360, // trigger does not exist
    1537, // event exists
    1539, // event does not exist
];

/// The statement as it is run at the destination: a DEFINER naming an
/// account the destination does not have becomes `DEFINER=CURRENT_USER`
/// (with a warning), a trigger gets the guard when `guard` is set, and an
/// event stays disabled there (`DISABLE ON SLAVE`).
pub async fn prepare(conn: &mut Conn, sql: &str, sql_mode: Option<&str>, guard: bool) -> String {
    let mut sql = sql.to_string();
    if let Some(d) = change_stream::ddl::definer(&sql) {
        let exists: Result<Option<i64>, _> = conn
            .exec_first(
                "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = ?",
                (d.user.as_str(), d.host.as_str()),
            )
            .await;
        match exists {
            Ok(Some(n)) if n > 0 => {}
            Ok(_) => {
                tracing::warn!(user = %d.user, host = %d.host, "the DEFINER of a statement does not exist at the destination: created with DEFINER=CURRENT_USER (the sink's account) instead");
                sql = d.replace_with_current_user(&sql);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up DEFINER accounts at the destination (grant SELECT on mysql.user); the statement keeps its DEFINER");
            }
        }
    }
    let ansi = change_stream::ddl::ansi_quotes(sql_mode);
    if guard {
        if let Some(g) = change_stream::ddl::guard_trigger(&sql, ansi) {
            sql = g;
        }
    }
    if let Some(e) = change_stream::ddl::disable_event_on_replica(&sql, ansi) {
        sql = e;
    }
    sql
}

/// The name of the marker table that records, atomically with a RENAME
/// TABLE statement, that it ran (and, with `_done`, that it completed).
fn rename_marker(prefix: &str, id: &str) -> String {
    format!(
        "rename_{:016x}",
        change_stream::avro::fingerprint(&format!("{prefix}\n{id}"))
    )
}

/// Runs a RENAME TABLE statement so that running it again after a crash
/// is recognised: a marker table in the state database is renamed in the
/// same atomic statement, so it exists under its `_done` name exactly when
/// the statement ran. (A RENAME that swaps tables would otherwise swap them
/// back when run twice.)
pub async fn execute_rename(
    conn: &mut Conn,
    state_db: &str,
    prefix: &str,
    id: &str,
    database: &str,
    sql_mode: Option<&str>,
    sql: &str,
) -> Result<Outcome, SinkError> {
    let marker = rename_marker(prefix, id);
    let done = TableId::new(state_db, format!("{marker}_done"));
    if table_exists(conn, &done).await? {
        return Ok(Outcome::AlreadyApplied(format!(
            "its marker {done} says it ran"
        )));
    }
    let pending = TableId::new(state_db, marker.as_str());
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {} (ran INT) ENGINE=InnoDB",
        pending.quoted()
    ))
    .await
    .map_err(|e| from_mysql("cannot create a rename marker table", e))?;
    let statement = format!(
        "{}\n, {} TO {}",
        sql.trim_end().trim_end_matches(';'),
        pending.quoted(),
        done.quoted()
    );
    let outcome = execute(conn, database, sql_mode, &statement).await?;
    if let Outcome::Failed(_) = outcome {
        let _ = conn
            .query_drop(format!("DROP TABLE IF EXISTS {}", pending.quoted()))
            .await;
    }
    Ok(outcome)
}

/// Drops the marker of a RENAME once its position is stored.
pub async fn forget_rename(conn: &mut Conn, state_db: &str, prefix: &str, id: &str) {
    let done = TableId::new(state_db, format!("{}_done", rename_marker(prefix, id)));
    if let Err(e) = conn
        .query_drop(format!("DROP TABLE IF EXISTS {}", done.quoted()))
        .await
    {
        tracing::warn!(error = %e, table = %done, "cannot drop a rename marker table");
    }
}

/// Whether the table at the destination has exactly `table`'s columns,
/// by name and type, in order.
pub async fn has_columns(conn: &mut Conn, table: &TableSchema) -> Result<bool, SinkError> {
    let columns: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (table.id.database.as_str(), table.id.table.as_str()),
        )
        .await
        .map_err(|e| from_mysql("cannot read the columns of a table", e))?;
    Ok(columns.len() == table.columns.len()
        && columns.iter().zip(&table.columns).all(|((name, ty), c)| {
            name.eq_ignore_ascii_case(&c.name) && ty.eq_ignore_ascii_case(&c.column_type)
        }))
}

/// Runs a statement at the destination in `database` (none if empty),
/// in the source's `sql_mode` when it is known.
pub async fn execute(
    conn: &mut Conn,
    database: &str,
    sql_mode: Option<&str>,
    sql: &str,
) -> Result<Outcome, SinkError> {
    if !database.is_empty() {
        // The database may not exist (yet) at the destination; the statement
        // itself then fails or creates it.
        let _ = conn
            .query_drop(format!("USE {}", quote_ident(database)))
            .await;
    }
    if let Some(mode) = sql_mode {
        let set = if !mode.is_empty() && mode.bytes().all(|b| b.is_ascii_digit()) {
            format!("SET SESSION sql_mode = {mode}")
        } else {
            format!("SET SESSION sql_mode = '{}'", mode.replace('\'', "''"))
        };
        if let Err(e) = conn.query_drop(set).await {
            tracing::warn!(error = %e, sql_mode = mode, "cannot take the source's sql_mode for a schema change; it runs in the sink's");
        }
    }
    let result = conn.query_drop(sql).await;
    if sql_mode.is_some() {
        conn.query_drop(crate::apply::SESSION_SQL_MODE)
            .await
            .map_err(|e| from_mysql("cannot restore the session's sql_mode", e))?;
    }
    match result {
        Ok(()) => Ok(Outcome::Applied),
        Err(mysql_async::Error::Server(e)) if ALREADY_DONE.contains(&e.code) => Ok(
            Outcome::AlreadyApplied(format!("{} (error {})", e.message, e.code)),
        ),
        Err(mysql_async::Error::Server(e)) => {
            Ok(Outcome::Failed(format!("{} (error {})", e.message, e.code)))
        }
        Err(e) => Err(from_mysql("cannot run a schema change", e)),
    }
}
