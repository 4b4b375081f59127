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
//! ## Several connections, one point
//! `source.snapshot_connections` transactions are opened together
//! ([`begin_many`]) and kept only if they report the same binlog point; a
//! commit between two of them moves the point, and they are opened again
//! (after a few tries the largest group that agrees reads). All of them
//! therefore see the same state, and a table, or a key range of one, can be
//! read on any of them with no replay of its own. The plan ([`plan`]) is
//! made on the first connection inside the snapshot: tables not read yet
//! become parts, a large table whose first key column is an integer one
//! part per connection by ranges of that column (`MIN`/`MAX` as the
//! snapshot sees them, open at both ends), and it is stored in the
//! position before any row, so that a restart reads each part on from its
//! own last key. Connections take the next part when done with one.
//!
//! A transaction keeps the metadata lock of every table it has read until
//! it ends, which makes a schema change on such a table wait for the
//! snapshot, as with any consistent dump. With several connections, a
//! connection asking for a table after such a statement queued waits
//! behind it while the statement waits for another connection of the same
//! snapshot: a deadlock nothing would break. Snapshot connections
//! therefore wait at most `LOCK_WAIT_SECS` for a lock; a timeout, or a
//! table dropped or changed since the read view, interrupts the snapshot
//! ([`SourceError::SnapshotInterrupted`]), the statement goes through, and
//! the snapshot is taken again and resumes as below, the statement
//! replayed in its place.
//!
//! ## Resuming
//! The read view dies with the connection. When a snapshot taken at point P1
//! is interrupted, the restarted connector takes a new snapshot at P2, then
//! *replays the binlog from P1 to P2* for the tables it had already started
//! (as `c`/`u`/`d` records), and goes on reading each part of those tables
//! from the last key stored for it, at P2. Everything the destination got from the first snapshot is
//! thereby brought from P1 to P2 (deletes included), the rest is read at P2,
//! and streaming starts at P2. Tables not started yet need no replay. The
//! replay's position is stored as it goes, with the snapshot's progress,
//! so that an interruption in the middle of it replays on from there (to
//! the next snapshot point), and with exactly-once nothing committed is
//! sent again.
//! The replay follows schema changes as the stream does: a statement run
//! while the connector was down (a new column, a new index, a table created
//! or dropped) is published in its place, so the destination's tables,
//! created as they were at P1, take it before the rows read at P2 in the new
//! shape. Records sent twice around the interruption are either snapshot
//! upserts of the same state or binlog records of the same place in the
//! history, which the sink skips. A table without a key has no key to
//! resume from: unless it was done, it is read again from its start, after
//! a `SNAPSHOT RESTART` schema change that has the destination discard its
//! earlier rows first (it falls, by its offsets, between them and the rows
//! read again).
//!
//! ## The end
//! Once every part is read, each table gets a `SNAPSHOT DONE` schema change
//! after its rows, before the position that ends the snapshot is stored (a
//! crash in between sends them again; they are idempotent). A sink that
//! created the table without its secondary indexes adds them there.

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

use crate::binlog::{self, now_ms, BinlogReader};
use crate::checkpoint::{KeyRange, KeyValue, SnapshotProgress, StoredPosition, TableProgress};
use crate::convert::{to_cell, Origin};
use crate::encode::{Encoder, TableCtx};
use crate::error::{describe_mysql, SourceError};
use crate::produce::Output;
use crate::produce::Unit;

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

/// How long a snapshot connection waits for a table's metadata lock before
/// the snapshot is taken again (see the module essay).
const LOCK_WAIT_SECS: u32 = 10;

/// An error reading `table`: the ones a schema change on the source causes
/// interrupt the snapshot, which resumes; the rest are what they are.
fn read_err(table: &TableId, e: mysql_async::Error) -> SourceError {
    let message = format!("snapshot of {table}: {}", describe_mysql(&e));
    match &e {
        // Lock wait timeout, table definition changed, no such table,
        // unknown column.
        mysql_async::Error::Server(s) if [1205, 1412, 1146, 1054].contains(&s.code) => {
            SourceError::SnapshotInterrupted(format!(
                "{message} (a schema change on the source; the snapshot is taken again and resumes)"
            ))
        }
        _ => SourceError::Source(message),
    }
}

