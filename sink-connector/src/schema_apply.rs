//! Running a schema change at the destination, once, whatever crashes.
//!
//! ## The window
//! A schema change runs when the partitions it falls in are read up to
//! where it falls (`ddl.rs`); then the positions past it are stored. MariaDB DDL is
//! not transactional: it commits on its own, before and apart from the
//! position write. A crash between the two leaves a statement that ran with
//! positions that say it did not, and on restart it comes up again. Run
//! twice, most statements fail ("table exists", "duplicate column"), but
//! not all: `ALTER TABLE t CHANGE a b INT, CHANGE b a INT` swaps two
//! columns back, and an error is a poor witness anyway: "table does not
//! exist" may mean the statement ran, or that the destination has diverged.
//!
//! ## The journal
//! So the destination records what it needs to decide. Before a statement
//! runs, the sink commits a row in `<state_database>.ddl_journal`: the
//! change's id and a fingerprint of the objects the statement names, as
//! they are at the destination just before it (each table's, view's,
//! routine's, trigger's, event's or sequence's `SHOW CREATE`, or its
//! absence; a database's `SHOW CREATE DATABASE`). The row is deleted in the
//! transaction that stores the positions past the statement (together with
//! its failure record, when it failed). On restart, the head statement
//! finds:
//! - no journal row: it never started (or its positions are stored, and it
//!   is not the head). It runs, and any error is a real failure, recorded
//!   or stopping the sink by `apply.on_ddl_error`.
//! - a journal row whose fingerprint differs from the objects now: the
//!   statement ran before the crash. It counts as applied and is not run
//!   again.
//! - a journal row whose fingerprint is the objects' now: it did not run
//!   (the crash came before it), or it ran with no effect on any object it
//!   names. Either way running it (again) gives the state it should: a
//!   statement without such an effect is one whose repetition is harmless
//!   (TRUNCATE, a snapshot restart, SETVAL, which only moves forward, `ALTER
//!   ... FORCE`), since nothing after it has been applied yet.
//!
//! A statement can also leave the objects it names defined exactly as
//! before while changing what they hold: `RENAME TABLE a TO tmp, b TO a,
//! tmp TO b` on two tables of one definition swaps their rows. RENAME TABLE
//! therefore carries its own witness, atomically: a marker table in the
//! state database is renamed in the same statement, so the marker exists
//! under its `_done` name exactly when the statement ran.
//!
//! A crash of the sink does not cut a statement in half: the server
//! finishes it whether the client is there or not. A crash of the
//! destination server does; MariaDB's atomic DDL (10.6 and later) then
//! completes or rolls back the statement on recovery.
//!
//! ## The default database
//! A statement runs with its source session's default database (mapped),
//! so that the names it leaves unqualified mean what they meant there.
//! When that database does not exist at the destination, or the source had
//! none, the statement runs in a fresh session without one: an unqualified
//! name then fails ("No database selected") instead of landing in whichever
//! database the sink's session used last.

use std::collections::HashSet;

use change_stream::ddl::{Ddl, TableEffect};
use change_stream::schema_change::{ChangeEffect, DEFINITION, SNAPSHOT_DONE, SNAPSHOT_RESTART};
use change_stream::table::{quote_ident, TableId};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

use crate::apply::Applier;
use crate::config::{Config, DdlErrorPolicy, IndexMethod, TriggerMethod};
use crate::ddl::{self, Pending};
use crate::decode::Registry;
use crate::error::{from_mysql, SinkError};
use crate::mapping::Mapping;
use crate::sql::quote_str;

/// What running a statement at the destination came to.
pub enum Outcome {
    Applied,
    /// It had already been applied (a restart after it ran).
    AlreadyApplied(String),
    Failed(String),
}

