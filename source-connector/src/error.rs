//! The source connector's errors.
//!
//! Transient errors (a connection lost, the broker away) are retried with
//! backoff by the stage that met them; everything here that reaches `main`
//! ends the process with a one-line message naming what failed and how to
//! fix it. The stored position is only ever advanced past records the broker
//! has acknowledged, so a restart continues where the process stopped.

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{message}")]
    Config { message: String },
    #[error("invalid setting {key}: expected {expected}, got {actual}")]
    InvalidSetting {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("source MariaDB: {0}")]
    Source(String),
    /// The snapshot met a schema change on the source: a table it was to
    /// read dropped or altered since its read view, or a statement waiting
    /// for a table the snapshot holds. Taken again at once, resuming.
    #[error("source MariaDB: {0}")]
    SnapshotInterrupted(String),
    #[error("source MariaDB is not set up for replication: {0}")]
    SourceSetup(String),
    /// A failed precheck item.
    #[error("{0}")]
    Precheck(String),
    /// A failure retried for its whole window.
    #[error("{0}")]
    RetriesExhausted(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    /// A record the broker will never take (too large, not allowed): the
    /// position stays before it and the connector stops.
    #[error("Kafka: {0}")]
    Refused(String),
    #[error("{0}")]
    Stream(#[from] change_stream::Error),
    #[error("binlog: {0}")]
    Binlog(String),
    /// The source's binlog is no longer the history the position is in
    /// (`RESET MASTER`, GTIDs out of order): going on would lose changes.
    #[error("binlog: {0}")]
    History(String),
}

impl SourceError {
    /// True for errors worth retrying after a pause: a lost connection, a
    /// broker that does not answer, a snapshot a schema change interrupted.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Source(m) | SourceError::Binlog(m) if is_connection_message(m))
            || matches!(
                self,
                SourceError::Kafka(_) | SourceError::SnapshotInterrupted(_)
            )
    }
}

fn is_connection_message(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    [
        "connection",
        "broken pipe",
        "io error",
        "unexpected eof",
        "timed out",
        "server has gone away",
        "lost connection",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// A MariaDB client error, with a hint for the common causes.
pub fn describe_mysql(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            1045 => format!(
                "access denied ({}); check the user and password in [source] url",
                s.message
            ),
            1049 => format!("{}; check [source] databases", s.message),
            // Another binlog client connected with the same server_id and
            // the server dropped this one.
            4052 => format!(
                "{} (error 4052): another replica or connector reads the binlog with the same [source] server_id; give each its own",
                s.message
            ),
            // The GTID position asked for is not in the binlog.
            1236 => format!(
                "{} (error 1236): the source's binlog no longer holds the stored position (its files were purged, or RESET MASTER ran); the changes since cannot be read: start over with a new snapshot under a new kafka.topic_prefix (README, Operations), and keep the binlog longer (binlog_expire_logs_seconds)",
                s.message
            ),
            1227 | 1142 | 1143 => format!(
                "{}; grant the connector's user SELECT, REPLICATION SLAVE and REPLICATION CLIENT",
                s.message
            ),
            _ => format!("{} (error {})", s.message, s.code),
        },
        mysql_async::Error::Io(io) => {
            format!("connection failed: {io}; is the server running and reachable?")
        }
        other => other.to_string(),
    }
}
