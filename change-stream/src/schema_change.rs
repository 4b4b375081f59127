//! Schema-change records (`schemas/schema_change.avsc`): a DDL statement
//! from the binlog, or a table's definition as the source read it at start.
//! Published on `<prefix>.schema-changes` in binlog order. Nothing of it
//! goes into the tables' own topics: for each table it acts on, it says at
//! which offset of each partition of the table's topic it falls
//! ([`TableChange::topic_offsets`]).

use std::sync::OnceLock;

use apache_avro::types::Value;
use serde_json::Value as Json;

use crate::avro::{decode_source, AvroSchema, SCHEMA_CHANGE_SCHEMA, SOURCE_SCHEMA};
use crate::event::SourceInfo;
use crate::table::{Column, ColumnKind, Generated, KeyKind, TableId, TableSchema};
use crate::Error;

/// The kind of a definition read at start (rather than a DDL statement).
pub const DEFINITION: &str = "DEFINITION";

/// The kind of a change that starts the snapshot of a table without a key
/// over: the rows an interrupted snapshot sent of it are to be discarded
/// (its statement is a `TRUNCATE TABLE`), since they cannot be told apart
/// from the rows read again.
pub const SNAPSHOT_RESTART: &str = "SNAPSHOT RESTART";

/// The kind of a change that follows the last row of a table's full
/// synchronization (the snapshot has read every table): what a destination
/// put off until the rows are in, its secondary indexes, it does now. No
/// statement; the source's other consumers may ignore it.
pub const SNAPSHOT_DONE: &str = "SNAPSHOT DONE";

/// One schema change.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaChange {
    pub source: SourceInfo,
    /// The statement's default database.
    pub database: String,
    /// `CREATE TABLE`, `ALTER TABLE` ..., or [`DEFINITION`].
    pub kind: String,
    /// The statement; `None` for a table's definition.
    pub ddl: Option<String>,
    /// The `sql_mode` it ran in at the source: a number (the binlog's bit
    /// set) or a list of names; `None` when unknown.
    pub sql_mode: Option<String>,
    /// The tables it acts on, with their shapes afterwards.
    pub tables: Vec<TableChange>,
}

/// What a schema change does to one table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableChange {
    pub id: TableId,
    pub effect: ChangeEffect,
    /// The table's shape afterwards; `None` when it no longer exists under
    /// this name.
    pub definition: Option<TableSchema>,
    /// For each partition of the table's topic: the offset of the first
    /// record written after the change (set when it is published; empty
    /// in records written before there were offsets).
    pub topic_offsets: Vec<i64>,
}

/// See `TableEffect` in `schemas/schema_change.avsc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeEffect {
    Defined,
    Created,
    Altered,
    Dropped,
    RenamedFrom,
    RenamedTo,
    Truncated,
}

const EFFECTS: [(ChangeEffect, &str); 7] = [
    (ChangeEffect::Defined, "DEFINED"),
    (ChangeEffect::Created, "CREATED"),
    (ChangeEffect::Altered, "ALTERED"),
    (ChangeEffect::Dropped, "DROPPED"),
    (ChangeEffect::RenamedFrom, "RENAMED_FROM"),
    (ChangeEffect::RenamedTo, "RENAMED_TO"),
    (ChangeEffect::Truncated, "TRUNCATED"),
];

impl SchemaChange {
    /// A table's definition as read at start.
    pub fn definition(source: SourceInfo, table: TableSchema) -> Self {
        SchemaChange {
            source,
            database: table.id.database.clone(),
            kind: DEFINITION.to_string(),
            ddl: None,
            sql_mode: None,
            tables: vec![TableChange {
                id: table.id.clone(),
                effect: ChangeEffect::Defined,
                definition: Some(table),
                topic_offsets: Vec::new(),
            }],
        }
    }

