//! The sink connector's configuration (TOML, `--config FILE`).

use std::collections::BTreeMap;
use std::path::Path;

use change_stream::check::CheckSection;
use change_stream::config_text;
use serde::Deserialize;

use crate::error::SinkError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaSection,
    pub destination: DestinationSection,
    #[serde(default)]
    pub apply: ApplySection,
    #[serde(default)]
    pub schema: SchemaSection,
    #[serde(default)]
    pub check: CheckSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub throttle: ThrottleSection,
    #[serde(default)]
    pub mapping: MappingSection,
    /// `[[filter]]`: per-table operations to apply.
    #[serde(default, rename = "filter")]
    pub filters: Vec<FilterSection>,
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

/// `[mapping]`: names at the destination (see `mapping.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSection {
    #[serde(default)]
    pub databases: BTreeMap<String, String>,
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

impl Config {
    /// The name mapping.
    pub fn mapping(&self) -> Result<crate::mapping::Mapping, SinkError> {
        crate::mapping::Mapping::new(
            &self.mapping.databases,
            &self.mapping.tables,
            &self.mapping.columns,
        )
    }
}

/// One `[[filter]]`: for the tables it names (the source's names, as
/// `database.table`, with `*` `?` patterns), only the operations listed
/// are applied; the others are skipped (their position still advances).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    pub tables: Vec<String>,
    /// Any of `INSERT` (also the full synchronization's rows), `UPDATE`,
    /// `DELETE`, `DDL` (every schema change), or a DDL kind such as
    /// `ALTER TABLE` or `DROP TABLE`.
    pub operations: Vec<String>,
}

/// Operation names a filter accepts.
pub const OPERATIONS: [&str; 15] = [
    "INSERT",
    "UPDATE",
    "DELETE",
    "DDL",
    "CREATE TABLE",
    "ALTER TABLE",
    "DROP TABLE",
    "RENAME TABLE",
    "TRUNCATE TABLE",
    "CREATE INDEX",
    "DROP INDEX",
    "CREATE TRIGGER",
    "DROP TRIGGER",
    "CREATE VIEW",
    "DROP VIEW",
];

impl Config {
    /// Whether `operation` is applied to the table (the first filter
    /// naming the table decides; tables no filter names get everything).
    pub fn allows(&self, table: &change_stream::table::TableId, operation: &str) -> bool {
        let name_matches = |p: &str| match p.split_once('.') {
            Some((d, t)) => {
                change_stream::table::glob(d, &table.database, false)
                    && change_stream::table::glob(t, &table.table, false)
            }
            None => false,
        };
        match self
            .filters
            .iter()
            .find(|f| f.tables.iter().any(|p| name_matches(p)))
        {
            None => true,
            Some(f) => f.operations.iter().any(|o| {
                o.eq_ignore_ascii_case(operation)
                    || (o.eq_ignore_ascii_case("DDL")
                        && !["INSERT", "UPDATE", "DELETE"].contains(&operation))
            }),
        }
    }
}

/// `[throttle]`: limits on what the sink applies (0 = none). Changed by
/// editing them and restarting: the sink continues from its applied
/// position.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSection {
    #[serde(default)]
    pub rows_per_second: f64,
    #[serde(default)]
    pub mb_per_second: f64,
}

/// `[retry]`: how long failures are retried before the sink exits with
/// its applied position intact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Lost connections to the destination or the broker: 10 to 1440.
    #[serde(default = "defaults::connection_window_minutes")]
    pub connection_window_minutes: u64,
    /// A statement (row change or DDL) that fails at the destination: 1 to
    /// 1440, and less than the connection window.
    #[serde(default = "defaults::other_window_minutes")]
    pub other_window_minutes: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            connection_window_minutes: defaults::connection_window_minutes(),
            other_window_minutes: defaults::other_window_minutes(),
        }
    }
}

/// The items of the sink's check.
pub const CHECK_ITEMS: [&str; 12] = [
    "kafka.connect",
    "kafka.schema_registry",
    "destination.connect",
    "destination.queries",
    "destination.version",
    "destination.privileges",
    "destination.definer",
    "destination.state_database",
    "destination.server_id",
    "destination.origin_server_id",
    "destination.conflicts",
    "destination.function_creators",
];

