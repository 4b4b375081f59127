//! SQL literals for values, exact for every type.
//!
//! Statements are sent as text with literals rather than as prepared
//! statements: one round trip per statement, any number of rows in it, and
//! no placeholder limit. They are built as bytes: binary values go in as
//! `_binary'...'` string literals holding the bytes themselves (escaped),
//! so a value costs about its own size on the wire, not twice as a hex
//! literal would, and every byte arrives as it was. Character values are
//! utf8mb4 string literals, converted by the server to the column's
//! character set. The session runs with `NAMES utf8mb4` and without
//! `NO_BACKSLASH_ESCAPES`, which this escaping relies on (in utf8mb4 no
//! multi-byte sequence can hide a quote or a backslash).

use std::io::Write;

use change_stream::table::ColumnKind;
use change_stream::value::{format_time, Cell};

/// A quoted string literal.
pub fn quote_str(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    push_quoted(&mut out, s.as_bytes());
    String::from_utf8(out).expect("escaping UTF-8 keeps it UTF-8")
}

/// Appends `'bytes'`, escaped.
fn push_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'\'');
    push_escaped(out, bytes, |b| match b {
        b'\'' => Some(b"\\'"),
        b'\\' => Some(b"\\\\"),
        0 => Some(b"\\0"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        0x1a => Some(b"\\Z"),
        _ => None,
    });
    out.push(b'\'');
}

/// Copies `bytes`, each byte `escape` names replaced by what it gives.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8], escape: impl Fn(u8) -> Option<&'static [u8]>) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(e) = escape(b) {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(e);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether `cell` is an ENUM column's error value: the empty string of
/// index 0, which a non-strict session stores for a value that is not a
/// member. It arrives as `''`; when `''` is not a member, that is what it
/// is. A strict session refuses it, so the statements that write it run
/// with a lenient `sql_mode` (see `apply.rs`) and give it as `0`.
pub fn is_enum_error_value(kind: &ColumnKind, cell: &Cell) -> bool {
    match (kind, cell) {
        (ColumnKind::Enum { labels }, Cell::Text(s)) => {
            s.is_empty() && !labels.iter().any(String::is_empty)
        }
        _ => false,
    }
}

