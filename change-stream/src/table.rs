//! Table definitions: what both sides know of a table's shape.
//!
//! The source reads a [`TableSchema`] from `information_schema` and the
//! server's own `SHOW CREATE TABLE`, publishes it on the schema-changes
//! topic, and derives the table's Avro schemas from it. The sink reads it back
//! to create the table at the destination and to turn records into rows.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A database and table name pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId {
    pub database: String,
    pub table: String,
}

impl TableId {
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            database: database.into(),
            table: table.into(),
        }
    }

    /// `` `db`.`table` ``, quoted for SQL.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.database),
            quote_ident(&self.table)
        )
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// Quotes an identifier with backticks, doubling any backtick inside.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The kind of a column, as far as encoding its values is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnKind {
    /// TINYINT (1), SMALLINT (2), MEDIUMINT (3), INT (4), BIGINT (8) bytes.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Decimal {
        precision: u8,
        scale: u8,
    },
    Float,
    Double,
    Bit {
        bits: u8,
    },
    Date,
    DateTime {
        fsp: u8,
    },
    Timestamp {
        fsp: u8,
    },
    Time {
        fsp: u8,
    },
    Year,
    /// Character data (CHAR, VARCHAR, the TEXTs, JSON) in a character set.
    Text,
    /// Binary data (BINARY, VARBINARY, the BLOBs).
    Bytes,
    Enum {
        labels: Vec<String>,
    },
    Set {
        labels: Vec<String>,
    },
    /// Any spatial type, as MariaDB's internal form (SRID + WKB).
    Geometry,
    Inet4,
    Inet6,
    Uuid,
}

impl ColumnKind {
    /// Derives the kind from `information_schema.COLUMNS.DATA_TYPE` and
    /// `COLUMN_TYPE`.
    pub fn parse(data_type: &str, column_type: &str) -> Result<Self, Error> {
        let dt = data_type.to_ascii_lowercase();
        let ct = column_type.to_ascii_lowercase();
        let unsigned = ct.contains("unsigned");
        let args = type_args(&ct);
        let arg = |i: usize| -> Option<u32> { args.get(i).and_then(|a| a.trim().parse().ok()) };
        let fsp = || arg(0).unwrap_or(0) as u8;
        Ok(match dt.as_str() {
            "tinyint" | "bool" | "boolean" => ColumnKind::Int { bytes: 1, unsigned },
            "smallint" => ColumnKind::Int { bytes: 2, unsigned },
            "mediumint" => ColumnKind::Int { bytes: 3, unsigned },
            "int" | "integer" => ColumnKind::Int { bytes: 4, unsigned },
            "bigint" => ColumnKind::Int { bytes: 8, unsigned },
            "decimal" | "numeric" | "dec" | "fixed" => ColumnKind::Decimal {
                precision: arg(0).unwrap_or(10) as u8,
                scale: arg(1).unwrap_or(0) as u8,
            },
            "float" => ColumnKind::Float,
            "double" | "real" | "double precision" => ColumnKind::Double,
            "bit" => ColumnKind::Bit {
                bits: arg(0).unwrap_or(1) as u8,
            },
            "date" => ColumnKind::Date,
            "datetime" => ColumnKind::DateTime { fsp: fsp() },
            "timestamp" => ColumnKind::Timestamp { fsp: fsp() },
            "time" => ColumnKind::Time { fsp: fsp() },
            "year" => ColumnKind::Year,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "json" => {
                ColumnKind::Text
            }
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                ColumnKind::Bytes
            }
            "enum" => ColumnKind::Enum {
                labels: parse_labels(column_type)?,
            },
            "set" => ColumnKind::Set {
                labels: parse_labels(column_type)?,
            },
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" => ColumnKind::Geometry,
            "inet4" => ColumnKind::Inet4,
            "inet6" => ColumnKind::Inet6,
            "uuid" => ColumnKind::Uuid,
            other => {
                return Err(Error::UnsupportedType(format!(
                    "column type `{column_type}` (data type `{other}`)"
                )))
            }
        })
    }
}

