//! The Avro encoding of change records.
//!
//! Every record on our topics is Avro *single-object encoded*: the two bytes
//! `0xC3 0x01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the
//! writer schema's Parsing Canonical Form, then the datum. Every schema is
//! published once on `<prefix>.schemas`, keyed by the fingerprint as 16
//! lowercase hex digits, with the schema's JSON text as value, so any Avro
//! library can decode the topics without our code.
//!
//! Per table there are two schemas, generated from the [`TableSchema`]:
//! - the key: a record `Key` of the key columns (absent for tables without a
//!   usable key, whose records have no Kafka key);
//! - the value: a record `Envelope { before, after, op, ts_ms, source,
//!   transaction }` where `before` and `after` are a nullable record `Row`
//!   of all columns, `source` is `schemas/source.avsc` and `transaction` a
//!   nullable `schemas/transaction_block.avsc` (null for snapshot records).
//!
//! Each field of `Row` and `Key` carries `mariadb.name`,
//! `mariadb.data_type` and `mariadb.type` attributes with the column's real
//! name and types, `mariadb.key` on key columns and `mariadb.generated`
//! (`stored` or `virtual`) on generated ones, so a decoder needs nothing but
//! the writer schema.
//!
//! The Parsing Canonical Form, and so the fingerprint, ignores logical types
//! and attributes: a DECIMAL(10,2) column changed to DECIMAL(10,4) would
//! keep its fingerprint while its values change meaning. The envelope's
//! namespace therefore ends with `.v` and 8 hex digits of the fingerprint of
//! the row record's full JSON text: every table shape has its own writer
//! schema. (Schema resolution matches records by unqualified name, so a
//! reader schema still resolves against every version.) The key schema has
//! no such suffix, so that a key's bytes stay the same across versions and
//! compaction keeps working.
//!
//! Encoding is written here rather than through apache-avro's generic
//! `Value` writer, which builds a tree with a name string per field and a
//! hash map per record: the schemas are generated from the same
//! `TableSchema` that drives the encoder, and the tests decode the output with
//! apache-avro to prove the two agree. Decoding uses apache-avro.

use std::collections::HashMap;

use apache_avro::rabin::Rabin;
use apache_avro::types::Value;
use apache_avro::Schema;
use digest::Digest;
use num_bigint::{BigInt, Sign};
use serde_json::{json, Map, Value as Json};

use crate::event::{ChangeRecord, Op, SourceInfo, TransactionBlock};
use crate::table::{Column, ColumnKind, Generated, KeyKind, TableId, TableSchema};
use crate::value::{format_time, parse_time, Cell, Date, DateTime};
use crate::Error;

/// `schemas/source.avsc`.
pub const SOURCE_SCHEMA: &str = include_str!("../../schemas/source.avsc");
/// `schemas/transaction_block.avsc`.
pub const TRANSACTION_BLOCK_SCHEMA: &str = include_str!("../../schemas/transaction_block.avsc");
/// `schemas/schema_change.avsc` (refers to `tributary.Source`).
pub const SCHEMA_CHANGE_SCHEMA: &str = include_str!("../../schemas/schema_change.avsc");

/// Decodes a single-object encoded datum written with `schema` (`what`
/// names the record in errors), through apache-avro's generic values.
pub fn read_single_object(schema: &AvroSchema, bytes: &[u8], what: &str) -> Result<Value, Error> {
    let (fp, mut datum) = split_single_object(bytes)?;
    if fp != schema.fingerprint {
        return Err(Error::Decode(format!(
            "{what} written with schema {fp:016x}, this version reads {}",
            schema.fingerprint_hex()
        )));
    }
    apache_avro::reader::datum::GenericDatumReader::builder(&schema.schema)
        .build()
        .map_err(|e| Error::Decode(e.to_string()))?
        .read_value(&mut datum)
        .map_err(|e| Error::Decode(e.to_string()))
}

/// The first two bytes of a single-object encoded datum.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

/// A schema with its JSON text and fingerprint.
#[derive(Clone, Debug)]
pub struct AvroSchema {
    /// The JSON text, as published on the schemas topic.
    pub json: String,
    /// CRC-64-AVRO of the Parsing Canonical Form.
    pub fingerprint: u64,
    pub schema: Schema,
}

impl AvroSchema {
    /// Parses a self-contained schema.
    pub fn parse(json: &str) -> Result<Self, Error> {
        let value: Json = serde_json::from_str(json)
            .map_err(|e| Error::Schema(format!("schema is not JSON: {e}")))?;
        let schema = Schema::parse(&value).map_err(|e| Error::Schema(e.to_string()))?;
        let json = serde_json::to_string(&value).expect("JSON value serializes");
        Ok(Self {
            fingerprint: fingerprint(canonical_form(&value)),
            json,
            schema,
        })
    }

    /// The 10-byte single-object header for this schema.
    pub fn header(&self) -> [u8; 10] {
        single_object_header(self.fingerprint)
    }

    /// The key under which this schema is published.
    pub fn fingerprint_hex(&self) -> String {
        format!("{:016x}", self.fingerprint)
    }
}

pub fn single_object_header(fingerprint: u64) -> [u8; 10] {
    let mut h = [0u8; 10];
    h[..2].copy_from_slice(&SINGLE_OBJECT_MAGIC);
    h[2..].copy_from_slice(&fingerprint.to_le_bytes());
    h
}

/// Splits a single-object encoded message into its fingerprint and datum.
pub fn split_single_object(bytes: &[u8]) -> Result<(u64, &[u8]), Error> {
    if bytes.len() < 10 || bytes[..2] != SINGLE_OBJECT_MAGIC {
        return Err(Error::Decode(
            "message is not Avro single-object encoded (no C3 01 header)".into(),
        ));
    }
    let fp = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
    Ok((fp, &bytes[10..]))
}

