//! Applying a batch of changes to the destination in one transaction.
//!
//! ## Why this is idempotent
//! Within a batch, the changes of each keyed table are folded per key into
//! the row's final state: present with its last image, or absent. The batch
//! then runs, per table, one `DELETE ... WHERE key IN (...)` for the keys
//! that end absent, and one `REPLACE INTO ... VALUES (...), (...)` for the
//! rows that end present. Both statements set rows to a state, rather than
//! changing them relative to what is there, so applying a batch (or any of
//! its records) again leaves the same result. Deletes run first, so a row
//! that changes key, or two rows that swap the value of a unique column,
//! never collide with a row that is about to go; `REPLACE` removes any row
//! that still conflicts on a unique key before inserting. The same
//! transaction records the Kafka offsets and source coordinates reached (see
//! `state.rs`), so the destination's content and its record of what it has
//! applied commit together.
//!
//! Tables without a usable key cannot be folded: their changes run one by
//! one in order, updates and deletes matching the whole before image and
//! touching one row (`LIMIT 1`).

use std::collections::HashMap;
use std::sync::Arc;

use change_stream::event::{ChangeRecord, Op};
use change_stream::table::{quote_ident, ColumnKind, TableId, TableSchema};
use change_stream::value::Cell;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

use crate::error::{from_mysql, SinkError};
use crate::sql::push_literal;

/// The sink's own session sql_mode for rows.
pub const SESSION_SQL_MODE: &str =
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

/// One change to apply, with its table's shape at the destination.
pub struct Change {
    pub table: Arc<TableSchema>,
    /// The table's name at the source.
    pub source: TableId,
    pub record: ChangeRecord,
}

/// A table's final state changes within a batch.
#[derive(Default)]
struct Folded {
    /// Rendered key -> index in `finals`.
    index: HashMap<Vec<u8>, usize>,
    /// (key column literals, final row or None when deleted, whether a row
    /// already at the destination wins).
    finals: Vec<(Vec<Sql>, Option<Vec<Cell>>, bool)>,
}

/// SQL text, as bytes (binary literals hold raw bytes).
pub type Sql = Vec<u8>;

/// Renders the key columns of a row as SQL literals.
fn key_literal(table: &TableSchema, row: &[Cell]) -> Vec<Sql> {
    table
        .key
        .iter()
        .map(|&i| {
            let mut s = Vec::new();
            push_literal(&mut s, &table.columns[i].kind, &row[i]);
            s
        })
        .collect()
}

/// The columns the sink writes: all but generated ones, which the
/// destination computes.
fn written_columns(table: &TableSchema) -> Vec<usize> {
    (0..table.columns.len())
        .filter(|&i| table.columns[i].generated.is_none())
        .collect()
}

fn row_literal(table: &TableSchema, cols: &[usize], row: &[Cell], out: &mut Sql) {
    out.push(b'(');
    for (n, &i) in cols.iter().enumerate() {
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        push_literal(out, &table.columns[i].kind, &row[i]);
    }
    out.push(b')');
}

/// Packs `items` into statements `head item, item ...` of at most
/// `max_bytes` (a single larger item goes alone).
fn pack(head: &str, sep: &str, tail: &str, items: &[Sql], max_bytes: usize, out: &mut Vec<Sql>) {
    let mut cur = Vec::new();
    for item in items {
        if !cur.is_empty() && cur.len() + sep.len() + item.len() + tail.len() > max_bytes {
            cur.extend_from_slice(tail.as_bytes());
            out.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            cur.extend_from_slice(head.as_bytes());
        } else {
            cur.extend_from_slice(sep.as_bytes());
        }
        cur.extend_from_slice(item);
    }
    if !cur.is_empty() {
        cur.extend_from_slice(tail.as_bytes());
        out.push(cur);
    }
}

