//! Reading the binlog as a MariaDB replica does.
//!
//! The connection registers as a replica with the configured `server_id`
//! and asks for the binlog from a GTID position (`@slave_connect_state`), with
//! `@mariadb_slave_capability=4` so that MariaDB sends its own GTID events
//! rather than rewriting them. mysql_async decodes the standard events
//! (rotate, table map, rows, XID, query); the MariaDB GTID event (type 162)
//! is parsed here.
//!
//! Each rows event of a selected table becomes one record per row, with the
//! transaction's GTID, the event's file and offset, and the row's index in the
//! event as its `source` coordinates. A transaction ends with an XID event
//! (or a `COMMIT` query for non-transactional engines, or with its only
//! statement for DDL); its end is a checkpoint: once the broker has every
//! record before it, the connector may resume from there.
//!
//! The same reader replays a stretch of binlog that ends at a given point;
//! `snapshot.rs` uses that to resume an interrupted snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use change_stream::event::{Op, SourceInfo};
use change_stream::position::{file_seq, BinlogCoordinates, Gtid, GtidPosition};
use change_stream::table::TableId;
use change_stream::value::Cell;
use futures::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData, StatusVarVal, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::binlog::StatusVarKey;
use mysql_async::prelude::*;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts};
use tokio::sync::watch;

use crate::checkpoint::StoredPosition;
use crate::convert::{to_cell, Origin};
use crate::ddl::DdlContext;
use crate::encode::{Encoder, TableCtx};
use crate::error::{describe_mysql, SourceError};
use crate::produce::Output;

/// MariaDB's GTID event.
const GTID_EVENT: u8 = 162;
/// Seconds between heartbeats the server sends while the binlog is idle.
const HEARTBEAT_SECS: u64 = 2;

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

struct Txn {
    gtid: Gtid,
    ts_ms: i64,
    standalone: bool,
}

