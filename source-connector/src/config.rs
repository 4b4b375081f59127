//! The source connector's configuration (TOML, `--config FILE`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use change_stream::check::CheckSection;
use change_stream::config_text;

use crate::error::SourceError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceSection,
    pub kafka: KafkaSection,
    #[serde(default)]
    pub check: CheckSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub throttle: ThrottleSection,
    /// `[log]`: how log lines are written. Checked here; logging reads it
    /// before the config is loaded (`LogFormat::choose`).
    #[serde(default)]
    #[allow(dead_code)]
    pub log: change_stream::process::LogSection,
    /// `[http]`: metrics, health, status and the console.
    #[serde(default)]
    pub http: change_stream::telemetry::HttpSection,
    /// `[alerts]`: lag and failure alerts.
    #[serde(default)]
    pub alerts: change_stream::alerts::AlertsSection,
}

/// `[throttle]`: limits on the full synchronization's reading of the
/// source (0 = none). Changed by editing them and restarting: the
/// snapshot resumes where it was.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSection {
    #[serde(default)]
    pub snapshot_queries_per_second: f64,
    #[serde(default)]
    pub snapshot_rows_per_second: f64,
    #[serde(default)]
    pub snapshot_mb_per_second: f64,
}

/// `[retry]`: how long lost connections (to the source or the broker) are
/// retried before the connector exits with its position intact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// 10 to 1440.
    #[serde(default = "defaults::connection_window_minutes")]
    pub connection_window_minutes: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            connection_window_minutes: defaults::connection_window_minutes(),
        }
    }
}

/// The items of the source's check.
pub const CHECK_ITEMS: [&str; 17] = [
    "kafka.connect",
    "kafka.schema_registry",
    "source.connect",
    "source.queries",
    "source.version",
    "source.privileges",
    "source.log_bin",
    "source.binlog_format",
    "source.binlog_row_image",
    "source.binlog_row_metadata",
    "source.log_bin_compress",
    "source.binlog_retention",
    "source.server_id",
    "source.selection",
    "source.row_filters",
    "source.keys",
    "source.foreign_keys",
];

/// `[source]`: the MariaDB server to read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `mysql://user:password@host:port`. `${VAR}` is replaced by the
    /// environment variable VAR, so a password need not be in the file.
    pub url: String,
    /// The replica server_id of the binlog connection; unique among the
    /// source's replicas.
    pub server_id: u32,
    /// Whole databases synchronized (names or `*` `?` patterns); see
    /// `selection.rs` for these lists.
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// Single tables, `database.table`.
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// Columns, `database.table.column`: a table named here keeps only
    /// these.
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// `[[source.row_filter]]`: a WHERE condition per table.
    #[serde(default, rename = "row_filter")]
    pub row_filters: Vec<RowFilterSection>,
    /// Rows per snapshot query (primary-key chunk).
    #[serde(default = "defaults::snapshot_chunk_rows")]
    pub snapshot_chunk_rows: u32,
    /// Connections that read the snapshot at once, all at one consistent
    /// point: each a table, or a key range of a large one, at a time.
    #[serde(default = "defaults::snapshot_connections")]
    pub snapshot_connections: usize,
    /// Seconds to wait for a connection to the source.
    #[serde(default = "defaults::connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Binlog events made at these servers (their originating server id)
    /// are not captured, as a native replica's `IGNORE_SERVER_IDS`; the
    /// source server's own events always are.
    #[serde(default)]
    pub ignore_server_ids: Vec<u32>,
    /// A file holding the password (its last line break dropped), instead
    /// of one in `url`.
    pub password_file: Option<std::path::PathBuf>,
    /// `[source.tls]` (see `change_stream::secure`).
    #[serde(default)]
    pub tls: change_stream::secure::TlsSection,
    /// The two above, read and checked when the file is loaded.
    #[serde(skip)]
    pub security: change_stream::secure::Security,
}

/// One `[[source.row_filter]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilterSection {
    /// `database.table` names or patterns.
    pub tables: Vec<String>,
    /// The condition, in SQL syntax.
    #[serde(rename = "where")]
    pub condition: String,
}

