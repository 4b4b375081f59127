//! Bad configuration and unreachable servers: a one-line error naming what
//! failed and how to fix it, a non-zero exit, and nothing written.

use std::time::Duration;

use e2e_tests::*;

const LIMIT: Duration = Duration::from_secs(60);

fn source_toml(url: &str, db: &str, servers: &str, prefix: &str) -> String {
    format!(
        "[source]\nurl = \"{url}\"\nserver_id = 5599\ndatabases = [\"{db}\"]\n[kafka]\nbootstrap_servers = \"{servers}\"\ntopic_prefix = \"{prefix}\"\n"
    )
}

fn sink_toml(url: &str, servers: &str) -> String {
    format!(
        "[kafka]\nbootstrap_servers = \"{servers}\"\ntopic_prefix = \"{}\"\ngroup_id = \"faults\"\n[destination]\nurl = \"{url}\"\n",
        unique("faults")
    )
}

/// Runs a connector that must fail; returns its one-line error.
fn fails(binary: &str, label: &str, config: &str, expect: &[&str]) -> Result<String> {
    let (code, stderr) = run_to_exit(binary, label, config, LIMIT)?;
    assert_ne!(code, 0, "{label}: exit code 0; stderr: {stderr}");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "{label}: not one line: {stderr}");
    assert!(!line.contains("panicked"), "{label}: panic: {line}");
    for e in expect {
        assert!(line.contains(e), "{label}: `{e}` not in: {line}");
    }
    Ok(line.to_string())
}

#[tokio::test]
async fn source_reports_bad_input_clearly() -> Result<()> {
    let kafka = kafka_servers();
    let db = unique("e2e_faults");
    drop_database(&[source_port()], &db).await?;
    Db::connect(source_port())
        .await?
        .exec(&format!("CREATE DATABASE `{db}`"))
        .await?;
    let src = format!("mysql://root@127.0.0.1:{}", source_port());
    let prefix = unique("faults");

    fails(
        "source-connector",
        "bad-password",
        &source_toml(
            &format!("mysql://root:wrong@127.0.0.1:{}", source_port()),
            &db,
            &kafka,
            &prefix,
        ),
        &["access denied", "[source] url"],
    )?;
    fails(
        "source-connector",
        "unreachable-source",
        &source_toml("mysql://root@127.0.0.1:1", &db, &kafka, &prefix),
        &["cannot connect to 127.0.0.1:1", "is the server running"],
    )?;
    fails(
        "source-connector",
        "missing-database",
        &source_toml(&src, "no_such_database_here", &kafka, &prefix),
        &[
            "`no_such_database_here` does not exist",
            "[source] databases",
        ],
    )?;
    fails(
        "source-connector",
        "binlog-off",
        &source_toml(
            &format!("mysql://root@127.0.0.1:{}", dest2_port()),
            "mysql",
            &kafka,
            &prefix,
        ),
        &["binlog is off", "--log-bin"],
    )?;
    fails(
        "source-connector",
        "broker-down",
        &source_toml(&src, &db, "127.0.0.1:1", &prefix),
        &[
            "cannot reach the broker at 127.0.0.1:1",
            "bootstrap_servers",
        ],
    )?;
    fails(
        "source-connector",
        "unknown-key",
        &source_toml(&src, &db, &kafka, &prefix)
            .replace("server_id = 5599", "server_id = 5599\nserverid = 1"),
        &["serverid", "[source]"],
    )?;
    fails(
        "source-connector",
        "missing-key",
        &source_toml(&src, &db, &kafka, &prefix).replace("server_id = 5599\n", ""),
        &["server_id"],
    )?;
    fails(
        "source-connector",
        "bad-value",
        &source_toml(&src, &db, &kafka, &prefix)
            .replace("topic_prefix = ", "partitions = 0\ntopic_prefix = "),
        &["kafka.partitions"],
    )?;
    // Nothing was written: every failure above comes before the first
    // write, so not even the prefix's own topics exist.
    let topics = list_topics(&format!("{prefix}."))?;
    assert!(topics.is_empty(), "topics were created: {topics:?}");
    Ok(())
}

#[tokio::test]
async fn sink_reports_bad_input_clearly() -> Result<()> {
    let kafka = kafka_servers();
    let dst = format!("mysql://root@127.0.0.1:{}", dest_port());
    fails(
        "sink-connector",
        "sink-bad-password",
        &sink_toml(
            &format!("mysql://root:wrong@127.0.0.1:{}", dest_port()),
            &kafka,
        ),
        &["Access denied", "[destination] url"],
    )?;
    fails(
        "sink-connector",
        "sink-unreachable",
        &sink_toml("mysql://root@127.0.0.1:1", &kafka),
        &["cannot connect to 127.0.0.1:1", "[destination] url"],
    )?;
    fails(
        "sink-connector",
        "sink-broker-down",
        &sink_toml(&dst, "127.0.0.1:1"),
        &[
            "cannot reach the broker at 127.0.0.1:1",
            "bootstrap_servers",
        ],
    )?;
    fails(
        "sink-connector",
        "sink-missing-group",
        &sink_toml(&dst, &kafka).replace("group_id = \"faults\"\n", ""),
        &["group_id"],
    )?;
    fails(
        "sink-connector",
        "sink-bad-retry-window",
        &format!(
            "{}[retry]\nother_window_minutes = 900\n",
            sink_toml(&dst, &kafka)
        ),
        &[
            "retry.other_window_minutes",
            "less than retry.connection_window_minutes",
        ],
    )?;
    Ok(())
}

/// A connector stopped (SIGTERM) while it is still starting, in its
/// precheck or first connections, stops as one stopped later does: exit 0.
#[tokio::test]
async fn stopped_while_starting_exits_cleanly() -> Result<()> {
    let prefix = unique("faults_starting");
    let db = unique("e2e_faults_starting");
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE IF NOT EXISTS `{db}`"))
        .await?;
    let configs = [
        ("source-connector", source_config(&prefix, &[&db], 9997, "")),
        (
            "sink-connector",
            sink_config(&prefix, &prefix, dest_port(), ""),
        ),
    ];
    for (binary, config) in configs {
        for delay_ms in [200, 600] {
            let mut c =
                Connector::start(binary, &format!("{prefix}-{binary}-{delay_ms}"), &config)?;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let status = c.stop()?;
            anyhow::ensure!(
                status.success(),
                "{binary} stopped after {delay_ms} ms: {status}: {}",
                c.log_tail()
            );
        }
    }
    drop_database(&[source_port()], &db).await?;
    Ok(())
}