/// `[schema]`: how the source's schema is created at the destination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// How triggers are created: `guard` (they do nothing for the rows the
    /// sink applies) or `after_full_sync` (as they are, once their table's
    /// full synchronization is applied).
    #[serde(default)]
    pub triggers: TriggerMethod,
    /// A replicated table that already exists at the destination at first
    /// start: `fail`, or `ignore` (keep its rows; full synchronization
    /// keeps existing rows with the same key, incremental overwrites them).
    #[serde(default)]
    pub on_conflict: ConflictMode,
    /// When a table created for a full synchronization gets its secondary
    /// (non-unique) indexes: `after_full_sync` (built once its rows are in,
    /// which costs the destination less than keeping them up row by row)
    /// or `at_create`.
    #[serde(default)]
    pub secondary_indexes: IndexMethod,
}

/// See [`SchemaSection::secondary_indexes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexMethod {
    #[default]
    AfterFullSync,
    AtCreate,
}

/// See [`SchemaSection::triggers`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMethod {
    #[default]
    Guard,
    AfterFullSync,
}

/// See [`SchemaSection::on_conflict`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictMode {
    #[default]
    Fail,
    Ignore,
}

/// `[kafka]`: where the records are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The source connector's topic prefix.
    pub topic_prefix: String,
    /// Consumer group; offsets committed there are informative (lag
    /// monitoring), the destination's state table is authoritative.
    pub group_id: String,
    /// Seconds between looks for new table topics.
    #[serde(default = "defaults::topic_refresh_secs")]
    pub topic_refresh_secs: u64,
    /// Largest record the sink can read, in bytes; at least the source
    /// connector's `kafka.message_max_bytes`.
    #[serde(default = "defaults::message_max_bytes")]
    pub message_max_bytes: u64,
    /// Bytes of fetched records the consumer may hold ahead of the sink.
    #[serde(default = "defaults::fetch_buffer_bytes")]
    pub fetch_buffer_bytes: u64,
    /// Extra librdkafka settings (security, timeouts ...), passed as is.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The schema registry of a source in schema-registry mode, whose
    /// records' schema ids it resolves (see `change_stream::registry`);
    /// records in either encoding are read.
    pub schema_registry_url: Option<String>,
}

/// `[destination]`: the MariaDB server to write.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSection {
    /// `mysql://user:password@host:port`; `${VAR}` is replaced by the
    /// environment variable VAR.
    pub url: String,
    /// Database of the sink's own state table (never a replicated one).
    #[serde(default = "defaults::state_database")]
    pub state_database: String,
    /// Seconds to wait for a connection.
    #[serde(default = "defaults::connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// A file holding the password (its last line break dropped), instead
    /// of one in `url`.
    pub password_file: Option<std::path::PathBuf>,
    /// `[destination.tls]` (see `change_stream::secure`).
    #[serde(default)]
    pub tls: change_stream::secure::TlsSection,
    /// The two above, read and checked when the file is loaded.
    #[serde(skip)]
    pub security: change_stream::secure::Security,
}

/// `[apply]`: batching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplySection {
    /// Most records in one destination transaction.
    #[serde(default = "defaults::batch_max_records")]
    pub batch_max_records: usize,
    /// Most record bytes in one destination transaction.
    #[serde(default = "defaults::batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// How long to wait for more records before applying a partial batch,
    /// in milliseconds.
    #[serde(default = "defaults::batch_linger_ms")]
    pub batch_linger_ms: u64,
    /// Largest SQL statement the sink sends, in bytes; keep it under the
    /// destination's max_allowed_packet. A single row larger than this is
    /// sent alone.
    #[serde(default = "defaults::statement_max_bytes")]
    pub statement_max_bytes: usize,
    /// A schema change that fails at the destination: `continue` (log it,
    /// record it in `<state_database>.ddl_failures`, go on) or `stop`.
    #[serde(default)]
    pub on_ddl_error: DdlErrorPolicy,
    /// Destination connections that apply batches at once, each for its
    /// own tables (see `lanes.rs`).
    #[serde(default = "defaults::connections")]
    pub connections: usize,
    /// Many rows of a table in a batch go in as `LOAD DATA LOCAL INFILE`
    /// when the destination allows it (`local_infile`), else as `VALUES`
    /// lists.
    #[serde(default = "defaults::load_data")]
    pub load_data: bool,
    /// `transaction`: every source transaction applied whole, in the
    /// source's commit order (see `order.rs`); `row`: records applied as
    /// they come, tables in parallel.
    #[serde(default)]
    pub consistency: Consistency,
    /// Each change is written with the session's `server_id` set to the
    /// server id where it was made (its record's `source.server_id`), as
    /// a native replica does, so that the destination's binlog names its
    /// origin; changes made at the destination itself are not applied
    /// there again.
    #[serde(default = "defaults::origin_server_id")]
    pub origin_server_id: bool,
    /// A change that finds the destination's row other than it expects
    /// (see `conflicts.rs`): `overwrite`, `ignore` or `fail`; `off` (the
    /// default) does not look.
    #[serde(default)]
    pub on_row_conflict: ConflictPolicy,
}

