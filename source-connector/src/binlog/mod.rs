//! Reading the binlog as a MariaDB replica does.
//!
//! The connection registers as a replica with the configured `server_id`
//! and asks for the binlog from a GTID position (`@slave_connect_state`), with
//! `@mariadb_slave_capability=4` so that MariaDB sends its own GTID events
//! rather than rewriting them. Three stages, one file each, turn its events
//! into records: `decode.rs` (an event into what it means: a transaction's
//! start, rows, its end, a statement), `schemas.rs` (which table rows are
//! of, in which shape, and DDL into schema changes), `emit.rs` (rows into
//! change records). This file is the stream: the connection, the position
//! (GTID of the last complete transaction and the binlog coordinates of its
//! end), and the checkpoints.
//!
//! A transaction ends with an XID event (or a `COMMIT` query for
//! non-transactional engines, or with its only statement for DDL); its end
//! is a checkpoint: once the broker has every record before it, the
//! connector may resume from there. Its end also has the END of its
//! transaction metadata written, with the counts of what it had written.
//!
//! The same reader replays a stretch of binlog that ends at a given point;
//! `snapshot.rs` uses that to resume an interrupted snapshot.

mod decode;
mod emit;
mod schemas;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use change_stream::event::SourceInfo;
use change_stream::position::{file_seq, BinlogCoordinates, GtidPosition};
use change_stream::table::TableId;
use futures::{FutureExt, StreamExt};
use mysql_async::binlog::events::RowsEventData;
use mysql_async::prelude::*;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts};
use tokio::sync::watch;

use self::decode::{Decoded, FileNames, Txn};
use self::schemas::Schemas;
use crate::checkpoint::StoredPosition;
use crate::ddl::DdlContext;
use crate::encode::{Encoder, TableCtx, TxnEvents};
use crate::error::{describe_mysql, SourceError};
use crate::produce::Output;

/// Seconds between heartbeats the server sends while the binlog is idle.
const HEARTBEAT_SECS: u64 = 2;

/// The type code of a heartbeat event.
const HEARTBEAT_EVENT: u8 = 27;

/// Which rows a read turns into records.
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    /// Every selected table's.
    All,
    /// None: only schema changes are followed.
    None,
    /// Every selected table's but these.
    Except(&'a HashSet<TableId>),
}

/// How `read` ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The stop point was reached (replay).
    Reached,
    /// Shutdown was requested.
    Shutdown,
}

/// A binlog connection and what it knows of the stream so far.
pub struct BinlogReader {
    stream: BinlogStream,
    file: String,
    names: FileNames,
    /// GTID position after the last transaction read completely, and the
    /// binlog coordinates of its end.
    gtid: GtidPosition,
    committed: BinlogCoordinates,
    /// Whether `gtid` moved since the last checkpoint.
    dirty: bool,
    txn: Option<Txn>,
    /// What the transaction has had written so far.
    events: TxnEvents,
    prefix: String,
    schemas: Schemas,
    /// While replaying inside a resumed snapshot: its progress, stored
    /// with the replay's position (see [`BinlogReader::replaying`]).
    snapshot: Option<crate::checkpoint::SnapshotProgress>,
    /// `source.ignore_server_ids`: events made at these servers are not
    /// captured (their schema changes still move the shapes).
    ignored: Vec<u32>,
    /// `kafka.heartbeat_interval_ms`, when on, and the last heartbeat.
    heartbeat_every: Option<Duration>,
    last_heartbeat: std::time::Instant,
}

