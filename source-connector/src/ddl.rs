//! DDL from the binlog: schema changes, placed among the rows by offsets.
//!
//! A DDL statement on a selected database becomes a [`SchemaChange`]
//! record: the statement as executed, and each table it acts on with the
//! table's definition afterwards, read again from `information_schema`.
//! The record goes on `<prefix>.schema-changes` (the schema history) only;
//! the table topics carry change records alone. Where the statement falls
//! among a table's rows is said by offsets instead: once every record sent
//! before it is delivered, the end of each partition of the table's topic
//! is the first offset after it ([`TableChange::topic_offsets`]). The
//! producer keeps each partition in order, so every row written before the
//! statement is below that offset and every row written after is at or
//! above it: the sink applies the statement when each of those partitions
//! is read up to its offset, and holds what lies beyond.
//!
//! The record itself is on the schema-changes topic before anything sent
//! after it is visible (with exactly-once the commit delivers it first;
//! without, it is waited for), so that a sink that has read that topic to
//! its end knows of every statement before the rows it holds.
//!
//! Before any later row is written, the new shapes' Avro schemas are
//! published and everything sent so far is flushed, so a consumer never
//! meets a record whose schema is not yet on the schemas topic. New table
//! topics (CREATE TABLE, RENAME TABLE) are created before the record.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use change_stream::ddl::{Ddl, TableEffect};
use change_stream::event::SourceInfo;
use change_stream::schema_change::{ChangeEffect, SchemaChange, TableChange, DEFINITION};
use change_stream::table::TableId;
use change_stream::topics;
use mysql_async::{Conn, Opts};

use crate::encode::TableCtx;
use crate::error::{describe_mysql, SourceError};
use crate::produce::Output;
use crate::schema;
use crate::selection::Selection;

/// What the source needs to turn DDL into schema changes.
pub struct DdlContext {
    opts: Opts,
    /// A connection for reading definitions, opened on first use.
    conn: Option<Conn>,
    /// What is synchronized.
    selection: Arc<Selection>,
    /// Collation id to character set name, read on first use.
    charsets: HashMap<u16, String>,
}

impl DdlContext {
    pub fn new(opts: Opts, selection: Arc<Selection>) -> Self {
        Self {
            opts,
            conn: None,
            selection,
            charsets: HashMap::new(),
        }
    }

    pub fn selection(&self) -> &Arc<Selection> {
        &self.selection
    }