/// Runs one schema change at the destination (for a table's definition,
/// creates the table if it is missing). Returns the statements that must
/// commit in the transaction that stores the positions past it.
pub async fn apply(
    config: &Config,
    mapping: &Mapping,
    applier: &mut Applier,
    registry: &mut Registry,
    ready: &mut HashSet<TableId>,
    pending: &Pending,
    home: Option<u32>,
) -> Result<Vec<String>, SinkError> {
    let change = &pending.change;
    let state_db = &config.destination.state_database;
    let prefix = &config.kafka.topic_prefix;
    if change.kind == SNAPSHOT_DONE {
        // The table's last snapshot row is applied: what waited for it.
        for t in &change.tables {
            crate::indexes::restore(applier.conn(), state_db, prefix, &mapping.table(&t.id))
                .await?;
        }
        return Ok(Vec::new());
    }
    registry.apply_change(change);
    if change.kind == DEFINITION {
        // A table (and a trigger's table) is created if it is missing. A
        // definition of other effects is the shapes a statement made at
        // a server the source ignores left: it runs nothing.
        for t in &change.tables {
            if t.effect != ChangeEffect::Defined {
                continue;
            }
            if let Some(def) = &t.definition {
                if !ready.contains(&t.id) {
                    let def = mapping.schema(def);
                    if change.ddl.is_none() {
                        ddl::check_conflicts(
                            applier.conn(),
                            &[std::sync::Arc::new(def.clone())],
                            config.schema.on_conflict,
                        )
                        .await?;
                    }
                    // The definition read at the start of a full
                    // synchronization: its rows follow.
                    let deferred = change.ddl.is_none()
                        && config.schema.secondary_indexes == IndexMethod::AfterFullSync
                        && !ddl::table_exists(applier.conn(), &def.id).await?
                        && crate::indexes::create_deferring(applier.conn(), state_db, prefix, &def)
                            .await?;
                    if !deferred {
                        ddl::ensure_table(applier.conn(), &def).await?;
                    }
                    ready.insert(t.id.clone());
                }
            }
        }
    }
    let Some(statement) = &change.ddl else {
        return Ok(Vec::new());
    };
    // A snapshot restart discards rows the table's snapshot sent: it goes
    // with them, whether inserts are applied.
    let operation = if change.kind == SNAPSHOT_RESTART {
        "INSERT"
    } else {
        change.kind.as_str()
    };
    if change.kind != DEFINITION
        && change
            .tables
            .iter()
            .any(|t| !config.allows(&t.id, operation))
    {
        tracing::info!(kind = %change.kind, id = %change.id(), "schema change filtered out ([[filter]] operations)");
        return Ok(Vec::new());
    }
    if change.kind != DEFINITION && home.is_some_and(|h| h == change.source.server_id) {
        tracing::info!(kind = %change.kind, id = %change.id(), "schema change made at the destination itself (it came back around a ring): not applied again");
        return Ok(Vec::new());
    }
    // Written under its origin's server id, as rows are.
    applier.set_origin(change.source.server_id).await?;
    let guard = config.schema.triggers == TriggerMethod::Guard;
    let ansi = change_stream::ddl::ansi_quotes(change.sql_mode.as_deref());
    let statement = mapping.rewrite(statement, &change.database, ansi);
    let sql = prepare(
        applier.conn(),
        &statement,
        change.sql_mode.as_deref(),
        guard,
    )
    .await;
    let database = mapping.database(&change.database);
    if change.kind == DEFINITION && !database.is_empty() {
        // Sequences come before the first table of their database.
        ddl::ensure_database(applier.conn(), &database).await?;
    }

    // A table whose indexes wait for its full synchronization gets them
    // first: the statement meets it as the source had it (a table read
    // again from its start keeps waiting).
    if change.kind != DEFINITION && change.kind != SNAPSHOT_RESTART {
        for t in &change.tables {
            let table = mapping.table(&t.id);
            if t.effect == ChangeEffect::Dropped {
                crate::indexes::forget(applier.conn(), state_db, prefix, &table).await?;
            } else {
                crate::indexes::restore(applier.conn(), state_db, prefix, &table).await?;
            }
        }
    }
    let id = change.id();
    let named = named_objects(&sql, &database, ansi);
    let now = fingerprint(applier.conn(), &named).await?;
    let outcome = match journal_entry(applier.conn(), state_db, prefix, &id).await? {
        Some(then) if then != now => Outcome::AlreadyApplied(
            "it ran before the sink stopped: the objects it names changed since it started".into(),
        ),
        _ => {
            start(applier.conn(), state_db, prefix, &id, now).await?;
            if change.kind == "RENAME TABLE" {
                execute_rename(
                    applier,
                    state_db,
                    prefix,
                    &id,
                    &database,
                    change.sql_mode.as_deref(),
                    &sql,
                )
                .await?
            } else {
                execute(applier, &database, change.sql_mode.as_deref(), &sql).await?
            }
        }
    };
    // Fault injection for the tests: end the process as a crash would,
    // between the statement and the position write.
    if std::env::var_os("TRIBUTARY_FAILPOINT").is_some_and(|v| v == "after-schema-change") {
        tracing::warn!(id = %id, "failpoint after-schema-change: exiting");
        std::process::exit(137);
    }
    let mut with_position = vec![format!(
        "DELETE FROM {}.`ddl_journal` WHERE `topic_prefix` = {}",
        quote_ident(state_db),
        quote_str(prefix)
    )];
    match outcome {
        Outcome::Applied => {
            tracing::info!(kind = %change.kind, id = %id, "schema change applied")
        }
        Outcome::AlreadyApplied(why) => {
            tracing::info!(kind = %change.kind, id = %id, reason = %why, "schema change already applied")
        }
        Outcome::Failed(error) => {
            let shown: String = sql.chars().take(300).collect();
            if config.apply.on_ddl_error == DdlErrorPolicy::Stop {
                return Err(SinkError::Destination(format!(
                    "schema change {id} failed: {error}: {shown} (apply.on_ddl_error = stop)"
                )));
            }
            tracing::error!(id = %id, %error, statement = %shown, "schema change failed at the destination; recorded in ddl_failures, going on (apply.on_ddl_error = continue)");
            change_stream::telemetry::sink_failed_ddl(&shown, &error);
            with_position.push(crate::state::record_failure_sql(
                state_db, prefix, change, &error,
            ));
        }
    }
    if change.kind != DEFINITION {
        for t in &change.tables {
            if t.definition.is_some() {
                ready.insert(t.id.clone());
            } else {
                ready.remove(&t.id);
            }
        }
    }
    Ok(with_position)
}