/// See [`ApplySection::on_row_conflict`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// The change wins; the conflict is recorded.
    Overwrite,
    /// The destination's row is kept; the conflict is recorded.
    Ignore,
    /// The sink stops with an error naming the conflict.
    Fail,
    /// Not looked for: changes are written as they come (the default:
    /// looking costs the destination about as much as the writes).
    #[default]
    Off,
}

impl ConflictPolicy {
    pub fn name(self) -> &'static str {
        match self {
            ConflictPolicy::Overwrite => "overwrite",
            ConflictPolicy::Ignore => "ignore",
            ConflictPolicy::Fail => "fail",
            ConflictPolicy::Off => "off",
        }
    }
}

/// See [`ApplySection::consistency`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    #[default]
    Transaction,
    Row,
}

/// See [`ApplySection::on_ddl_error`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DdlErrorPolicy {
    #[default]
    Continue,
    Stop,
}

impl Default for ApplySection {
    fn default() -> Self {
        Self {
            batch_max_records: defaults::batch_max_records(),
            batch_max_bytes: defaults::batch_max_bytes(),
            batch_linger_ms: defaults::batch_linger_ms(),
            statement_max_bytes: defaults::statement_max_bytes(),
            on_ddl_error: DdlErrorPolicy::default(),
            connections: defaults::connections(),
            load_data: defaults::load_data(),
            consistency: Consistency::default(),
            origin_server_id: defaults::origin_server_id(),
            on_row_conflict: ConflictPolicy::default(),
        }
    }
}

