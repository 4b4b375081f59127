//! The full synchronization read on several connections at once: a large
//! table in key ranges, with the source and the sink killed (`kill -9`) in
//! the middle, and several tables read while DDL and DML run on the source.

use std::time::Duration;

use e2e_tests::ddl::wait_same_database;
use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(240);

/// Creates `db` with `big` (`rows` rows, ids 1..=rows, a gap in the middle)
/// and a small table beside it.
async fn create_big(db: &str, rows: u32) -> Result<()> {
    drop_database(&[source_port(), dest_port(), dest2_port()], db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.big (id BIGINT NOT NULL, part SMALLINT NOT NULL, v VARCHAR(64) NOT NULL, \
         n INT NULL, PRIMARY KEY (id, part), KEY by_n (n))"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.big SELECT seq, seq % 3, CONCAT('row-', seq), seq * 7 \
         FROM `{db}`.seq_1_to_{rows} WHERE seq NOT BETWEEN {} AND {}",
        rows / 2,
        rows / 2 + 500
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.small (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.small SELECT seq, CONCAT('s', seq) FROM `{db}`.seq_1_to_300"
    ))
    .await?;
    // The estimate the split is planned from.
    src.exec(&format!("ANALYZE TABLE `{db}`.big")).await?;
    Ok(())
}