/// CRC-64-AVRO (Rabin) of a text (or of any bytes).
pub fn fingerprint(text: impl AsRef<[u8]>) -> u64 {
    let mut hasher = Rabin::new();
    hasher.update(text.as_ref());
    u64::from_le_bytes(hasher.finalize().as_slice().try_into().expect("8 bytes"))
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of a schema, as the Avro specification defines
/// it (and Java's `SchemaNormalization` implements it): full names, only the
/// attributes that matter for parsing, in a fixed order, no whitespace.
/// Logical types are stripped, so `{"type":"long","logicalType":...}` becomes
/// `"long"`.
pub fn canonical_form(schema: &Json) -> String {
    let mut out = String::new();
    write_canonical(schema, None, &mut out);
    out
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

fn write_canonical(schema: &Json, namespace: Option<&str>, out: &mut String) {
    let quote = |s: &str| serde_json::to_string(s).expect("string serializes");
    match schema {
        Json::String(s) => {
            if PRIMITIVES.contains(&s.as_str()) {
                out.push_str(&quote(s));
            } else {
                out.push_str(&quote(&full_name(s, namespace)));
            }
        }
        Json::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(b, namespace, out);
            }
            out.push(']');
        }
        Json::Object(obj) => {
            let ty = obj.get("type").and_then(Json::as_str).unwrap_or("");
            match ty {
                "record" | "error" | "enum" | "fixed" => {
                    let name = obj.get("name").and_then(Json::as_str).unwrap_or("");
                    let ns = obj.get("namespace").and_then(Json::as_str).or(namespace);
                    let full = full_name(name, ns);
                    let inner_ns = full.rsplit_once('.').map(|(ns, _)| ns.to_string());
                    out.push_str(&format!(
                        "{{\"name\":{},\"type\":{}",
                        quote(&full),
                        quote(ty)
                    ));
                    match ty {
                        "enum" => {
                            out.push_str(",\"symbols\":");
                            out.push_str(&serde_json::to_string(&obj["symbols"]).expect("json"));
                        }
                        "fixed" => {
                            out.push_str(&format!(",\"size\":{}", obj["size"]));
                        }
                        _ => {
                            out.push_str(",\"fields\":[");
                            let fields = obj.get("fields").and_then(Json::as_array);
                            for (i, f) in fields.into_iter().flatten().enumerate() {
                                if i > 0 {
                                    out.push(',');
                                }
                                let fname = f.get("name").and_then(Json::as_str).unwrap_or("");
                                out.push_str(&format!("{{\"name\":{},\"type\":", quote(fname)));
                                write_canonical(&f["type"], inner_ns.as_deref(), out);
                                out.push('}');
                            }
                            out.push(']');
                        }
                    }
                    out.push('}');
                }
                "array" => {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    write_canonical(&obj["items"], namespace, out);
                    out.push('}');
                }
                "map" => {
                    out.push_str("{\"type\":\"map\",\"values\":");
                    write_canonical(&obj["values"], namespace, out);
                    out.push('}');
                }
                _ => write_canonical(&obj["type"], namespace, out),
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A name made valid for Avro (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn avro_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// The record spatial values are written as: Well-Known Binary and the
/// SRID (MariaDB holds them as a 4-byte little-endian SRID, then the WKB).
const GEOMETRY_NAME: &str = "tributary.Geometry";

/// The Avro type of a column's values, without nullability.
/// `geometry_defined` says whether the schema being built already defines
/// the geometry record (a named type is defined once, then named).
fn column_type_json(kind: &ColumnKind, geometry_defined: &mut bool) -> Json {
    match kind {
        ColumnKind::Int { bytes: 1..=3, .. }
        | ColumnKind::Int {
            bytes: 4,
            unsigned: false,
        } => {
            json!("int")
        }
        ColumnKind::Int {
            bytes: 8,
            unsigned: true,
        } => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0})
        }
        ColumnKind::Int { .. } => json!("long"),
        ColumnKind::Decimal { precision, scale } => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
        }
        ColumnKind::Float => json!("float"),
        ColumnKind::Double => json!("double"),
        ColumnKind::Bit { .. } | ColumnKind::Bytes => json!("bytes"),
        ColumnKind::Geometry if *geometry_defined => json!(GEOMETRY_NAME),
        ColumnKind::Geometry => {
            *geometry_defined = true;
            json!({"type": "record", "name": GEOMETRY_NAME, "fields": [
                {"name": "wkb", "type": "bytes"},
                {"name": "srid", "type": "long"},
            ]})
        }
        ColumnKind::Date => json!([{"type": "int", "logicalType": "date"}, "string"]),
        ColumnKind::DateTime { .. } => {
            json!([{"type": "long", "logicalType": "local-timestamp-micros"}, "string"])
        }
        ColumnKind::Timestamp { .. } => {
            json!([{"type": "long", "logicalType": "timestamp-micros"}, "string"])
        }
        ColumnKind::Time { .. } => json!("long"),
        ColumnKind::Year => json!("int"),
        ColumnKind::Uuid => json!({"type": "string", "logicalType": "uuid"}),
        ColumnKind::Text
        | ColumnKind::Enum { .. }
        | ColumnKind::Set { .. }
        | ColumnKind::Inet4
        | ColumnKind::Inet6 => json!("string"),
    }
}

/// The field's type with nullability: unions are flattened, `null` first.
fn field_type_json(kind: &ColumnKind, nullable: bool, geometry_defined: &mut bool) -> Json {
    let t = column_type_json(kind, geometry_defined);
    match (nullable, t) {
        (false, t) => t,
        (true, Json::Array(mut branches)) => {
            branches.insert(0, json!("null"));
            Json::Array(branches)
        }
        (true, t) => json!(["null", t]),
    }
}

/// How one column is encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldLayout {
    /// The column's name at the source.
    pub column: String,
    /// `DATA_TYPE` and `COLUMN_TYPE` at the source.
    pub data_type: String,
    pub column_type: String,
    pub kind: ColumnKind,
    pub nullable: bool,
    /// Part of the key that identifies rows.
    pub key: bool,
    /// A generated column (its value is computed, never written).
    pub generated: bool,
}

/// The fields of a `Row` or `Key` record, in order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RowLayout {
    pub fields: Vec<FieldLayout>,
}

impl RowLayout {
    /// Reads the layout back from a parsed `Row`/`Key` record schema, through
    /// the `mariadb.*` field attributes.
    pub fn from_record_schema(schema: &Schema) -> Result<Self, Error> {
        let Schema::Record(rec) = schema else {
            return Err(Error::Schema("row schema is not a record".into()));
        };
        let mut fields = Vec::with_capacity(rec.fields.len());
        for f in &rec.fields {
            let attr = |k: &str| f.custom_attributes.get(k).and_then(Json::as_str);
            let (Some(name), Some(data_type), Some(column_type)) = (
                attr("mariadb.name"),
                attr("mariadb.data_type"),
                attr("mariadb.type"),
            ) else {
                return Err(Error::Schema(format!(
                    "field `{}` lacks the mariadb.name/data_type/type attributes",
                    f.name
                )));
            };
            let nullable = matches!(&f.schema, Schema::Union(u) if matches!(u.variants().first(), Some(Schema::Null)));
            fields.push(FieldLayout {
                column: name.to_string(),
                data_type: data_type.to_string(),
                column_type: column_type.to_string(),
                kind: ColumnKind::parse(data_type, column_type)?,
                nullable,
                key: f.custom_attributes.get("mariadb.key") == Some(&Json::Bool(true)),
                generated: f.custom_attributes.contains_key("mariadb.generated"),
            });
        }
        Ok(Self { fields })
    }
}

/// The Avro schemas of one table and the encoders that go with them.
#[derive(Clone, Debug)]
pub struct TableCodec {
    pub key: Option<AvroSchema>,
    pub value: AvroSchema,
    /// Indexes of the key columns in a row.
    key_columns: Vec<usize>,
    kinds: Vec<(ColumnKind, bool)>,
}

