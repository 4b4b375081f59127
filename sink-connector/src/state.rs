//! What the sink has applied, stored at the destination itself, and the
//! one rule that says whether a record is already applied.
//!
//! The table `<state_database>.applied` holds, per topic partition, the next
//! Kafka offset to apply and, per GTID domain, the place in the source's
//! history of the last binlog record applied. It is updated in the same
//! transaction as the rows, so the destination and the record of what it
//! contains can never disagree: a crash before the commit loses both, a
//! crash after keeps both. On start the consumer is positioned from this
//! table; Kafka's committed offsets are only a hint for monitoring.
//!
//! ## Already applied
//! A record at an offset below the partition's next offset is applied. The
//! place in the history catches records the source sent twice (after its own
//! crash it resumes from its last stored position and sends again what the
//! broker may already have): such a record has new Kafka offsets but an old
//! place, at or before the last applied one of its domain, and is skipped.
//! The place is the transaction's GTID sequence number, then the rows
//! event's offset and the row's index ([`ChangeOrder`]), compared within its
//! GTID domain: unlike binlog file coordinates it does not start over when
//! the source's binlog files do (`RESET MASTER` with the GTID state kept,
//! another `log_bin` name), which would have every later change taken for
//! one already applied. When the GTIDs themselves start over (a plain
//! `RESET MASTER`), the source connector stops with an error instead of
//! sending them (`source-connector/src/binlog.rs`).
//!
//! Snapshot records are not compared: they are upserts of the row as it was
//! at the snapshot point, and the source never sends one after a binlog
//! change made later than that point (a resumed snapshot replays the binlog
//! up to its new point first, then reads on at that point).

use std::collections::{BTreeMap, HashMap};

use change_stream::event::{ChangeRecord, Op};
use change_stream::position::ChangeOrder;
use change_stream::table::quote_ident;
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::error::{from_mysql, SinkError};
use crate::sql::quote_str;

/// The place of a binlog record: its [`ChangeOrder`], then 0, or 1 for the
/// create half of an update that changed the key (which shares the place of
/// the delete half written just before it).
pub type RecordOrder = (ChangeOrder, u8);

pub fn record_order(record: &ChangeRecord) -> Option<RecordOrder> {
    record
        .source
        .change_order()
        .map(|o| (o, u8::from(record.op == Op::Create)))
}

/// The last binlog record applied on a partition, per GTID domain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied(BTreeMap<u32, RecordOrder>);

impl Applied {
    /// Whether the record at `order` is already applied: at or before the
    /// last one applied in its domain.
    pub fn covers(&self, order: &RecordOrder) -> bool {
        self.0
            .get(&order.0.domain)
            .is_some_and(|last| order <= last)
    }

    /// Records that the record at `order` is applied.
    pub fn advance(&mut self, order: RecordOrder) {
        self.0.insert(order.0.domain, order);
    }

    /// This, advanced by `order` when there is one.
    pub fn with(mut self, order: Option<RecordOrder>) -> Self {
        if let Some(o) = order {
            self.advance(o);
        }
        self
    }

