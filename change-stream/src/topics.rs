//! Topic names. One topic per table, `<prefix>.<database>.<table>`, plus
//! four topics of the prefix's own:
//! - `<prefix>.schemas`: every Avro schema used, keyed by its fingerprint
//!   (compacted);
//! - `<prefix>.schema-changes`: the definition of each table, as it was when
//!   the source first read it or after it changed (kept forever);
//! - `<prefix>.positions`: where the source connector has got to
//!   (compacted);
//! - `<prefix>.transaction`: the BEGIN and END of each source transaction,
//!   in commit order.
//!
//! Kafka allows `[A-Za-z0-9._-]` in topic names; any other character of a
//! database or table name, and `.` itself, becomes `_`, so that a table
//! topic always has exactly two components after the prefix. Consumers never
//! parse database and table names out of topic names: every record carries
//! them in its `source` block.

use crate::Error;

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

/// The topic of one table's changes.
pub fn table_topic(prefix: &str, database: &str, table: &str) -> String {
    format!("{prefix}.{}.{}", sanitize(database), sanitize(table))
}

/// The compacted topic holding every schema by fingerprint.
pub fn schemas_topic(prefix: &str) -> String {
    format!("{prefix}.schemas")
}

/// The topic holding table definitions and their changes.
pub fn schema_changes_topic(prefix: &str) -> String {
    format!("{prefix}.schema-changes")
}

/// The compacted topic holding the source connector's position.
pub fn positions_topic(prefix: &str) -> String {
    format!("{prefix}.positions")
}

/// The heartbeat topic (Debezium's convention, `__debezium-heartbeat.<prefix>`,
/// under this project's name): outside the prefix, so that consumers of
/// `<prefix>.*` never see it.
pub fn heartbeat_topic(prefix: &str) -> String {
    format!("__tributary-heartbeat.{prefix}")
}

/// The topic of transaction boundaries (Debezium's name for it).
pub fn transaction_topic(prefix: &str) -> String {
    format!("{prefix}.transaction")
}

/// True when `topic` is a table topic of `prefix` (the prefix, then exactly
/// two components).
pub fn is_table_topic(prefix: &str, topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
        return false;
    };
    let mut parts = rest.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(db), Some(t), None) if !db.is_empty() && !t.is_empty()
    )
}

/// Replaces every character Kafka does not allow, and `.`, with `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks a topic prefix: Kafka's character set, not empty, short enough to
/// leave room for names.
pub fn validate_prefix(prefix: &str) -> Result<(), Error> {
    let ok_chars = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if prefix.is_empty() || !ok_chars || prefix.starts_with('.') || prefix.ends_with('.') {
        return Err(Error::InvalidName(format!(
            "topic prefix `{prefix}` must be non-empty, use only letters, digits, `.`, `_` and `-`, and not start or end with `.`"
        )));
    }
    if prefix.len() > 150 {
        return Err(Error::InvalidName(format!(
            "topic prefix `{prefix}` is {} characters long; use at most 150",
            prefix.len()
        )));
    }
    Ok(())
}

/// Key, on the positions topic, of the source server's description
/// (`{"server_id": n, "version": "..."}`), which sinks check their
/// destination against.
pub const SOURCE_SERVER_KEY: &str = "server";

/// Key, on the positions topic, of the error that last stopped the source
/// connector (`{"at": "...", "message": "..."}`), for `status`.
pub const LAST_ERROR_KEY: &str = "last_error";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            table_topic("shop", "sales", "order items"),
            "shop.sales.order_items"
        );
        assert_eq!(table_topic("shop", "a.b", "t"), "shop.a_b.t");
        assert!(is_table_topic("shop", "shop.sales.orders"));
        assert!(!is_table_topic("shop", "shop.schemas"));
        assert!(!is_table_topic("shop", "shop.positions"));
        assert!(!is_table_topic("shop", "shopx.a.b"));
        assert!(!is_table_topic("shop", "shop.a.b.c"));
        assert!(!is_table_topic("shop", "shop..b"));
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("shop").is_ok());
        assert!(validate_prefix("dc1.shop").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("a b").is_err());
        assert!(validate_prefix(".a").is_err());
    }
}