impl TableCodec {
    /// Generates the key and value schemas of a table.
    pub fn new(prefix: &str, table: &TableSchema) -> Result<Self, Error> {
        let namespace = format!(
            "{}.{}.{}",
            prefix
                .split('.')
                .map(avro_name)
                .collect::<Vec<_>>()
                .join("."),
            avro_name(&table.id.database),
            avro_name(&table.id.table)
        );
        let mut used = HashMap::new();
        let mut field_names = Vec::with_capacity(table.columns.len());
        for c in &table.columns {
            let base = avro_name(&c.name);
            let n = used.entry(base.clone()).or_insert(0u32);
            *n += 1;
            field_names.push(if *n == 1 { base } else { format!("{base}_{n}") });
        }
        let field = |i: usize, geometry_defined: &mut bool| {
            let c = &table.columns[i];
            let mut f = Map::new();
            f.insert("name".into(), json!(field_names[i]));
            f.insert(
                "type".into(),
                field_type_json(&c.kind, c.nullable, geometry_defined),
            );
            if c.nullable {
                f.insert("default".into(), Json::Null);
            }
            f.insert("mariadb.name".into(), json!(c.name));
            f.insert("mariadb.data_type".into(), json!(c.data_type));
            f.insert("mariadb.type".into(), json!(c.column_type));
            if table.key.contains(&i) {
                f.insert("mariadb.key".into(), json!(true));
            }
            if let Some(g) = &c.generated {
                f.insert(
                    "mariadb.generated".into(),
                    json!(if g.stored { "stored" } else { "virtual" }),
                );
            }
            Json::Object(f)
        };
        let mut defined = false;
        let row_fields: Vec<Json> = (0..table.columns.len())
            .map(|i| field(i, &mut defined))
            .collect();
        let row = json!({
            "type": "record",
            "name": "Row",
            "fields": row_fields,
        });
        let version = format!("{:08x}", fingerprint(row.to_string()) >> 32);
        let source: Json = serde_json::from_str(SOURCE_SCHEMA).expect("source.avsc is JSON");
        let block: Json =
            serde_json::from_str(TRANSACTION_BLOCK_SCHEMA).expect("transaction_block.avsc is JSON");
        let envelope = json!({
            "type": "record",
            "name": "Envelope",
            "namespace": format!("{namespace}.v{version}"),
            "fields": [
                {"name": "before", "type": ["null", row], "default": null},
                {"name": "after", "type": ["null", "Row"], "default": null},
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": "long"},
                {"name": "source", "type": source},
                {"name": "transaction", "type": ["null", block], "default": null},
            ],
        });
        let keyed = table.key_kind != KeyKind::None && !table.key.is_empty();
        let key = if !keyed {
            None
        } else {
            let mut defined = false;
            let key_fields: Vec<Json> = table.key.iter().map(|&i| field(i, &mut defined)).collect();
            let key = json!({
                "type": "record",
                "name": "Key",
                "namespace": namespace,
                "fields": key_fields,
            });
            Some(AvroSchema::parse(&key.to_string())?)
        };
        Ok(Self {
            key,
            value: AvroSchema::parse(&envelope.to_string())?,
            key_columns: if keyed { table.key.clone() } else { Vec::new() },
            kinds: table
                .columns
                .iter()
                .map(|c| (c.kind.clone(), c.nullable))
                .collect(),
        })
    }

    /// Appends the single-object encoded key of `row` to `out`; `false`
    /// (nothing written) for a table without a key.
    pub fn encode_key(&self, row: &[Cell], out: &mut Vec<u8>) -> Result<bool, Error> {
        let Some(key) = &self.key else {
            return Ok(false);
        };
        out.extend_from_slice(&key.header());
        for &i in &self.key_columns {
            let (kind, nullable) = &self.kinds[i];
            encode_cell(kind, *nullable, &row[i], out)?;
        }
        Ok(true)
    }

    /// Appends a single-object encoded envelope to `out`.
    #[allow(clippy::too_many_arguments)] // the envelope's fields
    pub fn encode_envelope(
        &self,
        op: Op,
        before: Option<&[Cell]>,
        after: Option<&[Cell]>,
        ts_ms: i64,
        source: &SourceInfo,
        transaction: Option<&TransactionBlock>,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        out.extend_from_slice(&self.value.header());
        for image in [before, after] {
            match image {
                None => put_long(out, 0),
                Some(row) => {
                    if row.len() != self.kinds.len() {
                        return Err(Error::Encode(format!(
                            "row has {} values, the table has {} columns",
                            row.len(),
                            self.kinds.len()
                        )));
                    }
                    put_long(out, 1);
                    for ((kind, nullable), cell) in self.kinds.iter().zip(row) {
                        encode_cell(kind, *nullable, cell, out)?;
                    }
                }
            }
        }
        put_str(out, op.code());
        put_long(out, ts_ms);
        encode_source(source, out);
        match transaction {
            None => put_long(out, 0),
            Some(t) => {
                put_long(out, 1);
                put_str(out, &t.id);
                put_long(out, t.total_order as i64);
                put_long(out, t.data_collection_order as i64);
            }
        }
        Ok(())
    }
}

/// Encodes the `source` block, in the field order of `schemas/source.avsc`.
pub fn encode_source(s: &SourceInfo, out: &mut Vec<u8>) {
    put_str(out, &s.version);
    put_str(out, &s.name);
    put_long(out, s.server_id as i64);
    put_opt_str(out, s.gtid.as_deref());
    put_str(out, &s.file);
    put_long(out, s.pos as i64);
    put_long(out, s.row as i64);
    put_str(out, &s.db);
    put_opt_str(out, s.table.as_deref());
    put_long(out, s.ts_ms);
    out.push(s.snapshot as u8);
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put_long(out, 0),
        Some(s) => {
            put_long(out, 1);
            put_str(out, s);
        }
    }
}

/// Avro `long`/`int`: zig-zag, then a base-128 varint.
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn mismatch(kind: &ColumnKind, cell: &Cell) -> Error {
    Error::Encode(format!(
        "value {cell:?} does not fit a column of kind {kind:?}"
    ))
}

/// Encodes one value; `nullable` columns are unions with `null` first.
pub fn encode_cell(
    kind: &ColumnKind,
    nullable: bool,
    cell: &Cell,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    // Union branch offset: nullable fields have `null` at index 0.
    let base = nullable as i64;
    if cell.is_null() {
        if !nullable {
            return Err(Error::Encode(format!(
                "NULL in a NOT NULL column of kind {kind:?}"
            )));
        }
        put_long(out, 0);
        return Ok(());
    }
    let branch = |out: &mut Vec<u8>, i: i64| put_long(out, base + i);
    let plain = |out: &mut Vec<u8>| {
        if nullable {
            put_long(out, 1);
        }
    };
    match (kind, cell) {
        (
            ColumnKind::Int {
                bytes: 8,
                unsigned: true,
            },
            c,
        ) => {
            let v = match c {
                Cell::UInt(v) => *v,
                Cell::Int(v) if *v >= 0 => *v as u64,
                _ => return Err(mismatch(kind, cell)),
            };
            plain(out);
            put_bytes(out, &BigInt::from(v).to_signed_bytes_be());
        }
        (ColumnKind::Int { .. } | ColumnKind::Year, Cell::Int(v)) => {
            plain(out);
            put_long(out, *v);
        }
        (ColumnKind::Int { .. } | ColumnKind::Year, Cell::UInt(v)) => {
            plain(out);
            put_long(out, i64::try_from(*v).map_err(|_| mismatch(kind, cell))?);
        }
        (ColumnKind::Decimal { scale, .. }, Cell::Decimal(text)) => {
            plain(out);
            put_bytes(out, &decimal_to_bytes(text, *scale)?);
        }
        (ColumnKind::Float, Cell::Float(v)) => {
            plain(out);
            out.extend_from_slice(&v.to_le_bytes());
        }
        (ColumnKind::Float, Cell::Double(v)) => {
            plain(out);
            out.extend_from_slice(&(*v as f32).to_le_bytes());
        }
        (ColumnKind::Double, Cell::Double(v)) => {
            plain(out);
            out.extend_from_slice(&v.to_le_bytes());
        }
        (ColumnKind::Double, Cell::Float(v)) => {
            plain(out);
            out.extend_from_slice(&(*v as f64).to_le_bytes());
        }
        (ColumnKind::Bit { .. } | ColumnKind::Bytes, Cell::Bytes(b)) => {
            plain(out);
            put_bytes(out, b);
        }
        (ColumnKind::Geometry, Cell::Bytes(b)) if b.len() >= 4 => {
            plain(out);
            put_bytes(out, &b[4..]);
            put_long(
                out,
                u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as i64,
            );
        }
        (ColumnKind::Date, Cell::Date(d)) => {
            if d.is_calendar_date() {
                branch(out, 0);
                put_long(out, d.to_days());
            } else {
                branch(out, 1);
                put_str(out, &d.to_string());
            }
        }
        (ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. }, Cell::DateTime(dt)) => {
            if dt.is_calendar_date() {
                branch(out, 0);
                put_long(out, dt.to_micros());
            } else {
                branch(out, 1);
                put_str(out, &dt.to_string());
            }
        }
        (ColumnKind::Time { .. }, Cell::Time(us)) => {
            plain(out);
            put_long(out, *us);
        }
        (
            ColumnKind::Text
            | ColumnKind::Enum { .. }
            | ColumnKind::Set { .. }
            | ColumnKind::Inet4
            | ColumnKind::Inet6
            | ColumnKind::Uuid,
            Cell::Text(s),
        ) => {
            plain(out);
            put_str(out, s);
        }
        _ => return Err(mismatch(kind, cell)),
    }
    Ok(())
}

