//! `[alerts]`: a lag above the threshold and a connector that stops on an
//! error, each told once to a webhook (a small HTTP receiver here) and a
//! command, and resolved once when the episode ends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use e2e_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts POSTs, keeping their JSON bodies.
async fn receiver() -> Result<(String, Arc<Mutex<Vec<serde_json::Value>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() < length {
                        continue;
                    }
                    if let Ok(v) = serde_json::from_str(&body[..length]) {
                        keep.lock().unwrap().push(v);
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    Ok((addr, got))
}

/// The alerts received so far of `kind` in `state`.
fn received(got: &Mutex<Vec<serde_json::Value>>, kind: &str, state: &str) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["state"] == state)
        .count()
}

async fn wait_alert(got: &Mutex<Vec<serde_json::Value>>, kind: &str, state: &str) -> Result<()> {
    let start = Instant::now();
    while received(got, kind, state) == 0 {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "no {kind} {state} alert; received: {:?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_and_failure_alerts_fire_once_and_resolve() -> Result<()> {
    let db = unique("e2e_alerts");
    let prefix = unique("alerts");
    drop_database(&[source_port(), dest_port(), dest2_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT NOT NULL)"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.t SELECT seq, seq FROM `{db}`.seq_1_to_10"
    ))
    .await?;
    let (addr, got) = receiver().await?;
    let lines = workspace().join(format!("target/e2e/{prefix}-alerts.txt"));
    let _ = std::fs::remove_file(&lines);
    let alerts = format!(
        "\n[alerts]\nlatency_threshold_ms = 1500\nlatency_for_secs = 1\nwebhook_url = \"http://{addr}/hook\"\ncommand = 'echo \"$TRIBUTARY_ALERT_KIND $TRIBUTARY_ALERT_STATE $TRIBUTARY_ALERT_CONNECTOR\" >> {}'\n",
        lines.display()
    );
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &(source_config(&prefix, &[&db], 9941, "") + "heartbeat_interval_ms = 500\n"),
    )?;
    let sink_conf = sink_config(&prefix, &prefix, dest_port(), &alerts);
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    let t = format!("`{db}`.t");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(t.as_str(), "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;

    // The destination's table locked: the sink cannot apply, its lag
    // grows past the threshold; unlocked, it falls back under.
    let mut dest = Db::connect(dest_port()).await?;
    dest.exec(&format!("LOCK TABLES `{db}`.t WRITE")).await?;
    src.exec(&format!("UPDATE `{db}`.t SET v = v + 1")).await?;
    wait_alert(&got, "latency", "firing").await?;
    sink.assert_running()?;
    // One alert for the episode, however long it lasts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    anyhow::ensure!(
        received(&got, "latency", "firing") == 1,
        "more than one alert for one episode: {:?}",
        got.lock().unwrap()
    );
    dest.exec("UNLOCK TABLES").await?;
    wait_alert(&got, "latency", "resolved").await?;
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(t.as_str(), "id")],
        Duration::from_secs(60),
        &mut [&mut source, &mut sink],
    )
    .await?;
    {
        let all = got.lock().unwrap();
        let firing = all
            .iter()
            .find(|a| a["kind"] == "latency" && a["state"] == "firing")
            .expect("waited for it");
        anyhow::ensure!(
            firing["connector"] == "sink"
                && firing["prefix"] == prefix.as_str()
                && firing["threshold_ms"] == 1500
                && firing["lag_ms"].as_i64().is_some_and(|l| l > 1500),
            "the lag alert: {firing}"
        );
    }
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());

    // A sink that stops on an error (its destination has the table with
    // rows of its own): a failure alert; once it runs again, resolved.
    let mut dest2 = Db::connect(dest2_port()).await?;
    dest2.exec(&format!("CREATE DATABASE `{db}`")).await?;
    dest2
        .exec(&format!(
            "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)"
        ))
        .await?;
    dest2
        .exec(&format!("INSERT INTO `{db}`.t VALUES (1, 1)"))
        .await?;
    let other = sink_config(&prefix, &format!("{prefix}-other"), dest2_port(), &alerts);
    let (code, err) = run_to_exit(
        "sink-connector",
        &format!("{prefix}-other-sink"),
        &other,
        Duration::from_secs(90),
    )?;
    anyhow::ensure!(
        code != 0,
        "the sink wrote into a table of the destination's own: {err}"
    );
    wait_alert(&got, "failure", "firing").await?;
    {
        let all = got.lock().unwrap();
        let failure = all
            .iter()
            .find(|a| a["kind"] == "failure")
            .expect("waited for it");
        anyhow::ensure!(
            failure["message"]
                .as_str()
                .is_some_and(|m| m.contains("already exist at the destination")),
            "the failure alert: {failure}"
        );
    }
    drop_database(&[dest2_port()], &db).await?;
    let mut again = Connector::start("sink-connector", &format!("{prefix}-other-again"), &other)?;
    wait_alert(&got, "failure", "resolved").await?;
    wait_equal_watching(
        source_port(),
        dest2_port(),
        &[(t.as_str(), "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut again],
    )
    .await?;
    anyhow::ensure!(again.stop()?.success(), "sink: {}", again.log_tail());
    anyhow::ensure!(source.stop()?.success(), "source: {}", source.log_tail());

    // The command got each alert too, in order.
    let text = std::fs::read_to_string(&lines).unwrap_or_default();
    let want = [
        "latency firing sink",
        "latency resolved sink",
        "failure firing sink",
        "failure resolved sink",
    ];
    anyhow::ensure!(
        text.lines().collect::<Vec<_>>() == want,
        "the alert command's lines: {text:?}"
    );
    drop_database(&[dest2_port()], &db).await?;
    Ok(())
}