/// `[kafka]`: the broker and the topics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Topics are named `<topic_prefix>.<database>.<table>`.
    pub topic_prefix: String,
    /// Partitions of each table topic created by the connector.
    #[serde(default = "defaults::partitions")]
    pub partitions: i32,
    /// Replication factor of the topics created by the connector; -1 takes
    /// the broker's default.
    #[serde(default = "defaults::replication_factor")]
    pub replication_factor: i32,
    /// Compression of produced batches: none, gzip, snappy, lz4 or zstd.
    #[serde(default = "defaults::compression")]
    pub compression: String,
    /// How often the connector's position is stored, in milliseconds
    /// (without `exactly_once`; with it, the position is stored with each
    /// commit).
    #[serde(default = "defaults::position_interval_ms")]
    pub position_interval_ms: u64,
    /// How often a heartbeat record (`{"ts_ms", "gtid", "interval_ms"}`,
    /// keyed `{"serverName": prefix}`) goes to `__tributary-heartbeat.<prefix>`
    /// while streaming, with the position stored, busy or idle: sinks tell
    /// their lag by it when nothing changes. 0 turns it off.
    #[serde(default = "defaults::heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// Records and the position written together in Kafka transactions,
    /// so that a `read_committed` consumer sees every change exactly once,
    /// whatever crashes.
    #[serde(default = "defaults::exactly_once")]
    pub exactly_once: bool,
    /// With `exactly_once`: how often the open Kafka transaction is
    /// committed, in milliseconds: how long a record waits at most before
    /// `read_committed` consumers see it.
    #[serde(default = "defaults::commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Largest record the producer sends, in bytes; the broker's and the
    /// topics' limits must allow it too.
    #[serde(default = "defaults::message_max_bytes")]
    pub message_max_bytes: u64,
    /// What to do with a record larger than `message_max_bytes`, or that
    /// the broker refuses as too large: `fail` (stop, naming table, key and
    /// size; the position stays before it) or `skip` (log it, count it, go
    /// on; the destination then lacks that change).
    #[serde(default)]
    pub oversized_records: OversizedPolicy,
    /// Bytes of records buffered in the producer before reading pauses.
    #[serde(default = "defaults::buffer_max_bytes")]
    pub buffer_max_bytes: u64,
    /// Retention of the schema-changes topic, in milliseconds; -1 keeps the
    /// schema history forever.
    #[serde(default = "defaults::schema_changes_retention_ms")]
    pub schema_changes_retention_ms: i64,
    /// Topic-level settings for the table topics the connector creates.
    #[serde(default = "defaults::table_topic_config")]
    pub table_topic_config: BTreeMap<String, String>,
    /// Extra librdkafka settings (security, timeouts ...), passed as is.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Schema-registry mode: keys and values in the Confluent wire format,
    /// their schemas registered at this registry (its Confluent-compatible
    /// REST API) under `<topic>-key` and `<topic>-value`
    /// (see `change_stream::registry`).
    pub schema_registry_url: Option<String>,
}

/// See [`KafkaSection::oversized_records`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizedPolicy {
    #[default]
    Fail,
    Skip,
}

mod defaults {
    pub fn connection_window_minutes() -> u64 {
        720
    }
    use std::collections::BTreeMap;