    /// The definition of a view, routine or trigger as read at start: its
    /// CREATE statement, run in `database`. A trigger names its table
    /// (with the table's definition), so that it is created after the rows
    /// written to the table before it.
    pub fn object_definition(
        source: SourceInfo,
        database: &str,
        create: String,
        sql_mode: Option<String>,
        table: Option<TableSchema>,
    ) -> Self {
        SchemaChange {
            source,
            database: database.to_string(),
            kind: DEFINITION.to_string(),
            ddl: Some(create),
            sql_mode,
            tables: table
                .into_iter()
                .map(|t| TableChange {
                    id: t.id.clone(),
                    effect: ChangeEffect::Defined,
                    definition: Some(t),
                    topic_offsets: Vec::new(),
                })
                .collect(),
        }
    }

    /// The change that starts the snapshot of `table` (a table without a
    /// key) over at the snapshot point in `source`.
    pub fn snapshot_restart(source: SourceInfo, table: TableSchema) -> Self {
        SchemaChange {
            source,
            database: table.id.database.clone(),
            kind: SNAPSHOT_RESTART.to_string(),
            ddl: Some(format!(
                "TRUNCATE TABLE {}.{}",
                crate::table::quote_ident(&table.id.database),
                crate::table::quote_ident(&table.id.table)
            )),
            sql_mode: None,
            tables: vec![TableChange {
                id: table.id.clone(),
                effect: ChangeEffect::Truncated,
                definition: Some(table),
                topic_offsets: Vec::new(),
            }],
        }
    }

    /// The change after the last row of `table`'s full synchronization, at
    /// the snapshot point in `source`.
    pub fn snapshot_done(source: SourceInfo, table: TableSchema) -> Self {
        SchemaChange {
            source,
            database: table.id.database.clone(),
            kind: SNAPSHOT_DONE.to_string(),
            ddl: None,
            sql_mode: None,
            tables: vec![TableChange {
                id: table.id.clone(),
                effect: ChangeEffect::Defined,
                definition: Some(table),
                topic_offsets: Vec::new(),
            }],
        }
    }

    /// Identifies a statement by its binlog file and offset, a definition by
    /// when it was read and its table (or its statement, for an object).
    pub fn id(&self) -> String {
        if self.kind == DEFINITION {
            match &self.ddl {
                Some(ddl) => format!(
                    "definition:{}:{}:{:016x}",
                    self.source.ts_ms,
                    self.database,
                    crate::avro::fingerprint(ddl)
                ),
                None => {
                    let table = self
                        .tables
                        .first()
                        .map(|t| t.id.to_string())
                        .unwrap_or_default();
                    format!("definition:{}:{table}", self.source.ts_ms)
                }
            }
        } else if self.kind == SNAPSHOT_RESTART || self.kind == SNAPSHOT_DONE {
            let table = self
                .tables
                .first()
                .map(|t| t.id.to_string())
                .unwrap_or_default();
            let what = if self.kind == SNAPSHOT_DONE {
                "snapshot-done"
            } else {
                "snapshot-restart"
            };
            format!("{what}:{}:{}:{table}", self.source.file, self.source.pos)
        } else {
            format!("{}:{}", self.source.file, self.source.pos)
        }
    }
}

/// The schema-change schema with `tributary.Source` inlined, so that it is
/// self-contained on the schemas topic.
pub fn schema() -> &'static AvroSchema {
    static SCHEMA: OnceLock<AvroSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut root: Json =
            serde_json::from_str(SCHEMA_CHANGE_SCHEMA).expect("schema_change.avsc is JSON");
        let source: Json = serde_json::from_str(SOURCE_SCHEMA).expect("source.avsc is JSON");
        for field in root["fields"].as_array_mut().expect("fields") {
            if field["type"] == "tributary.Source" {
                field["type"] = source.clone();
            }
        }
        AvroSchema::parse(&root.to_string()).expect("schema_change.avsc parses")
    })
}

fn opt_str(s: Option<&str>) -> Value {
    match s {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.to_string()))),
    }
}

