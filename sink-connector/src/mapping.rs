//! Names at the destination: databases, tables and columns renamed by
//! `[mapping]`. The mapping applies to the tables the sink creates, to
//! every row, and to replicated DDL, whose statement is rewritten (every
//! database, table and column name it uses, not just the first).
//!
//! Keys are the source's names: `databases = { shop = "shop_copy" }`,
//! `tables = { "shop.orders" = "orders_2024" }` (the new table name; the
//! database follows `databases`), `columns = { "shop.orders.amount" =
//! "total" }`. Column names compare case-insensitively, as in MariaDB.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use change_stream::ddl::{classify_in, pieces, Ddl, Piece, TableEffect};
use change_stream::table::{quote_ident, TableId, TableSchema};

use crate::error::SinkError;

#[derive(Debug, Default)]
pub struct Mapping {
    databases: HashMap<String, String>,
    tables: HashMap<TableId, String>,
    /// (database, table, lowercased column) -> new name.
    columns: HashMap<(String, String, String), String>,
    /// Mapped shapes, by the source shape they come from.
    shapes: std::sync::Mutex<HashMap<usize, Arc<TableSchema>>>,
}

/// Words after which a name is a table's.
const TABLE_KEYWORDS: [&str; 9] = [
    "TABLE",
    "TABLES",
    "INTO",
    "FROM",
    "JOIN",
    "REFERENCES",
    "LIKE",
    "ON",
    "UPDATE",
];