/// Called once the positions past a schema change are stored.
pub async fn applied(applier: &mut Applier, config: &Config, pending: &Pending) {
    if pending.change.kind == "RENAME TABLE" {
        forget_rename(
            applier.conn(),
            &config.destination.state_database,
            &config.kafka.topic_prefix,
            &pending.change.id(),
        )
        .await;
    }
}

/// An object a statement names, whose definition it may change.
#[derive(Debug, PartialEq, Eq)]
enum Named {
    Database(String),
    /// A table (or view): `SHOW CREATE TABLE`.
    Table(TableId),
    /// `SHOW CREATE <kind>`: VIEW, FUNCTION, PROCEDURE, TRIGGER, EVENT,
    /// SEQUENCE, PACKAGE.
    Object(&'static str, TableId),
}

/// The objects `sql` (run in `database`) names.
fn named_objects(sql: &str, database: &str, ansi: bool) -> Vec<Named> {
    const KINDS: [&str; 7] = [
        "VIEW",
        "FUNCTION",
        "PROCEDURE",
        "TRIGGER",
        "EVENT",
        "SEQUENCE",
        "PACKAGE",
    ];
    match change_stream::ddl::classify_in(sql, database, ansi) {
        Ddl::Table { effects, .. } => effects
            .iter()
            .flat_map(TableEffect::tables)
            .map(|t| Named::Table(t.clone()))
            .collect(),
        Ddl::Database { name, .. } => vec![Named::Database(name)],
        Ddl::Object {
            kind,
            database,
            name,
        } => {
            let word = kind.rsplit(' ').next().unwrap_or_default();
            KINDS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(word))
                .map(|k| vec![Named::Object(k, TableId::new(database, name))])
                .unwrap_or_default()
        }
        Ddl::Other => Vec::new(),
    }
}

/// A fingerprint of how the objects are defined at the destination now.
async fn fingerprint(conn: &mut Conn, named: &[Named]) -> Result<String, SinkError> {
    let mut text = Vec::new();
    for n in named {
        let query = match n {
            Named::Database(d) => format!("SHOW CREATE DATABASE {}", quote_ident(d)),
            Named::Table(t) => format!("SHOW CREATE TABLE {}", t.quoted()),
            Named::Object(kind, t) => format!("SHOW CREATE {kind} {}", t.quoted()),
        };
        text.extend_from_slice(query.as_bytes());
        text.push(b'\n');
        match conn.query::<Row, _>(query).await {
            Ok(rows) => {
                for row in rows {
                    for v in row.unwrap() {
                        // Every column as its bytes (Value's Debug elides).
                        match v {
                            mysql_async::Value::Bytes(b) => text.extend_from_slice(&b),
                            other => text.extend_from_slice(other.as_sql(false).as_bytes()),
                        }
                        text.push(1);
                    }
                }
            }
            // Absent (or unreadable: the code says which).
            Err(mysql_async::Error::Server(e)) => {
                text.extend_from_slice(format!("error {}", e.code).as_bytes())
            }
            Err(e) => return Err(from_mysql("cannot read a definition at the destination", e)),
        }
        text.push(b'\n');
    }
    Ok(format!("{:016x}", change_stream::avro::fingerprint(&text)))
}

