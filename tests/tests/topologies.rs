//! Topologies beyond one-to-one, built on each change's origin server id:
//! a cascade A → B → C, and a two-way pair A ↔ B whose sources ignore the
//! other side's server id. The stack's servers: A = source (server_id 1),
//! B = dest (2, binlog on), C = dest2 (3).

use std::time::Duration;

use e2e_tests::*;
use mysql_async::prelude::*;

/// The two tests read whole binlogs: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `SHOW MASTER STATUS`: the binlog's current file and position.
async fn binlog_end(db: &mut Db) -> Result<(String, u64)> {
    let row: Option<mysql_async::Row> = db.conn.query_first("SHOW MASTER STATUS").await?;
    let row = row.ok_or_else(|| anyhow::anyhow!("port {}: binlog off", db.port))?;
    Ok((
        row.get(0).unwrap_or_default(),
        row.get(1).unwrap_or_default(),
    ))
}

/// The server ids of the binlog's table maps of `database` since `from`
/// (one per rows event: the server where its change was made).
async fn table_map_origins(db: &mut Db, from: &(String, u64), database: &str) -> Result<Vec<u32>> {
    let files: Vec<String> = db
        .conn
        .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
            row.get::<String, _>(0).unwrap_or_default()
        })
        .await?;
    let needle = format!("({database}.");
    let mut origins = Vec::new();
    for file in files.iter().filter(|f| **f >= from.0) {
        let pos = if *file == from.0 { from.1 } else { 4 };
        let events: Vec<mysql_async::Row> = db
            .conn
            .query(format!("SHOW BINLOG EVENTS IN '{file}' FROM {pos}"))
            .await?;
        for e in events {
            let kind: String = e.get(2).unwrap_or_default();
            let server_id: u32 = e.get(3).unwrap_or_default();
            let info: String = e.get(5).unwrap_or_default();
            if kind == "Table_map" && info.contains(&needle) {
                origins.push(server_id);
            }
        }
    }
    Ok(origins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_carries_rows_and_schema_changes_two_hops() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let db = unique("e2e_cascade");
    let (p1, p2) = (unique("cascade1"), unique("cascade2"));
    drop_database(&[source_port(), dest_port(), dest2_port()], &db).await?;
    let mut a = Db::connect(source_port()).await?;
    let mut b = Db::connect(dest_port()).await?;
    a.exec(&format!("CREATE DATABASE `{db}`")).await?;
    a.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL, n INT NOT NULL)"
    ))
    .await?;
    a.exec(&format!(
        "INSERT INTO `{db}`.t SELECT seq, CONCAT('row ', seq), seq FROM `{db}`.seq_1_to_300"
    ))
    .await?;
    let b_from = binlog_end(&mut b).await?;

    // A → B.
    let mut source1 = Connector::start(
        "source-connector",
        &format!("{p1}-source"),
        &source_config(&p1, &[&db], 9911, ""),
    )?;
    let sink1_conf = sink_config(&p1, &p1, dest_port(), "");
    let mut sink1 = Connector::start("sink-connector", &format!("{p1}-sink"), &sink1_conf)?;
    let t = format!("`{db}`.t");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(t.as_str(), "id")],
        Duration::from_secs(120),
        &mut [&mut source1, &mut sink1],
    )
    .await?;

    // B → C, B's source reading what the sink wrote at B.
    let mut source2 = Connector::start(
        "source-connector",
        &format!("{p2}-source"),
        &source_config_at(&mysql_url(dest_port()), &p2, &[&db], 9912, ""),
    )?;
    let mut sink2 = Connector::start(
        "sink-connector",
        &format!("{p2}-sink"),
        &sink_config(&p2, &p2, dest2_port(), ""),
    )?;
    wait_equal_watching(
        source_port(),
        dest2_port(),
        &[(t.as_str(), "id")],
        Duration::from_secs(120),
        &mut [&mut source1, &mut sink1, &mut source2, &mut sink2],
    )
    .await?;

    // Rows and schema changes at A, the first sink killed on the way.
    for round in 0..6 {
        a.exec(&format!(
            "UPDATE `{db}`.t SET n = n + 1, v = CONCAT('round {round} ', id) WHERE id % 7 = {round}"
        ))
        .await?;
        a.exec(&format!(
            "INSERT INTO `{db}`.t (id, v, n) SELECT 1000 * {} + seq, 'new', seq FROM `{db}`.seq_1_to_50",
            round + 1
        ))
        .await?;
        a.exec(&format!("DELETE FROM `{db}`.t WHERE id % 50 = {round}"))
            .await?;
        if round == 2 {
            a.exec(&format!(
                "ALTER TABLE `{db}`.t ADD COLUMN w INT NOT NULL DEFAULT 7"
            ))
            .await?;
            a.exec(&format!(
                "CREATE TABLE `{db}`.t2 (k INT PRIMARY KEY, s VARCHAR(20))"
            ))
            .await?;
            sink1.kill9();
        }
        if round == 3 {
            sink1 = Connector::start("sink-connector", &format!("{p1}-sink"), &sink1_conf)?;
            a.exec(&format!(
                "INSERT INTO `{db}`.t2 SELECT seq, CONCAT('k', seq) FROM `{db}`.seq_1_to_100"
            ))
            .await?;
        }
        a.exec(&format!(
            "UPDATE `{db}`.t SET n = n * 2 WHERE id % 11 = {round}"
        ))
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let t2 = format!("`{db}`.t2");
    let tables = [(t.as_str(), "id"), (t2.as_str(), "k")];
    wait_equal_watching(
        source_port(),
        dest2_port(),
        &tables,
        Duration::from_secs(180),
        &mut [&mut source1, &mut sink1, &mut source2, &mut sink2],
    )
    .await?;
    wait_equal(source_port(), dest_port(), &tables, Duration::from_secs(30)).await?;

    // B's binlog names A (server_id 1) as the origin of every change the
    // sink applied there.
    let origins = table_map_origins(&mut b, &b_from, &db).await?;
    anyhow::ensure!(!origins.is_empty(), "no rows of {db} in B's binlog");
    anyhow::ensure!(
        origins.iter().all(|o| *o == 1),
        "B's binlog has rows of {db} from servers {:?}, not only from A (1)",
        origins.iter().collect::<std::collections::BTreeSet<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_way_pair_converges_and_does_not_loop() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let db = unique("e2e_twoway");
    let (pa, pb) = (unique("twowayA"), unique("twowayB"));
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut a = Db::connect(source_port()).await?;
    let mut b = Db::connect(dest_port()).await?;
    // The same empty table on both sides; each side writes its own rows.
    for side in [&mut a, &mut b] {
        side.exec(&format!("CREATE DATABASE `{db}`")).await?;
        side.exec(&format!(
            "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, side CHAR(1) NOT NULL, n INT NOT NULL)"
        ))
        .await?;
    }
    // A → B, ignoring what B's sink wrote at A (server_id 2); B → A, the
    // other way round.
    let source_a = source_config(&pa, &[&db], 9913, "ignore_server_ids = [2]");
    let source_b = source_config_at(
        &mysql_url(dest_port()),
        &pb,
        &[&db],
        9914,
        "ignore_server_ids = [1]",
    );
    // The tables are there on both sides already.
    let existing = "[schema]\non_conflict = \"ignore\"\n\n[apply]\non_row_conflict = \"overwrite\"";
    let sink_a_conf = sink_config(&pa, &pa, dest_port(), existing);
    let sink_b_conf = sink_config(&pb, &pb, source_port(), existing);
    let mut source_a = Connector::start("source-connector", &format!("{pa}-source"), &source_a)?;
    let mut sink_a = Connector::start("sink-connector", &format!("{pa}-sink"), &sink_a_conf)?;
    let mut source_b = Connector::start("source-connector", &format!("{pb}-source"), &source_b)?;
    let mut sink_b = Connector::start("sink-connector", &format!("{pb}-sink"), &sink_b_conf)?;
    sink_a
        .wait_log("sink connector started", Duration::from_secs(60))
        .await?;
    sink_b
        .wait_log("sink connector started", Duration::from_secs(60))
        .await?;
    // A full synchronization copies every row there, whatever its origin:
    // writes start once both have read their (empty) side, as the README
    // tells a user to set a pair up.
    for source in [&source_a, &source_b] {
        source
            .wait_log("snapshot finished", Duration::from_secs(60))
            .await?;
    }

    // Both sides write at once: A the odd keys, B the even ones; A also
    // changes the table's shape half way, and A's sink is killed.
    let writer = |port: u16, side: &'static str, first: i64| {
        let db = db.clone();
        async move {
            let mut c = Db::connect(port).await?;
            for round in 0..40i64 {
                let id = first + 2 * round;
                c.exec_retrying(&format!(
                    "INSERT INTO `{db}`.t (id, side, n) VALUES ({id}, '{side}', {round})"
                ))
                .await?;
                c.exec_retrying(&format!(
                    "UPDATE `{db}`.t SET n = n + 100 WHERE side = '{side}' AND id % 3 = {}",
                    round % 3
                ))
                .await?;
                if round % 10 == 9 {
                    c.exec_retrying(&format!(
                        "DELETE FROM `{db}`.t WHERE side = '{side}' AND id = {}",
                        id - 4
                    ))
                    .await?;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<(), anyhow::Error>(())
        }
    };
    let wa = tokio::spawn(writer(source_port(), "a", 1));
    let wb = tokio::spawn(writer(dest_port(), "b", 2));
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.exec(&format!(
        "ALTER TABLE `{db}`.t ADD COLUMN w INT NOT NULL DEFAULT 5"
    ))
    .await?;
    sink_a.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sink_a = Connector::start("sink-connector", &format!("{pa}-sink"), &sink_a_conf)?;
    wa.await??;
    wb.await??;
    let t = format!("`{db}`.t");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(t.as_str(), "id")],
        Duration::from_secs(180),
        &mut [&mut source_a, &mut sink_a, &mut source_b, &mut sink_b],
    )
    .await?;
    anyhow::ensure!(a.count(&t).await? > 60, "too few rows at A");

    // No loop: once the writes stop, neither binlog grows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (a_then, b_then) = (binlog_end(&mut a).await?, binlog_end(&mut b).await?);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (a_now, b_now) = (binlog_end(&mut a).await?, binlog_end(&mut b).await?);
    anyhow::ensure!(
        a_then == a_now && b_then == b_now,
        "the binlogs still grow with nothing written: A {a_then:?} -> {a_now:?}, B {b_then:?} -> {b_now:?}"
    );
    // B's source captured only B's own rows (even keys): what A's sink
    // wrote at B is ignored by its server id. Keys are Avro single
    // objects: a 10-byte header, then the id as a zigzag varint.
    let keys: Vec<i64> = read_topic(&format!("{pb}.{db}.t"))?
        .into_iter()
        .filter_map(|(k, _)| k)
        .map(|k| {
            let (mut n, mut shift) = (0u64, 0);
            for b in &k[10..] {
                n |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            (n >> 1) as i64 ^ -((n & 1) as i64)
        })
        .collect();
    anyhow::ensure!(!keys.is_empty(), "B's source captured nothing");
    let odd: Vec<&i64> = keys.iter().filter(|k| *k % 2 != 0).collect();
    anyhow::ensure!(
        odd.is_empty(),
        "B's source captured {} records of A's rows (ids {:?}...)",
        odd.len(),
        &odd[..odd.len().min(5)]
    );
    // The schema change went from A to B, and not back: had B's source
    // captured it, B's sink would have run it at A again and failed.
    let failures: Option<u64> = a
        .conn
        .query_first(format!(
            "SELECT COUNT(*) FROM tributary.ddl_failures WHERE topic_prefix = '{pb}'"
        ))
        .await?;
    anyhow::ensure!(
        failures == Some(0),
        "schema changes failed at A: {failures:?}"
    );
    anyhow::ensure!(
        !sink_b.log_text().contains("schema change applied"),
        "B's sink applied a schema change at A"
    );

    // The same row updated on both sides at nearly the same time (the
    // sinks stopped, so that neither side sees the other's first): each
    // side's change wins on the other (`overwrite`), and
    // both sinks record the conflict.
    sink_a.stop()?;
    sink_b.stop()?;
    a.exec(&format!("UPDATE `{db}`.t SET n = 1000 WHERE id = 1"))
        .await?;
    b.exec(&format!("UPDATE `{db}`.t SET n = 2000 WHERE id = 1"))
        .await?;
    let mut sink_a = Connector::start("sink-connector", &format!("{pa}-sink"), &sink_a_conf)?;
    let mut sink_b = Connector::start("sink-connector", &format!("{pb}-sink"), &sink_b_conf)?;
    let q = format!("SELECT n FROM {t} WHERE id = 1");
    let since = std::time::Instant::now();
    loop {
        let at_a: Option<i64> = a.conn.query_first(&q).await?;
        let at_b: Option<i64> = b.conn.query_first(&q).await?;
        if at_a == Some(2000) && at_b == Some(1000) {
            break;
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(60),
            "after the same-row updates A has {at_a:?} (2000 wanted), B {at_b:?} (1000 wanted)"
        );
        sink_a.assert_running()?;
        sink_b.assert_running()?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (side, prefix) in [(&mut a, &pb), (&mut b, &pa)] {
        let rows: Vec<(String, String, String)> = side
            .conn
            .query(format!(
                "SELECT `operation`, `resolution`, `destination_row` FROM tributary.conflicts WHERE topic_prefix = '{prefix}'"
            ))
            .await?;
        anyhow::ensure!(
            rows.len() == 1 && rows[0].0 == "u" && rows[0].1 == "overwrite",
            "conflicts recorded at port {} for {prefix}: {rows:?}",
            side.port
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_recorded_and_resolved_by_the_policy() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let db = unique("e2e_conflicts");
    let prefix = unique("conflicts");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut a = Db::connect(source_port()).await?;
    let mut b = Db::connect(dest_port()).await?;
    a.exec(&format!("CREATE DATABASE `{db}`")).await?;
    a.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, f FLOAT NOT NULL)"
    ))
    .await?;
    a.exec(&format!(
        "INSERT INTO `{db}`.t VALUES (1, 'one', 0.1), (2, 'two', 0.2), (3, 'three', 0.3)"
    ))
    .await?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 9917, ""),
    )?;
    let conf = |policy: &str| {
        sink_config(
            &prefix,
            &prefix,
            dest_port(),
            &format!(
                "[apply]
on_row_conflict = \"{policy}\""
            ),
        )
    };
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &conf("ignore"))?;
    let t = format!("`{db}`.t");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(t.as_str(), "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;

    // Written at the destination behind the sink's back, then at the
    // source: an update whose row differs, an insert whose key is taken;
    // the update of row 3 (a float, compared as the destination stores
    // it) and the delete of row 2 meet what they expect.
    b.exec(&format!("UPDATE {t} SET v = 'dest' WHERE id = 1"))
        .await?;
    b.exec(&format!("INSERT INTO {t} VALUES (10, 'dest ten', 1)"))
        .await?;
    a.exec(&format!("UPDATE {t} SET v = 'source' WHERE id = 1"))
        .await?;
    a.exec(&format!("INSERT INTO {t} VALUES (10, 'source ten', 1)"))
        .await?;
    a.exec(&format!("UPDATE {t} SET v = 'three!' WHERE id = 3"))
        .await?;
    a.exec(&format!("DELETE FROM {t} WHERE id = 2")).await?;
    let want = vec![
        (1, "dest".to_string()),
        (3, "three!".to_string()),
        (10, "dest ten".to_string()),
    ];
    let since = std::time::Instant::now();
    loop {
        let got: Vec<(i32, String)> = b
            .conn
            .query(format!("SELECT id, v FROM {t} ORDER BY id"))
            .await?;
        if got == want {
            break;
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(60),
            "with ignore, the destination has {got:?}, not {want:?}"
        );
        sink.assert_running()?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let recorded: Vec<(String, String, String, String)> = b
        .conn
        .query(format!(
            "SELECT `operation`, `row_key`, `resolution`, `destination_row` FROM tributary.conflicts WHERE topic_prefix = '{prefix}' ORDER BY `operation`"
        ))
        .await?;
    anyhow::ensure!(
        recorded.len() == 2
            && recorded[0].0 == "c"
            && recorded[0].3.contains("dest ten")
            && recorded[1].0 == "u"
            && recorded[1].3.contains("dest")
            && recorded.iter().all(|r| r.2 == "ignore"),
        "recorded: {recorded:?}"
    );
    let listed = std::process::Command::new(binary("sink-connector"))
        .args(["conflicts", "--config"])
        .arg(sink.log.with_extension("toml"))
        .output()?;
    let text = String::from_utf8_lossy(&listed.stdout);
    anyhow::ensure!(
        listed.status.success() && text.contains("2 conflict(s)") && text.contains("dest ten"),
        "sink-connector conflicts printed: {text}"
    );

    // With fail, the next conflict stops the sink, naming it.
    sink.stop()?;
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &conf("fail"))?;
    a.exec(&format!("UPDATE {t} SET v = 'again' WHERE id = 1"))
        .await?;
    let status = sink.wait_exit(Duration::from_secs(60)).await?;
    anyhow::ensure!(!status.success(), "the sink went on past a conflict");
    let log = sink.log_tail();
    anyhow::ensure!(
        log.contains(&format!("a conflict at {db}.t key"))
            && log.contains("on_row_conflict = fail"),
        "the sink's last words: {log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_into_one_destination_side_by_side_and_merged() -> Result<()> {
    let _serial = SERIAL.lock().await;
    // A's database s1 and B's s2 land side by side; A's m_a.orders and
    // B's m_b.orders, keys apart, merge into one table of `merged`.
    let (s1, s2) = (unique("e2e_m2o_s1"), unique("e2e_m2o_s2"));
    let (m_a, m_b, merged) = (
        unique("e2e_m2o_ma"),
        unique("e2e_m2o_mb"),
        unique("e2e_m2o_merged"),
    );
    let (pa, pb) = (unique("m2oA"), unique("m2oB"));
    for d in [&s1, &s2, &m_a, &m_b, &merged] {
        drop_database(&[source_port(), dest_port(), dest2_port()], d).await?;
    }
    let mut a = Db::connect(source_port()).await?;
    let mut b = Db::connect(dest_port()).await?;
    let orders = "(id INT PRIMARY KEY, amount INT NOT NULL, who VARCHAR(40) NOT NULL)";
    for (side, own, m, first) in [(&mut a, &s1, &m_a, 1), (&mut b, &s2, &m_b, 100_001)] {
        side.exec(&format!("CREATE DATABASE `{own}`")).await?;
        side.exec(&format!(
            "CREATE TABLE `{own}`.items (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL)"
        ))
        .await?;
        side.exec(&format!(
            "INSERT INTO `{own}`.items SELECT seq, CONCAT('item ', seq) FROM `{own}`.seq_1_to_100"
        ))
        .await?;
        side.exec(&format!("CREATE DATABASE `{m}`")).await?;
        side.exec(&format!("CREATE TABLE `{m}`.orders {orders}"))
            .await?;
        side.exec(&format!(
            "INSERT INTO `{m}`.orders SELECT {first} + seq, seq, '{own}' FROM `{m}`.seq_0_to_199"
        ))
        .await?;
    }
    let source_a = source_config(&pa, &[&s1, &m_a], 9915, "");
    let source_b = source_config_at(&mysql_url(dest_port()), &pb, &[&s2, &m_b], 9916, "");
    // Both sinks write into `merged`; only A's applies schema changes to
    // it (B's filter lets rows through, no DDL).
    let sink_a_conf = sink_config(
        &pa,
        &pa,
        dest2_port(),
        &format!("[schema]\non_conflict = \"ignore\"\n\n[mapping]\ndatabases = {{ {m_a} = \"{merged}\" }}"),
    );
    let sink_b_conf = sink_config(
        &pb,
        &pb,
        dest2_port(),
        &format!(
            "[schema]\non_conflict = \"ignore\"\n\n[mapping]\ndatabases = {{ {m_b} = \"{merged}\" }}\n\n[[filter]]\ntables = [\"{m_b}.*\"]\noperations = [\"INSERT\", \"UPDATE\", \"DELETE\"]"
        ),
    );
    let mut source_a = Connector::start("source-connector", &format!("{pa}-source"), &source_a)?;
    let mut source_b = Connector::start("source-connector", &format!("{pb}-source"), &source_b)?;
    let mut sink_a = Connector::start("sink-connector", &format!("{pa}-sink"), &sink_a_conf)?;
    let mut sink_b = Connector::start("sink-connector", &format!("{pb}-sink"), &sink_b_conf)?;

    // Both change their own rows at once; A changes the merged table's
    // shape, B its own database's; B's sink is killed on the way.
    let writer = |port: u16, own: String, m: String, first: i64| async move {
        let mut c = Db::connect(port).await?;
        for round in 0..30i64 {
            c.exec(&format!(
                "UPDATE `{m}`.orders SET amount = amount + 1 WHERE id % 5 = {}",
                round % 5
            ))
            .await?;
            c.exec(&format!(
                "INSERT INTO `{m}`.orders (id, amount, who) VALUES ({}, {round}, '{own}')",
                first + 1000 + round
            ))
            .await?;
            c.exec(&format!(
                "UPDATE `{own}`.items SET name = CONCAT('r{round} ', id) WHERE id % 7 = {}",
                round % 7
            ))
            .await?;
            if round % 10 == 9 {
                c.exec(&format!(
                    "DELETE FROM `{m}`.orders WHERE id = {}",
                    first + round
                ))
                .await?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<(), anyhow::Error>(())
    };
    let wa = tokio::spawn(writer(source_port(), s1.clone(), m_a.clone(), 1));
    let wb = tokio::spawn(writer(dest_port(), s2.clone(), m_b.clone(), 100_001));
    // A's change of shape comes after its snapshot, as a schema change
    // its sink applies; before it, it would be the table's first shape,
    // and which sink creates the merged table first would decide it.
    source_a
        .wait_log("snapshot finished", Duration::from_secs(60))
        .await?;
    a.exec(&format!(
        "ALTER TABLE `{m_a}`.orders ADD COLUMN note VARCHAR(10) NOT NULL DEFAULT 'n'"
    ))
    .await?;
    // B changes the shape of its own database, which lands side by side.
    b.exec(&format!(
        "ALTER TABLE `{s2}`.items ADD COLUMN colour VARCHAR(10) NOT NULL DEFAULT 'blue'"
    ))
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    sink_b.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sink_b = Connector::start("sink-connector", &format!("{pb}-sink"), &sink_b_conf)?;
    wa.await??;
    wb.await??;

    // Side by side: each source's own database equals its copy.
    let items = |d: &str| format!("`{d}`.items");
    let (i1, i2) = (items(&s1), items(&s2));
    wait_equal_watching(
        source_port(),
        dest2_port(),
        &[(i1.as_str(), "id")],
        Duration::from_secs(180),
        &mut [&mut source_a, &mut sink_a, &mut source_b, &mut sink_b],
    )
    .await?;
    wait_equal_watching(
        dest_port(),
        dest2_port(),
        &[(i2.as_str(), "id")],
        Duration::from_secs(180),
        &mut [&mut source_a, &mut sink_a, &mut source_b, &mut sink_b],
    )
    .await?;
    // Merged: each source's rows, by their keys, are in the one table.
    let mut c = Db::connect(dest2_port()).await?;
    let fold = "SELECT COUNT(*), CAST(SUM(id) AS SIGNED), CAST(SUM(amount) AS SIGNED)";
    let want_a = a.rows(&format!("{fold} FROM `{m_a}`.orders")).await?;
    let want_b = b.rows(&format!("{fold} FROM `{m_b}`.orders")).await?;
    let merged_t = format!("`{merged}`.orders");
    let (q_a, q_b) = (
        format!("{fold} FROM {merged_t} WHERE id < 100000"),
        format!("{fold} FROM {merged_t} WHERE id > 100000"),
    );
    let since = std::time::Instant::now();
    loop {
        let (got_a, got_b) = (c.rows(&q_a).await?, c.rows(&q_b).await?);
        if got_a == want_a && got_b == want_b {
            break;
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(120),
            "the merged table: A's rows {got_a:?} of {want_a:?}, B's {got_b:?} of {want_b:?}"
        );
        sink_a.assert_running()?;
        sink_b.assert_running()?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A's schema change reached the merged table; each sink keeps its own
    // positions in the shared state database.
    let columns: Vec<Vec<mysql_async::Value>> = c
        .rows(&format!(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{merged}' AND TABLE_NAME = 'orders' AND COLUMN_NAME = 'note'"
        ))
        .await?;
    anyhow::ensure!(columns.len() == 1, "the merged table lacks A's new column");
    for p in [&pa, &pb] {
        let n: Option<u64> = c
            .conn
            .query_first(format!(
                "SELECT COUNT(*) FROM tributary.applied WHERE topic LIKE '{p}.%'"
            ))
            .await?;
        anyhow::ensure!(
            n.unwrap_or(0) > 0,
            "no positions of {p} in the shared state database"
        );
    }
    Ok(())
}
