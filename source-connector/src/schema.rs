//! Reading table definitions from the source's `information_schema`.

use std::collections::BTreeMap;

use change_stream::table::{Column, ColumnKind, Generated, KeyKind, TableId, TableSchema};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::error::{describe_mysql, SourceError};

/// An index of a table: (unique, its columns, all of them NOT NULL).
type Index = (bool, Vec<String>, bool);

/// `?, ?, ...` for `IN (...)`; `NULL` (matches nothing) for none, since
/// `IN ()` does not parse.
fn placeholders(n: usize) -> String {
    if n == 0 {
        return "NULL".into();
    }
    vec!["?"; n].join(",")
}

/// Fails with a clear error when a configured database does not exist.
pub async fn check_databases(conn: &mut Conn, databases: &[String]) -> Result<(), SourceError> {
    let found: Vec<String> = conn
        .exec(
            format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({})",
                placeholders(databases.len())
            ),
            databases.to_vec(),
        )
        .await
        .map_err(|e| SourceError::Source(describe_mysql(&e)))?;
    let missing: Vec<&String> = databases.iter().filter(|d| !found.contains(d)).collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|d| format!("`{d}`")).collect();
        return Err(SourceError::Source(format!(
            "database {} does not exist on the source; fix [source] databases or create it",
            names.join(", ")
        )));
    }
    Ok(())
}

/// The databases with something selected, in name order. System
/// databases count only when named exactly.
pub async fn selected_databases(
    conn: &mut Conn,
    selection: &crate::selection::Selection,
) -> Result<Vec<String>, SourceError> {
    let all: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        .await
        .map_err(|e| SourceError::Source(describe_mysql(&e)))?;
    Ok(all
        .into_iter()
        .filter(|d| selection.database(d))
        .filter(|d| {
            !matches!(
                d.as_str(),
                "mysql" | "information_schema" | "performance_schema" | "sys"
            ) || selection.named(d)
        })
        .collect())
}

/// Reads the definitions of every base table of `databases`, in name order.
pub async fn read_tables(
    conn: &mut Conn,
    databases: &[String],
) -> Result<Vec<TableSchema>, SourceError> {
    read(conn, databases, None).await
}

/// Reads the definition of one table; `None` when it does not exist (any
/// more).
pub async fn read_table(conn: &mut Conn, id: &TableId) -> Result<Option<TableSchema>, SourceError> {
    Ok(
        read(conn, std::slice::from_ref(&id.database), Some(&id.table))
            .await?
            .into_iter()
            .next(),
    )
}

