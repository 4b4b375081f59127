//! Positions that go back: the source's binlog files starting over. The
//! sink recognises records sent twice by their GTID, not by binlog file
//! coordinates, so binlog files that start over with the GTID state kept
//! (`RESET MASTER` then `SET GLOBAL gtid_binlog_state`) lose nothing; a
//! binlog reset whose GTIDs start over too stops the source connector with
//! an error saying so, whether it was running or not, instead of reading on
//! from a transaction that only shares its GTID with the stored position.
//! Each test runs its own source server, since it resets its binlog.

use std::time::Duration;

use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(120);

struct Pipeline {
    server: PrivateServer,
    db: String,
    prefix: String,
    source_id: u32,
    source: Connector,
    sink: Connector,
}

impl Pipeline {
    async fn start(name: &str, base_port: u16, source_id: u32) -> Result<Self> {
        let server = PrivateServer::start(name, base_port, source_id / 100)?;
        let db = unique(&name.replace('-', "_"));
        drop_database(&[server.port, dest_port()], &db).await?;
        Db::connect(server.port)
            .await?
            .exec(&format!(
                "CREATE DATABASE `{db}`; USE `{db}`; CREATE TABLE t (id INT PRIMARY KEY, v INT); \
                 INSERT INTO t SELECT seq, seq FROM seq_1_to_20"
            ))
            .await?;
        let prefix = unique(name).replace('_', "-");
        let source = Connector::start(
            "source-connector",
            &format!("{prefix}-source"),
            &source_config_at(&server.url(), &prefix, &[&db], source_id, ""),
        )?;
        let sink = Connector::start(
            "sink-connector",
            &format!("{prefix}-sink"),
            &sink_config(&prefix, &prefix, dest_port(), ""),
        )?;
        let mut p = Self {
            server,
            db,
            prefix,
            source_id,
            source,
            sink,
        };
        p.wait_equal().await?;
        Ok(p)
    }

    fn table(&self) -> String {
        format!("`{}`.t", self.db)
    }

    async fn wait_equal(&mut self) -> Result<()> {
        let table = self.table();
        wait_equal_watching(
            self.server.port,
            dest_port(),
            &[(table.as_str(), "id")],
            WAIT,
            &mut [&mut self.source, &mut self.sink],
        )
        .await
    }

    async fn exec(&self, sql: &str) -> Result<()> {
        Db::connect(self.server.port).await?.exec(sql).await
    }

    fn source_config(&self) -> String {
        source_config_at(
            &self.server.url(),
            &self.prefix,
            &[&self.db],
            self.source_id,
            "",
        )
    }

    /// Single-row transactions, enough to carry the GTID sequence past
    /// where it was before a reset.
    async fn many_transactions(&self, from: i64, n: i64) -> Result<()> {
        let mut db = Db::connect(self.server.port).await?;
        for i in from..from + n {
            db.exec(&format!("INSERT INTO {} VALUES ({i}, {i})", self.table()))
                .await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_files_that_start_over_with_the_gtid_state_kept_lose_nothing() -> Result<()> {
    let mut p = Pipeline::start("positions-kept", 26000, 8011).await?;
    let t = p.table();
    p.many_transactions(100, 30).await?;
    p.exec(&format!("UPDATE {t} SET v = v + 1000 WHERE id <= 10"))
        .await?;
    p.wait_equal().await?;

    // The binlog files start over from mariadb-bin.000001; the GTIDs go on.
    p.source.stop()?;
    let mut db = Db::connect(p.server.port).await?;
    let state: Vec<(String,)> =
        mysql_async::prelude::Queryable::query(&mut db.conn, "SELECT @@gtid_binlog_state").await?;
    db.exec(&format!(
        "RESET MASTER; SET GLOBAL gtid_binlog_state = '{}'",
        state[0].0
    ))
    .await?;
    p.exec(&format!(
        "INSERT INTO {t} VALUES (500, 500); UPDATE {t} SET v = -1 WHERE id = 1; DELETE FROM {t} WHERE id = 2"
    ))
    .await?;
    p.many_transactions(600, 5).await?;
    p.source = Connector::start(
        "source-connector",
        &format!("{}-source-2", p.prefix),
        &p.source_config(),
    )?;
    p.wait_equal().await?;
    // And on, while running.
    p.exec(&format!("UPDATE {t} SET v = -2 WHERE id = 3"))
        .await?;
    p.wait_equal().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binlog_reset_with_gtids_starting_over_stops_the_source() -> Result<()> {
    let mut p = Pipeline::start("positions-reset", 27000, 8012).await?;
    p.many_transactions(100, 5).await?;
    p.wait_equal().await?;

    // Stopped, then RESET MASTER and enough writes that the stored GTID
    // exists again, as another transaction.
    p.source.stop()?;
    p.exec("RESET MASTER").await?;
    p.many_transactions(1000, 40).await?;
    let (code, stderr) = run_to_exit(
        "source-connector",
        &format!("{}-source-2", p.prefix),
        &p.source_config(),
        Duration::from_secs(60),
    )?;
    let line = stderr.trim();
    assert_ne!(code, 0, "exit code 0: {stderr}");
    assert_eq!(line.lines().count(), 1, "not one line: {stderr}");
    for expected in [
        "RESET MASTER",
        "kafka.topic_prefix",
        "is not the one the stored position",
    ] {
        assert!(line.contains(expected), "`{expected}` not in: {line}");
    }

    // Running: a reset under it ends it with the same kind of error.
    let mut p2 = Pipeline::start("positions-reset-live", 28000, 8013).await?;
    p2.exec("RESET MASTER").await?;
    p2.many_transactions(1000, 40).await?;
    let start = std::time::Instant::now();
    while p2.source.assert_running().is_ok() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "the source connector still runs after RESET MASTER: {}",
            p2.source.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = p2.source.log_text();
    assert!(
        log.contains("RESET MASTER") && log.contains("kafka.topic_prefix"),
        "{}",
        p2.source.log_tail()
    );
    Ok(())
}
