//! Transaction metadata (`schemas/transaction.avsc`), as Debezium's
//! `provide.transaction.metadata` writes it: on `<prefix>.transaction`, a
//! BEGIN record before the first change record of each source transaction
//! and an END record after its last, with the number of change records per
//! table, in the source's commit order; every change record of the
//! transaction carries its GTID and its place in a `transaction` block.
//! A consumer holds all of a transaction once it has, on each table's
//! topic, as many records with its id as the END says.

use std::sync::OnceLock;

use apache_avro::types::Value;

use crate::avro::{put_long, put_str, AvroSchema};
use crate::Error;

pub const BEGIN: &str = "BEGIN";
pub const END: &str = "END";

/// One record of the transaction topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionEvent {
    /// [`BEGIN`] or [`END`].
    pub status: String,
    /// The transaction's GTID.
    pub id: String,
    /// END: the change records of the transaction.
    pub event_count: Option<u64>,
    /// END: `database.table` and its change records, in the order the
    /// tables first appear in the transaction.
    pub data_collections: Option<Vec<(String, u64)>>,
    pub ts_ms: i64,
}

/// The name a table goes by in `data_collections`.
pub fn data_collection(database: &str, table: &str) -> String {
    format!("{database}.{table}")
}

/// `schemas/transaction.avsc`.
pub fn schema() -> &'static AvroSchema {
    static SCHEMA: OnceLock<AvroSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        AvroSchema::parse(include_str!("../../schemas/transaction.avsc"))
            .expect("transaction.avsc parses")
    })
}

/// `schemas/transaction_key.avsc`.
pub fn key_schema() -> &'static AvroSchema {
    static SCHEMA: OnceLock<AvroSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        AvroSchema::parse(include_str!("../../schemas/transaction_key.avsc"))
            .expect("transaction_key.avsc parses")
    })
}

/// The single-object encoded key of a transaction's records.
pub fn encode_key(id: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&key_schema().header());
    put_str(out, id);
}

impl TransactionEvent {
    pub fn begin(id: &str, ts_ms: i64) -> Self {
        Self {
            status: BEGIN.into(),
            id: id.into(),
            event_count: None,
            data_collections: None,
            ts_ms,
        }
    }

    pub fn is_end(&self) -> bool {
        self.status == END
    }

    /// Appends the single-object encoding to `out` (two records per
    /// transaction: written directly, in the schema's field order).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&schema().header());
        put_str(out, &self.status);
        put_str(out, &self.id);
        match self.event_count {
            None => put_long(out, 0),
            Some(n) => {
                put_long(out, 1);
                put_long(out, n as i64);
            }
        }
        match &self.data_collections {
            None => put_long(out, 0),
            Some(tables) => {
                put_long(out, 1);
                if !tables.is_empty() {
                    put_long(out, tables.len() as i64);
                    for (name, n) in tables {
                        put_str(out, name);
                        put_long(out, *n as i64);
                    }
                }
                put_long(out, 0);
            }
        }
        put_long(out, self.ts_ms);
    }

    /// Decodes a record written with [`schema()`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let value = crate::avro::read_single_object(schema(), bytes, "transaction record")?;
        let bad = |what: &str| Error::Decode(format!("transaction record: bad {what}"));
        let Value::Record(fields) = value else {
            return Err(bad("record"));
        };
        let mut event = TransactionEvent::begin("", 0);
        for (name, v) in fields {
            let v = match v {
                Value::Union(_, v) => *v,
                v => v,
            };
            match (name.as_str(), v) {
                ("status", Value::String(x)) => event.status = x,
                ("id", Value::String(x)) => event.id = x,
                ("event_count", Value::Long(n)) => event.event_count = Some(n as u64),
                ("data_collections", Value::Array(items)) => {
                    let mut tables = Vec::with_capacity(items.len());
                    for item in items {
                        let Value::Record(f) = item else {
                            return Err(bad("data collection"));
                        };
                        let (mut name, mut n) = (None, None);
                        for (k, v) in f {
                            match (k.as_str(), v) {
                                ("data_collection", Value::String(x)) => name = Some(x),
                                ("event_count", Value::Long(x)) => n = Some(x as u64),
                                _ => {}
                            }
                        }
                        tables.push((
                            name.ok_or_else(|| bad("data collection"))?,
                            n.ok_or_else(|| bad("data collection"))?,
                        ));
                    }
                    event.data_collections = Some(tables);
                }
                ("ts_ms", Value::Long(t)) => event.ts_ms = t,
                _ => {}
            }
        }
        if event.status != BEGIN && event.status != END {
            return Err(bad("status"));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::split_single_object;

    #[test]
    fn records_round_trip_through_apache_avro() {
        let begin = TransactionEvent::begin("0-1-42", 1_700_000_000_000);
        let end = TransactionEvent {
            status: END.into(),
            id: "0-1-42".into(),
            event_count: Some(3),
            data_collections: Some(vec![("shop.orders".into(), 1), ("shop.items".into(), 2)]),
            ts_ms: 1_700_000_000_000,
        };
        let empty = TransactionEvent {
            data_collections: Some(vec![]),
            event_count: Some(0),
            ..end.clone()
        };
        for e in [begin, end, empty] {
            let mut buf = Vec::new();
            e.encode(&mut buf);
            assert_eq!(TransactionEvent::decode(&buf).unwrap(), e);
        }
        let mut key = Vec::new();
        encode_key("0-1-42", &mut key);
        let (fp, mut datum) = split_single_object(&key).unwrap();
        assert_eq!(fp, key_schema().fingerprint);
        let v = apache_avro::reader::datum::GenericDatumReader::builder(&key_schema().schema)
            .build()
            .unwrap()
            .read_value(&mut datum)
            .unwrap();
        assert_eq!(
            v,
            Value::Record(vec![("id".into(), Value::String("0-1-42".into()))])
        );
    }
}