/// The fingerprint recorded when the prefix's schema change `id` started,
/// if its journal row is there.
async fn journal_entry(
    conn: &mut Conn,
    state_db: &str,
    prefix: &str,
    id: &str,
) -> Result<Option<String>, SinkError> {
    conn.exec_first(
        format!(
            "SELECT `objects_before` FROM {}.`ddl_journal` WHERE `topic_prefix` = ? AND `change_id` = ?",
            quote_ident(state_db)
        ),
        (prefix, id),
    )
    .await
    .map_err(|e| from_mysql("cannot read the DDL journal", e))
}

/// Commits the journal row saying that `id` is about to run.
async fn start(
    conn: &mut Conn,
    state_db: &str,
    prefix: &str,
    id: &str,
    fingerprint: String,
) -> Result<(), SinkError> {
    conn.exec_drop(
        format!(
            "REPLACE INTO {}.`ddl_journal` (`topic_prefix`, `change_id`, `objects_before`) VALUES (?, ?, ?)",
            quote_ident(state_db)
        ),
        (prefix, id, fingerprint),
    )
    .await
    .map_err(|e| from_mysql("cannot write the DDL journal", e))
}

/// The statement as it is run at the destination: a DEFINER naming an
/// account the destination does not have becomes `DEFINER=CURRENT_USER`
/// (with a warning), a trigger gets the guard when `guard` is set, and an
/// event stays disabled there (`DISABLE ON SLAVE`).
pub async fn prepare(conn: &mut Conn, sql: &str, sql_mode: Option<&str>, guard: bool) -> String {
    let mut sql = sql.to_string();
    if let Some(d) = change_stream::ddl::definer(&sql) {
        let exists: Result<Option<i64>, _> = conn
            .exec_first(
                "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = ?",
                (d.user.as_str(), d.host.as_str()),
            )
            .await;
        match exists {
            Ok(Some(n)) if n > 0 => {}
            Ok(_) => {
                tracing::warn!(user = %d.user, host = %d.host, "the DEFINER of a statement does not exist at the destination: created with DEFINER=CURRENT_USER (the sink's account) instead");
                sql = d.replace_with_current_user(&sql);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up DEFINER accounts at the destination (grant SELECT on mysql.user); the statement keeps its DEFINER");
            }
        }
    }
    let ansi = change_stream::ddl::ansi_quotes(sql_mode);
    if guard {
        if let Some(g) = change_stream::ddl::guard_trigger(&sql, ansi) {
            sql = g;
        }
    }
    if let Some(e) = change_stream::ddl::disable_event_on_replica(&sql, ansi) {
        sql = e;
    }
    sql
}

/// The name of the marker table that records, atomically with a RENAME
/// TABLE statement, that it ran (and, with `_done`, that it completed).
fn rename_marker(prefix: &str, id: &str) -> String {
    format!(
        "rename_{:016x}",
        change_stream::avro::fingerprint(format!("{prefix}\n{id}"))
    )
}

/// Runs a RENAME TABLE statement with its marker (see the essay).
async fn execute_rename(
    applier: &mut Applier,
    state_db: &str,
    prefix: &str,
    id: &str,
    database: &str,
    sql_mode: Option<&str>,
    sql: &str,
) -> Result<Outcome, SinkError> {
    let marker = rename_marker(prefix, id);
    let done = TableId::new(state_db, format!("{marker}_done"));
    if ddl::table_exists(applier.conn(), &done).await? {
        return Ok(Outcome::AlreadyApplied(format!(
            "its marker {done} says it ran"
        )));
    }
    let pending = TableId::new(state_db, marker.as_str());
    applier
        .conn()
        .query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (ran INT) ENGINE=InnoDB",
            pending.quoted()
        ))
        .await
        .map_err(|e| from_mysql("cannot create a rename marker table", e))?;
    let statement = format!(
        "{}\n, {} TO {}",
        sql.trim_end().trim_end_matches(';'),
        pending.quoted(),
        done.quoted()
    );
    let outcome = execute(applier, database, sql_mode, &statement).await?;
    if let Outcome::Failed(_) = outcome {
        let _ = applier
            .conn()
            .query_drop(format!("DROP TABLE IF EXISTS {}", pending.quoted()))
            .await;
    }
    Ok(outcome)
}

