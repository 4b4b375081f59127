//! Progress bars of the full synchronization: drawn when standard error is
//! a terminal (a pseudo-terminal from `script`), plain log lines otherwise.

use std::time::{Duration, Instant};

use anyhow::Result;
use e2e_tests::*;

/// The text a terminal shows, without its control sequences.
fn plain(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-letter.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if c == '\r' {
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the screen shows a finished bar named `name` with `rows` done.
/// A bar fills the terminal's width, so the next one follows it on the
/// same line of text: what matters is what follows the name.
fn bar(shown: &str, name: &str, rows: &str) -> bool {
    shown.match_indices(name).any(|(at, _)| {
        // Its bar, up to the next one's.
        let drawn = &shown[at + name.len()..];
        let Some(open) = drawn.find('[') else {
            return false;
        };
        let drawn = &drawn[..drawn[open + 1..]
            .find('[')
            .map_or(drawn.len(), |n| open + 1 + n)];
        drawn.contains(rows) && drawn.contains("done")
    })
}

/// Stops the connector that runs with `config`: `script` does not pass a
/// SIGTERM on to the program it runs, so the program gets it directly.
fn stop(config: &std::path::Path) {
    let _ = std::process::Command::new("pkill")
        .args([
            "-TERM",
            "-f",
            &format!("run --config {}$", config.display()),
        ])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_on_a_terminal_and_log_lines_elsewhere() -> Result<()> {
    let db = unique("e2e_progress");
    let prefix = unique("progress");
    drop_database(&[source_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    for (t, n) in [("big", 20000), ("small", 300)] {
        src.exec(&format!(
            "CREATE TABLE `{db}`.{t} (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL)"
        ))
        .await?;
        src.exec(&format!(
            "INSERT INTO `{db}`.{t} SELECT seq, REPEAT('x', 30) FROM `{db}`.seq_1_to_{n}"
        ))
        .await?;
    }
    src.exec(&format!("ANALYZE TABLE `{db}`.big, `{db}`.small"))
        .await?;

    // On a terminal.
    let dir = workspace().join("target/e2e");
    let config = dir.join(format!("{prefix}-tty.toml"));
    std::fs::write(
        &config,
        source_config(&format!("{prefix}_tty"), &[&db], 9971, ""),
    )?;
    let screen = dir.join(format!("{prefix}-tty.out"));
    let _ = std::fs::remove_file(&screen);
    let command = format!(
        "exec {} run --config {}",
        binary("source-connector").display(),
        config.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &command])
        .arg(&screen)
        .env("RUST_LOG", "info")
        // Held open: at the end of its input `script` stops reading the
        // terminal, and the program blocks writing to it.
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let start = Instant::now();
    let shown = loop {
        let shown = plain(&std::fs::read(&screen).unwrap_or_default());
        let total_done = bar(&shown, "full synchronization", "20300/20300");
        if total_done && shown.contains("snapshot finished") {
            break shown;
        }
        if start.elapsed() > Duration::from_secs(90) || child.try_wait()?.is_some() {
            stop(&config);
            let _ = child.wait();
            anyhow::bail!("no finished bars on the terminal: {shown}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop(&config);
    anyhow::ensure!(
        child.wait()?.success(),
        "the source on a terminal did not stop cleanly"
    );
    anyhow::ensure!(
        bar(&shown, &format!("{db}.big"), "20000/20000")
            && bar(&shown, &format!("{db}.small"), "300/300"),
        "a table's bar is missing: {shown}"
    );

    // Not on a terminal: log lines, no bars.
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-plain"),
        &source_config(&format!("{prefix}_plain"), &[&db], 9972, ""),
    )?;
    source
        .wait_log("snapshot finished", Duration::from_secs(90))
        .await?;
    let log = source.log_text();
    anyhow::ensure!(
        !log.contains("[==") && log.contains("snapshot of table done"),
        "the log of a run without a terminal: {log}"
    );
    anyhow::ensure!(source.stop()?.success(), "source: {}", source.log_tail());
    Ok(())
}