    pub async fn definition(
        &mut self,
        id: &TableId,
    ) -> Result<Option<change_stream::table::TableSchema>, SourceError> {
        if self.conn.is_none() {
            self.conn = Some(
                Conn::new(self.opts.clone())
                    .await
                    .map_err(|e| SourceError::Source(describe_mysql(&e)))?,
            );
        }
        let conn = self.conn.as_mut().expect("connected");
        match schema::read_table(conn, id).await {
            Ok(d) => Ok(d),
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// The character set of each collation id the server knows.
    pub async fn charsets(&mut self) -> Result<HashMap<u16, String>, SourceError> {
        if self.charsets.is_empty() {
            if self.conn.is_none() {
                self.conn = Some(
                    Conn::new(self.opts.clone())
                        .await
                        .map_err(|e| SourceError::Source(describe_mysql(&e)))?,
                );
            }
            let conn = self.conn.as_mut().expect("connected");
            let rows: Vec<(Option<u16>, Option<String>)> = mysql_async::prelude::Queryable::query(
                conn,
                "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS",
            )
            .await
            .map_err(|e| SourceError::Source(describe_mysql(&e)))?;
            self.charsets = rows
                .into_iter()
                .filter_map(|(id, name)| Some((id?, name?)))
                .collect();
        }
        Ok(self.charsets.clone())
    }

    /// Turns one statement into a schema change and the new table shapes.
    /// Statements on other databases, and those that change no schema, are
    /// ignored. A statement `not_captured` (made at a server of
    /// `source.ignore_server_ids`) is not published as a statement; the
    /// shapes it leaves are, as a `DEFINITION` of its tables, which
    /// consumers take without running anything: the rows written after it
    /// have those shapes.
    #[allow(clippy::too_many_arguments)] // one statement, as the binlog gives it
    pub async fn handle(
        &mut self,
        out: &mut Output,
        tables: &mut HashMap<TableId, Arc<TableCtx>>,
        sql: &str,
        default_db: &str,
        sql_mode: Option<String>,
        source: SourceInfo,
        not_captured: bool,
    ) -> Result<(), SourceError> {
        let ansi = change_stream::ddl::ansi_quotes(sql_mode.as_deref());
        let ddl = change_stream::ddl::classify_in(sql, default_db, ansi);
        let mut changes = Vec::new();
        match &ddl {
            Ddl::Other => return Ok(()),
            Ddl::Database { name, .. } | Ddl::Object { database: name, .. } => {
                if !self.selection.whole_database(name) {
                    return Ok(());
                }
            }
            Ddl::Table { effects, .. } => {
                // A table the reader does not know, dropped or renamed by
                // the statement, that has a topic: it existed when the
                // position the reader started from was stored, and is gone
                // from the source by now (the connector was down).
                let mut gone = HashSet::new();
                for e in effects {
                    let old = match e {
                        TableEffect::Dropped(id) | TableEffect::Renamed { from: id, .. } => id,
                        _ => continue,
                    };
                    if !tables.contains_key(old)
                        && self.selection.table(old)
                        && out.topic_exists(&topics::table_topic(
                            out.prefix(),
                            &old.database,
                            &old.table,
                        ))?
                    {
                        gone.insert(old.clone());
                    }
                }
                changes = self.table_changes(effects, tables, &gone).await?;
                if changes.is_empty() {
                    return Ok(());
                }
            }
        }
        if let Ddl::Database { kind, name } = &ddl {
            if kind == "DROP DATABASE" {
                for id in tables.keys().filter(|t| &t.database == name) {
                    changes.push(TableChange {
                        id: id.clone(),
                        effect: ChangeEffect::Dropped,
                        definition: None,
                        topic_offsets: Vec::new(),
                    });
                }
            }
        }
        let mut change = SchemaChange {
            source,
            database: default_db.to_string(),
            kind: ddl.kind().to_string(),
            ddl: Some(sql.to_string()),
            sql_mode,
            tables: changes,
        };
        if not_captured {
            tracing::info!(kind = %change.kind, id = %change.id(), origin = change.source.server_id, "schema change made at an ignored server: not captured; the shapes of its tables are published");
            if change.tables.is_empty() {
                return Ok(());
            }
            change.kind = DEFINITION.to_string();
            change.ddl = None;
            change.sql_mode = None;
        } else {
            tracing::info!(kind = %change.kind, id = %change.id(), tables = change.tables.len(), "schema change");
        }

        // New shapes: their schemas, and topics for new names.
        let prefix = out.prefix().to_string();
        let mut new_topics = Vec::new();
        let mut new_ctx = Vec::new();
        for t in &mut change.tables {
            let gone = matches!(t.effect, ChangeEffect::Dropped | ChangeEffect::RenamedFrom);
            let topic = topics::table_topic(&prefix, &t.id.database, &t.id.table);
            let keyed = t.definition.as_ref().is_some_and(|d| !d.key.is_empty());
            let had_key = tables.get(&t.id).is_some_and(|c| !c.schema.key.is_empty());
            if !gone && (!tables.contains_key(&t.id) || (had_key && !keyed)) {
                // A new topic, or a table that lost its key (see
                // `Output::ensure_table_topics`).
                new_topics.push((topic, keyed));
            }
            if let Some(def) = &t.definition {
                let ctx = TableCtx::new(&prefix, def.clone(), &self.selection)?;
                // The definition as synchronized: without excluded columns.
                t.definition = Some(ctx.schema.clone());
                if let Some(k) = &ctx.codec.key {
                    out.publish_schema(k).await?;
                }
                out.publish_schema(&ctx.codec.value).await?;
                new_ctx.push(ctx);
            }
        }
        out.ensure_table_topics(&new_topics).await?;

        publish(out, &change).await?;
        out.order().await?;

        // From here on, rows use the new shapes.
        for t in &change.tables {
            if matches!(t.effect, ChangeEffect::Dropped | ChangeEffect::RenamedFrom) {
                tables.remove(&t.id);
            }
        }
        for ctx in new_ctx {
            tables.insert(ctx.schema.id.clone(), ctx);
        }
        Ok(())
    }

    /// The tables a statement acts on, each once, with its effect and
    /// its definition afterwards. Effects are followed in order (`RENAME
    /// TABLE a TO tmp, b TO a, tmp TO b` swaps two tables), and a name that
    /// has no topic and no table afterwards (`tmp`) is left out.
    async fn table_changes(
        &mut self,
        effects: &[TableEffect],
        tables: &HashMap<TableId, Arc<TableCtx>>,
        gone: &HashSet<TableId>,
    ) -> Result<Vec<TableChange>, SourceError> {
        // The selected tables as the statement goes along.
        let mut known: HashSet<TableId> = tables.keys().chain(gone).cloned().collect();
        let mut touched: Vec<(TableId, ChangeEffect)> = Vec::new();
        let mut touch =
            |id: &TableId, effect: ChangeEffect| match touched.iter_mut().find(|(t, _)| t == id) {
                Some(e) => e.1 = effect,
                None => touched.push((id.clone(), effect)),
            };
        for effect in effects {
            match effect {
                TableEffect::Created(id)
                | TableEffect::Altered(id)
                | TableEffect::Truncated(id) => {
                    if !self.selection.table(id) {
                        continue;
                    }
                    known.insert(id.clone());
                    touch(
                        id,
                        match effect {
                            TableEffect::Created(_) => ChangeEffect::Created,
                            TableEffect::Altered(_) => ChangeEffect::Altered,
                            _ => ChangeEffect::Truncated,
                        },
                    );
                }
                TableEffect::Dropped(id) => {
                    if known.remove(id) {
                        touch(id, ChangeEffect::Dropped);
                    }
                }
                TableEffect::Renamed { from, to } => {
                    let from_known = known.remove(from);
                    let to_selected = self.selection.table(to);
                    if from_known {
                        touch(from, ChangeEffect::RenamedFrom);
                        if !to_selected {
                            tracing::warn!(from = %from, to = %to, "a table was renamed out of the selection: it is no longer synchronized (the destination keeps it under its old name if the rename fails there)");
                        }
                    }
                    if to_selected {
                        if !from_known {
                            tracing::warn!(from = %from, to = %to, "a table was renamed into the selection: its rows from before the rename are not at the destination; only later changes will be");
                        }
                        known.insert(to.clone());
                        touch(to, ChangeEffect::RenamedTo);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (id, effect) in touched {
            let exists_after = known.contains(&id);
            if !exists_after && !tables.contains_key(&id) && !gone.contains(&id) {
                continue; // never had a topic, and has no table now
            }
            let definition = if exists_after {
                let def = self.definition(&id).await?;
                if def.is_none() {
                    // Renamed or dropped by a later statement: the rows in
                    // between are encoded by the binlog's shape.
                    tracing::info!(table = %id, "a table named by a schema change is gone from the source by now (a later statement renamed or dropped it)");
                }
                def
            } else {
                None
            };
            out.push(TableChange {
                id,
                effect,
                definition,
                topic_offsets: Vec::new(),
            });
        }
        Ok(out)
    }
}

/// Publishes a schema change on the schema-changes topic, with the offsets
/// where it falls in the partitions of the topics of the tables it acts on
/// (see the module's essay).
pub async fn publish(out: &mut Output, change: &SchemaChange) -> Result<(), SourceError> {
    let prefix = out.prefix().to_string();
    let id = change.id();
    let mut change = change.clone();
    if !change.tables.is_empty() {
        out.delivered().await?;
    }
    for t in &mut change.tables {
        let topic = topics::table_topic(&prefix, &t.id.database, &t.id.table);
        t.topic_offsets = out.topic_offsets(&topic)?;
    }
    let value = change.encode()?;
    out.send(
        &topics::schema_changes_topic(&prefix),
        Some(id.as_bytes()),
        Some(&value),
        None,
        || format!("schema change {id}"),
    )
    .await?;
    // Without Kafka transactions nothing else makes it reach the topic
    // before the records sent next.
    if !out.exactly_once() {
        out.delivered().await?;
    }
    Ok(())
}
