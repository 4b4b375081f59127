//! Secondary indexes after the full synchronization.
//!
//! Loading rows into a table keeps every index up to date row by row; a
//! secondary index whose order is not the key's (sysbench's `k`, a name,
//! a date) costs a random B-tree insert per row. Built once the rows are
//! in, InnoDB sorts the index and writes it in order instead: in this
//! project's benchmark a fifth less of the destination server's time for a
//! table loaded with its one secondary index after the load, index build
//! included (myloader's `--optimize-keys` does the same).
//!
//! So a table the sink creates from the definition the source read at the
//! start of a full synchronization is created without its non-unique
//! secondary indexes (`schema.secondary_indexes = "after_full_sync"`),
//! and gets them from one `ALTER TABLE ... ADD KEY ...` at the source's
//! `SNAPSHOT DONE` schema change, which follows the table's last snapshot
//! row.
//! Unique keys stay (they decide which rows a load replaces or keeps), and
//! so does every index of a table with foreign keys (InnoDB would make an
//! index of its own for a constraint whose index is missing).
//!
//! The statement that adds them is recorded in
//! `<state_database>.deferred_indexes` *before* the table is created, and
//! deleted once it has run, so a crash anywhere leaves either no table, or
//! a table and its record: a restart creates the table again, or runs the
//! statement at `SNAPSHOT DONE` (an index that exists already, from a run that
//! ended before the record was deleted, counts as added). A schema change
//! on such a table before its `SNAPSHOT DONE` (the stream's DDL) first adds the
//! indexes, so that the statement meets the table as the source had it.

use change_stream::table::{quote_ident, TableId, TableSchema};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::error::{from_mysql, SinkError};
use crate::sql::quote_str;

/// A table's definition split for loading.
#[derive(Debug, PartialEq, Eq)]
pub struct Deferred {
    /// `CREATE TABLE` without the deferred indexes.
    pub create: String,
    /// `ALTER TABLE <db>.<table> ADD KEY ..., ADD KEY ...`.
    pub add: String,
}

