//! TLS and credentials: a source that takes TLS connections only
//! (`require_secure_transport=ON`) read with a client certificate by an
//! account created `REQUIRE X509` whose password is in a file, the
//! destination reached over TLS, and both connectors talking to the
//! broker's TLS listener; wrong settings stop a connector with one line
//! that names the setting, without retrying.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use e2e_tests::*;

/// The broker's TLS listener (`scripts/stack.sh`: the broker's port + 2).
fn kafka_tls_servers() -> String {
    let port = std::env::var("STACK_KAFKA_SSL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(kafka_port() + 2);
    format!("127.0.0.1:{port}")
}

/// The stack's own certificates (`.stack/tls`), those of the broker and
/// of the stack's servers.
fn stack_tls() -> std::path::PathBuf {
    std::env::var("STACK_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace().join(".stack"))
        .join("tls")
}

/// `config` (a source or sink config for the stack) talking to the
/// broker over TLS, its certificate checked against the stack's CA.
fn over_kafka_tls(config: &str) -> String {
    format!(
        "{}\n[kafka.properties]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"{}\"\n",
        config.replace(&kafka_servers(), &kafka_tls_servers()),
        stack_tls().join("ca.pem").display()
    )
}

fn tls_table(section: &str, mode: &str, dir: &Path, ca: &str, client: bool) -> String {
    let mut t = format!(
        "[{section}.tls]\nmode = \"{mode}\"\nca_file = \"{}\"\n",
        dir.join(ca).display()
    );
    if client {
        t += &format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("client.pem").display(),
            dir.join("client.key").display()
        );
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_everywhere_and_a_password_file() -> Result<()> {
    let server = PrivateServer::start_secure("tls_source", 21000, 9981)?;
    let certs = server.tls_dir();
    let db = unique("e2e_tls");
    let prefix = unique("tls");
    let dir = workspace().join("target/e2e");
    std::fs::create_dir_all(&dir)?;

    // Without TLS the server refuses; with it, it serves.
    anyhow::ensure!(
        Db::connect(server.port).await.is_err(),
        "the secure server took a connection without TLS"
    );
    let mut src = Db::connect_tls(server.port, &certs.join("ca.pem")).await?;
    let password = "s3cret-tls-pw";
    src.exec("DROP USER IF EXISTS 'tls_reader'@'127.0.0.1'")
        .await?;
    src.exec(&format!(
        "CREATE USER 'tls_reader'@'127.0.0.1' IDENTIFIED BY '{password}' REQUIRE X509"
    ))
    .await?;
    src.exec("GRANT ALL PRIVILEGES ON *.* TO 'tls_reader'@'127.0.0.1'")
        .await?;
    src.exec(&format!("DROP DATABASE IF EXISTS `{db}`")).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL)"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.t SELECT seq, CONCAT('row ', seq) FROM `{db}`.seq_1_to_500"
    ))
    .await?;
    drop_database(&[dest_port()], &db).await?;

    // The password in a file, as `echo` writes it (a line break after).
    let password_file = dir.join(format!("{prefix}.password"));
    std::fs::write(&password_file, format!("{password}\n"))?;
    let url = format!("mysql://tls_reader@127.0.0.1:{}", server.port);
    let source_extra = format!(
        "password_file = \"{}\"\n{}",
        password_file.display(),
        tls_table("source", "verify_identity", &certs, "ca.pem", true)
    );
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &over_kafka_tls(&source_config_at(
            &url,
            &prefix,
            &[&db],
            9982,
            &source_extra,
        )),
    )?;
    // The stack's destination, over TLS (it takes either).
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &over_kafka_tls(&sink_config(
            &prefix,
            &format!("{prefix}-g"),
            dest_port(),
            &tls_table(
                "destination",
                "verify_identity",
                &stack_tls(),
                "ca.pem",
                false,
            ),
        )),
    )?;

    let mut dst = Db::connect(dest_port()).await?;
    let table = format!("`{db}`.t");
    let mut connectors = [&mut source, &mut sink];
    converge(&mut src, &mut dst, &table, &mut connectors).await?;

    // The binlog, read with the same TLS settings.
    src.exec(&format!(
        "INSERT INTO `{db}`.t SELECT seq, CONCAT('late ', seq) FROM `{db}`.seq_501_to_600"
    ))
    .await?;
    src.exec(&format!("UPDATE `{db}`.t SET v = 'changed' WHERE id <= 10"))
        .await?;
    converge(&mut src, &mut dst, &table, &mut connectors).await?;

    anyhow::ensure!(source.stop()?.success(), "source: {}", source.log_tail());
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());
    for (name, log) in [("source", source.log_text()), ("sink", sink.log_text())] {
        anyhow::ensure!(
            !log.contains(password),
            "the {name}'s log shows the password"
        );
    }
    Ok(())
}