mod defaults {
    pub fn connection_window_minutes() -> u64 {
        720
    }
    pub fn other_window_minutes() -> u64 {
        10
    }
    pub fn topic_refresh_secs() -> u64 {
        5
    }
    pub fn message_max_bytes() -> u64 {
        64 * 1024 * 1024
    }
    pub fn fetch_buffer_bytes() -> u64 {
        128 * 1024 * 1024
    }
    pub fn state_database() -> String {
        "tributary".into()
    }
    pub fn connect_timeout_secs() -> u64 {
        10
    }
    pub fn origin_server_id() -> bool {
        true
    }
    pub fn batch_max_records() -> usize {
        10_000
    }
    pub fn batch_max_bytes() -> usize {
        32 * 1024 * 1024
    }
    pub fn batch_linger_ms() -> u64 {
        50
    }
    pub fn statement_max_bytes() -> usize {
        4 * 1024 * 1024
    }
    pub fn connections() -> usize {
        2
    }
    pub fn load_data() -> bool {
        true
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, SinkError> {
        let text = std::fs::read_to_string(path).map_err(|e| SinkError::Config {
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, SinkError> {
        let mut config: Config = toml::from_str(text).map_err(|e| SinkError::Config {
            message: config_text::toml_error(&e, text),
        })?;
        config.destination.url =
            config_text::expand_env(&config.destination.url).map_err(|problem| {
                SinkError::InvalidSetting {
                    key: "destination.url".into(),
                    expected: "`${VAR}` naming a set environment variable".into(),
                    actual: problem,
                }
            })?;
        config_text::expand_kafka_env(
            &mut config.kafka.properties,
            &mut config.kafka.schema_registry_url,
        )
        .map_err(|(key, problem)| SinkError::InvalidSetting {
            key,
            expected: "`${VAR}` naming a set environment variable".into(),
            actual: problem,
        })?;
        config.validate()?;
        let d = &config.destination;
        config.destination.security = change_stream::secure::Security::load(
            "destination",
            &d.tls,
            d.password_file.as_deref(),
            &d.url,
        )
        .map_err(|i| SinkError::InvalidSetting {
            key: i.key,
            expected: i.expected,
            actual: i.actual,
        })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), SinkError> {
        let invalid = |key: &str, expected: &str, actual: String| SinkError::InvalidSetting {
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
        for (key, v) in [
            ("throttle.rows_per_second", self.throttle.rows_per_second),
            ("throttle.mb_per_second", self.throttle.mb_per_second),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(invalid(
                    key,
                    "0 (no limit) or a positive number",
                    v.to_string(),
                ));
            }
        }
        for (i, f) in self.filters.iter().enumerate() {
            if let Some(bad) = f
                .operations
                .iter()
                .find(|o| !OPERATIONS.iter().any(|k| k.eq_ignore_ascii_case(o)))
            {
                return Err(invalid(
                    &format!("filter[{i}].operations"),
                    &format!("any of {}", OPERATIONS.join(", ")),
                    bad.clone(),
                ));
            }
            if let Some(bad) = f.tables.iter().find(|t| !t.contains('.')) {
                return Err(invalid(
                    &format!("filter[{i}].tables"),
                    "database.table names or patterns",
                    bad.clone(),
                ));
            }
        }
        self.mapping()?;
        let r = &self.retry;
        if !(10..=1440).contains(&r.connection_window_minutes) {
            return Err(invalid(
                "retry.connection_window_minutes",
                "10 to 1440",
                r.connection_window_minutes.to_string(),
            ));
        }
        if !(1..=1440).contains(&r.other_window_minutes)
            || r.other_window_minutes >= r.connection_window_minutes
        {
            return Err(invalid(
                "retry.other_window_minutes",
                "1 to 1440, and less than retry.connection_window_minutes",
                r.other_window_minutes.to_string(),
            ));
        }
        if let Some((expected, bad)) = self.check.unknown(&CHECK_ITEMS) {
            return Err(invalid("check.acknowledge", &expected, bad));
        }
        if !self.destination.url.starts_with("mysql://")
            && !self.destination.url.starts_with("mariadb://")
        {
            return Err(invalid(
                "destination.url",
                "a mysql://user:password@host:port URL",
                self.destination.url.clone(),
            ));
        }
        let db = &self.destination.state_database;
        if db.is_empty() || db.len() > 64 {
            return Err(invalid(
                "destination.state_database",
                "a database name of 1 to 64 characters",
                db.clone(),
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
        if self.kafka.group_id.trim().is_empty() {
            return Err(invalid(
                "kafka.group_id",
                "a non-empty consumer group name",
                "an empty string".into(),
            ));
        }
        if self.kafka.topic_refresh_secs == 0 {
            return Err(invalid(
                "kafka.topic_refresh_secs",
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
        if self.kafka.fetch_buffer_bytes < 1024 * 1024 {
            return Err(invalid(
                "kafka.fetch_buffer_bytes",
                "at least 1048576",
                self.kafka.fetch_buffer_bytes.to_string(),
            ));
        }
        if !(1..=32).contains(&self.apply.connections) {
            return Err(invalid(
                "apply.connections",
                "1 to 32",
                self.apply.connections.to_string(),
            ));
        }
        if self.apply.batch_max_records == 0 {
            return Err(invalid("apply.batch_max_records", "at least 1", "0".into()));
        }
        if self.apply.batch_max_bytes < 1024 {
            return Err(invalid(
                "apply.batch_max_bytes",
                "at least 1024",
                self.apply.batch_max_bytes.to_string(),
            ));
        }
        if self.apply.statement_max_bytes < 1024 {
            return Err(invalid(
                "apply.statement_max_bytes",
                "at least 1024",
                self.apply.statement_max_bytes.to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
topic_prefix = "shop"
group_id = "shop-replica"
[destination]
url = "mysql://root@127.0.0.1:3308"
"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.destination.state_database, "tributary");
        assert_eq!(c.apply.batch_max_records, 10_000);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse(&GOOD.replace("group_id = \"shop-replica\"\n", "")).unwrap_err();
        assert!(e.to_string().contains("group_id"), "{e}");
        let e = Config::parse(&format!("{GOOD}\n[apply]\nbatch_max_records = 0\n")).unwrap_err();
        assert!(e.to_string().contains("apply.batch_max_records"), "{e}");
        let e = Config::parse(&GOOD.replace("[destination]", "[destination]\nuser = \"x\""))
            .unwrap_err();
        assert!(e.to_string().contains("user"), "{e}");
        assert!(!e.to_string().contains('\n'));
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
                s.starts_with("destination.")
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