/// The comma-separated arguments inside the first parentheses of a column
/// type (`decimal(10,2)` -> `["10", "2"]`). Not for ENUM and SET.
fn type_args(column_type: &str) -> Vec<&str> {
    match (column_type.find('('), column_type.find(')')) {
        (Some(a), Some(b)) if b > a => column_type[a + 1..b].split(',').collect(),
        _ => Vec::new(),
    }
}

/// The labels of an ENUM or SET column type as `information_schema` prints
/// them: `enum('a','it''s','')`.
pub fn parse_labels(column_type: &str) -> Result<Vec<String>, Error> {
    let bad = || Error::UnsupportedType(format!("cannot read the labels of `{column_type}`"));
    let open = column_type.find('(').ok_or_else(bad)?;
    let body = column_type[open + 1..].strip_suffix(')').ok_or_else(bad)?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        match chars.next() {
            None => break,
            Some('\'') => {
                let mut label = String::new();
                loop {
                    match chars.next().ok_or_else(bad)? {
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            label.push('\'');
                        }
                        '\'' => break,
                        '\\' => label.push(chars.next().ok_or_else(bad)?),
                        c => label.push(c),
                    }
                }
                labels.push(label);
            }
            Some(',') | Some(' ') => {}
            Some(_) => return Err(bad()),
        }
    }
    Ok(labels)
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// `DATA_TYPE` as the server prints it (`decimal`).
    pub data_type: String,
    /// `COLUMN_TYPE` as the server prints it (`decimal(10,2) unsigned`).
    pub column_type: String,
    pub kind: ColumnKind,
    pub nullable: bool,
    /// Character set of character columns.
    pub charset: Option<String>,
    /// Collation of character columns (what row filters compare by).
    #[serde(default)]
    pub collation: Option<String>,
    /// A generated column's expression and whether it is stored.
    pub generated: Option<Generated>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    pub expression: String,
    pub stored: bool,
}

/// Which key identifies a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    Primary,
    /// A UNIQUE key whose columns are all NOT NULL.
    Unique,
    /// No usable key: rows are matched on their whole image.
    None,
}

impl Column {
    /// A MariaDB compressed column (`VARCHAR(n) COMPRESSED`, `BLOB
    /// COMPRESSED`): its type prints as `varchar(n) /*M!100301
    /// COMPRESSED*/`, and the binlog carries its values compressed.
    pub fn compressed(&self) -> bool {
        matches!(self.kind, ColumnKind::Text | ColumnKind::Bytes)
            && self
                .column_type
                .as_bytes()
                .windows(b"compressed".len())
                .any(|w| w.eq_ignore_ascii_case(b"compressed"))
    }
}

/// A table's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub id: TableId,
    /// All columns, in their order in the table.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the key, in key order.
    pub key: Vec<usize>,
    pub key_kind: KeyKind,
    /// `SHOW CREATE TABLE` at the source.
    pub create_table: String,
}

impl TableSchema {
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.key.iter().map(|&i| &self.columns[i])
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// `*` (any run of characters) and `?` (one character) pattern matching,
/// as the configs use for database, table and column names.
pub fn glob(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let norm = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&norm(pattern), &norm(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            ColumnKind::parse("int", "int(10) unsigned").unwrap(),
            ColumnKind::Int {
                bytes: 4,
                unsigned: true
            }
        );
        assert_eq!(
            ColumnKind::parse("decimal", "decimal(65,30)").unwrap(),
            ColumnKind::Decimal {
                precision: 65,
                scale: 30
            }
        );
        assert_eq!(
            ColumnKind::parse("datetime", "datetime(6)").unwrap(),
            ColumnKind::DateTime { fsp: 6 }
        );
        assert_eq!(
            ColumnKind::parse("bit", "bit(64)").unwrap(),
            ColumnKind::Bit { bits: 64 }
        );
        assert!(ColumnKind::parse("mystery", "mystery").is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_labels("enum('a','it''s','','x,y')").unwrap(),
            vec!["a", "it's", "", "x,y"]
        );
        assert_eq!(parse_labels("set('')").unwrap(), vec![""]);
        assert!(parse_labels("enum('a").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(TableId::new("d", "t").quoted(), "`d`.`t`");
    }
}