    /// The stored form: `domain-seq:pos:row:rank` per domain, comma-separated.
    fn format(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .values()
                .map(|(o, rank)| format!("{o}:{rank}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    fn parse(s: &str) -> Option<Self> {
        let mut out = BTreeMap::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (order, rank) = part.rsplit_once(':')?;
            let order: ChangeOrder = order.parse().ok()?;
            out.insert(order.domain, (order, rank.parse().ok()?));
        }
        Some(Self(out))
    }
}

/// A topic partition.
pub type Partition = (String, i32);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionState {
    /// Offset of the next record to apply.
    pub next_offset: i64,
    /// The last binlog records applied.
    pub last: Applied,
}

pub async fn ensure_table(conn: &mut Conn, database: &str) -> Result<(), SinkError> {
    let db = quote_ident(database);
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .await
        .map_err(|e| from_mysql(&format!("cannot create the state database {database}"), e))?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {db}.`applied` (\
           `topic` VARCHAR(255) NOT NULL, \
           `kafka_partition` INT NOT NULL, \
           `next_offset` BIGINT NOT NULL, \
           `last_change` TEXT NULL COMMENT 'per GTID domain, domain-seq:pos:row:rank of the last binlog record applied', \
           `group_id` VARCHAR(255) NOT NULL, \
           `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           PRIMARY KEY (`topic`, `kafka_partition`)\
         ) ENGINE=InnoDB COMMENT='positions applied by the sink connector'"
    ))
    .await
    .map_err(|e| from_mysql("cannot create the state table", e))?;
    // A state table of an earlier version kept binlog coordinates, which
    // start over with the source's binlog files.
    let has_change: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'applied' AND COLUMN_NAME = 'last_change'",
            (database,),
        )
        .await
        .map_err(|e| from_mysql("cannot read the state table's columns", e))?;
    if has_change == Some(0) {
        conn.query_drop(format!(
            "ALTER TABLE {db}.`applied` ADD COLUMN `last_change` TEXT NULL"
        ))
        .await
        .map_err(|e| from_mysql("cannot add last_change to the state table", e))?;
    }
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {db}.`ddl_failures` (\
           `id` BIGINT AUTO_INCREMENT PRIMARY KEY, \
           `failed_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           `topic_prefix` VARCHAR(255) NOT NULL, \
           `source_position` VARCHAR(255) NOT NULL, \
           `default_database` VARCHAR(64) NOT NULL, \
           `statement` LONGTEXT NOT NULL, \
           `error` TEXT NOT NULL\
         ) ENGINE=InnoDB COMMENT='schema changes that failed at the destination'"
    ))
    .await
    .map_err(|e| from_mysql("cannot create the ddl_failures table", e))?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {db}.`conflicts` (\
           `id` BIGINT AUTO_INCREMENT PRIMARY KEY, \
           `detected_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           `topic_prefix` VARCHAR(255) NOT NULL, \
           `source_position` VARCHAR(255) NOT NULL COMMENT 'GTID of the change', \
           `table_name` VARCHAR(130) NOT NULL COMMENT 'at the destination', \
           `row_key` LONGTEXT NOT NULL COMMENT 'JSON', \
           `operation` CHAR(1) NOT NULL COMMENT 'c insert, u update, d delete', \
           `expected` LONGTEXT NOT NULL COMMENT 'JSON: the row an insert writes, the row an update or delete finds at the source', \
           `destination_row` LONGTEXT NULL COMMENT 'JSON: the destination row before the change; NULL when there was none', \
           `resolution` VARCHAR(16) NOT NULL COMMENT 'overwrite, ignore or fail', \
           KEY (`topic_prefix`, `id`)\
         ) ENGINE=InnoDB COMMENT='changes that found the destination row other than they expected'"
    ))
    .await
    .map_err(|e| from_mysql("cannot create the conflicts table", e))?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {db}.`ddl_journal` (\
           `topic_prefix` VARCHAR(255) NOT NULL PRIMARY KEY, \
           `change_id` VARCHAR(255) NOT NULL, \
           `objects_before` VARCHAR(16) NOT NULL COMMENT 'fingerprint of the objects it names, before it ran', \
           `started_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)\
         ) ENGINE=InnoDB COMMENT='the schema change the sink started and has not stored the position past'"
    ))
    .await
    .map_err(|e| from_mysql("cannot create the ddl_journal table", e))?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {db}.`deferred_indexes` (\
           `topic_prefix` VARCHAR(255) NOT NULL, \
           `table_schema` VARCHAR(64) NOT NULL, \
           `table_name` VARCHAR(64) NOT NULL, \
           `statement` LONGTEXT NOT NULL COMMENT 'adds the secondary indexes the table was created without', \
           `created_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           PRIMARY KEY (`topic_prefix`, `table_schema`, `table_name`)\
         ) ENGINE=InnoDB COMMENT='tables whose secondary indexes are added after their full synchronization'"
    ))
    .await
    .map_err(|e| from_mysql("cannot create the deferred_indexes table", e))?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {db}.`last_error` (\
           `topic_prefix` VARCHAR(255) NOT NULL, \
           `group_id` VARCHAR(255) NOT NULL, \
           `failed_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           `message` TEXT NOT NULL, \
           `resolved_at` TIMESTAMP(6) NULL COMMENT 'when the sink ran again', \
           PRIMARY KEY (`topic_prefix`, `group_id`)\
         ) ENGINE=InnoDB COMMENT='the error that last stopped the sink connector'"
    ))
    .await
    .map_err(|e| from_mysql("cannot create the last_error table", e))?;
    Ok(())
}