/// Opens a consistent-snapshot transaction on `conn` and returns its
/// binlog coordinates.
async fn begin(conn: &mut Conn) -> Result<BinlogCoordinates, SourceError> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(sql_err)?;
    conn.query_drop(format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_SECS}"))
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
    Ok(BinlogCoordinates::new(file, pos))
}

/// The snapshot point at `coords`: its GTID position, which the server
/// finds by reading the binlog file up to there (once per snapshot, not
/// per connection: a file can be a gigabyte).
async fn point_at(
    conn: &mut Conn,
    coords: BinlogCoordinates,
) -> Result<SnapshotPoint, SourceError> {
    let (file, pos) = (coords.file.clone(), coords.pos);
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
        coords,
        gtid: gtid.parse()?,
        ts_ms: now_ms(),
    })
}

/// The `source` block of a snapshot schema change of table `id`: a snapshot
/// record's, at the snapshot point.
fn snapshot_change_source(
    out: &Output,
    source_server_id: u32,
    id: &TableId,
    point: &SnapshotPoint,
) -> SourceInfo {
    let mut source =
        crate::definition_source(out, source_server_id, &id.database, &id.table, point.ts_ms);
    source.file = point.coords.file.clone();
    source.pos = point.coords.pos;
    source.gtid = Some(point.gtid.to_string());
    source
}

/// The full synchronization's part of one attempt of the source connector.
pub struct Snapshot<'a> {
    pub config: &'a crate::config::Config,
    pub opts: &'a mysql_async::Opts,
    pub source_server_id: u32,
}