async fn read(
    conn: &mut Conn,
    databases: &[String],
    only_table: Option<&str>,
) -> Result<Vec<TableSchema>, SourceError> {
    let sql_err = |e: mysql_async::Error| SourceError::Source(describe_mysql(&e));
    let mut dbs = databases.to_vec();
    // `TABLE_SCHEMA IN (?, ...)`, and `AND TABLE_NAME = ?` for one table.
    let filter = |dbs: &[String]| {
        format!(
            "TABLE_SCHEMA IN ({}){}",
            placeholders(dbs.len()),
            if only_table.is_some() {
                " AND TABLE_NAME = ?"
            } else {
                ""
            }
        )
    };
    let where_dbs = filter(databases);
    if let Some(t) = only_table {
        dbs.push(t.to_string());
    }
    let tables: Vec<(String, String)> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') AND {where_dbs} \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME"
            ),
            dbs.clone(),
        )
        .await
        .map_err(sql_err)?;
    type ColumnRow = (
        String,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
    );
    let column_rows: Vec<ColumnRow> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, \
                 CHARACTER_SET_NAME, EXTRA, GENERATION_EXPRESSION, COLLATION_NAME \
                 FROM information_schema.COLUMNS WHERE {where_dbs} \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ),
            dbs.clone(),
        )
        .await
        .map_err(sql_err)?;
    let index_rows: Vec<(String, String, String, i64, String, String)> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, NULLABLE \
                 FROM information_schema.STATISTICS WHERE {where_dbs} \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
            ),
            dbs,
        )
        .await
        .map_err(sql_err)?;

    let mut columns: BTreeMap<TableId, Vec<Column>> = BTreeMap::new();
    for (db, table, name, data_type, column_type, nullable, charset, extra, expr, collation) in
        column_rows
    {
        let kind = ColumnKind::parse(&data_type, &column_type).map_err(|e| {
            SourceError::Source(format!("table `{db}`.`{table}`, column `{name}`: {e}"))
        })?;
        let extra = extra.to_ascii_uppercase();
        let generated = (extra.contains("GENERATED")).then(|| Generated {
            expression: expr.unwrap_or_default(),
            stored: extra.contains("STORED") || extra.contains("PERSISTENT"),
        });
        columns
            .entry(TableId::new(db, table))
            .or_default()
            .push(Column {
                name,
                data_type,
                column_type,
                kind,
                nullable: nullable == "YES",
                charset,
                collation,
                generated,
            });
    }
    let mut indexes: BTreeMap<TableId, BTreeMap<String, Index>> = BTreeMap::new();
    for (db, table, index, non_unique, column, nullable) in index_rows {
        let e = indexes
            .entry(TableId::new(db, table))
            .or_default()
            .entry(index)
            .or_insert((non_unique == 0, Vec::new(), true));
        e.1.push(column);
        e.2 &= nullable.is_empty();
    }

    let mut out = Vec::with_capacity(tables.len());
    for (db, table) in tables {
        let id = TableId::new(db, table);
        let cols = columns.remove(&id).unwrap_or_default();
        let idx = indexes.remove(&id).unwrap_or_default();
        let (key_kind, key_names) = if let Some((_, cols, _)) = idx.get("PRIMARY") {
            (KeyKind::Primary, cols.clone())
        } else if let Some((_, cols, _)) = idx
            .values()
            .filter(|(unique, _, not_null)| *unique && *not_null)
            .min_by_key(|(_, cols, _)| cols.len())
        {
            (KeyKind::Unique, cols.clone())
        } else {
            (KeyKind::None, Vec::new())
        };
        let key = key_names
            .iter()
            .filter_map(|k| cols.iter().position(|c| &c.name == k))
            .collect();
        let create: Option<(String, String)> = match conn
            .query_first(format!("SHOW CREATE TABLE {}", id.quoted()))
            .await
        {
            Ok(c) => c,
            // Dropped or renamed since it was listed: it does not exist
            // (any more); the binlog says what became of it.
            Err(mysql_async::Error::Server(e)) if e.code == 1146 => continue,
            Err(e) => return Err(sql_err(e)),
        };
        out.push(TableSchema {
            id,
            columns: cols,
            key,
            key_kind,
            create_table: create.map(|(_, c)| c).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A sequence, view, routine, event or trigger, as `SHOW CREATE` prints
/// it.
#[derive(Clone, Debug)]
pub struct ObjectDef {
    /// `SEQUENCE`, `SETVAL` (a sequence's value), `FUNCTION`, `PROCEDURE`,
    /// `VIEW`, `EVENT` or `TRIGGER`.
    pub kind: &'static str,
    pub database: String,
    pub name: String,
    /// The statement that creates it, run in its database.
    pub create: String,
    /// The sql_mode it was created in (routines and triggers).
    pub sql_mode: Option<String>,
    /// A trigger's table.
    pub table: Option<TableId>,
}

/// The statement that brings a sequence (in the current database) forward
/// to `next` in round `round`: it never moves one back, so running it
/// twice, or late, is harmless.
pub fn setval(name: &str, next: i64, round: i64) -> String {
    format!(
        "SELECT SETVAL({}, {next}, 0, {round})",
        change_stream::table::quote_ident(name)
    )
}

/// Reads the sequences (each with its current value), views, stored
/// functions and procedures, events and triggers of `databases`, in an
/// order in which they can be created: sequences, functions, procedures,
/// views (a view after the views it reads), events, triggers.
pub async fn read_objects(
    conn: &mut Conn,
    databases: &[String],
) -> Result<Vec<ObjectDef>, SourceError> {
    let sql_err = |e: mysql_async::Error| SourceError::Source(describe_mysql(&e));
    let dbs = placeholders(databases.len());
    let mut out = Vec::new();
    // SHOW CREATE ...: column `col` of the one row, or a clear error, and
    // the sql_mode column of routines and triggers.
    async fn show_create(
        conn: &mut Conn,
        kind: &str,
        db: &str,
        name: &str,
        col: usize,
    ) -> Result<(String, Option<String>), SourceError> {
        let id = TableId::new(db, name);
        let row: Option<mysql_async::Row> = conn
            .query_first(format!("SHOW CREATE {kind} {}", id.quoted()))
            .await
            .map_err(|e| {
                SourceError::Source(format!(
                    "cannot read the definition of {kind} {id}: {}",
                    describe_mysql(&e)
                ))
            })?;
        let text = |r: &mysql_async::Row, i: usize| {
            r.get_opt::<Option<String>, usize>(i)
                .and_then(Result::ok)
                .flatten()
        };
        let sql_mode = row.as_ref().filter(|_| col >= 2).and_then(|r| text(r, 1));
        row.and_then(|r| text(&r, col))
            .map(|c| (c, sql_mode))
            .ok_or_else(|| {
                SourceError::Source(format!(
                    "cannot read the definition of {kind} {id}: the source account may not see it; grant it SELECT on mysql.proc (routines) or SHOW VIEW and TRIGGER on the database"
                ))
            })
    }

    // Sequences first: a table's DEFAULT NEXTVAL(...) needs its sequence.
    // Each is followed by its current value.
    let sequences: Vec<(String, String)> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA IN ({dbs}) AND TABLE_TYPE = 'SEQUENCE' ORDER BY TABLE_SCHEMA, TABLE_NAME"
            ),
            databases.to_vec(),
        )
        .await
        .map_err(sql_err)?;
    for (db, name) in sequences {
        let (create, _) = show_create(conn, "SEQUENCE", &db, &name, 1).await?;
        let state: Option<(i64, i64)> = conn
            .query_first(format!(
                "SELECT next_not_cached_value, cycle_count FROM {}",
                TableId::new(db.as_str(), name.as_str()).quoted()
            ))
            .await
            .map_err(sql_err)?;
        out.push(ObjectDef {
            kind: "SEQUENCE",
            database: db.clone(),
            name: name.clone(),
            create,
            sql_mode: None,
            table: None,
        });
        if let Some((next, round)) = state {
            out.push(ObjectDef {
                kind: "SETVAL",
                database: db,
                create: setval(&name, next, round),
                name,
                sql_mode: None,
                table: None,
            });
        }
    }

    let routines: Vec<(String, String, String)> = conn
        .exec(
            format!(
                "SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA IN ({dbs}) AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE') \
                 ORDER BY ROUTINE_TYPE, ROUTINE_SCHEMA, ROUTINE_NAME"
            ),
            databases.to_vec(),
        )
        .await
        .map_err(sql_err)?;
    for (db, name, kind) in routines {
        let kind = if kind == "FUNCTION" {
            "FUNCTION"
        } else {
            "PROCEDURE"
        };
        let (create, sql_mode) = show_create(conn, kind, &db, &name, 2).await?;
        out.push(ObjectDef {
            kind,
            database: db,
            name,
            create,
            sql_mode,
            table: None,
        });
    }

    let mut views: Vec<(String, String, String)> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA IN ({dbs}) ORDER BY TABLE_SCHEMA, TABLE_NAME"
            ),
            databases.to_vec(),
        )
        .await
        .map_err(sql_err)?;
    // A view goes after every other remaining view its definition names.
    while !views.is_empty() {
        let names: Vec<String> = views
            .iter()
            .map(|(db, v, _)| TableId::new(db.as_str(), v.as_str()).quoted())
            .collect();
        let next = (0..views.len())
            .find(|&i| {
                names
                    .iter()
                    .enumerate()
                    .all(|(j, n)| i == j || !views[i].2.contains(n.as_str()))
            })
            .unwrap_or(0);
        let (db, name, _) = views.remove(next);
        let (create, sql_mode) = show_create(conn, "VIEW", &db, &name, 1).await?;
        out.push(ObjectDef {
            kind: "VIEW",
            database: db,
            name,
            create,
            sql_mode,
            table: None,
        });
    }

    // Events: the sink creates them disabled (DISABLE ON SLAVE); their
    // effects at the source arrive as row changes.
    let events: Vec<(String, String)> = conn
        .exec(
            format!(
                "SELECT EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS \
                 WHERE EVENT_SCHEMA IN ({dbs}) ORDER BY EVENT_SCHEMA, EVENT_NAME"
            ),
            databases.to_vec(),
        )
        .await
        .map_err(sql_err)?;
    for (db, name) in events {
        let (create, sql_mode) = show_create(conn, "EVENT", &db, &name, 3).await?;
        out.push(ObjectDef {
            kind: "EVENT",
            database: db,
            name,
            create,
            sql_mode,
            table: None,
        });
    }

    let triggers: Vec<(String, String, String)> = conn
        .exec(
            format!(
                "SELECT TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA IN ({dbs}) \
                 ORDER BY TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
            ),
            databases.to_vec(),
        )
        .await
        .map_err(sql_err)?;
    for (db, name, table) in triggers {
        let (create, sql_mode) = show_create(conn, "TRIGGER", &db, &name, 2).await?;
        out.push(ObjectDef {
            kind: "TRIGGER",
            table: Some(TableId::new(db.as_str(), table.as_str())),
            database: db,
            name,
            create,
            sql_mode,
        });
    }
    Ok(out)
}