impl BinlogReader {
    /// Connects as a replica and asks for everything after `gtid`.
    pub async fn connect(
        opts: Opts,
        replica_server_id: u32,
        gtid: &GtidPosition,
        tables: HashMap<TableId, Arc<TableCtx>>,
        prefix: &str,
        ddl: DdlContext,
    ) -> Result<Self, SourceError> {
        let err = |e: mysql_async::Error| SourceError::Binlog(describe_mysql(&e));
        let mut conn = Conn::new(opts).await.map_err(err)?;
        let files: Vec<String> = conn
            .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
                row.get::<String, _>(0).unwrap_or_default()
            })
            .await
            .map_err(err)?;
        conn.query_drop(format!(
            "SET @mariadb_slave_capability=4, @slave_connect_state='{gtid}', \
             @slave_gtid_strict_mode=1, @slave_gtid_ignore_duplicates=0, \
             @master_heartbeat_period={}",
            HEARTBEAT_SECS * 1_000_000_000
        ))
        .await
        .map_err(err)?;
        let stream = conn
            .get_binlog_stream(
                BinlogStreamRequest::new(replica_server_id)
                    .with_filename(b"")
                    .with_pos(4u64),
            )
            .await
            .map_err(|e| {
                SourceError::Binlog(format!(
                    "cannot start reading the binlog as replica {replica_server_id}: {}",
                    describe_mysql(&e)
                ))
            })?;
        Ok(Self {
            stream,
            file: String::new(),
            names: FileNames::new(files),
            gtid: gtid.clone(),
            committed: BinlogCoordinates::new("", 0),
            dirty: false,
            txn: None,
            events: TxnEvents::default(),
            prefix: prefix.to_string(),
            schemas: Schemas::new(tables, prefix, ddl),
            snapshot: None,
            ignored: Vec::new(),
            heartbeat_every: None,
            last_heartbeat: std::time::Instant::now(),
        })
    }

    /// Has the positions stored while reading say that the snapshot of
    /// `progress` is under way, its rows brought by this replay up to the
    /// transaction read: a restart replays on from there, to its own
    /// snapshot point, and what was committed is not sent again.
    pub fn replaying(&mut self, progress: crate::checkpoint::SnapshotProgress) {
        self.snapshot = Some(progress);
    }

    /// A reader from `from` that follows schema changes (publishing them
    /// and updating the shapes of `tables`), as the connector's config says.
    pub async fn following(
        config: &crate::config::Config,
        opts: &Opts,
        from: &GtidPosition,
        tables: &HashMap<TableId, Arc<TableCtx>>,
        prefix: &str,
    ) -> Result<Self, SourceError> {
        let mut reader = Self::connect(
            opts.clone(),
            config.source.server_id,
            from,
            tables.clone(),
            prefix,
            DdlContext::new(opts.clone(), Arc::new(config.selection()?)),
        )
        .await?;
        reader.ignored = config.source.ignore_server_ids.clone();
        reader.heartbeat_every = (config.kafka.heartbeat_interval_ms > 0)
            .then(|| Duration::from_millis(config.kafka.heartbeat_interval_ms));
        Ok(reader)
    }

    /// Reads events and writes records until `stop` is reached (if given)
    /// or shutdown is requested; `rows_of` says which rows are written,
    /// `checkpoints` whether transaction ends are stored as positions (not
    /// while replaying inside a snapshot).
    #[allow(clippy::too_many_arguments)]
    pub async fn read(
        &mut self,
        out: &mut Output,
        enc: &mut Encoder,
        source_server_id: u32,
        stop: Option<&BinlogCoordinates>,
        rows_of: Rows<'_>,
        checkpoints: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Ended, SourceError> {
        let idle_limit = Duration::from_secs(HEARTBEAT_SECS * 5);
        let mut last_checkpoint = std::time::Instant::now();
        let mut last_event = std::time::Instant::now();
        // Heartbeats only while streaming (not in a replay).
        let heartbeats = self.heartbeat_every.filter(|_| checkpoints);
        loop {
            if heartbeats.is_some_and(|every| self.last_heartbeat.elapsed() >= every) {
                self.heartbeat(out, source_server_id).await?;
            }
            if *shutdown.borrow() {
                if checkpoints {
                    self.send_checkpoint(out, source_server_id).await?;
                }
                if self.txn.is_some() && out.exactly_once() {
                    // The part of a transaction sent must not be committed.
                    out.recover().await?;
                }
                return Ok(Ended::Shutdown);
            }
            // With exactly-once, the unit ends between transactions when
            // the binlog has nothing ready, so that an idle stream is
            // committed at once.
            let between = checkpoints && out.in_unit() && self.txn.is_none();
            let ready = if between {
                self.stream.next().now_or_never()
            } else {
                None
            };
            let next = match ready {
                Some(event) => Ok(event),
                None => {
                    if between {
                        self.send_checkpoint(out, source_server_id).await?;
                        out.end_unit();
                        last_checkpoint = std::time::Instant::now();
                    }
                    let waited = idle_limit.saturating_sub(last_event.elapsed());
                    let next_heartbeat =
                        heartbeats.map(|every| every.saturating_sub(self.last_heartbeat.elapsed()));
                    tokio::select! {
                        r = tokio::time::timeout(waited, self.stream.next()) => r,
                        _ = shutdown.changed() => continue,
                        // Sent at the top of the loop.
                        _ = tokio::time::sleep(next_heartbeat.unwrap_or_default()), if next_heartbeat.is_some() => continue,
                    }
                }
            };
            let event = match next {
                Err(_) => {
                    return Err(SourceError::Binlog(format!(
                        "no event or heartbeat from the source for {}s: connection lost",
                        idle_limit.as_secs()
                    )))
                }
                Ok(None) => {
                    return Err(SourceError::Binlog(
                        "the source closed the binlog connection".into(),
                    ))
                }
                Ok(Some(Err(e))) => return Err(SourceError::Binlog(describe_mysql(&e))),
                Ok(Some(Ok(ev))) => ev,
            };
            last_event = std::time::Instant::now();
            if checkpoints {
                out.begin_unit().await;
            }
            let header = event.header();
            // The server sends heartbeats only when it has nothing more:
            // read to the end, no transaction behind.
            if header.event_type_raw() == HEARTBEAT_EVENT && self.txn.is_none() {
                change_stream::telemetry::source_behind(None);
            }
            let end = header.log_pos() as u64;
            let start = end.saturating_sub(header.event_size() as u64);
            let mut committed = false;
            let mut schema_changed = false;
            // Made at an ignored server (never the source's own events).
            let origin = header.server_id();
            let not_captured = origin != source_server_id && self.ignored.contains(&origin);
            match decode::decode(&event, &self.file, start)? {
                Decoded::Begin(txn) => {
                    // The sink tells a record sent twice by its GTID: within
                    // a domain the sequence numbers must grow.
                    let g = &txn.gtid;
                    if let Some(last) = self.gtid.get(g.domain).filter(|l| g.seq <= l.seq) {
                        return Err(SourceError::History(format!(
                            "GTID {g} follows {last} at {}:{start}: the sequence numbers of domain {} went back (RESET MASTER while the connector ran, or GTIDs out of order with gtid_strict_mode OFF); changes would be taken for ones already sent: start over with a new snapshot under a new kafka.topic_prefix (README, Operations), and set gtid_strict_mode = ON at the source",
                            self.file, g.domain
                        )));
                    }
                    self.events.start(txn.gtid.to_string(), txn.ts_ms);
                    self.txn = Some(txn);
                }
                Decoded::Rotate(raw) => self.file = self.names.clean(&raw),
                Decoded::Rows(_) if not_captured => {}
                Decoded::Rows(rows) => {
                    self.rows_event(out, enc, &rows, start, origin, rows_of)
                        .await?
                }
                Decoded::Commit => committed = true,
                Decoded::Statement(statement) => {
                    committed = self.txn.as_ref().is_some_and(|t| t.standalone);
                    let mut source = self.event_source(&statement.schema, None, start);
                    source.server_id = origin;
                    self.schemas
                        .statement(out, statement, source, not_captured)
                        .await?;
                    // Store the position after the statement at once: a
                    // restart must not read rows from before it with the
                    // shapes from after it.
                    schema_changed = true;
                }
                Decoded::Other => {}
            }
            if committed {
                enc.end(out, &mut self.events).await?;
                if let Some(t) = self.txn.take() {
                    change_stream::telemetry::source_behind(Some(t.ts_ms));
                    self.gtid.advance(t.gtid);
                }
                self.committed = BinlogCoordinates::new(self.file.clone(), end);
                self.dirty = true;
            }
            // Checkpoints are coalesced: at most one per 50 ms, and one at
            // the latest on the next heartbeat of an idle binlog.
            if checkpoints
                && self.dirty
                && (schema_changed || last_checkpoint.elapsed() >= Duration::from_millis(50))
            {
                self.send_checkpoint(out, source_server_id).await?;
                last_checkpoint = std::time::Instant::now();
                if schema_changed {
                    out.flush().await?;
                }
            }
            // A commit is wanted: end the unit between transactions.
            if checkpoints && self.txn.is_none() && out.in_unit() && out.commit_wanted() {
                self.send_checkpoint(out, source_server_id).await?;
                last_checkpoint = std::time::Instant::now();
                out.end_unit();
            }
            if let Some(stop) = stop {
                let reached = end != 0
                    && self.txn.is_none()
                    && (file_seq(&self.file), end) >= (stop.file_seq(), stop.pos);
                if reached {
                    return Ok(Ended::Reached);
                }
            }
        }
    }

    /// Sends a heartbeat: the time, the GTID position of the last complete
    /// transaction and the interval, with that position checkpointed (in
    /// a unit of its own when none is open, so that with exactly-once it
    /// is committed at once).
    async fn heartbeat(
        &mut self,
        out: &mut Output,
        source_server_id: u32,
    ) -> Result<(), SourceError> {
        self.last_heartbeat = std::time::Instant::now();
        let every = self.heartbeat_every.unwrap_or_default();
        let own_unit = !out.in_unit();
        if own_unit {
            out.begin_unit().await;
        }
        let key = serde_json::json!({ "serverName": self.prefix }).to_string();
        let value = serde_json::json!({
            "ts_ms": now_ms(),
            "gtid": self.gtid.to_string(),
            "interval_ms": every.as_millis() as u64,
        })
        .to_string();
        let topic = change_stream::topics::heartbeat_topic(&self.prefix);
        out.send(
            &topic,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            None,
            || "a heartbeat".to_string(),
        )
        .await?;
        if own_unit && self.txn.is_none() {
            self.send_checkpoint(out, source_server_id).await?;
            out.end_unit();
        }
        Ok(())
    }

    /// Marks the end of the last complete transaction as the position to
    /// store once its records are acknowledged.
    async fn send_checkpoint(
        &mut self,
        out: &Output,
        source_server_id: u32,
    ) -> Result<(), SourceError> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        out.checkpoint(StoredPosition {
            server_id: source_server_id,
            gtid: self.gtid.clone(),
            file: self.committed.file.clone(),
            pos: self.committed.pos,
            snapshot: self.snapshot.clone(),
        })
    }

    /// The rows of one event: their table and shape, then their records.
    async fn rows_event(
        &mut self,
        out: &mut Output,
        enc: &mut Encoder,
        rows: &RowsEventData<'_>,
        start: u64,
        origin: u32,
        rows_of: Rows<'_>,
    ) -> Result<(), SourceError> {
        let tme = self.stream.get_tme(rows.table_id()).ok_or_else(|| {
            SourceError::Binlog(format!(
                "rows event at {}:{start} without its table map",
                self.file
            ))
        })?;
        let id = TableId::new(tme.database_name(), tme.table_name());
        match rows_of {
            Rows::None => return Ok(()),
            Rows::Except(skip) if skip.contains(&id) => return Ok(()),
            _ => {}
        }
        let mut source = self.event_source(&id.database, Some(&id.table), start);
        // The server where the change was made, as the event says (a
        // transaction applied by a sink can hold changes of several).
        source.server_id = origin;
        let Some(ctx) = self.schemas.table_of(out, &id, tme, rows, &source).await? else {
            return Ok(());
        };
        emit::rows(out, enc, &mut self.events, &ctx, tme, rows, source).await
    }

    /// The `source` block of a record from the event at `pos` of the
    /// current file, in the current transaction.
    fn event_source(&self, db: &str, table: Option<&str>, pos: u64) -> SourceInfo {
        let txn = self.txn.as_ref();
        SourceInfo {
            version: change_stream::VERSION.to_string(),
            name: self.prefix.clone(),
            server_id: txn.map_or(0, |t| t.gtid.server_id),
            gtid: txn.map(|t| t.gtid.to_string()),
            file: self.file.clone(),
            pos,
            row: 0,
            db: db.to_string(),
            table: table.map(str::to_string),
            ts_ms: txn.map_or(0, |t| t.ts_ms),
            snapshot: false,
        }
    }

    /// Closes the replica connection cleanly; gives back the tables as the
    /// schema changes read so far left them.
    pub async fn close(self) -> HashMap<TableId, Arc<TableCtx>> {
        let _ = self.stream.close().await;
        self.schemas.into_tables()
    }
}

