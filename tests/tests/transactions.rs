//! Whole transactions at the destination (`apply.consistency =
//! "transaction"`, the default): a reader there never sees part of a
//! source transaction, across tables and partitions, while the sink is
//! killed and restarted; and a million-row transaction shows all at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::*;
use mysql_async::prelude::*;

const ACCOUNTS: i64 = 40;
const BALANCE: i64 = 1_000;

/// What one consistent snapshot of the destination must show: the money
/// adds up, the ledger has one entry per counted transfer, and no order
/// line lacks its order.
async fn check_snapshot(conn: &mut mysql_async::Conn, db: &str) -> Result<Option<String>> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await?;
    let total: Option<i64> = conn
        .query_first(format!(
            "SELECT CAST(SUM(balance) AS SIGNED) FROM `{db}`.accounts"
        ))
        .await?;
    let entries: Option<i64> = conn
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.ledger"))
        .await?;
    let counted: Option<i64> = conn
        .query_first(format!("SELECT n FROM `{db}`.counter WHERE id = 1"))
        .await?;
    let orphans: Option<i64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM `{db}`.order_lines l LEFT JOIN `{db}`.orders o ON o.id = l.order_id WHERE o.id IS NULL"
        ))
        .await?;
    let lines: Option<i64> = conn
        .query_first(format!(
            "SELECT COUNT(*) - 3 * (SELECT COUNT(*) FROM `{db}`.orders) FROM `{db}`.order_lines"
        ))
        .await?;
    conn.query_drop("COMMIT").await?;
    let total = total.unwrap_or(0);
    let (entries, counted) = (entries.unwrap_or(0), counted.unwrap_or(0));
    let mut why = Vec::new();
    if total != ACCOUNTS * BALANCE {
        why.push(format!("balances add up to {total}"));
    }
    if entries != counted {
        why.push(format!("{entries} ledger entries, counter {counted}"));
    }
    if orphans != Some(0) || lines != Some(0) {
        why.push(format!(
            "order lines: {orphans:?} orphans, {lines:?} beyond 3 per order"
        ));
    }
    Ok((!why.is_empty()).then(|| why.join("; ")))
}

