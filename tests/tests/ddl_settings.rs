//! Schema settings end to end: conflicting tables (`schema.on_conflict`),
//! DDL that fails at the destination (`apply.on_ddl_error`, the
//! `failed-ddl` command) and DEFINER accounts missing at the destination.

use std::process::Command;
use std::time::Duration;

use e2e_tests::ddl::wait_same_database;
use e2e_tests::{
    binary, dest2_port, dest_port, drop_database, sink_config, source_config, source_port, unique,
    wait_until, workspace, Connector, Db, Result,
};
use mysql_async::prelude::*;

const WAIT: Duration = Duration::from_secs(120);

async fn values(db: &mut Db, sql: &str) -> Result<Vec<(i64, String)>> {
    Ok(db.conn.query(sql).await?)
}

/// Starts the source on `db` and waits until it has published its
/// definitions.
async fn start_source(prefix: &str, db: &str, server_id: u32) -> Result<Connector> {
    let source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(prefix, &[db], server_id, ""),
    )?;
    source
        .wait_log("source connector started", Duration::from_secs(60))
        .await?;
    Ok(source)
}

/// Waits until `db` is the same at the source and the destination.
async fn wait_same(db: &str, source: &mut Connector, sink: &mut Connector) -> Result<()> {
    wait_same_database(source_port(), dest_port(), db, WAIT, &mut [source, sink]).await
}

