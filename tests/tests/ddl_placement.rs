//! Schema changes placed among the rows by offsets alone: the table topics
//! hold change records and tombstones only, and each schema change says
//! where it falls in every partition of its tables' topics.
//!
//! A table in three partitions gets rows before and after each of its
//! statements in every partition (a column added, then used; a column
//! dropped, then absent from the rows after). A second table's partitions
//! end, at its statement, in the commit marker of their last Kafka
//! transaction, which no consumer ever receives. Both sinks start only
//! once everything is written, so that they may read a table partition
//! before the schema-changes topic: one keeps transactions whole, the other
//! applies rows as they come. Any row applied on the wrong side of a
//! statement fails at the destination (a column it lacks) or leaves the
//! tables different.

use std::time::Duration;

use e2e_tests::ddl::wait_same_database;
use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_fall_between_the_rows_of_every_partition() -> Result<()> {
    let db = unique("ddl_placed");
    drop_database(&[source_port(), dest_port(), dest2_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE t (id INT PRIMARY KEY, a INT); \
         CREATE TABLE u (id INT PRIMARY KEY, v INT); INSERT INTO u VALUES (1, 1);"
    ))
    .await?;
    let prefix = unique("ddl-placed");
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &(source_config(&prefix, &[&db], 5703, "") + "partitions = 3\n"),
    )?;
    source
        .wait_log("snapshot finished", Duration::from_secs(60))
        .await?;
    src.exec(&format!(
        "USE `{db}`; \
         INSERT INTO t SELECT seq, seq FROM seq_1_to_300; \
         ALTER TABLE t ADD COLUMN b INT NOT NULL DEFAULT 7; \
         INSERT INTO t (id, a, b) SELECT seq, seq, seq FROM seq_301_to_600; \
         UPDATE t SET b = -id WHERE id <= 150; \
         ALTER TABLE t DROP COLUMN a; \
         INSERT INTO t (id, b) SELECT seq, 0 FROM seq_601_to_900; \
         DELETE FROM t WHERE id % 10 = 0; \
         ALTER TABLE u ADD COLUMN w INT NOT NULL DEFAULT 5;"
    ))
    .await?;
    // Everything is on the topics before any sink reads them.
    let schema_changes = format!("{prefix}.schema-changes");
    wait_until("the three statements on the topic", WAIT, || {
        let topic = schema_changes.clone();
        async move {
            let n = read_topic(&topic)?
                .iter()
                .filter(|(_, v)| {
                    v.as_ref()
                        .is_some_and(|v| v.windows(11).any(|w| w == b"ALTER TABLE"))
                })
                .count();
            Ok((n < 3).then(|| format!("{n} statements")))
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (_, value) in read_topic(&format!("{prefix}.{db}.t"))? {
        if let Some(v) = value {
            // A change record carries an `op`; a schema change does not.
            assert!(
                !v.windows(11).any(|w| w == b"ALTER TABLE"),
                "a schema change in the table topic"
            );
        }
    }

    let mut whole = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let mut rows = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink-rows"),
        &sink_config(
            &prefix,
            &format!("{prefix}-rows"),
            dest2_port(),
            "[apply]\nconsistency = \"row\"",
        ),
    )?;
    wait_same_database(
        source_port(),
        dest_port(),
        &db,
        WAIT,
        &mut [&mut source, &mut whole],
    )
    .await?;
    wait_same_database(
        source_port(),
        dest2_port(),
        &db,
        WAIT,
        &mut [&mut source, &mut rows],
    )
    .await?;
    for sink in [&whole, &rows] {
        let log = sink.log_text();
        assert!(!log.contains("ERROR"), "the sink logged an error:\n{log}");
    }
    source.stop()?;
    whole.stop()?;
    rows.stop()?;
    Ok(())
}
