//! Servers that go away while the connectors run: the broker killed with
//! `kill -9`, the destination killed, the source restarted. The connectors
//! retry with backoff instead of exiting, and the destination ends equal.
//!
//! The test runs its own stack (`scripts/stack.sh` with its own directory
//! and ports), so that stopping its servers disturbs no other test.

use std::process::Command;
use std::time::Duration;

use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(240);

struct PrivateStack {
    dir: std::path::PathBuf,
    ports: [(&'static str, u16); 5],
}

impl PrivateStack {
    fn new() -> Self {
        let base = 24000 + (std::process::id() % 1000) as u16 * 4;
        Self {
            dir: workspace().join("target/e2e/outage-stack"),
            ports: [
                ("STACK_SOURCE_PORT", base),
                ("STACK_DEST_PORT", base + 1),
                ("STACK_DEST2_PORT", base + 2),
                ("STACK_KAFKA_PORT", base + 3),
                // No schema registry of its own.
                ("STACK_REGISTRY_PORT", 0),
            ],
        }
    }

    fn port(&self, name: &str) -> u16 {
        self.ports.iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn stack(&self, command: &str) -> Result<()> {
        let mut c = Command::new(workspace().join("scripts/stack.sh"));
        c.arg(command).env("STACK_DIR", &self.dir);
        for (k, v) in &self.ports {
            c.env(k, v.to_string());
        }
        let out = c.output()?;
        anyhow::ensure!(
            out.status.success(),
            "stack.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn pid(&self, name: &str) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.dir.join(format!("{name}.pid")))?
                .trim()
                .to_string(),
        )
    }

    fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let pid = self.pid(name)?;
        Command::new("kill").args([signal, &pid]).status()?;
        // Wait for the process to be gone.
        for _ in 0..600 {
            if !Command::new("kill").args(["-0", &pid]).status()?.success() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("{name} (pid {pid}) did not exit")
    }
}

impl Drop for PrivateStack {
    /// Stops the stack and removes the servers' data; the logs stay.
    fn drop(&mut self) {
        if self.stack("down").is_ok() {
            for data in ["source", "dest", "dest2", "kafka"] {
                let _ = std::fs::remove_dir_all(self.dir.join(data));
            }
        }
    }
}

async fn churn(port: u16, db: &str, from: u32, n: u32) -> Result<()> {
    let mut src = Db::connect(port).await?;
    for i in from..from + n {
        src.exec(&format!(
            "INSERT INTO `{db}`.t (id, v) VALUES ({i}, 'v{i}') ON DUPLICATE KEY UPDATE v = CONCAT(v, '+')"
        ))
        .await?;
        if i % 3 == 0 {
            src.exec(&format!(
                "UPDATE `{db}`.t SET v = CONCAT(v, '*') WHERE id = {}",
                i / 2
            ))
            .await?;
        }
        if i % 5 == 0 {
            src.exec(&format!("DELETE FROM `{db}`.t WHERE id = {}", i / 3))
                .await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_ride_out_broker_and_server_outages() -> Result<()> {
    let stack = PrivateStack::new();
    let _ = std::fs::remove_dir_all(&stack.dir);
    stack.stack("up")?;
    let (sp, dp, kp) = (
        stack.port("STACK_SOURCE_PORT"),
        stack.port("STACK_DEST_PORT"),
        stack.port("STACK_KAFKA_PORT"),
    );
    let db = "outage";
    let mut src = Db::connect(sp).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(200))"
    ))
    .await?;
    churn(sp, db, 0, 200).await?;

    let kafka = format!("127.0.0.1:{kp}");
    let source_conf = source_config("outage", &[db], 5601, "")
        .replace(&kafka_servers(), &kafka)
        .replace(&mysql_url(source_port()), &mysql_url(sp));
    let sink_conf = sink_config("outage", "outage", dp, "").replace(&kafka_servers(), &kafka);
    let mut source = Connector::start("source-connector", "outage-source", &source_conf)?;
    let mut sink = Connector::start("sink-connector", "outage-sink", &sink_conf)?;
    let table = [(format!("`{db}`.t"), "id")];
    let tables: Vec<(&str, &str)> = table.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    wait_equal(sp, dp, &tables, WAIT).await?;

    // The broker dies hard while changes keep coming, then comes back.
    stack.signal("kafka", "-KILL")?;
    churn(sp, db, 200, 100).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    source.assert_running()?;
    sink.assert_running()?;
    stack.stack("up")?;
    wait_equal(sp, dp, &tables, WAIT).await?;

    // The destination dies hard, then comes back.
    stack.signal("dest", "-KILL")?;
    churn(sp, db, 300, 100).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sink.assert_running()?;
    stack.stack("up")?;
    wait_equal(sp, dp, &tables, WAIT).await?;

    // The source restarts (cleanly: a server killed hard may lose its own
    // binlog tail, which no replica can recover).
    stack.signal("source", "-TERM")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    source.assert_running()?;
    stack.stack("up")?;
    churn(sp, db, 400, 100).await?;
    wait_equal(sp, dp, &tables, WAIT).await?;

    source.assert_running()?;
    sink.assert_running()?;
    assert!(
        source.log_text().contains("retrying"),
        "the source never retried: {}",
        source.log_tail()
    );
    assert!(
        sink.log_text().contains("retry"),
        "the sink never retried: {}",
        sink.log_tail()
    );
    Ok(())
}