/// Waits for `table` to hold the same rows at both ends (the source
/// reached over TLS), failing at once if a connector stops.
async fn converge(
    src: &mut Db,
    dst: &mut Db,
    table: &str,
    connectors: &mut [&mut Connector],
) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let why = match diff_table(src, dst, table, "id").await {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => why,
            Err(e) => format!("{e:#}"),
        };
        for c in connectors.iter_mut() {
            c.assert_running()?;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let logs: Vec<String> = connectors.iter().map(|c| c.log_tail()).collect();
            anyhow::bail!(
                "{table} not synchronized over TLS: {why}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tls_settings_stop_with_one_line() -> Result<()> {
    let server = PrivateServer::start_secure("tls_refusals", 22000, 9983)?;
    let certs = server.tls_dir();
    let db = unique("e2e_tls_refusals");
    let prefix = unique("tlsrefusals");
    let url = mysql_url(server.port);
    let dir = workspace().join("target/e2e");
    std::fs::create_dir_all(&dir)?;

    // (label, source extra, what the one line must name).
    let cases = [
        (
            "wrong-ca",
            tls_table("source", "verify_identity", &certs, "other-ca.pem", false),
            "source.tls.ca_file",
        ),
        ("no-tls", String::new(), "source.tls.mode"),
        (
            "not-a-certificate",
            format!(
                "[source.tls]\nmode = \"verify_ca\"\nca_file = \"{}\"\n",
                dir.join(format!("{prefix}.password")).display()
            ),
            "source.tls.ca_file",
        ),
        (
            "no-password-file",
            format!(
                "password_file = \"{}\"\n",
                dir.join(format!("{prefix}-missing.password")).display()
            ),
            "source.password_file",
        ),
        (
            "cert-without-key",
            format!(
                "[source.tls]\nmode = \"required\"\ncert_file = \"{}\"\n",
                certs.join("client.pem").display()
            ),
            "source.tls.cert_file",
        ),
    ];
    std::fs::write(
        dir.join(format!("{prefix}.password")),
        "not a certificate\n",
    )?;
    let mut src = Db::connect_tls(server.port, &certs.join("ca.pem")).await?;
    src.exec(&format!("CREATE DATABASE IF NOT EXISTS `{db}`"))
        .await?;
    for (label, extra, names) in &cases {
        let (code, stderr) = run_to_exit(
            "source-connector",
            &format!("{prefix}-{label}"),
            &source_config_at(&url, &format!("{prefix}_{label}"), &[&db], 9984, extra),
            Duration::from_secs(60),
        )?;
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        anyhow::ensure!(
            code != 0 && lines.len() == 1 && lines[0].contains(names),
            "{label}: exit {code}, expected one line naming {names}: {stderr}"
        );
        anyhow::ensure!(
            !stderr.contains("retry") && !stderr.contains("panicked"),
            "{label}: {stderr}"
        );
    }

    // The broker's TLS listener with a CA that did not sign its
    // certificate.
    let wrong_kafka_ca = |config: String| {
        over_kafka_tls(&config).replace(
            &stack_tls().join("ca.pem").display().to_string(),
            &stack_tls().join("other-ca.pem").display().to_string(),
        )
    };
    let source_ok = tls_table("source", "verify_identity", &certs, "ca.pem", false);
    let (code, stderr) = run_to_exit(
        "source-connector",
        &format!("{prefix}-kafka-wrong-ca"),
        &wrong_kafka_ca(source_config_at(
            &url,
            &format!("{prefix}_kafka"),
            &[&db],
            9985,
            &source_ok,
        )),
        Duration::from_secs(60),
    )?;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(
        code != 0
            && lines.len() == 1
            && lines[0].contains("certificate verify failed")
            && lines[0].contains("ssl.ca.location"),
        "source with a wrong CA for the broker: exit {code}: {stderr}"
    );
    let (code, stderr) = run_to_exit(
        "sink-connector",
        &format!("{prefix}-sink-kafka-wrong-ca"),
        &wrong_kafka_ca(sink_config(
            &prefix,
            &format!("{prefix}-g"),
            dest_port(),
            "",
        )),
        Duration::from_secs(60),
    )?;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(
        code != 0 && lines.len() == 1 && lines[0].contains("ssl.ca.location"),
        "sink with a wrong CA for the broker: exit {code}: {stderr}"
    );

    // The destination's side: a CA that did not sign the server's
    // certificate.
    let (code, stderr) = run_to_exit(
        "sink-connector",
        &format!("{prefix}-sink-wrong-ca"),
        &sink_config(
            &prefix,
            &format!("{prefix}-g"),
            dest_port(),
            &tls_table(
                "destination",
                "verify_ca",
                &stack_tls(),
                "other-ca.pem",
                false,
            ),
        ),
        Duration::from_secs(60),
    )?;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(
        code != 0 && lines.len() == 1 && lines[0].contains("destination.tls.ca_file"),
        "sink with a wrong CA: exit {code}: {stderr}"
    );
    Ok(())
}
