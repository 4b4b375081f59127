//! The consistent snapshot, and how it hands over to the binlog.
//!
//! ## Without a lock
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` gives a read view and, in
//! MariaDB, the binlog coordinates that match it exactly
//! (`binlog_snapshot_file`/`binlog_snapshot_position`): every transaction
//! committed before that point is visible, none after it.
//! `BINLOG_GTID_POS()` turns the coordinates into a GTID position. No global
//! read lock is taken; writers go on.
//!
//! Each table is read in key order, in chunks of `snapshot_chunk_rows` rows
//! (`WHERE key > last ORDER BY key LIMIT n`), all inside that transaction, and
//! every row becomes an `r` record. After each chunk a checkpoint records the
//! table and the last key; once every table is read, the stream starts at
//! the snapshot's GTID position, so no change is lost or repeated.
//!
//! ## Resuming
//! The read view dies with the connection. When a snapshot taken at point P1
//! is interrupted, the restarted connector takes a new snapshot at P2, then
//! *replays the binlog from P1 to P2* for the tables it had already started
//! (as `c`/`u`/`d` records), and goes on reading those tables from where it
//! stopped, at P2. Everything the destination got from the first snapshot is
//! thereby brought from P1 to P2 (deletes included), the rest is read at P2,
//! and streaming starts at P2. Tables not started yet need no replay.
//! The replay follows schema changes as the stream does: a statement run
//! while the connector was down (a new column, a new index, a table created
//! or dropped) is published in its place, so the destination's tables,
//! created as they were at P1, take it before the rows read at P2 in the new
//! shape. Records sent twice around the interruption are either snapshot
//! upserts of the same state or binlog records of the same place in the
//! history, which the sink skips. A table without a key has no key to resume from: unless it was
//! done, it is read again from its start, after a `SNAPSHOT RESTART` marker
//! that has the destination discard its earlier rows first.

use std::collections::HashSet;
use std::sync::Arc;

use change_stream::event::{Op, SourceInfo};
use change_stream::position::{BinlogCoordinates, GtidPosition};
use change_stream::table::{quote_ident, TableId};
use change_stream::throttle::{take, Limiter};
use change_stream::value::Cell;
use futures::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use crate::binlog::now_ms;
use crate::checkpoint::{KeyValue, SnapshotProgress, StoredPosition};
use crate::convert::{to_cell, Origin};
use crate::encode::{Encoder, TableCtx};
use crate::error::{describe_mysql, SourceError};
use crate::produce::Output;

/// The point a snapshot was taken at.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotPoint {
    pub coords: BinlogCoordinates,
    pub gtid: GtidPosition,
    pub ts_ms: i64,
}

fn sql_err(e: mysql_async::Error) -> SourceError {
    SourceError::Source(describe_mysql(&e))
}

/// Opens a consistent-snapshot transaction on `conn` and returns its point.
pub async fn begin(conn: &mut Conn) -> Result<SnapshotPoint, SourceError> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(sql_err)?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(sql_err)?;
    let status: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(sql_err)?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
    else {
        return Err(SourceError::SourceSetup(
            "the server reports no binlog_snapshot_file/position; is log_bin ON?".into(),
        ));
    };
    let pos: u64 = pos.parse().map_err(|_| {
        SourceError::Source(format!("binlog_snapshot_position `{pos}` is not a number"))
    })?;
    let gtid: Option<String> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.clone(), pos))
        .await
        .map_err(sql_err)?
        .flatten();
    let gtid = gtid.ok_or_else(|| {
        SourceError::Source(format!(
            "BINLOG_GTID_POS('{file}', {pos}) gave no GTID position; the binlog file may have been purged"
        ))
    })?;
    Ok(SnapshotPoint {
        coords: BinlogCoordinates::new(file, pos),
        gtid: gtid.parse()?,
        ts_ms: now_ms(),
    })
}

/// The `[throttle]` limits on reading the snapshot.
pub struct Throttle {
    pub queries: Option<Limiter>,
    pub rows: Option<Limiter>,
    pub bytes: Option<Limiter>,
}

impl Throttle {
    pub fn new(t: &crate::config::ThrottleSection) -> Self {
        Self {
            queries: Limiter::new(t.snapshot_queries_per_second),
            rows: Limiter::new(t.snapshot_rows_per_second),
            bytes: Limiter::new(t.snapshot_mb_per_second * 1_000_000.0),
        }
    }
}

/// Reads every table not yet done, continuing `progress`, and sends their
/// rows as `r` records. Checkpoints after each chunk.
#[allow(clippy::too_many_arguments)]
pub async fn read_tables(
    conn: &mut Conn,
    out: &Output,
    enc: &mut Encoder,
    tables: &[Arc<TableCtx>],
    point: &SnapshotPoint,
    mut progress: SnapshotProgress,
    chunk_rows: u32,
    source_server_id: u32,
    throttle: &mut Throttle,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Result<bool, SourceError> {
    let done: HashSet<TableId> = progress.tables_done.iter().cloned().collect();
    for table in tables {
        let id = &table.schema.id;
        if done.contains(id) {
            continue;
        }
        let mut last_key = match &progress.current {
            Some(c) if c == id => progress
                .last_key
                .as_ref()
                .map(|k| {
                    k.iter()
                        .map(KeyValue::to_value)
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
            _ => None,
        };
        progress.current = Some(id.clone());
        tracing::info!(table = %id, resume = last_key.is_some(), "snapshot of table started");
        let mut rows_read = 0u64;
        loop {
            if *shutdown.borrow() {
                return Ok(false);
            }
            take(&mut throttle.queries, 1.0).await;
            let (n, key) = read_chunk(
                conn,
                out,
                enc,
                table,
                point,
                last_key.as_deref(),
                chunk_rows,
                source_server_id,
                throttle,
            )
            .await?;
            rows_read += n;
            if n == 0 {
                break;
            }
            last_key = key;
            progress.last_key = last_key
                .as_ref()
                .map(|k| k.iter().map(KeyValue::from).collect());
            out.checkpoint(position(point, &progress, source_server_id))
                .await?;
            if table.schema.key.is_empty() || n < chunk_rows as u64 {
                break;
            }
        }
        progress.tables_done.push(id.clone());
        progress.current = None;
        progress.last_key = None;
        out.checkpoint(position(point, &progress, source_server_id))
            .await?;
        tracing::info!(table = %id, rows = rows_read, "snapshot of table done");
    }
    Ok(true)
}

/// The stored position while the snapshot at `point` is at `progress`.
pub fn position(
    point: &SnapshotPoint,
    progress: &SnapshotProgress,
    server_id: u32,
) -> StoredPosition {
    StoredPosition {
        server_id,
        gtid: point.gtid.clone(),
        file: point.coords.file.clone(),
        pos: point.coords.pos,
        snapshot: Some(progress.clone()),
    }
}

/// Reads one chunk; returns the number of rows and the last row's key.
#[allow(clippy::too_many_arguments)]
async fn read_chunk(
    conn: &mut Conn,
    out: &Output,
    enc: &mut Encoder,
    table: &TableCtx,
    point: &SnapshotPoint,
    after_key: Option<&[Value]>,
    chunk_rows: u32,
    source_server_id: u32,
    throttle: &mut Throttle,
) -> Result<(u64, Option<Vec<Value>>), SourceError> {
    let schema = &table.schema;
    let cols: Vec<String> = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let key_cols: Vec<String> = schema.key_columns().map(|c| quote_ident(&c.name)).collect();
    let mut sql = format!("SELECT {} FROM {}", cols.join(", "), schema.id.quoted());
    let mut params: Vec<Value> = Vec::new();
    // The row filter, pushed down as written.
    let mut conditions: Vec<String> = table
        .filter
        .iter()
        .map(|f| format!("({})", f.condition))
        .collect();
    if !key_cols.is_empty() {
        if let Some(after) = after_key {
            // (k1 > ?) OR (k1 = ? AND k2 > ?) OR ...: a form MariaDB's range
            // optimizer turns into index ranges.
            let mut ors = Vec::with_capacity(key_cols.len());
            for i in 0..key_cols.len() {
                let mut ands = Vec::with_capacity(i + 1);
                for (j, col) in key_cols.iter().enumerate().take(i) {
                    ands.push(format!("{col} = ?"));
                    params.push(after[j].clone());
                }
                ands.push(format!("{} > ?", key_cols[i]));
                params.push(after[i].clone());
                ors.push(format!("({})", ands.join(" AND ")));
            }
            conditions.push(format!("({})", ors.join(" OR ")));
        }
    }
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    if !key_cols.is_empty() {
        sql.push_str(&format!(
            " ORDER BY {} LIMIT {chunk_rows}",
            key_cols.join(", ")
        ));
    }
    let source = SourceInfo {
        version: change_stream::VERSION.to_string(),
        name: out.prefix().to_string(),
        server_id: source_server_id,
        gtid: Some(point.gtid.to_string()),
        file: point.coords.file.clone(),
        pos: point.coords.pos,
        row: 0,
        db: schema.id.database.clone(),
        table: Some(schema.id.table.clone()),
        ts_ms: point.ts_ms,
        snapshot: true,
    };
    let mut stream = conn
        .exec_stream::<Row, _, _>(sql, params)
        .await
        .map_err(|e| {
            SourceError::Source(format!("snapshot of {}: {}", schema.id, describe_mysql(&e)))
        })?;
    let mut n = 0u64;
    let mut last_key = None;
    let mut cells: Vec<Cell> = Vec::with_capacity(schema.columns.len());
    while let Some(row) = stream.next().await {
        let row = row.map_err(|e| {
            SourceError::Source(format!("snapshot of {}: {}", schema.id, describe_mysql(&e)))
        })?;
        let values = row.unwrap();
        if throttle.rows.is_some() || throttle.bytes.is_some() {
            let bytes: usize = values
                .iter()
                .map(|v| match v {
                    Value::Bytes(b) => b.len(),
                    _ => 8,
                })
                .sum();
            take(&mut throttle.rows, 1.0).await;
            take(&mut throttle.bytes, bytes as f64).await;
        }
        if !schema.key.is_empty() {
            last_key = Some(
                schema
                    .key
                    .iter()
                    .map(|&i| values[i].clone())
                    .collect::<Vec<_>>(),
            );
        }
        cells.clear();
        for (v, col) in values.into_iter().zip(&schema.columns) {
            cells.push(
                to_cell(col, v, Origin::Snapshot)
                    .map_err(|e| SourceError::Source(format!("snapshot of {}: {e}", schema.id)))?,
            );
        }
        enc.emit(out, table, Op::Read, None, Some(&cells), &source)
            .await?;
        n += 1;
    }
    Ok((n, last_key))
}
