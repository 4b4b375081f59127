//! Row filters: a WHERE condition per table, in SQL syntax.
//!
//! The condition is pushed down into the snapshot query as written, so
//! MariaDB itself evaluates it there. On the binlog it is evaluated here,
//! on every row image, with MariaDB's semantics for what the grammar
//! below accepts: three-valued logic (NULL), numbers compared exactly
//! (DECIMAL) or as doubles (FLOAT, DOUBLE, and a string compared with a
//! number), strings compared by the column's collation (case-insensitive
//! for `_ci` collations, trailing spaces ignored), dates and times
//! compared with string literals read as dates and times (TIMESTAMP
//! literals in UTC). An update that moves a row into the condition becomes
//! an insert, one that moves it out a delete.
//!
//! Grammar: `OR`/`||`, `XOR`, `AND`/`&&`, `NOT`/`!`, comparisons (`=`,
//! `<>`, `!=`, `<`, `<=`, `>`, `>=`, `<=>`), `IS [NOT] NULL`,
//! `[NOT] IN (...)`, `[NOT] BETWEEN ... AND ...`, `[NOT] LIKE ... [ESCAPE
//! '...']`, `+ - * / DIV % MOD`, parentheses, numbers, strings, `NULL`,
//! `TRUE`, `FALSE`, and column names (plain or quoted with backquotes).