fn source_value(s: &SourceInfo) -> Value {
    Value::Record(vec![
        ("version".into(), Value::String(s.version.clone())),
        ("name".into(), Value::String(s.name.clone())),
        ("server_id".into(), Value::Long(s.server_id as i64)),
        ("gtid".into(), opt_str(s.gtid.as_deref())),
        ("file".into(), Value::String(s.file.clone())),
        ("pos".into(), Value::Long(s.pos as i64)),
        ("row".into(), Value::Int(s.row as i32)),
        ("db".into(), Value::String(s.db.clone())),
        ("table".into(), opt_str(s.table.as_deref())),
        ("ts_ms".into(), Value::Long(s.ts_ms)),
        ("snapshot".into(), Value::Boolean(s.snapshot)),
    ])
}

const KEY_KINDS: [&str; 3] = ["PRIMARY", "UNIQUE", "NONE"];

fn definition_value(t: &TableSchema) -> Value {
    let key_kind = match t.key_kind {
        KeyKind::Primary => 0,
        KeyKind::Unique => 1,
        KeyKind::None => 2,
    };
    let columns = t
        .columns
        .iter()
        .map(|c| {
            Value::Record(vec![
                ("name".into(), Value::String(c.name.clone())),
                ("data_type".into(), Value::String(c.data_type.clone())),
                ("column_type".into(), Value::String(c.column_type.clone())),
                ("nullable".into(), Value::Boolean(c.nullable)),
                ("charset".into(), opt_str(c.charset.as_deref())),
                (
                    "generation_expression".into(),
                    opt_str(c.generated.as_ref().map(|g| g.expression.as_str())),
                ),
                (
                    "generated_stored".into(),
                    Value::Boolean(c.generated.as_ref().is_some_and(|g| g.stored)),
                ),
            ])
        })
        .collect();
    Value::Record(vec![
        ("create_table".into(), Value::String(t.create_table.clone())),
        (
            "key_kind".into(),
            Value::Enum(key_kind, KEY_KINDS[key_kind as usize].into()),
        ),
        (
            "key_columns".into(),
            Value::Array(
                t.key_columns()
                    .map(|c| Value::String(c.name.clone()))
                    .collect(),
            ),
        ),
        ("columns".into(), Value::Array(columns)),
    ])
}

impl SchemaChange {
    /// Single-object encodes the record.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let s = schema();
        let tables = self
            .tables
            .iter()
            .map(|t| {
                let i = EFFECTS
                    .iter()
                    .position(|(e, _)| *e == t.effect)
                    .expect("every effect listed");
                Value::Record(vec![
                    ("database".into(), Value::String(t.id.database.clone())),
                    ("table".into(), Value::String(t.id.table.clone())),
                    ("effect".into(), Value::Enum(i as u32, EFFECTS[i].1.into())),
                    (
                        "topic_offsets".into(),
                        Value::Array(t.topic_offsets.iter().map(|o| Value::Long(*o)).collect()),
                    ),
                    (
                        "definition".into(),
                        match &t.definition {
                            None => Value::Union(0, Box::new(Value::Null)),
                            Some(d) => Value::Union(1, Box::new(definition_value(d))),
                        },
                    ),
                ])
            })
            .collect();
        let value = Value::Record(vec![
            ("source".into(), source_value(&self.source)),
            ("database".into(), Value::String(self.database.clone())),
            ("kind".into(), Value::String(self.kind.clone())),
            ("ddl".into(), opt_str(self.ddl.as_deref())),
            ("sql_mode".into(), opt_str(self.sql_mode.as_deref())),
            ("tables".into(), Value::Array(tables)),
        ]);
        let mut out = s.header().to_vec();
        apache_avro::writer::datum::GenericDatumWriter::builder(&s.schema)
            .build()
            .map_err(|e| Error::Encode(e.to_string()))?
            .write_value_ref(&mut out, &value)
            .map_err(|e| Error::Encode(e.to_string()))?;
        Ok(out)
    }

    /// Decodes a single-object encoded schema change written with
    /// [`schema()`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let value = crate::avro::read_single_object(schema(), bytes, "schema change")?;
        let bad = |what: &str| Error::Decode(format!("schema change: bad {what}"));
        let Value::Record(fields) = value else {
            return Err(bad("record"));
        };
        let mut change = SchemaChange {
            source: SourceInfo::default(),
            database: String::new(),
            kind: String::new(),
            ddl: None,
            sql_mode: None,
            tables: Vec::new(),
        };
        for (name, v) in fields {
            match (name.as_str(), unwrap_union(v)) {
                ("source", v) => change.source = decode_source(&v)?,
                ("database", Value::String(s)) => change.database = s,
                ("kind", Value::String(s)) => change.kind = s,
                ("ddl", Value::String(s)) => change.ddl = Some(s),
                ("sql_mode", Value::String(s)) => change.sql_mode = Some(s),
                ("tables", Value::Array(items)) => {
                    for item in items {
                        change.tables.push(decode_table_change(item)?);
                    }
                }
                _ => {}
            }
        }
        Ok(change)
    }
}

