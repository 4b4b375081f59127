//! A table's shape as the binlog writes it.
//!
//! With `binlog_row_metadata = FULL`, each table map event names the
//! columns and gives their types, signedness, character sets, ENUM and SET
//! labels and primary key. When the reader is behind the source, the
//! definition `information_schema` gives now can be newer than the rows it
//! is reading (the table was altered again since); the rows are then
//! encoded by the shape the binlog gives for them, with what the binlog
//! cannot tell (INET4/INET6/UUID, generated columns, a unique key used as
//! the key) taken from the definitions known for the same column name.

use change_stream::table::{Column, ColumnKind, KeyKind, TableId, TableSchema};
use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_async::consts::{ColumnFlags, ColumnType};

use crate::error::SourceError;

/// The shape of the rows of `tme`. `columns` are a logged row's columns
/// (names, types, flags, collations); `charset` names the character set of
/// a collation id; `hints` are definitions of the table, freshest first.
pub fn shape(
    id: &TableId,
    tme: &TableMapEvent<'_>,
    columns: &[mysql_async::Column],
    charset: &dyn Fn(u16) -> Option<String>,
    hints: &[&TableSchema],
) -> Result<TableSchema, SourceError> {
    let bad = |what: String| SourceError::Binlog(format!("table {id}: {what}"));
    let mut enums = Vec::new();
    let mut sets = Vec::new();
    for field in tme.iter_optional_meta() {
        match field.map_err(|e| bad(format!("cannot read the table map's metadata: {e}")))? {
            OptionalMetadataField::EnumStrValue(v) => {
                for labels in v.iter_values() {
                    let labels = labels.map_err(|e| bad(format!("ENUM labels: {e}")))?;
                    enums.push(
                        labels
                            .values()
                            .iter()
                            .map(|l| l.value().into_owned())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            OptionalMetadataField::SetStrValue(v) => {
                for labels in v.iter_values() {
                    let labels = labels.map_err(|e| bad(format!("SET labels: {e}")))?;
                    sets.push(
                        labels
                            .values()
                            .iter()
                            .map(|l| l.value().into_owned())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            _ => {}
        }
    }
    let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
    let hint = |name: &str| {
        hints
            .iter()
            .find_map(|h| h.columns.iter().find(|c| c.name == name))
    };
    let mut out = Vec::with_capacity(columns.len());
    let mut key = Vec::new();
    for (i, col) in columns.iter().enumerate() {
        let name = col.name_str().to_string();
        let ty = tme
            .get_column_type(i)
            .ok()
            .flatten()
            .unwrap_or(col.column_type());
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let unsigned = col.flags().contains(ColumnFlags::UNSIGNED_FLAG);
        let binary = col.character_set() == 63;
        let fsp = || meta.first().copied().unwrap_or(0);
        use ColumnType::*;
        let (kind, data_type, column_type) = match ty {
            MYSQL_TYPE_TINY => int(1, "tinyint", unsigned),
            MYSQL_TYPE_SHORT => int(2, "smallint", unsigned),
            MYSQL_TYPE_INT24 => int(3, "mediumint", unsigned),
            MYSQL_TYPE_LONG => int(4, "int", unsigned),
            MYSQL_TYPE_LONGLONG => int(8, "bigint", unsigned),
            MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => {
                let (p, s) = (
                    meta.first().copied().unwrap_or(10),
                    meta.get(1).copied().unwrap_or(0),
                );
                (
                    ColumnKind::Decimal {
                        precision: p,
                        scale: s,
                    },
                    "decimal",
                    format!(
                        "decimal({p},{s}){}",
                        if unsigned { " unsigned" } else { "" }
                    ),
                )
            }
            MYSQL_TYPE_FLOAT => (ColumnKind::Float, "float", "float".into()),
            MYSQL_TYPE_DOUBLE => (ColumnKind::Double, "double", "double".into()),
            MYSQL_TYPE_BIT => {
                let bits =
                    meta.get(1).copied().unwrap_or(0) * 8 + meta.first().copied().unwrap_or(0);
                (ColumnKind::Bit { bits }, "bit", format!("bit({bits})"))
            }
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => (ColumnKind::Date, "date", "date".into()),
            MYSQL_TYPE_DATETIME => (
                ColumnKind::DateTime { fsp: 0 },
                "datetime",
                "datetime".into(),
            ),
            MYSQL_TYPE_DATETIME2 => (
                ColumnKind::DateTime { fsp: fsp() },
                "datetime",
                format!("datetime({})", fsp()),
            ),
            MYSQL_TYPE_TIMESTAMP => (
                ColumnKind::Timestamp { fsp: 0 },
                "timestamp",
                "timestamp".into(),
            ),
            MYSQL_TYPE_TIMESTAMP2 => (
                ColumnKind::Timestamp { fsp: fsp() },
                "timestamp",
                format!("timestamp({})", fsp()),
            ),
            MYSQL_TYPE_TIME => (ColumnKind::Time { fsp: 0 }, "time", "time".into()),
            MYSQL_TYPE_TIME2 => (
                ColumnKind::Time { fsp: fsp() },
                "time",
                format!("time({})", fsp()),
            ),
            MYSQL_TYPE_YEAR => (ColumnKind::Year, "year", "year(4)".into()),
            MYSQL_TYPE_ENUM => {
                let labels = enums.next().unwrap_or_default();
                let ct = format!("enum({})", quoted_labels(&labels));
                (ColumnKind::Enum { labels }, "enum", ct)
            }
            MYSQL_TYPE_SET => {
                let labels = sets.next().unwrap_or_default();
                let ct = format!("set({})", quoted_labels(&labels));
                (ColumnKind::Set { labels }, "set", ct)
            }
            MYSQL_TYPE_GEOMETRY => (ColumnKind::Geometry, "geometry", "geometry".into()),
            MYSQL_TYPE_STRING
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_JSON
            | MYSQL_TYPE_VARCHAR_COMPRESSED
            | MYSQL_TYPE_BLOB_COMPRESSED => {
                // INET4/INET6/UUID are logged as fixed binary strings.
                match hint(&name).map(|c| &c.kind) {
                    Some(k @ (ColumnKind::Inet4 | ColumnKind::Inet6 | ColumnKind::Uuid))
                        if matches!(ty, MYSQL_TYPE_STRING | MYSQL_TYPE_LONG) || binary =>
                    {
                        let c = hint(&name).expect("hinted");
                        (k.clone(), "", c.column_type.clone())
                    }
                    _ if binary => (ColumnKind::Bytes, "varbinary", "varbinary".into()),
                    _ => (ColumnKind::Text, "text", "text".into()),
                }
            }
            other => {
                return Err(bad(format!(
                    "column `{name}` has binlog type {other:?}, which is not supported"
                )))
            }
        };
        // A hint for the same column with the same kind keeps its exact
        // type text and generated-column details.
        let same = hint(&name).filter(|c| c.kind == kind);
        let charset = match &kind {
            ColumnKind::Text | ColumnKind::Enum { .. } | ColumnKind::Set { .. } => {
                charset(col.character_set()).or_else(|| same.and_then(|c| c.charset.clone()))
            }
            _ => None,
        };
        let (data_type, mut column_type) = match same {
            Some(c) => (c.data_type.clone(), c.column_type.clone()),
            None if data_type.is_empty() => (column_type.clone(), column_type),
            None => (data_type.to_string(), column_type),
        };
        // Whether values arrive compressed is the binlog's to say, whatever
        // the hint (the column may have been altered since).
        let compressed = matches!(
            ty,
            MYSQL_TYPE_VARCHAR_COMPRESSED | MYSQL_TYPE_BLOB_COMPRESSED
        );
        if compressed && !column_type.to_ascii_lowercase().contains("compressed") {
            column_type.push_str(" /*M!100301 COMPRESSED*/");
        } else if !compressed {
            column_type = column_type.replace(" /*M!100301 COMPRESSED*/", "");
        }
        if col.flags().contains(ColumnFlags::PRI_KEY_FLAG) {
            key.push(i);
        }
        out.push(Column {
            name,
            data_type,
            column_type,
            kind,
            nullable: tme
                .null_bitmask()
                .get(i)
                .as_deref()
                .copied()
                .unwrap_or(true),
            charset,
            collation: same.and_then(|c| c.collation.clone()),
            generated: same.and_then(|c| c.generated.clone()),
        });
    }
    let mut key_kind = if key.is_empty() {
        KeyKind::None
    } else {
        KeyKind::Primary
    };
    if key.is_empty() {
        // A NOT NULL unique key the hints name, if all its columns remain.
        if let Some(h) = hints.iter().find(|h| h.key_kind == KeyKind::Unique) {
            let names: Vec<&str> = h.key.iter().map(|&k| h.columns[k].name.as_str()).collect();
            let found: Vec<usize> = names
                .iter()
                .filter_map(|n| out.iter().position(|c| c.name == *n))
                .collect();
            if found.len() == names.len() {
                key = found;
                key_kind = KeyKind::Unique;
            }
        }
    }
    Ok(TableSchema {
        id: id.clone(),
        columns: out,
        key,
        key_kind,
        create_table: hints
            .first()
            .map(|h| h.create_table.clone())
            .unwrap_or_default(),
    })
}

fn int(bytes: u8, name: &'static str, unsigned: bool) -> (ColumnKind, &'static str, String) {
    (
        ColumnKind::Int { bytes, unsigned },
        name,
        format!("{name}{}", if unsigned { " unsigned" } else { "" }),
    )
}

fn quoted_labels(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("'{}'", l.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether two shapes encode rows the same way.
pub fn same_encoding(a: &TableSchema, b: &TableSchema) -> bool {
    a.key == b.key
        && a.columns.len() == b.columns.len()
        && a.columns.iter().zip(&b.columns).all(|(x, y)| {
            x.name == y.name
                && x.kind == y.kind
                && x.nullable == y.nullable
                && x.generated.is_some() == y.generated.is_some()
                && (x.kind != ColumnKind::Text || x.charset == y.charset)
        })
}