/// Starts the source on `db` and a sink on the destination, and waits
/// until the destination has `db`; returns both and the sink's config.
async fn start_synced(
    prefix: &str,
    db: &str,
    server_id: u32,
) -> Result<(Connector, Connector, String)> {
    let mut source = start_source(prefix, db, server_id).await?;
    let sink_text = sink_config(prefix, prefix, dest_port(), "");
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_text)?;
    wait_same(db, &mut source, &mut sink).await?;
    Ok((source, sink, sink_text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_tables_fail_or_are_written_into() -> Result<()> {
    let db = unique("conflicts");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    let mut dst = Db::connect(dest_port()).await?;
    for (conn, rows_a, rows_c) in [
        (&mut src, "(1, 'src1'), (2, 'src2')", "(1, 'c')"),
        (&mut dst, "(1, 'dest1'), (3, 'dest3')", "(9, 'other')"),
    ] {
        conn.exec(&format!(
            "CREATE DATABASE `{db}`; USE `{db}`; \
             CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO a VALUES {rows_a}; \
             CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(10)); \
             CREATE TABLE c (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO c VALUES {rows_c};"
        ))
        .await?;
    }
    src.exec("INSERT INTO b VALUES (1, 'b')").await?;

    let prefix = unique("conflicts");
    let mut source = start_source(&prefix, &db, 7801).await?;
    // Default mode: the sink stops, naming both conflicting tables, and
    // writes nothing.
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink-fail"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    wait_until("the sink to stop on the conflicts", WAIT, || {
        let done = sink.assert_running().is_err();
        async move { Ok((!done).then(|| "still running".to_string())) }
    })
    .await?;
    let log = sink.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("already exist at the destination"))
        .ok_or_else(|| anyhow::anyhow!("no conflict error in: {log}"))?;
    assert!(
        line.contains(&format!("{db}.a")) || line.contains(&format!("`{db}`.`a`")),
        "{line}"
    );
    assert!(line.contains("2 table(s)"), "{line}");
    assert!(line.contains("on_conflict"), "{line}");
    assert_eq!(
        dst.count(&format!("`{db}`.b")).await?,
        0,
        "b was written to"
    );

    // `ignore`: the full synchronization keeps the destination's rows with
    // the same key; incremental changes overwrite them.
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink-ignore"),
        &sink_config(
            &prefix,
            &prefix,
            dest_port(),
            "\n[schema]\non_conflict = \"ignore\"\n",
        ),
    )?;
    let q = format!("SELECT id, v FROM `{db}`.a ORDER BY id");
    wait_until("the snapshot in a", WAIT, || {
        let q = q.clone();
        let mut sink_ok = sink.assert_running();
        async move {
            sink_ok.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut dst = Db::connect(dest_port()).await?;
            let got = values(&mut dst, &q).await?;
            let want = vec![(1, "dest1".into()), (2, "src2".into()), (3, "dest3".into())];
            Ok((got != want).then(|| format!("{got:?}")))
        }
    })
    .await?;
    src.exec("UPDATE a SET v = 'new1' WHERE id = 1").await?;
    wait_until("the update over the kept row", WAIT, || {
        let q = q.clone();
        async move {
            let mut dst = Db::connect(dest_port()).await?;
            let got = values(&mut dst, &q).await?;
            let want = vec![(1, "new1".into()), (2, "src2".into()), (3, "dest3".into())];
            Ok((got != want).then(|| format!("{got:?}")))
        }
    })
    .await?;
    assert_eq!(
        values(&mut dst, &format!("SELECT id, v FROM `{db}`.b")).await?,
        vec![(1, "b".to_string())]
    );
    source.assert_running()?;
    sink.assert_running()?;
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_ddl_is_recorded_and_listed_or_stops_the_sink() -> Result<()> {
    let db = unique("ddlfail");
    drop_database(&[source_port(), dest_port(), dest2_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; CREATE TABLE t (id INT PRIMARY KEY, a INT); INSERT INTO t VALUES (1, 1);"
    ))
    .await?;
    let prefix = unique("ddlfail");
    let (mut source, mut sink, _) = start_synced(&prefix, &db, 7802).await?;

    // A row only the destination has makes the CHECK constraint fail there.
    let mut dst = Db::connect(dest_port()).await?;
    dst.exec(&format!("INSERT INTO `{db}`.t VALUES (100, -1)"))
        .await?;
    src.exec("ALTER TABLE t ADD CONSTRAINT chk_a CHECK (a >= 0); INSERT INTO t VALUES (2, 2);")
        .await?;
    let q = format!("SELECT COUNT(*) FROM `{db}`.t WHERE id = 2");
    wait_until("the row after the failed statement", WAIT, || {
        let q = q.clone();
        async move {
            let mut dst = Db::connect(dest_port()).await?;
            let n: Option<i64> = dst.conn.query_first(q).await?;
            Ok((n != Some(1)).then(|| "not yet".to_string()))
        }
    })
    .await?;
    sink.assert_running()?;
    assert!(sink
        .log_text()
        .contains("schema change failed at the destination"));

    let config = workspace().join(format!("target/e2e/{prefix}-sink.toml"));
    let out = Command::new(binary("sink-connector"))
        .args(["failed-ddl", "--config"])
        .arg(&config)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CHECK (a >= 0)"), "{text}");
    assert!(text.contains("chk_a"), "{text}");
    assert!(text.contains("1 failed schema change(s)"), "{text}");

    // `stop`: a sink on another destination, holding the same kind of row,
    // ends with the statement's error.
    let mut dst2 = Db::connect(dest2_port()).await?;
    dst2.exec(&format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, a INT); INSERT INTO `{db}`.t VALUES (100, -1);"
    ))
    .await?;
    let started = std::time::Instant::now();
    let mut stopping = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink-stop"),
        &sink_config(
            &prefix,
            &format!("{prefix}-2"),
            dest2_port(),
            "\n[apply]\non_ddl_error = \"stop\"\n\n[schema]\non_conflict = \"ignore\"\n\n[retry]\nother_window_minutes = 1\n",
        ),
    )?;
    wait_until("the stopping sink to exit", WAIT, || {
        let done = stopping.assert_running().is_err();
        async move { Ok((!done).then(|| "still running".to_string())) }
    })
    .await?;
    // It retried the statement for its window (1 minute), then stopped.
    assert!(started.elapsed() >= Duration::from_secs(60));
    let log = stopping.log_text();
    assert!(
        log.contains("on_ddl_error = stop") && log.contains("chk_a"),
        "{log}"
    );
    assert!(
        log.contains("a statement failed at the destination; retrying"),
        "{log}"
    );
    assert!(log.contains("(retry.other_window_minutes = 1)"), "{log}");
    // It stopped before the statement and the rows after it.
    let n: Option<i64> = dst2
        .conn
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.t WHERE id = 2"))
        .await?;
    assert_eq!(n, Some(0));
    source.assert_running()?;
    drop_database(&[source_port(), dest_port(), dest2_port()], &db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_definer_is_replaced_by_the_sinks_account() -> Result<()> {
    let db = unique("definer");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    let mut dst = Db::connect(dest_port()).await?;
    src.exec("CREATE USER IF NOT EXISTS 'tributary_ghost'@'%'")
        .await?;
    dst.exec("DROP USER IF EXISTS 'tributary_ghost'@'%'")
        .await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1); \
         CREATE DEFINER = 'tributary_ghost'@'%' SQL SECURITY INVOKER VIEW v1 AS SELECT id FROM t;"
    ))
    .await?;
    let prefix = unique("definer");
    let _source = start_source(&prefix, &db, 7803).await?;
    let sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    src.exec("CREATE DEFINER = `tributary_ghost`@`%` SQL SECURITY INVOKER VIEW v2 AS SELECT id + 1 AS n FROM t")
        .await?;
    let q = format!(
        "SELECT COUNT(*), SUM(DEFINER = 'tributary_ghost@%') FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{db}'"
    );
    wait_until("both views at the destination", WAIT, || {
        let q = q.clone();
        async move {
            let mut dst = Db::connect(dest_port()).await?;
            let r: Option<(i64, Option<i64>)> = dst.conn.query_first(q).await?;
            Ok((r.map(|r| r.0) != Some(2)).then(|| format!("{r:?}")))
        }
    })
    .await?;
    let r: Option<(i64, Option<i64>)> = dst.conn.query_first(&q).await?;
    assert_eq!(r, Some((2, Some(0))), "a view kept the missing DEFINER");
    // SQL SECURITY INVOKER: the view reads the table as the caller.
    let q2 = format!("SELECT n FROM `{db}`.v2");
    wait_until("the row through the view", WAIT, || {
        let q2 = q2.clone();
        async move {
            let mut dst = Db::connect(dest_port()).await?;
            let rows: Vec<i64> = dst.conn.query(q2).await?;
            Ok((rows != vec![2]).then(|| format!("{rows:?}")))
        }
    })
    .await?;
    assert!(sink
        .log_text()
        .contains("does not exist at the destination: created with DEFINER=CURRENT_USER"));
    drop_database(&[source_port(), dest_port()], &db).await?;
    src.exec("DROP USER IF EXISTS 'tributary_ghost'@'%'")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_after_full_sync_are_created_as_they_are_after_the_rows() -> Result<()> {
    let db = unique("trigafter");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE o (id INT PRIMARY KEY); INSERT INTO o VALUES (1), (2), (3); \
         CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, oid INT); \
         CREATE TRIGGER tr AFTER INSERT ON o FOR EACH ROW INSERT INTO audit (oid) VALUES (NEW.id);"
    ))
    .await?;
    let prefix = unique("trigafter");
    let mut source = start_source(&prefix, &db, 7804).await?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(
            &prefix,
            &prefix,
            dest_port(),
            "\n[schema]\ntriggers = \"after_full_sync\"\n",
        ),
    )?;
    // Same objects and rows: the trigger came after o's three rows, so it
    // did not fire for them.
    wait_same(&db, &mut source, &mut sink).await?;
    let mut dst = Db::connect(dest_port()).await?;
    let r: Option<(String,)> = dst
        .conn
        .query_first(format!("SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}'"))
        .await?;
    let body = r.map(|r| r.0).unwrap_or_default();
    assert!(!body.contains("tributary_apply"), "guarded: {body}");
    assert_eq!(dst.count(&format!("`{db}`.audit")).await?, 0);
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_run_before_a_crash_is_not_run_again() -> Result<()> {
    let db = unique("renamecrash");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(5)); INSERT INTO a VALUES (1, 'a'); \
         CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(5)); INSERT INTO b VALUES (1, 'b');"
    ))
    .await?;
    let prefix = unique("renamecrash");
    let (mut source, mut sink, sink_text) = start_synced(&prefix, &db, 7805).await?;
    sink.kill9();

    // A swap at the source.
    src.exec("RENAME TABLE a TO tmp, b TO a, tmp TO b").await?;
    // The sink ran it, with its marker, and crashed before storing its
    // position: simulated by doing the same at the destination.
    let topic = format!("{prefix}.schema-changes");
    let mut id = None;
    wait_until("the RENAME on the schema-changes topic", WAIT, || {
        let topic = topic.clone();
        let found = e2e_tests::read_topic(&topic).ok().and_then(|records| {
            records.into_iter().find_map(|(_, v)| {
                let v: Vec<u8> = v?;
                let c = change_stream::schema_change::SchemaChange::decode(&v).ok()?;
                (c.kind == "RENAME TABLE").then(|| c.id())
            })
        });
        id = found.clone();
        async move { Ok(found.is_none().then(|| "not yet".to_string())) }
    })
    .await?;
    let id = id.expect("found");
    let marker = format!(
        "rename_{:016x}_done",
        change_stream::avro::fingerprint(format!("{prefix}\n{id}"))
    );
    let mut dst = Db::connect(dest_port()).await?;
    dst.exec(&format!(
        "RENAME TABLE `{db}`.a TO `{db}`.tmp, `{db}`.b TO `{db}`.a, `{db}`.tmp TO `{db}`.b; \
         CREATE TABLE tributary.`{marker}` (ran INT);"
    ))
    .await?;

    // Restarted, the sink recognises the statement as done: the tables are
    // swapped once, as at the source, not back.
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_text)?;
    src.exec("INSERT INTO a VALUES (2, 'after')").await?;
    wait_same(&db, &mut source, &mut sink).await?;
    assert!(
        sink.log_text().contains("says it ran"),
        "{}",
        sink.log_tail()
    );
    let left: Option<i64> = dst
        .conn
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'tributary' AND TABLE_NAME = '{marker}'"
        ))
        .await?;
    assert_eq!(left, Some(0), "the marker was not dropped");
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}