/// A binlog connection and what it knows of the stream so far.
pub struct BinlogReader {
    stream: BinlogStream,
    file: String,
    /// GTID position after the last transaction read completely, and the
    /// binlog coordinates of its end.
    gtid: GtidPosition,
    committed: BinlogCoordinates,
    /// Whether `gtid` moved since the last checkpoint.
    dirty: bool,
    txn: Option<Txn>,
    tables: HashMap<TableId, Arc<TableCtx>>,
    prefix: String,
    /// Names of the server's binlog files, to clean the name of the first
    /// (artificial) rotate event, which can carry trailing checksum bytes.
    known_files: Vec<String>,
    /// Table map ids whose row shape was compared with the definition.
    checked_maps: HashSet<u64>,
    /// Turns DDL into schema changes.
    ddl: DdlContext,
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
            gtid: gtid.clone(),
            committed: BinlogCoordinates::new("", 0),
            dirty: false,
            txn: None,
            tables,
            prefix: prefix.to_string(),
            known_files: files,
            checked_maps: HashSet::new(),
            ddl,
        })
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
        Self::connect(
            opts.clone(),
            config.source.server_id,
            from,
            tables.clone(),
            prefix,
            DdlContext::new(opts.clone(), Arc::new(config.selection()?)),
        )
        .await
    }

    /// Reads events and writes records until `stop` is reached (if given)
    /// or shutdown is requested; `rows` says which rows are written. `checkpoints` says whether transaction ends are stored as
    /// positions (not while replaying inside a snapshot).
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
        loop {
            if *shutdown.borrow() {
                if checkpoints {
                    self.send_checkpoint(out, source_server_id).await?;
                }
                return Ok(Ended::Shutdown);
            }
            let next = tokio::select! {
                r = tokio::time::timeout(idle_limit, self.stream.next()) => r,
                _ = shutdown.changed() => continue,
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
            let header = event.header();
            let end = header.log_pos() as u64;
            let start = end.saturating_sub(header.event_size() as u64);
            let mut committed = false;
            let mut statement = None;
            let mut schema_changed = false;
            if header.event_type_raw() == GTID_EVENT {
                let d = event.data();
                if d.len() < 13 {
                    return Err(SourceError::Binlog("GTID event too short".into()));
                }
                let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
                let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
                // The sink tells a record sent twice by its GTID: within a
                // domain the sequence numbers must grow.
                if let Some(last) = self.gtid.get(domain).filter(|l| seq <= l.seq) {
                    return Err(SourceError::History(format!(
                        "GTID {domain}-{}-{seq} follows {last} at {}:{start}: the sequence numbers of domain {domain} went back (RESET MASTER while the connector ran, or GTIDs out of order with gtid_strict_mode OFF); changes would be taken for ones already sent: start over with a new snapshot under a new kafka.topic_prefix (README, Operations), and set gtid_strict_mode = ON at the source",
                        header.server_id(),
                        self.file
                    )));
                }
                self.txn = Some(Txn {
                    gtid: Gtid {
                        domain,
                        server_id: header.server_id(),
                        seq,
                    },
                    ts_ms: header.timestamp() as i64 * 1000,
                    standalone: d[12] & 1 != 0,
                });
            } else {
                let data = event.read_data().map_err(|e| {
                    SourceError::Binlog(format!(
                        "cannot decode a binlog event at {}:{start}: {e}",
                        self.file
                    ))
                })?;
                match data {
                    Some(EventData::RotateEvent(r)) => {
                        self.file = self.clean_file_name(r.name_raw());
                    }
                    Some(EventData::RowsEvent(rows)) => {
                        self.rows_event(out, enc, &rows, start, rows_of).await?;
                    }
                    Some(EventData::XidEvent(_)) => committed = true,
                    Some(EventData::QueryEvent(q)) => {
                        let sql = q.query();
                        let trimmed = sql.trim();
                        if trimmed.eq_ignore_ascii_case("COMMIT") {
                            committed = true;
                        } else if !trimmed.eq_ignore_ascii_case("BEGIN") {
                            let sql_mode = q
                                .status_vars()
                                .get_status_var(StatusVarKey::SqlMode)
                                .and_then(|v| match v.get_value() {
                                    Ok(StatusVarVal::SqlMode(m)) => Some(m.0.to_string()),
                                    _ => None,
                                });
                            statement =
                                Some((q.schema().to_string(), trimmed.to_string(), sql_mode));
                            committed = self.txn.as_ref().is_some_and(|t| t.standalone);
                        }
                    }
                    _ => {}
                }
            }
            if let Some((schema, sql, sql_mode)) = statement {
                let source = self.event_source(&schema, None, start);
                self.ddl
                    .handle(out, &mut self.tables, &sql, &schema, sql_mode, source)
                    .await?;
                // Shapes are compared again after any schema change.
                self.checked_maps.clear();
                // Store the position after the statement at once: a restart
                // must not read rows from before it with the shapes from
                // after it.
                schema_changed = true;
            }
            if committed {
                if let Some(t) = self.txn.take() {
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

    fn clean_file_name(&mut self, raw: &[u8]) -> String {
        let name = String::from_utf8_lossy(raw).to_string();
        if let Some(known) = self
            .known_files
            .iter()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
        {
            return known.clone();
        }
        self.known_files.push(name.clone());
        name
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
            snapshot: None,
        })
        .await
    }

    async fn rows_event(
        &mut self,
        out: &mut Output,
        enc: &mut Encoder,
        rows: &RowsEventData<'_>,
        start: u64,
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
        if !self.tables.contains_key(&id) {
            // A table of a selected database that the reader does not know:
            // it was dropped or renamed after the position the reader
            // started from. Its rows are taken with the binlog's shape.
            if !self.ddl.selection().table(&id) {
                return Ok(());
            }
            if let Some((next, round)) = self.sequence_state(rows) {
                return self.publish_setval(out, &id, next, round, start).await;
            }
            self.adopt(out, &id, rows, start).await?;
            self.checked_maps.insert(rows.table_id());
        }
        if !self.checked_maps.contains(&rows.table_id()) {
            self.check_shape(out, &id, rows, start).await?;
            self.checked_maps.insert(rows.table_id());
        }
        let tme = self
            .stream
            .get_tme(rows.table_id())
            .expect("looked up above");
        let Some(ctx) = self.tables.get(&id) else {
            return Ok(());
        };
        let op = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Create,
            RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(SourceError::Binlog(
                    "partial update rows events are not supported".into(),
                ))
            }
        };
        let columns = ctx.full.columns.len();
        if tme.columns_count() as usize != columns {
            return Err(SourceError::Binlog(format!(
                "table {id} has {} columns in the binlog at {}:{start} but {columns} in its definition; \
                 its shape changed, which this version does not replicate yet",
                tme.columns_count(),
                self.file
            )));
        }
        let mut source = self.event_source(&id.database, Some(&id.table), start);
        for (i, row) in rows.rows(tme).enumerate() {
            let (before, after) = row.map_err(|e| {
                SourceError::Binlog(format!(
                    "cannot decode a row of {id} at {}:{start}: {e}",
                    self.file
                ))
            })?;
            if i == 0 {
                if let Some(r) = after.as_ref().or(before.as_ref()) {
                    check_columns(ctx, r, &self.file, start)?;
                }
            }
            let before = before.map(|r| row_cells(ctx, r)).transpose()?;
            let after = after.map(|r| row_cells(ctx, r)).transpose()?;
            // The row filter: an update into the condition is an insert,
            // one out of it a delete.
            let (op, before, after) = match &ctx.filter {
                None => (op, before, after),
                Some(f) => {
                    let b = before.as_deref().is_some_and(|r| f.matches(r));
                    let a = after.as_deref().is_some_and(|r| f.matches(r));
                    match (op, b, a) {
                        (Op::Create, _, true) => (Op::Create, None, after),
                        (Op::Delete, true, _) => (Op::Delete, before, None),
                        (Op::Update, true, true) => (Op::Update, before, after),
                        (Op::Update, false, true) => (Op::Create, None, after),
                        (Op::Update, true, false) => (Op::Delete, before, None),
                        _ => continue,
                    }
                }
            };
            let before = before.map(|r| ctx.project(r));
            let after = after.map(|r| ctx.project(r));
            source.row = i as u32;
            enc.emit(out, ctx, op, before.as_deref(), after.as_deref(), &source)
                .await?;
        }
        Ok(())
    }

    /// Compares the shape of the rows of a table map with the table's
    /// definition; when they differ (the reader is behind a later DDL, or
    /// restarted across one), the rows are encoded by the binlog's shape
    /// from here on, with its schemas published first.
    async fn check_shape(
        &mut self,
        out: &mut Output,
        id: &TableId,
        rows: &RowsEventData<'_>,
        start: u64,
    ) -> Result<(), SourceError> {
        let Some(ctx) = self.tables.get(id).cloned() else {
            return Ok(());
        };
        let Some((tme, columns)) = self.logged_columns(rows) else {
            return Ok(());
        };
        let names_match = columns.iter().map(|c| c.name_str().to_string()).eq(ctx
            .schema
            .columns
            .iter()
            .map(|c| c.name.clone()));
        let (charsets, fresh) = (self.ddl.charsets().await?, self.ddl.definition(id).await?);
        let mut hints: Vec<&change_stream::table::TableSchema> = Vec::new();
        hints.extend(fresh.as_ref());
        hints.push(&ctx.full);
        let charset = |c: u16| charsets.get(&c).cloned();
        let shape = crate::tablemap::shape(id, &tme, &columns, &charset, &hints)?;
        if names_match && (charsets.is_empty() || crate::tablemap::same_encoding(&shape, &ctx.full))
        {
            return Ok(());
        }
        if !names_match && charsets.is_empty() {
            return Err(SourceError::Binlog(format!(
                "table {id} has columns ({}) in the binlog at {}:{start} but ({}) in its definition",
                columns.iter().map(|c| c.name_str().to_string()).collect::<Vec<_>>().join(", "),
                self.file,
                ctx.full.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        tracing::info!(table = %id, position = %format!("{}:{start}", self.file), "rows in the binlog have another shape than the table's definition (a schema change the reader is behind or restarted across): encoding them by the binlog's shape");
        let selection = self.ddl.selection().clone();
        let new = TableCtx::new(&self.prefix, shape, &selection)?;
        if new.schema.key.is_empty() && !ctx.schema.key.is_empty() {
            // Rows without a key go to a topic created for a later shape
            // with one: it must not be compacted.
            out.ensure_table_topics(&[(new.topic.clone(), false)])
                .await?;
        }
        if let Some(k) = &new.codec.key {
            out.publish_schema(k).await?;
        }
        out.publish_schema(&new.codec.value).await?;
        out.flush().await?;
        self.tables.insert(id.clone(), new);
        Ok(())
    }

    /// The table map of a rows event and the columns its first row
    /// carries (names, types, flags, collations).
    fn logged_columns(
        &self,
        rows: &RowsEventData<'_>,
    ) -> Option<(TableMapEvent<'static>, Vec<mysql_async::Column>)> {
        let tme = self.stream.get_tme(rows.table_id())?.clone().into_owned();
        let columns = match rows.rows(&tme).next()? {
            Ok((before, after)) => after.as_ref().or(before.as_ref())?.columns_ref().to_vec(),
            Err(_) => return None,
        };
        Some((tme, columns))
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

    /// When the rows event is a sequence's (the columns every MariaDB
    /// sequence has, in order), its new `next_not_cached_value` and
    /// `cycle_count`.
    fn sequence_state(&self, rows: &RowsEventData<'_>) -> Option<(i64, i64)> {
        const COLUMNS: [&str; 8] = [
            "next_not_cached_value",
            "minimum_value",
            "maximum_value",
            "start_value",
            "increment",
            "cache_size",
            "cycle_option",
            "cycle_count",
        ];
        let tme = self.stream.get_tme(rows.table_id())?;
        let (_, columns) = self.logged_columns(rows)?;
        if columns.len() != COLUMNS.len()
            || !columns
                .iter()
                .zip(COLUMNS)
                .all(|(c, name)| c.name_str() == name)
        {
            return None;
        }
        let (_, after) = rows.rows(tme).last()?.ok()?;
        let int = |i: usize| match after.as_ref()?.as_ref(i)? {
            BinlogValue::Value(mysql_async::Value::Int(v)) => Some(*v),
            BinlogValue::Value(mysql_async::Value::UInt(v)) => i64::try_from(*v).ok(),
            _ => None,
        };
        Some((int(0)?, int(7)?))
    }

    /// A sequence moved forward at the source (its cache refilled, or
    /// SETVAL): the statement that moves it at the destination, on the
    /// schema-changes topic in binlog order.
    async fn publish_setval(
        &mut self,
        out: &mut Output,
        id: &TableId,
        next: i64,
        round: i64,
        start: u64,
    ) -> Result<(), SourceError> {
        let change = change_stream::schema_change::SchemaChange {
            source: self.event_source(&id.database, Some(&id.table), start),
            database: id.database.clone(),
            kind: "SETVAL".into(),
            ddl: Some(crate::schema::setval(&id.table, next, round)),
            sql_mode: None,
            tables: Vec::new(),
        };
        tracing::debug!(sequence = %id, next, round, "sequence moved");
        crate::ddl::publish(out, &change).await
    }

    /// Starts encoding the rows of a table the reader did not know, by the
    /// shape of its table map: schemas published, topic created.
    async fn adopt(
        &mut self,
        out: &mut Output,
        id: &TableId,
        rows: &RowsEventData<'_>,
        start: u64,
    ) -> Result<(), SourceError> {
        let Some((tme, columns)) = self.logged_columns(rows) else {
            return Ok(());
        };
        let ddl = &mut self.ddl;
        let charsets = ddl.charsets().await?;
        let charset = |c: u16| charsets.get(&c).cloned();
        let shape = crate::tablemap::shape(id, &tme, &columns, &charset, &[])?;
        tracing::warn!(table = %id, position = %format!("{}:{start}", self.file), "rows of a table that no longer exists under this name at the source (dropped or renamed since the stored position): synchronized with the binlog's shape");
        let ctx = TableCtx::new(&self.prefix, shape, ddl.selection())?;
        if let Some(k) = &ctx.codec.key {
            out.publish_schema(k).await?;
        }
        out.publish_schema(&ctx.codec.value).await?;
        out.ensure_table_topics(&[(ctx.topic.clone(), !ctx.schema.key.is_empty())])
            .await?;
        out.flush().await?;
        self.tables.insert(id.clone(), ctx);
        Ok(())
    }

    /// Closes the replica connection cleanly; gives back the tables as the
    /// schema changes read so far left them.
    pub async fn close(self) -> HashMap<TableId, Arc<TableCtx>> {
        let _ = self.stream.close().await;
        self.tables
    }
}

/// The table definition (read from `information_schema`) is what values are
/// decoded with: it has the exact types, character sets and ENUM/SET labels.
/// The binlog's own column metadata (names, with binlog_row_metadata=FULL)
/// is checked against it: if they disagree, the table changed shape since
/// the definition was read, and decoding with it would be wrong.
fn check_columns(ctx: &TableCtx, row: &BinlogRow, file: &str, pos: u64) -> Result<(), SourceError> {
    let logged: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| c.name_str().to_string())
        .collect();
    let defined = ctx.full.columns.iter().map(|c| c.name.as_str());
    if logged.iter().map(String::as_str).ne(defined) {
        let defined: Vec<&str> = ctx.full.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(SourceError::Binlog(format!(
            "table {} has columns ({}) in the binlog at {file}:{pos} but ({}) in its definition; \
             its shape changed, which this version does not replicate yet",
            ctx.schema.id,
            logged.join(", "),
            defined.join(", ")
        )));
    }
    Ok(())
}

fn row_cells(ctx: &TableCtx, row: BinlogRow) -> Result<Vec<Cell>, SourceError> {
    let cells = row
        .unwrap()
        .into_iter()
        .zip(&ctx.full.columns)
        .map(|(v, col)| match v {
            BinlogValue::Value(v) => to_cell(col, v, Origin::Binlog)
                .map_err(|e| SourceError::Binlog(format!("table {}: {e}", ctx.full.id))),
            other => Err(SourceError::Binlog(format!(
                "table {}, column `{}`: unexpected binlog value {other:?}",
                ctx.full.id, col.name
            ))),
        })
        .collect::<Result<Vec<Cell>, SourceError>>()?;
    Ok(cells)
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