fn decode_table_change(value: Value) -> Result<TableChange, Error> {
    let bad = |what: &str| Error::Decode(format!("schema change: bad {what}"));
    let Value::Record(fields) = value else {
        return Err(bad("table change"));
    };
    let (mut db, mut table, mut effect, mut definition) = (None, None, None, None);
    let mut topic_offsets = Vec::new();
    for (name, v) in fields {
        match (name.as_str(), unwrap_union(v)) {
            ("database", Value::String(s)) => db = Some(s),
            ("table", Value::String(s)) => table = Some(s),
            ("effect", Value::Enum(i, _)) => effect = EFFECTS.get(i as usize).map(|(e, _)| *e),
            ("definition", Value::Record(d)) => definition = Some(d),
            ("topic_offsets", Value::Array(items)) => {
                for item in items {
                    let Value::Long(o) = item else {
                        return Err(bad("topic offset"));
                    };
                    topic_offsets.push(o);
                }
            }
            _ => {}
        }
    }
    let id = TableId::new(
        db.ok_or_else(|| bad("database"))?,
        table.ok_or_else(|| bad("table"))?,
    );
    Ok(TableChange {
        definition: definition
            .map(|d| decode_definition(id.clone(), d))
            .transpose()?,
        effect: effect.ok_or_else(|| bad("effect"))?,
        id,
        topic_offsets,
    })
}

fn unwrap_union(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        v => v,
    }
}

