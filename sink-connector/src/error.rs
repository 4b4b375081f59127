//! The sink connector's errors.
//!
//! A lost connection (to the destination or the broker) is transient: the
//! open transaction is lost with it, the connector reconnects, reloads its
//! applied positions from the destination and consumes from there. Anything
//! else ends the process with a one-line message; nothing is marked applied
//! that was not.

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{message}")]
    Config { message: String },
    #[error("invalid setting {key}: expected {expected}, got {actual}")]
    InvalidSetting {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("destination MariaDB: {0}")]
    Destination(String),
    /// The connection to the destination broke.
    #[error("destination MariaDB: {0}")]
    DestinationLost(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("{0}")]
    Stream(#[from] change_stream::Error),
    #[error("{0}")]
    Record(String),
    /// A failed precheck item.
    #[error("{0}")]
    Precheck(String),
    /// A change that met another row than it expected, with
    /// `apply.on_row_conflict = "fail"`.
    #[error("{0}")]
    Conflict(String),
    /// A failure retried for its whole window.
    #[error("{0}")]
    RetriesExhausted(String),
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::DestinationLost(_) | SinkError::Kafka(_))
    }

    /// A statement the destination refused (a row change or DDL): retried
    /// within `retry.other_window_minutes`.
    pub fn is_statement_failure(&self) -> bool {
        matches!(self, SinkError::Destination(_))
    }
}

/// Classifies a MariaDB client error: connection problems are transient.
pub fn from_mysql(context: &str, e: mysql_async::Error) -> SinkError {
    match &e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => SinkError::DestinationLost(format!(
            "{context}: {e}; is the server running and reachable? check [destination] url"
        )),
        mysql_async::Error::Server(s) => match s.code {
            // Access denied, unknown database, no privilege.
            1044 | 1045 | 1142 | 1143 | 1227 => SinkError::Destination(format!(
                "{context}: {} (error {}); check the user, password and privileges in [destination] url",
                s.message, s.code
            )),
            // Server shutdown, lock wait timeout, deadlock: try again.
            1053 | 1205 | 1213 | 2006 | 2013 => {
                SinkError::DestinationLost(format!("{context}: {} (error {})", s.message, s.code))
            }
            // Unknown column: the table there has another shape.
            1054 => SinkError::Destination(format!(
                "{context}: {} (error {}); the destination's table lacks a column the source's has: add it there (an existing table is kept as it is under [schema] on_conflict = \"ignore\")",
                s.message, s.code
            )),
            _ => SinkError::Destination(format!("{context}: {} (error {})", s.message, s.code)),
        },
        _ => SinkError::Destination(format!("{context}: {e}")),
    }
}

/// A registry that does not answer is waited for, as the broker is; a
/// schema it does not have stops the sink.
pub fn from_registry(e: change_stream::Error) -> SinkError {
    match e {
        change_stream::Error::RegistryUnreachable(m) => SinkError::Kafka(m),
        e => SinkError::Config {
            message: e.to_string(),
        },
    }
}
