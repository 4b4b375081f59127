//! The pipeline end to end: snapshot, stream, restarts, fan-out.
//!
//! Every scenario uses three tables: `customers` (single-column key),
//! `order_lines` (composite key, key changes) and `a_events` (no key at all,
//! so an insert applied twice shows up as an extra row and fails the
//! comparison: it is how "no duplicate effect" is checked).

use std::time::Duration;

use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(180);

fn tables(db: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("`{db}`.`a_events`"), "at, kind, payload"),
        (format!("`{db}`.`customers`"), "id"),
        (format!("`{db}`.`order_lines`"), "order_id, line"),
    ]
}

async fn wait_db_equal(db: &str, dst_port: u16) -> Result<()> {
    let t = tables(db);
    let refs: Vec<(&str, &str)> = t.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    wait_equal(source_port(), dst_port, &refs, WAIT).await
}

/// Creates the three tables with `customers` rows and two order lines per
/// customer.
async fn create_shop(db: &str, customers: u32) -> Result<()> {
    drop_database(&[source_port(), dest_port(), dest2_port()], db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, \
         balance DECIMAL(12,2) NOT NULL DEFAULT 0, updated DATETIME(6) NULL, note TEXT NULL, \
         UNIQUE KEY uk_name (name))"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.order_lines (order_id BIGINT UNSIGNED NOT NULL, line SMALLINT NOT NULL, \
         sku CHAR(12) NOT NULL, qty INT NOT NULL, price DECIMAL(10,2) NULL, PRIMARY KEY (order_id, line))"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.a_events (at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), kind VARCHAR(20) NOT NULL, payload VARBINARY(64) NULL)"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.customers (id, name, balance, updated, note) \
         SELECT seq, CONCAT('customer-', seq), seq * 1.25, '2024-01-01 00:00:00' + INTERVAL seq SECOND, \
         IF(seq % 7 = 0, NULL, REPEAT('é', seq % 50)) FROM `{db}`.seq_1_to_{customers}"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.order_lines SELECT c.seq, l.seq, CONCAT('SKU', LPAD(c.seq, 6, '0')), l.seq * 3, \
         IF(c.seq % 11 = 0, NULL, c.seq / 100) FROM `{db}`.seq_1_to_{customers} c, `{db}`.seq_1_to_2 l"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.a_events (at, kind, payload) SELECT '2024-01-01' + INTERVAL seq MINUTE, 'seed', UNHEX(MD5(seq)) FROM `{db}`.seq_1_to_50"
    ))
    .await?;
    Ok(())
}

/// `n` small transactions of inserts, updates (one changing a key, one
/// swapping unique values through a rename), deletes and keyless inserts.
async fn churn(db: &str, from: u32, n: u32) -> Result<()> {
    let mut src = Db::connect(source_port()).await?;
    for i in from..from + n {
        let id = 1_000_000 + i;
        let k = (i * 7919) % 900 + 1;
        src.exec(&format!(
            "BEGIN; \
             INSERT INTO `{db}`.customers (id, name, balance, note) VALUES ({id}, 'new-{i}', {i}.50, 'x\\'y\\\\z {i}'); \
             UPDATE `{db}`.customers SET balance = balance + 1, updated = NOW(6) WHERE id = {k}; \
             UPDATE `{db}`.order_lines SET line = line + 100 WHERE order_id = {k} AND line < 100 AND line = 1; \
             DELETE FROM `{db}`.order_lines WHERE order_id = {k} AND line = 2; \
             INSERT INTO `{db}`.order_lines VALUES ({id}, 1, 'NEW', 1, NULL); \
             INSERT INTO `{db}`.a_events (kind, payload) VALUES ('churn', UNHEX(LPAD(HEX({i}), 8, '0'))); \
             COMMIT"
        ))
        .await?;
        if i % 10 == 0 {
            src.exec(&format!(
                "DELETE FROM `{db}`.customers WHERE id = {}",
                1_000_000 + i - 5
            ))
            .await?;
            src.exec(&format!(
                "DELETE FROM `{db}`.a_events WHERE kind = 'seed' LIMIT 1"
            ))
            .await?;
            // Two rows swap a unique value in one transaction.
            src.exec(&format!(
                "BEGIN; \
                 UPDATE `{db}`.customers SET name = 'swap-tmp' WHERE id = {a}; \
                 UPDATE `{db}`.customers SET name = 'customer-{a}' WHERE id = {b}; \
                 UPDATE `{db}`.customers SET name = 'customer-{b}' WHERE id = {a}; \
                 COMMIT",
                a = 2000 + i,
                b = 2001 + i
            ))
            .await?;
        }
    }
    Ok(())
}