/// One client: transfers between two accounts (two updates, a ledger
/// entry, the counter) and orders with three lines, in transactions.
async fn client(db: String, seed: u64, transfers: u64, done: Arc<AtomicU64>) -> Result<()> {
    let mut conn =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&mysql_url(source_port()))?).await?;
    let mut x = seed;
    for i in 0..transfers {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let from = (x >> 33) as i64 % ACCOUNTS;
        let to = (from + 1 + (x >> 40) as i64 % (ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + (x >> 50) as i64 % 50;
        let sql = if i % 4 == 3 {
            let order = (seed << 32) as i64 + i as i64;
            format!(
                "START TRANSACTION; INSERT INTO `{db}`.orders VALUES ({order}); \
                 INSERT INTO `{db}`.order_lines (order_id, item) VALUES ({order}, 1), ({order}, 2), ({order}, 3); COMMIT"
            )
        } else {
            format!(
                "START TRANSACTION; \
                 UPDATE `{db}`.accounts SET balance = balance - {amount} WHERE id = {from}; \
                 UPDATE `{db}`.accounts SET balance = balance + {amount} WHERE id = {to}; \
                 INSERT INTO `{db}`.ledger (from_id, to_id, amount) VALUES ({from}, {to}, {amount}); \
                 UPDATE `{db}`.counter SET n = n + 1 WHERE id = 1; COMMIT"
            )
        };
        // Two clients on the same rows deadlock now and then: tried again.
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
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_sees_part_of_a_transaction() -> Result<()> {
    bank("bank", 6101, "").await
}

/// The same with a budget of a few transactions: the sink stops fetching
/// partitions past the oldest transaction (hundreds of times in a run).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_sees_part_of_a_transaction_on_a_tight_budget() -> Result<()> {
    bank("bank-tight", 6104, "[apply]\nbatch_max_bytes = 4096").await
}

async fn bank(name: &str, server_id: u32, sink_extra: &str) -> Result<()> {
    let db = unique(&format!("e2e_{}", name.replace('-', "_")));
    let prefix = unique(name);
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, from_id INT, to_id INT, amount BIGINT)"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.counter (id INT PRIMARY KEY, n BIGINT NOT NULL)"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.orders (id BIGINT PRIMARY KEY)"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.order_lines (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT NOT NULL, item INT, \
         FOREIGN KEY (order_id) REFERENCES `{db}`.orders (id))"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.accounts SELECT seq, {BALANCE} FROM `{db}`.seq_0_to_{}",
        ACCOUNTS - 1
    ))
    .await?;
    src.exec(&format!("INSERT INTO `{db}`.counter VALUES (1, 0)"))
        .await?;

    // Three partitions per table: a transaction's records arrive on
    // several partitions of several topics, in any order.
    let source_conf = source_config(&prefix, &[&db], server_id, "").replace(
        "position_interval_ms = 200\n",
        "position_interval_ms = 200\npartitions = 3\n",
    );
    let sink_conf = sink_config(&prefix, &prefix, dest_port(), sink_extra);
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    let tables = [
        (format!("`{db}`.accounts"), "id"),
        (format!("`{db}`.ledger"), "id"),
        (format!("`{db}`.counter"), "id"),
        (format!("`{db}`.orders"), "id"),
        (format!("`{db}`.order_lines"), "id"),
    ];
    let tables: Vec<(&str, &str)> = tables.iter().map(|(t, o)| (t.as_str(), *o)).collect();
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;

    // The reader: consistent snapshots at the destination, as fast as it
    // can, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut conn =
                mysql_async::Conn::new(mysql_async::Opts::from_url(&mysql_url(dest_port()))?)
                    .await?;
            conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await?;
            let (mut snapshots, mut violations) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                if let Some(why) = check_snapshot(&mut conn, &db).await? {
                    violations.push(why);
                }
                snapshots += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok((snapshots, violations))
        })
    };

    let done = Arc::new(AtomicU64::new(0));
    let per_client = 2_000;
    let clients: Vec<_> = (1..=2)
        .map(|seed| tokio::spawn(client(db.clone(), seed, per_client, done.clone())))
        .collect();
    // The sink killed twice in the middle of the load, started again.
    for kill in 1..=2u64 {
        let at = kill * per_client * 2 / 3;
        wait_until("transfers made", Duration::from_secs(300), || {
            let n = done.load(Ordering::Relaxed);
            async move { Ok((n < at).then(|| format!("{n} made"))) }
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        sink.kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    }
    for c in clients {
        c.await??;
    }
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(300),
        &mut [&mut source, &mut sink],
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    let (snapshots, violations) = reader.await??;
    eprintln!(
        "{snapshots} consistent snapshots read at the destination, {} violations",
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{} of {snapshots} snapshots showed part of a transaction, e.g. {}",
        violations.len(),
        violations[0]
    );
    assert!(snapshots >= 100, "only {snapshots} snapshots taken");
    source.stop()?;
    sink.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_transaction_shows_all_at_once() -> Result<()> {
    const ROWS: i64 = 1_000_000;
    let db = unique("e2e_bigshow");
    let prefix = unique("bigshow");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT NOT NULL)"
    ))
    .await?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 6102, ""),
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(
            &prefix,
            &prefix,
            dest_port(),
            "[apply]\nbatch_max_bytes = 4194304",
        ),
    )?;
    let table = format!("`{db}`.t");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(&table, "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    src.exec(&format!(
        "INSERT INTO {table} SELECT seq, seq * 3 FROM `{db}`.seq_1_to_{ROWS}"
    ))
    .await?;
    // Counted at the destination until all are there: never a part.
    let mut dst = Db::connect(dest_port()).await?;
    let mut counts = Vec::new();
    let start = std::time::Instant::now();
    loop {
        let n = dst.count(&table).await? as i64;
        counts.push(n);
        if n == ROWS {
            break;
        }
        assert!(
            n == 0,
            "the destination showed {n} of the transaction's {ROWS} rows"
        );
        sink.assert_running()?;
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "the transaction did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{} counts at the destination, each 0 or {ROWS}",
        counts.len()
    );
    assert!(
        sink.log_text().contains("a transaction too large to hold"),
        "the transaction was held whole rather than streamed"
    );
    source.stop()?;
    sink.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_refuses_a_destination_synchronized_in_row_mode() -> Result<()> {
    let db = unique("e2e_switch");
    let prefix = unique("switch");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.a (id INT PRIMARY KEY, v INT); CREATE TABLE `{db}`.b (id INT PRIMARY KEY, v INT)"
    ))
    .await?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 6103, ""),
    )?;
    let row = sink_config(
        &prefix,
        &prefix,
        dest_port(),
        "[apply]\nconsistency = \"row\"",
    );
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &row)?;
    source
        .wait_log("snapshot finished", Duration::from_secs(60))
        .await?;
    // From the binlog: a transaction on the transaction topic.
    src.exec(&format!(
        "START TRANSACTION; INSERT INTO `{db}`.a VALUES (1, 1); INSERT INTO `{db}`.b VALUES (1, 1); COMMIT"
    ))
    .await?;
    let (a, b) = (format!("`{db}`.a"), format!("`{db}`.b"));
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(&a, "id"), (&b, "id")],
        Duration::from_secs(60),
        &mut [&mut source, &mut sink],
    )
    .await?;
    sink.stop()?;
    // The same destination in transaction mode: refused, with the way out.
    let (code, err) = run_to_exit(
        "sink-connector",
        &format!("{prefix}-sink-whole"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
        Duration::from_secs(60),
    )?;
    assert_ne!(code, 0);
    assert!(
        err.contains("apply.consistency = \"row\"") && err.contains("synchronize it again"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Row mode goes on.
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &row)?;
    src.exec(&format!("INSERT INTO `{db}`.a VALUES (2, 2)"))
        .await?;
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(&a, "id"), (&b, "id")],
        Duration::from_secs(60),
        &mut [&mut source, &mut sink],
    )
    .await?;
    source.stop()?;
    sink.stop()?;
    Ok(())
}

