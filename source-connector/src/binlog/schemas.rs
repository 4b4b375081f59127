//! Schema tracking: which table a rows event is of, and in which shape.
//!
//! The reader starts with the tables' definitions as of its start point and
//! keeps them in step with the stream: each DDL statement is turned into a
//! schema change (published in its place) and updates the shapes
//! ([`DdlContext`]). The first rows event of each table map is also
//! compared with the definition: a reader behind a later DDL, or restarted
//! across one, sees rows of another shape, and encodes them by the binlog's
//! shape from there on, with their schemas published first. Rows of a
//! selected table the reader does not know (dropped or renamed since its
//! start point) are taken up by the binlog's shape too, and rows of a
//! sequence become a `SETVAL` schema change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use change_stream::event::SourceInfo;
use change_stream::table::TableId;
use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;

use super::decode::Statement;
use crate::ddl::DdlContext;
use crate::encode::TableCtx;
use crate::error::SourceError;
use crate::produce::Output;

pub struct Schemas {
    tables: HashMap<TableId, Arc<TableCtx>>,
    prefix: String,
    /// Table map ids whose row shape was compared with the definition.
    checked_maps: HashSet<u64>,
    /// Turns DDL into schema changes.
    ddl: DdlContext,
}

impl Schemas {
    pub fn new(tables: HashMap<TableId, Arc<TableCtx>>, prefix: &str, ddl: DdlContext) -> Self {
        Self {
            tables,
            prefix: prefix.to_string(),
            checked_maps: HashSet::new(),
            ddl,
        }
    }

    /// A statement of the binlog: published as a schema change when it is
    /// DDL, with the shapes it leads to.
    pub async fn statement(
        &mut self,
        out: &mut Output,
        statement: Statement,
        source: SourceInfo,
        not_captured: bool,
    ) -> Result<(), SourceError> {
        let Statement {
            schema,
            sql,
            sql_mode,
        } = statement;
        self.ddl
            .handle(
                out,
                &mut self.tables,
                &sql,
                &schema,
                sql_mode,
                source,
                not_captured,
            )
            .await?;
        // Shapes are compared again after any schema change.
        self.checked_maps.clear();
        Ok(())
    }

    /// The table whose rows `rows` (mapped by `tme`) are, in the shape to
    /// encode them with; `None` when they are not to be written (a table
    /// not selected, or a sequence, whose move is published here).
    pub async fn table_of(
        &mut self,
        out: &mut Output,
        id: &TableId,
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
        source: &SourceInfo,
    ) -> Result<Option<Arc<TableCtx>>, SourceError> {
        if !self.tables.contains_key(id) {
            if !self.ddl.selection().table(id) {
                return Ok(None);
            }
            if let Some((next, round)) = sequence_state(tme, rows) {
                publish_setval(out, id, next, round, source.clone()).await?;
                return Ok(None);
            }
            self.adopt(out, id, tme, rows, source).await?;
            self.checked_maps.insert(rows.table_id());
        }
        if !self.checked_maps.contains(&rows.table_id()) {
            self.check_shape(out, id, tme, rows, source).await?;
            self.checked_maps.insert(rows.table_id());
        }
        Ok(self.tables.get(id).cloned())
    }

