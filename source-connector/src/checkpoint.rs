//! Where the source connector has got to, and how that is stored.
//!
//! The position lives in Kafka, on the compacted topic
//! `<prefix>.positions` under the key `source`, as JSON. Keeping it next to
//! the records it describes makes the process stateless: any machine with
//! the config can continue, and there is no local file to lose or to restore
//! with a stale copy.
//!
//! A position is only ever written after every record before it has been
//! acknowledged by the broker (see `produce.rs`), so after a crash the
//! connector resumes at or before the first record the broker lacks. Records
//! between the stored position and the crash are sent again; they carry the
//! same `source` coordinates as before, which is how the sink recognises and
//! skips them.

use std::time::Duration;

use change_stream::position::GtidPosition;
use change_stream::table::TableId;
use mysql_async::Value;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::error::SourceError;

/// Key of the position record on the positions topic.
pub const POSITION_KEY: &str = "source";

/// The stored position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredPosition {
    /// The source server's server_id, to catch a config pointed at another
    /// server.
    pub server_id: u32,
    /// GTID position: for streaming, of the last transaction whose records
    /// are all acknowledged; for a snapshot, of the snapshot point.
    pub gtid: GtidPosition,
    /// Binlog file and offset matching `gtid`.
    pub file: String,
    pub pos: u64,
    /// Present while the snapshot is not finished.
    pub snapshot: Option<SnapshotProgress>,
}

impl StoredPosition {
    /// Tells telemetry this position is stored: the GTID position, the
    /// binlog coordinates, and whether the full synchronization goes on.
    pub fn report(&self) {
        let during = if self.snapshot.is_some() {
            " (full synchronization)"
        } else {
            ""
        };
        change_stream::telemetry::position(format!(
            "{} at {}:{}{during}",
            self.gtid, self.file, self.pos
        ));
    }
}

/// How far the snapshot taken at `StoredPosition`'s point has got.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Tables whose every row is acknowledged.
    pub tables_done: Vec<TableId>,
    /// The parts of tables planned and not done yet (a table, or a key
    /// range of one), each with the key of its last acknowledged row.
    #[serde(default)]
    pub in_progress: Vec<TableProgress>,
    /// The one table being read, in positions stored by earlier versions
    /// ([`SnapshotProgress::normalized`] turns it into a part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<TableId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<KeyValue>>,
}

/// A part of a table to read, and the key of its last acknowledged row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    pub table: TableId,
    /// The rows it covers; `None` is the whole table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<KeyRange>,
    pub last_key: Option<Vec<KeyValue>>,
}

/// Rows whose first key column lies between two bounds, both included;
/// `None` leaves that side open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyRange {
    pub from: Option<KeyValue>,
    pub to: Option<KeyValue>,
}

impl SnapshotProgress {
    /// The same progress with an earlier version's one table as a part.
    pub fn normalized(mut self) -> Self {
        if let Some(table) = self.current.take() {
            let last_key = self.last_key.take();
            if !self.in_progress.iter().any(|t| t.table == table) {
                self.in_progress.push(TableProgress {
                    table,
                    range: None,
                    last_key,
                });
            }
        }
        self
    }

    /// Records how far a part has got.
    pub fn advance(&mut self, part: &TableProgress) {
        match self
            .in_progress
            .iter_mut()
            .find(|t| t.table == part.table && t.range == part.range)
        {
            Some(t) => t.last_key = part.last_key.clone(),
            None => self.in_progress.push(part.clone()),
        }
    }

    /// Ends a part; the table is done once no part of it is left.
    pub fn finish(&mut self, table: &TableId, range: &Option<KeyRange>) {
        self.in_progress
            .retain(|t| !(&t.table == table && &t.range == range));
        if !self.in_progress.iter().any(|t| &t.table == table) && !self.tables_done.contains(table)
        {
            self.tables_done.push(table.clone());
        }
    }

    /// Whether any part of the table is planned.
    pub fn planned(&self, id: &TableId) -> bool {
        self.in_progress.iter().any(|t| &t.table == id)
    }
}

/// A key column value in a form that survives JSON exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum KeyValue {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Hex of the bytes.
    Bytes(String),
    Date(u16, u8, u8, u8, u8, u8, u32),
    Time(bool, u32, u8, u8, u8, u32),
}

impl From<&Value> for KeyValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::NULL => KeyValue::Null,
            Value::Int(i) => KeyValue::Int(*i),
            Value::UInt(u) => KeyValue::UInt(*u),
            Value::Float(f) => KeyValue::Float(*f),
            Value::Double(f) => KeyValue::Double(*f),
            Value::Bytes(b) => KeyValue::Bytes(change_stream::avro::hex(b)),
            Value::Date(y, mo, d, h, mi, s, us) => KeyValue::Date(*y, *mo, *d, *h, *mi, *s, *us),
            Value::Time(n, d, h, m, s, us) => KeyValue::Time(*n, *d, *h, *m, *s, *us),
        }
    }
}

