//! Applying a batch of changes to the destination in one transaction.
//!
//! ## Why this is idempotent
//! Within a batch, the changes of each keyed table are folded per key into
//! the row's final state: present with its last image, or absent. The batch
//! then runs, per table, one `DELETE ... WHERE key IN (...)` for the keys
//! that end absent, and one `LOAD DATA LOCAL INFILE ... REPLACE` for the
//! rows that end present (`REPLACE INTO ... VALUES (...), (...)` for a
//! single row, or where the destination takes no local infile). Both
//! statements set rows to a state, rather than changing them relative to
//! what is there, so applying a batch (or any of its records) again leaves
//! the same result. Deletes run first, so a row that changes key, or two
//! rows that swap the value of a unique column, never collide with a row
//! that is about to go; `REPLACE` removes any row that still conflicts on a
//! unique key before inserting. The same transaction records the Kafka
//! offsets and source coordinates reached (see `state.rs`), so the
//! destination's content and its record of what it has applied commit
//! together.
//!
//! `LOAD DATA` takes the rows in its text form (tab separated, backslash
//! escapes), streamed from memory by the client as the statement's "file":
//! the server parses about a third less than for `VALUES` lists, which is
//! what a full synchronization spends most on. It is `REPLACE` (or
//! `IGNORE` for rows that must not replace what is there) exactly as the
//! statements it stands for, in the same transaction, and the server names
//! a refused row by its line as it names a `VALUES` row.
//!
//! Tables without a usable key cannot be folded: their changes run one by
//! one in order, updates and deletes matching the whole before image and
//! touching one row (`LIMIT 1`).

use std::collections::HashMap;
use std::sync::Arc;

use change_stream::event::{ChangeRecord, Op};
use change_stream::table::{quote_ident, ColumnKind, TableId, TableSchema};
use change_stream::value::Cell;
use futures::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

use crate::error::{from_mysql, SinkError};
use crate::sql::push_literal;

/// The sink's own session sql_mode for rows.
pub const SESSION_SQL_MODE: &str =
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

/// One change to apply, with its table's shape at the destination.
#[derive(Clone)]
pub struct Change {
    pub table: Arc<TableSchema>,
    /// The table's name at the source.
    pub source: TableId,
    pub record: ChangeRecord,
}

impl Change {
    /// About how much memory the change takes, held in a list with its
    /// lane: what the budget of records held counts.
    pub fn footprint(&self) -> usize {
        // Each of the two names is an allocation of at least 32 bytes.
        std::mem::size_of::<(usize, Change)>()
            + self.record.heap_bytes()
            + (self.source.database.len() + 24).max(32)
            + (self.source.table.len() + 24).max(32)
    }
}

/// A table's final state changes within a batch.
#[derive(Default)]
struct Folded {
    /// Rendered key -> index in `finals`.
    index: HashMap<Vec<u8>, usize>,
    /// (key column literals, final row or None when deleted, whether a row
    /// already at the destination wins).
    finals: Vec<(Vec<Sql>, Option<Vec<Cell>>, bool)>,
    /// With conflicts checked: what the first change of each key expects
    /// at the destination (the row, `c` insert / `u` update / `d` delete,
    /// the change's GTID).
    expected: Vec<(Vec<Cell>, u8, String)>,
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

/// Whether writing `row` needs the lenient `sql_mode` (it holds an ENUM
/// error value, which a strict session refuses).
fn needs_lenient(table: &TableSchema, row: &[Cell]) -> bool {
    table
        .columns
        .iter()
        .zip(row)
        .any(|(c, v)| crate::sql::is_enum_error_value(&c.kind, v))
}

/// The prefix of a statement that writes ENUM error values: the session's
/// `sql_mode` without strictness, for that statement alone.
const LENIENT: &str =
    "SET STATEMENT sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION' FOR ";

/// One statement of a batch, with what it writes: its table, and for each
/// row it carries, in order, the row's key (its key column literals; the
/// whole image for a table without a key), so that a row the destination
/// refuses can be named.
pub struct Statement {
    pub sql: Sql,
    pub table: Arc<TableSchema>,
    pub rows: Vec<Vec<Sql>>,
    /// For `LOAD DATA LOCAL INFILE`: the rows it loads, in its text form.
    pub data: Option<bytes::Bytes>,
    /// What it is for (most write rows).
    pub role: Role,
}

/// What a statement of a batch is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Writes rows (its SQL).
    Write,
    /// Sets the session's `server_id` to the origin of the changes after
    /// it (skipped when the session has it).
    Origin(u32),
    /// Conflict detection of its table (`conflicts.rs`): prepares it.
    CheckStart,
    /// Loads expectations of its table (its SQL).
    CheckLoad,
    /// Compares them with the destination and acts on what differs.
    CheckCompare,
    /// After the table's writes, under `ignore`: puts its conflicting
    /// rows back as they were.
    Restore,
}

