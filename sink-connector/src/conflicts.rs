//! Conflicts: a change that finds the destination's row other than it
//! expects.
//!
//! An insert expects its key absent (or its very row there: the change
//! applied already); an update or a delete expects the row its before
//! image shows. Where the destination is written by others too (two-way,
//! many-to-one), that can fail, and `apply.on_row_conflict` says what then:
//! `overwrite` (the change wins), `ignore` (the destination's row is kept)
//! or `fail` (the sink stops, naming the conflict). Every conflict is
//! recorded in `<state_database>.conflicts`.
//!
//! ## Compared in batches, by the server
//! Within a batch the changes of a table are folded per key (`apply.rs`),
//! and only the first change of each key can conflict: later ones follow
//! from it. The planner writes those first expectations (the expected row
//! and the operation, per key) into a temporary table of the same column
//! types as the destination table (`CREATE TEMPORARY TABLE ... SELECT ...
//! LIMIT 0`), so that a value is stored there exactly as the destination
//! stores it, floats, temporal values and character sets alike; one
//! `UPDATE ... JOIN` then marks the expectations the destination's rows do
//! not meet (null-safe `<=>` per column). That is a few statements per
//! table and batch, never a round trip per row, and nothing is converted
//! on the client. Recording is one `INSERT ... SELECT` into the conflicts
//! table, the rows rendered as JSON by the server.
//!
//! `ignore` copies the destination's rows of the marked keys into a second
//! temporary table before the batch's statements of the table, and puts
//! them back after: the marked keys end as they were, present or absent.
//! All of it runs in the batch's destination transaction, so a crash
//! leaves neither the batch nor its conflicts.
//!
//! The temporary tables are named after the table and its shape, so a
//! schema change gets fresh ones. A table the destination cannot copy so
//! (a row at the size limit leaves no room for the check's columns) is
//! written unchecked, with a warning. Tables without a key are not checked
//! (their changes match rows by whole image already), nor are the rows of
//! the full synchronization.

use change_stream::table::{quote_ident, ColumnKind, TableSchema};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::config::ConflictPolicy;
use crate::error::{from_mysql, SinkError};
use crate::sql::quote_str;

/// Where conflicts are recorded, and what is done about them.
#[derive(Clone, Debug)]
pub struct Settings {
    pub policy: ConflictPolicy,
    pub state_database: String,
    pub prefix: String,
}

/// The two temporary tables of a table shape: expectations, and the rows
/// kept under `ignore`.
pub fn temp_names(table: &TableSchema) -> (String, String) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    table.id.database.hash(&mut h);
    table.id.table.hash(&mut h);
    for c in &table.columns {
        c.name.hash(&mut h);
        c.column_type.hash(&mut h);
    }
    let n = h.finish();
    let db = quote_ident(&table.id.database);
    (
        format!("{db}.`tributary_expect_{n:016x}`"),
        format!("{db}.`tributary_keep_{n:016x}`"),
    )
}

/// The columns the sink writes, quoted.
fn written(table: &TableSchema) -> Vec<String> {
    table
        .columns
        .iter()
        .filter(|c| c.generated.is_none())
        .map(|c| quote_ident(&c.name))
        .collect()
}

/// `INSERT INTO <expectations> (columns..., op, position) VALUES `: the
/// head of the planner's statements that load a table's expectations.
pub fn load_head(table: &TableSchema) -> String {
    let (expect, _) = temp_names(table);
    format!(
        "INSERT INTO {expect} ({}, `tributary_op`, `tributary_position`) VALUES ",
        written(table).join(", ")
    )
}