/// `-12.5` at scale 2 -> two's-complement big-endian bytes of -1250.
pub fn decimal_to_bytes(text: &str, scale: u8) -> Result<Vec<u8>, Error> {
    let bad = || Error::Encode(format!("`{text}` is not a decimal number"));
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if frac.len() > scale as usize
        || !(int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit()))
        || (int.is_empty() && frac.is_empty())
    {
        return Err(bad());
    }
    let mut digits = String::with_capacity(int.len() + scale as usize);
    digits.push_str(int);
    digits.push_str(frac);
    digits.extend(std::iter::repeat_n('0', scale as usize - frac.len()));
    let mut n = BigInt::parse_bytes(digits.as_bytes(), 10).ok_or_else(bad)?;
    if neg {
        n = -n;
    }
    Ok(n.to_signed_bytes_be())
}

/// Two's-complement big-endian unscaled bytes at `scale` -> decimal text as
/// MariaDB prints it (`-12.50`).
pub fn decimal_from_bytes(bytes: &[u8], scale: u8) -> String {
    let n = BigInt::from_signed_bytes_be(bytes);
    let neg = n.sign() == Sign::Minus;
    let mut digits = n.magnitude().to_string();
    let scale = scale as usize;
    if digits.len() <= scale {
        digits.insert_str(0, &"0".repeat(scale + 1 - digits.len()));
    }
    let mut s = String::with_capacity(digits.len() + 2);
    if neg {
        s.push('-');
    }
    let split = digits.len() - scale;
    s.push_str(&digits[..split]);
    if scale > 0 {
        s.push('.');
        s.push_str(&digits[split..]);
    }
    s
}

/// Turns a decoded Avro value back into a cell of the given kind.
pub fn decode_cell(kind: &ColumnKind, value: &Value) -> Result<Cell, Error> {
    let bad = || {
        Error::Decode(format!(
            "Avro value {value:?} does not fit a column of kind {kind:?}"
        ))
    };
    let value = match value {
        Value::Union(_, inner) => inner.as_ref(),
        v => v,
    };
    Ok(match (kind, value) {
        (_, Value::Null) => Cell::Null,
        (
            ColumnKind::Int {
                bytes: 8,
                unsigned: true,
            },
            Value::Decimal(d),
        ) => {
            let bytes: Vec<u8> = d.try_into().map_err(|_| bad())?;
            let n = BigInt::from_signed_bytes_be(&bytes);
            Cell::UInt(u64::try_from(n).map_err(|_| bad())?)
        }
        (ColumnKind::Int { unsigned: true, .. }, Value::Int(v)) => Cell::UInt(*v as u64),
        (ColumnKind::Int { unsigned: true, .. }, Value::Long(v)) => Cell::UInt(*v as u64),
        (ColumnKind::Int { .. } | ColumnKind::Year, Value::Int(v)) => Cell::Int(*v as i64),
        (ColumnKind::Int { .. } | ColumnKind::Year, Value::Long(v)) => Cell::Int(*v),
        (ColumnKind::Decimal { scale, .. }, Value::Decimal(d)) => {
            let bytes: Vec<u8> = d.try_into().map_err(|_| bad())?;
            Cell::Decimal(decimal_from_bytes(&bytes, *scale))
        }
        (ColumnKind::Float, Value::Float(v)) => Cell::Float(*v),
        (ColumnKind::Double, Value::Double(v)) => Cell::Double(*v),
        (ColumnKind::Bit { .. } | ColumnKind::Bytes, Value::Bytes(b)) => Cell::Bytes(b.clone()),
        (ColumnKind::Geometry, Value::Record(fields)) => {
            let (mut wkb, mut srid) = (None, None);
            for (name, v) in fields {
                match (name.as_str(), v) {
                    ("wkb", Value::Bytes(b)) => wkb = Some(b),
                    ("srid", Value::Long(n)) => srid = Some(*n),
                    _ => {}
                }
            }
            let (Some(wkb), Some(srid)) = (wkb, srid) else {
                return Err(bad());
            };
            let mut b = (u32::try_from(srid).map_err(|_| bad())?)
                .to_le_bytes()
                .to_vec();
            b.extend_from_slice(wkb);
            Cell::Bytes(b)
        }
        (ColumnKind::Date, Value::Date(days)) => {
            Cell::Date(Date::from_days(*days as i64).ok_or_else(bad)?)
        }
        (ColumnKind::Date, Value::String(s)) => Cell::Date(Date::parse(s).ok_or_else(bad)?),
        (
            ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. },
            Value::LocalTimestampMicros(us) | Value::TimestampMicros(us) | Value::Long(us),
        ) => Cell::DateTime(DateTime::from_micros(*us).ok_or_else(bad)?),
        (ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. }, Value::String(s)) => {
            Cell::DateTime(DateTime::parse(s).ok_or_else(bad)?)
        }
        (ColumnKind::Time { .. }, Value::Long(us)) => Cell::Time(*us),
        (ColumnKind::Time { .. }, Value::String(s)) => Cell::Time(parse_time(s).ok_or_else(bad)?),
        (ColumnKind::Uuid, Value::Uuid(u)) => Cell::Text(u.to_string()),
        (
            ColumnKind::Text
            | ColumnKind::Enum { .. }
            | ColumnKind::Set { .. }
            | ColumnKind::Inet4
            | ColumnKind::Inet6
            | ColumnKind::Uuid,
            Value::String(s),
        ) => Cell::Text(s.clone()),
        _ => return Err(bad()),
    })
}