impl Mapping {
    /// From `[mapping]`; errors name the key.
    pub fn new(
        databases: &BTreeMap<String, String>,
        tables: &BTreeMap<String, String>,
        columns: &BTreeMap<String, String>,
    ) -> Result<Self, SinkError> {
        let bad = |key: &str, entry: &str, form: &str| SinkError::InvalidSetting {
            key: format!("mapping.{key}"),
            expected: format!("{form} = \"new name\""),
            actual: entry.to_string(),
        };
        let mut m = Mapping {
            databases: databases.clone().into_iter().collect(),
            ..Default::default()
        };
        for (k, v) in tables {
            let (d, t) = k
                .split_once('.')
                .ok_or_else(|| bad("tables", k, "\"database.table\""))?;
            m.tables.insert(TableId::new(d, t), v.clone());
        }
        for (k, v) in columns {
            let mut parts = k.splitn(3, '.');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(d), Some(t), Some(c)) if !c.is_empty() => {
                    m.columns
                        .insert((d.into(), t.into(), c.to_lowercase()), v.clone());
                }
                _ => return Err(bad("columns", k, "\"database.table.column\"")),
            }
        }
        for (key, names) in [
            ("databases", m.databases.values().collect::<Vec<_>>()),
            ("tables", m.tables.values().collect()),
            ("columns", m.columns.values().collect()),
        ] {
            if let Some(e) = names.iter().find(|n| n.is_empty()) {
                return Err(bad(key, e, "a non-empty name"));
            }
        }
        Ok(m)
    }

    pub fn is_empty(&self) -> bool {
        self.databases.is_empty() && self.tables.is_empty() && self.columns.is_empty()
    }

    pub fn database(&self, db: &str) -> String {
        self.databases
            .get(db)
            .cloned()
            .unwrap_or_else(|| db.to_string())
    }

    /// A table's name at the destination.
    pub fn table(&self, id: &TableId) -> TableId {
        TableId::new(
            self.database(&id.database),
            self.tables
                .get(id)
                .cloned()
                .unwrap_or_else(|| id.table.clone()),
        )
    }

    fn column_of(&self, id: &TableId, column: &str) -> Option<&String> {
        self.columns
            .get(&(id.database.clone(), id.table.clone(), column.to_lowercase()))
    }

    /// A table's shape at the destination: names mapped, its CREATE TABLE
    /// rewritten.
    pub fn schema(&self, t: &TableSchema) -> TableSchema {
        if self.is_empty() {
            return t.clone();
        }
        let mut out = t.clone();
        out.id = self.table(&t.id);
        for c in &mut out.columns {
            if let Some(n) = self.column_of(&t.id, &c.name) {
                c.name = n.clone();
            }
        }
        out.create_table = self.rewrite(&t.create_table, &t.id.database, false);
        out
    }

    /// [`Mapping::schema`] of a shared shape, cached.
    pub fn shape(&self, t: &Arc<TableSchema>) -> Arc<TableSchema> {
        if self.is_empty() {
            return t.clone();
        }
        let key = Arc::as_ptr(t) as usize;
        let mut shapes = self.shapes.lock().expect("not poisoned");
        shapes
            .entry(key)
            .or_insert_with(|| Arc::new(self.schema(t)))
            .clone()
    }

    /// A statement run at the source in `default_db`, with the source's
    /// names replaced by the destination's.
    pub fn rewrite(&self, sql: &str, default_db: &str, ansi_quotes: bool) -> String {
        if self.is_empty() {
            return sql.to_string();
        }
        let toks = pieces(sql, ansi_quotes);
        let ddl = classify_in(sql, default_db, ansi_quotes);
        let kind = ddl.kind().to_string();
        // Statements whose every name is a table.
        let all_tables = matches!(
            kind.as_str(),
            "DROP TABLE" | "RENAME TABLE" | "TRUNCATE TABLE"
        );
        // The table whose columns unqualified names are.
        let main: Option<TableId> = match &ddl {
            Ddl::Table { effects, .. } => effects.first().map(|e| match e {
                TableEffect::Created(t)
                | TableEffect::Altered(t)
                | TableEffect::Dropped(t)
                | TableEffect::Truncated(t) => t.clone(),
                TableEffect::Renamed { from, .. } => from.clone(),
            }),
            _ => None,
        };
        let word = |i: usize| -> Option<(&str, bool)> {
            match toks.get(i)? {
                Piece::Word { text, quoted, .. } => Some((text.as_str(), *quoted)),
                _ => None,
            }
        };
        let keyword = |i: usize| -> Option<String> {
            match word(i)? {
                (t, false) => Some(t.to_ascii_uppercase()),
                _ => None,
            }
        };
        let punct = |i: usize, c: char| matches!(toks.get(i), Some(Piece::Punct(p)) if *p == c);
        let mut edits: Vec<(usize, usize, String)> = Vec::new();
        let mut edit = |i: usize, new: &str| {
            if let Some(Piece::Word { start, end, .. }) = toks.get(i) {
                edits.push((*start, *end, quote_ident(new)));
            }
        };
        let mut ctx = main.clone();
        let mut depth = 0usize;
        let mut ctx_depth: Option<usize> = None;
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Piece::Punct('(') => depth += 1,
                Piece::Punct(')') => {
                    if ctx_depth == Some(depth) {
                        ctx = main.clone();
                        ctx_depth = None;
                    }
                    depth = depth.saturating_sub(1);
                }
                Piece::Word { text, quoted, .. } => {
                    let prev = i.checked_sub(1).and_then(&keyword);
                    let prev = prev.as_deref();
                    // CREATE / ALTER / DROP DATABASE name
                    let db_statement = matches!(
                        kind.as_str(),
                        "CREATE DATABASE" | "ALTER DATABASE" | "DROP DATABASE"
                    );
                    if db_statement
                        && (*quoted
                            || keyword(i).is_some_and(|k| {
                                ![
                                    "IF",
                                    "NOT",
                                    "EXISTS",
                                    "DATABASE",
                                    "SCHEMA",
                                    "CREATE",
                                    "ALTER",
                                    "DROP",
                                    "OR",
                                    "REPLACE",
                                    "CHARACTER",
                                    "SET",
                                    "DEFAULT",
                                    "COLLATE",
                                    "CHARSET",
                                    "COMMENT",
                                ]
                                .contains(&k.as_str())
                            }))
                        && matches!(prev, Some("DATABASE" | "SCHEMA" | "EXISTS"))
                    {
                        if let Some(n) = self.databases.get(text.as_str()) {
                            edit(i, n);
                        }
                        i += 1;
                        continue;
                    }
                    let table_position = all_tables
                        || prev.is_some_and(|p| TABLE_KEYWORDS.contains(&p))
                        || (prev == Some("TO")
                            && !i
                                .checked_sub(3)
                                .and_then(&keyword)
                                .is_some_and(|k| matches!(k.as_str(), "COLUMN" | "INDEX" | "KEY")));
                    if punct(i + 1, '.') && word(i + 2).is_some() {
                        let second = word(i + 2).expect("checked").0.to_string();
                        if punct(i + 3, '.') && word(i + 4).is_some() {
                            // database.table.column
                            let id = TableId::new(text.as_str(), second.as_str());
                            let column = word(i + 4).expect("checked").0.to_string();
                            self.edit_table(&id, i, i + 2, &mut edit);
                            if let Some(n) = self.column_of(&id, &column) {
                                edit(i + 4, n);
                            }
                            i += 5;
                            continue;
                        }
                        let as_table = TableId::new(text.as_str(), second.as_str());
                        if table_position
                            || self.databases.contains_key(text.as_str())
                            || self.tables.contains_key(&as_table)
                        {
                            // database.table
                            self.edit_table(&as_table, i, i + 2, &mut edit);
                            if prev == Some("REFERENCES") {
                                ctx = Some(as_table);
                                ctx_depth = Some(depth + 1);
                            }
                        } else if let Some(t) = ctx.as_ref() {
                            // table.column, or NEW.column / OLD.column
                            if let Some(n) = self.column_of(t, &second) {
                                edit(i + 2, n);
                            }
                            if let Some(n) = self.tables.get(t).filter(|_| text == &t.table) {
                                edit(i, n);
                            }
                        }
                        i += 3;
                        continue;
                    }
                    if table_position && (*quoted || !is_keyword(text)) {
                        let id = TableId::new(default_db, text.as_str());
                        if let Some(n) = self.tables.get(&id) {
                            edit(i, n);
                        }
                        if prev == Some("REFERENCES") {
                            ctx = Some(id);
                            ctx_depth = Some(depth + 1);
                        }
                    } else if let Some(n) = ctx.as_ref().and_then(|t| self.column_of(t, text)) {
                        edit(i, n);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        apply_edits(sql, edits)
    }

    /// Maps the `database`.`table` words at `db_at` and `table_at`.
    fn edit_table(
        &self,
        id: &TableId,
        db_at: usize,
        table_at: usize,
        edit: &mut impl FnMut(usize, &str),
    ) {
        if let Some(d) = self.databases.get(&id.database) {
            edit(db_at, d);
        }
        if let Some(t) = self.tables.get(id) {
            edit(table_at, t);
        }
    }
}

/// Unquoted words that are never names here.
fn is_keyword(w: &str) -> bool {
    const WORDS: [&str; 12] = [
        "IF", "NOT", "EXISTS", "CASCADE", "RESTRICT", "SET", "NULL", "NO", "ACTION", "SELECT",
        "WAIT", "NOWAIT",
    ];
    WORDS.iter().any(|k| k.eq_ignore_ascii_case(w))
}

fn apply_edits(sql: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|e| e.0);
    edits.dedup_by_key(|e| e.0);
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut at = 0;
    for (start, end, text) in edits {
        if start < at {
            continue;
        }
        out.extend(&chars[at..start]);
        out.push_str(&text);
        at = end;
    }
    out.extend(&chars[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        let m = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        Mapping::new(
            &m(&[("shop", "shop_copy")]),
            &m(&[("shop.orders", "orders_v2"), ("shop.customers", "clients")]),
            &m(&[
                ("shop.orders.amount", "total"),
                ("shop.customers.id", "client_id"),
            ]),
        )
        .unwrap()
    }

    /// The managed service caps a task at 1,000 mapped tables; here the
    /// mapping is a hash map with no cap.
    #[test]
    fn maps_many_tables() {
        let tables: BTreeMap<String, String> = (0..20_000)
            .map(|i| (format!("shop.t{i}"), format!("copy_{i}")))
            .collect();
        let m = Mapping::new(&BTreeMap::new(), &tables, &BTreeMap::new()).unwrap();
        for i in [0, 999, 1_000, 19_999] {
            assert_eq!(
                m.rewrite(&format!("TRUNCATE TABLE t{i}"), "shop", false),
                format!("TRUNCATE TABLE `copy_{i}`")
            );
        }
        assert_eq!(
            m.rewrite("TRUNCATE TABLE t20000", "shop", false),
            "TRUNCATE TABLE t20000"
        );
    }

    #[test]
    fn rewrites_ddl() {
        let m = mapping();
        let r = |sql: &str| m.rewrite(sql, "shop", false);
        assert_eq!(
            r("ALTER TABLE orders ADD COLUMN note TEXT AFTER amount, ADD INDEX ix (amount)"),
            "ALTER TABLE `orders_v2` ADD COLUMN note TEXT AFTER `total`, ADD INDEX ix (`total`)"
        );
        assert_eq!(
            r("ALTER TABLE `shop`.`orders` CHANGE amount amount DECIMAL(12,2), RENAME COLUMN note TO amount"),
            "ALTER TABLE `shop_copy`.`orders_v2` CHANGE `total` `total` DECIMAL(12,2), RENAME COLUMN note TO `total`"
        );
        assert_eq!(
            r("RENAME TABLE orders TO orders_old, shop.customers TO people"),
            "RENAME TABLE `orders_v2` TO orders_old, `shop_copy`.`clients` TO people"
        );
        assert_eq!(
            r("CREATE TABLE `lines` (\n  `id` int(11) NOT NULL,\n  `order_id` int,\n  CONSTRAINT `fk` FOREIGN KEY (`order_id`) REFERENCES `customers` (`id`)\n)"),
            "CREATE TABLE `lines` (\n  `id` int(11) NOT NULL,\n  `order_id` int,\n  CONSTRAINT `fk` FOREIGN KEY (`order_id`) REFERENCES `clients` (`client_id`)\n)"
        );
        assert_eq!(
            r("DROP TABLE IF EXISTS orders, other"),
            "DROP TABLE IF EXISTS `orders_v2`, other"
        );
        assert_eq!(r("TRUNCATE orders"), "TRUNCATE `orders_v2`");
        assert_eq!(
            r("CREATE INDEX ix ON orders (amount)"),
            "CREATE INDEX ix ON `orders_v2` (`total`)"
        );
        assert_eq!(
            r("DROP DATABASE IF EXISTS shop"),
            "DROP DATABASE IF EXISTS `shop_copy`"
        );
        assert_eq!(
            r("CREATE VIEW v AS SELECT o.amount FROM shop.orders o JOIN customers c"),
            "CREATE VIEW v AS SELECT o.amount FROM `shop_copy`.`orders_v2` o JOIN `clients` c"
        );
        // Strings are left alone.
        assert_eq!(
            r("ALTER TABLE orders COMMENT 'amount'"),
            "ALTER TABLE `orders_v2` COMMENT 'amount'"
        );
    }

    #[test]
    fn maps_shapes() {
        let m = mapping();
        assert_eq!(
            m.table(&TableId::new("shop", "orders")),
            TableId::new("shop_copy", "orders_v2")
        );
        assert_eq!(
            m.table(&TableId::new("shop", "x")),
            TableId::new("shop_copy", "x")
        );
        assert_eq!(m.table(&TableId::new("crm", "x")), TableId::new("crm", "x"));
        let bad = Mapping::new(
            &BTreeMap::new(),
            &[("orders".to_string(), "x".to_string())]
                .into_iter()
                .collect(),
            &BTreeMap::new(),
        );
        assert!(bad.unwrap_err().to_string().contains("mapping.tables"));
    }
}
