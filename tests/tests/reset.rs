//! `sink-connector reset`: a destination rebuilt from the topics alone
//! (`--to-beginning --drop-databases --yes`), and changes since a time
//! applied again onto a destination put back to that time
//! (`--to-timestamp`).

use std::time::Duration;

use anyhow::Result;
use e2e_tests::*;
use mysql_async::prelude::*;

fn reset(config: &std::path::Path, args: &[&str]) -> Result<(bool, String)> {
    let out = std::process::Command::new(binary("sink-connector"))
        .args(["reset", "--config"])
        .arg(config)
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_rebuilt_from_the_topics_and_replayed_from_a_time() -> Result<()> {
    let db = unique("e2e_reset");
    let prefix = unique("reset");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.a (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, KEY (v))"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.a SELECT seq, CONCAT('a', seq) FROM `{db}`.seq_1_to_100"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.b (id INT PRIMARY KEY, n INT NOT NULL)"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.b SELECT seq, seq FROM `{db}`.seq_1_to_50"
    ))
    .await?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 9951, ""),
    )?;
    let sink_conf = sink_config(&prefix, &prefix, dest_port(), "");
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    src.exec(&format!(
        "UPDATE `{db}`.a SET v = 'changed' WHERE id % 3 = 0"
    ))
    .await?;
    src.exec(&format!("DELETE FROM `{db}`.b WHERE id > 40"))
        .await?;
    src.exec(&format!(
        "ALTER TABLE `{db}`.b ADD COLUMN m INT NOT NULL DEFAULT 7"
    ))
    .await?;
    let (a, b) = (format!("`{db}`.a"), format!("`{db}`.b"));
    let tables = [(a.as_str(), "id"), (b.as_str(), "id")];
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());
    let config = workspace().join(format!("target/e2e/{prefix}-sink.toml"));

    // Rebuild: refused without --yes, naming what it would drop.
    let (ok, out) = reset(&config, &["--to-beginning", "--drop-databases"])?;
    anyhow::ensure!(
        !ok && out.contains(&db) && out.contains("--yes"),
        "reset --drop-databases without --yes: {out}"
    );
    let mut dest = Db::connect(dest_port()).await?;
    let exists = |d: &str| {
        format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{d}'")
    };
    let n: Option<i64> = dest.conn.query_first(exists(&db)).await?;
    anyhow::ensure!(n == Some(1), "the database went without --yes");
    let (ok, out) = reset(&config, &["--to-beginning", "--drop-databases", "--yes"])?;
    anyhow::ensure!(ok, "reset --to-beginning --drop-databases --yes: {out}");
    let n: Option<i64> = dest.conn.query_first(exists(&db)).await?;
    anyhow::ensure!(n == Some(0), "the database is still there: {out}");
    let positions: Option<i64> = dest
        .conn
        .query_first(format!(
            "SELECT COUNT(*) FROM tributary.applied WHERE topic LIKE '{prefix}.%'"
        ))
        .await?;
    anyhow::ensure!(positions == Some(0), "positions left after the reset");
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;

    // A time T; changes after it; the destination put back to T (its
    // rows inserted since deleted), then the changes since T applied
    // again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    src.exec(&format!(
        "INSERT INTO `{db}`.a SELECT seq, CONCAT('late', seq) FROM `{db}`.seq_101_to_110"
    ))
    .await?;
    src.exec(&format!("UPDATE `{db}`.b SET n = n * 10 WHERE id <= 5"))
        .await?;
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());
    dest.exec(&format!("DELETE FROM `{db}`.a WHERE id > 100"))
        .await?;
    dest.exec(&format!("UPDATE `{db}`.b SET n = id WHERE id <= 5"))
        .await?;
    let (ok, out) = reset(&config, &["--to-timestamp", &t.to_string()])?;
    anyhow::ensure!(ok, "reset --to-timestamp: {out}");
    let (ok, out) = reset(&config, &["--to-timestamp", "last tuesday"])?;
    anyhow::ensure!(
        !ok && out.contains("--to-timestamp last tuesday"),
        "a bad time: {out}"
    );
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());

    // A running sink (it answers at [http] listen) is not reset under it.
    let listen = format!("127.0.0.1:{}", 19400 + std::process::id() % 500);
    let running_conf = format!("{sink_conf}\n[http]\nlisten = \"{listen}\"\n");
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink-http"),
        &running_conf,
    )?;
    sink.wait_log("sink connector started", Duration::from_secs(60))
        .await?;
    wait_until(
        "the sink's [http] to answer",
        Duration::from_secs(60),
        || {
            let listen = listen.clone();
            async move {
                Ok(match http_get(&listen, "/healthz").await {
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                })
            }
        },
    )
    .await?;
    let running = workspace().join(format!("target/e2e/{prefix}-sink-http.toml"));
    let (ok, out) = reset(&running, &["--to-beginning"])?;
    anyhow::ensure!(
        !ok && out.contains("the sink runs") && out.contains(&listen),
        "reset of a running sink: {out}"
    );
    sink.assert_running()?;
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());
    anyhow::ensure!(source.stop()?.success(), "source: {}", source.log_tail());
    Ok(())
}