/// The statements that apply `changes`, in order. With `keep_existing`,
/// a row read by the full synchronization does not replace a row with the
/// same key already at the destination (`INSERT IGNORE`); later changes
/// do.
pub fn plan(
    changes: &[Change],
    max_bytes: usize,
    keep_existing: bool,
) -> Result<Vec<Sql>, SinkError> {
    let mut keyed: Vec<(TableId, Arc<TableSchema>, Folded)> = Vec::new();
    let mut keyed_index: HashMap<TableId, usize> = HashMap::new();
    let mut statements = Vec::new();
    for change in changes {
        let table = &change.table;
        let r = &change.record;
        let width = table.columns.len();
        for image in [&r.before, &r.after].into_iter().flatten() {
            if image.len() != width {
                return Err(SinkError::Record(format!(
                    "a record of {} has {} columns, its definition {width}; its shape changed, which this version does not replicate yet",
                    table.id,
                    image.len()
                )));
            }
        }
        if table.key.is_empty() {
            // Flush folded work first so that order holds across tables of
            // both kinds within the batch.
            keyed_statements(&mut keyed, &mut keyed_index, max_bytes, &mut statements);
            unkeyed_statement(table, r, &mut statements)?;
            continue;
        }
        let slot = *keyed_index.entry(table.id.clone()).or_insert_with(|| {
            keyed.push((table.id.clone(), table.clone(), Folded::default()));
            keyed.len() - 1
        });
        let folded = &mut keyed[slot].2;
        let keep = keep_existing && r.op == Op::Read;
        let mut set = |key: Vec<Sql>, row: Option<Vec<Cell>>| {
            let joined = key.join(&0u8);
            match folded.index.get(&joined) {
                Some(&i) => folded.finals[i] = (key, row, keep),
                None => {
                    folded.index.insert(joined, folded.finals.len());
                    folded.finals.push((key, row, keep));
                }
            }
        };
        match (r.op, &r.before, &r.after) {
            (Op::Read | Op::Create, _, Some(after)) => {
                set(key_literal(table, after), Some(after.clone()))
            }
            (Op::Update, Some(before), Some(after)) => {
                let old = key_literal(table, before);
                let new = key_literal(table, after);
                if old != new {
                    set(old, None);
                }
                set(new, Some(after.clone()));
            }
            (Op::Update, None, Some(after)) => set(key_literal(table, after), Some(after.clone())),
            (Op::Delete, Some(before), _) => set(key_literal(table, before), None),
            (op, _, _) => {
                return Err(SinkError::Record(format!(
                    "a record of {} with op {op} lacks the image it needs",
                    table.id
                )))
            }
        }
    }
    keyed_statements(&mut keyed, &mut keyed_index, max_bytes, &mut statements);
    Ok(statements)
}

fn keyed_statements(
    keyed: &mut Vec<(TableId, Arc<TableSchema>, Folded)>,
    keyed_index: &mut HashMap<TableId, usize>,
    max_bytes: usize,
    out: &mut Vec<Sql>,
) {
    for (id, table, folded) in keyed.drain(..) {
        let name = id.quoted();
        let key_cols: Vec<String> = table.key_columns().map(|c| quote_ident(&c.name)).collect();
        let gone = folded
            .finals
            .iter()
            .filter(|(_, row, _)| row.is_none())
            .map(|(k, _, _)| k);
        if key_cols.len() == 1 {
            let items: Vec<Sql> = gone.map(|k| k[0].clone()).collect();
            if !items.is_empty() {
                let head = format!("DELETE FROM {name} WHERE {} IN (", key_cols[0]);
                pack(&head, ", ", ")", &items, max_bytes, out);
            }
        } else {
            // (a = 1 AND b = 2) OR ...: index ranges for MariaDB's optimizer.
            let items: Vec<Sql> = gone
                .map(|k| {
                    let mut item = b"(".to_vec();
                    for (n, (c, v)) in key_cols.iter().zip(k).enumerate() {
                        if n > 0 {
                            item.extend_from_slice(b" AND ");
                        }
                        item.extend_from_slice(c.as_bytes());
                        item.extend_from_slice(b" = ");
                        item.extend_from_slice(v);
                    }
                    item.push(b')');
                    item
                })
                .collect();
            if !items.is_empty() {
                pack(
                    &format!("DELETE FROM {name} WHERE "),
                    " OR ",
                    "",
                    &items,
                    max_bytes,
                    out,
                );
            }
        }
        let cols = written_columns(&table);
        let names: Vec<String> = cols
            .iter()
            .map(|&i| quote_ident(&table.columns[i].name))
            .collect();
        for (verb, keep) in [("REPLACE", false), ("INSERT IGNORE", true)] {
            let present: Vec<Sql> = folded
                .finals
                .iter()
                .filter(|(_, _, k)| *k == keep)
                .filter_map(|(_, row, _)| row.as_ref())
                .map(|row| {
                    let mut s = Vec::new();
                    row_literal(&table, &cols, row, &mut s);
                    s
                })
                .collect();
            if !present.is_empty() {
                let head = format!("{verb} INTO {name} ({}) VALUES ", names.join(", "));
                pack(&head, ", ", "", &present, max_bytes, out);
            }
        }
    }
    keyed_index.clear();
}