impl Statement {
    /// `table, key (...)` of the `n`-th row (1-based, as the server counts
    /// in "at row n"), or of every row when the server does not say.
    fn describe_rows(&self, n: Option<usize>) -> String {
        let names: Vec<&str> = if self.table.key.is_empty() {
            written_columns(&self.table)
                .into_iter()
                .map(|i| self.table.columns[i].name.as_str())
                .collect()
        } else {
            self.table.key_columns().map(|c| c.name.as_str()).collect()
        };
        let render = |row: &Vec<Sql>| -> String {
            let text: Vec<String> = names
                .iter()
                .zip(row)
                .map(|(n, v)| format!("{} = {}", quote_ident(n), String::from_utf8_lossy(v)))
                .collect();
            let mut text = text.join(", ");
            if text.len() > 200 {
                let cut = (0..=200)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                text.truncate(cut);
                text.push_str("...");
            }
            format!("({text})")
        };
        let what = if self.table.key.is_empty() {
            "row"
        } else {
            "key"
        };
        match n.and_then(|n| self.rows.get(n.checked_sub(1)?)) {
            Some(row) => format!("table {}, {what} {}", self.table.id, render(row)),
            None if self.rows.len() == 1 => {
                format!("table {}, {what} {}", self.table.id, render(&self.rows[0]))
            }
            None => format!(
                "table {}, one of {} rows ({what}s {} to {})",
                self.table.id,
                self.rows.len(),
                self.rows.first().map(render).unwrap_or_default(),
                self.rows.last().map(render).unwrap_or_default()
            ),
        }
    }
}