/// The definition without its non-unique secondary indexes, when it has
/// some that can wait; `None` otherwise.
pub fn split(table: &TableSchema) -> Option<Deferred> {
    let create = &table.create_table;
    // SHOW CREATE TABLE: one item per line, between "(\n" and "\n)".
    let open = create.find("(\n")? + 2;
    let close = open + create[open..].find("\n)")?;
    let items: Vec<&str> = create[open..close].split(",\n").collect();
    if items
        .iter()
        .any(|i| i.contains("FOREIGN KEY") || i.trim_start().starts_with("CONSTRAINT"))
    {
        return None;
    }
    let (later, now): (Vec<&str>, Vec<&str>) =
        items.into_iter().partition(|i| i.starts_with("  KEY `"));
    if later.is_empty() || now.is_empty() {
        return None;
    }
    Some(Deferred {
        create: format!("{}{}{}", &create[..open], now.join(",\n"), &create[close..]),
        add: format!(
            "ALTER TABLE {}.{} {}",
            quote_ident(&table.id.database),
            quote_ident(&table.id.table),
            later
                .iter()
                .map(|i| format!("ADD {}", i.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Records what to add later, then creates the table without it (the
/// caller knows the table is missing). `Ok(false)` when the table has
/// nothing to put off (it is not created here then).
pub async fn create_deferring(
    conn: &mut Conn,
    state_db: &str,
    prefix: &str,
    table: &TableSchema,
) -> Result<bool, SinkError> {
    let Some(deferred) = split(table) else {
        return Ok(false);
    };
    conn.query_drop(format!(
        "REPLACE INTO {}.`deferred_indexes` (`topic_prefix`, `table_schema`, `table_name`, `statement`) VALUES ({}, {}, {}, {})",
        quote_ident(state_db),
        quote_str(prefix),
        quote_str(&table.id.database),
        quote_str(&table.id.table),
        quote_str(&deferred.add)
    ))
    .await
    .map_err(|e| from_mysql("cannot record the indexes put off", e))?;
    crate::ddl::create_table(conn, &table.id, &deferred.create).await?;
    tracing::info!(table = %table.id, "created table at the destination; its secondary indexes follow its full synchronization (schema.secondary_indexes)");
    Ok(true)
}

/// Adds the indexes put off for `table` (a destination name), if any.
pub async fn restore(
    conn: &mut Conn,
    state_db: &str,
    prefix: &str,
    table: &TableId,
) -> Result<(), SinkError> {
    let Some(add) = recorded(conn, state_db, prefix, table).await? else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    match conn.query_drop(add.as_str()).await {
        Ok(()) => {
            tracing::info!(table = %table, seconds = started.elapsed().as_secs_f64(), "secondary indexes added after the full synchronization")
        }
        // Added by a run that ended before it could say so.
        Err(mysql_async::Error::Server(e)) if e.code == 1061 => {}
        // The table or a column is gone (dropped with its database, say):
        // nothing to add them to.
        Err(mysql_async::Error::Server(e)) if e.code == 1146 || e.code == 1072 => {
            tracing::warn!(table = %table, error = %e.message, statement = %add, "secondary indexes put off for the full synchronization could not be added; forgotten")
        }
        Err(e) => {
            return Err(from_mysql(
                &format!("cannot add the secondary indexes of {table} ({add})"),
                e,
            ))
        }
    }
    forget(conn, state_db, prefix, table).await
}

/// Forgets the indexes put off for `table` (dropped).
pub async fn forget(
    conn: &mut Conn,
    state_db: &str,
    prefix: &str,
    table: &TableId,
) -> Result<(), SinkError> {
    conn.exec_drop(
        format!(
            "DELETE FROM {}.`deferred_indexes` WHERE `topic_prefix` = ? AND `table_schema` = ? AND `table_name` = ?",
            quote_ident(state_db)
        ),
        (prefix, table.database.as_str(), table.table.as_str()),
    )
    .await
    .map_err(|e| from_mysql("cannot update deferred_indexes", e))
}

async fn recorded(
    conn: &mut Conn,
    state_db: &str,
    prefix: &str,
    table: &TableId,
) -> Result<Option<String>, SinkError> {
    conn.exec_first(
        format!(
            "SELECT `statement` FROM {}.`deferred_indexes` WHERE `topic_prefix` = ? AND `table_schema` = ? AND `table_name` = ?",
            quote_ident(state_db)
        ),
        (prefix, table.database.as_str(), table.table.as_str()),
    )
    .await
    .map_err(|e| from_mysql("cannot read deferred_indexes", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(create: &str) -> TableSchema {
        TableSchema {
            id: TableId::new("shop", "t"),
            columns: Vec::new(),
            key: Vec::new(),
            key_kind: change_stream::table::KeyKind::Primary,
            create_table: create.to_string(),
        }
    }

    #[test]
    fn non_unique_indexes_wait_and_the_rest_stays() {
        let t = table(
            "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `k` int(11) NOT NULL DEFAULT 0,\n  `c` char(120) NOT NULL DEFAULT '',\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `c` (`c`),\n  KEY `k_1` (`k`),\n  KEY `kc` (`k`,`c`(10)) COMMENT 'x, y'\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        );
        let d = split(&t).unwrap();
        assert_eq!(
            d.create,
            "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `k` int(11) NOT NULL DEFAULT 0,\n  `c` char(120) NOT NULL DEFAULT '',\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `c` (`c`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
        assert_eq!(
            d.add,
            "ALTER TABLE `shop`.`t` ADD KEY `k_1` (`k`), ADD KEY `kc` (`k`,`c`(10)) COMMENT 'x, y'"
        );
    }

    #[test]
    fn nothing_waits_without_secondary_indexes_or_with_foreign_keys() {
        let plain =
            "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        assert_eq!(split(&table(plain)), None);
        let fk = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `p` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `p` (`p`),\n  CONSTRAINT `t_ibfk_1` FOREIGN KEY (`p`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB";
        assert_eq!(split(&table(fk)), None);
        // FULLTEXT and SPATIAL indexes are built as they are.
        let ft = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `b` text,\n  PRIMARY KEY (`id`),\n  FULLTEXT KEY `b` (`b`)\n) ENGINE=InnoDB";
        assert_eq!(split(&table(ft)), None);
        // Partitioned: the partitioning clause follows the closing line.
        let part = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `k` int(11) NOT NULL,\n  PRIMARY KEY (`id`),\n  KEY `k` (`k`)\n) ENGINE=InnoDB\n PARTITION BY HASH (`id`)\nPARTITIONS 4";
        let d = split(&table(part)).unwrap();
        assert!(
            d.create.ends_with(
                "PRIMARY KEY (`id`)\n) ENGINE=InnoDB\n PARTITION BY HASH (`id`)\nPARTITIONS 4"
            ),
            "{}",
            d.create
        );
    }
}