fn decode_definition(id: TableId, fields: Vec<(String, Value)>) -> Result<TableSchema, Error> {
    let bad = |what: &str| Error::Decode(format!("table definition of {id}: bad {what}"));
    let mut create_table = String::new();
    let mut key_kind = KeyKind::None;
    let mut key_names = Vec::new();
    let mut columns = Vec::new();
    for (name, v) in fields {
        match (name.as_str(), v) {
            ("create_table", Value::String(s)) => create_table = s,
            ("key_kind", Value::Enum(i, _)) => {
                key_kind = match i {
                    0 => KeyKind::Primary,
                    1 => KeyKind::Unique,
                    _ => KeyKind::None,
                }
            }
            ("key_columns", Value::Array(a)) => {
                for k in a {
                    let Value::String(k) = k else {
                        return Err(bad("key column"));
                    };
                    key_names.push(k);
                }
            }
            ("columns", Value::Array(a)) => {
                for c in a {
                    let Value::Record(cf) = c else {
                        return Err(bad("column"));
                    };
                    let (mut name, mut data_type, mut column_type) =
                        (String::new(), String::new(), String::new());
                    let (mut nullable, mut charset, mut expr, mut stored) =
                        (false, None, None, false);
                    for (k, v) in cf {
                        match (k.as_str(), unwrap_union(v)) {
                            ("name", Value::String(s)) => name = s,
                            ("data_type", Value::String(s)) => data_type = s,
                            ("column_type", Value::String(s)) => column_type = s,
                            ("nullable", Value::Boolean(b)) => nullable = b,
                            ("charset", Value::String(s)) => charset = Some(s),
                            ("generation_expression", Value::String(s)) => expr = Some(s),
                            ("generated_stored", Value::Boolean(b)) => stored = b,
                            _ => {}
                        }
                    }
                    columns.push(Column {
                        kind: ColumnKind::parse(&data_type, &column_type)?,
                        name,
                        data_type,
                        column_type,
                        nullable,
                        charset,
                        collation: None,
                        generated: expr.map(|expression| Generated { expression, stored }),
                    });
                }
            }
            _ => {}
        }
    }
    let key = key_names
        .iter()
        .map(|k| {
            columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| bad("key column name"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TableSchema {
        id,
        columns,
        key,
        key_kind,
        create_table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let col = |name: &str, dt: &str, ct: &str| Column {
            name: name.into(),
            data_type: dt.into(),
            column_type: ct.into(),
            kind: ColumnKind::parse(dt, ct).unwrap(),
            nullable: name != "id",
            charset: (dt == "varchar").then(|| "utf8mb4".into()),
            collation: None,
            generated: (name == "g").then(|| Generated {
                expression: "`id` + 1".into(),
                stored: true,
            }),
        };
        let source = SourceInfo {
            version: "0.1.0".into(),
            name: "shop".into(),
            server_id: 1,
            gtid: Some("0-1-3".into()),
            file: "mariadb-bin.000001".into(),
            pos: 4,
            row: 0,
            db: "shop".into(),
            table: Some("t".into()),
            ts_ms: 5,
            snapshot: true,
        };
        let table = TableSchema {
            id: TableId::new("shop", "t"),
            columns: vec![
                col("id", "int", "int(11)"),
                col("name", "varchar", "varchar(10)"),
                col("g", "bigint", "bigint(20)"),
            ],
            key: vec![0],
            key_kind: KeyKind::Primary,
            create_table: "CREATE TABLE `t` (...)".into(),
        };
        let definition = SchemaChange::definition(source.clone(), table.clone());
        assert_eq!(
            SchemaChange::decode(&definition.encode().unwrap()).unwrap(),
            definition
        );
        let mut renamed = table.clone();
        renamed.id = TableId::new("shop", "u");
        let change = SchemaChange {
            source,
            database: "shop".into(),
            kind: "RENAME TABLE".into(),
            ddl: Some("RENAME TABLE t TO u".into()),
            sql_mode: Some("1411383296".into()),
            tables: vec![
                TableChange {
                    id: table.id.clone(),
                    effect: ChangeEffect::RenamedFrom,
                    definition: None,
                    topic_offsets: vec![17, 0, 1 << 40],
                },
                TableChange {
                    id: renamed.id.clone(),
                    effect: ChangeEffect::RenamedTo,
                    definition: Some(renamed),
                    topic_offsets: vec![0, 0, 0],
                },
            ],
        };
        assert_eq!(change.id(), "mariadb-bin.000001:4");
        let bytes = change.encode().unwrap();
        assert_eq!(SchemaChange::decode(&bytes).unwrap(), change);

        // Restarts of two tables at one snapshot point differ.
        let restart = SchemaChange::snapshot_restart(definition.source.clone(), table.clone());
        assert_eq!(restart.ddl.as_deref(), Some("TRUNCATE TABLE `shop`.`t`"));
        assert_eq!(restart.id(), "snapshot-restart:mariadb-bin.000001:4:shop.t");
        let mut other = table;
        other.id = TableId::new("shop", "v");
        assert_ne!(
            SchemaChange::snapshot_restart(definition.source.clone(), other.clone()).id(),
            restart.id()
        );
        assert_eq!(
            SchemaChange::decode(&restart.encode().unwrap()).unwrap(),
            restart
        );

        // The end of a table's full synchronization: no statement, its own id.
        let done = SchemaChange::snapshot_done(definition.source.clone(), other);
        assert_eq!(done.ddl, None);
        assert_eq!(done.id(), "snapshot-done:mariadb-bin.000001:4:shop.v");
        assert_eq!(SchemaChange::decode(&done.encode().unwrap()).unwrap(), done);
    }
}
