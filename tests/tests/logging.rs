//! Log lines: the json format (`[log] format`, `--log-format`) writes one
//! JSON object per line, and no password appears in any output (logs,
//! errors, the precheck's report, what the HTTP server serves).

use std::time::Duration;

use anyhow::Result;
use e2e_tests::*;

const PASSWORD: &str = "Pa55-xyzzy-e2e";

/// Every line of `log` is a JSON object with tracing's fields.
fn assert_json_lines(name: &str, log: &str) -> Result<usize> {
    let mut n = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{name}: a log line is not JSON ({e}): {line}"))?;
        anyhow::ensure!(
            v["level"].is_string() && v["timestamp"].is_string() && v["fields"].is_object(),
            "{name}: a log line lacks level, timestamp or fields: {line}"
        );
        n += 1;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_no_password_in_any_output() -> Result<()> {
    let db = unique("e2e_logjson");
    let prefix = unique("logjson");
    drop_database(&[source_port(), dest_port()], &db).await?;
    // The sink writes as an account with a password.
    let mut dest = Db::connect(dest_port()).await?;
    dest.exec(&format!(
        "CREATE OR REPLACE USER 'e2e_logpw'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'"
    ))
    .await?;
    dest.exec("GRANT ALL PRIVILEGES ON *.* TO 'e2e_logpw'@'127.0.0.1'")
        .await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.t SELECT seq, CONCAT('v', seq) FROM `{db}`.seq_1_to_50"
    ))
    .await?;

    let json = "\n[log]\nformat = \"json\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n";
    let source_conf = source_config(&prefix, &[&db], 9921, "") + json;
    let sink_conf = sink_config(&prefix, &prefix, dest_port(), "")
        .replace("mysql://root@", &format!("mysql://e2e_logpw:{PASSWORD}@"))
        + json;
    anyhow::ensure!(
        sink_conf.contains(PASSWORD),
        "the sink's config has no password"
    );
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_conf,
    )?;
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_conf)?;
    src.exec(&format!(
        "UPDATE `{db}`.t SET v = 'changed' WHERE id % 3 = 0"
    ))
    .await?;
    let t = format!("`{db}`.t");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(t.as_str(), "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    // What the HTTP servers show.
    let mut served = Vec::new();
    for c in [&source, &sink] {
        let at = c.http_addr().await?;
        for path in ["/status", "/metrics", "/healthz", "/"] {
            let (code, body) = http_get(&at, path).await?;
            anyhow::ensure!(code == 200, "{path}: {code} {body}");
            served.push(body);
        }
    }
    anyhow::ensure!(source.stop()?.success(), "source: {}", source.log_tail());
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());
    let (source_log, sink_log) = (source.log_text(), sink.log_text());
    anyhow::ensure!(
        assert_json_lines("source", &source_log)? > 0,
        "the source logged nothing"
    );
    anyhow::ensure!(
        assert_json_lines("sink", &sink_log)? > 0,
        "the sink logged nothing"
    );

    // A refused password: the error is one JSON line, and names the
    // account's problem without the password.
    let refused = sink_conf.replace(PASSWORD, &format!("{PASSWORD}-wrong"));
    let (code, err) = run_to_exit(
        "sink-connector",
        &format!("{prefix}-refused"),
        &refused,
        Duration::from_secs(60),
    )?;
    anyhow::ensure!(code != 0, "a refused password did not fail the sink: {err}");
    anyhow::ensure!(
        assert_json_lines("refused", &err)? > 0,
        "no error was written"
    );
    anyhow::ensure!(
        err.contains("Access denied"),
        "the error does not say why: {err}"
    );

    // The precheck's report, in both formats.
    let dir = workspace().join("target/e2e");
    let conf_path = dir.join(format!("{prefix}-check.toml"));
    std::fs::write(&conf_path, &sink_conf)?;
    let mut outputs = vec![source_log, sink_log, err];
    outputs.extend(served);
    for format in ["text", "json"] {
        let out = std::process::Command::new(binary("sink-connector"))
            .args(["check", "--format", format, "--config"])
            .arg(&conf_path)
            .output()?;
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        outputs.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    for (i, text) in outputs.iter().enumerate() {
        anyhow::ensure!(
            !text.contains(PASSWORD),
            "output {i} shows the password: {text}"
        );
    }
    dest.exec("DROP USER 'e2e_logpw'@'127.0.0.1'").await?;
    Ok(())
}