/// Records the error that stops the sink.
pub async fn record_last_error(
    conn: &mut Conn,
    database: &str,
    prefix: &str,
    group_id: &str,
    message: &str,
) -> Result<(), SinkError> {
    conn.exec_drop(
        format!(
            "REPLACE INTO {}.`last_error` (`topic_prefix`, `group_id`, `message`) VALUES (?, ?, ?)",
            quote_ident(database)
        ),
        (prefix, group_id, message),
    )
    .await
    .map_err(|e| from_mysql("cannot record the last error", e))
}

/// The error that last stopped the sink: (when, message, when it ran
/// again).
pub async fn last_error(
    conn: &mut Conn,
    database: &str,
    prefix: &str,
    group_id: &str,
) -> Result<Option<(String, String, Option<String>)>, SinkError> {
    conn.exec_first(
        format!(
            "SELECT DATE_FORMAT(`failed_at`, '%Y-%m-%dT%H:%i:%S.%fZ'), `message`, \
             DATE_FORMAT(`resolved_at`, '%Y-%m-%dT%H:%i:%S.%fZ') FROM {}.`last_error` \
             WHERE `topic_prefix` = ? AND `group_id` = ?",
            quote_ident(database)
        ),
        (prefix, group_id),
    )
    .await
    .map_err(|e| from_mysql("cannot read the last error", e))
}

/// Marks the last error as over: the sink runs again.
pub async fn resolve_last_error(
    conn: &mut Conn,
    database: &str,
    prefix: &str,
    group_id: &str,
) -> Result<(), SinkError> {
    conn.exec_drop(
        format!(
            "UPDATE {}.`last_error` SET `resolved_at` = CURRENT_TIMESTAMP(6) \
             WHERE `topic_prefix` = ? AND `group_id` = ? AND `resolved_at` IS NULL",
            quote_ident(database)
        ),
        (prefix, group_id),
    )
    .await
    .map_err(|e| from_mysql("cannot record the last error", e))
}

/// The statement recording a schema change that failed at the
/// destination (run with the position past it).
pub fn record_failure_sql(
    database: &str,
    prefix: &str,
    change: &change_stream::schema_change::SchemaChange,
    error: &str,
) -> String {
    format!(
        "INSERT INTO {}.`ddl_failures` (`topic_prefix`, `source_position`, `default_database`, `statement`, `error`) VALUES ({}, {}, {}, {}, {})",
        quote_ident(database),
        quote_str(prefix),
        quote_str(&format!("{} ({})", change.id(), change.source.gtid.as_deref().unwrap_or(""))),
        quote_str(&change.database),
        quote_str(change.ddl.as_deref().unwrap_or("")),
        quote_str(error),
    )
}