    pub fn snapshot_chunk_rows() -> u32 {
        10_000
    }
    pub fn snapshot_connections() -> usize {
        2
    }
    pub fn connect_timeout_secs() -> u64 {
        10
    }
    pub fn partitions() -> i32 {
        1
    }
    pub fn replication_factor() -> i32 {
        -1
    }
    pub fn compression() -> String {
        "none".into()
    }
    pub fn position_interval_ms() -> u64 {
        1000
    }
    pub fn heartbeat_interval_ms() -> u64 {
        5000
    }
    pub fn exactly_once() -> bool {
        true
    }
    pub fn commit_interval_ms() -> u64 {
        100
    }
    pub fn message_max_bytes() -> u64 {
        64 * 1024 * 1024
    }
    pub fn buffer_max_bytes() -> u64 {
        256 * 1024 * 1024
    }
    pub fn schema_changes_retention_ms() -> i64 {
        -1
    }
    pub fn table_topic_config() -> BTreeMap<String, String> {
        BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())])
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|e| SourceError::Config {
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let mut config: Config = toml::from_str(text).map_err(|e| SourceError::Config {
            message: config_text::toml_error(&e, text),
        })?;
        config.source.url = config_text::expand_env(&config.source.url).map_err(|problem| {
            SourceError::InvalidSetting {
                key: "source.url".into(),
                expected: "`${VAR}` naming a set environment variable".into(),
                actual: problem,
            }
        })?;
        config_text::expand_kafka_env(
            &mut config.kafka.properties,
            &mut config.kafka.schema_registry_url,
        )
        .map_err(|(key, problem)| SourceError::InvalidSetting {
            key,
            expected: "`${VAR}` naming a set environment variable".into(),
            actual: problem,
        })?;
        config.validate()?;
        let s = &config.source;
        config.source.security = change_stream::secure::Security::load(
            "source",
            &s.tls,
            s.password_file.as_deref(),
            &s.url,
        )
        .map_err(|i| SourceError::InvalidSetting {
            key: i.key,
            expected: i.expected,
            actual: i.actual,
        })?;
        Ok(config)
    }

    /// Checks values before any connection is opened.
    /// The databases, tables and columns to synchronize.
    pub fn selection(&self) -> Result<crate::selection::Selection, SourceError> {
        let s = &self.source;
        crate::selection::Selection::new(
            &s.databases,
            &s.exclude_databases,
            &s.tables,
            &s.exclude_tables,
            &s.columns,
            &s.exclude_columns,
        )?
        .with_row_filters(
            &s.row_filters
                .iter()
                .map(|f| (f.tables.clone(), f.condition.clone()))
                .collect::<Vec<_>>(),
        )
    }

    pub fn validate(&self) -> Result<(), SourceError> {
        let invalid = |key: &str, expected: &str, actual: String| SourceError::InvalidSetting {
            key: key.into(),
            expected: expected.into(),
            actual,
        };
        if let Some((key, expected, bad)) = self.alerts.invalid() {
            return Err(invalid(key, expected, bad));
        }
        if let Some(url) = &self.kafka.schema_registry_url {
            if !change_stream::registry::valid_url(url) {
                return Err(invalid(
                    "kafka.schema_registry_url",
                    "an http:// or https:// URL of the registry's Confluent-compatible API",
                    url.clone(),
                ));
            }
        }
        if let Some(bad) = self.http.invalid_listen() {
            return Err(invalid(
                "http.listen",
                "host:port, such as \"127.0.0.1:9464\"",
                bad,
            ));
        }
        if let Some((expected, bad)) = self.check.unknown(&CHECK_ITEMS) {
            return Err(invalid("check.acknowledge", &expected, bad));
        }
        if !self.source.url.starts_with("mysql://") && !self.source.url.starts_with("mariadb://") {
            return Err(invalid(
                "source.url",
                "a mysql://user:password@host:port URL",
                self.source.url.clone(),
            ));
        }
        if self.source.server_id == 0 {
            return Err(invalid(
                "source.server_id",
                "a number from 1 to 4294967295, unused by other replicas",
                "0".into(),
            ));
        }
        if self.source.databases.is_empty() && self.source.tables.is_empty() {
            return Err(invalid(
                "source.databases",
                "at least one database (or an entry in source.tables)",
                "nothing selected".into(),
            ));
        }
        self.selection()?;
        for (key, v) in [
            (
                "throttle.snapshot_queries_per_second",
                self.throttle.snapshot_queries_per_second,
            ),
            (
                "throttle.snapshot_rows_per_second",
                self.throttle.snapshot_rows_per_second,
            ),
            (
                "throttle.snapshot_mb_per_second",
                self.throttle.snapshot_mb_per_second,
            ),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(invalid(
                    key,
                    "0 (no limit) or a positive number",
                    v.to_string(),
                ));
            }
        }
        if !(10..=1440).contains(&self.retry.connection_window_minutes) {
            return Err(invalid(
                "retry.connection_window_minutes",
                "10 to 1440",
                self.retry.connection_window_minutes.to_string(),
            ));
        }
        if !(1..=32).contains(&self.source.snapshot_connections) {
            return Err(invalid(
                "source.snapshot_connections",
                "1 to 32",
                self.source.snapshot_connections.to_string(),
            ));
        }
        if self.source.snapshot_chunk_rows == 0 {
            return Err(invalid(
                "source.snapshot_chunk_rows",
                "at least 1",
                "0".into(),
            ));
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "kafka.bootstrap_servers",
                "host:port of at least one broker",
                "an empty string".into(),
            ));
        }
        change_stream::topics::validate_prefix(&self.kafka.topic_prefix)
            .map_err(|e| invalid("kafka.topic_prefix", "a valid topic prefix", e.to_string()))?;
        if self.kafka.partitions < 1 {
            return Err(invalid(
                "kafka.partitions",
                "at least 1",
                self.kafka.partitions.to_string(),
            ));
        }
        if self.kafka.replication_factor == 0 || self.kafka.replication_factor < -1 {
            return Err(invalid(
                "kafka.replication_factor",
                "-1 (broker default) or at least 1",
                self.kafka.replication_factor.to_string(),
            ));
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.kafka.compression.as_str()) {
            return Err(invalid(
                "kafka.compression",
                "none, gzip, snappy, lz4 or zstd",
                self.kafka.compression.clone(),
            ));
        }
        if self.kafka.position_interval_ms == 0 {
            return Err(invalid(
                "kafka.position_interval_ms",
                "at least 1",
                "0".into(),
            ));
        }
        if self.kafka.commit_interval_ms == 0 {
            return Err(invalid(
                "kafka.commit_interval_ms",
                "at least 1",
                "0".into(),
            ));
        }
        if self.kafka.message_max_bytes < 1000 || self.kafka.message_max_bytes > 1_000_000_000 {
            return Err(invalid(
                "kafka.message_max_bytes",
                "1000 to 1000000000",
                self.kafka.message_max_bytes.to_string(),
            ));
        }
        if self.kafka.schema_changes_retention_ms == 0
            || self.kafka.schema_changes_retention_ms < -1
        {
            return Err(invalid(
                "kafka.schema_changes_retention_ms",
                "-1 (forever) or a positive number of milliseconds",
                self.kafka.schema_changes_retention_ms.to_string(),
            ));
        }
        if self.kafka.buffer_max_bytes < self.kafka.message_max_bytes {
            return Err(invalid(
                "kafka.buffer_max_bytes",
                "at least kafka.message_max_bytes",
                self.kafka.buffer_max_bytes.to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[source]
url = "mysql://root@127.0.0.1:3307"
server_id = 5401
databases = ["shop"]
[kafka]
bootstrap_servers = "127.0.0.1:9092"
topic_prefix = "shop"
"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.source.snapshot_chunk_rows, 10_000);
        assert_eq!(c.kafka.partitions, 1);
        assert_eq!(c.kafka.table_topic_config["cleanup.policy"], "compact");
    }

    #[test]
    fn unknown_missing_and_bad_keys_are_named() {
        let e = Config::parse(&GOOD.replace("server_id = 5401", "server_id = 5401\nserverid = 1"))
            .unwrap_err();
        assert!(e.to_string().contains("serverid"), "{e}");
        let e = Config::parse(&GOOD.replace("server_id = 5401\n", "")).unwrap_err();
        assert!(e.to_string().contains("server_id"), "{e}");
        let e = Config::parse(&GOOD.replace("server_id = 5401", "server_id = \"x\"")).unwrap_err();
        assert!(
            e.to_string().contains("server_id") || e.to_string().contains("invalid type"),
            "{e}"
        );
        let e = Config::parse(&GOOD.replace("server_id = 5401", "server_id = 0")).unwrap_err();
        assert!(e.to_string().contains("source.server_id"), "{e}");
        let e = Config::parse(&GOOD.replace("topic_prefix = \"shop\"", "topic_prefix = \"a b\""))
            .unwrap_err();
        assert!(e.to_string().contains("kafka.topic_prefix"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e =
            Config::parse(&GOOD.replace("databases = [\"shop\"]", "databases = []")).unwrap_err();
        assert!(e.to_string().contains("nothing selected"), "{e}");
        // Single tables alone are a selection.
        Config::parse(&GOOD.replace("databases = [\"shop\"]", "tables = [\"shop.orders\"]"))
            .unwrap();
    }

    /// Every item the check reports can be acknowledged by its id.
    #[test]
    fn every_check_item_is_listed() {
        let source = include_str!("check.rs");
        let ids: Vec<&str> = source
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| {
                s.starts_with("source.")
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
            })
            .collect();
        assert!(!ids.is_empty());
        for id in ids {
            assert!(
                CHECK_ITEMS.contains(&id),
                "{id} is missing from CHECK_ITEMS"
            );
        }
    }
}
