//! DDL scenarios: a database changed by DML and DDL while it is
//! synchronized, then compared object by object (`SHOW CREATE` of every
//! table, view, routine and trigger, and of the database) and row by row.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::Row;

use crate::{
    diff_table, drop_database, scenario_tables, sink_config, source_config, source_port, unique,
    workspace, Connector, Db, Result,
};

/// Every object of `database`: `kind name` to its `SHOW CREATE` text, with
/// AUTO_INCREMENT counters and trigger guards left out.
pub async fn database_objects(db: &mut Db, database: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let q = |s: &str| format!("`{}`", s.replace('`', "``"));
    let qualified = format!("{}.", q(database));
    let create_db: Option<Row> = db
        .conn
        .query_first(format!("SHOW CREATE DATABASE {}", q(database)))
        .await?;
    let Some(create_db) = create_db else {
        return Ok(out);
    };
    let text = |row: &Row, i: usize| -> String {
        row.get_opt::<Option<String>, usize>(i)
            .and_then(|r| r.ok())
            .flatten()
            .unwrap_or_default()
    };
    out.insert("DATABASE".into(), text(&create_db, 1));
    let tables: Vec<(String, String)> = db
        .conn
        .exec(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (database,),
        )
        .await?;
    for (name, kind) in tables {
        let (kind, col) = if kind == "VIEW" {
            ("VIEW", 1)
        } else {
            ("TABLE", 1)
        };
        let row: Option<Row> = db
            .conn
            .query_first(format!("SHOW CREATE {kind} {qualified}{}", q(&name)))
            .await?;
        let mut def = row.map(|r| text(&r, col)).unwrap_or_default();
        if kind == "TABLE" {
            def = strip_auto_increment(&def);
        }
        out.insert(format!("{kind} {name}"), def);
    }
    let routines: Vec<(String, String)> = db
        .conn
        .exec(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
            (database,),
        )
        .await?;
    for (kind, name) in routines {
        let row: Option<Row> = db
            .conn
            .query_first(format!("SHOW CREATE {kind} {qualified}{}", q(&name)))
            .await?;
        let def = row
            .map(|r| format!("{} (sql_mode {})", text(&r, 2), text(&r, 1)))
            .unwrap_or_default();
        out.insert(format!("{kind} {name}"), def);
    }
    let triggers: Vec<String> = db
        .conn
        .exec(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
            (database,),
        )
        .await?;
    for name in triggers {
        let row: Option<Row> = db
            .conn
            .query_first(format!("SHOW CREATE TRIGGER {qualified}{}", q(&name)))
            .await?;
        let def = row
            .map(|r| {
                format!(
                    "{} (sql_mode {})",
                    change_stream::ddl::unguard_trigger(&text(&r, 2)),
                    text(&r, 1)
                )
            })
            .unwrap_or_default();
        out.insert(format!("TRIGGER {name}"), def);
    }
    Ok(out)
}