/// The key columns joined: `t.a = e.a AND ...`.
fn key_join(table: &TableSchema) -> String {
    table
        .key_columns()
        .map(|c| {
            let c = quote_ident(&c.name);
            format!("t.{c} = e.{c}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A JSON object of `columns` of the row `alias`, binary values in hex.
fn json_of<'a>(
    alias: &str,
    columns: impl Iterator<Item = &'a change_stream::table::Column>,
) -> String {
    let parts: Vec<String> = columns
        .map(|c| {
            let q = format!("{alias}.{}", quote_ident(&c.name));
            let v = match c.kind {
                ColumnKind::Bytes | ColumnKind::Bit { .. } | ColumnKind::Geometry => {
                    format!("HEX({q})")
                }
                _ => q,
            };
            format!("{}, {v}", quote_str(&c.name))
        })
        .collect();
    format!("JSON_OBJECT({})", parts.join(", "))
}

/// Creates the table's temporary tables in this session (if missing) and
/// empties its expectations.
pub async fn start(conn: &mut Conn, table: &TableSchema) -> Result<(), SinkError> {
    let (expect, keep) = temp_names(table);
    let cols = written(table).join(", ");
    let name = table.id.quoted();
    let err = |e| {
        from_mysql(
            &format!("cannot prepare the conflict check of {}", table.id),
            e,
        )
    };
    conn.query_drop(format!(
        "CREATE TEMPORARY TABLE IF NOT EXISTS {expect} \
         (`tributary_conflict` TINYINT NOT NULL DEFAULT 0) ENGINE=InnoDB \
         SELECT {cols}, CAST('' AS CHAR(1)) AS `tributary_op`, \
         CAST('' AS CHAR(64)) AS `tributary_position` FROM {name} LIMIT 0"
    ))
    .await
    .map_err(err)?;
    conn.query_drop(format!(
        "CREATE TEMPORARY TABLE IF NOT EXISTS {keep} ENGINE=InnoDB SELECT {cols} FROM {name} LIMIT 0"
    ))
    .await
    .map_err(err)?;
    conn.query_drop(format!("DELETE FROM {expect}"))
        .await
        .map_err(err)
}

/// Marks and records the expectations the destination does not meet, then
/// acts on them by the policy. Under `ignore`, the destination's rows of
/// the marked keys are kept aside for [`restore`].
pub async fn compare(
    conn: &mut Conn,
    table: &TableSchema,
    settings: &Settings,
) -> Result<u64, SinkError> {
    let (expect, keep) = temp_names(table);
    let name = table.id.quoted();
    let join = key_join(table);
    let first_key = quote_ident(&table.key_columns().next().expect("a keyed table").name);
    let same = table
        .columns
        .iter()
        .filter(|c| c.generated.is_none())
        .map(|c| {
            let c = quote_ident(&c.name);
            format!("t.{c} <=> e.{c}")
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let err = |e| from_mysql(&format!("cannot check {} for conflicts", table.id), e);
    conn.query_drop(format!(
        "UPDATE {expect} e LEFT JOIN {name} t ON {join} SET e.`tributary_conflict` = 1 \
         WHERE (e.`tributary_op` = 'c' AND t.{first_key} IS NOT NULL AND NOT ({same})) \
         OR (e.`tributary_op` <> 'c' AND (t.{first_key} IS NULL OR NOT ({same})))"
    ))
    .await
    .map_err(err)?;
    let marked = conn.affected_rows();
    if marked == 0 {
        return Ok(0);
    }
    let written_cols = || table.columns.iter().filter(|c| c.generated.is_none());
    conn.query_drop(format!(
        "INSERT INTO {}.`conflicts` (`topic_prefix`, `source_position`, `table_name`, `row_key`, \
         `operation`, `expected`, `destination_row`, `resolution`) \
         SELECT {}, e.`tributary_position`, {}, {}, e.`tributary_op`, {}, \
         IF(t.{first_key} IS NULL, NULL, {}), {} \
         FROM {expect} e LEFT JOIN {name} t ON {join} WHERE e.`tributary_conflict` = 1",
        quote_ident(&settings.state_database),
        quote_str(&settings.prefix),
        quote_str(&table.id.to_string()),
        json_of("e", table.key_columns()),
        json_of("e", written_cols()),
        json_of("t", written_cols()),
        quote_str(settings.policy.name()),
    ))
    .await
    .map_err(|e| from_mysql("cannot record a conflict", e))?;
    match settings.policy {
        ConflictPolicy::Fail => {
            let first: Option<(String, String, String, Option<String>)> = conn
                .query_first(format!(
                    "SELECT `row_key`, `operation`, `expected`, `destination_row` FROM {}.`conflicts` \
                     WHERE `id` = LAST_INSERT_ID()",
                    quote_ident(&settings.state_database)
                ))
                .await
                .map_err(|e| from_mysql("cannot read a conflict", e))?;
            let _ = conn.query_drop("ROLLBACK").await;
            let (key, op, expected, found) = first.unwrap_or_default();
            let what = match op.as_str() {
                "c" => "an insert of",
                "u" => "an update of a row that was",
                _ => "a delete of a row that was",
            };
            let message = format!(
                "a conflict at {} key {key}: {what} {expected}, the destination has {} ({marked} conflict(s) in the batch; apply.on_row_conflict = fail): make the destination's row what the source had, or set another policy, then start again",
                table.id,
                found.as_deref().unwrap_or("no row")
            );
            // Recorded on its own: the batch is rolled back.
            let _ = conn
                .query_drop(format!(
                    "INSERT INTO {}.`conflicts` (`topic_prefix`, `source_position`, `table_name`, `row_key`, \
                     `operation`, `expected`, `destination_row`, `resolution`) VALUES ({}, '', {}, {}, {}, {}, {}, 'fail')",
                    quote_ident(&settings.state_database),
                    quote_str(&settings.prefix),
                    quote_str(&table.id.to_string()),
                    quote_str(&key),
                    quote_str(&op),
                    quote_str(&expected),
                    found.as_deref().map_or("NULL".to_string(), quote_str),
                ))
                .await;
            Err(SinkError::Conflict(message))
        }
        ConflictPolicy::Ignore => {
            let cols = written(table);
            let from_t: Vec<String> = cols.iter().map(|c| format!("t.{c}")).collect();
            conn.query_drop(format!("DELETE FROM {keep}"))
                .await
                .map_err(err)?;
            conn.query_drop(format!(
                "INSERT INTO {keep} ({}) SELECT {} FROM {expect} e JOIN {name} t ON {join} \
                 WHERE e.`tributary_conflict` = 1",
                cols.join(", "),
                from_t.join(", ")
            ))
            .await
            .map_err(err)?;
            Ok(marked)
        }
        ConflictPolicy::Overwrite | ConflictPolicy::Off => Ok(marked),
    }
}

/// Under `ignore`, after the batch's statements of the table: its marked
/// keys get the destination's rows back (or none, where it had none).
pub async fn restore(conn: &mut Conn, table: &TableSchema) -> Result<(), SinkError> {
    let (expect, keep) = temp_names(table);
    let name = table.id.quoted();
    let cols = written(table).join(", ");
    let err = |e| {
        from_mysql(
            &format!("cannot keep the destination's rows of {}", table.id),
            e,
        )
    };
    // (A multi-table DELETE names its target unqualified, which a session
    // without a default database cannot resolve.)
    let key: Vec<String> = table.key_columns().map(|c| quote_ident(&c.name)).collect();
    let key = key.join(", ");
    conn.query_drop(format!(
        "DELETE FROM {name} WHERE ({key}) IN \
         (SELECT {key} FROM {expect} WHERE `tributary_conflict` = 1)"
    ))
    .await
    .map_err(err)?;
    conn.query_drop(format!(
        "INSERT INTO {name} ({cols}) SELECT {cols} FROM {keep}"
    ))
    .await
    .map_err(err)
}

/// The conflicts recorded for a prefix, oldest first: (when, position,
/// table, key, operation, expected, destination row, resolution).
pub async fn list(
    conn: &mut Conn,
    state_database: &str,
    prefix: &str,
) -> Result<Vec<Listed>, SinkError> {
    conn.exec(
        format!(
            "SELECT CAST(`detected_at` AS CHAR), `source_position`, `table_name`, `row_key`, \
             `operation`, `expected`, `destination_row`, `resolution` FROM {}.`conflicts` \
             WHERE `topic_prefix` = ? ORDER BY `id`",
            quote_ident(state_database)
        ),
        (prefix,),
    )
    .await
    .map_err(|e| from_mysql("cannot read the conflicts", e))
}

/// One recorded conflict, as [`list`] gives it.
pub type Listed = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
);
