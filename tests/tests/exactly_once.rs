//! Exactly once for any `read_committed` consumer (`kafka.exactly_once`,
//! the default): the source writes records and its position in Kafka
//! transactions, so that a consumer that is not ours (Python
//! confluent-kafka and fastavro, `tests/python/count_changes.py`) reads
//! every change once, however often the source is `kill -9`ed while
//! transactions stream.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::*;
use mysql_async::prelude::*;
use serde_json::Value;

const ACCOUNTS: i64 = 50;
/// Records per workload transaction: two account updates, a ledger insert.
const PER_TXN: u64 = 3;

/// What the Python consumer read, at `isolation`.
fn count(prefix: &str, db: &str, isolation: &str) -> Result<Value> {
    let python = std::env::var("TEST_PYTHON").map_err(|_| {
        anyhow::anyhow!("TEST_PYTHON is not set: run the tests with scripts/test.sh, which makes the Python environment (scripts/python.sh)")
    })?;
    let out = std::process::Command::new(python)
        .arg(workspace().join("tests/python/count_changes.py"))
        .args([&kafka_servers(), prefix, db, isolation])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "count_changes.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The `n`th source connector process of a test, with a log of its own.
fn start_source(prefix: &str, n: u32, config: &str) -> Result<Connector> {
    Connector::start("source-connector", &format!("{prefix}-source-{n}"), config)
}

async fn client(db: String, seed: u64, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> Result<()> {
    let mut conn =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&mysql_url(source_port()))?).await?;
    let mut x = seed;
    while !stop.load(Ordering::Relaxed) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let from = (x >> 33) as i64 % ACCOUNTS;
        let to = (from + 1 + (x >> 40) as i64 % (ACCOUNTS - 1)) % ACCOUNTS;
        let sql = format!(
            "START TRANSACTION; \
             UPDATE `{db}`.accounts SET balance = balance - 1 WHERE id = {from}; \
             UPDATE `{db}`.accounts SET balance = balance + 1 WHERE id = {to}; \
             INSERT INTO `{db}`.ledger (from_id, to_id) VALUES ({from}, {to}); COMMIT"
        );
        loop {
            match conn.query_drop(&sql).await {
                Ok(()) => break,
                Err(mysql_async::Error::Server(e)) if e.code == 1213 || e.code == 1205 => {
                    let _ = conn.query_drop("ROLLBACK").await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
        // Some hundreds a second: enough for every kill to land among
        // records on their way.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_committed_consumer_reads_every_change_once_across_source_kills() -> Result<()> {
    let db = unique("e2e_exactly_once");
    let prefix = unique("exactly-once");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; \
         CREATE TABLE `{db}`.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL); \
         CREATE TABLE `{db}`.ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, from_id INT, to_id INT); \
         INSERT INTO `{db}`.accounts SELECT seq, 1000 FROM `{db}`.seq_0_to_{}",
        ACCOUNTS - 1
    ))
    .await?;
    // Two partitions per table: a Kafka transaction spans several.
    let source_conf = source_config(&prefix, &[&db], 6201, "") + "partitions = 2\n";
    let start = |n| start_source(&prefix, n, &source_conf);
    let mut source = start(0)?;
    source
        .wait_log("snapshot finished", Duration::from_secs(60))
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..2)
        .map(|i| tokio::spawn(client(db.clone(), 11 + i, stop.clone(), done.clone())))
        .collect();
    // Killed three times while the transactions stream, each time once the
    // connector has streamed a while and some hundreds more were made.
    for n in 1..=3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let at = done.load(Ordering::Relaxed);
        wait_until(
            "transactions at the source",
            Duration::from_secs(60),
            || {
                let n = done.load(Ordering::Relaxed);
                async move { Ok((n < at + 300).then(|| format!("{n} transactions"))) }
            },
        )
        .await?;
        source.kill9();
        source = start(n)?;
        source
            .wait_log("source connector started", Duration::from_secs(60))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await??;
    }
    let transactions = done.load(Ordering::Relaxed);

    // A sink reads committed records too: the destination ends equal.
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let tables = [
        (format!("`{db}`.accounts"), "id"),
        (format!("`{db}`.ledger"), "id"),
    ];
    let tables: Vec<(&str, &str)> = tables.iter().map(|(t, o)| (t.as_str(), *o)).collect();
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(180),
        &mut [&mut source, &mut sink],
    )
    .await?;

    let committed = count(&prefix, &db, "read_committed")?;
    let per_gtid = committed["per_gtid"].as_object().expect("an object");
    let ends = committed["ends"].as_object().expect("an object");
    assert_eq!(
        committed["snapshot"].as_u64(),
        Some(ACCOUNTS as u64),
        "snapshot records"
    );
    let repeated = committed["repeated"].as_array().expect("a list");
    assert!(
        repeated.is_empty(),
        "{} binlog records read twice, among them (GTID, total_order) {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );
    assert_eq!(
        per_gtid.len() as u64,
        transactions,
        "GTIDs read, against the {transactions} transactions made"
    );
    let wrong: Vec<_> = per_gtid
        .iter()
        .filter(|(gtid, n)| {
            n.as_u64() != Some(PER_TXN) || ends.get(*gtid).and_then(Value::as_u64) != Some(PER_TXN)
        })
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "transactions without {PER_TXN} records, or without an END counting them: {wrong:?}"
    );
    assert_eq!(ends.len() as u64, transactions, "END records");
    assert_eq!(committed["begins_repeated"].as_u64(), Some(0));
    assert_eq!(committed["ends_repeated"].as_u64(), Some(0));
    // The table topics hold change records and tombstones only, though
    // schema changes (each table's definition, the end of its full
    // synchronization) fall among them.
    assert_eq!(
        committed["not_change_records"].as_u64(),
        Some(0),
        "records in table topics that are not change records"
    );
    let per_row = committed["per_row"].as_object().expect("an object");
    assert_eq!(per_row.len() as u64, transactions, "ledger rows read");
    assert!(
        per_row.values().all(|n| n.as_u64() == Some(1)),
        "a ledger row inserted once was read more than once"
    );

    // What the kills left uncommitted is in the topics too: a consumer
    // that reads it sees changes twice. (Which shows the kills landed
    // while records were on their way.)
    let uncommitted = count(&prefix, &db, "read_uncommitted")?;
    let twice = uncommitted["repeated"].as_array().map_or(0, Vec::len);
    eprintln!(
        "{transactions} transactions; read_committed: {} GTIDs, none twice; read_uncommitted: {twice} records twice",
        per_gtid.len()
    );
    assert!(
        twice > 0,
        "the kills left nothing uncommitted behind: the test did not test"
    );
    sink.assert_running()?;
    source.assert_running()?;
    Ok(())
}

