//! One transaction of 1,000,000 row changes passes through while both
//! connectors stay within a memory budget set in bytes, also when the
//! broker stalls with the transaction half sent.

use std::time::Duration;

use e2e_tests::*;

const ROWS: u32 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_row_transaction_with_bounded_memory() -> Result<()> {
    let db = unique("e2e_bigtxn");
    let prefix = unique("bigtxn");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL)"
    ))
    .await?;
    // Budgets: 32 MiB of records buffered by the producer, 32 MiB fetched
    // ahead by the consumer, 8 MiB per destination transaction, records of
    // at most 16 MiB.
    let source_conf = source_config(&prefix, &[&db], 5801, "").replace(
        "position_interval_ms = 200\n",
        "position_interval_ms = 200\nbuffer_max_bytes = 33554432\nmessage_max_bytes = 16777216\n",
    );
    let sink_conf = sink_config(
        &prefix,
        &prefix,
        dest_port(),
        "[apply]\nbatch_max_bytes = 8388608",
    )
    .replace(
        "topic_refresh_secs = 1\n",
        "topic_refresh_secs = 1\nfetch_buffer_bytes = 33554432\nmessage_max_bytes = 16777216\n",
    );
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    let table = format!("`{db}`.t");
    let tables = [(table.as_str(), "id")];
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;

    // The broker stalls while the transaction is written: the source reads
    // the binlog until its buffers are full and must stop there, whatever
    // the broker's speed.
    let pause = pause_broker()?;
    src.exec(&format!(
        "INSERT INTO {table} SELECT seq, seq * 7, CONCAT('row ', seq, ' of one big transaction') FROM `{db}`.seq_1_to_{ROWS}"
    ))
    .await?;
    wait_memory_settles(&mut source, Duration::from_secs(90)).await?;
    eprintln!(
        "source memory with the broker stalled: {} MiB",
        source.rss_bytes()? >> 20
    );
    drop(pause);
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(900),
        &mut [&mut source, &mut sink],
    )
    .await?;

    // The Avro records alone are well over 50 MiB; neither process held
    // them all.
    let (source_peak, sink_peak) = (source.peak_rss_bytes()?, sink.peak_rss_bytes()?);
    eprintln!(
        "peak memory: source {} MiB, sink {} MiB",
        source_peak >> 20,
        sink_peak >> 20
    );
    assert!(
        source_peak < 100 << 20,
        "source peak memory {} MiB",
        source_peak >> 20
    );
    assert!(
        sink_peak < 120 << 20,
        "sink peak memory {} MiB",
        sink_peak >> 20
    );
    Ok(())
}

/// Waits until a process's resident memory has not grown by more than
/// 1 MiB for 5 seconds (its buffers are full, or it is idle).
async fn wait_memory_settles(c: &mut Connector, timeout: Duration) -> Result<()> {
    let start = std::time::Instant::now();
    let mut last = c.rss_bytes()?;
    let mut since = std::time::Instant::now();
    while since.elapsed() < Duration::from_secs(5) {
        anyhow::ensure!(
            start.elapsed() < timeout,
            "memory of the source still growing after {}s ({} MiB)",
            timeout.as_secs(),
            last >> 20
        );
        c.assert_running()?;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = c.rss_bytes()?;
        if now > last + (1 << 20) {
            last = now;
            since = std::time::Instant::now();
        }
    }
    Ok(())
}
