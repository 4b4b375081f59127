//! A row the destination refuses: the sink's error names the table, the key
//! and the column (the server's "at row n" mapped back to the row), not the
//! statement; the batch is retried within `retry.other_window_minutes`, and
//! once the cause is fixed at the destination the row arrives.

use std::time::Duration;

use e2e_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_is_named_by_table_key_and_column() -> Result<()> {
    let db = unique("refused");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE t (id INT PRIMARY KEY, v INT, pad VARCHAR(100)); \
         INSERT INTO t VALUES (1, 1, 'a');"
    ))
    .await?;
    let prefix = unique("refused");
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 8001, ""),
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let table = format!("`{db}`.`t`");
    let tables = [(table.as_str(), "id")];
    let wait = Duration::from_secs(120);
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        wait,
        &mut [&mut source, &mut sink],
    )
    .await?;

    // The destination's column becomes too narrow for one row of a large
    // multi-row statement.
    let mut dst = Db::connect(dest_port()).await?;
    dst.exec(&format!("ALTER TABLE {table} MODIFY v TINYINT"))
        .await?;
    src.exec(&format!(
        "INSERT INTO {table} SELECT seq, IF(seq = 777, 500, seq % 100), REPEAT('x', 100) FROM seq_2_to_2000"
    ))
    .await?;
    sink.wait_log("a statement failed at the destination", wait)
        .await?;
    let log = sink.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("a statement failed at the destination"))
        .expect("waited for it");
    for expected in [
        &format!("table {db}.t, key (`id` = 777)") as &str,
        "Out of range value for column 'v'",
        "(error 1264)",
    ] {
        assert!(line.contains(expected), "`{expected}` not in: {line}");
    }
    assert!(
        !line.contains("INSERT") && !line.contains("REPLACE") && line.len() < 1000,
        "the statement is shown: {line}"
    );

    // Fixed at the destination: the retry applies the batch.
    dst.exec(&format!("ALTER TABLE {table} MODIFY v INT"))
        .await?;
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(180),
        &mut [&mut source, &mut sink],
    )
    .await?;
    Ok(())
}
