//! Large values: 16 and 24 MiB LONGBLOBs inserted and updated (records of
//! up to 48 MiB),
//! a row at the maximum row size.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values() -> e2e_tests::Result<()> {
    e2e_tests::run_scenario("large_values").await
}

use std::time::Duration;

use e2e_tests::*;

/// A record above `kafka.message_max_bytes`: by default the source stops,
/// naming table, key and size; with `oversized_records = "skip"` it logs
/// the record and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_records_stop_the_source_or_are_skipped() -> Result<()> {
    for policy in ["fail", "skip"] {
        let db = unique(&format!("e2e_oversized_{policy}"));
        let prefix = unique(&format!("oversized-{policy}"));
        drop_database(&[source_port(), dest_port()], &db).await?;
        let mut src = Db::connect(source_port()).await?;
        src.exec(&format!("CREATE DATABASE `{db}`")).await?;
        src.exec(&format!(
            "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, b LONGBLOB)"
        ))
        .await?;
        src.exec(&format!("INSERT INTO `{db}`.t VALUES (1, 'small')"))
            .await?;
        let conf = source_config(&prefix, &[&db], 5700 + policy.len() as u32, "")
            .replace("position_interval_ms = 200\n", &format!("position_interval_ms = 200\nmessage_max_bytes = 1048576\noversized_records = \"{policy}\"\n"));
        let mut source = Connector::start("source-connector", &format!("{prefix}-source"), &conf)?;
        let mut sink = Connector::start(
            "sink-connector",
            &format!("{prefix}-sink"),
            &sink_config(&prefix, &prefix, dest_port(), ""),
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
        // 2 MiB, twice the limit.
        src.exec(&format!(
            "INSERT INTO `{db}`.t VALUES (2, REPEAT('x', 2 * 1024 * 1024))"
        ))
        .await?;
        src.exec(&format!("INSERT INTO `{db}`.t VALUES (3, 'after')"))
            .await?;
        if policy == "fail" {
            wait_until("the source to stop", Duration::from_secs(60), || {
                let stopped = source.assert_running().is_err();
                async move { Ok((!stopped).then(|| "still running".to_string())) }
            })
            .await?;
            let log = source.log_text();
            let line = log
                .lines()
                .find(|l| l.starts_with("source-connector: error:"))
                .unwrap_or_default();
            for part in [
                format!("table {db}.t"),
                "key id=2".to_string(),
                "more than kafka.message_max_bytes (1048576)".to_string(),
            ] {
                assert!(line.contains(&part), "`{part}` not in: {line}");
            }
        } else {
            let mut dst = Db::connect(dest_port()).await?;
            let start = std::time::Instant::now();
            while dst
                .rows(&format!("SELECT id FROM {table} WHERE id = 3"))
                .await?
                .is_empty()
            {
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(60),
                    "row 3 never arrived: {}",
                    source.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let ids: Vec<Vec<mysql_async::Value>> = dst
                .rows(&format!("SELECT id FROM {table} ORDER BY id"))
                .await?;
            assert_eq!(ids.len(), 2, "rows at the destination: {ids:?}");
            assert!(source
                .log_text()
                .contains("skipped (kafka.oversized_records = skip)"));
            source.assert_running()?;
        }
    }
    Ok(())
}