/// Appends the literal of `cell` for a column of `kind` to `out`.
pub fn push_literal(out: &mut Vec<u8>, kind: &ColumnKind, cell: &Cell) {
    if is_enum_error_value(kind, cell) {
        out.push(b'0');
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = match cell {
        Cell::Null => out.write_all(b"NULL"),
        Cell::Int(v) => write!(out, "{v}"),
        Cell::UInt(v) => write!(out, "{v}"),
        // `{:e}` prints the shortest digits that read back as the same value.
        // The server reads a literal as a double before storing it in a
        // FLOAT, so a float is written as the double it widens to (the
        // float's own shortest digits can round past FLT_MAX).
        Cell::Float(v) => write!(out, "{:e}", *v as f64),
        Cell::Double(v) => write!(out, "{v:e}"),
        Cell::Decimal(s) => out.write_all(s.as_bytes()),
        Cell::Text(s) => {
            push_quoted(out, s.as_bytes());
            Ok(())
        }
        Cell::Bytes(b) if matches!(kind, ColumnKind::Bit { .. }) => {
            // A BIT value as its number, so that every width reads back.
            let n = b
                .iter()
                .rev()
                .take(8)
                .rev()
                .fold(0u64, |n, &x| (n << 8) | x as u64);
            write!(out, "{n}")
        }
        Cell::Bytes(b) => {
            out.extend_from_slice(b"_binary");
            push_quoted(out, b);
            Ok(())
        }
        Cell::Date(d) => write!(out, "'{d}'"),
        Cell::DateTime(dt) => write!(out, "'{dt}'"),
        Cell::Time(us) => write!(out, "'{}'", format_time(*us)),
    };
}

/// A value as one field of `LOAD DATA`'s text form (tab separated, newline
/// terminated, backslash escapes): the literal's text without quotes or
/// `_binary`, `\N` for NULL, and tab, newline, carriage return, NUL and
/// backslash escaped. BIT columns take the number, through a variable
/// (see `apply.rs`). Not for an ENUM error value, which only a lenient
/// `VALUES` list writes.
pub fn push_load_field(out: &mut Vec<u8>, kind: &ColumnKind, cell: &Cell) {
    let escaped = |out: &mut Vec<u8>, bytes: &[u8]| {
        push_escaped(out, bytes, |b| match b {
            b'\\' => Some(b"\\\\"),
            b'\t' => Some(b"\\t"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            0 => Some(b"\\0"),
            _ => None,
        })
    };
    let _ = match cell {
        Cell::Null => out.write_all(b"\\N"),
        Cell::Text(s) => {
            escaped(out, s.as_bytes());
            Ok(())
        }
        Cell::Bytes(_) if matches!(kind, ColumnKind::Bit { .. }) => {
            push_literal(out, kind, cell);
            Ok(())
        }
        Cell::Bytes(b) => {
            escaped(out, b);
            Ok(())
        }
        Cell::Date(d) => write!(out, "{d}"),
        Cell::DateTime(dt) => write!(out, "{dt}"),
        Cell::Time(us) => out.write_all(format_time(*us).as_bytes()),
        // Text, which LOAD DATA's fields are, reads `0` as the year 2000;
        // `0000` is the zero year.
        Cell::Int(y) if matches!(kind, ColumnKind::Year) => write!(out, "{y:04}"),
        Cell::UInt(y) if matches!(kind, ColumnKind::Year) => write!(out, "{y:04}"),
        // Numbers: as in a literal.
        Cell::Int(_) | Cell::UInt(_) | Cell::Float(_) | Cell::Double(_) | Cell::Decimal(_) => {
            push_literal(out, kind, cell);
            Ok(())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use change_stream::value::{Date, DateTime};

    fn lit(kind: ColumnKind, cell: Cell) -> Vec<u8> {
        let mut s = Vec::new();
        push_literal(&mut s, &kind, &cell);
        s
    }

    fn text(kind: ColumnKind, cell: Cell) -> String {
        String::from_utf8(lit(kind, cell)).unwrap()
    }

    #[test]
    fn load_fields() {
        let field = |kind: ColumnKind, cell: Cell| {
            let mut s = Vec::new();
            push_load_field(&mut s, &kind, &cell);
            s
        };
        assert_eq!(field(ColumnKind::Text, Cell::Null), b"\\N");
        assert_eq!(
            field(ColumnKind::Text, Cell::Text("a\tb\nc\\d\re\0f'".into())),
            b"a\\tb\\nc\\\\d\\re\\0f'"
        );
        assert_eq!(
            field(ColumnKind::Bytes, Cell::Bytes(vec![0xff, 0, 9, b'N'])),
            b"\xff\\0\\tN"
        );
        assert_eq!(
            field(ColumnKind::Bit { bits: 12 }, Cell::Bytes(vec![0x0f, 0xff])),
            b"4095"
        );
        assert_eq!(field(ColumnKind::Double, Cell::Double(0.1)), b"1e-1");
        assert_eq!(field(ColumnKind::Year, Cell::Int(0)), b"0000");
        assert_eq!(field(ColumnKind::Year, Cell::Int(1999)), b"1999");
        assert_eq!(
            field(ColumnKind::Time { fsp: 0 }, Cell::Time(-1_000_000)),
            b"-00:00:01"
        );
    }

    #[test]
    fn literals() {
        assert_eq!(quote_str("it's a \\ \0 \n"), "'it\\'s a \\\\ \\0 \\n'");
        assert_eq!(
            lit(ColumnKind::Bytes, Cell::Bytes(vec![0, 255, b'\'', 0x1a])),
            b"_binary'\\0\xff\\'\\Z'"
        );
        assert_eq!(text(ColumnKind::Bytes, Cell::Bytes(vec![])), "_binary''");
        assert_eq!(
            text(ColumnKind::Bit { bits: 12 }, Cell::Bytes(vec![0x0f, 0xff])),
            "4095"
        );
        assert_eq!(text(ColumnKind::Double, Cell::Double(0.1)), "1e-1");
        assert_eq!(
            text(ColumnKind::Float, Cell::Float(f32::MAX)),
            "3.4028234663852886e38"
        );
        assert_eq!(
            text(ColumnKind::Float, Cell::Float(0.1)),
            "1.0000000149011612e-1"
        );
        assert_eq!(
            text(
                ColumnKind::Date,
                Cell::Date(Date {
                    year: 0,
                    month: 0,
                    day: 0
                })
            ),
            "'0000-00-00'"
        );
        assert_eq!(
            text(
                ColumnKind::DateTime { fsp: 6 },
                Cell::DateTime(DateTime::parse("2024-01-02 03:04:05.000006").unwrap())
            ),
            "'2024-01-02 03:04:05.000006'"
        );
        assert_eq!(
            text(ColumnKind::Time { fsp: 0 }, Cell::Time(-1_000_000)),
            "'-00:00:01'"
        );
        assert_eq!(
            text(ColumnKind::Text, Cell::Text("日本 😀".into())),
            "'日本 😀'"
        );
        let e = ColumnKind::Enum {
            labels: vec!["a".into(), "b".into()],
        };
        assert!(is_enum_error_value(&e, &Cell::Text(String::new())));
        assert_eq!(text(e.clone(), Cell::Text(String::new())), "0");
        assert_eq!(text(e, Cell::Text("b".into())), "'b'");
        // With '' a member, '' is that member.
        let with_empty = ColumnKind::Enum {
            labels: vec!["".into(), "a".into()],
        };
        assert!(!is_enum_error_value(
            &with_empty,
            &Cell::Text(String::new())
        ));
        assert_eq!(text(with_empty, Cell::Text(String::new())), "''");
    }
}