/// The row number in a server error ("... at row 3").
fn error_row(message: &str) -> Option<usize> {
    let at = message.rfind(" at row ")?;
    message[at + 8..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Packs `items` (each a literal and the row it writes) into statements
/// `head item, item ...` of at most `max_bytes` (a single larger item goes
/// alone).
fn pack(
    table: &Arc<TableSchema>,
    head: &str,
    sep: &str,
    tail: &str,
    items: Vec<(Sql, Vec<Sql>)>,
    max_bytes: usize,
    out: &mut Vec<Statement>,
) {
    // Each statement's buffer is sized once: what is left, up to the cap.
    let mut left: usize = items.iter().map(|(i, _)| i.len() + sep.len()).sum();
    let statement = |left: usize| Statement {
        sql: Vec::with_capacity((head.len() + left + tail.len()).min(max_bytes)),
        table: table.clone(),
        rows: Vec::new(),
        data: None,
        role: Role::Write,
    };
    let mut cur = statement(left);
    for (item, row) in items {
        if !cur.sql.is_empty() && cur.sql.len() + sep.len() + item.len() + tail.len() > max_bytes {
            cur.sql.extend_from_slice(tail.as_bytes());
            out.push(std::mem::replace(&mut cur, statement(left)));
        }
        left -= item.len() + sep.len();
        if cur.sql.is_empty() {
            cur.sql.extend_from_slice(head.as_bytes());
        } else {
            cur.sql.extend_from_slice(sep.as_bytes());
        }
        cur.sql.extend_from_slice(&item);
        cur.rows.push(row);
    }
    if !cur.sql.is_empty() {
        cur.sql.extend_from_slice(tail.as_bytes());
        out.push(cur);
    }
}

/// How a batch is planned.
#[derive(Clone, Copy, Debug)]
pub struct Planning {
    /// Largest statement, in bytes (a single larger row goes alone).
    pub max_bytes: usize,
    /// A row read by the full synchronization keeps a row already there.
    pub keep_existing: bool,
    /// Rows that end present go in with `LOAD DATA LOCAL INFILE`.
    pub load_data: bool,
    /// Changes are written under the server id of their origin: where it
    /// changes within the batch, what is folded so far is written first,
    /// then the session's `server_id` is set (a batch from one origin, the
    /// usual case, folds whole).
    pub origins: bool,
    /// Changes are checked for conflicts with the destination's rows, and
    /// conflicting rows put back (`ignore`): see `conflicts.rs`.
    pub conflicts: Option<crate::config::ConflictPolicy>,
}

/// The statements that apply `changes`, in order. With `keep_existing`,
/// a row read by the full synchronization does not replace a row with the
/// same key already at the destination (`INSERT IGNORE`); later changes
/// do.
pub fn plan(changes: Vec<Change>, how: Planning) -> Result<Vec<Statement>, SinkError> {
    let Planning {
        max_bytes,
        keep_existing,
        load_data,
        origins,
        conflicts,
    } = how;
    let mut keyed: Vec<(TableId, Arc<TableSchema>, Folded)> = Vec::new();
    let mut keyed_index: HashMap<TableId, usize> = HashMap::new();
    let mut statements = Vec::new();
    // Each table's fold is sized once, for its changes in the batch.
    let mut per_table: HashMap<&TableId, usize> = HashMap::new();
    for c in &changes {
        *per_table.entry(&c.table.id).or_default() += 1;
    }
    let per_table: HashMap<TableId, usize> =
        per_table.into_iter().map(|(t, n)| (t.clone(), n)).collect();
    let mut origin = None;
    // The changes are taken, not borrowed: each row's image moves into
    // the plan rather than being copied.
    for change in changes {
        let table = &change.table;
        let r = change.record;
        // 0: a record of an earlier version, origin unknown.
        let from = r.source.server_id;
        if origins && from != 0 && origin != Some(from) {
            keyed_statements(
                &mut keyed,
                &mut keyed_index,
                max_bytes,
                load_data,
                conflicts,
                &mut statements,
            );
            statements.push(Statement {
                sql: format!("SET SESSION server_id = {from}").into_bytes(),
                table: table.clone(),
                rows: Vec::new(),
                data: None,
                role: Role::Origin(from),
            });
            origin = Some(from);
        }
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
            keyed_statements(
                &mut keyed,
                &mut keyed_index,
                max_bytes,
                load_data,
                conflicts,
                &mut statements,
            );
            unkeyed_statement(table, &r, &mut statements)?;
            continue;
        }
        let slot = match keyed_index.get(&table.id) {
            Some(&slot) => slot,
            None => {
                let n = per_table.get(&table.id).copied().unwrap_or(0);
                let folded = Folded {
                    index: HashMap::with_capacity(n),
                    finals: Vec::with_capacity(n),
                    expected: Vec::new(),
                };
                keyed.push((table.id.clone(), table.clone(), folded));
                keyed_index.insert(table.id.clone(), keyed.len() - 1);
                keyed.len() - 1
            }
        };
        let folded = &mut keyed[slot].2;
        let keep = keep_existing && r.op == Op::Read;
        if conflicts.is_some() && r.op != Op::Read {
            expect(table, folded, &r);
        }
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
        match (r.op, r.before, r.after) {
            (Op::Read | Op::Create, _, Some(after)) => set(key_literal(table, &after), Some(after)),
            (Op::Update, Some(before), Some(after)) => {
                let old = key_literal(table, &before);
                let new = key_literal(table, &after);
                if old != new {
                    set(old, None);
                }
                set(new, Some(after));
            }
            (Op::Update, None, Some(after)) => set(key_literal(table, &after), Some(after)),
            (Op::Delete, Some(before), _) => set(key_literal(table, &before), None),
            (op, _, _) => {
                return Err(SinkError::Record(format!(
                    "a record of {} with op {op} lacks the image it needs",
                    table.id
                )))
            }
        }
    }
    keyed_statements(
        &mut keyed,
        &mut keyed_index,
        max_bytes,
        load_data,
        conflicts,
        &mut statements,
    );
    Ok(statements)
}

/// Records what the first change of each key it touches expects at the
/// destination (a later change of a key follows from the first).
fn expect(table: &TableSchema, folded: &mut Folded, r: &ChangeRecord) {
    let gtid = r.source.gtid.clone().unwrap_or_default();
    let mut first = |row: &Vec<Cell>, op: u8| {
        let joined = key_literal(table, row).join(&0u8);
        if !folded.index.contains_key(&joined) {
            folded.expected.push((row.clone(), op, gtid.clone()));
        }
    };
    match (r.op, &r.before, &r.after) {
        (Op::Create, _, Some(after)) => first(after, b'c'),
        (Op::Update, Some(before), Some(after)) => {
            first(before, b'u');
            if key_literal(table, before) != key_literal(table, after) {
                first(after, b'c');
            }
        }
        (Op::Delete, Some(before), _) => first(before, b'd'),
        _ => {}
    }
}

/// The statements that load a table's expectations and compare them,
/// before its writes (see `conflicts.rs`).
fn check_statements(
    table: &Arc<TableSchema>,
    expected: Vec<(Vec<Cell>, u8, String)>,
    max_bytes: usize,
    out: &mut Vec<Statement>,
) {
    let bare = |role: Role| Statement {
        sql: Vec::new(),
        table: table.clone(),
        rows: Vec::new(),
        data: None,
        role,
    };
    out.push(bare(Role::CheckStart));
    let cols = written_columns(table);
    let lenient = expected.iter().any(|(row, _, _)| needs_lenient(table, row));
    let mut head = crate::conflicts::load_head(table);
    if lenient {
        head.insert_str(0, LENIENT);
    }
    let items: Vec<(Sql, Vec<Sql>)> = expected
        .into_iter()
        .map(|(row, op, gtid)| {
            let mut s = Vec::new();
            row_literal(table, &cols, &row, &mut s);
            s.pop();
            s.extend_from_slice(b", '");
            s.push(op);
            s.extend_from_slice(b"', ");
            s.extend_from_slice(crate::sql::quote_str(&gtid).as_bytes());
            s.push(b')');
            (s, key_literal(table, &row))
        })
        .collect();
    let from = out.len();
    pack(table, &head, ", ", "", items, max_bytes, out);
    for s in &mut out[from..] {
        s.role = Role::CheckLoad;
    }
    out.push(bare(Role::CheckCompare));
}

fn keyed_statements(
    keyed: &mut Vec<(TableId, Arc<TableSchema>, Folded)>,
    keyed_index: &mut HashMap<TableId, usize>,
    max_bytes: usize,
    load_data: bool,
    conflicts: Option<crate::config::ConflictPolicy>,
    out: &mut Vec<Statement>,
) {
    for (id, table, mut folded) in keyed.drain(..) {
        let name = id.quoted();
        let checked = !folded.expected.is_empty();
        if checked {
            check_statements(&table, std::mem::take(&mut folded.expected), max_bytes, out);
        }
        let key_cols: Vec<String> = table.key_columns().map(|c| quote_ident(&c.name)).collect();
        let cols = written_columns(&table);
        let mut gone = Vec::new();
        // REPLACE and INSERT IGNORE rows, each strict or lenient.
        let mut present: [Vec<(Vec<Cell>, Vec<Sql>)>; 4] = Default::default();
        for (key, row, keep) in folded.finals {
            match row {
                None => gone.push(key),
                Some(row) => {
                    let slot = usize::from(keep) * 2 + usize::from(needs_lenient(&table, &row));
                    present[slot].push((row, key));
                }
            }
        }
        if key_cols.len() == 1 {
            let items: Vec<(Sql, Vec<Sql>)> = gone.into_iter().map(|k| (k[0].clone(), k)).collect();
            if !items.is_empty() {
                let head = format!("DELETE FROM {name} WHERE {} IN (", key_cols[0]);
                pack(&table, &head, ", ", ")", items, max_bytes, out);
            }
        } else {
            // (a = 1 AND b = 2) OR ...: index ranges for MariaDB's optimizer.
            let items: Vec<(Sql, Vec<Sql>)> = gone
                .into_iter()
                .map(|k| {
                    let mut item = b"(".to_vec();
                    for (n, (c, v)) in key_cols.iter().zip(&k).enumerate() {
                        if n > 0 {
                            item.extend_from_slice(b" AND ");
                        }
                        item.extend_from_slice(c.as_bytes());
                        item.extend_from_slice(b" = ");
                        item.extend_from_slice(v);
                    }
                    item.push(b')');
                    (item, k)
                })
                .collect();
            if !items.is_empty() {
                let head = format!("DELETE FROM {name} WHERE ");
                pack(&table, &head, " OR ", "", items, max_bytes, out);
            }
        }
        let names: Vec<String> = cols
            .iter()
            .map(|&i| quote_ident(&table.columns[i].name))
            .collect();
        for (slot, rows) in present.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let keep = slot >= 2;
            let strict = slot % 2 == 0;
            // Many rows in a strict session: loaded, where the server
            // parses a third less than for VALUES lists.
            let (loaded, rows): (Vec<_>, Vec<_>) =
                if load_data && strict && rows.len() >= LOAD_MIN_ROWS {
                    rows.into_iter()
                        .partition(|(row, _)| loadable(&table, &cols, row))
                } else {
                    (Vec::new(), rows)
                };
            if !loaded.is_empty() {
                load_statements(&table, &cols, keep, loaded, max_bytes, out);
            }
            if rows.is_empty() {
                continue;
            }
            let items: Vec<(Sql, Vec<Sql>)> = rows
                .into_iter()
                .map(|(row, key)| {
                    let mut s = Vec::new();
                    row_literal(&table, &cols, &row, &mut s);
                    (s, key)
                })
                .collect();
            let verb = if keep { "INSERT IGNORE" } else { "REPLACE" };
            let lenient = if strict { "" } else { LENIENT };
            let head = format!("{lenient}{verb} INTO {name} ({}) VALUES ", names.join(", "));
            pack(&table, &head, ", ", "", items, max_bytes, out);
        }
        if checked && conflicts == Some(crate::config::ConflictPolicy::Ignore) {
            out.push(Statement {
                sql: Vec::new(),
                table: table.clone(),
                rows: Vec::new(),
                data: None,
                role: Role::Restore,
            });
        }
    }
    keyed_index.clear();
}