/// `col <=> value AND ...` over the whole image, for tables without a key.
fn match_image(table: &TableSchema, row: &[Cell], s: &mut Sql) {
    for (n, i) in written_columns(table).into_iter().enumerate() {
        if n > 0 {
            s.extend_from_slice(b" AND ");
        }
        let c = &table.columns[i];
        s.extend_from_slice(quote_ident(&c.name).as_bytes());
        s.extend_from_slice(b" <=> ");
        if c.kind == ColumnKind::Float && !row[i].is_null() {
            // A FLOAT column compares as double; the literal must be
            // rounded the same way.
            s.extend_from_slice(b"CAST(");
            push_literal(s, &c.kind, &row[i]);
            s.extend_from_slice(b" AS FLOAT)");
        } else {
            push_literal(s, &c.kind, &row[i]);
        }
    }
}

fn unkeyed_statement(
    table: &TableSchema,
    r: &ChangeRecord,
    out: &mut Vec<Sql>,
) -> Result<(), SinkError> {
    let name = table.id.quoted();
    let cols = written_columns(table);
    let names: Vec<String> = cols
        .iter()
        .map(|&i| quote_ident(&table.columns[i].name))
        .collect();
    match (r.op, &r.before, &r.after) {
        (Op::Read | Op::Create, _, Some(after)) => {
            let mut s = format!("INSERT INTO {name} ({}) VALUES ", names.join(", ")).into_bytes();
            row_literal(table, &cols, after, &mut s);
            out.push(s);
        }
        (Op::Update, Some(before), Some(after)) => {
            let mut s = format!("UPDATE {name} SET ").into_bytes();
            for (n, &i) in cols.iter().enumerate() {
                if n > 0 {
                    s.extend_from_slice(b", ");
                }
                s.extend_from_slice(names[n].as_bytes());
                s.extend_from_slice(b" = ");
                push_literal(&mut s, &table.columns[i].kind, &after[i]);
            }
            s.extend_from_slice(b" WHERE ");
            match_image(table, before, &mut s);
            s.extend_from_slice(b" LIMIT 1");
            out.push(s);
        }
        (Op::Delete, Some(before), _) => {
            let mut s = format!("DELETE FROM {name} WHERE ").into_bytes();
            match_image(table, before, &mut s);
            s.extend_from_slice(b" LIMIT 1");
            out.push(s);
        }
        (op, _, _) => {
            return Err(SinkError::Record(format!(
                "a record of {} with op {op} lacks the image it needs",
                table.id
            )))
        }
    }
    Ok(())
}

/// The destination connection.
pub struct Applier {
    conn: Conn,
    pub max_statement_bytes: usize,
    /// The destination's max_allowed_packet: no statement may be longer.
    max_packet: usize,
}

