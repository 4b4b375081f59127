//! Which databases, tables and columns are synchronized.
//!
//! `[source]` lists, each entry a name or a pattern (`*` any run of
//! characters, `?` one character; database and table names match
//! case-sensitively, column names not):
//! - `databases` / `exclude_databases`: whole databases (every table, and
//!   their views, routines and triggers, and CREATE/DROP DATABASE);
//! - `tables` / `exclude_tables`: single tables, as `database.table`;
//! - `columns` / `exclude_columns`: as `database.table.column`; a table
//!   named by a `columns` entry keeps only the columns those entries name.
//!
//! A table is selected when its database is, or it is named in `tables`,
//! and it is not excluded. Excluded columns never reach Kafka: the table's
//! definition, its Avro schema, the snapshot query and every binlog row
//! leave them out. Key columns cannot be excluded.

use change_stream::table::{glob, TableId, TableSchema};

use crate::error::SourceError;

/// `a.b.c` split on the first `n - 1` dots (backquotes allow dots in a
/// name: `` `my.db`.t ``).
fn split(entry: &str, n: usize) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in entry.chars() {
        match c {
            '`' => quoted = !quoted,
            '.' if !quoted && parts.len() < n - 1 => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    (parts.len() == n && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

/// The selection, from `[source]`.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    databases: Vec<String>,
    exclude_databases: Vec<String>,
    tables: Vec<(String, String)>,
    exclude_tables: Vec<(String, String)>,
    columns: Vec<(String, String, String)>,
    exclude_columns: Vec<(String, String, String)>,
    /// (database, table) patterns and their WHERE condition.
    row_filters: Vec<(String, String, String)>,
}

impl Selection {
    /// Parses the lists; errors name the key and the entry.
    pub fn new(
        databases: &[String],
        exclude_databases: &[String],
        tables: &[String],
        exclude_tables: &[String],
        columns: &[String],
        exclude_columns: &[String],
    ) -> Result<Self, SourceError> {
        let bad = |key: &str, entry: &str, form: &str| SourceError::InvalidSetting {
            key: format!("source.{key}"),
            expected: format!("entries of the form {form} (names or * ? patterns)"),
            actual: format!("{entry:?}"),
        };
        let parts = |key: &str, list: &[String], n: usize, form: &str| {
            list.iter()
                .map(|e| split(e, n).ok_or_else(|| bad(key, e, form)))
                .collect::<Result<Vec<_>, _>>()
        };
        let pairs = |key: &str, list: &[String]| -> Result<Vec<(String, String)>, SourceError> {
            Ok(parts(key, list, 2, "database.table")?
                .into_iter()
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect())
        };
        let triples =
            |key: &str, list: &[String]| -> Result<Vec<(String, String, String)>, SourceError> {
                Ok(parts(key, list, 3, "database.table.column")?
                    .into_iter()
                    .map(|p| (p[0].clone(), p[1].clone(), p[2].clone()))
                    .collect())
            };
        for (key, list) in [
            ("databases", databases),
            ("exclude_databases", exclude_databases),
        ] {
            if let Some(e) = list.iter().find(|d| d.is_empty()) {
                return Err(bad(key, e, "database"));
            }
        }
        if databases.is_empty() && tables.is_empty() {
            return Err(SourceError::InvalidSetting {
                key: "source.databases".into(),
                expected: "at least one database (or source.tables)".into(),
                actual: "none".into(),
            });
        }
        Ok(Self {
            databases: databases.to_vec(),
            exclude_databases: exclude_databases.to_vec(),
            tables: pairs("tables", tables)?,
            exclude_tables: pairs("exclude_tables", exclude_tables)?,
            columns: triples("columns", columns)?,
            exclude_columns: triples("exclude_columns", exclude_columns)?,
            row_filters: Vec::new(),
        })
    }

    /// A selection of whole databases by name.
    pub fn databases(databases: &[String]) -> Self {
        Self {
            databases: databases.to_vec(),
            ..Default::default()
        }
    }

    fn database_excluded(&self, db: &str) -> bool {
        self.exclude_databases.iter().any(|p| glob(p, db, false))
    }

    /// Whether `db` is selected whole (its objects and CREATE/DROP
    /// DATABASE are synchronized too).
    pub fn whole_database(&self, db: &str) -> bool {
        !self.database_excluded(db) && self.databases.iter().any(|p| glob(p, db, false))
    }

    /// Adds `[[source.row_filter]]` entries: `database.table` patterns
    /// and a condition (checked for syntax here).
    pub fn with_row_filters(
        mut self,
        filters: &[(Vec<String>, String)],
    ) -> Result<Self, SourceError> {
        for (i, (tables, condition)) in filters.iter().enumerate() {
            crate::filter::parse(condition).map_err(|e| SourceError::InvalidSetting {
                key: format!("source.row_filter[{i}].where"),
                expected: "a condition in SQL syntax".into(),
                actual: format!("{condition:?} ({e})"),
            })?;
            for t in tables {
                let p = split(t, 2).ok_or_else(|| SourceError::InvalidSetting {
                    key: format!("source.row_filter[{i}].tables"),
                    expected: "database.table names or patterns".into(),
                    actual: format!("{t:?}"),
                })?;
                self.row_filters
                    .push((p[0].clone(), p[1].clone(), condition.clone()));
            }
        }
        Ok(self)
    }

    /// The WHERE condition of a table (the first filter naming it).
    pub fn row_filter(&self, id: &TableId) -> Option<&str> {
        self.row_filters
            .iter()
            .find(|(d, t, _)| glob(d, &id.database, false) && glob(t, &id.table, false))
            .map(|(_, _, c)| c.as_str())
    }

    /// Whether `db` is named exactly (not by a pattern) in `databases` or
    /// `tables`.
    pub fn named(&self, db: &str) -> bool {
        self.databases.iter().any(|d| d == db) || self.tables.iter().any(|(d, _)| d == db)
    }

    /// Whether some table of `db` may be selected.
    pub fn database(&self, db: &str) -> bool {
        !self.database_excluded(db)
            && (self.whole_database(db) || self.tables.iter().any(|(d, _)| glob(d, db, false)))
    }

    /// Whether the table is synchronized.
    pub fn table(&self, id: &TableId) -> bool {
        let (db, t) = (id.database.as_str(), id.table.as_str());
        self.database(db)
            && (self.whole_database(db)
                || self
                    .tables
                    .iter()
                    .any(|(pd, pt)| glob(pd, db, false) && glob(pt, t, false)))
            && !self
                .exclude_tables
                .iter()
                .any(|(pd, pt)| glob(pd, db, false) && glob(pt, t, false))
    }

    /// Whether a `columns` entry names this column.
    pub fn column_listed(&self, id: &TableId, column: &str) -> bool {
        self.columns.iter().any(|(d, t, c)| {
            glob(d, &id.database, false) && glob(t, &id.table, false) && glob(c, column, true)
        })
    }

    /// Whether a column of a selected table is synchronized.
    pub fn column(&self, id: &TableId, column: &str) -> bool {
        let on_table = |(d, t, _): &&(String, String, String)| {
            glob(d, &id.database, false) && glob(t, &id.table, false)
        };
        let named = |(_, _, c): &&(String, String, String)| glob(c, column, true);
        let listed: Vec<&(String, String, String)> = self.columns.iter().filter(on_table).collect();
        (listed.is_empty() || listed.iter().any(named))
            && !self
                .exclude_columns
                .iter()
                .filter(on_table)
                .any(|e| named(&e))
    }

    /// The table as synchronized: without its excluded columns (also in
    /// its CREATE TABLE), and the indexes of the kept columns, or `None`
    /// when all are kept. A key column cannot be excluded.
    pub fn project(
        &self,
        table: TableSchema,
    ) -> Result<(TableSchema, Option<Vec<usize>>), SourceError> {
        let mut kept: Vec<usize> = (0..table.columns.len())
            .filter(|&i| self.column(&table.id, &table.columns[i].name))
            .collect();
        // A generated column computed from an excluded one goes too: its
        // value would give the excluded one away.
        let excluded = |i: &usize| !kept.contains(i);
        let removed_names: Vec<String> = (0..table.columns.len())
            .filter(excluded)
            .map(|i| format!("`{}`", table.columns[i].name.replace('`', "``")))
            .collect();
        kept.retain(|&i| {
            table.columns[i].generated.as_ref().is_none_or(|g| {
                !removed_names
                    .iter()
                    .any(|n| g.expression.contains(n.as_str()))
            })
        });
        if kept.len() == table.columns.len() {
            return Ok((table, None));
        }
        if let Some(&k) = table.key.iter().find(|k| !kept.contains(k)) {
            return Err(SourceError::Config {
                message: format!(
                    "column `{}` of {} is part of its key and cannot be excluded; fix [source] columns / exclude_columns",
                    table.columns[k].name, table.id
                ),
            });
        }
        let removed: Vec<String> = (0..table.columns.len())
            .filter(|i| !kept.contains(i))
            .map(|i| table.columns[i].name.clone())
            .collect();
        let key = table
            .key
            .iter()
            .map(|k| kept.iter().position(|i| i == k).expect("key kept"))
            .collect();
        let create_table = strip_columns(&table.create_table, &removed);
        let columns = kept.iter().map(|&i| table.columns[i].clone()).collect();
        Ok((
            TableSchema {
                id: table.id,
                columns,
                key,
                key_kind: table.key_kind,
                create_table,
            },
            Some(kept),
        ))
    }
}

/// `SHOW CREATE TABLE` text without the named columns, and without the
/// indexes, constraints and generated columns that mention them.
pub fn strip_columns(create: &str, removed: &[String]) -> String {
    let (Some(open), Some(close)) = (create.find("(\n"), create.rfind("\n)")) else {
        return create.to_string();
    };
    let quoted: Vec<String> = removed
        .iter()
        .map(|c| format!("`{}`", c.replace('`', "``")))
        .collect();
    let body: Vec<&str> = create[open + 2..close]
        .split('\n')
        .filter(|line| {
            let l = line.trim_start();
            !quoted.iter().any(|q| l.starts_with(q.as_str()) || (!l.starts_with('`') && l.contains(q.as_str()))
                // A generated column computed from a removed one.
                || (l.starts_with('`') && (l.contains(" AS (") || l.contains(" GENERATED ")) && l.contains(q.as_str())))
        })
        .map(|l| l.trim_end_matches(','))
        .collect();
    format!(
        "{}{}{}",
        &create[..open + 2],
        body.join(",\n"),
        &create[close..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn t(db: &str, name: &str) -> TableId {
        TableId::new(db, name)
    }

    #[test]
    fn tables_and_databases() {
        let s = Selection::new(
            &list(&["shop", "crm_*"]),
            &list(&["crm_old"]),
            &list(&["sales.orders", "sales.order_*"]),
            &list(&["shop.tmp_*"]),
            &[],
            &[],
        )
        .unwrap();
        assert!(s.table(&t("shop", "customers")));
        assert!(!s.table(&t("shop", "tmp_1")));
        assert!(s.table(&t("crm_eu", "x")));
        assert!(!s.table(&t("crm_old", "x")));
        assert!(s.table(&t("sales", "orders")) && s.table(&t("sales", "order_lines")));
        assert!(!s.table(&t("sales", "invoices")));
        assert!(
            !s.table(&t("Shop", "customers")),
            "database names match case-sensitively"
        );
        assert!(s.whole_database("shop") && !s.whole_database("sales") && s.database("sales"));
        assert!(!s.database("other"));
    }

    #[test]
    fn columns() {
        let s = Selection::new(
            &list(&["crm"]),
            &[],
            &[],
            &[],
            &list(&["crm.people.id", "crm.people.name*"]),
            &list(&["*.*.password_hash", "crm.customers.ssn"]),
        )
        .unwrap();
        let people = t("crm", "people");
        assert!(s.column(&people, "id") && s.column(&people, "NAME_first"));
        assert!(!s.column(&people, "email"));
        assert!(!s.column(&t("crm", "customers"), "SSN"));
        assert!(s.column(&t("crm", "customers"), "email"));
        assert!(!s.column(&t("crm", "users"), "password_hash"));
    }

    #[test]
    fn bad_entries() {
        let e = Selection::new(&list(&["shop"]), &[], &list(&["orders"]), &[], &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("source.tables") && e.contains("database.table"),
            "{e}"
        );
        let e = Selection::new(&[], &[], &[], &[], &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.databases"), "{e}");
        assert!(split("`my.db`.t", 2) == Some(vec!["my.db".into(), "t".into()]));
    }

    #[test]
    fn strips_columns_from_create_table() {
        let create = "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `ssn` varchar(11) DEFAULT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  `ssn4` varchar(4) GENERATED ALWAYS AS (right(`ssn`,4)) VIRTUAL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u_ssn` (`ssn`),\n  KEY `ix_name` (`name`),\n  CONSTRAINT `chk_ssn` CHECK (`ssn` <> '')\n) ENGINE=InnoDB";
        assert_eq!(
            strip_columns(create, &["ssn".into()]),
            "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `ix_name` (`name`)\n) ENGINE=InnoDB"
        );
    }
}