impl Snapshot<'_> {
    /// Takes the snapshot (fresh, or resuming the one `position` records),
    /// hands it over to the binlog at its point and returns that point;
    /// `None` on shutdown. Shapes that schema changes replayed on the way
    /// leave are kept in `tables`.
    pub async fn run(
        &self,
        out: &mut Output,
        enc: &mut Encoder,
        tables: &mut std::collections::HashMap<TableId, Arc<TableCtx>>,
        definitions_read_at: &mut Option<GtidPosition>,
        position: Option<StoredPosition>,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<GtidPosition>, SourceError> {
        let Snapshot {
            config,
            opts,
            source_server_id,
        } = *self;
        let (mut conns, point) = begin_many(
            opts,
            config.source.snapshot_connections,
            config.source.connect_timeout_secs,
        )
        .await?;
        change_stream::telemetry::running();
        let progress = match position {
            None => {
                // Schema changes made between reading the definitions
                // and the snapshot point: published (and the shapes
                // updated) before any snapshot row.
                if let Some(from) = definitions_read_at.take() {
                    if from != point.gtid {
                        let rows = binlog::Rows::None;
                        let replay =
                            self.replay(out, enc, tables, &from, &point, rows, None, shutdown);
                        if replay.await? == binlog::Ended::Shutdown {
                            return Ok(None);
                        }
                    }
                }
                SnapshotProgress::default()
            }
            Some(p) => {
                let progress = p.snapshot.unwrap_or_default().normalized();
                // The stored progress can be behind the rows already
                // sent: a table may have been started after it. So every
                // keyed table gets the changes between the two snapshot
                // points (harmless where none of its rows were sent: the
                // new snapshot writes each row's state again); a keyless
                // table only when it was done, since it is otherwise
                // read again from its start, below. Schema changes in
                // between are published in their place, as in the
                // stream: the destination has the tables as they were
                // at the first point, and the rows read at the new
                // point have the shapes of then.
                let done: HashSet<&TableId> = progress.tables_done.iter().collect();
                let read_again: HashSet<TableId> = tables
                    .values()
                    .filter(|t| t.schema.key.is_empty() && !done.contains(&t.schema.id))
                    .map(|t| t.schema.id.clone())
                    .collect();
                let previous =
                    change_stream::position::BinlogCoordinates::new(p.file.clone(), p.pos);
                if previous != point.coords {
                    tracing::info!(from = %previous, to = %point.coords, "resuming an interrupted snapshot: replaying the binlog between the two snapshot points");
                    let rows = binlog::Rows::Except(&read_again);
                    let replay = self.replay(
                        out,
                        enc,
                        tables,
                        &p.gtid,
                        &point,
                        rows,
                        Some(&progress),
                        shutdown,
                    );
                    if replay.await? == binlog::Ended::Shutdown {
                        return Ok(None);
                    }
                }
                // A keyless table not done is read again from its
                // start: whatever rows of it went out before are
                // discarded first, since the sink cannot tell them from
                // the rows read again.
                let mut restarted: Vec<&Arc<TableCtx>> = tables
                    .values()
                    .filter(|t| read_again.contains(&t.schema.id))
                    .collect();
                restarted.sort_by(|a, b| a.schema.id.cmp(&b.schema.id));
                for t in restarted {
                    let id = &t.schema.id;
                    tracing::info!(table = %id, "a table without a key is read again from its start: its rows sent before are discarded at the destination");
                    let source = snapshot_change_source(out, source_server_id, id, &point);
                    let change = change_stream::schema_change::SchemaChange::snapshot_restart(
                        source,
                        t.schema.clone(),
                    );
                    crate::ddl::publish(out, &change).await?;
                }
                progress
            }
        };
        // Stored before any row goes out, so that a restart after some
        // did always knows a snapshot was under way.
        out.checkpoint(self::position(&point, &progress, source_server_id))?;
        out.flush().await?;
        let mut ordered: Vec<Arc<TableCtx>> = tables.values().cloned().collect();
        ordered.sort_by(|a, b| a.schema.id.cmp(&b.schema.id));
        let finished = read_tables(
            &mut conns,
            out,
            &ordered,
            &point,
            progress,
            config.source.snapshot_chunk_rows,
            source_server_id,
            &config.throttle,
            shutdown,
        )
        .await?;
        if !finished {
            return Ok(None);
        }
        for conn in &mut conns {
            conn.query_drop("COMMIT").await.map_err(sql_err)?;
        }
        // Every table's rows are out: a schema change after them, for what the
        // destination puts off until then. Sent before the position that
        // ends the snapshot, so a crash in between sends them again.
        for t in &ordered {
            let source = snapshot_change_source(out, source_server_id, &t.schema.id, &point);
            let change =
                change_stream::schema_change::SchemaChange::snapshot_done(source, t.schema.clone());
            crate::ddl::publish(out, &change).await?;
        }
        out.checkpoint(StoredPosition {
            server_id: source_server_id,
            gtid: point.gtid.clone(),
            file: point.coords.file.clone(),
            pos: point.coords.pos,
            snapshot: None,
        })?;
        change_stream::telemetry::snapshot_finished();
        tracing::info!(gtid = %point.gtid, "snapshot finished; streaming the binlog");
        Ok(Some(point.gtid))
    }

    /// Replays the binlog from `from` to the snapshot point: schema
    /// changes published in their place (and the shapes in `tables`
    /// updated), the rows `rows` says. Resuming the snapshot of `progress`,
    /// the replay's position is stored as it goes, with that progress.
    #[allow(clippy::too_many_arguments)]
    async fn replay(
        &self,
        out: &mut Output,
        enc: &mut Encoder,
        tables: &mut std::collections::HashMap<TableId, Arc<TableCtx>>,
        from: &GtidPosition,
        point: &SnapshotPoint,
        rows: binlog::Rows<'_>,
        progress: Option<&SnapshotProgress>,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<binlog::Ended, SourceError> {
        let mut reader =
            BinlogReader::following(self.config, self.opts, from, tables, out.prefix()).await?;
        if let Some(p) = progress {
            reader.replaying(p.clone());
        }
        let ended = reader
            .read(
                out,
                enc,
                self.source_server_id,
                Some(&point.coords),
                rows,
                progress.is_some(),
                shutdown,
            )
            .await;
        *tables = reader.close().await;
        ended
    }
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

/// Opens `n` snapshot transactions at one point (see the module essay):
/// each reports its binlog point, and they are tried again while they
/// differ (a commit came between them). After a few tries the connections
/// that share the most common point are kept, at least one.
pub async fn begin_many(
    opts: &mysql_async::Opts,
    n: usize,
    timeout_secs: u64,
) -> Result<(Vec<Conn>, SnapshotPoint), SourceError> {
    const TRIES: usize = 5;
    let mut best: Option<(Vec<Conn>, BinlogCoordinates)> = None;
    for attempt in 0..TRIES {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(crate::connect(opts, timeout_secs).await?);
        }
        let points = futures::future::try_join_all(conns.iter_mut().map(begin)).await?;
        let first = points[0].clone();
        let mut together: Vec<(Conn, BinlogCoordinates)> = conns.into_iter().zip(points).collect();
        // The most common point among them.
        let mut counts: Vec<(BinlogCoordinates, usize)> = Vec::new();
        for (_, p) in &together {
            match counts.iter_mut().find(|(c, _)| c == p) {
                Some(c) => c.1 += 1,
                None => counts.push((p.clone(), 1)),
            }
        }
        let (coords, count) = counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .unwrap_or((first, 1));
        together.retain(|(_, p)| *p == coords);
        let mut conns: Vec<Conn> = together.into_iter().map(|(c, _)| c).collect();
        if count == n {
            let point = point_at(&mut conns[0], coords).await?;
            return Ok((conns, point));
        }
        tracing::debug!(
            attempt,
            together = count,
            of = n,
            "snapshot connections got different points; trying again"
        );
        if best.as_ref().is_none_or(|(b, _)| b.len() < conns.len()) {
            best = Some((conns, coords));
        }
    }
    let (mut conns, coords) = best.expect("at least one attempt");
    let point = point_at(&mut conns[0], coords).await?;
    tracing::info!(
        connections = conns.len(),
        of = n,
        "the snapshot connections could not all start at one point (writes between them): reading with those that did"
    );
    Ok((conns, point))
}

/// What the readers share: the parts left and the progress made.
struct Shared {
    queue: std::collections::VecDeque<(Arc<TableCtx>, TableProgress)>,
    progress: SnapshotProgress,
}

/// Plans the reading (see the module essay): the parts of tables a
/// resumed snapshot left are read on from where they stopped, and every
/// table not planned yet becomes one part, or `pieces` key ranges when it
/// is large and its first key column an integer. The plan is recorded in
/// `progress` before any row is read, so that a restart finds it.
async fn plan(
    conn: &mut Conn,
    tables: &[Arc<TableCtx>],
    progress: &mut SnapshotProgress,
    pieces: usize,
    chunk_rows: u32,
) -> Result<Vec<(Arc<TableCtx>, TableProgress)>, SourceError> {
    let by_id: std::collections::HashMap<&TableId, &Arc<TableCtx>> =
        tables.iter().map(|t| (&t.schema.id, t)).collect();
    // Parts of tables that no longer exist are dropped.
    progress
        .in_progress
        .retain(|t| by_id.contains_key(&t.table));
    let mut parts: Vec<(Arc<TableCtx>, TableProgress)> = progress
        .in_progress
        .iter()
        .map(|t| (by_id[&t.table].clone(), t.clone()))
        .collect();
    // Parts under way first, so that they finish.
    parts.sort_by_key(|(_, t)| t.last_key.is_none());
    let done: HashSet<TableId> = progress.tables_done.iter().cloned().collect();
    for table in tables {
        let id = &table.schema.id;
        if done.contains(id) || progress.planned(id) {
            continue;
        }
        let ranges = match split_column(table) {
            Some(column) if pieces > 1 => {
                key_ranges(conn, table, column, pieces, chunk_rows).await?
            }
            _ => vec![None],
        };
        if ranges.len() > 1 {
            tracing::info!(table = %id, parts = ranges.len(), "large table: read in key ranges on several connections");
        }
        for range in ranges {
            let part = TableProgress {
                table: id.clone(),
                range,
                last_key: None,
            };
            progress.advance(&part);
            parts.push((table.clone(), part));
        }
    }
    Ok(parts)
}

/// The first key column, when it is an integer (what key ranges split).
fn split_column(table: &TableCtx) -> Option<&change_stream::table::Column> {
    let first = table.schema.key_columns().next()?;
    matches!(
        first.data_type.as_str(),
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint"
    )
    .then_some(first)
}

/// Splits a table into up to `pieces` ranges of its first key column, of
/// at least `chunk_rows` rows each by the server's estimate; one range
/// (`None`) when it is not worth it.
async fn key_ranges(
    conn: &mut Conn,
    table: &TableCtx,
    column: &change_stream::table::Column,
    pieces: usize,
    chunk_rows: u32,
) -> Result<Vec<Option<KeyRange>>, SourceError> {
    let id = &table.schema.id;
    let estimate: Option<u64> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (id.database.as_str(), id.table.as_str()),
        )
        .await
        .map_err(sql_err)?
        .flatten();
    let pieces = pieces.min((estimate.unwrap_or(0) / chunk_rows.max(1) as u64) as usize);
    if pieces < 2 {
        return Ok(vec![None]);
    }
    let col = quote_ident(&column.name);
    // Read in the snapshot's transaction: the bounds of the rows it sees.
    let bounds: Option<(Option<i128>, Option<i128>)> = conn
        .query_first(format!(
            "SELECT CAST(MIN({col}) AS CHAR), CAST(MAX({col}) AS CHAR) FROM {}",
            id.quoted()
        ))
        .await
        .map_err(|e| read_err(id, e))?
        .map(|(lo, hi): (Option<String>, Option<String>)| {
            (
                lo.and_then(|v| v.parse().ok()),
                hi.and_then(|v| v.parse().ok()),
            )
        });
    let Some((Some(lo), Some(hi))) = bounds else {
        return Ok(vec![None]);
    };
    let unsigned = column.column_type.contains("unsigned");
    let value = |v: i128| {
        if unsigned {
            KeyValue::UInt(v as u64)
        } else {
            KeyValue::Int(v as i64)
        }
    };
    let step = (hi - lo + 1) / pieces as i128;
    if step < 1 {
        return Ok(vec![None]);
    }
    // Open at both ends: whatever the bounds, every row is in one range.
    let mut ranges = Vec::with_capacity(pieces);
    for i in 0..pieces as i128 {
        let from = (i > 0).then(|| value(lo + i * step));
        let to = (i + 1 < pieces as i128).then(|| value(lo + (i + 1) * step - 1));
        ranges.push(Some(KeyRange { from, to }));
    }
    Ok(ranges)
}