fn strip_auto_increment(def: &str) -> String {
    match def.find(" AUTO_INCREMENT=") {
        Some(at) => {
            let rest = &def[at + " AUTO_INCREMENT=".len()..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            format!("{}{}", &def[..at], &rest[digits..])
        }
        None => def.to_string(),
    }
}

/// `None` when `database` is the same on both servers: every object's
/// definition and every table's rows; else the first difference.
pub async fn diff_database(src: &mut Db, dst: &mut Db, database: &str) -> Result<Option<String>> {
    let a = database_objects(src, database).await?;
    let b = database_objects(dst, database).await?;
    if a != b {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            if a.get(k) != b.get(k) {
                return Ok(Some(format!(
                    "{database}: {k} differs:\n  source:      {:?}\n  destination: {:?}",
                    a.get(k),
                    b.get(k)
                )));
            }
        }
    }
    for (table, order) in scenario_tables(src, database).await? {
        if let Some(d) = diff_table(src, dst, &table, &order).await? {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// Waits until `database` is the same on both servers, failing early if a
/// connector exits.
pub async fn wait_same_database(
    src_port: u16,
    dst_port: u16,
    database: &str,
    timeout: Duration,
    connectors: &mut [&mut Connector],
) -> Result<()> {
    let mut src = Db::connect(src_port).await?;
    let mut dst = Db::connect(dst_port).await?;
    let start = Instant::now();
    loop {
        let why = match diff_database(&mut src, &mut dst, database).await {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => why,
            Err(e) => format!("error: {e:#}"),
        };
        for c in connectors.iter_mut() {
            c.assert_running()?;
        }
        if start.elapsed() > timeout {
            anyhow::bail!("timed out after {}s: {why}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// How many lines of `connector`'s log contain `needle`.
fn log_count(connector: &Connector, needle: &str) -> usize {
    connector
        .log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// How a DDL scenario is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// Both connectors up throughout.
    Live,
    /// The sink is down during the steps, then started and killed
    /// (`kill -9`) right after each of its first three schema changes.
    SinkKilled,
    /// The source is killed before the steps and started after them: it
    /// reads the binlog across schema changes it did not see happen.
    SourceDown,
    /// The source is killed (`kill -9`) right after each of its first
    /// three schema changes, and started again: it may send some twice.
    SourceKilled,
}

/// Runs `tests/scenarios/ddl_<name>/`: `prepare.sql` before the
/// connectors start, `steps.sql` (DML and DDL) once the snapshot is at the
/// destination. `${DB}` stands for the scenario's database. Each
/// [`Variant`] in turn, each on its own database and topics.
pub async fn run_ddl_scenario(name: &str, sink_extra: &str) -> Result<()> {
    for variant in [
        Variant::Live,
        Variant::SinkKilled,
        Variant::SourceDown,
        Variant::SourceKilled,
    ] {
        run_ddl_variant(name, sink_extra, variant)
            .await
            .map_err(|e| anyhow::anyhow!("ddl scenario {name} ({variant:?}): {e:#}"))?;
    }
    Ok(())
}

async fn run_ddl_variant(name: &str, sink_extra: &str, variant: Variant) -> Result<()> {
    let tag = match variant {
        Variant::Live => "",
        Variant::SinkKilled => "_k",
        Variant::SourceDown => "_s",
        Variant::SourceKilled => "_x",
    };
    let dir = workspace()
        .join("tests/scenarios")
        .join(format!("ddl_{name}"));
    let db = unique(&format!("d_{name}{tag}"));
    let read = |file: &str| -> Result<String> {
        Ok(std::fs::read_to_string(dir.join(file))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(file).display()))?
            .replace("${DB}", &db))
    };
    let (prepare, steps) = (read("prepare.sql")?, read("steps.sql")?);
    let dest = crate::dest_port();
    drop_database(&[source_port(), dest], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!("USE `{db}`")).await?;
    src.exec(&prepare).await?;

    let prefix = unique(&format!(
        "ddl-{}{}",
        name.replace('_', "-"),
        tag.replace('_', "-")
    ));
    // Scenarios run at once: each variant its own replica server_id (two
    // binlog clients with one id throw each other out).
    const SCENARIOS: [&str; 6] = [
        "columns", "keys", "tables", "objects", "database", "options",
    ];
    let scenario = SCENARIOS
        .iter()
        .position(|s| *s == name)
        .unwrap_or(SCENARIOS.len() + (crate::fingerprint_of(name) % 50) as usize);
    let server_id = 6100 + 10 * scenario as u32 + variant as u32;
    let source_text = source_config(&prefix, &[&db], server_id, "");
    let source_label = format!("{prefix}-source");
    let mut source = Connector::start("source-connector", &source_label, &source_text)?;
    let sink_text = sink_config(&prefix, &prefix, dest, sink_extra);
    let sink_label = format!("{prefix}-sink");
    let mut sink = Connector::start("sink-connector", &sink_label, &sink_text)?;
    let wait = Duration::from_secs(120);
    wait_same_database(
        source_port(),
        dest,
        &db,
        wait,
        &mut [&mut source, &mut sink],
    )
    .await
    .map_err(|e| anyhow::anyhow!("after the snapshot: {e:#}\nsink: {}", sink.log_tail()))?;

    match variant {
        Variant::Live | Variant::SourceKilled => {}
        Variant::SinkKilled => sink.kill9(),
        Variant::SourceDown => source.kill9(),
    }
    let before = log_count(&source, "schema change kind=");
    src.exec(&steps).await?;
    if variant == Variant::SourceKilled {
        let mut seen = before;
        for _ in 0..3 {
            let start = Instant::now();
            while log_count(&source, "schema change kind=") == seen
                && start.elapsed() < Duration::from_secs(30)
            {
                source.assert_running()?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            source.kill9();
            seen = log_count(&source, "schema change kind=");
            source = Connector::start("source-connector", &source_label, &source_text)?;
        }
    }
    if variant == Variant::SourceDown {
        source = Connector::start("source-connector", &source_label, &source_text)?;
    }
    if variant == Variant::SinkKilled {
        let needle = "schema change applied";
        for _ in 0..3 {
            let before = log_count(&sink, needle);
            sink = Connector::start("sink-connector", &sink_label, &sink_text)?;
            let start = Instant::now();
            while log_count(&sink, needle) == before && start.elapsed() < Duration::from_secs(30) {
                sink.assert_running()?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sink.kill9();
        }
        sink = Connector::start("sink-connector", &sink_label, &sink_text)?;
    }
    wait_same_database(
        source_port(),
        dest,
        &db,
        wait,
        &mut [&mut source, &mut sink],
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "after the steps: {e:#}\nsource: {}\nsink: {}",
            source.log_tail(),
            sink.log_tail()
        )
    })?;
    source.assert_running()?;
    sink.assert_running()?;
    drop_database(&[source_port(), dest], &db).await?;
    Ok(())
}