/// Runs `alter` at the source with a sink that crashes right after running
/// it at the destination (before storing the position past it), then
/// restarts the sink; the destination must equal the source.
async fn crash_after(
    alter: &str,
    db: &str,
    prefix: &str,
    source: &mut Connector,
    sink_text: &str,
    round: u32,
) -> Result<Connector> {
    let mut src = Db::connect(source_port()).await?;
    let mut crashing = Connector::start_with_env(
        "sink-connector",
        &format!("{prefix}-sink-crash{round}"),
        sink_text,
        &[("TRIBUTARY_FAILPOINT", "after-schema-change")],
    )?;
    src.exec(&format!("USE `{db}`; {alter}")).await?;
    let status = crashing.wait_exit(WAIT).await?;
    assert_eq!(status.code(), Some(137), "{}", crashing.log_tail());
    src.exec(&format!(
        "INSERT INTO `{db}`.t (id) VALUES ({})",
        100 + round
    ))
    .await?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink-after{round}"),
        sink_text,
    )?;
    wait_same(db, source, &mut sink).await?;
    assert!(
        sink.log_text().contains(
            "it ran before the sink stopped: the objects it names changed since it started"
        ),
        "{}",
        sink.log_tail()
    );
    Ok(sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_change_run_just_before_a_crash_is_not_run_again() -> Result<()> {
    let db = unique("ddlcrash");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE t (id INT PRIMARY KEY, a INT, b INT, e TEXT, v INT); \
         INSERT INTO t VALUES (1, 10, 20, 'one', 1);"
    ))
    .await?;
    let prefix = unique("ddlcrash");
    let (mut source, mut sink, sink_text) = start_synced(&prefix, &db, 7806).await?;
    sink.stop()?;
    // Run twice without an error, this swaps the columns back.
    crash_after(
        "ALTER TABLE t CHANGE a b INT, CHANGE b a INT",
        &db,
        &prefix,
        &mut source,
        &sink_text,
        1,
    )
    .await?
    .stop()?;
    // Run twice, this fails (unknown column `e`).
    let mut sink = crash_after(
        "ALTER TABLE t RENAME COLUMN e TO ee, CHANGE v vv BIGINT",
        &db,
        &prefix,
        &mut source,
        &sink_text,
        2,
    )
    .await?;
    let mut dst = Db::connect(dest_port()).await?;
    let failures: Option<i64> = dst
        .conn
        .exec_first(
            "SELECT COUNT(*) FROM tributary.ddl_failures WHERE topic_prefix = ?",
            (prefix.as_str(),),
        )
        .await?;
    assert_eq!(failures, Some(0), "a statement was recorded as failed");
    let columns: Vec<String> = dst
        .conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't' ORDER BY ORDINAL_POSITION",
            (db.as_str(),),
        )
        .await?;
    assert_eq!(columns, ["id", "b", "a", "ee", "vv"]);

    // A statement that fails the first time it runs (the table is gone at
    // the destination: a divergence) is a failure, not "already done".
    dst.exec(&format!("DROP TABLE `{db}`.t")).await?;
    src.exec("ALTER TABLE t ADD COLUMN extra INT").await?;
    let q = "SELECT COUNT(*) FROM tributary.ddl_failures WHERE topic_prefix = ? AND statement LIKE '%ADD COLUMN extra%' AND error LIKE '%1146%'";
    wait_until("the failed ALTER recorded", WAIT, || {
        let prefix = prefix.clone();
        async move {
            let mut dst = Db::connect(dest_port()).await?;
            let n: Option<i64> = dst.conn.exec_first(q, (prefix.as_str(),)).await?;
            Ok((n != Some(1)).then(|| format!("{n:?} recorded")))
        }
    })
    .await?;
    sink.assert_running()?;
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}