/// Whether the source's binlog still holds the history `stored` is a
/// point of. In the same history, the stored binlog coordinates resolve
/// to the stored GTID position (`BINLOG_GTID_POS`), or, once their file is
/// purged, the binlog starts at or after that position. When neither holds,
/// the binlog was reset (`RESET MASTER`) and its GTIDs started over: a
/// replica connecting by GTID would be served from a transaction that only
/// shares its GTID with the stored one, and every change in between would
/// be lost. Binlog files that start over with the GTID state kept (`RESET
/// MASTER` then `SET GLOBAL gtid_binlog_state`) pass: the sink orders
/// records by GTID, not by binlog coordinates.
pub async fn check_history(conn: &mut Conn, stored: &StoredPosition) -> Result<(), SourceError> {
    let err = |e: mysql_async::Error| SourceError::Source(describe_mysql(&e));
    if stored.file.is_empty() || stored.gtid.is_empty() {
        return Ok(());
    }
    let at = gtid_at(conn, &stored.file, stored.pos).await.map_err(err)?;
    let holds = |state: &GtidPosition, exact: bool| {
        stored.gtid.domains().all(|g| {
            state.get(g.domain).is_some_and(|s| {
                if exact {
                    s.seq == g.seq
                } else {
                    s.seq >= g.seq
                }
            })
        })
    };
    if at.as_ref().is_some_and(|at| holds(at, true)) {
        return Ok(());
    }
    let files: Vec<String> = conn
        .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
            row.get::<String, _>(0).unwrap_or_default()
        })
        .await
        .map_err(err)?;
    let Some(first) = files.first() else {
        return Ok(());
    };
    let start = gtid_at(conn, first, 4)
        .await
        .map_err(err)?
        .unwrap_or_default();
    if holds(&start, false) {
        return Ok(());
    }
    Err(SourceError::History(format!(
        "the source's binlog is not the one the stored position {} ({}:{}) is in: that point is gone and the binlog now starts at {} (RESET MASTER?); changes since the position would be lost: start over with a new snapshot under a new kafka.topic_prefix (README, Operations)",
        stored.gtid,
        stored.file,
        stored.pos,
        if start.is_empty() { "no GTID".to_string() } else { start.to_string() }
    )))
}

/// The GTID position at binlog coordinates, if the server knows them.
async fn gtid_at(
    conn: &mut Conn,
    file: &str,
    pos: u64,
) -> Result<Option<GtidPosition>, mysql_async::Error> {
    let p: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await?;
    Ok(p.flatten().and_then(|p| p.parse().ok()))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
