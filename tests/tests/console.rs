//! `[http] listen`: `/metrics`, `/healthz`, `/status` and the console,
//! read over HTTP and, for the console, in headless Chromium.

use std::time::{Duration, Instant};

use anyhow::Result;
use e2e_tests::*;
use mysql_async::prelude::*;

const HTTP: &str = "\n[http]\nlisten = \"127.0.0.1:0\"\n";

/// Polls `/metrics` at `addr` until every `(name, labels, value)` holds.
async fn wait_metrics(addr: &str, want: &[(&str, Vec<String>, f64)]) -> Result<String> {
    let start = Instant::now();
    loop {
        let (code, text) = http_get(addr, "/metrics").await?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        let missing: Vec<String> = want
            .iter()
            .filter(|(name, labels, value)| {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                metric(&text, name, &labels) != Some(*value)
            })
            .map(|(name, labels, value)| format!("{name}{labels:?} = {value}"))
            .collect();
        if missing.is_empty() {
            return Ok(text);
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "/metrics at {addr} lacks {missing:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_status_and_the_console_in_a_browser() -> Result<()> {
    let db = unique("e2e_console");
    let prefix = unique("console");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.big (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.big SELECT seq, CONCAT('v', seq) FROM `{db}`.seq_1_to_5000"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.small (id INT PRIMARY KEY, v INT NOT NULL)"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.small SELECT seq, seq FROM `{db}`.seq_1_to_300"
    ))
    .await?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &(source_config(&prefix, &[&db], 9931, HTTP) + "heartbeat_interval_ms = 500\n"),
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), HTTP),
    )?;
    let (big, small) = (format!("`{db}`.big"), format!("`{db}`.small"));
    let tables = [(big.as_str(), "id"), (small.as_str(), "id")];
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    // Then the binlog: 7 inserts, 10 updates, 5 deletes.
    src.exec(&format!(
        "INSERT INTO `{db}`.small SELECT seq, seq FROM `{db}`.seq_301_to_307"
    ))
    .await?;
    src.exec(&format!("UPDATE `{db}`.big SET v = 'u' WHERE id <= 10"))
        .await?;
    src.exec(&format!("DELETE FROM `{db}`.big WHERE id > 4995"))
        .await?;
    wait_equal_watching(
        source_port(),
        dest_port(),
        &tables,
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;

    let (source_at, sink_at) = (source.http_addr().await?, sink.http_addr().await?);
    let p = format!("prefix=\"{prefix}\"");
    let table = |t: &str| vec![p.clone(), format!("table=\"{db}.{t}\"")];
    let op = |o: &str| vec![p.clone(), format!("op=\"{o}\"")];
    wait_metrics(
        &source_at,
        &[
            ("tributary_snapshot_rows_total", table("big"), 5000.0),
            ("tributary_snapshot_rows_total", table("small"), 300.0),
            ("tributary_snapshot_running", vec![p.clone()], 0.0),
            ("tributary_snapshot_tables_remaining", vec![p.clone()], 0.0),
            ("tributary_source_events_total", op("c"), 7.0),
            ("tributary_source_events_total", op("u"), 10.0),
            ("tributary_source_events_total", op("d"), 5.0),
            ("tributary_source_connected", vec![p.clone()], 1.0),
        ],
    )
    .await?;
    let sink_metrics = wait_metrics(
        &sink_at,
        &[
            ("tributary_sink_applied_total", op("r"), 5300.0),
            ("tributary_sink_applied_total", op("c"), 7.0),
            ("tributary_sink_applied_total", op("u"), 10.0),
            ("tributary_sink_applied_total", op("d"), 5.0),
            ("tributary_sink_connected", vec![p.clone()], 1.0),
        ],
    )
    .await?;
    let lag = metric(&sink_metrics, "tributary_sink_lag_milliseconds", &[&p])
        .ok_or_else(|| anyhow::anyhow!("no sink lag:\n{sink_metrics}"))?;
    anyhow::ensure!(
        (0.0..60_000.0).contains(&lag),
        "sink lag {lag} ms after catching up"
    );
    anyhow::ensure!(
        metric(&sink_metrics, "tributary_sink_batches_total", &[&p]).unwrap_or(0.0) >= 1.0,
        "no batches counted:\n{sink_metrics}"
    );
    for at in [&source_at, &sink_at] {
        let (code, body) = http_get(at, "/healthz").await?;
        anyhow::ensure!(
            code == 200 && body.starts_with("running"),
            "/healthz: {code} {body}"
        );
    }
    let (_, status) = http_get(&source_at, "/status").await?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    let tables = status["snapshot"]["tables"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let big_progress = tables
        .iter()
        .find(|t| t["table"] == format!("{db}.big"))
        .ok_or_else(|| anyhow::anyhow!("no {db}.big in /status: {status}"))?;
    anyhow::ensure!(
        big_progress["rows"] == 5000 && big_progress["done"] == true,
        "the snapshot of big in /status: {big_progress}"
    );
    anyhow::ensure!(
        status["health"] == "running" && status["position"].is_string(),
        "source /status: {status}"
    );

    // The console, as a browser shows it once its script has run.
    let url = format!("http://{sink_at}/");
    let out = chromium(&["--virtual-time-budget=5000", "--dump-dom", &url])?;
    let dom = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        dom.contains(&format!("tributary sink · {prefix}")) && dom.contains("badge running"),
        "the sink's console, as rendered: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("http://{source_at}/");
    let out = chromium(&["--virtual-time-budget=5000", "--dump-dom", &url])?;
    let dom = String::from_utf8_lossy(&out.stdout);
    let row = dom
        .split("<tr ")
        .find(|r| r.contains(&format!("data-table=\"{db}.big\"")))
        .ok_or_else(|| anyhow::anyhow!("no row of {db}.big in the console: {dom}"))?;
    anyhow::ensure!(
        row.contains("100%") && row.contains("5,000"),
        "the console's row of {db}.big: {row}"
    );
    anyhow::ensure!(dom.contains("<polyline"), "no lag chart: {dom}");
    let shot = workspace().join(format!("target/e2e/{prefix}-console.png"));
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[
        "--virtual-time-budget=5000",
        "--window-size=1280,900",
        &format!("--screenshot={}", shot.display()),
        &url,
    ])?;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    anyhow::ensure!(
        size > 10_000,
        "no screenshot of the console at {} ({size} bytes): {}",
        shot.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    // A statement the destination refuses: 503 while the sink retries,
    // the error in /status; 200 again once the destination is fixed.
    let mut dest = Db::connect(dest_port()).await?;
    dest.exec(&format!("ALTER TABLE `{db}`.small DROP COLUMN v"))
        .await?;
    src.exec(&format!("INSERT INTO `{db}`.small VALUES (1000, 1000)"))
        .await?;
    let start = Instant::now();
    loop {
        let (code, body) = http_get(&sink_at, "/healthz").await?;
        if code == 503 {
            anyhow::ensure!(body.starts_with("retrying"), "/healthz: {body}");
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "/healthz stayed {code} {body} with a failing statement"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, status) = http_get(&sink_at, "/status").await?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    anyhow::ensure!(
        status["health"] == "retrying"
            && status["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Unknown column")),
        "sink /status while retrying: {status}"
    );
    dest.exec(&format!(
        "ALTER TABLE `{db}`.small ADD COLUMN v INT NOT NULL DEFAULT 0"
    ))
    .await?;
    let start = Instant::now();
    loop {
        let (code, body) = http_get(&sink_at, "/healthz").await?;
        let row: Option<i64> = dest
            .conn
            .query_first(format!("SELECT v FROM `{db}`.small WHERE id = 1000"))
            .await?;
        if code == 200 && row == Some(1000) {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(90),
            "the sink did not recover: /healthz {code} {body}, row {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // `status`, beside the running sink: its own status comes with it.
    let live_conf = sink_config(
        &prefix,
        &prefix,
        dest_port(),
        &HTTP.replace("127.0.0.1:0", &sink_at),
    );
    let report = status_of("sink-connector", &format!("{prefix}-sink-live"), &live_conf)?;
    anyhow::ensure!(
        report["live"]["connector"] == "sink"
            && report["live"]["health"] == "running"
            && report["failed_ddl"] == 0
            && report["partitions_applied"].as_u64().unwrap_or(0) >= 2,
        "sink status beside the running sink: {report}"
    );
    // Heartbeats: an idle, caught-up sink's lag is their age, small while
    // they come; once the source stops they stop, and it grows.
    // (The last change applied may have waited for the destination's
    // fix above: its lag, true, is seconds until heartbeats follow.)
    let lag_of = |v: &serde_json::Value| v["lag_ms"].as_i64();
    let start = Instant::now();
    loop {
        let (_, now) = http_get(&sink_at, "/status").await?;
        let now: serde_json::Value = serde_json::from_str(&now)?;
        if lag_of(&now).is_some_and(|l| l < 2000) {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "an idle sink's lag with heartbeats coming: {:?}",
            now["lag_ms"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::ensure!(source.stop()?.success(), "source: {}", source.log_tail());
    let start = Instant::now();
    loop {
        let (_, now) = http_get(&sink_at, "/status").await?;
        let now: serde_json::Value = serde_json::from_str(&now)?;
        if lag_of(&now).is_some_and(|l| l > 3000) {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "the sink's lag did not grow with the source stopped: {:?}",
            now["lag_ms"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());
    let source_conf = source_config(&prefix, &[&db], 9931, "");
    let report = status_of(
        "source-connector",
        &format!("{prefix}-source-status"),
        &source_conf,
    )?;
    anyhow::ensure!(
        report["live"].is_null()
            && report["stored_position"]["gtid"].is_string()
            && report["transactions_behind"].is_u64()
            && report["full_synchronization"]["state"] == "done"
            && report["last_error"].is_null(),
        "source status after it stopped: {report}"
    );
    let report = status_of(
        "sink-connector",
        &format!("{prefix}-sink-status"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    anyhow::ensure!(
        report["live"].is_null() && report["records_behind"] == 0,
        "sink status after it stopped, everything applied: {report}"
    );

    // The error that stops a connector is there after it stopped: the
    // source pointed at another server than its stored position's, a
    // sink whose destination has the table already.
    let wrong = source_config_at(&mysql_url(dest_port()), &prefix, &[&db], 9931, "");
    let (code, err) = run_to_exit(
        "source-connector",
        &format!("{prefix}-wrong-source"),
        &wrong,
        Duration::from_secs(60),
    )?;
    anyhow::ensure!(code != 0, "the source ran against another server: {err}");
    let report = status_of(
        "source-connector",
        &format!("{prefix}-wrong-status"),
        &wrong,
    )?;
    anyhow::ensure!(
        report["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("belongs to the server with server_id")),
        "source status after it failed: {report}"
    );
    drop_database(&[dest2_port()], &db).await?;
    let mut dest2 = Db::connect(dest2_port()).await?;
    dest2.exec(&format!("CREATE DATABASE `{db}`")).await?;
    dest2
        .exec(&format!(
            "CREATE TABLE `{db}`.small (id INT PRIMARY KEY, v INT)"
        ))
        .await?;
    dest2
        .exec(&format!("INSERT INTO `{db}`.small VALUES (1, 1)"))
        .await?;
    let other = sink_config(&prefix, &format!("{prefix}-other"), dest2_port(), "");
    let (code, err) = run_to_exit(
        "sink-connector",
        &format!("{prefix}-other-sink"),
        &other,
        Duration::from_secs(60),
    )?;
    anyhow::ensure!(
        code != 0,
        "the sink wrote into a table of the destination's own: {err}"
    );
    let report = status_of("sink-connector", &format!("{prefix}-other-status"), &other)?;
    anyhow::ensure!(
        report["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already exist at the destination")),
        "sink status after it failed: {report}"
    );
    drop_database(&[dest2_port()], &db).await?;
    Ok(())
}

/// `<binary> status --format json` with the config `text`.
fn status_of(binary_name: &str, label: &str, text: &str) -> Result<serde_json::Value> {
    let path = workspace().join(format!("target/e2e/{label}.toml"));
    std::fs::write(&path, text)?;
    let out = std::process::Command::new(binary(binary_name))
        .args(["status", "--format", "json", "--config"])
        .arg(&path)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{binary_name} status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}