/// (name, status, comment, body) of the events of `db`.
async fn events(port: u16, db: &str) -> Result<Vec<(String, String, String, String)>> {
    let mut conn = Db::connect(port).await?;
    Ok(conn
        .conn
        .exec(
            "SELECT EVENT_NAME, STATUS, EVENT_COMMENT, EVENT_DEFINITION FROM information_schema.EVENTS \
             WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME",
            (db,),
        )
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_created_disabled_at_the_destination() -> Result<()> {
    let db = unique("events");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL DEFAULT 0); \
         CREATE EVENT e1 ON SCHEDULE AT CURRENT_TIMESTAMP + INTERVAL 1 DAY ON COMPLETION PRESERVE \
           DO INSERT INTO t (v) VALUES (1);"
    ))
    .await?;
    let prefix = unique("events");
    let (mut source, mut sink, _) = start_synced(&prefix, &db, 7807).await?;
    let expect = |names: &[(&str, &str)]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect()
    };
    // Every event of the source is at the destination, with its body and
    // comment, and disabled there.
    let wait_events = |want: Vec<(String, String)>| {
        let db = db.clone();
        async move {
            wait_until("the events at the destination", WAIT, || {
                let (db, want) = (db.clone(), want.clone());
                async move {
                    let (s, d) = (
                        events(source_port(), &db).await?,
                        events(dest_port(), &db).await?,
                    );
                    let names: Vec<(String, String)> =
                        d.iter().map(|e| (e.0.clone(), e.2.clone())).collect();
                    let ok = names == want
                        && d.iter().all(|e| e.1 == "SLAVESIDE_DISABLED")
                        && s.len() == d.len()
                        && s.iter().zip(&d).all(|(a, b)| a.3 == b.3);
                    Ok((!ok).then(|| format!("source {s:?}, destination {d:?}")))
                }
            })
            .await
        }
    };
    wait_events(expect(&[("e1", "")])).await?;

    src.exec(
        "CREATE EVENT e2 ON SCHEDULE EVERY 1 DAY STARTS CURRENT_TIMESTAMP + INTERVAL 1 DAY ENABLE COMMENT 'daily' \
           DO UPDATE t SET v = v + 1; \
         ALTER EVENT e1 ENABLE; ALTER EVENT e1 COMMENT 'once';",
    )
    .await?;
    wait_events(expect(&[("e1", "once"), ("e2", "daily")])).await?;
    src.exec("DROP EVENT e2").await?;
    wait_events(expect(&[("e1", "once")])).await?;
    source.assert_running()?;
    sink.assert_running()?;
    assert!(
        !sink.log_text().contains("schema change failed"),
        "{}",
        sink.log_tail()
    );
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}