/// Reads every part the plan has, continuing `progress`, and sends their
/// rows as `r` records: each connection takes the next part left when it
/// is done with one, so tables, and the ranges of a large one, are read in
/// parallel. Checkpoints after each chunk; returns `false` on shutdown.
#[allow(clippy::too_many_arguments)]
pub async fn read_tables(
    conns: &mut [Conn],
    out: &Output,
    tables: &[Arc<TableCtx>],
    point: &SnapshotPoint,
    mut progress: SnapshotProgress,
    chunk_rows: u32,
    source_server_id: u32,
    throttle: &crate::config::ThrottleSection,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Result<bool, SourceError> {
    let readers = conns.len();
    let parts = plan(&mut conns[0], tables, &mut progress, readers, chunk_rows).await?;
    report_plan(&mut conns[0], tables, &parts).await?;
    // The plan is stored before any of its rows go out.
    out.checkpoint(position(point, &progress, source_server_id))?;
    let shared = std::sync::Mutex::new(Shared {
        queue: parts.into(),
        progress,
    });
    let finished = futures::future::try_join_all(conns.iter_mut().map(|conn| {
        // Each reader takes its share of the limits.
        let mut throttle = Throttle::new(&crate::config::ThrottleSection {
            snapshot_queries_per_second: throttle.snapshot_queries_per_second / readers as f64,
            snapshot_rows_per_second: throttle.snapshot_rows_per_second / readers as f64,
            snapshot_mb_per_second: throttle.snapshot_mb_per_second / readers as f64,
        });
        let shared = &shared;
        async move {
            let mut enc = Encoder::default();
            loop {
                let next = shared.lock().expect("not poisoned").queue.pop_front();
                let Some((table, part)) = next else {
                    return Ok::<bool, SourceError>(true);
                };
                let read = read_part(
                    conn,
                    out,
                    &mut enc,
                    &table,
                    part,
                    point,
                    shared,
                    chunk_rows,
                    source_server_id,
                    &mut throttle,
                    shutdown,
                )
                .await?;
                if !read {
                    return Ok(false);
                }
            }
        }
    }))
    .await?;
    Ok(finished.into_iter().all(|f| f))
}

/// Tells telemetry the tables of the plan, with the server's estimate of
/// their rows (one query for them all); tables done before a restart are
/// left out.
async fn report_plan(
    conn: &mut Conn,
    tables: &[Arc<TableCtx>],
    parts: &[(Arc<TableCtx>, TableProgress)],
) -> Result<(), SourceError> {
    let mut databases: Vec<&str> = tables
        .iter()
        .map(|t| t.schema.id.database.as_str())
        .collect();
    databases.sort_unstable();
    databases.dedup();
    let estimates: std::collections::HashMap<(String, String), u64> = if databases.is_empty() {
        Default::default()
    } else {
        let marks = vec!["?"; databases.len()].join(", ");
        let params: Vec<Value> = databases.iter().map(|d| Value::from(*d)).collect();
        conn.exec::<(String, String, Option<u64>), _, _>(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({marks})"
            ),
            params,
        )
        .await
        .map_err(sql_err)?
        .into_iter()
        .filter_map(|(d, t, n)| Some(((d, t), n?)))
        .collect()
    };
    let mut planned: Vec<(String, Option<u64>, usize)> = Vec::new();
    for (table, _) in parts {
        let id = &table.schema.id;
        let name = id.to_string();
        match planned.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, count)) => *count += 1,
            None => planned.push((
                name,
                estimates
                    .get(&(id.database.clone(), id.table.clone()))
                    .copied(),
                1,
            )),
        }
    }
    change_stream::telemetry::snapshot_plan(planned);
    Ok(())
}