/// The failed schema changes of a prefix, oldest first: (when, position,
/// database, statement, error).
pub async fn failures(
    conn: &mut Conn,
    database: &str,
    prefix: &str,
) -> Result<Vec<(String, String, String, String, String)>, SinkError> {
    conn.exec(
        format!(
            "SELECT CAST(`failed_at` AS CHAR), `source_position`, `default_database`, `statement`, `error` \
             FROM {}.`ddl_failures` WHERE `topic_prefix` = ? ORDER BY `id`",
            quote_ident(database)
        ),
        (prefix,),
    )
    .await
    .map_err(|e| from_mysql("cannot read the failed schema changes", e))
}

pub async fn load(
    conn: &mut Conn,
    database: &str,
    prefix: &str,
) -> Result<HashMap<Partition, PartitionState>, SinkError> {
    let rows: Vec<(String, i32, i64, Option<String>)> = conn
        .exec(
            format!(
                "SELECT `topic`, `kafka_partition`, `next_offset`, `last_change` FROM {}.`applied` WHERE `topic` LIKE ?",
                quote_ident(database)
            ),
            (format!("{}.%", prefix.replace('_', "\\_").replace('%', "\\%")),),
        )
        .await
        .map_err(|e| from_mysql("cannot read the state table", e))?;
    Ok(rows
        .into_iter()
        .map(|(topic, partition, next_offset, last)| {
            (
                (topic, partition),
                PartitionState {
                    next_offset,
                    last: last.as_deref().and_then(Applied::parse).unwrap_or_default(),
                },
            )
        })
        .collect())
}

/// Forgets the position of `topic` (every partition).
pub async fn forget(conn: &mut Conn, database: &str, topic: &str) -> Result<(), SinkError> {
    conn.exec_drop(
        format!(
            "DELETE FROM {}.`applied` WHERE `topic` = ?",
            quote_ident(database)
        ),
        (topic,),
    )
    .await
    .map_err(|e| from_mysql("cannot update the state table", e))
}

/// The statement recording `changes` (run inside the batch's transaction).
pub fn save_sql(
    database: &str,
    group_id: &str,
    changes: &[(&Partition, &PartitionState)],
) -> String {
    let mut sql = format!(
        "INSERT INTO {}.`applied` (`topic`, `kafka_partition`, `next_offset`, `last_change`, `group_id`) VALUES ",
        quote_ident(database)
    );
    for (i, ((topic, partition), state)) in changes.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let last = state
            .last
            .format()
            .map_or_else(|| "NULL".to_string(), |o| quote_str(&o));
        sql.push_str(&format!(
            "({}, {partition}, {}, {last}, {})",
            quote_str(topic),
            state.next_offset,
            quote_str(group_id)
        ));
    }
    sql.push_str(
        " ON DUPLICATE KEY UPDATE `next_offset` = VALUES(`next_offset`), `last_change` = VALUES(`last_change`), \
         `group_id` = VALUES(`group_id`), `updated_at` = CURRENT_TIMESTAMP(6)",
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_is_per_domain_and_round_trips() {
        let o = |s: &str, rank| (s.parse::<ChangeOrder>().unwrap(), rank);
        let mut a = Applied::default();
        assert!(!a.covers(&o("0-5:100:0", 0)));
        a.advance(o("0-5:100:2", 0));
        a.advance(o("1-9:50:0", 1));
        assert!(a.covers(&o("0-5:100:2", 0)));
        assert!(a.covers(&o("0-4:9000:0", 0)));
        assert!(!a.covers(&o("0-5:100:2", 1)));
        // A later transaction at a smaller offset is not applied yet.
        assert!(!a.covers(&o("0-6:4:0", 0)));
        assert!(!a.covers(&o("2-1:4:0", 0)));
        assert!(a.covers(&o("1-9:50:0", 1)));
        let stored = a.format().unwrap();
        assert_eq!(stored, "0-5:100:2:0,1-9:50:0:1");
        assert_eq!(Applied::parse(&stored), Some(a));
        assert_eq!(Applied::parse("garbage"), None);
        // A value of the earlier coordinate form is not read as a place.
        assert_eq!(Applied::parse("3:1234:7:1"), None);
    }
}