/// The same for the full synchronization: the source killed twice while it
/// reads a table on two connections in key ranges, each row read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_committed_consumer_reads_every_snapshot_row_once_across_source_kills() -> Result<()>
{
    const ROWS: u64 = 300_000;
    let db = unique("e2e_exactly_once_snap");
    let prefix = unique("exactly-once-snap");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; \
         CREATE TABLE `{db}`.items (id INT PRIMARY KEY, note VARCHAR(40) NOT NULL); \
         INSERT INTO `{db}`.items SELECT seq, CONCAT('item ', seq) FROM `{db}`.seq_1_to_{ROWS}"
    ))
    .await?;
    // Slowed down so that the kills land inside the table.
    let source_conf = source_config(
        &prefix,
        &[&db],
        6202,
        "snapshot_chunk_rows = 5000\n\n[throttle]\nsnapshot_rows_per_second = 50000",
    );
    let start = |n| start_source(&prefix, n, &source_conf);
    let mut source = start(0)?;
    for n in 1..=2 {
        source
            .wait_log("snapshot of table started", Duration::from_secs(60))
            .await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        source.kill9();
        source = start(n)?;
    }
    source
        .wait_log("snapshot finished", Duration::from_secs(120))
        .await?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let table = format!("`{db}`.items");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(table.as_str(), "id")],
        Duration::from_secs(180),
        &mut [&mut source, &mut sink],
    )
    .await?;
    let committed = count(&prefix, &db, "read_committed")?;
    let uncommitted = count(&prefix, &db, "read_uncommitted")?;
    eprintln!(
        "read_committed: {} snapshot records, {} rows twice; read_uncommitted: {} records",
        committed["snapshot"], committed["snapshot_rows_repeated"], uncommitted["snapshot"]
    );
    assert_eq!(committed["snapshot_rows"].as_u64(), Some(ROWS), "rows read");
    assert_eq!(
        committed["snapshot"].as_u64(),
        Some(ROWS),
        "snapshot records"
    );
    assert_eq!(committed["snapshot_rows_repeated"].as_u64(), Some(0));
    assert!(
        uncommitted["snapshot"].as_u64() > Some(ROWS),
        "the kills left nothing uncommitted behind: the test did not test"
    );
    Ok(())
}