    /// Compares the shape of the rows of a table map with the table's
    /// definition; when they differ, the rows are encoded by the binlog's
    /// shape from here on, with its schemas published first.
    async fn check_shape(
        &mut self,
        out: &mut Output,
        id: &TableId,
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
        at: &SourceInfo,
    ) -> Result<(), SourceError> {
        let Some(ctx) = self.tables.get(id).cloned() else {
            return Ok(());
        };
        let Some(columns) = logged_columns(tme, rows) else {
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
        let shape = crate::tablemap::shape(id, tme, &columns, &charset, &hints)?;
        if names_match && (charsets.is_empty() || crate::tablemap::same_encoding(&shape, &ctx.full))
        {
            return Ok(());
        }
        if !names_match && charsets.is_empty() {
            return Err(SourceError::Binlog(format!(
                "table {id} has columns ({}) in the binlog at {}:{} but ({}) in its definition",
                columns
                    .iter()
                    .map(|c| c.name_str().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                at.file,
                at.pos,
                ctx.full
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        tracing::info!(table = %id, position = %format!("{}:{}", at.file, at.pos), "rows in the binlog have another shape than the table's definition (a schema change the reader is behind or restarted across): encoding them by the binlog's shape");
        let selection = self.ddl.selection().clone();
        let new = TableCtx::new(&self.prefix, shape, &selection)?;
        // Rows without a key going to a topic created for a later shape
        // with one: it must not be compacted.
        let unkeyed_now = new.schema.key.is_empty() && !ctx.schema.key.is_empty();
        self.take_up(out, id, new, unkeyed_now.then_some(false))
            .await
    }

    /// Encodes the rows of `id` with `ctx` from here on: its schemas
    /// published and, when `topic_keyed` says, its topic made ready for
    /// rows with a key or without.
    async fn take_up(
        &mut self,
        out: &mut Output,
        id: &TableId,
        ctx: Arc<TableCtx>,
        topic_keyed: Option<bool>,
    ) -> Result<(), SourceError> {
        if let Some(k) = &ctx.codec.key {
            out.publish_schema(k).await?;
        }
        out.publish_schema(&ctx.codec.value).await?;
        if let Some(keyed) = topic_keyed {
            out.ensure_table_topics(&[(ctx.topic.clone(), keyed)])
                .await?;
        }
        out.order().await?;
        self.tables.insert(id.clone(), ctx);
        Ok(())
    }

    /// Starts encoding the rows of a table the reader did not know, by the
    /// shape of its table map: schemas published, topic created.
    async fn adopt(
        &mut self,
        out: &mut Output,
        id: &TableId,
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
        at: &SourceInfo,
    ) -> Result<(), SourceError> {
        let Some(columns) = logged_columns(tme, rows) else {
            return Ok(());
        };
        let ddl = &mut self.ddl;
        let charsets = ddl.charsets().await?;
        let charset = |c: u16| charsets.get(&c).cloned();
        let shape = crate::tablemap::shape(id, tme, &columns, &charset, &[])?;
        tracing::warn!(table = %id, position = %format!("{}:{}", at.file, at.pos), "rows of a table that no longer exists under this name at the source (dropped or renamed since the stored position): synchronized with the binlog's shape");
        let ctx = TableCtx::new(&self.prefix, shape, ddl.selection())?;
        let keyed = !ctx.schema.key.is_empty();
        self.take_up(out, id, ctx, Some(keyed)).await
    }

    /// The tables as the schema changes read so far left them.
    pub fn into_tables(self) -> HashMap<TableId, Arc<TableCtx>> {
        self.tables
    }
}

/// The columns the first row of a rows event carries (names, types, flags,
/// collations).
fn logged_columns(
    tme: &TableMapEvent<'_>,
    rows: &RowsEventData<'_>,
) -> Option<Vec<mysql_async::Column>> {
    match rows.rows(tme).next()? {
        Ok((before, after)) => Some(after.as_ref().or(before.as_ref())?.columns_ref().to_vec()),
        Err(_) => None,
    }
}

/// When the rows event is a sequence's (the columns every MariaDB sequence
/// has, in order), its new `next_not_cached_value` and `cycle_count`.
fn sequence_state(tme: &TableMapEvent<'_>, rows: &RowsEventData<'_>) -> Option<(i64, i64)> {
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
    let columns = logged_columns(tme, rows)?;
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

/// A sequence moved forward at the source (its cache refilled, or SETVAL):
/// the statement that moves it at the destination, on the schema-changes
/// topic in binlog order.
async fn publish_setval(
    out: &mut Output,
    id: &TableId,
    next: i64,
    round: i64,
    source: SourceInfo,
) -> Result<(), SourceError> {
    let change = change_stream::schema_change::SchemaChange {
        source,
        database: id.database.clone(),
        kind: "SETVAL".into(),
        ddl: Some(crate::schema::setval(&id.table, next, round)),
        sql_mode: None,
        tables: Vec::new(),
    };
    tracing::debug!(sequence = %id, next, round, "sequence moved");
    crate::ddl::publish(out, &change).await
}