impl Applier {
    /// Connects and sets up the session: UTC, utf8mb4, no foreign key
    /// checks (rows arrive table by table, not in the source's order), an SQL
    /// mode that accepts every value the source could hold.
    pub async fn connect(
        url: &str,
        timeout_secs: u64,
        max_statement_bytes: usize,
    ) -> Result<Self, SinkError> {
        let opts = Opts::from_url(&url.replacen("mariadb://", "mysql://", 1)).map_err(|e| {
            SinkError::InvalidSetting {
                key: "destination.url".into(),
                expected: "a mysql://user:password@host:port URL".into(),
                actual: e.to_string(),
            }
        })?;
        let target = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let opts = mysql_async::OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .init(vec![
                "SET time_zone = '+00:00'",
                "SET NAMES utf8mb4",
                "SET SESSION foreign_key_checks = 0",
                // Guarded triggers do nothing for rows the sink applies.
                "SET @tributary_apply = 1",
                SESSION_SQL_MODE,
            ]);
        let mut conn = match tokio::time::timeout(std::time::Duration::from_secs(timeout_secs), Conn::new(opts)).await {
            Err(_) => {
                return Err(SinkError::DestinationLost(format!(
                    "cannot connect to {target} within {timeout_secs}s; check [destination] url and that the server runs"
                )))
            }
            Ok(Err(e)) => return Err(from_mysql(&format!("cannot connect to {target}"), e)),
            Ok(Ok(c)) => c,
        };
        let packet: Option<u64> = conn
            .query_first("SELECT @@max_allowed_packet")
            .await
            .map_err(|e| from_mysql("cannot read max_allowed_packet", e))?;
        let max_packet = packet.unwrap_or(16 << 20) as usize;
        Ok(Self {
            conn,
            max_statement_bytes: max_statement_bytes.min(max_packet.saturating_sub(64 * 1024)),
            max_packet,
        })
    }

    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Runs `statements` and then `state_sql` in one transaction.
    pub async fn apply(&mut self, statements: &[Sql], state_sql: &str) -> Result<(), SinkError> {
        // A statement longer than max_allowed_packet would make the server
        // drop the connection, which looks like an outage and is retried
        // for ever; it is a setting to change instead.
        if let Some(s) = statements.iter().find(|s| s.len() > self.max_packet) {
            return Err(SinkError::Record(format!(
                "a statement of {} bytes is needed for a row ({}...), more than the destination's max_allowed_packet ({}); raise max_allowed_packet",
                s.len(),
                String::from_utf8_lossy(&s[..s.len().min(120)]),
                self.max_packet
            )));
        }
        let conn = &mut self.conn;
        conn.query_drop("START TRANSACTION")
            .await
            .map_err(|e| from_mysql("cannot start a transaction", e))?;
        for s in statements {
            if let Err(e) = conn.query_drop(s.as_slice()).await {
                let short = String::from_utf8_lossy(&s[..s.len().min(300)]).into_owned();
                let err = from_mysql(&format!("statement failed: {short}"), e);
                let _ = conn.query_drop("ROLLBACK").await;
                return Err(err);
            }
        }
        conn.query_drop(state_sql)
            .await
            .map_err(|e| from_mysql("cannot record the applied position", e))?;
        conn.query_drop("COMMIT")
            .await
            .map_err(|e| from_mysql("commit failed", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use change_stream::event::SourceInfo;
    use change_stream::table::{Column, KeyKind};

    fn texts(statements: Vec<Sql>) -> Vec<String> {
        statements
            .into_iter()
            .map(|s| String::from_utf8(s).unwrap())
            .collect()
    }

    fn table(keyed: bool) -> Arc<TableSchema> {
        let col = |name: &str, dt: &str, ct: &str| Column {
            name: name.into(),
            data_type: dt.into(),
            column_type: ct.into(),
            kind: ColumnKind::parse(dt, ct).unwrap(),
            nullable: name != "id",
            charset: None,
            collation: None,
            generated: None,
        };
        Arc::new(TableSchema {
            id: TableId::new("d", "t"),
            columns: vec![
                col("id", "int", "int(11)"),
                col("v", "varchar", "varchar(10)"),
            ],
            key: if keyed { vec![0] } else { vec![] },
            key_kind: if keyed {
                KeyKind::Primary
            } else {
                KeyKind::None
            },
            create_table: String::new(),
        })
    }

    fn change(
        t: &Arc<TableSchema>,
        op: Op,
        before: Option<(i64, &str)>,
        after: Option<(i64, &str)>,
    ) -> Change {
        let row = |(id, v): (i64, &str)| vec![Cell::Int(id), Cell::Text(v.into())];
        Change {
            table: t.clone(),
            source: t.id.clone(),
            record: ChangeRecord {
                op,
                before: before.map(row),
                after: after.map(row),
                ts_ms: 0,
                source: SourceInfo::default(),
            },
        }
    }

    #[test]
    fn keyed_changes_fold_to_final_states() {
        let t = table(true);
        let changes = vec![
            change(&t, Op::Create, None, Some((1, "a"))),
            change(&t, Op::Update, Some((1, "a")), Some((1, "b"))),
            change(&t, Op::Create, None, Some((2, "x"))),
            change(&t, Op::Delete, Some((2, "x")), None),
            change(&t, Op::Update, Some((3, "k")), Some((4, "k"))),
        ];
        let s = texts(plan(&changes, 1 << 20, false).unwrap());
        assert_eq!(
            s,
            vec![
                "DELETE FROM `d`.`t` WHERE `id` IN (2, 3)".to_string(),
                "REPLACE INTO `d`.`t` (`id`, `v`) VALUES (1, 'b'), (4, 'k')".to_string(),
            ]
        );
    }

    #[test]
    fn statements_are_split_by_size() {
        let t = table(true);
        let changes: Vec<Change> = (0..100)
            .map(|i| change(&t, Op::Read, None, Some((i, "v"))))
            .collect();
        let s = texts(plan(&changes, 200, false).unwrap());
        assert!(s.len() > 1);
        assert!(s.iter().all(|x| x.len() <= 200));
        let rows: usize = s.iter().map(|x| x.matches("'v'").count()).sum();
        assert_eq!(rows, 100);
    }

    #[test]
    fn unkeyed_changes_run_in_order() {
        let t = table(false);
        let changes = vec![
            change(&t, Op::Create, None, Some((1, "a"))),
            change(&t, Op::Update, Some((1, "a")), Some((1, "b"))),
            change(&t, Op::Delete, Some((1, "b")), None),
        ];
        let s = texts(plan(&changes, 1 << 20, false).unwrap());
        assert_eq!(s.len(), 3);
        assert!(s[0].starts_with("INSERT INTO"));
        assert_eq!(
            s[1],
            "UPDATE `d`.`t` SET `id` = 1, `v` = 'b' WHERE `id` <=> 1 AND `v` <=> 'a' LIMIT 1"
        );
        assert_eq!(
            s[2],
            "DELETE FROM `d`.`t` WHERE `id` <=> 1 AND `v` <=> 'b' LIMIT 1"
        );
    }
}