impl KeyValue {
    pub fn to_value(&self) -> Result<Value, SourceError> {
        Ok(match self {
            KeyValue::Null => Value::NULL,
            KeyValue::Int(i) => Value::Int(*i),
            KeyValue::UInt(u) => Value::UInt(*u),
            KeyValue::Float(f) => Value::Float(*f),
            KeyValue::Double(f) => Value::Double(*f),
            KeyValue::Bytes(h) => Value::Bytes(unhex(h).ok_or_else(|| SourceError::Config {
                message: format!(
                    "stored snapshot key `{h}` is not hex; the positions topic is damaged"
                ),
            })?),
            KeyValue::Date(y, mo, d, h, mi, s, us) => Value::Date(*y, *mo, *d, *h, *mi, *s, *us),
            KeyValue::Time(n, d, h, m, s, us) => Value::Time(*n, *d, *h, *m, *s, *us),
        })
    }
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
        .collect()
}

/// Reads the last stored position from the positions topic.
pub fn load(config: &ClientConfig, topic: &str) -> Result<Option<StoredPosition>, SourceError> {
    let records = change_stream::kafka::read_to_end(config, topic, Duration::from_secs(60))
        .map_err(|e| SourceError::Kafka(e.to_string()))?;
    let mut last = None;
    for (key, value) in records {
        if key.as_deref() != Some(POSITION_KEY.as_bytes()) {
            continue;
        }
        last = match value {
            None => None,
            Some(v) => Some(serde_json::from_slice::<StoredPosition>(&v).map_err(|e| {
                SourceError::Kafka(format!(
                    "the stored position on {topic} cannot be read ({e}); delete the topic to start over with a new snapshot"
                ))
            })?),
        };
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_position_round_trips() {
        let p = StoredPosition {
            server_id: 1,
            gtid: "0-1-10".parse().unwrap(),
            file: "mariadb-bin.000002".into(),
            pos: 345,
            snapshot: Some(SnapshotProgress {
                tables_done: vec![TableId::new("shop", "a")],
                in_progress: Vec::new(),
                current: Some(TableId::new("shop", "b")),
                last_key: Some(vec![
                    KeyValue::from(&Value::Int(-5)),
                    KeyValue::from(&Value::Bytes(vec![0, 255, 10])),
                    KeyValue::from(&Value::Date(2024, 1, 2, 3, 4, 5, 6)),
                ]),
            }),
        };
        let json = serde_json::to_string(&p).unwrap();
        let back: StoredPosition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let key = back.snapshot.unwrap().last_key.unwrap();
        assert_eq!(key[1].to_value().unwrap(), Value::Bytes(vec![0, 255, 10]));
    }

    #[test]
    fn progress_of_parts_of_tables_and_of_earlier_versions() {
        let x = TableId::new("d", "x");
        let y = TableId::new("d", "y");
        let low = Some(KeyRange {
            from: None,
            to: Some(KeyValue::Int(99)),
        });
        let high = Some(KeyRange {
            from: Some(KeyValue::Int(100)),
            to: None,
        });
        let mut p = SnapshotProgress::default();
        for range in [&low, &high] {
            p.advance(&TableProgress {
                table: x.clone(),
                range: range.clone(),
                last_key: None,
            });
        }
        p.advance(&TableProgress {
            table: y.clone(),
            range: None,
            last_key: None,
        });
        p.advance(&TableProgress {
            table: x.clone(),
            range: high.clone(),
            last_key: Some(vec![KeyValue::Int(150)]),
        });
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("current"), "{json}");
        let mut back: SnapshotProgress = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.in_progress.len(), 3);
        assert_eq!(back.in_progress[1].last_key, Some(vec![KeyValue::Int(150)]));
        // A table is done when its last part is.
        back.finish(&x, &high);
        assert!(back.tables_done.is_empty());
        back.finish(&x, &low);
        assert_eq!(back.tables_done, vec![x.clone()]);
        assert!(!back.planned(&x) && back.planned(&y));
        // As an earlier version stored it.
        let old: SnapshotProgress = serde_json::from_str(
            r#"{"tables_done":[],"current":{"database":"d","table":"x"},"last_key":[{"t":"Int","v":3}]}"#,
        )
        .unwrap();
        let old = old.normalized();
        assert_eq!(old.current, None);
        assert_eq!(
            old.in_progress,
            vec![TableProgress {
                table: x,
                range: None,
                last_key: Some(vec![KeyValue::Int(3)]),
            }]
        );
    }
}