/// The fewest rows of a table in a batch that are loaded with `LOAD DATA`
/// rather than written as a `VALUES` list (a single row gains nothing from
/// the round trip that sends its "file").
const LOAD_MIN_ROWS: usize = 2;

/// Whether `row` has LOAD DATA's text form: every value is text, a number
/// or a date, or raw bytes for a column that takes them as they are (a
/// value the source could only give as bytes for a character column goes
/// in a `VALUES` list, as `_binary`).
fn loadable(table: &TableSchema, cols: &[usize], row: &[Cell]) -> bool {
    cols.iter().all(|&i| {
        !matches!(row[i], Cell::Bytes(_))
            || matches!(
                table.columns[i].kind,
                ColumnKind::Bytes | ColumnKind::Geometry | ColumnKind::Bit { .. }
            )
    })
}

/// `LOAD DATA LOCAL INFILE` statements (REPLACE, or IGNORE to keep rows
/// already there) for `rows`, each with at most `max_bytes` of data: tab
/// separated, one row a line, `\N` for NULL, backslash escapes; read as
/// utf8mb4 (the session's character set) and converted to each column's,
/// raw bytes going to binary columns unchanged. BIT columns take their
/// number through a variable.
fn load_statements(
    table: &Arc<TableSchema>,
    cols: &[usize],
    keep: bool,
    rows: Vec<(Vec<Cell>, Vec<Sql>)>,
    max_bytes: usize,
    out: &mut Vec<Statement>,
) {
    let mut targets = Vec::with_capacity(cols.len());
    let mut sets = Vec::new();
    for &i in cols {
        let c = &table.columns[i];
        if matches!(c.kind, ColumnKind::Bit { .. }) {
            targets.push(format!("@c{i}"));
            sets.push(format!(
                "{} = CAST(@c{i} AS UNSIGNED)",
                quote_ident(&c.name)
            ));
        } else {
            targets.push(quote_ident(&c.name));
        }
    }
    let mut sql = format!(
        "LOAD DATA LOCAL INFILE 'rows' {} INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        if keep { "IGNORE" } else { "REPLACE" },
        table.id.quoted(),
        targets.join(", ")
    );
    if !sets.is_empty() {
        sql.push_str(&format!(" SET {}", sets.join(", ")));
    }
    let mut data: Vec<u8> = Vec::new();
    let mut keys = Vec::new();
    let mut flush = |data: &mut Vec<u8>, keys: &mut Vec<Vec<Sql>>| {
        out.push(Statement {
            sql: sql.clone().into_bytes(),
            table: table.clone(),
            rows: std::mem::take(keys),
            data: Some(bytes::Bytes::from(std::mem::take(data))),
            role: Role::Write,
        });
    };
    let total = rows.len();
    for (n_row, (row, key)) in rows.into_iter().enumerate() {
        if !data.is_empty() && data.len() >= max_bytes {
            flush(&mut data, &mut keys);
        }
        let start = data.len();
        for (n, &i) in cols.iter().enumerate() {
            if n > 0 {
                data.push(b'\t');
            }
            crate::sql::push_load_field(&mut data, &table.columns[i].kind, &row[i]);
        }
        data.push(b'\n');
        keys.push(key);
        if start == 0 {
            // Each buffer is sized once, from its first row: growing it
            // row by row copied it and had the kernel zero fresh pages
            // at every doubling (a tenth of the sink's time).
            let row_bytes = data.len();
            let rows_left = total - n_row;
            let want =
                (row_bytes * rows_left + row_bytes / 2 * rows_left / 10).min(max_bytes + row_bytes);
            data.reserve(want.saturating_sub(data.len()));
        }
    }
    if !data.is_empty() {
        flush(&mut data, &mut keys);
    }
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
    table: &Arc<TableSchema>,
    r: &ChangeRecord,
    out: &mut Vec<Statement>,
) -> Result<(), SinkError> {
    let name = table.id.quoted();
    let cols = written_columns(table);
    let names: Vec<String> = cols
        .iter()
        .map(|&i| quote_ident(&table.columns[i].name))
        .collect();
    let image = |row: &[Cell]| -> Vec<Sql> {
        cols.iter()
            .map(|&i| {
                let mut v = Vec::new();
                push_literal(&mut v, &table.columns[i].kind, &row[i]);
                v
            })
            .collect()
    };
    let lenient = |row: &[Cell], s: &mut Sql| {
        if needs_lenient(table, row) {
            s.extend_from_slice(LENIENT.as_bytes());
        }
    };
    let (sql, row) = match (r.op, &r.before, &r.after) {
        (Op::Read | Op::Create, _, Some(after)) => {
            let mut s = Vec::new();
            lenient(after, &mut s);
            s.extend_from_slice(
                format!("INSERT INTO {name} ({}) VALUES ", names.join(", ")).as_bytes(),
            );
            row_literal(table, &cols, after, &mut s);
            (s, after)
        }
        (Op::Update, Some(before), Some(after)) => {
            let mut s = Vec::new();
            lenient(after, &mut s);
            s.extend_from_slice(format!("UPDATE {name} SET ").as_bytes());
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
            (s, before)
        }
        (Op::Delete, Some(before), _) => {
            let mut s = format!("DELETE FROM {name} WHERE ").into_bytes();
            match_image(table, before, &mut s);
            s.extend_from_slice(b" LIMIT 1");
            (s, before)
        }
        (op, _, _) => {
            return Err(SinkError::Record(format!(
                "a record of {} with op {op} lacks the image it needs",
                table.id
            )))
        }
    };
    out.push(Statement {
        data: None,
        sql,
        table: table.clone(),
        rows: vec![image(row)],
        role: Role::Write,
    });
    Ok(())
}

