//! What the sink has applied, stored at the destination itself.
//!
//! The table `<state_database>.applied` holds, per topic partition, the next
//! Kafka offset to apply and the source coordinates of the last binlog
//! record applied. It is updated in the same transaction as the rows, so the
//! destination and the record of what it contains can never disagree: a
//! crash before the commit loses both, a crash after keeps both. On start
//! the consumer is positioned from this table; Kafka's committed offsets are
//! only a hint for monitoring.
//!
//! The source coordinates catch records the source sent twice (after its own
//! crash it resumes from its last stored position and sends again what the
//! broker may already have): such a record has new Kafka offsets but old
//! coordinates, at or before the last applied ones, and is skipped. Snapshot
//! records are not compared: they are upserts of the row as it was at the
//! snapshot point, and the source never sends one after a binlog change made
//! later than that point (a resumed snapshot replays the binlog up to its new
//! point first, then reads on at that point).

use std::collections::HashMap;

use change_stream::event::{ChangeRecord, Op};
use change_stream::position::EventOrder;
use change_stream::table::quote_ident;
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::error::{from_mysql, SinkError};
use crate::sql::quote_str;

/// The order of a binlog record: its coordinates, then 0, or 1 for the
/// create half of an update that changed the key (which shares the
/// coordinates of the delete half written just before it).
pub type RecordOrder = (EventOrder, u8);

pub fn record_order(record: &ChangeRecord) -> Option<RecordOrder> {
    record
        .source
        .event_order()
        .map(|o| (o, u8::from(record.op == Op::Create)))
}

fn format_order((o, rank): &RecordOrder) -> String {
    format!("{o}:{rank}")
}

fn parse_order(s: &str) -> Option<RecordOrder> {
    let (order, rank) = s.rsplit_once(':')?;
    Some((order.parse().ok()?, rank.parse().ok()?))
}

/// A topic partition.
pub type Partition = (String, i32);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionState {
    /// Offset of the next record to apply.
    pub next_offset: i64,
    /// The last binlog record applied.
    pub last: Option<RecordOrder>,
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
           `last_event` VARCHAR(100) NULL COMMENT 'file_seq:pos:row:rank of the last binlog record applied', \
           `group_id` VARCHAR(255) NOT NULL, \
           `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           PRIMARY KEY (`topic`, `kafka_partition`)\
         ) ENGINE=InnoDB COMMENT='positions applied by the sink connector'"
    ))
    .await
    .map_err(|e| from_mysql("cannot create the state table", e))?;
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
    Ok(())
}

/// Records a schema change that failed at the destination.
pub async fn record_failure(
    conn: &mut Conn,
    database: &str,
    prefix: &str,
    change: &change_stream::schema_change::SchemaChange,
    error: &str,
) -> Result<(), SinkError> {
    conn.exec_drop(
        format!(
            "INSERT INTO {}.`ddl_failures` (`topic_prefix`, `source_position`, `default_database`, `statement`, `error`) VALUES (?, ?, ?, ?, ?)",
            quote_ident(database)
        ),
        (
            prefix,
            format!("{} ({})", change.id(), change.source.gtid.as_deref().unwrap_or("")),
            change.database.as_str(),
            change.ddl.as_deref().unwrap_or(""),
            error,
        ),
    )
    .await
    .map_err(|e| from_mysql("cannot record a failed schema change", e))
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
                "SELECT `topic`, `kafka_partition`, `next_offset`, `last_event` FROM {}.`applied` WHERE `topic` LIKE ?",
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
                    last: last.as_deref().and_then(parse_order),
                },
            )
        })
        .collect())
}

/// The statement recording `changes` (run inside the batch's transaction).
pub fn save_sql(
    database: &str,
    group_id: &str,
    changes: &[(&Partition, &PartitionState)],
) -> String {
    let mut sql = format!(
        "INSERT INTO {}.`applied` (`topic`, `kafka_partition`, `next_offset`, `last_event`, `group_id`) VALUES ",
        quote_ident(database)
    );
    for (i, ((topic, partition), state)) in changes.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let last = state
            .last
            .as_ref()
            .map_or_else(|| "NULL".to_string(), |o| quote_str(&format_order(o)));
        sql.push_str(&format!(
            "({}, {partition}, {}, {last}, {})",
            quote_str(topic),
            state.next_offset,
            quote_str(group_id)
        ));
    }
    sql.push_str(
        " ON DUPLICATE KEY UPDATE `next_offset` = VALUES(`next_offset`), `last_event` = VALUES(`last_event`), \
         `group_id` = VALUES(`group_id`), `updated_at` = CURRENT_TIMESTAMP(6)",
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_round_trip() {
        let o = (
            EventOrder {
                file_seq: 3,
                pos: 1234,
                row: 7,
            },
            1,
        );
        assert_eq!(parse_order(&format_order(&o)), Some(o));
        assert_eq!(parse_order("garbage"), None);
    }
}
