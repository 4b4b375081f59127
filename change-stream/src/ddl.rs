//! Reading what a DDL statement from the binlog does: which tables it
//! creates, changes, renames, empties or drops, and which other objects
//! (databases, views, routines, triggers) it touches.
//!
//! This is not a SQL parser: the statement is executed as written at the
//! destination. It only needs to know the statement's kind and the names it
//! acts on, which sit at fixed places in MariaDB's grammar. The tokenizer
//! understands quoting (backticks, strings) and comments, including the
//! executable `/*! ... */` kind, whose content counts.

use crate::table::TableId;

/// What a DDL statement does to tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableEffect {
    Created(TableId),
    Altered(TableId),
    Dropped(TableId),
    Renamed { from: TableId, to: TableId },
    Truncated(TableId),
}

impl TableEffect {
    /// Every table the effect names (both names of a rename).
    pub fn tables(&self) -> Vec<&TableId> {
        match self {
            TableEffect::Created(t)
            | TableEffect::Altered(t)
            | TableEffect::Dropped(t)
            | TableEffect::Truncated(t) => vec![t],
            TableEffect::Renamed { from, to } => vec![from, to],
        }
    }
}

/// A DDL statement, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ddl {
    /// Statements on tables (and their indexes).
    Table {
        kind: String,
        effects: Vec<TableEffect>,
    },
    /// CREATE / ALTER / DROP DATABASE (or SCHEMA).
    Database { kind: String, name: String },
    /// Views, procedures, functions, triggers, events, sequences: an object
    /// in a database.
    Object {
        kind: String,
        database: String,
        name: String,
    },
    /// Anything else (GRANT, CREATE USER, ANALYZE, ...): not replicated.
    Other,
}

impl Ddl {
    /// The statement's kind, as `ALTER TABLE`, `CREATE VIEW` ...
    pub fn kind(&self) -> &str {
        match self {
            Ddl::Table { kind, .. } | Ddl::Database { kind, .. } | Ddl::Object { kind, .. } => kind,
            Ddl::Other => "OTHER",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// A word or a quoted identifier; `quoted` ones are never keywords.
    Ident {
        text: String,
        quoted: bool,
    },
    Str,
    Punct(char),
}

impl Tok {
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Ident { text, quoted: false } if text.eq_ignore_ascii_case(kw))
    }
}

fn tokenize(sql: &str, ansi_quotes: bool) -> Vec<Tok> {
    tokenize_spans(sql, ansi_quotes).0
}

/// A token of a statement, with where it is (char indexes, end exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A word or identifier; `quoted` ones are never keywords.
    Word {
        text: String,
        quoted: bool,
        start: usize,
        end: usize,
    },
    /// A string literal.
    Str,
    Punct(char),
}

/// The statement's tokens (comments dropped, executable comments kept).
pub fn pieces(sql: &str, ansi_quotes: bool) -> Vec<Piece> {
    let (toks, starts, ends) = tokenize_spans(sql, ansi_quotes);
    toks.into_iter()
        .zip(starts.into_iter().zip(ends))
        .map(|(t, (start, end))| match t {
            Tok::Ident { text, quoted } => Piece::Word {
                text,
                quoted,
                start,
                end,
            },
            Tok::Str => Piece::Str,
            Tok::Punct(c) => Piece::Punct(c),
        })
        .collect()
}

