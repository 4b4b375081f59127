//! MariaDB values (from the snapshot's queries and from binlog rows events)
//! into [`Cell`]s, driven by the column's definition.
//!
//! The two paths deliver some types differently, and this is the one place
//! that knows it:
//! - TIMESTAMP: the snapshot session runs with `time_zone='+00:00'`, so it
//!   reads UTC date-times; the binlog carries `seconds[.fraction]` since the
//!   epoch (0 is the zero timestamp).
//! - ENUM and SET: the snapshot reads labels; the binlog carries the 1-based
//!   index and the member bitmask.
//! - YEAR: the binlog decoder reports the zero year as 1900.
//! - Character data: the snapshot session reads utf8mb4; the binlog carries
//!   the column's own character set.
//! - Compressed columns (`VARCHAR(n) COMPRESSED`, `BLOB COMPRESSED`): the
//!   snapshot reads the value; the binlog carries it as stored, compressed
//!   (see [`uncompress`]).

use change_stream::table::{Column, ColumnKind};
use change_stream::value::{Cell, Date, DateTime};
use mysql_async::Value;

/// Where a value was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Snapshot,
    Binlog,
}

fn bad(column: &Column, value: &Value, why: &str) -> String {
    format!(
        "column `{}` ({}): cannot read {value:?}: {why}",
        column.name, column.column_type
    )
}