/// The destination connection.
pub struct Applier {
    conn: Conn,
    /// What it was opened with, for sessions of other kinds.
    opts: mysql_async::OptsBuilder,
    pub max_statement_bytes: usize,
    /// The destination's max_allowed_packet: no statement may be longer.
    max_packet: usize,
    /// Whether the destination takes `LOAD DATA LOCAL INFILE`
    /// (`local_infile` ON).
    pub local_infile: bool,
    /// The destination's own `server_id`.
    pub server_id: u32,
    /// Whether changes are written under their origin's server id
    /// (`apply.origin_server_id`, and the account may set it).
    pub origins: bool,
    /// The session's `server_id` as last set for an origin.
    session_origin: Option<u32>,
    /// Where conflicts are recorded and what is done about them (checked
    /// when set; see `conflicts.rs`).
    pub conflicts: Option<crate::conflicts::Settings>,
    /// Tables whose conflict check the destination refused to prepare (a
    /// row at its size limit has no room for the check's columns): their
    /// changes are written unchecked.
    unchecked: std::collections::HashSet<TableId>,
}

impl Applier {
    /// Connects and sets up the session: UTC, utf8mb4, no foreign key
    /// checks (rows arrive table by table, not in the source's order), an SQL
    /// mode that accepts every value the source could hold.
    pub async fn connect(
        destination: &crate::config::DestinationSection,
        timeout_secs: u64,
        max_statement_bytes: usize,
    ) -> Result<Self, SinkError> {
        let url = &destination.url;
        let opts = Opts::from_url(&url.replacen("mariadb://", "mysql://", 1)).map_err(|e| {
            SinkError::InvalidSetting {
                key: "destination.url".into(),
                expected: "a mysql://user:password@host:port URL".into(),
                actual: e.to_string(),
            }
        })?;
        let target = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let opts = destination
            .security
            .apply(mysql_async::OptsBuilder::from_opts(opts))
            .prefer_socket(false)
            .init(vec![
                "SET time_zone = '+00:00'",
                "SET NAMES utf8mb4",
                "SET SESSION foreign_key_checks = 0",
                // Guarded triggers do nothing for rows the sink applies.
                "SET @tributary_apply = 1",
                SESSION_SQL_MODE,
            ]);
        let mut conn = match tokio::time::timeout(std::time::Duration::from_secs(timeout_secs), Conn::new(opts.clone())).await {
            Err(_) => {
                return Err(SinkError::DestinationLost(format!(
                    "cannot connect to {target} within {timeout_secs}s; check [destination] url and that the server runs"
                )))
            }
            Ok(Err(e)) => {
                let tls = destination.tls.mode != change_stream::secure::TlsMode::Disabled;
                let hint = change_stream::secure::hint("destination", tls, &e.to_string());
                let failed = from_mysql(&format!("cannot connect to {target}"), e);
                return Err(match hint {
                    // Not retried: a certificate or a TLS setting is wrong.
                    Some(hint) => SinkError::Config {
                        message: format!("{failed}; {hint}"),
                    },
                    None => failed,
                });
            }
            Ok(Ok(c)) => c,
        };
        let settings: Option<(u64, u64, u32)> = conn
            .query_first("SELECT @@max_allowed_packet, @@local_infile, @@server_id")
            .await
            .map_err(|e| from_mysql("cannot read max_allowed_packet", e))?;
        let (packet, local_infile, server_id) = settings.unwrap_or((16 << 20, 0, 0));
        let max_packet = packet as usize;
        Ok(Self {
            conn,
            opts,
            max_statement_bytes: max_statement_bytes.min(max_packet.saturating_sub(64 * 1024)),
            max_packet,
            local_infile: local_infile == 1,
            server_id,
            origins: false,
            session_origin: None,
            conflicts: None,
            unchecked: Default::default(),
        })
    }