/// Decodes a row record's fields by layout.
pub fn decode_row(layout: &RowLayout, value: &Value) -> Result<Option<Vec<Cell>>, Error> {
    let value = match value {
        Value::Union(_, inner) => inner.as_ref(),
        v => v,
    };
    match value {
        Value::Null => Ok(None),
        Value::Record(fields) => {
            if fields.len() != layout.fields.len() {
                return Err(Error::Decode(format!(
                    "row has {} fields, its schema {}",
                    fields.len(),
                    layout.fields.len()
                )));
            }
            layout
                .fields
                .iter()
                .zip(fields)
                .map(|(f, (_, v))| decode_cell(&f.kind, v))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        other => Err(Error::Decode(format!("row is not a record: {other:?}"))),
    }
}

/// The pieces needed to decode one envelope schema.
#[derive(Clone, Debug)]
pub struct EnvelopeCodec {
    pub schema: Schema,
    pub layout: RowLayout,
    /// Whether the envelope has the fields our encoder writes, in its order
    /// (`before`, `after`, `op`, `ts_ms`, `source` as in `source.avsc`,
    /// then `transaction` unless an earlier version wrote it): then it is
    /// decoded directly from the bytes, the mirror of
    /// [`TableCodec::encode_envelope`], without building Avro values first.
    direct: bool,
    /// Whether it has the `transaction` block.
    transaction: bool,
}

impl EnvelopeCodec {
    /// Prepares decoding for an envelope schema (as published on the schemas
    /// topic).
    pub fn new(json: &str) -> Result<Self, Error> {
        let parsed = AvroSchema::parse(json)?;
        let Schema::Record(rec) = &parsed.schema else {
            return Err(Error::Schema("envelope schema is not a record".into()));
        };
        let before = rec
            .fields
            .iter()
            .find(|f| f.name == "before")
            .ok_or_else(|| Error::Schema("envelope schema has no `before` field".into()))?;
        let row = match &before.schema {
            Schema::Union(u) => u
                .variants()
                .iter()
                .find(|s| matches!(s, Schema::Record(_)))
                .ok_or_else(|| Error::Schema("`before` is not a nullable record".into()))?,
            _ => return Err(Error::Schema("`before` is not a nullable record".into())),
        };
        let names: Vec<&str> = rec.fields.iter().map(|f| f.name.as_str()).collect();
        let source_fields: Option<Vec<&str>> = rec
            .fields
            .iter()
            .find(|f| f.name == "source")
            .and_then(|f| match &f.schema {
                Schema::Record(r) => Some(r.fields.iter().map(|f| f.name.as_str()).collect()),
                _ => None,
            });
        const SOURCE_FIELDS: [&str; 11] = [
            "version",
            "name",
            "server_id",
            "gtid",
            "file",
            "pos",
            "row",
            "db",
            "table",
            "ts_ms",
            "snapshot",
        ];
        let block_fields: Option<Vec<&str>> = rec
            .fields
            .iter()
            .find(|f| f.name == "transaction")
            .and_then(|f| match &f.schema {
                Schema::Union(u) => match u.variants() {
                    [Schema::Null, Schema::Record(r)] => {
                        Some(r.fields.iter().map(|f| f.name.as_str()).collect())
                    }
                    _ => None,
                },
                _ => None,
            });
        let ours = source_fields.as_deref() == Some(&SOURCE_FIELDS[..]);
        let earlier = names == ["before", "after", "op", "ts_ms", "source"];
        let current = names == ["before", "after", "op", "ts_ms", "source", "transaction"]
            && block_fields.as_deref() == Some(&["id", "total_order", "data_collection_order"][..]);
        Ok(Self {
            layout: RowLayout::from_record_schema(row)?,
            schema: parsed.schema,
            direct: ours && (earlier || current),
            transaction: current,
        })
    }

    /// The table's shape as this writer schema describes it: columns,
    /// nullability, key and generated columns (not its CREATE TABLE text).
    pub fn table_shape(&self, id: TableId) -> TableSchema {
        let columns = self
            .layout
            .fields
            .iter()
            .map(|f| Column {
                name: f.column.clone(),
                data_type: f.data_type.clone(),
                column_type: f.column_type.clone(),
                kind: f.kind.clone(),
                nullable: f.nullable,
                charset: None,
                collation: None,
                generated: f.generated.then(|| Generated {
                    expression: String::new(),
                    stored: false,
                }),
            })
            .collect();
        let key: Vec<usize> = (0..self.layout.fields.len())
            .filter(|&i| self.layout.fields[i].key)
            .collect();
        TableSchema {
            id,
            columns,
            key_kind: if key.is_empty() {
                KeyKind::None
            } else {
                KeyKind::Primary
            },
            key,
            create_table: String::new(),
        }
    }

    /// Decodes an envelope datum (without the single-object header).
    pub fn decode(&self, datum: &[u8]) -> Result<ChangeRecord, Error> {
        if !self.direct {
            return self.decode_generic(datum);
        }
        let mut c = Cursor(datum);
        let image = |c: &mut Cursor| -> Result<Option<Vec<Cell>>, Error> {
            match c.long()? {
                0 => Ok(None),
                1 => self
                    .layout
                    .fields
                    .iter()
                    .map(|f| c.cell(&f.kind, f.nullable))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                b => Err(Error::Decode(format!("row union branch {b}"))),
            }
        };
        let before = image(&mut c)?;
        let after = image(&mut c)?;
        let op = Op::from_code(c.str()?)
            .ok_or_else(|| Error::Decode("envelope has no valid `op`".into()))?;
        let ts_ms = c.long()?;
        let source = SourceInfo {
            version: c.str()?.to_string(),
            name: c.str()?.to_string(),
            server_id: c.long()? as u32,
            gtid: c.opt_str()?,
            file: c.str()?.to_string(),
            pos: c.long()? as u64,
            row: c.long()? as u32,
            db: c.str()?.to_string(),
            table: c.opt_str()?,
            ts_ms: c.long()?,
            snapshot: c.byte()? != 0,
        };
        let transaction = match self.transaction {
            false => None,
            true => match c.long()? {
                0 => None,
                1 => Some(TransactionBlock {
                    id: c.str()?.to_string(),
                    total_order: c.long()? as u64,
                    data_collection_order: c.long()? as u64,
                }),
                b => return Err(Error::Decode(format!("transaction union branch {b}"))),
            },
        };
        Ok(ChangeRecord {
            op,
            before,
            after,
            ts_ms,
            source,
            transaction,
        })
    }

    /// Decodes an envelope datum through apache-avro's generic values: for
    /// an envelope of another shape than ours, and to check the direct
    /// decoder against.
    pub fn decode_generic(&self, mut datum: &[u8]) -> Result<ChangeRecord, Error> {
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&self.schema)
            .build()
            .map_err(|e| Error::Decode(e.to_string()))?
            .read_value(&mut datum)
            .map_err(|e| Error::Decode(e.to_string()))?;
        let Value::Record(fields) = value else {
            return Err(Error::Decode("envelope is not a record".into()));
        };
        let mut before = None;
        let mut after = None;
        let mut op = None;
        let mut ts_ms = 0;
        let mut source = None;
        let mut transaction = None;
        for (name, v) in &fields {
            match name.as_str() {
                "before" => before = decode_row(&self.layout, v)?,
                "after" => after = decode_row(&self.layout, v)?,
                "op" => {
                    if let Value::String(s) = v {
                        op = Op::from_code(s);
                    }
                }
                "ts_ms" => {
                    if let Value::Long(t) = v {
                        ts_ms = *t;
                    }
                }
                "source" => source = Some(decode_source(v)?),
                "transaction" => transaction = decode_transaction_block(v)?,
                _ => {}
            }
        }
        Ok(ChangeRecord {
            op: op.ok_or_else(|| Error::Decode("envelope has no valid `op`".into()))?,
            before,
            after,
            ts_ms,
            source: source.ok_or_else(|| Error::Decode("envelope has no `source`".into()))?,
            transaction,
        })
    }
}