/// Reads one part of a table from where its progress says, in chunks;
/// `false` on shutdown.
#[allow(clippy::too_many_arguments)]
async fn read_part(
    conn: &mut Conn,
    out: &Output,
    enc: &mut Encoder,
    table: &Arc<TableCtx>,
    mut part: TableProgress,
    point: &SnapshotPoint,
    shared: &std::sync::Mutex<Shared>,
    chunk_rows: u32,
    source_server_id: u32,
    throttle: &mut Throttle,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Result<bool, SourceError> {
    let id = &table.schema.id;
    let mut last_key = part
        .last_key
        .as_ref()
        .map(|k| {
            k.iter()
                .map(KeyValue::to_value)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let bounds = match &part.range {
        Some(r) => (
            r.from.as_ref().map(KeyValue::to_value).transpose()?,
            r.to.as_ref().map(KeyValue::to_value).transpose()?,
        ),
        None => (None, None),
    };
    tracing::info!(table = %id, range = ?part.range, resume = last_key.is_some(), "snapshot of table started");
    let mut rows_read = 0u64;
    loop {
        if *shutdown.borrow() {
            return Ok(false);
        }
        take(&mut throttle.queries, 1.0).await;
        // No commit falls between a chunk's first row and its checkpoint
        // (or the checkpoint of a part of it, see read_chunk).
        let mut unit = out.unit().await;
        let (table_id, range) = (part.table.clone(), part.range.clone());
        let checkpoint = |key: &[Value]| {
            let mut s = shared.lock().expect("not poisoned");
            s.progress.advance(&TableProgress {
                table: table_id.clone(),
                range: range.clone(),
                last_key: Some(key.iter().map(KeyValue::from).collect()),
            });
            out.checkpoint(position(point, &s.progress, source_server_id))
        };
        let (n, key) = read_chunk(
            conn,
            out,
            enc,
            table,
            point,
            last_key.as_deref(),
            (bounds.0.as_ref(), bounds.1.as_ref()),
            chunk_rows,
            source_server_id,
            throttle,
            &mut unit,
            &checkpoint,
        )
        .await?;
        rows_read += n;
        change_stream::telemetry::snapshot_rows(&part.table.to_string(), n);
        if n == 0 {
            if let Some(unit) = unit {
                unit.finish(); // nothing sent
            }
            break;
        }
        last_key = key;
        part.last_key = last_key
            .as_ref()
            .map(|k| k.iter().map(KeyValue::from).collect());
        {
            // Under the lock, so that positions are checkpointed in the
            // order they grow.
            let mut s = shared.lock().expect("not poisoned");
            s.progress.advance(&part);
            out.checkpoint(position(point, &s.progress, source_server_id))?;
        }
        if let Some(unit) = unit {
            unit.finish();
        }
        if table.schema.key.is_empty() || n < chunk_rows as u64 {
            break;
        }
    }
    {
        let mut s = shared.lock().expect("not poisoned");
        s.progress.finish(id, &part.range);
        out.checkpoint(position(point, &s.progress, source_server_id))?;
    }
    change_stream::telemetry::snapshot_part_done(&id.to_string());
    tracing::info!(table = %id, rows = rows_read, "snapshot of table done");
    Ok(true)
}

/// Rows between two looks, inside a chunk, at whether a commit is wanted.
const UNIT_CHECK_ROWS: u64 = 256;

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
    range: (Option<&Value>, Option<&Value>),
    chunk_rows: u32,
    source_server_id: u32,
    throttle: &mut Throttle,
    unit: &mut Option<Unit>,
    checkpoint: &(dyn Fn(&[Value]) -> Result<(), SourceError> + Sync),
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
    // A key range of the table: bounds on its first key column.
    if let Some(from) = range.0 {
        conditions.push(format!("{} >= ?", key_cols[0]));
        params.push(from.clone());
    }
    if let Some(to) = range.1 {
        conditions.push(format!("{} <= ?", key_cols[0]));
        params.push(to.clone());
    }
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
        .map_err(|e| read_err(&schema.id, e))?;
    let mut n = 0u64;
    let mut last_key = None;
    let mut cells: Vec<Cell> = Vec::with_capacity(schema.columns.len());
    while let Some(row) = stream.next().await {
        let row = row.map_err(|e| read_err(&schema.id, e))?;
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
        enc.emit(out, table, Op::Read, None, Some(&cells), &source, None)
            .await?;
        n += 1;
        // A commit wanted in the middle of a chunk: the rows so far are a
        // unit of their own (their last key is where a restart goes on),
        // rather than the other connections waiting for this chunk's end.
        if n.is_multiple_of(UNIT_CHECK_ROWS) && unit.is_some() && out.commit_wanted() {
            if let Some(key) = &last_key {
                checkpoint(key)?;
                if let Some(u) = unit.take() {
                    u.finish();
                }
                *unit = out.unit().await;
            }
        }
    }
    Ok((n, last_key))
}
