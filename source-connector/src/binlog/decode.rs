//! Decoding: a binlog event into what the reader acts on.
//!
//! mysql_async decodes the standard events (rotate, table map, rows, XID,
//! query); MariaDB's GTID event (type 162), which opens every transaction,
//! is parsed here. A query event is a transaction's `BEGIN` or `COMMIT`
//! (non-transactional engines end with a `COMMIT` query, not an XID) or a
//! statement: DDL, which ends its transaction by itself when the GTID event
//! said so ("standalone").

use change_stream::position::Gtid;
use mysql_async::binlog::events::{Event, EventData, RowsEventData, StatusVarVal};
use mysql_async::binlog::StatusVarKey;

use crate::error::SourceError;

/// MariaDB's GTID event.
const GTID_EVENT: u8 = 162;

/// A transaction, from its GTID event.
pub struct Txn {
    pub gtid: Gtid,
    pub ts_ms: i64,
    /// One statement that ends the transaction itself (DDL).
    pub standalone: bool,
}

/// A statement of a query event (DDL, or DML in statement format).
pub struct Statement {
    /// The default database it ran in.
    pub schema: String,
    pub sql: String,
    pub sql_mode: Option<String>,
}

/// What an event means to the reader.
pub enum Decoded<'a> {
    Begin(Txn),
    /// The binlog file the next events are in (raw name: the first,
    /// artificial rotate event can carry trailing checksum bytes).
    Rotate(Vec<u8>),
    Rows(RowsEventData<'a>),
    Commit,
    Statement(Statement),
    /// Nothing the reader acts on (table maps are kept by the stream).
    Other,
}

/// Decodes `event`, found at `file:start`.
pub fn decode<'a>(event: &'a Event, file: &str, start: u64) -> Result<Decoded<'a>, SourceError> {
    let header = event.header();
    if header.event_type_raw() == GTID_EVENT {
        let d = event.data();
        if d.len() < 13 {
            return Err(SourceError::Binlog(format!(
                "GTID event too short at {file}:{start}"
            )));
        }
        let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
        let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
        return Ok(Decoded::Begin(Txn {
            gtid: Gtid {
                domain,
                server_id: header.server_id(),
                seq,
            },
            ts_ms: header.timestamp() as i64 * 1000,
            standalone: d[12] & 1 != 0,
        }));
    }
    let data = event.read_data().map_err(|e| {
        SourceError::Binlog(format!(
            "cannot decode a binlog event at {file}:{start}: {e}"
        ))
    })?;
    Ok(match data {
        Some(EventData::RotateEvent(r)) => Decoded::Rotate(r.name_raw().to_vec()),
        Some(EventData::RowsEvent(rows)) => Decoded::Rows(rows),
        Some(EventData::XidEvent(_)) => Decoded::Commit,
        Some(EventData::QueryEvent(q)) => {
            let sql = q.query();
            let trimmed = sql.trim();
            if trimmed.eq_ignore_ascii_case("COMMIT") {
                Decoded::Commit
            } else if trimmed.eq_ignore_ascii_case("BEGIN") {
                Decoded::Other
            } else {
                let sql_mode = q
                    .status_vars()
                    .get_status_var(StatusVarKey::SqlMode)
                    .and_then(|v| match v.get_value() {
                        Ok(StatusVarVal::SqlMode(m)) => Some(m.0.to_string()),
                        _ => None,
                    });
                Decoded::Statement(Statement {
                    schema: q.schema().to_string(),
                    sql: trimmed.to_string(),
                    sql_mode,
                })
            }
        }
        _ => Decoded::Other,
    })
}

/// The names of the server's binlog files, to clean the name a rotate
/// event carries.
pub struct FileNames(Vec<String>);

impl FileNames {
    pub fn new(known: Vec<String>) -> Self {
        Self(known)
    }

    /// The file a rotate event names: the longest known name it starts
    /// with, or the name as it is (a file created since).
    pub fn clean(&mut self, raw: &[u8]) -> String {
        let name = String::from_utf8_lossy(raw).to_string();
        if let Some(known) = self
            .0
            .iter()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
        {
            return known.clone();
        }
        self.0.push(name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_names_lose_trailing_checksum_bytes() {
        let mut names = FileNames::new(vec!["mariadb-bin.000001".into()]);
        assert_eq!(
            names.clean(b"mariadb-bin.000001\x12\x34\x56\x78"),
            "mariadb-bin.000001"
        );
        assert_eq!(names.clean(b"mariadb-bin.000002"), "mariadb-bin.000002");
        assert_eq!(names.clean(b"mariadb-bin.000002\x00"), "mariadb-bin.000002");
    }
}