/// Drops the marker of a RENAME once its position is stored.
async fn forget_rename(conn: &mut Conn, state_db: &str, prefix: &str, id: &str) {
    let done = TableId::new(state_db, format!("{}_done", rename_marker(prefix, id)));
    if let Err(e) = conn
        .query_drop(format!("DROP TABLE IF EXISTS {}", done.quoted()))
        .await
    {
        tracing::warn!(error = %e, table = %done, "cannot drop a rename marker table");
    }
}

/// Runs a statement at the destination with `database` as its default
/// database (none if empty or missing there: see the essay), in the
/// source's `sql_mode` when it is known.
async fn execute(
    applier: &mut Applier,
    database: &str,
    sql_mode: Option<&str>,
    sql: &str,
) -> Result<Outcome, SinkError> {
    let in_database = !database.is_empty()
        && applier
            .conn()
            .query_drop(format!("USE {}", quote_ident(database)))
            .await
            .is_ok();
    if !database.is_empty() && !in_database {
        tracing::warn!(database, "the default database of a schema change does not exist at the destination: it runs without one, so that a name it leaves unqualified fails rather than lands in another database");
    }
    let mut fresh = if in_database {
        None
    } else {
        Some(applier.session_without_database().await?)
    };
    if let Some(c) = fresh.as_mut() {
        applier.set_origin_of(c).await?;
    }
    let conn = match fresh.as_mut() {
        Some(c) => c,
        None => applier.conn(),
    };
    if let Some(mode) = sql_mode {
        let set = if !mode.is_empty() && mode.bytes().all(|b| b.is_ascii_digit()) {
            format!("SET SESSION sql_mode = {mode}")
        } else {
            format!("SET SESSION sql_mode = '{}'", mode.replace('\'', "''"))
        };
        if let Err(e) = conn.query_drop(set).await {
            tracing::warn!(error = %e, sql_mode = mode, "cannot take the source's sql_mode for a schema change; it runs in the sink's");
        }
    }
    let result = conn.query_drop(sql).await;
    if sql_mode.is_some() && fresh.is_none() {
        applier
            .conn()
            .query_drop(crate::apply::SESSION_SQL_MODE)
            .await
            .map_err(|e| from_mysql("cannot restore the session's sql_mode", e))?;
    }
    match result {
        Ok(()) => Ok(Outcome::Applied),
        Err(mysql_async::Error::Server(e)) => Ok(Outcome::Failed(format!(
            "{} (error {}){}",
            e.message,
            e.code,
            hint(e.code)
        ))),
        Err(e) => Err(from_mysql("cannot run a schema change", e)),
    }
}

/// What to do about a statement the destination refused, where it is the
/// destination's setting.
fn hint(code: u16) -> &'static str {
    match code {
        // A function without DETERMINISTIC, NO SQL or READS SQL DATA, at a
        // destination with its binlog on.
        1418 => "; set log_bin_trust_function_creators = 1 at the destination (SET GLOBAL and in its config), see the precheck item destination.function_creators",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_their_objects() {
        assert_eq!(
            named_objects("ALTER TABLE t CHANGE a b INT, CHANGE b a INT", "d", false),
            vec![Named::Table(TableId::new("d", "t"))]
        );
        assert_eq!(
            named_objects("RENAME TABLE a TO x.b", "d", false),
            vec![
                Named::Table(TableId::new("d", "a")),
                Named::Table(TableId::new("x", "b"))
            ]
        );
        assert_eq!(
            named_objects("CREATE OR REPLACE VIEW v AS SELECT 1", "d", false),
            vec![Named::Object("VIEW", TableId::new("d", "v"))]
        );
        assert_eq!(
            named_objects("DROP DATABASE IF EXISTS z", "d", false),
            vec![Named::Database("z".into())]
        );
        assert_eq!(named_objects("GRANT ALL ON *.* TO u", "d", false), vec![]);
    }
}