async fn dest_count(port: u16, table: &str) -> u64 {
    match Db::connect(port).await {
        Ok(mut d) => d.count(table).await.unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_stream_with_changes_during_snapshot() -> Result<()> {
    let db = unique("e2e_snap");
    let prefix = unique("snap");
    create_shop(&db, 6000).await?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 5501, "snapshot_chunk_rows = 500"),
    )?;
    // Changes while the snapshot runs, then after it.
    churn(&db, 0, 150).await?;
    wait_db_equal(&db, dest_port()).await?;
    churn(&db, 150, 100).await?;
    wait_db_equal(&db, dest_port()).await?;
    source.assert_running()?;
    sink.assert_running()?;
    assert!(
        source.stop()?.success(),
        "source did not stop cleanly: {}",
        source.log_tail()
    );
    assert!(
        sink.stop()?.success(),
        "sink did not stop cleanly: {}",
        sink.log_tail()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_killed_mid_stream_resumes_without_duplicates() -> Result<()> {
    let db = unique("e2e_sinkkill");
    let prefix = unique("sinkkill");
    create_shop(&db, 2000).await?;
    let sink_conf = sink_config(
        &prefix,
        &prefix,
        dest_port(),
        "[apply]\nbatch_max_records = 50",
    );
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    let _source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 5502, ""),
    )?;
    wait_db_equal(&db, dest_port()).await?;
    let writer = tokio::spawn({
        let db = db.clone();
        async move { churn(&db, 0, 400).await }
    });
    // Kill the sink while changes are being applied, twice.
    let events = format!("`{db}`.a_events");
    for round in 1..=2u64 {
        let target = 50 + round * 60;
        wait_until("the sink to apply some changes", WAIT, || {
            let events = events.clone();
            async move {
                let n = dest_count(dest_port(), &events).await;
                Ok((n < target).then(|| format!("{n} events applied")))
            }
        })
        .await?;
        sink.kill9();
        sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    }
    writer.await??;
    wait_db_equal(&db, dest_port()).await?;
    sink.assert_running()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_killed_mid_snapshot_and_mid_stream_resumes() -> Result<()> {
    let db = unique("e2e_srckill");
    let prefix = unique("srckill");
    create_shop(&db, 30000).await?;
    let source_conf = source_config(&prefix, &[&db], 5503, "snapshot_chunk_rows = 200");
    let _sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;

    // Mid-snapshot: while `customers` is being read (tables are read in
    // name order: a_events, customers, order_lines), after at least one
    // position is stored (every 200 ms).
    source
        .wait_log(
            &format!("snapshot of table started table={db}.customers"),
            WAIT,
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !source.log_text().contains("snapshot finished"),
        "the snapshot ended before the kill; make the table larger"
    );
    source.kill9();
    // Changes while the source is down: deletes of rows already copied,
    // updates, inserts; the resumed snapshot must bring all of them.
    churn(&db, 0, 60).await?;
    Db::connect(source_port())
        .await?
        .exec(&format!(
            "DELETE FROM `{db}`.customers WHERE id BETWEEN 1 AND 100"
        ))
        .await?;
    source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;
    wait_db_equal(&db, dest_port()).await?;
    assert!(
        source
            .log_text()
            .contains("resuming an interrupted snapshot"),
        "the restarted source did not resume the snapshot: {}",
        source.log_tail()
    );

    // Mid-stream: kill while a writer runs, restart, compare.
    let writer = tokio::spawn({
        let db = db.clone();
        async move { churn(&db, 60, 300).await }
    });
    let events = format!("`{db}`.a_events");
    let seen = dest_count(dest_port(), &events).await;
    wait_until("the stream to move", WAIT, || {
        let events = events.clone();
        async move {
            let n = dest_count(dest_port(), &events).await;
            Ok((n < seen + 80).then(|| format!("{n} events")))
        }
    })
    .await?;
    source.kill9();
    source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;
    writer.await??;
    wait_db_equal(&db, dest_port()).await?;
    source.assert_running()?;
    Ok(())
}

/// A table without a key cannot be resumed from a key: when the source dies
/// in the middle of its snapshot, the table is read again from its start,
/// and the rows sent before are discarded at the destination, not doubled.
/// (Without `kafka.exactly_once`: with it, the part of a keyless table sent
/// before a crash is never committed, so no consumer sees it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_table_interrupted_mid_snapshot_is_not_doubled() -> Result<()> {
    const ROWS: u64 = 20_000;
    let db = unique("e2e_keylesskill");
    let prefix = unique("keylesskill");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; \
         CREATE TABLE `{db}`.log (at INT NOT NULL, kind VARCHAR(20) NOT NULL, note VARCHAR(40) NULL); \
         INSERT INTO `{db}`.log SELECT seq % 500, IF(seq % 3 = 0, 'odd', 'even'), IF(seq % 5 = 0, NULL, CONCAT('n', seq % 97)) \
           FROM `{db}`.seq_1_to_{ROWS}"
    ))
    .await?;
    let table = format!("`{db}`.log");
    let tables = [(table.as_str(), "at, kind, note")];
    let _sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    // Slowed down so that the kill lands inside the table.
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &(source_config(
            &prefix,
            &[&db],
            5507,
            "[throttle]\nsnapshot_rows_per_second = 2000",
        ) + "exactly_once = false\n"),
    )?;
    wait_until("some rows at the destination", WAIT, || {
        let table = table.clone();
        async move {
            let n = dest_count(dest_port(), &table).await;
            Ok((n < 500).then(|| format!("{n} rows")))
        }
    })
    .await?;
    source.kill9();
    let copied = dest_count(dest_port(), &table).await;
    assert!(
        copied < ROWS,
        "the table was copied whole before the kill; make it larger"
    );
    // Changes while the source is down, duplicates of existing rows among
    // them.
    src.exec(&format!(
        "INSERT INTO {table} SELECT at, kind, note FROM {table} WHERE at < 3; \
         DELETE FROM {table} WHERE at = 7 LIMIT 10; \
         UPDATE {table} SET note = 'changed' WHERE at = 9"
    ))
    .await?;
    let source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &(source_config(&prefix, &[&db], 5507, "") + "exactly_once = false\n"),
    )?;
    wait_equal(source_port(), dest_port(), &tables, WAIT).await?;
    assert!(
        source.log_text().contains("read again from its start"),
        "the restarted source did not start the table over: {}",
        source.log_tail()
    );
    // Changes after the snapshot still arrive once.
    src.exec(&format!(
        "INSERT INTO {table} VALUES (1, 'after', NULL), (1, 'after', NULL); \
         DELETE FROM {table} WHERE at = 11 LIMIT 3"
    ))
    .await?;
    wait_equal(source_port(), dest_port(), &tables, WAIT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_feeds_two_sinks() -> Result<()> {
    let db = unique("e2e_fanout");
    let prefix = unique("fanout");
    create_shop(&db, 1500).await?;
    let _a = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink-a"),
        &sink_config(&prefix, &format!("{prefix}-a"), dest_port(), ""),
    )?;
    let _b = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink-b"),
        &sink_config(&prefix, &format!("{prefix}-b"), dest2_port(), ""),
    )?;
    let _source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 5504, ""),
    )?;
    churn(&db, 0, 100).await?;
    wait_db_equal(&db, dest_port()).await?;
    wait_db_equal(&db, dest2_port()).await?;
    Ok(())
}
