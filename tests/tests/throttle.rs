//! Throttles, measured: the full synchronization's source queries, rows
//! and MB per second, and the rows and MB per second the sink applies.
//! Each run must take at least as long as its limit allows (after the
//! one-second burst); the figures are printed.

use std::time::{Duration, Instant};

use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(120);

async fn prepare(db: &str, rows: usize, pad: usize) -> Result<()> {
    drop_database(&[source_port(), dest_port()], db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, pad VARCHAR(2000));"
    ))
    .await?;
    insert(db, 0, rows, pad).await
}

async fn insert(db: &str, from: usize, rows: usize, pad: usize) -> Result<()> {
    let mut src = Db::connect(source_port()).await?;
    let values: Vec<String> = (from..from + rows)
        .map(|i| format!("({i}, REPEAT('x', {pad}))"))
        .collect();
    for chunk in values.chunks(500) {
        src.exec(&format!("INSERT INTO `{db}`.t VALUES {}", chunk.join(", ")))
            .await?;
    }
    Ok(())
}

async fn wait_rows(db: &str, n: u64) -> Result<()> {
    let table = format!("`{db}`.t");
    wait_until(&format!("{n} rows in {table}"), WAIT, || {
        let table = table.clone();
        async move {
            let got = Db::connect(dest_port())
                .await?
                .count(&table)
                .await
                .unwrap_or(0);
            Ok((got < n).then(|| format!("{got} rows")))
        }
    })
    .await
}

/// Runs a source with `throttle` over `db` (and a sink), returns how long
/// the snapshot took.
async fn snapshot_time(db: &str, rows: u64, throttle: &str, chunk: u32) -> Result<Duration> {
    // One prefix per run: each starts a new full synchronization.
    let tag: String = throttle
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(16)
        .collect();
    let prefix = unique(&format!("thr-{tag}"));
    drop_database(&[dest_port()], db).await?;
    let source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(
            &prefix,
            &[db],
            7950,
            &format!("snapshot_chunk_rows = {chunk}\n[throttle]\n{throttle}"),
        ),
    )?;
    let started = Instant::now();
    source.wait_log("snapshot finished", WAIT).await?;
    let took = started.elapsed();
    let _sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    wait_rows(db, rows).await?;
    Ok(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_throttles() -> Result<()> {
    let db = unique("throttle_src");
    prepare(&db, 1000, 1000).await?;

    let took = snapshot_time(&db, 1000, "snapshot_rows_per_second = 250", 10_000).await?;
    println!(
        "snapshot_rows_per_second = 250: 1000 rows in {took:.1?} ({:.0} rows/s)",
        1000.0 / took.as_secs_f64()
    );
    assert!(took >= Duration::from_secs(3), "{took:?}");

    // 100-row chunks: 11 queries (the last finds the end), 2 a second.
    let took = snapshot_time(&db, 1000, "snapshot_queries_per_second = 2", 100).await?;
    println!("snapshot_queries_per_second = 2: 11 queries in {took:.1?}");
    assert!(took >= Duration::from_secs(4), "{took:?}");

    // About 1 MB of rows at 0.25 MB/s.
    let took = snapshot_time(&db, 1000, "snapshot_mb_per_second = 0.25", 10_000).await?;
    println!(
        "snapshot_mb_per_second = 0.25: ~1 MB in {took:.1?} ({:.2} MB/s)",
        1.0 / took.as_secs_f64()
    );
    assert!(took >= Duration::from_secs(2), "{took:?}");
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_throttles() -> Result<()> {
    for (name, throttle, min) in [
        ("rows", "rows_per_second = 250", 3),
        ("mb", "mb_per_second = 0.25", 2),
    ] {
        let db = unique(&format!("throttle_sink_{name}"));
        prepare(&db, 1, 10).await?;
        let prefix = unique(&format!("thr-sink-{name}"));
        let _source = Connector::start(
            "source-connector",
            &format!("{prefix}-source"),
            &source_config(&prefix, &[&db], 7960, ""),
        )?;
        let _sink = Connector::start(
            "sink-connector",
            &format!("{prefix}-sink"),
            &sink_config(
                &prefix,
                &prefix,
                dest_port(),
                &format!("\n[throttle]\n{throttle}\n"),
            ),
        )?;
        wait_rows(&db, 1).await?;
        // 1000 rows of ~1 KB through the stream.
        let started = Instant::now();
        insert(&db, 1, 1000, 1000).await?;
        wait_rows(&db, 1001).await?;
        let took = started.elapsed();
        println!("sink {throttle}: 1000 rows (~1 MB) applied in {took:.1?}");
        assert!(took >= Duration::from_secs(min), "{throttle}: {took:?}");
        drop_database(&[source_port(), dest_port()], &db).await?;
    }
    Ok(())
}