/// Avro's binary encoding read from a byte slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn short() -> Error {
        Error::Decode("record ends early".into())
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let (&b, rest) = self.0.split_first().ok_or_else(Self::short)?;
        self.0 = rest;
        Ok(b)
    }

    /// A zigzag varint (Avro's `int` and `long`).
    fn long(&mut self) -> Result<i64, Error> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            z |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(Error::Decode("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Self::short());
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(a)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n =
            usize::try_from(self.long()?).map_err(|_| Error::Decode("negative length".into()))?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Error::Decode("string is not UTF-8".into()))
    }

    fn opt_str(&mut self) -> Result<Option<String>, Error> {
        match self.long()? {
            0 => Ok(None),
            _ => Ok(Some(self.str()?.to_string())),
        }
    }

    /// One column value: the mirror of [`encode_cell`].
    fn cell(&mut self, kind: &ColumnKind, nullable: bool) -> Result<Cell, Error> {
        // Dates and date-times are unions of their own (a calendar value or
        // a string), a nullable column's union has `null` first.
        let union = matches!(
            kind,
            ColumnKind::Date | ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. }
        );
        let branch = match (nullable, union) {
            (false, false) => 0,
            (false, true) => self.long()?,
            (true, _) => match self.long()? {
                0 => return Ok(Cell::Null),
                b => b - 1,
            },
        };
        let bad = || Error::Decode(format!("a value does not fit a column of kind {kind:?}"));
        Ok(match kind {
            ColumnKind::Int {
                bytes: 8,
                unsigned: true,
            } => {
                let n = BigInt::from_signed_bytes_be(self.bytes()?);
                Cell::UInt(u64::try_from(n).map_err(|_| bad())?)
            }
            ColumnKind::Int { unsigned: true, .. } => Cell::UInt(self.long()? as u64),
            ColumnKind::Int { .. } | ColumnKind::Year => Cell::Int(self.long()?),
            ColumnKind::Decimal { scale, .. } => {
                Cell::Decimal(decimal_from_bytes(self.bytes()?, *scale))
            }
            ColumnKind::Float => Cell::Float(f32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            ColumnKind::Double => Cell::Double(f64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            ColumnKind::Bit { .. } | ColumnKind::Bytes => Cell::Bytes(self.bytes()?.to_vec()),
            ColumnKind::Geometry => {
                let wkb = self.bytes()?;
                let srid = u32::try_from(self.long()?).map_err(|_| bad())?;
                let mut b = Vec::with_capacity(4 + wkb.len());
                b.extend_from_slice(&srid.to_le_bytes());
                b.extend_from_slice(wkb);
                Cell::Bytes(b)
            }
            ColumnKind::Date => match branch {
                0 => Cell::Date(Date::from_days(self.long()?).ok_or_else(bad)?),
                _ => Cell::Date(Date::parse(self.str()?).ok_or_else(bad)?),
            },
            ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. } => match branch {
                0 => Cell::DateTime(DateTime::from_micros(self.long()?).ok_or_else(bad)?),
                _ => Cell::DateTime(DateTime::parse(self.str()?).ok_or_else(bad)?),
            },
            ColumnKind::Time { .. } => Cell::Time(self.long()?),
            ColumnKind::Text
            | ColumnKind::Enum { .. }
            | ColumnKind::Set { .. }
            | ColumnKind::Inet4
            | ColumnKind::Inet6
            | ColumnKind::Uuid => Cell::Text(self.str()?.to_string()),
        })
    }
}

/// Reads a `tributary.Source` record value.
/// Decodes a nullable `transaction` block.
fn decode_transaction_block(value: &Value) -> Result<Option<TransactionBlock>, Error> {
    let value = match value {
        Value::Union(_, v) => v.as_ref(),
        v => v,
    };
    let fields = match value {
        Value::Null => return Ok(None),
        Value::Record(f) => f,
        _ => return Err(Error::Decode("transaction is not a record".into())),
    };
    let mut t = TransactionBlock::default();
    for (name, v) in fields {
        match (name.as_str(), v) {
            ("id", Value::String(s)) => t.id = s.clone(),
            ("total_order", Value::Long(x)) => t.total_order = *x as u64,
            ("data_collection_order", Value::Long(x)) => t.data_collection_order = *x as u64,
            _ => {}
        }
    }
    Ok(Some(t))
}

pub fn decode_source(value: &Value) -> Result<SourceInfo, Error> {
    let Value::Record(fields) = value else {
        return Err(Error::Decode("source is not a record".into()));
    };
    let mut s = SourceInfo::default();
    for (name, v) in fields {
        let v = match v {
            Value::Union(_, inner) => inner.as_ref(),
            v => v,
        };
        match (name.as_str(), v) {
            ("version", Value::String(x)) => s.version = x.clone(),
            ("name", Value::String(x)) => s.name = x.clone(),
            ("server_id", Value::Long(x)) => s.server_id = *x as u32,
            ("gtid", Value::String(x)) => s.gtid = Some(x.clone()),
            ("file", Value::String(x)) => s.file = x.clone(),
            ("pos", Value::Long(x)) => s.pos = *x as u64,
            ("row", Value::Int(x)) => s.row = *x as u32,
            ("db", Value::String(x)) => s.db = x.clone(),
            ("table", Value::String(x)) => s.table = Some(x.clone()),
            ("ts_ms", Value::Long(x)) => s.ts_ms = *x,
            ("snapshot", Value::Boolean(x)) => s.snapshot = *x,
            _ => {}
        }
    }
    Ok(s)
}

/// Formats a cell for messages and logs.
pub fn display_cell(cell: &Cell) -> String {
    match cell {
        Cell::Null => "NULL".into(),
        Cell::Int(v) => v.to_string(),
        Cell::UInt(v) => v.to_string(),
        Cell::Float(v) => v.to_string(),
        Cell::Double(v) => v.to_string(),
        Cell::Decimal(s) | Cell::Text(s) => s.clone(),
        Cell::Bytes(b) => format!("0x{}", hex(b)),
        Cell::Date(d) => d.to_string(),
        Cell::DateTime(d) => d.to_string(),
        Cell::Time(t) => format_time(*t),
    }
}

pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Column;
    use proptest::prelude::*;

    #[test]
    fn fingerprints_match_the_avro_specification() {
        // From the Avro project's share/test/data/schema-tests.txt.
        assert_eq!(fingerprint("\"null\"") as i64, 7195948357588979594);
        assert_eq!(fingerprint("\"int\"") as i64, 8247732601305521295);
        assert_eq!(
            canonical_form(&json!({"type":"long","logicalType":"timestamp-micros"})),
            "\"long\""
        );
        assert_eq!(
            canonical_form(
                &json!({"type":"record","name":"R","namespace":"a.b","doc":"x",
                "fields":[{"name":"f","type":{"type":"fixed","name":"F","size":4},"default":null},
                          {"name":"g","type":["null","F"]}]})
            ),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"f","type":{"name":"a.b.F","type":"fixed","size":4}},{"name":"g","type":["null","a.b.F"]}]}"#
        );
    }

    #[test]
    fn header_round_trip() {
        let s = AvroSchema::parse(SOURCE_SCHEMA).unwrap();
        let h = s.header();
        let (fp, rest) = split_single_object(&h).unwrap();
        assert_eq!(fp, s.fingerprint);
        assert!(rest.is_empty());
        assert!(split_single_object(b"nope").is_err());
    }

    #[test]
    fn every_file_in_schemas_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        let mut texts = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "avsc") {
                texts.push(std::fs::read_to_string(&path).unwrap());
            }
        }
        assert!(texts.len() >= 2, "no .avsc files in {}", dir.display());
        // Files may refer to each other's types; parse them as one set.
        texts.sort_by_key(|t| t.contains("tributary.Source"));
        let list = Schema::parse_list(&texts).unwrap();
        assert_eq!(list.len(), texts.len());
    }

    #[test]
    fn decimals() {
        assert_eq!(
            decimal_from_bytes(&decimal_to_bytes("-12.5", 2).unwrap(), 2),
            "-12.50"
        );
        assert_eq!(
            decimal_from_bytes(&decimal_to_bytes("0", 3).unwrap(), 3),
            "0.000"
        );
        assert_eq!(
            decimal_from_bytes(&decimal_to_bytes("-0.001", 3).unwrap(), 3),
            "-0.001"
        );
        assert_eq!(
            decimal_from_bytes(&decimal_to_bytes("42", 0).unwrap(), 0),
            "42"
        );
        assert!(decimal_to_bytes("1.234", 2).is_err());
        assert!(decimal_to_bytes("abc", 2).is_err());
    }

    fn col(name: &str, data_type: &str, column_type: &str, nullable: bool) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            kind: ColumnKind::parse(data_type, column_type).unwrap(),
            nullable,
            charset: None,
            collation: None,
            generated: None,
        }
    }

    fn sample_table() -> TableSchema {
        TableSchema {
            id: TableId::new("shop", "order items"),
            columns: vec![
                col("id", "bigint", "bigint(20) unsigned", false),
                col("2nd", "int", "int(11)", true),
                col("price", "decimal", "decimal(12,3)", true),
                col("name", "varchar", "varchar(20)", true),
                col("born", "date", "date", true),
                col("at", "datetime", "datetime(6)", false),
                col("ts", "timestamp", "timestamp(3)", true),
                col("dur", "time", "time", true),
                col("blob", "blob", "blob", true),
                col("f", "float", "float", true),
                col("d", "double", "double", true),
                col("e", "enum", "enum('a','b')", true),
            ],
            key: vec![0],
            key_kind: KeyKind::Primary,
            create_table: String::new(),
        }
    }

    #[test]
    fn every_table_shape_has_its_own_value_schema() {
        let a = sample_table();
        let mut b = sample_table();
        b.columns[2] = col("price", "decimal", "decimal(12,4)", true);
        let (ca, cb) = (
            TableCodec::new("shop", &a).unwrap(),
            TableCodec::new("shop", &b).unwrap(),
        );
        assert_ne!(ca.value.fingerprint, cb.value.fingerprint);
        assert_eq!(ca.key.unwrap().fingerprint, cb.key.unwrap().fingerprint);
        let shape = EnvelopeCodec::new(&cb.value.json)
            .unwrap()
            .table_shape(b.id.clone());
        assert_eq!(shape.key, vec![0]);
        assert_eq!(
            shape.columns[2].kind,
            ColumnKind::Decimal {
                precision: 12,
                scale: 4
            }
        );
    }

    #[test]
    fn envelope_round_trips_through_apache_avro() {
        let table = sample_table();
        let codec = TableCodec::new("shop", &table).unwrap();
        let row = vec![
            Cell::UInt(u64::MAX),
            Cell::Null,
            Cell::Decimal("-1234.500".into()),
            Cell::Text("héllo 😀".into()),
            Cell::Date(Date::parse("0000-00-00").unwrap()),
            Cell::DateTime(DateTime::parse("2024-02-29 23:59:59.123456").unwrap()),
            Cell::DateTime(DateTime::parse("1970-01-01 00:00:01").unwrap()),
            Cell::Time(-3_020_399_000_000),
            Cell::Bytes((0..=255).collect()),
            Cell::Float(0.1),
            Cell::Double(1e300),
            Cell::Text("b".into()),
        ];
        let mut after = row.clone();
        after[1] = Cell::Int(-7);
        after[4] = Cell::Date(Date::parse("2024-01-31").unwrap());
        let source = SourceInfo {
            version: "0.1.0".into(),
            name: "shop".into(),
            server_id: 1,
            gtid: Some("0-1-5".into()),
            file: "mariadb-bin.000001".into(),
            pos: 1234,
            row: 2,
            db: "shop".into(),
            table: Some("order items".into()),
            ts_ms: 1_700_000_000_000,
            snapshot: false,
        };
        let block = TransactionBlock {
            id: "0-1-5".into(),
            total_order: 3,
            data_collection_order: 2,
        };
        let mut buf = Vec::new();
        codec
            .encode_envelope(
                Op::Update,
                Some(&row),
                Some(&after),
                99,
                &source,
                Some(&block),
                &mut buf,
            )
            .unwrap();
        let (fp, datum) = split_single_object(&buf).unwrap();
        assert_eq!(fp, codec.value.fingerprint);
        let dec = EnvelopeCodec::new(&codec.value.json).unwrap();
        assert!(dec.direct);
        assert_eq!(dec.layout.fields[1].column, "2nd");
        let rec = dec.decode(datum).unwrap();
        assert_eq!(rec, dec.decode_generic(datum).unwrap());
        assert_eq!(rec.op, Op::Update);
        assert_eq!(rec.ts_ms, 99);
        assert_eq!(rec.source, source);
        assert_eq!(rec.transaction, Some(block));
        assert_eq!(rec.before.unwrap(), row);
        assert_eq!(rec.after.unwrap(), after);

        let mut key = Vec::new();
        assert!(codec.encode_key(&row, &mut key).unwrap());
        let (kfp, kdatum) = split_single_object(&key).unwrap();
        let kschema = codec.key.as_ref().unwrap();
        assert_eq!(kfp, kschema.fingerprint);
        let v = apache_avro::reader::datum::GenericDatumReader::builder(&kschema.schema)
            .build()
            .unwrap()
            .read_value(&mut &kdatum[..])
            .unwrap();
        let layout = RowLayout::from_record_schema(&kschema.schema).unwrap();
        assert_eq!(
            decode_row(&layout, &v).unwrap().unwrap(),
            vec![Cell::UInt(u64::MAX)]
        );
    }

    /// One nullable column of every kind.
    fn every_kind_table() -> TableSchema {
        let cols = [
            ("tinyint", "tinyint(4)"),
            ("tinyint", "tinyint(3) unsigned"),
            ("mediumint", "mediumint(9)"),
            ("int", "int(10) unsigned"),
            ("bigint", "bigint(20)"),
            ("bigint", "bigint(20) unsigned"),
            ("decimal", "decimal(65,30)"),
            ("decimal", "decimal(10,2)"),
            ("float", "float"),
            ("double", "double"),
            ("bit", "bit(64)"),
            ("date", "date"),
            ("datetime", "datetime(6)"),
            ("timestamp", "timestamp(6)"),
            ("time", "time(6)"),
            ("year", "year(4)"),
            ("varchar", "varchar(100)"),
            ("blob", "blob"),
            ("enum", "enum('a','b')"),
            ("set", "set('a','b')"),
            ("geometry", "geometry"),
            ("point", "point"),
            ("inet6", "inet6"),
            ("uuid", "uuid"),
        ];
        TableSchema {
            id: TableId::new("d", "every"),
            columns: cols
                .iter()
                .enumerate()
                .map(|(i, (dt, ct))| {
                    let mut c = col(&format!("c{i}"), dt, ct, true);
                    c.nullable = true;
                    c
                })
                .collect(),
            key: vec![],
            key_kind: KeyKind::None,
            create_table: String::new(),
        }
    }

    fn decimal_text(neg: bool, int: &str, frac: &str) -> String {
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        let zero = int == "0" && frac.bytes().all(|b| b == b'0');
        let sign = if neg && !zero { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    }

    fn date_strategy() -> impl Strategy<Value = Date> {
        (0u16..=9999, 0u8..=12, 0u8..=31).prop_map(|(year, month, day)| Date { year, month, day })
    }

    fn datetime_strategy() -> impl Strategy<Value = DateTime> {
        (date_strategy(), 0u8..24, 0u8..60, 0u8..60, 0u32..1_000_000).prop_map(
            |(date, hour, minute, second, micros)| DateTime {
                date,
                hour,
                minute,
                second,
                micros,
            },
        )
    }

    fn row_strategy() -> impl Strategy<Value = Vec<Cell>> {
        let ints = (
            any::<i8>(),
            any::<u8>(),
            -8_388_608i64..8_388_608,
            any::<u32>(),
            any::<i64>(),
            any::<u64>(),
            (any::<bool>(), "[0-9]{1,35}", "[0-9]{30}"),
            (any::<bool>(), "[0-9]{1,8}", "[0-9]{2}"),
        );
        let numbers = (
            any::<f32>().prop_filter("no NaN in MariaDB", |f| !f.is_nan()),
            any::<f64>().prop_filter("no NaN in MariaDB", |f| !f.is_nan()),
            any::<u64>(),
            date_strategy(),
            datetime_strategy(),
            datetime_strategy(),
            -3_020_399_999_999i64..=3_020_399_999_999,
            prop_oneof![Just(0i64), 1901i64..=2155],
        );
        let others = (
            any::<String>(),
            prop::collection::vec(any::<u8>(), 0..64),
            prop_oneof![Just("a"), Just("b")],
            prop_oneof![Just(""), Just("a"), Just("a,b")],
            (any::<u32>(), prop::collection::vec(any::<u8>(), 0..40)),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
        );
        let nulls = prop::collection::vec(any::<bool>(), 24);
        (ints, numbers, others, nulls).prop_map(|(i, n, o, nulls)| {
            let (srid, wkb) = o.4;
            let mut geometry = srid.to_le_bytes().to_vec();
            geometry.extend_from_slice(&wkb);
            let uuid = hex(&o.6);
            let row = vec![
                Cell::Int(i.0 as i64),
                Cell::UInt(i.1 as u64),
                Cell::Int(i.2),
                Cell::UInt(i.3 as u64),
                Cell::Int(i.4),
                Cell::UInt(i.5),
                Cell::Decimal(decimal_text(i.6 .0, &i.6 .1, &i.6 .2)),
                Cell::Decimal(decimal_text(i.7 .0, &i.7 .1, &i.7 .2)),
                Cell::Float(n.0),
                Cell::Double(n.1),
                Cell::Bytes(n.2.to_be_bytes().to_vec()),
                Cell::Date(n.3),
                Cell::DateTime(n.4),
                Cell::DateTime(n.5),
                Cell::Time(n.6),
                Cell::Int(n.7),
                Cell::Text(o.0),
                Cell::Bytes(o.1),
                Cell::Text(o.2.into()),
                Cell::Text(o.3.into()),
                Cell::Bytes(geometry.clone()),
                Cell::Bytes(geometry),
                Cell::Text(std::net::Ipv6Addr::from(o.5).to_string()),
                Cell::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &uuid[0..8],
                    &uuid[8..12],
                    &uuid[12..16],
                    &uuid[16..20],
                    &uuid[20..32]
                )),
            ];
            row.into_iter()
                .zip(nulls)
                .map(|(c, null)| if null { Cell::Null } else { c })
                .collect()
        })
    }

    #[test]
    fn direct_decoding_reads_not_null_unions_of_both_branches() {
        let mut table = sample_table();
        for c in &mut table.columns {
            c.nullable = false;
        }
        let codec = TableCodec::new("shop", &table).unwrap();
        let row = vec![
            Cell::UInt(7),
            Cell::Int(-1),
            Cell::Decimal("1.000".into()),
            Cell::Text("x".into()),
            Cell::Date(Date::parse("2024-05-00").unwrap()),
            Cell::DateTime(DateTime::parse("0000-00-00 00:00:00").unwrap()),
            Cell::DateTime(DateTime::parse("2001-02-03 04:05:06.789").unwrap()),
            Cell::Time(5),
            Cell::Bytes(vec![]),
            Cell::Float(1.5),
            Cell::Double(-0.0),
            Cell::Text("a".into()),
        ];
        let mut buf = Vec::new();
        codec
            .encode_envelope(
                Op::Create,
                None,
                Some(&row),
                1,
                &SourceInfo::default(),
                None,
                &mut buf,
            )
            .unwrap();
        let (_, datum) = split_single_object(&buf).unwrap();
        let dec = EnvelopeCodec::new(&codec.value.json).unwrap();
        let direct = dec.decode(datum).unwrap();
        assert_eq!(direct, dec.decode_generic(datum).unwrap());
        assert_eq!(direct.transaction, None);
        assert_eq!(direct.after.as_ref().unwrap(), &row);
        assert!(dec.decode(&datum[..datum.len() - 1]).is_err());
        // An envelope of an earlier version, without the transaction block
        // (the last byte here: its null branch), is still read directly.
        let mut earlier: Json = serde_json::from_str(&codec.value.json).unwrap();
        earlier["fields"].as_array_mut().unwrap().pop();
        let earlier = EnvelopeCodec::new(&earlier.to_string()).unwrap();
        assert!(earlier.direct);
        let old = &datum[..datum.len() - 1];
        assert_eq!(earlier.decode(old).unwrap(), direct);
        assert_eq!(earlier.decode_generic(old).unwrap(), direct);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Every kind of value survives our encoder and apache-avro's
        /// decoder, as written to the topics and as read by the sink.
        #[test]
        fn every_kind_round_trips(before in row_strategy(), after in row_strategy()) {
            let table = every_kind_table();
            let codec = TableCodec::new("p", &table).unwrap();
            let mut buf = Vec::new();
            codec.encode_envelope(Op::Update, Some(&before), Some(&after), 1, &SourceInfo::default(), None, &mut buf).unwrap();
            let (_, datum) = split_single_object(&buf).unwrap();
            let decoder = EnvelopeCodec::new(&codec.value.json).unwrap();
            prop_assert!(decoder.direct);
            let rec = decoder.decode_generic(datum).unwrap();
            prop_assert_eq!(rec.before.as_ref().unwrap(), &before);
            prop_assert_eq!(rec.after.as_ref().unwrap(), &after);
            // The direct decoder reads the same record as apache-avro.
            prop_assert_eq!(decoder.decode(datum).unwrap(), rec);
        }
    }

    proptest! {
        #[test]
        fn decimal_bytes_round_trip(int in "-?[0-9]{1,35}", frac in "[0-9]{0,30}") {
            let text = if frac.is_empty() { int.clone() } else { format!("{int}.{frac}") };
            let back = decimal_from_bytes(&decimal_to_bytes(&text, 30).unwrap(), 30);
            let expected = format!("{text}{}{}", if frac.is_empty() { "." } else { "" }, "0".repeat(30 - frac.len()));
            let norm = |s: &str| {
                let neg = s.starts_with('-');
                let s = s.trim_start_matches('-');
                let (i, f) = s.split_once('.').unwrap();
                let i = i.trim_start_matches('0');
                let i = if i.is_empty() { "0" } else { i };
                let zero = i == "0" && f.bytes().all(|b| b == b'0');
                format!("{}{i}.{f}", if neg && !zero { "-" } else { "" })
            };
            prop_assert_eq!(norm(&back), norm(&expected));
        }

        #[test]
        fn longs_decode_as_avro_longs(v in any::<i64>()) {
            let mut buf = Vec::new();
            put_long(&mut buf, v);
            let got = apache_avro::reader::datum::GenericDatumReader::builder(&Schema::Long)
                .build().unwrap().read_value(&mut &buf[..]).unwrap();
            prop_assert_eq!(got, Value::Long(v));
        }
    }
}