    /// Whether this account may set the session's `server_id` (SUPER, or
    /// BINLOG REPLAY from MariaDB 10.5.2); with the server's refusal if not.
    pub async fn may_set_server_id(&mut self) -> Result<(), String> {
        match self
            .conn
            .query_drop("SET SESSION server_id = @@global.server_id")
            .await
        {
            Ok(()) => Ok(()),
            Err(mysql_async::Error::Server(e)) => Err(e.message),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes changes under their origin's server id from now on, if
    /// `wanted` and the account may; says once when it may not.
    pub async fn take_origins(&mut self, wanted: bool) {
        self.origins = wanted
            && match self.may_set_server_id().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "the account cannot set the session's server_id: changes are written under the destination's own (grant BINLOG REPLAY or SUPER; see apply.origin_server_id)");
                    false
                }
            };
    }

    /// Sets the session's `server_id` to a change's origin (0: unknown,
    /// left as it is), unless it has it already.
    pub async fn set_origin(&mut self, origin: u32) -> Result<(), SinkError> {
        if !self.origins || origin == 0 || self.session_origin == Some(origin) {
            return Ok(());
        }
        self.conn
            .query_drop(format!("SET SESSION server_id = {origin}"))
            .await
            .map_err(|e| {
                from_mysql("cannot set the session's server_id to a change's origin", e)
            })?;
        self.session_origin = Some(origin);
        Ok(())
    }

    /// Runs a statement that does not write rows by its SQL.
    async fn run_role(&mut self, s: &Statement) -> Result<(), SinkError> {
        match (s.role, &self.conflicts) {
            (Role::Origin(origin), _) => self.set_origin(origin).await,
            (Role::CheckStart, Some(_)) => {
                match crate::conflicts::start(&mut self.conn, &s.table).await {
                    Err(SinkError::Destination(e)) => {
                        tracing::warn!(table = %s.table.id, error = %e, "the destination cannot hold this table's conflict check: its changes are written without one");
                        self.unchecked.insert(s.table.id.clone());
                        Ok(())
                    }
                    other => other,
                }
            }
            (Role::CheckCompare, Some(settings)) => {
                let settings = settings.clone();
                let n = crate::conflicts::compare(&mut self.conn, &s.table, &settings).await?;
                if n > 0 {
                    change_stream::telemetry::sink_conflicts(
                        &s.table.id.to_string(),
                        n,
                        settings.policy.name(),
                    );
                    tracing::warn!(table = %s.table.id, conflicts = n, resolution = settings.policy.name(), "changes found the destination's rows other than they expected: recorded in the conflicts table");
                }
                Ok(())
            }
            (Role::Restore, Some(_)) => crate::conflicts::restore(&mut self.conn, &s.table).await,
            _ => Ok(()),
        }
    }

    /// Gives another session this one's origin server id.
    pub async fn set_origin_of(&self, conn: &mut Conn) -> Result<(), SinkError> {
        if let Some(origin) = self.session_origin {
            conn.query_drop(format!("SET SESSION server_id = {origin}"))
                .await
                .map_err(|e| {
                    from_mysql("cannot set the session's server_id to a change's origin", e)
                })?;
        }
        Ok(())
    }

    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// A new session set up like this one, without a default database
    /// (MariaDB has no way back to none once a session has one).
    pub async fn session_without_database(&self) -> Result<Conn, SinkError> {
        Conn::new(self.opts.clone().db_name(None::<String>))
            .await
            .map_err(|e| from_mysql("cannot open a session at the destination", e))
    }

    /// Runs `statements` and then `state` (the positions they reach) in
    /// one transaction. A
    /// statement the destination refuses is named by the table and the
    /// key of the row it refused (the server's "at row n"), not by its
    /// text, which can be megabytes.
    pub async fn apply(
        &mut self,
        statements: &[Statement],
        state: &[String],
    ) -> Result<(), SinkError> {
        self.apply_in(statements, state, true, true).await
    }

    /// Runs `statements` then `state` in a destination transaction: one it
    /// starts (`begin`) or the one left open before, committed or left open
    /// for more (`commit`).
    pub async fn apply_in(
        &mut self,
        statements: &[Statement],
        state: &[String],
        begin: bool,
        commit: bool,
    ) -> Result<(), SinkError> {
        // A statement longer than max_allowed_packet would make the server
        // drop the connection, which looks like an outage and is retried
        // for ever; it is a setting to change instead.
        if let Some(s) = statements.iter().find(|s| s.sql.len() > self.max_packet) {
            return Err(SinkError::Record(format!(
                "a statement of {} bytes is needed for {}, more than the destination's max_allowed_packet ({}); raise max_allowed_packet",
                s.sql.len(),
                s.describe_rows(None),
                self.max_packet
            )));
        }
        if begin {
            self.conn
                .query_drop("START TRANSACTION")
                .await
                .map_err(|e| from_mysql("cannot start a transaction", e))?;
        }
        for s in statements {
            let checking = matches!(
                s.role,
                Role::CheckStart | Role::CheckLoad | Role::CheckCompare | Role::Restore
            );
            if checking && self.unchecked.contains(&s.table.id) {
                continue;
            }
            if s.role != Role::Write && s.role != Role::CheckLoad {
                if let Err(e) = self.run_role(s).await {
                    let _ = self.conn.query_drop("ROLLBACK").await;
                    return Err(e);
                }
                continue;
            }
            let conn = &mut self.conn;
            if let Some(data) = &s.data {
                // The rows the statement asks for as its "file".
                let data = data.clone();
                conn.set_infile_handler(async move {
                    Ok(futures::stream::once(async move { Ok(data) }).boxed())
                });
            }
            if let Err(e) = conn.query_drop(s.sql.as_slice()).await {
                let row = match &e {
                    mysql_async::Error::Server(se) => error_row(&se.message),
                    _ => None,
                };
                let err = from_mysql(
                    &format!(
                        "the destination refused a change of {}",
                        s.describe_rows(row)
                    ),
                    e,
                );
                let _ = conn.query_drop("ROLLBACK").await;
                return Err(err);
            }
        }
        let conn = &mut self.conn;
        for sql in state {
            conn.query_drop(sql)
                .await
                .map_err(|e| from_mysql("cannot record the applied position", e))?;
        }
        if commit {
            conn.query_drop("COMMIT")
                .await
                .map_err(|e| from_mysql("commit failed", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use change_stream::event::SourceInfo;
    use change_stream::table::{Column, KeyKind};

    fn planning(max_bytes: usize, keep_existing: bool, load_data: bool) -> Planning {
        Planning {
            max_bytes,
            keep_existing,
            load_data,
            origins: false,
            conflicts: None,
        }
    }

    fn texts(statements: Vec<Statement>) -> Vec<String> {
        statements
            .into_iter()
            .map(|s| String::from_utf8(s.sql).unwrap())
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
                transaction: None,
            },
        }
    }

    #[test]
    fn a_change_of_origin_cuts_the_fold_and_sets_the_server_id() {
        let t = table(true);
        let from = |server_id: u32, mut c: Change| {
            c.record.source.server_id = server_id;
            c
        };
        let changes = vec![
            from(1, change(&t, Op::Create, None, Some((1, "a")))),
            from(1, change(&t, Op::Create, None, Some((2, "b")))),
            from(2, change(&t, Op::Update, Some((1, "a")), Some((1, "c")))),
            from(1, change(&t, Op::Delete, Some((2, "b")), None)),
        ];
        let how = Planning {
            origins: true,
            ..planning(1 << 20, false, false)
        };
        let plan = plan(changes.clone(), how).unwrap();
        let origins: Vec<Option<u32>> = plan
            .iter()
            .map(|s| match s.role {
                Role::Origin(o) => Some(o),
                _ => None,
            })
            .collect();
        assert_eq!(origins, vec![Some(1), None, Some(2), None, Some(1), None]);
        assert_eq!(
            texts(plan),
            vec![
                "SET SESSION server_id = 1",
                "REPLACE INTO `d`.`t` (`id`, `v`) VALUES (1, 'a'), (2, 'b')",
                "SET SESSION server_id = 2",
                "REPLACE INTO `d`.`t` (`id`, `v`) VALUES (1, 'c')",
                "SET SESSION server_id = 1",
                "DELETE FROM `d`.`t` WHERE `id` IN (2)",
            ]
        );
        // Without origins, the batch folds whole.
        let folded = texts(super::plan(changes, planning(1 << 20, false, false)).unwrap());
        assert_eq!(folded.len(), 2, "{folded:?}");
    }

    #[test]
    fn the_first_change_of_each_key_is_checked_before_the_writes() {
        let t = table(true);
        let mut changes = vec![
            change(&t, Op::Update, Some((1, "a")), Some((1, "b"))),
            change(&t, Op::Update, Some((1, "b")), Some((1, "c"))),
            change(&t, Op::Create, None, Some((2, "x"))),
            change(&t, Op::Delete, Some((3, "y")), None),
        ];
        changes[0].record.source.gtid = Some("0-1-7".into());
        let how = Planning {
            conflicts: Some(crate::config::ConflictPolicy::Ignore),
            ..planning(1 << 20, false, false)
        };
        let plan = plan(changes, how).unwrap();
        let roles: Vec<Role> = plan.iter().map(|s| s.role).collect();
        assert_eq!(
            roles,
            vec![
                Role::CheckStart,
                Role::CheckLoad,
                Role::CheckCompare,
                Role::Write,
                Role::Write,
                Role::Restore
            ]
        );
        let (expect, _) = crate::conflicts::temp_names(&t);
        assert_eq!(
            String::from_utf8(plan[1].sql.clone()).unwrap(),
            format!(
                "INSERT INTO {expect} (`id`, `v`, `tributary_op`, `tributary_position`) VALUES \
                 (1, 'a', 'u', '0-1-7'), (2, 'x', 'c', ''), (3, 'y', 'd', '')"
            )
        );
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
        let s = texts(plan(changes.clone(), planning(1 << 20, false, false)).unwrap());
        assert_eq!(
            s,
            vec![
                "DELETE FROM `d`.`t` WHERE `id` IN (2, 3)".to_string(),
                "REPLACE INTO `d`.`t` (`id`, `v`) VALUES (1, 'b'), (4, 'k')".to_string(),
            ]
        );
    }

    #[test]
    fn many_rows_are_loaded_and_the_rest_written() {
        let t = table(true);
        let mut changes: Vec<Change> = (0..100)
            .map(|i| change(&t, Op::Read, None, Some((i, "a\tb"))))
            .collect();
        changes.push(change(&t, Op::Delete, Some((7, "x")), None));
        // A character value the source could only give as bytes.
        let mut odd = change(&t, Op::Read, None, Some((500, "")));
        odd.record.after.as_mut().unwrap()[1] = Cell::Bytes(vec![0xff]);
        changes.push(odd);
        let plan = plan(changes.clone(), planning(1 << 20, false, true)).unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!(
            String::from_utf8(plan[0].sql.clone()).unwrap(),
            "DELETE FROM `d`.`t` WHERE `id` IN (7)"
        );
        assert_eq!(
            String::from_utf8(plan[1].sql.clone()).unwrap(),
            "LOAD DATA LOCAL INFILE 'rows' REPLACE INTO TABLE `d`.`t` CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (`id`, `v`)"
        );
        let data = plan[1].data.as_ref().unwrap();
        assert!(data.starts_with(b"0\ta\\tb\n1\ta\\tb\n"), "{data:?}");
        assert_eq!(data.iter().filter(|&&b| b == b'\n').count(), 99);
        assert_eq!(plan[1].rows.len(), 99);
        assert_eq!(
            plan[2].sql,
            b"REPLACE INTO `d`.`t` (`id`, `v`) VALUES (500, _binary'\xff')".to_vec()
        );
        // One row: a VALUES list.
        let few = plan_texts(&changes[..1]);
        assert!(few[0].starts_with("REPLACE INTO"), "{few:?}");
    }

    fn plan_texts(changes: &[Change]) -> Vec<String> {
        texts(plan(changes.to_vec(), planning(1 << 20, false, true)).unwrap())
    }

    #[test]
    fn statements_are_split_by_size() {
        let t = table(true);
        let changes: Vec<Change> = (0..100)
            .map(|i| change(&t, Op::Read, None, Some((i, "v"))))
            .collect();
        let s = texts(plan(changes.clone(), planning(200, false, false)).unwrap());
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
        let s = texts(plan(changes.clone(), planning(1 << 20, false, false)).unwrap());
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

    #[test]
    fn enum_error_values_are_written_leniently_and_refused_rows_named() {
        let mut t = (*table(true)).clone();
        t.columns[1] = Column {
            name: "e".into(),
            data_type: "enum".into(),
            column_type: "enum('a','b')".into(),
            kind: ColumnKind::parse("enum", "enum('a','b')").unwrap(),
            nullable: true,
            charset: None,
            collation: None,
            generated: None,
        };
        let t = Arc::new(t);
        let changes = vec![
            change(&t, Op::Create, None, Some((1, "a"))),
            change(&t, Op::Create, None, Some((2, ""))),
            change(&t, Op::Create, None, Some((3, "b"))),
        ];
        let plan = plan(changes.clone(), planning(1 << 20, false, false)).unwrap();
        assert_eq!(plan[1].rows, vec![vec![b"2".to_vec()]]);
        assert_eq!(
            texts(plan),
            vec![
                "REPLACE INTO `d`.`t` (`id`, `e`) VALUES (1, 'a'), (3, 'b')".to_string(),
                format!("{LENIENT}REPLACE INTO `d`.`t` (`id`, `e`) VALUES (2, 0)"),
            ]
        );
        let plan = super::plan(changes[..1].to_vec(), planning(1 << 20, false, false)).unwrap();
        assert_eq!(
            plan[0].describe_rows(error_row("Data truncated for column 'e' at row 1")),
            "table d.t, key (`id` = 1)"
        );
        let two = vec![
            change(&t, Op::Create, None, Some((1, "a"))),
            change(&t, Op::Create, None, Some((3, "b"))),
        ];
        let all = super::plan(two.clone(), planning(1 << 20, false, false)).unwrap();
        assert_eq!(
            all[0].describe_rows(error_row("Column 'e' cannot be null")),
            "table d.t, one of 2 rows (keys (`id` = 1) to (`id` = 3))"
        );
        assert_eq!(all[0].describe_rows(Some(2)), "table d.t, key (`id` = 3)");
    }
}
