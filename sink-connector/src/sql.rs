//! SQL literals for values, exact for every type.
//!
//! Statements are sent as text with literals rather than as prepared
//! statements: one round trip per statement, any number of rows in it, and
//! no placeholder limit. The sink's session runs without
//! `NO_BACKSLASH_ESCAPES`, which the escaping here assumes. Binary values
//! are hex literals, so every byte arrives as it was; character values are
//! utf8mb4 string literals, converted by the server to the column's
//! character set.

use change_stream::avro::hex;
use change_stream::table::ColumnKind;
use change_stream::value::{format_time, Cell};

/// A quoted string literal.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_quoted(&mut out, s);
    out
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// Appends the literal of `cell` for a column of `kind` to `out`.
pub fn push_literal(out: &mut String, kind: &ColumnKind, cell: &Cell) {
    use std::fmt::Write;
    match cell {
        Cell::Null => out.push_str("NULL"),
        Cell::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        // `{:e}` prints the shortest digits that read back as the same value.
        // The server reads a literal as a double before storing it in a
        // FLOAT, so a float is written as the double it widens to (the
        // float's own shortest digits can round past FLT_MAX).
        Cell::Float(v) => {
            let _ = write!(out, "{:e}", *v as f64);
        }
        Cell::Double(v) => {
            let _ = write!(out, "{v:e}");
        }
        Cell::Decimal(s) => out.push_str(s),
        Cell::Text(s) => push_quoted(out, s),
        Cell::Bytes(b) => {
            if matches!(kind, ColumnKind::Bit { .. }) {
                // A BIT value as its number, so that every width reads back.
                let mut n = 0u64;
                for &x in b.iter().rev().take(8).rev() {
                    n = (n << 8) | x as u64;
                }
                let _ = write!(out, "{n}");
            } else if b.is_empty() {
                out.push_str("''");
            } else {
                out.push_str("X'");
                out.push_str(&hex(b));
                out.push('\'');
            }
        }
        Cell::Date(d) => {
            let _ = write!(out, "'{d}'");
        }
        Cell::DateTime(dt) => {
            let _ = write!(out, "'{dt}'");
        }
        Cell::Time(us) => {
            let _ = write!(out, "'{}'", format_time(*us));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use change_stream::value::{Date, DateTime};

    fn lit(kind: ColumnKind, cell: Cell) -> String {
        let mut s = String::new();
        push_literal(&mut s, &kind, &cell);
        s
    }

    #[test]
    fn literals() {
        assert_eq!(quote_str("it's a \\ \0 \n"), "'it\\'s a \\\\ \\0 \\n'");
        assert_eq!(lit(ColumnKind::Bytes, Cell::Bytes(vec![0, 255])), "X'00ff'");
        assert_eq!(lit(ColumnKind::Bytes, Cell::Bytes(vec![])), "''");
        assert_eq!(
            lit(ColumnKind::Bit { bits: 12 }, Cell::Bytes(vec![0x0f, 0xff])),
            "4095"
        );
        assert_eq!(lit(ColumnKind::Double, Cell::Double(0.1)), "1e-1");
        assert_eq!(
            lit(ColumnKind::Float, Cell::Float(3.4028235e38)),
            "3.4028234663852886e38"
        );
        assert_eq!(
            lit(
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
            lit(
                ColumnKind::DateTime { fsp: 6 },
                Cell::DateTime(DateTime::parse("2024-01-02 03:04:05.000006").unwrap())
            ),
            "'2024-01-02 03:04:05.000006'"
        );
        assert_eq!(
            lit(ColumnKind::Time { fsp: 0 }, Cell::Time(-1_000_000)),
            "'-00:00:01'"
        );
    }
}
