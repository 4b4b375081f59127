//! DDL that the source connector reads late: while it was down in the
//! middle of its snapshot, and while it was behind the binlog when a table
//! was dropped and created again under the same name with other columns.
//! Both end with the destination equal to the source, definitions and rows.

use std::time::Duration;

use e2e_tests::ddl::wait_same_database;
use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(180);

/// Waits until `db` is the same on both sides, definitions and rows.
async fn wait_same(db: &str, source: &mut Connector, sink: &mut Connector) -> Result<()> {
    wait_same_database(source_port(), dest_port(), db, WAIT, &mut [source, sink]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_while_the_source_is_down_mid_snapshot_arrives() -> Result<()> {
    let db = unique("ddl_midsnap");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE a (id INT PRIMARY KEY, v INT, pad VARCHAR(50)); \
         INSERT INTO a SELECT seq, seq, REPEAT('x', 50) FROM seq_1_to_30000; \
         CREATE TABLE b (id INT PRIMARY KEY, k INT); INSERT INTO b SELECT seq, seq % 7 FROM seq_1_to_500; \
         CREATE TABLE d (id INT PRIMARY KEY); INSERT INTO d VALUES (1), (2);"
    ))
    .await?;
    let prefix = unique("ddl-midsnap");
    // Slow enough to be killed in the middle of `a`.
    let slow = source_config(
        &prefix,
        &[&db],
        8021,
        "snapshot_chunk_rows = 500\n[throttle]\nsnapshot_rows_per_second = 5000",
    );
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let mut source = Connector::start("source-connector", &format!("{prefix}-source"), &slow)?;
    let table_a = format!("`{db}`.a");
    wait_until("part of a's snapshot at the destination", WAIT, || {
        let table_a = table_a.clone();
        async move {
            let mut dst = Db::connect(dest_port()).await?;
            let n = dst.count(&table_a).await.unwrap_or(0);
            Ok((n < 2000).then(|| format!("{n} rows")))
        }
    })
    .await?;
    assert!(
        !source.log_text().contains("snapshot finished"),
        "the snapshot ended before the kill"
    );
    source.kill9();

    // While it is down: a new column, a new index, a new table with rows, a
    // dropped table, and changes to rows already copied and not yet copied.
    src.exec(
        "ALTER TABLE a ADD COLUMN extra INT NOT NULL DEFAULT 7; \
         UPDATE a SET v = -v, extra = 1 WHERE id % 100 = 0; \
         ALTER TABLE b ADD INDEX by_k (k); \
         CREATE TABLE c (id INT PRIMARY KEY, s VARCHAR(10)); INSERT INTO c VALUES (1, 'one'), (2, 'two'); \
         DROP TABLE d; \
         DELETE FROM a WHERE id BETWEEN 10 AND 20;",
    )
    .await?;
    source = Connector::start(
        "source-connector",
        &format!("{prefix}-source-2"),
        &source_config(&prefix, &[&db], 8021, "snapshot_chunk_rows = 500"),
    )?;
    wait_same(&db, &mut source, &mut sink).await?;
    assert!(
        source
            .log_text()
            .contains("resuming an interrupted snapshot"),
        "{}",
        source.log_tail()
    );
    // And later changes in the new shapes.
    src.exec("INSERT INTO a (id, v, pad, extra) VALUES (40000, 1, 'late', 9); INSERT INTO c VALUES (3, 'three');")
        .await?;
    wait_same(&db, &mut source, &mut sink).await?;
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_and_created_again_while_the_source_is_behind() -> Result<()> {
    let db = unique("ddl_recreate");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; CREATE TABLE keep (id INT PRIMARY KEY, v INT); \
         INSERT INTO keep VALUES (1, 1);"
    ))
    .await?;
    let prefix = unique("ddl-recreate");
    let config = source_config(&prefix, &[&db], 8022, "");
    let mut source = Connector::start("source-connector", &format!("{prefix}-source"), &config)?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    wait_same(&db, &mut source, &mut sink).await?;

    // Behind the binlog (stopped) while a test suite's statements run: a
    // table created, filled, dropped and created again with other columns,
    // several times, the last one partitioned.
    source.stop()?;
    src.exec(
        "CREATE TABLE t1 (a INT, b INT, c INT, PRIMARY KEY (a)); \
         INSERT INTO t1 VALUES (1, 2, 3), (4, 5, 6); UPDATE t1 SET c = 30 WHERE a = 1; \
         DROP TABLE t1; \
         CREATE TABLE t1 (x VARCHAR(10) PRIMARY KEY, y INT); INSERT INTO t1 VALUES ('p', 1); \
         DROP TABLE t1; \
         CREATE TABLE t1 (s1 INT) PARTITION BY LIST (s1) (PARTITION p1 VALUES IN (1), PARTITION p2 VALUES IN (2, 3)); \
         INSERT INTO t1 VALUES (1), (2), (3); DELETE FROM t1 WHERE s1 = 3; \
         CREATE TABLE t2 (a INT PRIMARY KEY); INSERT INTO t2 VALUES (1); DROP TABLE t2; \
         CREATE TABLE t3 (a INT, b INT); INSERT INTO t3 VALUES (1, 1); DROP TABLE t3; \
         CREATE TABLE t3 (s1 INT) PARTITION BY LIST (s1) (PARTITION p1 VALUES IN (1), PARTITION p2 VALUES IN (2)); \
         INSERT INTO t3 VALUES (1), (2); DROP TABLE t3; \
         INSERT INTO keep VALUES (2, 2);",
    )
    .await?;
    source = Connector::start("source-connector", &format!("{prefix}-source-2"), &config)?;
    wait_same(&db, &mut source, &mut sink).await?;
    // And on, live, then with the source behind a large transaction while
    // the statements run.
    src.exec(
        "INSERT INTO t1 VALUES (2); ALTER TABLE t1 ADD COLUMN z INT; INSERT INTO t1 VALUES (1, 9);",
    )
    .await?;
    src.exec(
        "INSERT INTO keep SELECT seq, seq FROM seq_10_to_200000; \
         CREATE TABLE t4 (a INT, b INT, c INT, PRIMARY KEY (a)); INSERT INTO t4 VALUES (1, 2, 3); \
         DROP TABLE t4; \
         CREATE TABLE t4 (s1 INT) PARTITION BY LIST (s1) (PARTITION p1 VALUES IN (1), PARTITION p2 VALUES IN (2)); \
         INSERT INTO t4 VALUES (1), (2); \
         DROP TABLE t1; CREATE TABLE t1 (n INT PRIMARY KEY, m TEXT); INSERT INTO t1 VALUES (5, 'five');",
    )
    .await?;
    wait_same(&db, &mut source, &mut sink).await?;
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}
