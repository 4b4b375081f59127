//! What the source and sink connectors must agree on, and nothing else:
//!
//! - [`table`]: table definitions (columns, kinds, keys);
//! - [`value`]: column values ([`value::Cell`]) between MariaDB and Avro;
//! - [`event`]: the change-event model (op, before/after, `source` block);
//! - [`avro`]: the Avro schemas and single-object encoding of records;
//! - [`check`]: precheck reports;
//! - [`ddl`]: what a DDL statement from the binlog does;
//! - [`schema_change`]: table definitions as published on the
//!   schema-changes topic;
//! - [`transaction`]: transaction metadata, on the transaction topic;
//! - [`topics`]: topic names, and [`kafka`]: reading and creating them;
//! - [`position`]: binlog coordinates, GTID positions and event order;
//! - [`telemetry`]: metrics, health and status, and the HTTP server and
//!   console that show them; [`alerts`]: told to a webhook or a command.

pub mod alerts;
pub mod avro;
pub mod check;
pub mod config_text;
pub mod ddl;
pub mod event;
pub mod kafka;
pub mod position;
pub mod process;
pub mod progress;
pub mod registry;
pub mod retry;
pub mod schema_change;
pub mod secure;
pub mod table;
pub mod telemetry;
pub mod throttle;
pub mod topics;
pub mod transaction;
pub mod value;

/// Version of the record format's writer, carried in every `source` block.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Errors of encoding, decoding and parsing shared data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid position: {0}")]
    InvalidPosition(String),
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("unsupported column type: {0}")]
    UnsupportedType(String),
    #[error("Avro schema error: {0}")]
    Schema(String),
    #[error("cannot encode record: {0}")]
    Encode(String),
    #[error("cannot decode record: {0}")]
    Decode(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    /// The schema registry refused or does not know something.
    #[error("schema registry: {0}")]
    Registry(String),
    /// The schema registry does not answer (retried).
    #[error("schema registry: {0}")]
    RegistryUnreachable(String),
}