use std::cmp::Ordering;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use change_stream::table::{Column, TableSchema};
use change_stream::value::{Cell, Date, DateTime};

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Column(String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Xor(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, CmpOp, Box<Expr>),
    IsNull(Box<Expr>, bool),
    /// `x IS [NOT] TRUE|FALSE`: the value's truth, never NULL.
    IsTruth(Box<Expr>, bool, bool),
    In(Box<Expr>, Vec<Expr>, bool),
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    Like(Box<Expr>, Box<Expr>, char, bool),
    Arith(Box<Expr>, char, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    NullSafeEq,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Num(String),
    Op(String),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '\'' || ch == '"' {
            let mut v = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err("a string is not closed".into()),
                    Some('\\') => {
                        let e = c.get(i + 1).copied().ok_or("a string is not closed")?;
                        v.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            '0' => '\0',
                            'r' => '\r',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(&q) if q == ch => {
                        if c.get(i + 1) == Some(&ch) {
                            v.push(ch);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&o) => {
                        v.push(o);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(v));
        } else if ch == '`' {
            let mut v = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err("a quoted name is not closed".into()),
                    Some('`') if c.get(i + 1) == Some(&'`') => {
                        v.push('`');
                        i += 2;
                    }
                    Some('`') => {
                        i += 1;
                        break;
                    }
                    Some(&o) => {
                        v.push(o);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Quoted(v));
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                i += 1;
            }
            if i < c.len() && (c[i] == 'e' || c[i] == 'E') {
                i += 1;
                if i < c.len() && (c[i] == '+' || c[i] == '-') {
                    i += 1;
                }
                while i < c.len() && c[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Tok::Num(c[start..i].iter().collect()));
        } else if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '$') {
                i += 1;
            }
            out.push(Tok::Word(c[start..i].iter().collect()));
        } else {
            let two: String = c[i..(i + 3).min(c.len())].iter().collect();
            let op = ["<=>", "<=", ">=", "<>", "!=", "||", "&&"]
                .into_iter()
                .find(|o| two.starts_with(o));
            let op = match op {
                Some(o) => o.to_string(),
                None if "=<>!()+-*/%,".contains(ch) => ch.to_string(),
                None => return Err(format!("unexpected character `{ch}`")),
            };
            i += op.chars().count();
            out.push(Tok::Op(op));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn kw(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn op(&mut self, o: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(x)) if x == o) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, o: &str) -> Result<(), String> {
        if self.op(o) {
            Ok(())
        } else {
            Err(format!("expected `{o}` {}", self.here()))
        }
    }

    fn here(&self) -> String {
        match self.peek() {
            None => "at the end".into(),
            Some(Tok::Word(w) | Tok::Num(w) | Tok::Op(w)) => format!("at `{w}`"),
            Some(Tok::Quoted(w)) => format!("at `{w}`"),
            Some(Tok::Str(s)) => format!("at '{s}'"),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.xor()?;
        while self.kw("OR") || self.op("||") {
            l = Expr::Or(Box::new(l), Box::new(self.xor()?));
        }
        Ok(l)
    }

    fn xor(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.kw("XOR") {
            l = Expr::Xor(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.not()?;
        while self.kw("AND") || self.op("&&") {
            l = Expr::And(Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.kw("NOT") || self.op("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, String> {
        let l = self.additive()?;
        if self.kw("IS") {
            let neg = self.kw("NOT");
            if self.kw("NULL") {
                return Ok(Expr::IsNull(Box::new(l), neg));
            }
            let truth = if self.kw("TRUE") {
                true
            } else if self.kw("FALSE") {
                false
            } else {
                return Err(format!(
                    "expected NULL, TRUE or FALSE after IS {}",
                    self.here()
                ));
            };
            return Ok(Expr::IsTruth(Box::new(l), truth, neg));
        }
        let neg = self.kw("NOT");
        if self.kw("IN") {
            self.expect_op("(")?;
            let mut items = vec![self.additive()?];
            while self.op(",") {
                items.push(self.additive()?);
            }
            self.expect_op(")")?;
            return Ok(Expr::In(Box::new(l), items, neg));
        }
        if self.kw("BETWEEN") {
            let lo = self.additive()?;
            if !self.kw("AND") {
                return Err(format!("expected AND in BETWEEN {}", self.here()));
            }
            let hi = self.additive()?;
            return Ok(Expr::Between(Box::new(l), Box::new(lo), Box::new(hi), neg));
        }
        if self.kw("LIKE") {
            let p = self.additive()?;
            let mut esc = '\\';
            if self.kw("ESCAPE") {
                match self.toks.get(self.i) {
                    Some(Tok::Str(s)) if s.chars().count() == 1 => {
                        esc = s.chars().next().expect("one char");
                        self.i += 1;
                    }
                    _ => {
                        return Err(format!(
                            "expected a one-character string after ESCAPE {}",
                            self.here()
                        ))
                    }
                }
            }
            return Ok(Expr::Like(Box::new(l), Box::new(p), esc, neg));
        }
        if neg {
            return Err(format!(
                "expected IN, BETWEEN or LIKE after NOT {}",
                self.here()
            ));
        }
        for (o, c) in [
            ("<=>", CmpOp::NullSafeEq),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<>", CmpOp::Ne),
            ("!=", CmpOp::Ne),
            ("=", CmpOp::Eq),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ] {
            if self.op(o) {
                return Ok(Expr::Cmp(Box::new(l), c, Box::new(self.additive()?)));
            }
        }
        Ok(l)
    }

    fn additive(&mut self) -> Result<Expr, String> {
        let mut l = self.term()?;
        loop {
            let o = if self.op("+") {
                '+'
            } else if self.op("-") {
                '-'
            } else {
                return Ok(l);
            };
            l = Expr::Arith(Box::new(l), o, Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        loop {
            let o = if self.op("*") {
                '*'
            } else if self.op("/") {
                '/'
            } else if self.op("%") || self.kw("MOD") {
                '%'
            } else if self.kw("DIV") {
                'd'
            } else {
                return Ok(l);
            };
            l = Expr::Arith(Box::new(l), o, Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.op("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.op("+") {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let t = self
            .peek()
            .cloned()
            .ok_or_else(|| "the condition ends too early".to_string())?;
        self.i += 1;
        Ok(match t {
            Tok::Num(n) => Expr::Number(n),
            Tok::Str(s) => Expr::Str(s),
            Tok::Quoted(q) => Expr::Column(q),
            Tok::Op(o) if o == "(" => {
                let e = self.or()?;
                self.expect_op(")")?;
                e
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("NULL") => Expr::Null,
            Tok::Word(w) if w.eq_ignore_ascii_case("TRUE") => Expr::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("FALSE") => Expr::Bool(false),
            Tok::Word(w)
                if [
                    "AND", "OR", "NOT", "IS", "IN", "LIKE", "BETWEEN", "XOR", "SELECT",
                ]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&w)) =>
            {
                return Err(format!("unexpected `{w}`"));
            }
            Tok::Word(w) => {
                if matches!(self.peek(), Some(Tok::Op(o)) if o == "(") {
                    return Err(format!("function calls are not supported (`{w}(`)"));
                }
                Expr::Column(w)
            }
            Tok::Op(o) => return Err(format!("unexpected `{o}`")),
        })
    }
}

/// Parses a condition; the error says where it went wrong.
pub fn parse(condition: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: lex(condition)?,
        i: 0,
    };
    let e = p.or()?;
    if p.i < p.toks.len() {
        return Err(format!("unexpected text {}", p.here()));
    }
    Ok(e)
}

/// A condition bound to a table's columns.
#[derive(Debug)]
pub struct RowFilter {
    pub condition: String,
    expr: Expr,
    /// For each column of the full table: its index, kind and collation.
    columns: Vec<(String, usize, bool)>,
}

impl RowFilter {
    /// Binds `condition` to `table` (its full column list, in binlog
    /// order); an unknown column is an error.
    pub fn new(condition: &str, table: &TableSchema) -> Result<Self, String> {
        let expr = parse(condition)?;
        let mut names = Vec::new();
        collect_columns(&expr, &mut names);
        let mut columns = Vec::new();
        for n in names {
            let (i, col): (usize, &Column) = table
                .columns
                .iter()
                .enumerate()
                .find(|(_, c)| c.name.eq_ignore_ascii_case(&n))
                .ok_or_else(|| format!("unknown column `{n}` in {}", table.id))?;
            let ci = col
                .collation
                .as_deref()
                .is_none_or(|c| !c.ends_with("_bin") && !c.contains("_cs") && c != "binary");
            columns.push((n.to_lowercase(), i, ci));
        }
        Ok(Self {
            condition: condition.to_string(),
            expr,
            columns,
        })
    }

    /// Whether a full row (every column, in table order) satisfies the
    /// condition (NULL counts as no).
    pub fn matches(&self, row: &[Cell]) -> bool {
        truth(&self.eval(&self.expr, row)) == Some(true)
    }

    fn eval(&self, e: &Expr, row: &[Cell]) -> V {
        match e {
            Expr::Null => V::Null,
            Expr::Bool(b) => V::Num(Num::Exact(BigDecimal::from(*b as i32))),
            Expr::Number(n) => number_literal(n),
            Expr::Str(s) => V::Str(s.clone(), None),
            Expr::Column(name) => {
                let lower = name.to_lowercase();
                match self.columns.iter().find(|(n, _, _)| *n == lower) {
                    Some((_, i, ci)) => value(&row[*i], *ci),
                    None => V::Null,
                }
            }
            Expr::Not(x) => bool_v(truth(&self.eval(x, row)).map(|b| !b)),
            Expr::Neg(x) => match to_num(&self.eval(x, row)) {
                Some(Num::Exact(d)) => V::Num(Num::Exact(-d)),
                Some(Num::Approx(f)) => V::Num(Num::Approx(-f)),
                None => V::Null,
            },
            Expr::And(a, b) => {
                let (x, y) = (truth(&self.eval(a, row)), truth(&self.eval(b, row)));
                bool_v(match (x, y) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                })
            }
            Expr::Or(a, b) => {
                let (x, y) = (truth(&self.eval(a, row)), truth(&self.eval(b, row)));
                bool_v(match (x, y) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                })
            }
            Expr::Xor(a, b) => {
                let (x, y) = (truth(&self.eval(a, row)), truth(&self.eval(b, row)));
                bool_v(x.zip(y).map(|(x, y)| x != y))
            }
            Expr::Cmp(a, op, b) => {
                let (x, y) = (self.eval(a, row), self.eval(b, row));
                if *op == CmpOp::NullSafeEq {
                    return bool_v(Some(match (&x, &y) {
                        (V::Null, V::Null) => true,
                        (V::Null, _) | (_, V::Null) => false,
                        _ => compare(&x, &y) == Some(Ordering::Equal),
                    }));
                }
                bool_v(compare(&x, &y).map(|o| match op {
                    CmpOp::Eq => o == Ordering::Equal,
                    CmpOp::Ne => o != Ordering::Equal,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Le => o != Ordering::Greater,
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::Ge => o != Ordering::Less,
                    CmpOp::NullSafeEq => unreachable!(),
                }))
            }
            Expr::IsNull(x, neg) => bool_v(Some(matches!(self.eval(x, row), V::Null) != *neg)),
            Expr::IsTruth(x, t, neg) => {
                bool_v(Some((truth(&self.eval(x, row)) == Some(*t)) != *neg))
            }
            Expr::In(x, items, neg) => {
                let x = self.eval(x, row);
                if matches!(x, V::Null) {
                    return V::Null;
                }
                let mut unknown = false;
                for it in items {
                    match compare(&x, &self.eval(it, row)) {
                        Some(Ordering::Equal) => return bool_v(Some(!*neg)),
                        None => unknown = true,
                        _ => {}
                    }
                }
                bool_v((!unknown).then_some(*neg))
            }
            Expr::Between(x, lo, hi, neg) => {
                let x = self.eval(x, row);
                let a = compare(&x, &self.eval(lo, row)).map(|o| o != Ordering::Less);
                let b = compare(&x, &self.eval(hi, row)).map(|o| o != Ordering::Greater);
                let r = match (a, b) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                bool_v(r.map(|r| r != *neg))
            }
            Expr::Like(x, p, esc, neg) => match (self.eval(x, row), self.eval(p, row)) {
                (V::Null, _) | (_, V::Null) => V::Null,
                (x, p) => {
                    let ci = match (&x, &p) {
                        (V::Str(_, Some(ci)), _) | (_, V::Str(_, Some(ci))) => *ci,
                        _ => true,
                    };
                    let (s, pat) = (text(&x), text(&p));
                    let (s, pat) = if ci {
                        (s.to_lowercase(), pat.to_lowercase())
                    } else {
                        (s, pat)
                    };
                    bool_v(Some(
                        like(
                            &pat.chars().collect::<Vec<_>>(),
                            &s.chars().collect::<Vec<_>>(),
                            *esc,
                        ) != *neg,
                    ))
                }
            },
            Expr::Arith(a, o, b) => {
                arith(to_num(&self.eval(a, row)), *o, to_num(&self.eval(b, row)))
            }
        }
    }
}

fn collect_columns(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Column(c) => {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(c)) {
                out.push(c.clone())
            }
        }
        Expr::Not(x) | Expr::Neg(x) | Expr::IsNull(x, _) | Expr::IsTruth(x, _, _) => {
            collect_columns(x, out)
        }
        Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Xor(a, b)
        | Expr::Cmp(a, _, b)
        | Expr::Arith(a, _, b)
        | Expr::Like(a, b, _, _) => {
            collect_columns(a, out);
            collect_columns(b, out);
        }
        Expr::In(x, items, _) => {
            collect_columns(x, out);
            for i in items {
                collect_columns(i, out);
            }
        }
        Expr::Between(a, b, c, _) => {
            collect_columns(a, out);
            collect_columns(b, out);
            collect_columns(c, out);
        }
        Expr::Null | Expr::Bool(_) | Expr::Number(_) | Expr::Str(_) => {}
    }
}

#[derive(Clone, Debug)]
enum Num {
    Exact(BigDecimal),
    Approx(f64),
}

/// A value during evaluation. Strings carry their column's collation
/// (case-insensitive or not), `None` for literals.
#[derive(Clone, Debug)]
enum V {
    Null,
    Num(Num),
    Str(String, Option<bool>),
    Bytes(Vec<u8>),
    Date(Date),
    DateTime(DateTime),
    Time(i64),
}

fn bool_v(b: Option<bool>) -> V {
    match b {
        None => V::Null,
        Some(b) => V::Num(Num::Exact(BigDecimal::from(b as i32))),
    }
}

fn number_literal(n: &str) -> V {
    if n.contains(['e', 'E']) {
        V::Num(Num::Approx(n.parse().unwrap_or(0.0)))
    } else {
        V::Num(Num::Exact(BigDecimal::from_str(n).unwrap_or_default()))
    }
}

fn value(c: &Cell, ci: bool) -> V {
    match c {
        Cell::Null => V::Null,
        Cell::Int(i) => V::Num(Num::Exact(BigDecimal::from(*i))),
        Cell::UInt(u) => V::Num(Num::Exact(BigDecimal::from(*u))),
        Cell::Float(f) => V::Num(Num::Approx(*f as f64)),
        Cell::Double(f) => V::Num(Num::Approx(*f)),
        Cell::Decimal(d) => V::Num(Num::Exact(BigDecimal::from_str(d).unwrap_or_default())),
        Cell::Text(s) => V::Str(s.clone(), Some(ci)),
        Cell::Bytes(b) => V::Bytes(b.clone()),
        Cell::Date(d) => V::Date(*d),
        Cell::DateTime(d) => V::DateTime(*d),
        Cell::Time(t) => V::Time(*t),
    }
}

/// The leading number of a string, as MariaDB converts one (`'12abc'` is
/// 12, `'abc'` is 0).
fn str_to_f64(s: &str) -> f64 {
    let s = s.trim_start();
    let mut end = 0;
    let b = s.as_bytes();
    if end < b.len() && (b[end] == b'-' || b[end] == b'+') {
        end += 1;
    }
    while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
        end += 1;
    }
    if end < b.len() && (b[end] == b'e' || b[end] == b'E') {
        let mut e = end + 1;
        if e < b.len() && (b[e] == b'-' || b[e] == b'+') {
            e += 1;
        }
        if e < b.len() && b[e].is_ascii_digit() {
            end = e;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
        }
    }
    s[..end].parse().unwrap_or(0.0)
}

fn to_num(v: &V) -> Option<Num> {
    Some(match v {
        V::Null => return None,
        V::Num(n) => n.clone(),
        V::Str(s, _) => Num::Approx(str_to_f64(s)),
        V::Bytes(b) => Num::Approx(str_to_f64(&String::from_utf8_lossy(b))),
        V::Date(d) => Num::Exact(BigDecimal::from(
            d.year as i64 * 10_000 + d.month as i64 * 100 + d.day as i64,
        )),
        V::DateTime(d) => Num::Approx(
            (d.date.year as f64 * 10_000.0 + d.date.month as f64 * 100.0 + d.date.day as f64)
                * 1_000_000.0
                + (d.hour as f64 * 10_000.0 + d.minute as f64 * 100.0 + d.second as f64)
                + d.micros as f64 / 1e6,
        ),
        V::Time(t) => Num::Approx(*t as f64 / 1e6),
    })
}

fn to_f64(n: &Num) -> f64 {
    match n {
        Num::Approx(f) => *f,
        Num::Exact(d) => d.to_string().parse().unwrap_or(0.0),
    }
}

fn truth(v: &V) -> Option<bool> {
    match to_num(v)? {
        Num::Exact(d) => Some(!bigdecimal::Zero::is_zero(&d)),
        Num::Approx(f) => Some(f != 0.0),
    }
}

fn arith(a: Option<Num>, o: char, b: Option<Num>) -> V {
    let (Some(a), Some(b)) = (a, b) else {
        return V::Null;
    };
    match (a, b) {
        (Num::Exact(a), Num::Exact(b)) => V::Num(Num::Exact(match o {
            '+' => a + b,
            '-' => a - b,
            '*' => a * b,
            '/' | 'd' | '%' if bigdecimal::Zero::is_zero(&b) => return V::Null,
            '/' => a / b,
            'd' => (a / b).with_scale(0),
            _ => a % b,
        })),
        (a, b) => {
            let (a, b) = (to_f64(&a), to_f64(&b));
            let r = match o {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                _ if b == 0.0 => return V::Null,
                '/' => a / b,
                'd' => (a / b).trunc(),
                _ => a % b,
            };
            V::Num(Num::Approx(r))
        }
    }
}

fn text(v: &V) -> String {
    match v {
        V::Str(s, _) => s.clone(),
        V::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        V::Num(Num::Exact(d)) => d.to_string(),
        V::Num(Num::Approx(f)) => f.to_string(),
        V::Date(d) => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        V::DateTime(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            d.date.year, d.date.month, d.date.day, d.hour, d.minute, d.second
        ),
        V::Time(t) => t.to_string(),
        V::Null => String::new(),
    }
}

fn parse_date(s: &str) -> Option<Date> {
    let mut it = s.trim().splitn(3, '-');
    let y = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let d = it.next()?.get(..2)?.trim().parse().ok()?;
    Some(Date {
        year: y,
        month: m,
        day: d,
    })
}

fn parse_datetime(s: &str) -> Option<DateTime> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let date = parse_date(date)?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let hour = t.next()?.parse().ok()?;
    let minute = t.next().unwrap_or("0").parse().ok()?;
    let second = t.next().unwrap_or("0").parse().ok()?;
    let micros = if frac.is_empty() {
        0
    } else {
        format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?
    };
    Some(DateTime {
        date,
        hour,
        minute,
        second,
        micros,
    })
}

fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next().unwrap_or("0").parse().ok()?;
    let sec: i64 = t.next().unwrap_or("0").parse().ok()?;
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?
    };
    let v = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    Some(if neg { -v } else { v })
}

fn midnight(d: Date) -> DateTime {
    DateTime {
        date: d,
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    }
}

/// Compares two values as MariaDB would; `None` when either is NULL.
fn compare(a: &V, b: &V) -> Option<Ordering> {
    use V::*;
    Some(match (a, b) {
        (Null, _) | (_, Null) => return None,
        (Num(x), Num(y)) => match (x, y) {
            (self::Num::Exact(x), self::Num::Exact(y)) => x.cmp(y),
            _ => to_f64(x).partial_cmp(&to_f64(y))?,
        },
        (Str(x, cx), Str(y, cy)) => {
            let ci = cx.or(*cy).unwrap_or(true);
            let (x, y) = (x.trim_end_matches(' '), y.trim_end_matches(' '));
            if ci {
                x.to_lowercase().cmp(&y.to_lowercase())
            } else {
                x.cmp(y)
            }
        }
        (Bytes(x), Bytes(y)) => x.cmp(y),
        (Bytes(x), Str(y, _)) => x.as_slice().cmp(y.as_bytes()),
        (Str(x, _), Bytes(y)) => x.as_bytes().cmp(y.as_slice()),
        (Date(x), Date(y)) => x.cmp(y),
        (DateTime(x), DateTime(y)) => x.cmp(y),
        (Date(x), DateTime(y)) => midnight(*x).cmp(y),
        (DateTime(x), Date(y)) => x.cmp(&midnight(*y)),
        (Time(x), Time(y)) => x.cmp(y),
        (Date(x), Str(s, _)) => match parse_datetime(s) {
            Some(y) if y.hour == 0 && y.minute == 0 && y.second == 0 && y.micros == 0 => {
                x.cmp(&y.date)
            }
            Some(y) => midnight(*x).cmp(&y),
            None => return compare(&Str(text(a), None), b),
        },
        (DateTime(x), Str(s, _)) => match parse_datetime(s) {
            Some(y) => x.cmp(&y),
            None => return compare(&Str(text(a), None), b),
        },
        (Time(x), Str(s, _)) => x.cmp(&parse_time(s)?),
        (Str(..), Date(_) | DateTime(_) | Time(_)) => return compare(b, a).map(Ordering::reverse),
        (x, y) => to_f64(&to_num(x)?).partial_cmp(&to_f64(&to_num(y)?))?,
    })
}

/// SQL LIKE: `%` any run, `_` one character, `esc` quotes the next one.
fn like(p: &[char], s: &[char], esc: char) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('%') => (0..=s.len()).any(|i| like(&p[1..], &s[i..], esc)),
        Some('_') => !s.is_empty() && like(&p[1..], &s[1..], esc),
        Some(&c) if c == esc && p.len() > 1 => {
            s.first() == Some(&p[1]) && like(&p[2..], &s[1..], esc)
        }
        Some(c) => s.first() == Some(c) && like(&p[1..], &s[1..], esc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use change_stream::table::{ColumnKind, KeyKind, TableId};

    fn table() -> TableSchema {
        let col = |name: &str, kind: ColumnKind, collation: Option<&str>| Column {
            name: name.into(),
            data_type: String::new(),
            column_type: String::new(),
            kind,
            nullable: true,
            charset: None,
            collation: collation.map(str::to_string),
            generated: None,
        };
        TableSchema {
            id: TableId::new("shop", "orders"),
            columns: vec![
                col(
                    "id",
                    ColumnKind::Int {
                        bytes: 4,
                        unsigned: false,
                    },
                    None,
                ),
                col(
                    "amount",
                    ColumnKind::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                    None,
                ),
                col("region", ColumnKind::Text, Some("utf8mb4_general_ci")),
                col("code", ColumnKind::Text, Some("utf8mb4_bin")),
                col("day", ColumnKind::Date, None),
                col("ratio", ColumnKind::Double, None),
            ],
            key: vec![0],
            key_kind: KeyKind::Primary,
            create_table: String::new(),
        }
    }

    fn row(
        amount: Option<&str>,
        region: Option<&str>,
        code: &str,
        day: (u16, u8, u8),
        ratio: f64,
    ) -> Vec<Cell> {
        vec![
            Cell::Int(1),
            amount.map_or(Cell::Null, |a| Cell::Decimal(a.into())),
            region.map_or(Cell::Null, |r| Cell::Text(r.into())),
            Cell::Text(code.into()),
            Cell::Date(Date {
                year: day.0,
                month: day.1,
                day: day.2,
            }),
            Cell::Double(ratio),
        ]
    }

    fn m(cond: &str, r: &[Cell]) -> bool {
        RowFilter::new(cond, &table()).unwrap().matches(r)
    }

    #[test]
    fn semantics() {
        let r = row(Some("100.50"), Some("EU "), "Ab", (2024, 5, 1), 0.1);
        assert!(
            m("amount > 100 AND region IN ('eu','us')", &r),
            "collation: case and trailing spaces"
        );
        assert!(
            !m("amount > 100.5", &r) && m("amount >= 100.50", &r),
            "exact decimals"
        );
        assert!(
            m("code = 'Ab'", &r) && !m("code = 'ab'", &r),
            "binary collation"
        );
        assert!(m("region LIKE 'e%'", &r) && !m("code LIKE 'a%'", &r));
        assert!(m("day BETWEEN '2024-01-01' AND '2024-12-31'", &r));
        assert!(m("day = '2024-05-01'", &r) && m("day < '2024-05-01 00:00:01'", &r));
        assert!(m("ratio = 0.1", &r), "doubles compare as doubles");
        assert!(m("ratio * 10 = 1", &r));
        assert!(m("amount + 0.5 = 101", &r) && m("-amount < 0", &r) && m("amount DIV 3 = 33", &r));
        assert!(m("NOT (region = 'us')", &r));
        // NULL: comparisons are unknown, which is not a match, also negated.
        let n = row(None, None, "x", (2024, 1, 1), 0.0);
        assert!(!m("amount > 100", &n) && !m("NOT (amount > 100)", &n));
        assert!(!m("region IN ('eu')", &n) && !m("region NOT IN ('eu')", &n));
        assert!(m("region IS NULL", &n) && m("amount <=> NULL", &n));
        assert!(
            m("amount > 100 OR code = 'x'", &n),
            "unknown OR true is true"
        );
        assert!(
            !m("amount > 100 AND code = 'x'", &n),
            "unknown AND true is unknown"
        );
        assert!(
            !m("region NOT IN ('eu', NULL)", &r),
            "NOT IN with a NULL is never true"
        );
        // Strings and numbers compare as numbers.
        assert!(m("code = 0", &r) && m("'12abc' = 12", &r));
        assert!(m("amount IS TRUE", &r) && m("region IS NOT TRUE", &r));
        assert!(m("amount IS NOT FALSE", &r) && !m("amount IS FALSE", &r));
    }

    #[test]
    fn errors() {
        let t = table();
        let e = |c: &str| RowFilter::new(c, &t).unwrap_err();
        assert!(
            e("amount >").contains("ends too early"),
            "{}",
            e("amount >")
        );
        assert!(e("missing = 1").contains("unknown column `missing`"));
        assert!(e("amount > 1 1").contains("unexpected text"));
        assert!(e("LOWER(region) = 'eu'").contains("function calls are not supported"));
        assert!(e("region = 'eu").contains("not closed"));
    }
}