/// Converts one value of `column`.
pub fn to_cell(column: &Column, value: Value, origin: Origin) -> Result<Cell, String> {
    if value == Value::NULL {
        return Ok(Cell::Null);
    }
    let value = match value {
        Value::Bytes(b) if origin == Origin::Binlog && column.compressed() => {
            Value::Bytes(uncompress(&b).map_err(|why| bad(column, &Value::Bytes(b), why))?)
        }
        v => v,
    };
    let cell = match (&column.kind, value) {
        (ColumnKind::Int { unsigned: true, .. }, Value::Int(v)) if v >= 0 => Cell::UInt(v as u64),
        (ColumnKind::Int { unsigned: true, .. }, Value::UInt(v)) => Cell::UInt(v),
        (
            ColumnKind::Int {
                unsigned: false, ..
            },
            Value::Int(v),
        ) => Cell::Int(v),
        (ColumnKind::Int { .. }, v @ Value::Bytes(_)) => {
            let s = text(column, &v)?;
            if let Ok(i) = s.parse::<i64>() {
                if matches!(column.kind, ColumnKind::Int { unsigned: true, .. }) {
                    Cell::UInt(i as u64)
                } else {
                    Cell::Int(i)
                }
            } else {
                Cell::UInt(s.parse().map_err(|_| bad(column, &v, "not an integer"))?)
            }
        }
        (ColumnKind::Year, Value::Int(v)) => Cell::Int(v),
        (ColumnKind::Year, v @ Value::Bytes(_)) => {
            let y: i64 = text(column, &v)?
                .parse()
                .map_err(|_| bad(column, &v, "not a year"))?;
            Cell::Int(if origin == Origin::Binlog && y == 1900 {
                0
            } else {
                y
            })
        }
        (ColumnKind::Decimal { .. }, v @ Value::Bytes(_)) => Cell::Decimal(text(column, &v)?),
        (ColumnKind::Float, Value::Float(f)) => Cell::Float(f),
        (ColumnKind::Float, Value::Double(f)) => Cell::Float(f as f32),
        (ColumnKind::Double, Value::Double(f)) => Cell::Double(f),
        (ColumnKind::Double, Value::Float(f)) => Cell::Double(f as f64),
        (ColumnKind::Float | ColumnKind::Double, v @ Value::Bytes(_)) => {
            let f: f64 = text(column, &v)?
                .parse()
                .map_err(|_| bad(column, &v, "not a number"))?;
            if column.kind == ColumnKind::Float {
                Cell::Float(f as f32)
            } else {
                Cell::Double(f)
            }
        }
        (ColumnKind::Bit { bits }, Value::Bytes(b)) => {
            let len = (*bits as usize).div_ceil(8);
            let mut out = vec![0u8; len.saturating_sub(b.len())];
            out.extend_from_slice(&b[b.len().saturating_sub(len)..]);
            Cell::Bytes(out)
        }
        (ColumnKind::Bit { bits }, Value::Int(v)) => {
            let len = (*bits as usize).div_ceil(8);
            Cell::Bytes((v as u64).to_be_bytes()[8 - len..].to_vec())
        }
        (ColumnKind::Bit { bits }, Value::UInt(v)) => {
            let len = (*bits as usize).div_ceil(8);
            Cell::Bytes(v.to_be_bytes()[8 - len..].to_vec())
        }
        (ColumnKind::Date, Value::Date(y, m, d, ..)) => Cell::Date(Date {
            year: y,
            month: m,
            day: d,
        }),
        (ColumnKind::Date, v @ Value::Bytes(_)) => Cell::Date(
            Date::parse(&text(column, &v)?).ok_or_else(|| bad(column, &v, "not a date"))?,
        ),
        (
            ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. },
            Value::Date(y, mo, d, h, mi, s, us),
        ) => Cell::DateTime(DateTime {
            date: Date {
                year: y,
                month: mo,
                day: d,
            },
            hour: h,
            minute: mi,
            second: s,
            micros: us,
        }),
        (ColumnKind::Timestamp { .. }, v @ Value::Bytes(_)) if origin == Origin::Binlog => {
            let s = text(column, &v)?;
            let (secs, frac) = s.split_once('.').unwrap_or((&s, ""));
            let secs: i64 = secs
                .parse()
                .map_err(|_| bad(column, &v, "not epoch seconds"))?;
            let micros: i64 = if frac.is_empty() {
                0
            } else {
                format!("{frac:0<6}")[..6]
                    .parse()
                    .map_err(|_| bad(column, &v, "bad fraction"))?
            };
            if secs == 0 && micros == 0 {
                Cell::DateTime(DateTime {
                    date: Date {
                        year: 0,
                        month: 0,
                        day: 0,
                    },
                    hour: 0,
                    minute: 0,
                    second: 0,
                    micros: 0,
                })
            } else {
                Cell::DateTime(
                    DateTime::from_micros(secs * 1_000_000 + micros)
                        .ok_or_else(|| bad(column, &v, "out of range"))?,
                )
            }
        }
        (ColumnKind::Timestamp { .. }, Value::Int(secs)) => Cell::DateTime(
            DateTime::from_micros(secs * 1_000_000)
                .ok_or_else(|| bad(column, &Value::Int(secs), "out of range"))?,
        ),
        (ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. }, v @ Value::Bytes(_)) => {
            Cell::DateTime(
                DateTime::parse(&text(column, &v)?)
                    .ok_or_else(|| bad(column, &v, "not a date-time"))?,
            )
        }
        (ColumnKind::Time { .. }, Value::Time(neg, days, h, m, s, us)) => {
            let micros = ((days as i64 * 24 + h as i64) * 3600 + m as i64 * 60 + s as i64)
                * 1_000_000
                + us as i64;
            Cell::Time(if neg { -micros } else { micros })
        }
        (ColumnKind::Time { .. }, v @ Value::Bytes(_)) => Cell::Time(
            change_stream::value::parse_time(&text(column, &v)?)
                .ok_or_else(|| bad(column, &v, "not a time"))?,
        ),
        (ColumnKind::Enum { labels }, Value::Int(i)) => Cell::Text(match i {
            0 => String::new(),
            i => labels
                .get(i as usize - 1)
                .cloned()
                .ok_or_else(|| bad(column, &Value::Int(i), "no such ENUM member"))?,
        }),
        (ColumnKind::Set { labels }, Value::Bytes(b)) if origin == Origin::Binlog => {
            let mut mask = [0u8; 8];
            mask[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
            Cell::Text(set_members(labels, u64::from_le_bytes(mask)))
        }
        (ColumnKind::Set { labels }, Value::Int(mask)) => {
            Cell::Text(set_members(labels, mask as u64))
        }
        (ColumnKind::Text | ColumnKind::Enum { .. } | ColumnKind::Set { .. }, Value::Bytes(b)) => {
            Cell::Text(decode_text(column, b, origin)?)
        }
        (ColumnKind::Bytes | ColumnKind::Geometry, Value::Bytes(b)) => Cell::Bytes(b),
        // The binlog carries these as fixed-length binary strings with their
        // trailing zero bytes stripped (the nil UUID arrives empty).
        (ColumnKind::Inet4, Value::Bytes(b)) if origin == Origin::Binlog && b.len() <= 4 => {
            let b = zero_padded::<4>(&b);
            Cell::Text(std::net::Ipv4Addr::from(b).to_string())
        }
        (ColumnKind::Inet6, Value::Bytes(b)) if origin == Origin::Binlog && b.len() <= 16 => {
            Cell::Text(std::net::Ipv6Addr::from(zero_padded::<16>(&b)).to_string())
        }
        (ColumnKind::Uuid, Value::Bytes(b)) if origin == Origin::Binlog && b.len() <= 16 => {
            Cell::Text(format_mariadb_uuid(&zero_padded::<16>(&b)))
        }
        (ColumnKind::Inet4 | ColumnKind::Inet6 | ColumnKind::Uuid, v @ Value::Bytes(_)) => {
            Cell::Text(text(column, &v)?)
        }
        (_, v) => return Err(bad(column, &v, "unexpected value type")),
    };
    Ok(cell)
}