/// Changes all over the key space of `big`: in each range, below the
/// lowest key and above the highest.
async fn change_big(db: &str, round: i64, rows: i64) -> Result<()> {
    let mut src = Db::connect(source_port()).await?;
    for i in 0..20i64 {
        let id = 1 + (i * rows / 20 + round * 37) % rows;
        src.exec(&format!(
            "UPDATE `{db}`.big SET v = CONCAT(v, '+{round}'), n = n + 1 WHERE id = {id}"
        ))
        .await?;
        src.exec(&format!(
            "DELETE FROM `{db}`.big WHERE id = {}",
            (id + 11) % rows + 1
        ))
        .await?;
    }
    src.exec(&format!(
        "INSERT INTO `{db}`.big VALUES ({}, 0, 'above', NULL), ({}, 1, 'below', -1), ({}, 2, 'in the gap', 0)",
        rows + round,
        -round,
        rows / 2 + round
    ))
    .await?;
    src.exec(&format!(
        "UPDATE `{db}`.small SET v = 'round {round}' WHERE id = {}",
        round + 1
    ))
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_table_in_key_ranges_survives_kills_of_source_and_sink() -> Result<()> {
    let db = unique("e2e_ranges");
    let prefix = unique("ranges");
    let rows = 60_000u32;
    create_big(&db, rows).await?;
    // Slow enough that both kills land in the middle of the full sync.
    let source_conf = source_config(
        &prefix,
        &[&db],
        7811,
        "snapshot_chunk_rows = 500\nsnapshot_connections = 3\n\n[throttle]\nsnapshot_rows_per_second = 12000",
    );
    let sink_conf = sink_config(
        &prefix,
        &prefix,
        dest_port(),
        "[apply]\nbatch_max_records = 400\nconnections = 2",
    );
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;
    source
        .wait_log("large table: read in key ranges", WAIT)
        .await?;
    assert!(
        source.log_text().contains("parts=3"),
        "big was not split in three: {}",
        source.log_tail()
    );
    let big = format!("`{db}`.big");
    let applied = |at_least: u64| {
        let big = big.clone();
        move || {
            let big = big.clone();
            async move {
                let n = Db::connect(dest_port())
                    .await?
                    .count(&big)
                    .await
                    .unwrap_or(0);
                Ok((n < at_least).then(|| format!("{n} rows of big at the destination")))
            }
        }
    };
    wait_until("part of big at the destination", WAIT, applied(8_000)).await?;
    assert!(
        !source.log_text().contains("snapshot finished"),
        "the snapshot ended before the kill; make big larger"
    );
    source.kill9();
    change_big(&db, 1, rows as i64).await?;
    source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;
    source
        .wait_log("resuming an interrupted snapshot", WAIT)
        .await?;
    // The sink dies while the resumed snapshot is arriving.
    wait_until("more of big at the destination", WAIT, applied(20_000)).await?;
    sink.kill9();
    // Mid-load, big has its key but not yet its secondary index, and the
    // sink has recorded the statement that adds it.
    let mut dest = Db::connect(dest_port()).await?;
    let create = dest.rows(&format!("SHOW CREATE TABLE {big}")).await?;
    let create: String = mysql_async::from_value(create[0][1].clone());
    assert!(
        create.contains("PRIMARY KEY") && !create.contains("by_n"),
        "big is being loaded with its secondary index: {create}"
    );
    let deferred = dest
        .rows(&format!(
            "SELECT `statement` FROM tributary.deferred_indexes WHERE topic_prefix = '{prefix}'"
        ))
        .await?;
    assert_eq!(deferred.len(), 1, "deferred_indexes: {deferred:?}");
    change_big(&db, 2, rows as i64).await?;
    assert!(
        !source.log_text().contains("snapshot finished"),
        "the snapshot ended before the sink was killed; make big larger"
    );
    sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    change_big(&db, 3, rows as i64).await?;
    wait_same_database(
        source_port(),
        dest_port(),
        &db,
        WAIT,
        &mut [&mut source, &mut sink],
    )
    .await?;
    // The index was added at the end (wait_same_database compared the
    // definitions), and its record is gone.
    let left = Db::connect(dest_port())
        .await?
        .rows(&format!(
            "SELECT 1 FROM tributary.deferred_indexes WHERE topic_prefix = '{prefix}'"
        ))
        .await?;
    assert!(left.is_empty(), "deferred_indexes still lists big");
    // Every range was read again from where it stopped, not from its start.
    let log = source.log_text();
    assert!(
        log.lines()
            .filter(|l| l.contains("snapshot of table started")
                && l.contains(".big")
                && l.contains("resume=true"))
            .count()
            >= 2,
        "the restarted source did not resume big's ranges: {}",
        source.log_tail()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_snapshot_while_ddl_and_dml_run() -> Result<()> {
    let db = unique("e2e_parsnap");
    let prefix = unique("parsnap");
    drop_database(&[source_port(), dest_port(), dest2_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    for t in 1..=4 {
        src.exec(&format!(
            "CREATE TABLE `{db}`.t{t} (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL, n INT NULL)"
        ))
        .await?;
        src.exec(&format!(
            "INSERT INTO `{db}`.t{t} SELECT seq, CONCAT('t{t}-', seq), seq FROM `{db}`.seq_1_to_15000"
        ))
        .await?;
        src.exec(&format!("ANALYZE TABLE `{db}`.t{t}")).await?;
    }
    let source_conf = source_config(
        &prefix,
        &[&db],
        7812,
        "snapshot_chunk_rows = 500\nsnapshot_connections = 3\n\n[throttle]\nsnapshot_rows_per_second = 15000",
    );
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;
    source.wait_log("snapshot of table started", WAIT).await?;
    assert!(
        !source.log_text().contains("snapshot finished"),
        "the snapshot ended before the steps began; make the tables larger"
    );
    // While the tables are being read: rows changed in every table, a
    // column added to a table being read, an index, a table created and
    // filled, one dropped before it is read, one renamed. (A statement on
    // a table the snapshot has read waits for the snapshot to end, as
    // with any consistent read; one on a table not read yet goes first.)
    let steps = [
        "UPDATE `{db}`.t1 SET v = CONCAT(v, '*') WHERE id % 500 = 1",
        "DELETE FROM `{db}`.t2 WHERE id % 700 = 3",
        "INSERT INTO `{db}`.t3 SELECT seq, 'late', NULL FROM `{db}`.seq_20001_to_20300",
        "DROP TABLE `{db}`.t4",
        "CREATE TABLE `{db}`.t5 (id INT PRIMARY KEY, v VARCHAR(40))",
        "INSERT INTO `{db}`.t5 SELECT seq, CONCAT('t5-', seq) FROM `{db}`.seq_1_to_2000",
        "ALTER TABLE `{db}`.t1 ADD COLUMN extra VARCHAR(10) NOT NULL DEFAULT 'x'",
        "UPDATE `{db}`.t1 SET extra = 'y', n = -n WHERE id % 300 = 7",
        "ALTER TABLE `{db}`.t2 ADD INDEX by_n (n)",
        "RENAME TABLE `{db}`.t3 TO `{db}`.t3_renamed",
        "UPDATE `{db}`.t3_renamed SET n = 0 WHERE id % 400 = 9",
        "ALTER TABLE `{db}`.t2 DROP COLUMN n",
        "INSERT INTO `{db}`.t2 VALUES (90001, 'after drop column')",
    ];
    let writer = tokio::spawn({
        let db = db.clone();
        async move {
            for step in steps {
                src.exec(&step.replace("{db}", &db)).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        }
    });
    writer.await??;
    wait_same_database(
        source_port(),
        dest_port(),
        &db,
        WAIT,
        &mut [&mut source, &mut sink],
    )
    .await?;
    Ok(())
}