/// A destination rebuilt from compacted table topics: Kafka has dropped
/// the earlier records of keys that a transaction changed twice, so the
/// topics hold fewer records of it than its END counts. Each such
/// transaction is applied with what is left once its partitions show
/// later ones, and the destination ends equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_is_rebuilt_in_transaction_mode_from_compacted_topics() -> Result<()> {
    let db = unique("e2e_compacted");
    let prefix = unique("compacted");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT); \
         INSERT INTO `{db}`.t VALUES (1, 0), (2, 0), (3, 0)"
    ))
    .await?;
    // Segments closed at once and cleaned as soon as the cleaner looks.
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &(source_config(&prefix, &[&db], 8014, "")
            + "table_topic_config = { \"cleanup.policy\" = \"compact\", \"segment.ms\" = \"100\", \
               \"min.cleanable.dirty.ratio\" = \"0.001\", \"min.compaction.lag.ms\" = \"0\" }\n"),
    )?;
    source
        .wait_log("snapshot finished", Duration::from_secs(60))
        .await?;
    // Each transaction changes row 1 twice: the first record of the two
    // is compacted away once a later segment holds the second.
    for _ in 0..20 {
        src.exec(&format!(
            "START TRANSACTION; UPDATE `{db}`.t SET v = v + 1 WHERE id = 1; \
             UPDATE `{db}`.t SET v = v + 10 WHERE id = 1; \
             UPDATE `{db}`.t SET v = v + 1 WHERE id = 2; COMMIT"
        ))
        .await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let topic = format!("{prefix}.{db}.t");
    // 3 snapshot records and 60 changes were written.
    wait_until(
        "the table topic compacted",
        Duration::from_secs(120),
        || {
            let topic = topic.clone();
            let db = db.clone();
            async move {
                // A record more now and then closes the segment before it.
                let mut src = Db::connect(source_port()).await?;
                src.exec(&format!("UPDATE `{db}`.t SET v = v + 1 WHERE id = 3"))
                    .await?;
                let n = read_topic(&topic)?.len();
                Ok((n > 40).then(|| format!("{n} records still")))
            }
        },
    )
    .await?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let table = format!("`{db}`.t");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(table.as_str(), "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    assert!(
        sink.log_text()
            .contains("fewer records on the topics than its END counts"),
        "no transaction was short of records: the test did not test"
    );
    source.stop()?;
    sink.stop()?;
    Ok(())
}

/// A transaction topic whose head was removed (records deleted by hand):
/// a sink replaying in transaction mode applies the records of the
/// transactions whose BEGIN and END are gone in their place, before the
/// first transaction it has an END of, and the destination ends equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_transactions_whose_end_is_gone_are_applied() -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;

    let db = unique("e2e_headless");
    let prefix = unique("headless");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)"
    ))
    .await?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 8015, ""),
    )?;
    source
        .wait_log("snapshot finished", Duration::from_secs(60))
        .await?;
    // A row of its own in each transaction.
    for i in 1..=40 {
        src.exec(&format!("INSERT INTO `{db}`.t VALUES ({i}, {i})"))
            .await?;
    }
    let topic = format!("{prefix}.transaction");
    wait_until(
        "the transactions on the topic",
        Duration::from_secs(60),
        || {
            let topic = topic.clone();
            async move {
                let n = read_topic(&topic)?.len();
                Ok((n < 80).then(|| format!("{n} records")))
            }
        },
    )
    .await?;
    // The BEGIN and END of about the first half are removed.
    let admin: AdminClient<DefaultClientContext> =
        change_stream::kafka::client_config(&kafka_servers(), &Default::default()).create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(40))?;
    admin.delete_records(&tpl, &AdminOptions::new()).await?;
    anyhow::ensure!(read_topic(&topic)?.len() < 80, "records were not removed");
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    let table = format!("`{db}`.t");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(table.as_str(), "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    source.stop()?;
    sink.stop()?;
    Ok(())
}
