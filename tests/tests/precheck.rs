//! The precheck (`check` commands, and `run` refusing to start) against a
//! MariaDB server of the test's own, whose global settings it changes:
//! binlog_format=STATEMENT, binlog_row_image=MINIMAL, an account without
//! REPLICATION SLAVE, a short binlog retention (acknowledged in the
//! config), and the sink's check against the stack's destination.

use std::process::Command;
use std::time::Duration;

use e2e_tests::*;

/// Runs `<binary> <command> --config <text> [args]`: exit code, stdout,
/// stderr.
fn cli(
    binary_name: &str,
    command: &str,
    label: &str,
    config: &str,
    args: &[&str],
) -> Result<(i32, String, String)> {
    let dir = workspace().join("target/e2e");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{label}.toml"));
    std::fs::write(&path, config)?;
    let out = Command::new(binary(binary_name))
        .arg(command)
        .arg("--config")
        .arg(&path)
        .args(args)
        .env("RUST_LOG", "error")
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn source_toml(url: &str, db: &str, prefix: &str, extra: &str) -> String {
    format!(
        "[source]\nurl = \"{url}\"\nserver_id = 5701\ndatabases = [\"{db}\"]\n[kafka]\nbootstrap_servers = \"{}\"\ntopic_prefix = \"{prefix}\"\n{extra}",
        kafka_servers()
    )
}

/// The status of one item in a JSON report.
fn status(report: &serde_json::Value, id: &str) -> String {
    report["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == id))
        .map(|i| i["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| format!("no item {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_precheck_explains_every_failed_item() -> Result<()> {
    let server = PrivateServer::start("precheck", 25000, 41)?;
    let mut db = Db::connect(server.port).await?;
    db.exec(
        "CREATE DATABASE IF NOT EXISTS shop; \
         CREATE TABLE IF NOT EXISTS shop.keyed (id INT PRIMARY KEY); \
         CREATE TABLE IF NOT EXISTS shop.loose (a INT); \
         CREATE TABLE IF NOT EXISTS shop.line (id INT PRIMARY KEY, k INT, \
           CONSTRAINT line_keyed FOREIGN KEY (k) REFERENCES shop.keyed (id) ON DELETE CASCADE); \
         DROP USER IF EXISTS 'reader'@'127.0.0.1'; \
         CREATE USER 'reader'@'127.0.0.1'; \
         GRANT SELECT, SHOW VIEW, BINLOG MONITOR ON *.* TO 'reader'@'127.0.0.1'; \
         SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'FULL'; \
         SET GLOBAL binlog_expire_logs_seconds = 604800;",
    )
    .await?;
    let root = format!("mysql://root@127.0.0.1:{}", server.port);
    let prefix = unique("precheck");

    // All good but one table without a key: exit 0, a warning.
    let (code, out, err) = cli(
        "source-connector",
        "check",
        "precheck-ok",
        &source_toml(&root, "shop", &prefix, ""),
        &["--format", "json"],
    )?;
    let report: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| anyhow::anyhow!("{e}: {out} {err}"))?;
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(status(&report, "source.binlog_format"), "pass");
    assert_eq!(status(&report, "kafka.transactions"), "pass");
    assert_eq!(status(&report, "source.keys"), "warning");
    assert!(
        report["items"].to_string().contains("`shop`.`loose`"),
        "{out}"
    );
    // A foreign key that deletes rows itself: a warning naming it.
    assert_eq!(status(&report, "source.foreign_keys"), "warning");
    assert!(
        report["items"]
            .to_string()
            .contains("`shop`.`line` line_keyed -> keyed (ON DELETE CASCADE)"),
        "{out}"
    );
    assert_eq!(report["failed"], 0);

    // Transactions the broker refuses (a timeout above its maximum): a
    // failed item with its fix.
    let (code, out, _) = cli(
        "source-connector",
        "check",
        "precheck-transactions",
        &source_toml(
            &root,
            "shop",
            &prefix,
            "[kafka.properties]\n\"transaction.timeout.ms\" = \"2000000000\"\n",
        ),
        &[],
    )?;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("FAIL  kafka.transactions"), "{out}");
    assert!(out.contains("kafka.exactly_once = false"), "{out}");

    // STATEMENT and MINIMAL: both fail, each with its fix; exit non-zero.
    db.exec("SET GLOBAL binlog_format = 'STATEMENT'; SET GLOBAL binlog_row_image = 'MINIMAL';")
        .await?;
    let (code, out, _) = cli(
        "source-connector",
        "check",
        "precheck-statement",
        &source_toml(&root, "shop", &prefix, ""),
        &[],
    )?;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("FAIL  source.binlog_format"), "{out}");
    assert!(out.contains("binlog_format is STATEMENT"), "{out}");
    assert!(out.contains("SET GLOBAL binlog_format = 'ROW'"), "{out}");
    assert!(out.contains("FAIL  source.binlog_row_image"), "{out}");
    assert!(out.contains("2 failed"), "{out}");
    // `run` refuses, naming the first failed item, and writes nothing.
    let (code, _, err) = cli(
        "source-connector",
        "run",
        "precheck-run",
        &source_toml(&root, "shop", &prefix, ""),
        &[],
    )?;
    assert_ne!(code, 0);
    assert!(
        err.contains("precheck failed: source.binlog_format"),
        "{err}"
    );
    assert!(err.contains("1 more failed item"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(list_topics(&format!("{prefix}."))?.is_empty());
    db.exec("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'FULL';")
        .await?;

    // An account without REPLICATION SLAVE.
    let reader = format!("mysql://reader@127.0.0.1:{}", server.port);
    let (code, out, _) = cli(
        "source-connector",
        "check",
        "precheck-reader",
        &source_toml(&reader, "shop", &prefix, ""),
        &["--format", "json"],
    )?;
    let report: serde_json::Value = serde_json::from_str(&out)?;
    assert_ne!(code, 0);
    assert_eq!(status(&report, "source.privileges"), "fail");
    let item = report["items"].to_string();
    assert!(item.contains("lacks REPLICATION SLAVE"), "{item}");
    assert!(
        item.contains("GRANT REPLICATION SLAVE ON *.* TO 'reader'@'127.0.0.1'"),
        "{item}"
    );

    // A retention of one hour fails; acknowledged in the config it is a
    // warning and the check passes.
    db.exec("SET GLOBAL binlog_expire_logs_seconds = 3600")
        .await?;
    let (code, out, _) = cli(
        "source-connector",
        "check",
        "precheck-retention",
        &source_toml(&root, "shop", &prefix, ""),
        &[],
    )?;
    assert_ne!(code, 0);
    assert!(out.contains("FAIL  source.binlog_retention"), "{out}");
    assert!(out.contains("at least 7 days"), "{out}");
    let acknowledged = "[check]\nacknowledge = [\"source.binlog_retention\"]\n";
    let (code, out, _) = cli(
        "source-connector",
        "check",
        "precheck-ack",
        &source_toml(&root, "shop", &prefix, acknowledged),
        &[],
    )?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("WARN (acknowledged failure) source.binlog_retention"),
        "{out}"
    );
    assert!(out.contains("success rate 100%"), "{out}");

    // A misspelt item name is a config error.
    let (code, _, err) = cli(
        "source-connector",
        "check",
        "precheck-badack",
        &source_toml(
            &root,
            "shop",
            &prefix,
            "[check]\nacknowledge = [\"source.retention\"]\n",
        ),
        &[],
    )?;
    assert_ne!(code, 0);
    assert!(
        err.contains("check.acknowledge") && err.contains("source.binlog_retention"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_precheck_reports_the_destination() -> Result<()> {
    let prefix = unique("precheck-sink");
    let config = sink_config(&prefix, &prefix, dest_port(), "");
    let (code, out, err) = cli(
        "sink-connector",
        "check",
        "precheck-sink",
        &config,
        &["--format", "json"],
    )?;
    let report: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| anyhow::anyhow!("{e}: {out} {err}"))?;
    assert_eq!(code, 0, "{out} {err}");
    for id in [
        "kafka.connect",
        "destination.connect",
        "destination.privileges",
        "destination.definer",
        "destination.state_database",
    ] {
        assert_eq!(status(&report, id), "pass", "{id}: {out}");
    }
    // No source has run on this prefix: its version is not known yet.
    assert_eq!(status(&report, "destination.version"), "warning");
    assert_eq!(status(&report, "destination.conflicts"), "warning");

    // An account with only SELECT on the destination.
    let mut dst = Db::connect(dest_port()).await?;
    dst.exec("DROP USER IF EXISTS 'weak'@'127.0.0.1'; CREATE USER 'weak'@'127.0.0.1'; GRANT SELECT ON *.* TO 'weak'@'127.0.0.1';")
        .await?;
    let weak = config.replace("mysql://root@", "mysql://weak@");
    let (code, out, _) = cli("sink-connector", "check", "precheck-sink-weak", &weak, &[])?;
    assert_ne!(code, 0);
    assert!(out.contains("FAIL  destination.privileges"), "{out}");
    assert!(
        out.contains("lacks INSERT, UPDATE, DELETE, CREATE"),
        "{out}"
    );
    let (code, _, err) = cli("sink-connector", "run", "precheck-sink-run", &weak, &[])?;
    assert_ne!(code, 0);
    assert!(
        err.contains("precheck failed: destination.privileges"),
        "{err}"
    );
    dst.exec("DROP USER IF EXISTS 'weak'@'127.0.0.1'").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_precheck_sees_functions_the_destination_would_refuse() -> Result<()> {
    // A source that allows functions without DETERMINISTIC, NO SQL or READS
    // SQL DATA, and a destination with its binlog on that does not.
    let source = PrivateServer::start("fnsource", 23000, 42)?;
    let dest = PrivateServer::start("fndest", 24000, 43)?;
    let db = unique("fncreators");
    drop_database(&[source.port, dest.port], &db).await?;
    Db::connect(dest.port)
        .await?
        .exec("SET GLOBAL log_bin_trust_function_creators = 0")
        .await?;
    Db::connect(source.port)
        .await?
        .exec(&format!(
            "SET GLOBAL log_bin_trust_function_creators = 1; \
             CREATE DATABASE `{db}`; USE `{db}`; \
             CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 10); \
             CREATE FUNCTION twice(x INT) RETURNS INT RETURN x * 2; \
             CREATE FUNCTION safe(x INT) RETURNS INT DETERMINISTIC RETURN x + 1; \
             CREATE VIEW doubled AS SELECT id, twice(v) AS w FROM t;"
        ))
        .await?;
    let prefix = unique("fncreators");
    let src = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config_at(&source.url(), &prefix, &[&db], 5702, ""),
    )?;
    src.wait_log("source connector started", Duration::from_secs(60))
        .await?;
    let sink_text = sink_config(&prefix, &prefix, dest.port, "");

    let (code, out, err) = cli(
        "sink-connector",
        "check",
        "fncreators-check",
        &sink_text,
        &["--format", "json"],
    )?;
    assert_ne!(code, 0, "{out} {err}");
    let report: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        status(&report, "destination.function_creators"),
        "fail",
        "{out}"
    );
    let item = report["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|i| i["id"] == "destination.function_creators")
        })
        .expect("the item")
        .to_string();
    assert!(item.contains(&format!("{db}.twice")), "{item}");
    assert!(!item.contains(&format!("{db}.safe")), "{item}");
    assert!(
        item.contains("log_bin_trust_function_creators = 1"),
        "{item}"
    );
    // `run` refuses to start on it.
    let (code, err) = run_to_exit(
        "sink-connector",
        "fncreators-run",
        &sink_text,
        Duration::from_secs(60),
    )?;
    assert_ne!(code, 0);
    assert!(err.contains("destination.function_creators"), "{err}");

    // With the setting the README gives, the function and the view over it
    // arrive.
    Db::connect(dest.port)
        .await?
        .exec("SET GLOBAL log_bin_trust_function_creators = 1")
        .await?;
    let (code, out, _) = cli(
        "sink-connector",
        "check",
        "fncreators-check2",
        &sink_text,
        &[],
    )?;
    assert_eq!(code, 0, "{out}");
    let _sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_text)?;
    let q = format!("SELECT w FROM `{db}`.doubled WHERE id = 1");
    wait_until(
        "the view over the function",
        Duration::from_secs(120),
        || {
            let q = q.clone();
            let port = dest.port;
            async move {
                let mut d = Db::connect(port).await?;
                let w: Option<i64> =
                    mysql_async::prelude::Queryable::query_first(&mut d.conn, q).await?;
                Ok((w != Some(20)).then(|| format!("{w:?}")))
            }
        },
    )
    .await?;
    Ok(())
}