/// (next_not_cached_value, cycle_count) of a sequence.
async fn sequence_state(port: u16, sequence: &str) -> Result<Option<(i64, i64)>> {
    let mut conn = Db::connect(port).await?;
    Ok(conn
        .conn
        .query_first(format!(
            "SELECT next_not_cached_value, cycle_count FROM {sequence}"
        ))
        .await
        .ok()
        .flatten())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_are_created_first_and_kept_in_step() -> Result<()> {
    let db = unique("sequences");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE SEQUENCE s START WITH 100 CACHE 10; \
         CREATE TABLE t (id BIGINT PRIMARY KEY DEFAULT NEXTVAL(s), v INT); \
         INSERT INTO t (v) VALUES (1), (2), (3);"
    ))
    .await?;
    let prefix = unique("sequences");
    // The table, which needs its sequence, is created, and the sequence
    // is where the source's is.
    let (mut source, mut sink, _) = start_synced(&prefix, &db, 7808).await?;
    let wait_in_step = |name: &'static str| {
        let sequence = format!("`{db}`.`{name}`");
        async move {
            wait_until("the sequence in step", WAIT, || {
                let sequence = sequence.clone();
                async move {
                    let s = sequence_state(source_port(), &sequence).await?;
                    let d = sequence_state(dest_port(), &sequence).await?;
                    Ok((s.is_none() || s != d).then(|| format!("source {s:?}, destination {d:?}")))
                }
            })
            .await
        }
    };
    wait_in_step("s").await?;

    // Values taken from the cache, a refill, SETVAL and a new sequence.
    src.exec(
        "INSERT INTO t (v) SELECT seq FROM seq_1_to_25; \
         CREATE SEQUENCE s2 START WITH 7 INCREMENT BY 5; \
         DO NEXTVAL(s2); DO SETVAL(s, 5000);",
    )
    .await?;
    wait_in_step("s").await?;
    wait_in_step("s2").await?;
    src.exec("INSERT INTO t (v) VALUES (99)").await?;
    wait_same(&db, &mut source, &mut sink).await?;
    wait_in_step("s").await?;
    assert!(
        !sink.log_text().contains("schema change failed"),
        "{}",
        sink.log_tail()
    );
    assert!(
        !source
            .log_text()
            .contains("no longer exists under this name"),
        "{}",
        source.log_tail()
    );
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_whose_database_is_missing_runs_without_one() -> Result<()> {
    let db = unique("usesel");
    let scratch = unique("usescratch");
    drop_database(&[source_port(), dest_port()], &db).await?;
    drop_database(&[source_port(), dest_port()], &scratch).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{scratch}`; CREATE TABLE `{scratch}`.t (id INT PRIMARY KEY, secret INT); \
         CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT); \
         INSERT INTO `{db}`.t VALUES (1, 1);"
    ))
    .await?;
    let prefix = unique("usesel");
    let (source, mut sink, _) = start_synced(&prefix, &db, 7809).await?;

    // A view of the selected database over a table of the session's
    // default database, which only the source has: at the destination the
    // statement must not run in another database (where `t` would be
    // `{db}`.t), but fail for want of its own.
    src.exec(&format!(
        "USE `{scratch}`; CREATE VIEW `{db}`.v AS SELECT id FROM t; \
         INSERT INTO `{db}`.t VALUES (2, 2);"
    ))
    .await?;
    let q = "SELECT COUNT(*) FROM tributary.ddl_failures WHERE topic_prefix = ? AND statement LIKE '%VIEW%SELECT id FROM t%' AND error LIKE '%(error 1046)%'";
    wait_until("the view's statement recorded as failed", WAIT, || {
        let prefix = prefix.clone();
        async move {
            let mut dst = Db::connect(dest_port()).await?;
            let n: Option<i64> = dst.conn.exec_first(q, (prefix.as_str(),)).await?;
            Ok((n != Some(1)).then(|| format!("{n:?} recorded")))
        }
    })
    .await?;
    let mut dst = Db::connect(dest_port()).await?;
    assert!(
        !dst.table_exists(&db, "v").await?,
        "the view was created at the destination, over another database's table"
    );
    assert!(sink
        .log_text()
        .contains("the default database of a schema change does not exist at the destination"));
    let rows = format!("SELECT COUNT(*) FROM `{db}`.t WHERE id = 2");
    wait_until("the row after the view", WAIT, || {
        let rows = rows.clone();
        async move {
            let mut dst = Db::connect(dest_port()).await?;
            let n: Option<i64> = dst.conn.query_first(rows).await?;
            Ok((n != Some(1)).then(|| "not yet".to_string()))
        }
    })
    .await?;
    sink.assert_running()?;
    drop(source);
    drop_database(&[source_port(), dest_port()], &db).await?;
    drop_database(&[source_port(), dest_port()], &scratch).await?;
    Ok(())
}