/// The replay that resumes an interrupted snapshot (the binlog between the
/// first snapshot point and the new one, for the rows already sent) is
/// committed as it goes with its own position: a source killed in the
/// middle of it replays on from there, and no change is read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_committed_consumer_reads_a_snapshot_replay_once_across_a_kill_inside_it(
) -> Result<()> {
    const ROWS: u64 = 100_000;
    const UPDATES: u64 = 30_000;
    let db = unique("e2e_exactly_once_replay");
    let prefix = unique("exactly-once-replay");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; \
         CREATE TABLE `{db}`.items (id INT PRIMARY KEY, note VARCHAR(40) NOT NULL); \
         INSERT INTO `{db}`.items SELECT seq, CONCAT('item ', seq) FROM `{db}`.seq_1_to_{ROWS}"
    ))
    .await?;
    let source_conf = source_config(
        &prefix,
        &[&db],
        6203,
        "snapshot_chunk_rows = 5000\n\n[throttle]\nsnapshot_rows_per_second = 20000",
    );
    let start = |n| start_source(&prefix, n, &source_conf);
    let mut source = start(0)?;
    source
        .wait_log("snapshot of table started", Duration::from_secs(60))
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    source.kill9();
    // While it is down, each of the first rows (sent already) changes in
    // a transaction of its own: the next process replays them all.
    let mut conn =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&mysql_url(source_port()))?).await?;
    for chunk in 0..UPDATES / 1000 {
        let sql: String = (chunk * 1000 + 1..=(chunk + 1) * 1000)
            .map(|id| format!("UPDATE `{db}`.items SET note = 'changed {id}' WHERE id = {id};"))
            .collect();
        conn.query_drop(sql).await?;
    }
    drop(conn);
    source = start(1)?;
    source
        .wait_log("replaying the binlog between", Duration::from_secs(60))
        .await?;
    // Past its first commit (once a second while a snapshot is under way).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let replaying = source.log_text();
    source.kill9();
    assert!(
        !replaying.contains("snapshot finished"),
        "the snapshot ended before the kill"
    );
    source = start(2)?;
    source
        .wait_log("snapshot finished", Duration::from_secs(120))
        .await?;
    // The third process replayed from where the second one had got to.
    let from = |log: &str| -> Option<String> {
        let line = log
            .lines()
            .find(|l| l.contains("replaying the binlog between"))?;
        Some(line.split("from=").nth(1)?.split(' ').next()?.to_string())
    };
    let (second, third) = (from(&replaying), from(&source.log_text()));
    assert!(second.is_some(), "the second process did not replay");
    assert_ne!(
        second, third,
        "the third process replayed from where the second one started: the kill came after the replay, or its position was not stored"
    );
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let table = format!("`{db}`.items");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(table.as_str(), "id")],
        Duration::from_secs(180),
        &mut [&mut source, &mut sink],
    )
    .await?;
    let committed = count(&prefix, &db, "read_committed")?;
    let repeated = committed["repeated"].as_array().expect("a list");
    let per_gtid = committed["per_gtid"].as_object().expect("an object");
    eprintln!(
        "read_committed: {} replayed transactions, {} records twice; replays from {second:?}, then {third:?}",
        per_gtid.len(),
        repeated.len()
    );
    assert_eq!(per_gtid.len() as u64, UPDATES, "replayed transactions");
    assert!(
        repeated.is_empty(),
        "{} replayed records read twice, among them {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );
    Ok(())
}