/// `b` followed by zero bytes up to N bytes.
fn zero_padded<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out[..b.len()].copy_from_slice(b);
    out
}

/// The labels of the members of a SET bitmask, as MariaDB prints them.
fn set_members(labels: &[String], mask: u64) -> String {
    let members: Vec<&str> = labels
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, l)| l.as_str())
        .collect();
    members.join(",")
}

/// A UUID column's 16 bytes from the binlog, which MariaDB 10.11 logs in
/// the order of the text form (tests/scenarios/inet_uuid checks both
/// time-based and random UUIDs).
fn format_mariadb_uuid(b: &[u8]) -> String {
    let h = change_stream::avro::hex(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn text(column: &Column, v: &Value) -> Result<String, String> {
    match v {
        Value::Bytes(b) => {
            String::from_utf8(b.clone()).map_err(|_| bad(column, v, "not UTF-8 text"))
        }
        _ => Err(bad(column, v, "not text")),
    }
}

/// Character data into UTF-8. The snapshot session reads utf8mb4 already;
/// binlog bytes are in the column's character set.
fn decode_text(column: &Column, bytes: Vec<u8>, origin: Origin) -> Result<String, String> {
    let charset = column.charset.as_deref().unwrap_or("utf8mb4");
    let bad = |why: &str| {
        format!(
            "column `{}` ({}, character set {charset}): {why}",
            column.name, column.column_type
        )
    };
    if origin == Origin::Snapshot || charset.starts_with("utf8") || charset == "ascii" {
        return String::from_utf8(bytes)
            .map_err(|e| bad(&format!("bytes are not valid UTF-8: {e}")));
    }
    if charset == "utf32" {
        return bytes
            .chunks(4)
            .map(|c| {
                let code = u32::from_be_bytes(c.try_into().map_err(|_| bad("truncated UTF-32"))?);
                char::from_u32(code).ok_or_else(|| bad("invalid UTF-32 code point"))
            })
            .collect();
    }
    let encoding = encoding_of(charset).ok_or_else(|| {
        bad("this character set is not supported in the binlog yet; use utf8mb4 or one of those listed in the README")
    })?;
    encoding
        .decode_without_bom_handling_and_without_replacement(&bytes)
        .map(|s| s.into_owned())
        .ok_or_else(|| bad("bytes that are not valid in this character set"))
}

/// The encoding of a MariaDB character set, where one matches it byte for
/// byte. MariaDB's latin1 is Windows-1252 with the five undefined bytes
/// mapped to the C1 controls of the same value, which is what the WHATWG
/// windows-1252 decoder does.
fn encoding_of(charset: &str) -> Option<&'static encoding_rs::Encoding> {
    use encoding_rs::*;
    Some(match charset {
        "latin1" => WINDOWS_1252,
        "latin2" => ISO_8859_2,
        "latin7" => ISO_8859_13,
        "cp1250" => WINDOWS_1250,
        "cp1251" => WINDOWS_1251,
        "cp1256" => WINDOWS_1256,
        "cp1257" => WINDOWS_1257,
        "greek" => ISO_8859_7,
        "hebrew" => ISO_8859_8,
        "koi8r" => KOI8_R,
        "koi8u" => KOI8_U,
        "cp866" => IBM866,
        "macroman" => MACINTOSH,
        "ucs2" | "utf16" => UTF_16BE,
        "utf16le" => UTF_16LE,
        "sjis" => SHIFT_JIS,
        "ujis" => EUC_JP,
        "euckr" => EUC_KR,
        "gbk" => GBK,
        "gb18030" => GB18030,
        "big5" => BIG5,
        _ => return None,
    })
}

/// A compressed column's value as MariaDB stores it (and logs it): empty
/// for the empty string; otherwise a header byte, then either the value
/// itself (header 0: not worth compressing) or its original length and
/// zlib data. The header's high nibble is the method (8: zlib, the only
/// one), bit 3 says the deflate stream has no zlib wrapper, and bits 0-2
/// give the byte count of the big-endian original length.
pub fn uncompress(stored: &[u8]) -> Result<Vec<u8>, &'static str> {
    use std::io::Read;
    let Some((&header, rest)) = stored.split_first() else {
        return Ok(Vec::new());
    };
    match header >> 4 {
        0 => return Ok(rest.to_vec()),
        8 => {}
        _ => return Err("unknown compression method in a compressed column"),
    }
    let len_bytes = (header & 0x07) as usize;
    if rest.len() < len_bytes {
        return Err("compressed value shorter than its header");
    }
    let (len, data) = rest.split_at(len_bytes);
    let original = len.iter().fold(0usize, |n, &b| (n << 8) | b as usize);
    let mut out = Vec::with_capacity(original);
    let read = if header & 0x08 != 0 {
        flate2::read::DeflateDecoder::new(data).read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(data).read_to_end(&mut out)
    };
    match read {
        Ok(_) if out.len() == original => Ok(out),
        Ok(_) => Err("compressed value of another length than its header says"),
        Err(_) => Err("compressed value that does not inflate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, column_type: &str) -> Column {
        Column {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            kind: ColumnKind::parse(data_type, column_type).unwrap(),
            nullable: true,
            charset: Some("latin1".into()),
            collation: None,
            generated: None,
        }
    }

    #[test]
    fn binlog_specials() {
        let ts = col("timestamp", "timestamp(6)");
        assert_eq!(
            to_cell(&ts, Value::Bytes(b"1.5".to_vec()), Origin::Binlog).unwrap(),
            Cell::DateTime(DateTime::parse("1970-01-01 00:00:01.5").unwrap())
        );
        assert_eq!(
            to_cell(&ts, Value::Bytes(b"0".to_vec()), Origin::Binlog).unwrap(),
            Cell::DateTime(DateTime::parse("0000-00-00 00:00:00").unwrap())
        );
        let e = col("enum", "enum('a','b')");
        assert_eq!(
            to_cell(&e, Value::Int(2), Origin::Binlog).unwrap(),
            Cell::Text("b".into())
        );
        assert_eq!(
            to_cell(&e, Value::Int(0), Origin::Binlog).unwrap(),
            Cell::Text("".into())
        );
        let s = col("set", "set('a','b','c')");
        assert_eq!(
            to_cell(&s, Value::Bytes(vec![5]), Origin::Binlog).unwrap(),
            Cell::Text("a,c".into())
        );
        let y = col("year", "year(4)");
        assert_eq!(
            to_cell(&y, Value::Bytes(b"1900".to_vec()), Origin::Binlog).unwrap(),
            Cell::Int(0)
        );
        let t = col("varchar", "varchar(10)");
        assert_eq!(
            to_cell(&t, Value::Bytes(vec![0xE9, 0x80]), Origin::Binlog).unwrap(),
            Cell::Text("é€".into())
        );
        let u = col("bigint", "bigint(20) unsigned");
        assert_eq!(
            to_cell(&u, Value::UInt(u64::MAX), Origin::Binlog).unwrap(),
            Cell::UInt(u64::MAX)
        );
        let tm = col("time", "time");
        assert_eq!(
            to_cell(&tm, Value::Time(true, 34, 22, 59, 59, 0), Origin::Binlog).unwrap(),
            Cell::Time(-3_020_399_000_000)
        );
    }

    #[test]
    fn compressed_values_inflate() {
        use std::io::Write;
        assert_eq!(uncompress(b"").unwrap(), b"");
        assert_eq!(uncompress(b"\0abc").unwrap(), b"abc");
        let text = b"compressible ".repeat(40);
        for raw in [false, true] {
            let mut stored = vec![0x80 | if raw { 0x08 } else { 0 } | 2];
            stored.extend_from_slice(&(text.len() as u16).to_be_bytes());
            let data = if raw {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
                e.write_all(&text).unwrap();
                e.finish().unwrap()
            } else {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
                e.write_all(&text).unwrap();
                e.finish().unwrap()
            };
            stored.extend_from_slice(&data);
            assert_eq!(uncompress(&stored).unwrap(), text);
            stored.truncate(stored.len() - 2);
            assert!(uncompress(&stored).is_err());
        }
        assert!(uncompress(b"\x12ab").is_err());
    }
}