/// The tokens, and where each starts (a char index into `sql`).
/// With `ansi_quotes` (the `ANSI_QUOTES` sql_mode), `"x"` is an identifier.
fn tokenize_spans(sql: &str, ansi_quotes: bool) -> (Vec<Tok>, Vec<usize>, Vec<usize>) {
    let b: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let (tok_start, before) = (i, out.len());
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#'
            || (c == '-'
                && b.get(i + 1) == Some(&'-')
                && b.get(i + 2).is_none_or(|c| c.is_whitespace()))
        {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            if b.get(i + 2) == Some(&'!')
                || b.get(i + 2) == Some(&'M') && b.get(i + 3) == Some(&'!')
            {
                // Executable comment: skip the marker and version digits,
                // keep the content; its closing */ is dropped below.
                i += if b[i + 2] == 'M' { 4 } else { 3 };
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            } else {
                i += 2;
                while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
        } else if c == '*' && b.get(i + 1) == Some(&'/') {
            i += 2;
        } else if c == '`' || (ansi_quotes && c == '"') {
            let mut text = String::new();
            i += 1;
            while i < b.len() {
                if b[i] == c {
                    if b.get(i + 1) == Some(&c) {
                        text.push(c);
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(b[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Ident { text, quoted: true });
        } else if c == '\'' || c == '"' {
            i += 1;
            while i < b.len() {
                if b[i] == '\\' {
                    i += 2;
                    continue;
                }
                if b[i] == c {
                    if b.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str);
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '$') {
                i += 1;
            }
            out.push(Tok::Ident {
                text: b[start..i].iter().collect(),
                quoted: false,
            });
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
        if out.len() > before {
            starts.push(tok_start);
            ends.push(i.min(b.len()));
        }
    }
    (out, starts, ends)
}

struct Parser<'a> {
    toks: &'a [Tok],
    i: usize,
    default_db: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn kws(&mut self, kws: &[&str]) -> bool {
        let save = self.i;
        for k in kws {
            if !self.kw(k) {
                self.i = save;
                return false;
            }
        }
        true
    }

    fn punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        match self.peek()? {
            Tok::Ident { text, .. } => {
                let t = text.clone();
                self.i += 1;
                Some(t)
            }
            _ => None,
        }
    }

    /// `name` or `db.name`.
    fn qualified(&mut self) -> Option<TableId> {
        let first = self.ident()?;
        if self.punct('.') {
            let second = self.ident()?;
            Some(TableId::new(first, second))
        } else {
            Some(TableId::new(self.default_db, first))
        }
    }

    fn if_exists(&mut self) {
        self.kws(&["IF", "EXISTS"]);
    }

    fn if_not_exists(&mut self) {
        self.kws(&["IF", "NOT", "EXISTS"]);
    }

    /// Skips `DEFINER = user`, `ALGORITHM = x`, `SQL SECURITY x`, `OR REPLACE`
    /// and similar prefixes of CREATE.
    fn skip_create_options(&mut self) {
        loop {
            if self.kws(&["OR", "REPLACE"]) || self.kw("TEMPORARY") || self.kw("AGGREGATE") {
                continue;
            }
            if self.kw("DEFINER") || self.kw("ALGORITHM") {
                self.punct('=');
                // user@host or CURRENT_USER[()] or a word
                self.ident();
                if self.punct('@') {
                    self.ident();
                } else if let Some(Tok::Str) = self.peek() {
                    self.i += 1;
                }
                if self.punct('(') {
                    self.punct(')');
                }
                // 'user'@'host' forms
                while matches!(self.peek(), Some(Tok::Str) | Some(Tok::Punct('@'))) {
                    self.i += 1;
                }
                continue;
            }
            if self.kws(&["SQL", "SECURITY"]) {
                self.ident();
                continue;
            }
            break;
        }
    }
}

/// Classifies a DDL statement run with `default_db` as its current
/// database.
pub fn classify(sql: &str, default_db: &str) -> Ddl {
    classify_in(sql, default_db, false)
}

/// [`classify`], for a statement run with or without `ANSI_QUOTES`.
pub fn classify_in(sql: &str, default_db: &str, ansi_quotes: bool) -> Ddl {
    let toks = tokenize(sql, ansi_quotes);
    let mut p = Parser {
        toks: &toks,
        i: 0,
        default_db,
    };
    classify_tokens(&mut p).unwrap_or(Ddl::Other)
}

fn table_ddl(kind: &str, effects: Vec<TableEffect>) -> Option<Ddl> {
    Some(Ddl::Table {
        kind: kind.to_string(),
        effects,
    })
}

/// `<verb> [IF [NOT] EXISTS] <object> name` for the object keywords given.
fn object_ddl(p: &mut Parser<'_>, verb: &str, objects: &[&str]) -> Option<Ddl> {
    let object = objects.iter().find(|o| p.kw(o))?;
    p.if_not_exists();
    p.if_exists();
    let id = p.qualified()?;
    Some(Ddl::Object {
        kind: format!("{verb} {object}"),
        database: id.database,
        name: id.table,
    })
}

fn classify_tokens(p: &mut Parser<'_>) -> Option<Ddl> {
    if p.kw("CREATE") {
        p.skip_create_options();
        if p.kw("TABLE") {
            p.if_not_exists();
            return table_ddl("CREATE TABLE", vec![TableEffect::Created(p.qualified()?)]);
        }
        let _kind = p.kw("UNIQUE") || p.kw("FULLTEXT") || p.kw("SPATIAL");
        if p.kw("INDEX") {
            p.if_not_exists();
            p.ident()?;
            // ON table
            while p.peek().is_some() && !p.kw("ON") {
                p.i += 1;
            }
            return table_ddl("CREATE INDEX", vec![TableEffect::Altered(p.qualified()?)]);
        }
        if p.kw("DATABASE") || p.kw("SCHEMA") {
            p.if_not_exists();
            return Some(Ddl::Database {
                kind: "CREATE DATABASE".into(),
                name: p.ident()?,
            });
        }
        return object_ddl(
            p,
            "CREATE",
            &[
                "VIEW",
                "PROCEDURE",
                "FUNCTION",
                "TRIGGER",
                "EVENT",
                "SEQUENCE",
            ],
        );
    }
    if p.kw("ALTER") {
        p.kw("ONLINE");
        p.kw("IGNORE");
        if p.kw("TABLE") {
            p.if_exists();
            let id = p.qualified()?;
            // ALTER TABLE a ..., RENAME [TO|AS] b
            let mut effects = vec![TableEffect::Altered(id.clone())];
            while p.peek().is_some() {
                if p.kw("RENAME") {
                    if p.kw("COLUMN") || p.kw("INDEX") || p.kw("KEY") {
                        continue;
                    }
                    let _to = p.kw("TO") || p.kw("AS");
                    let to = p.qualified()?;
                    effects.push(TableEffect::Renamed {
                        from: id.clone(),
                        to,
                    });
                    break;
                }
                p.i += 1;
            }
            return table_ddl("ALTER TABLE", effects);
        }
        if p.kw("DATABASE") || p.kw("SCHEMA") {
            let name = match p.peek() {
                Some(Tok::Ident { text, quoted })
                    if *quoted
                        || ![
                            "CHARACTER",
                            "DEFAULT",
                            "COLLATE",
                            "CHARSET",
                            "COMMENT",
                            "UPGRADE",
                        ]
                        .iter()
                        .any(|k| text.eq_ignore_ascii_case(k)) =>
                {
                    let t = text.clone();
                    p.i += 1;
                    t
                }
                _ => p.default_db.to_string(),
            };
            return Some(Ddl::Database {
                kind: "ALTER DATABASE".into(),
                name,
            });
        }
        p.skip_create_options();
        return object_ddl(
            p,
            "ALTER",
            &["VIEW", "PROCEDURE", "FUNCTION", "EVENT", "SEQUENCE"],
        );
    }
    if p.kw("DROP") {
        p.kw("TEMPORARY");
        if p.kw("TABLE") || p.kw("TABLES") {
            p.if_exists();
            let mut effects = Vec::new();
            loop {
                effects.push(TableEffect::Dropped(p.qualified()?));
                if !p.punct(',') {
                    break;
                }
            }
            return table_ddl("DROP TABLE", effects);
        }
        if p.kw("INDEX") {
            p.if_exists();
            p.ident()?;
            p.kw("ON");
            return table_ddl("DROP INDEX", vec![TableEffect::Altered(p.qualified()?)]);
        }
        if p.kw("DATABASE") || p.kw("SCHEMA") {
            p.if_exists();
            return Some(Ddl::Database {
                kind: "DROP DATABASE".into(),
                name: p.ident()?,
            });
        }
        return object_ddl(
            p,
            "DROP",
            &[
                "VIEW",
                "PROCEDURE",
                "FUNCTION",
                "TRIGGER",
                "EVENT",
                "SEQUENCE",
            ],
        );
    }
    if p.kw("RENAME") {
        if !(p.kw("TABLE") || p.kw("TABLES")) {
            return None;
        }
        p.if_exists();
        let mut effects = Vec::new();
        loop {
            let from = p.qualified()?;
            p.kw("WAIT");
            if !p.kw("TO") {
                return None;
            }
            let to = p.qualified()?;
            effects.push(TableEffect::Renamed { from, to });
            if !p.punct(',') {
                break;
            }
        }
        return table_ddl("RENAME TABLE", effects);
    }
    if p.kw("TRUNCATE") {
        p.kw("TABLE");
        return table_ddl(
            "TRUNCATE TABLE",
            vec![TableEffect::Truncated(p.qualified()?)],
        );
    }
    None
}

/// Whether an `sql_mode` (a number, as the binlog gives it, or names)
/// includes `ANSI_QUOTES`.
pub fn ansi_quotes(sql_mode: Option<&str>) -> bool {
    match sql_mode {
        None => false,
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
            m.parse::<u64>().is_ok_and(|n| n & 4 != 0)
        }
        Some(m) => m.split(',').any(|w| {
            w.trim().eq_ignore_ascii_case("ANSI_QUOTES") || w.trim().eq_ignore_ascii_case("ANSI")
        }),
    }
}

/// The session variable the sink sets on its connections: a guarded
/// trigger does nothing in a session where it is set.
pub const APPLY_VARIABLE: &str = "@tributary_apply";
const GUARD_OPEN: &str = "IF @tributary_apply IS NULL THEN ";
const GUARD_CLOSE: &str = "; END IF";

/// Rewrites `CREATE ... TRIGGER ... FOR EACH ROW <body>` so that the body
/// runs only in sessions without [`APPLY_VARIABLE`]: rows the sink applies
/// do not fire it again. `None` when `sql` is not a CREATE TRIGGER or is
/// guarded already.
pub fn guard_trigger(sql: &str, ansi_quotes: bool) -> Option<String> {
    if !matches!(classify_in(sql, "", ansi_quotes), Ddl::Object { kind, .. } if kind == "CREATE TRIGGER")
    {
        return None;
    }
    let (toks, starts, _) = tokenize_spans(sql, ansi_quotes);
    let each_row = (0..toks.len().saturating_sub(2))
        .find(|&i| toks[i].is_kw("FOR") && toks[i + 1].is_kw("EACH") && toks[i + 2].is_kw("ROW"))?;
    let mut body = each_row + 3;
    if toks
        .get(body)
        .is_some_and(|t| t.is_kw("FOLLOWS") || t.is_kw("PRECEDES"))
    {
        body += 2;
    }
    let chars: Vec<char> = sql.chars().collect();
    let at = *starts.get(body)?;
    let head: String = chars[..at].iter().collect();
    let rest: String = chars[at..].iter().collect();
    let rest = rest.trim_end().trim_end_matches(';').trim_end();
    if rest.starts_with(GUARD_OPEN) {
        return None;
    }
    Some(format!("{head}{GUARD_OPEN}{rest}{GUARD_CLOSE}"))
}

/// For a `CREATE FUNCTION`, its name (database, function) when it
/// declares none of `DETERMINISTIC`, `NO SQL` and `READS SQL DATA`: a
/// destination with its binlog on refuses to create it (error 1418) unless
/// `log_bin_trust_function_creators` is set. `None` for other statements.
/// The characteristics sit between `RETURNS <type>` and the body, which
/// starts with `RETURN`, `BEGIN` or a label.
pub fn function_needing_trust(
    sql: &str,
    default_db: &str,
    ansi_quotes: bool,
) -> Option<(String, String)> {
    let Ddl::Object {
        kind,
        database,
        name,
    } = classify_in(sql, default_db, ansi_quotes)
    else {
        return None;
    };
    if kind != "CREATE FUNCTION" {
        return None;
    }
    let toks = tokenize(sql, ansi_quotes);
    let returns = toks.iter().position(|t| t.is_kw("RETURNS"))?;
    let head: Vec<&Tok> = toks[returns + 1..]
        .iter()
        .take_while(|t| !t.is_kw("RETURN") && !t.is_kw("BEGIN") && **t != Tok::Punct(':'))
        .collect();
    let at = |i: usize, kw: &str| head.get(i).is_some_and(|t| t.is_kw(kw));
    let safe = (0..head.len()).any(|i| {
        (at(i, "DETERMINISTIC") && !(i > 0 && at(i - 1, "NOT")))
            || (at(i, "NO") && at(i + 1, "SQL"))
            || (at(i, "READS") && at(i + 1, "SQL") && at(i + 2, "DATA"))
    });
    (!safe).then_some((database, name))
}

/// A `CREATE EVENT` or `ALTER EVENT` made to leave the event disabled where
/// it is replayed (`DISABLE ON SLAVE`, as native replication marks the
/// events it creates): the source's event runs at the source, and its rows
/// arrive as changes; running it at the destination too would apply them
/// twice. `ENABLE` becomes `DISABLE ON SLAVE`; a `CREATE EVENT` without a
/// status gets one. `None` for other statements and when nothing changes.
pub fn disable_event_on_replica(sql: &str, ansi_quotes: bool) -> Option<String> {
    let create = match classify_in(sql, "", ansi_quotes) {
        Ddl::Object { kind, .. } if kind == "CREATE EVENT" => true,
        Ddl::Object { kind, .. } if kind == "ALTER EVENT" => false,
        _ => return None,
    };
    let (toks, starts, ends) = tokenize_spans(sql, ansi_quotes);
    let body = toks
        .iter()
        .position(|t| t.is_kw("DO"))
        .unwrap_or(toks.len());
    let head = &toks[..body];
    let chars: Vec<char> = sql.chars().collect();
    let splice = |from: usize, to: usize, text: &str| {
        let a: String = chars[..from].iter().collect();
        let b: String = chars[to..].iter().collect();
        format!("{a}{text}{b}")
    };
    if let Some(i) = head.iter().position(|t| t.is_kw("ENABLE")) {
        return Some(splice(starts[i], ends[i], "DISABLE ON SLAVE"));
    }
    if !create || head.iter().any(|t| t.is_kw("DISABLE")) || body == toks.len() {
        return None;
    }
    // The status goes before COMMENT and DO.
    let at = head.iter().position(|t| t.is_kw("COMMENT")).unwrap_or(body);
    Some(splice(starts[at], starts[at], "DISABLE ON SLAVE "))
}

/// The trigger statement without the guard [`guard_trigger`] added.
pub fn unguard_trigger(sql: &str) -> String {
    match sql.find(GUARD_OPEN) {
        Some(at) if sql.trim_end().ends_with(GUARD_CLOSE) => {
            let body = sql.trim_end().strip_suffix(GUARD_CLOSE).unwrap_or(sql);
            format!("{}{}", &body[..at], &body[at + GUARD_OPEN.len()..])
        }
        _ => sql.to_string(),
    }
}

/// The `DEFINER = user@host` clause of a CREATE or ALTER statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Definer {
    pub user: String,
    pub host: String,
    /// Where the clause is, as char indexes into the statement.
    range: (usize, usize),
}

impl Definer {
    /// The statement with the clause replaced by `DEFINER=CURRENT_USER`.
    pub fn replace_with_current_user(&self, sql: &str) -> String {
        let chars: Vec<char> = sql.chars().collect();
        let head: String = chars[..self.range.0].iter().collect();
        let tail: String = chars[self.range.1..].iter().collect();
        format!("{head}DEFINER=CURRENT_USER {tail}")
    }
}

/// Finds the DEFINER clause naming an account (not `CURRENT_USER`).
pub fn definer(sql: &str) -> Option<Definer> {
    let (toks, starts, _) = tokenize_spans(sql, false);
    let chars: Vec<char> = sql.chars().collect();
    // Only in the statement's head, before the object keyword.
    let d = toks.iter().take(12).position(|t| t.is_kw("DEFINER"))?;
    let mut i = d + 1;
    if toks.get(i) == Some(&Tok::Punct('=')) {
        i += 1;
    }
    // The text of token `k`: an identifier's name, or a string's content.
    let text = |k: usize| -> Option<String> {
        match toks.get(k)? {
            Tok::Ident { text, .. } => Some(text.clone()),
            Tok::Str => {
                let end = starts.get(k + 1).copied().unwrap_or(chars.len());
                let raw: String = chars[starts[k]..end].iter().collect();
                let raw = raw.trim_end();
                let q = raw.chars().next()?;
                let inner = raw.strip_prefix(q)?.strip_suffix(q)?;
                Some(inner.replace(&format!("{q}{q}"), &q.to_string()))
            }
            Tok::Punct(_) => None,
        }
    };
    let user = text(i)?;
    if user.eq_ignore_ascii_case("CURRENT_USER") && !matches!(toks.get(i), Some(Tok::Str)) {
        return None;
    }
    if toks.get(i + 1) != Some(&Tok::Punct('@')) {
        return None; // a role
    }
    let host = text(i + 2)?;
    let end = starts.get(i + 3).copied().unwrap_or(chars.len());
    Some(Definer {
        user,
        host,
        range: (starts[d], end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: &str, name: &str) -> TableId {
        TableId::new(db, name)
    }

    fn effects(sql: &str) -> Vec<TableEffect> {
        match classify(sql, "shop") {
            Ddl::Table { effects, .. } => effects,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn events_stay_disabled_where_replayed() {
        let d = |sql: &str| disable_event_on_replica(sql, false);
        assert_eq!(
            d("CREATE DEFINER=`root`@`localhost` EVENT e ON SCHEDULE EVERY 1 DAY DO INSERT INTO t VALUES (1)").as_deref(),
            Some("CREATE DEFINER=`root`@`localhost` EVENT e ON SCHEDULE EVERY 1 DAY DISABLE ON SLAVE DO INSERT INTO t VALUES (1)")
        );
        assert_eq!(
            d("CREATE EVENT e ON SCHEDULE AT '2030-01-01' ON COMPLETION PRESERVE ENABLE COMMENT 'do it' DO BEGIN UPDATE t SET enable = 1; END").as_deref(),
            Some("CREATE EVENT e ON SCHEDULE AT '2030-01-01' ON COMPLETION PRESERVE DISABLE ON SLAVE COMMENT 'do it' DO BEGIN UPDATE t SET enable = 1; END")
        );
        assert_eq!(
            d("create event if not exists e on schedule every 5 minute comment 'x' do delete from t").as_deref(),
            Some("create event if not exists e on schedule every 5 minute DISABLE ON SLAVE comment 'x' do delete from t")
        );
        assert_eq!(
            d("ALTER EVENT e ENABLE").as_deref(),
            Some("ALTER EVENT e DISABLE ON SLAVE")
        );
        assert_eq!(d("ALTER EVENT e ON SCHEDULE EVERY 2 DAY"), None);
        assert_eq!(
            d("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM t"),
            None
        );
        assert_eq!(d("DROP EVENT e"), None);
        assert_eq!(d("CREATE TABLE enable (a INT)"), None);
    }

    #[test]
    fn tables() {
        assert_eq!(
            effects("CREATE TABLE t (a int)"),
            vec![TableEffect::Created(t("shop", "t"))]
        );
        assert_eq!(
            effects("create table if not exists `my db`.`we``ird` like x"),
            vec![TableEffect::Created(t("my db", "we`ird"))]
        );
        assert_eq!(
            effects("CREATE OR REPLACE TABLE other.t2 AS SELECT 1"),
            vec![TableEffect::Created(t("other", "t2"))]
        );
        assert_eq!(
            effects("ALTER TABLE t ADD COLUMN c INT"),
            vec![TableEffect::Altered(t("shop", "t"))]
        );
        assert_eq!(
            effects("ALTER ONLINE TABLE t RENAME COLUMN a TO b, RENAME TO u"),
            vec![
                TableEffect::Altered(t("shop", "t")),
                TableEffect::Renamed {
                    from: t("shop", "t"),
                    to: t("shop", "u")
                }
            ]
        );
        assert_eq!(
            effects("DROP TABLE IF EXISTS a, `b`.c /* generated by server */"),
            vec![
                TableEffect::Dropped(t("shop", "a")),
                TableEffect::Dropped(t("b", "c"))
            ]
        );
        assert_eq!(
            effects("RENAME TABLE a TO b, x.c TO y.d"),
            vec![
                TableEffect::Renamed {
                    from: t("shop", "a"),
                    to: t("shop", "b")
                },
                TableEffect::Renamed {
                    from: t("x", "c"),
                    to: t("y", "d")
                }
            ]
        );
        assert_eq!(
            effects("TRUNCATE t"),
            vec![TableEffect::Truncated(t("shop", "t"))]
        );
        assert_eq!(
            effects("TRUNCATE TABLE s.t"),
            vec![TableEffect::Truncated(t("s", "t"))]
        );
        assert_eq!(
            effects("CREATE UNIQUE INDEX ix ON t (a)"),
            vec![TableEffect::Altered(t("shop", "t"))]
        );
        assert_eq!(
            effects("DROP INDEX ix ON s.t"),
            vec![TableEffect::Altered(t("s", "t"))]
        );
        assert_eq!(
            effects("/*!40101 CREATE TABLE q (a int) */"),
            vec![TableEffect::Created(t("shop", "q"))]
        );
    }

    #[test]
    fn other_objects() {
        assert_eq!(
            classify(
                "CREATE DEFINER=`root`@`localhost` SQL SECURITY INVOKER VIEW v AS SELECT 1",
                "shop"
            ),
            Ddl::Object {
                kind: "CREATE VIEW".into(),
                database: "shop".into(),
                name: "v".into()
            }
        );
        assert_eq!(
            classify(
                "CREATE OR REPLACE ALGORITHM=MERGE DEFINER='u'@'%' VIEW x.v AS SELECT 1",
                "shop"
            ),
            Ddl::Object {
                kind: "CREATE VIEW".into(),
                database: "x".into(),
                name: "v".into()
            }
        );
        assert_eq!(
            classify("DROP PROCEDURE IF EXISTS p", "shop"),
            Ddl::Object {
                kind: "DROP PROCEDURE".into(),
                database: "shop".into(),
                name: "p".into()
            }
        );
        assert_eq!(
            classify("CREATE DEFINER=CURRENT_USER TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1", "shop"),
            Ddl::Object { kind: "CREATE TRIGGER".into(), database: "shop".into(), name: "trg".into() }
        );
        assert_eq!(
            classify("CREATE DATABASE IF NOT EXISTS d2", "shop"),
            Ddl::Database {
                kind: "CREATE DATABASE".into(),
                name: "d2".into()
            }
        );
        assert_eq!(
            classify("ALTER DATABASE CHARACTER SET utf8mb4", "shop"),
            Ddl::Database {
                kind: "ALTER DATABASE".into(),
                name: "shop".into()
            }
        );
        assert_eq!(classify("GRANT ALL ON *.* TO x", "shop"), Ddl::Other);
        assert_eq!(classify("ANALYZE TABLE t", "shop"), Ddl::Other);
    }
    #[test]
    fn trigger_guard() {
        let sql = "CREATE DEFINER=`root`@`localhost` TRIGGER t1 AFTER INSERT ON o FOR EACH ROW INSERT INTO a VALUES (NEW.id)";
        let g = guard_trigger(sql, false).unwrap();
        assert_eq!(
            g,
            "CREATE DEFINER=`root`@`localhost` TRIGGER t1 AFTER INSERT ON o FOR EACH ROW IF @tributary_apply IS NULL THEN INSERT INTO a VALUES (NEW.id); END IF"
        );
        assert_eq!(guard_trigger(&g, false), None);
        assert_eq!(unguard_trigger(&g), sql);
        let sql = "create trigger t2 before update on o for each row follows t1 begin set new.v = 1; end;";
        let g = guard_trigger(sql, false).unwrap();
        assert!(
            g.ends_with(
                "follows t1 IF @tributary_apply IS NULL THEN begin set new.v = 1; end; END IF"
            ),
            "{g}"
        );
        assert_eq!(guard_trigger("CREATE VIEW v AS SELECT 1", false), None);
        let ansi = r#"CREATE DEFINER="root"@"%" TRIGGER "t3" BEFORE INSERT ON "a" FOR EACH ROW SET NEW.w = 'x' || ''"#;
        assert_eq!(guard_trigger(ansi, false), None);
        assert!(guard_trigger(ansi, true).is_some());
        assert!(ansi_quotes(Some("4")) && ansi_quotes(Some("PIPES_AS_CONCAT,ANSI_QUOTES")));
        assert!(!ansi_quotes(Some("1411383296")) && !ansi_quotes(None));
    }

    #[test]
    fn definers() {
        let sql = "CREATE DEFINER=`gh``ost`@`%` SQL SECURITY DEFINER VIEW v AS SELECT 1";
        let d = definer(sql).unwrap();
        assert_eq!((d.user.as_str(), d.host.as_str()), ("gh`ost", "%"));
        assert_eq!(
            d.replace_with_current_user(sql),
            "CREATE DEFINER=CURRENT_USER SQL SECURITY DEFINER VIEW v AS SELECT 1"
        );
        let d = definer("CREATE DEFINER = 'it''s'@'10.0.0.%' PROCEDURE p() SELECT 1").unwrap();
        assert_eq!((d.user.as_str(), d.host.as_str()), ("it's", "10.0.0.%"));
        assert_eq!(
            definer("CREATE DEFINER=CURRENT_USER VIEW v AS SELECT 1"),
            None
        );
        assert_eq!(definer("CREATE VIEW v AS SELECT 1"), None);
    }

    #[test]
    fn functions_needing_trust() {
        let f = |sql: &str| function_needing_trust(sql, "d", false);
        assert_eq!(
            f("CREATE DEFINER=`root`@`%` FUNCTION f(x INT) RETURNS int(11) RETURN x + RAND()"),
            Some(("d".into(), "f".into()))
        );
        assert_eq!(
            f("CREATE FUNCTION s.f() RETURNS varchar(10) CHARSET utf8mb4 NOT DETERMINISTIC MODIFIES SQL DATA BEGIN RETURN 'x'; END"),
            Some(("s".into(), "f".into()))
        );
        assert_eq!(
            f("CREATE FUNCTION f(x INT) RETURNS INT DETERMINISTIC RETURN x"),
            None
        );
        assert_eq!(
            f("CREATE FUNCTION f() RETURNS INT COMMENT 'no sql' NO SQL RETURN 1"),
            None
        );
        assert_eq!(
            f("CREATE FUNCTION f() RETURNS INT READS SQL DATA lbl: BEGIN RETURN 1; END"),
            None
        );
        // The body does not count.
        assert_eq!(
            f("CREATE FUNCTION f() RETURNS INT BEGIN DECLARE deterministic INT; RETURN 1; END"),
            Some(("d".into(), "f".into()))
        );
        assert_eq!(f("CREATE PROCEDURE p() SELECT 1"), None);
    }
}
