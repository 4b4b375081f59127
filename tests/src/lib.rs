//! End-to-end test harness: real MariaDB servers and a real Apache Kafka
//! broker from `scripts/stack.sh`, and the connectors' real binaries.
//!
//! Each test gets its own source database and topic prefix (with a run id,
//! so re-runs never meet old topics), starts the connectors as child
//! processes with generated config files, and compares source and
//! destination row by row and with `CHECKSUM TABLE`, retrying until equal
//! within a bound; there are no fixed sleeps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Row, Value};

pub mod ddl;

pub type Result<T> = anyhow::Result<T>;

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn source_port() -> u16 {
    port("STACK_SOURCE_PORT", 3307)
}
pub fn dest_port() -> u16 {
    port("STACK_DEST_PORT", 3308)
}
pub fn dest2_port() -> u16 {
    port("STACK_DEST2_PORT", 3309)
}
pub fn kafka_port() -> u16 {
    port("STACK_KAFKA_PORT", 9092)
}

pub fn kafka_servers() -> String {
    format!("127.0.0.1:{}", kafka_port())
}

pub fn mysql_url(port: u16) -> String {
    format!("mysql://root@127.0.0.1:{port}")
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Path of a connector binary (built by `cargo build`, as `scripts/test.sh`
/// does before the tests).
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var("CONNECTOR_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target/debug"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; run `cargo build --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A name unique to this test run: `<base>_<run id>`.
pub fn unique(base: &str) -> String {
    use std::sync::OnceLock;
    static RUN: OnceLock<String> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        format!("{:x}", t % 0xffff_ffff)
    });
    format!("{base}_{run}")
}

/// A connection to one of the stack's servers.
pub struct Db {
    pub conn: Conn,
    pub port: u16,
}

impl Db {
    pub async fn connect(port: u16) -> Result<Self> {
        let opts = OptsBuilder::from_opts(Opts::from_url(&mysql_url(port))?)
            .prefer_socket(false)
            .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
        let conn = Conn::new(opts).await?;
        Ok(Self { conn, port })
    }

    /// Over TLS, the server's certificate checked against `ca_file`.
    pub async fn connect_tls(port: u16, ca_file: &Path) -> Result<Self> {
        let ssl = mysql_async::SslOpts::default()
            .with_root_certs(vec![std::fs::read(ca_file)?.into()])
            .with_disable_built_in_roots(true);
        let opts = OptsBuilder::from_opts(Opts::from_url(&mysql_url(port))?)
            .prefer_socket(false)
            .ssl_opts(Some(ssl))
            .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
        let conn = Conn::new(opts).await?;
        Ok(Self { conn, port })
    }

    pub async fn exec(&mut self, sql: &str) -> Result<()> {
        self.conn
            .query_drop(sql)
            .await
            .map_err(|e| anyhow::anyhow!("on port {}: {sql}: {e}", self.port))
    }

    /// [`Db::exec`] for a workload that writes where a sink applies too: a
    /// statement that lost a deadlock (1213) or a lock wait (1205) was
    /// rolled back, and is run again, as any client of the server does.
    pub async fn exec_retrying(&mut self, sql: &str) -> Result<()> {
        let mut tries = 0;
        loop {
            match self.conn.query_drop(sql).await {
                Err(mysql_async::Error::Server(e))
                    if (e.code == 1213 || e.code == 1205) && tries < 20 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                r => return r.map_err(|e| anyhow::anyhow!("on port {}: {sql}: {e}", self.port)),
            }
        }
    }

    /// Every row as text (binary columns as their bytes), in the order given.
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Value>>> {
        let rows: Vec<Row> = self.conn.query(sql).await?;
        Ok(rows.into_iter().map(Row::unwrap).collect())
    }

    pub async fn checksum(&mut self, table: &str) -> Result<Option<u64>> {
        let rows: Vec<(String, Option<u64>)> =
            self.conn.query(format!("CHECKSUM TABLE {table}")).await?;
        Ok(rows.into_iter().next().and_then(|(_, c)| c))
    }

    pub async fn count(&mut self, table: &str) -> Result<u64> {
        let n: Option<u64> = self
            .conn
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await?;
        Ok(n.unwrap_or(0))
    }

    pub async fn table_exists(&mut self, db: &str, table: &str) -> Result<bool> {
        let n: Option<u64> = self
            .conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await?;
        Ok(n.unwrap_or(0) > 0)
    }
}

/// Polls `check` until it returns `Ok(None)` (done) or `deadline` passes;
/// `Ok(Some(why))` means not yet, with the reason reported on timeout.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let start = Instant::now();
    loop {
        let why = match check().await {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => why,
            Err(e) => format!("error: {e:#}"),
        };
        if start.elapsed() > timeout {
            anyhow::bail!(
                "timed out after {}s waiting for {what}: {why}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Compares `db.table` between source and destination: rows (ordered by
/// `order_by`) and CHECKSUM TABLE. `None` when equal, else what differs.
pub async fn diff_table(
    src: &mut Db,
    dst: &mut Db,
    table: &str,
    order_by: &str,
) -> Result<Option<String>> {
    let (db, name) = table.split_once('.').expect("db.table");
    let unquoted = |s: &str| s.trim_matches('`').to_string();
    if !dst.table_exists(&unquoted(db), &unquoted(name)).await? {
        return Ok(Some(format!(
            "{table} does not exist at the destination yet"
        )));
    }
    let q = format!("SELECT * FROM {table} ORDER BY {order_by}");
    let a = src.rows(&q).await?;
    let b = dst.rows(&q).await?;
    if a != b {
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        return Ok(Some(format!(
            "{table}: {} rows at the source, {} at the destination; first difference at row {first:?}",
            a.len(),
            b.len()
        )));
    }
    let (ca, cb) = (src.checksum(table).await?, dst.checksum(table).await?);
    if ca != cb {
        return Ok(Some(format!("{table}: CHECKSUM TABLE {ca:?} vs {cb:?}")));
    }
    Ok(None)
}

/// Waits until every table (with its ORDER BY) is equal on both servers.
pub async fn wait_equal(
    src_port: u16,
    dst_port: u16,
    tables: &[(&str, &str)],
    timeout: Duration,
) -> Result<()> {
    wait_equal_watching(src_port, dst_port, tables, timeout, &mut []).await
}

/// [`wait_equal`], failing at once if one of `connectors` exits.
pub async fn wait_equal_watching(
    src_port: u16,
    dst_port: u16,
    tables: &[(&str, &str)],
    timeout: Duration,
    connectors: &mut [&mut Connector],
) -> Result<()> {
    let mut src = Db::connect(src_port).await?;
    let mut dst = Db::connect(dst_port).await?;
    let start = Instant::now();
    'retry: loop {
        let mut why = None;
        for (t, order) in tables {
            match diff_table(&mut src, &mut dst, t, order).await {
                Ok(None) => {}
                Ok(Some(d)) => why = Some(d),
                Err(e) => why = Some(format!("error: {e:#}")),
            }
            if why.is_some() {
                break;
            }
        }
        let Some(why) = why else { break 'retry Ok(()) };
        for c in connectors.iter_mut() {
            c.assert_running()?;
        }
        if start.elapsed() > timeout {
            anyhow::bail!(
                "timed out after {}s waiting for port {dst_port} to equal port {src_port}: {why}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A connector process, killed when dropped.
pub struct Connector {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Connector {
    /// Starts `binary run --config <file with config_text>`.
    pub fn start(binary_name: &str, label: &str, config_text: &str) -> Result<Self> {
        Self::start_with_env(binary_name, label, config_text, &[])
    }

    /// [`Connector::start`] with more environment variables.
    pub fn start_with_env(
        binary_name: &str,
        label: &str,
        config_text: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = workspace().join("target/e2e");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join(format!("{label}.toml"));
        std::fs::write(&config, config_text)?;
        let log = dir.join(format!("{label}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(binary(binary_name))
            .args(["run", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Self {
            name: label.to_string(),
            child: Some(child),
            log,
        })
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut c = self
            .child
            .take()
            .ok_or_else(|| anyhow::anyhow!("{} is not running", self.name))?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Some(s) = c.try_wait()? {
                return Ok(s);
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = c.kill();
                anyhow::bail!("{} did not stop within 60s", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the process exits by itself; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            let c = self
                .child
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("{} is not running", self.name))?;
            if let Some(status) = c.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "{} did not exit within {}s: {}",
                    self.name,
                    timeout.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if the process has exited (with its log's tail).
    pub fn assert_running(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                anyhow::bail!("{} exited with {status}: {}", self.name, self.log_tail());
            }
        }
        Ok(())
    }

    /// Peak resident memory of the process so far (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> Result<u64> {
        self.status_kb("VmHWM:").map(|kb| kb * 1024)
    }

    /// Resident memory of the process now (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        self.status_kb("VmRSS:").map(|kb| kb * 1024)
    }

    fn status_kb(&self, field: &str) -> Result<u64> {
        let pid = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("{} is not running", self.name))?
            .id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {field} for {}", self.name))
    }

    /// Waits until the log has a line containing `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.lines().any(|l| l.contains(needle)) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "{} did not log `{needle}` within {}s: {}",
                    self.name,
                    timeout.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The stack's broker paused (SIGSTOP) until this is dropped: producers
/// and consumers meet a broker that does not answer, as behind a slow or
/// stalled one, and fill their buffers.
pub struct BrokerPause {
    pid: String,
}

pub fn pause_broker() -> Result<BrokerPause> {
    let dir = std::env::var("STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join(".stack"));
    let pid = std::fs::read_to_string(dir.join("kafka.pid"))?
        .trim()
        .to_string();
    let status = Command::new("kill").args(["-STOP", &pid]).status()?;
    anyhow::ensure!(status.success(), "cannot pause the broker (pid {pid})");
    Ok(BrokerPause { pid })
}

impl Drop for BrokerPause {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid]).status();
    }
}

/// A MariaDB server of a test's own (`scripts/stack.sh mariadb`),
/// configured like the stack's source, for tests that change its global
/// settings or its binlog; stopped when dropped.
pub struct PrivateServer {
    dir: PathBuf,
    name: String,
    pub port: u16,
}

impl PrivateServer {
    /// Starts server `name` (its data under `target/e2e/<name>-stack`) on a
    /// port above `base_port` chosen by the process id, with `server_id`.
    pub fn start(name: &str, base_port: u16, server_id: u32) -> Result<Self> {
        Self::start_with(name, base_port, server_id, &[])
    }

    /// A server that takes TLS connections only
    /// (`require_secure_transport=ON`); its certificates in [`Self::tls_dir`].
    pub fn start_secure(name: &str, base_port: u16, server_id: u32) -> Result<Self> {
        Self::start_with(name, base_port, server_id, &["secure"])
    }

    fn start_with(name: &str, base_port: u16, server_id: u32, flags: &[&str]) -> Result<Self> {
        let server = Self {
            dir: workspace().join(format!("target/e2e/{name}-stack")),
            name: name.to_string(),
            port: base_port + (std::process::id() % 1000) as u16,
        };
        let port = server.port.to_string();
        let id = server_id.to_string();
        let mut args = vec!["mariadb", name, &port, &id];
        args.extend_from_slice(flags);
        server.stack(&args)?;
        Ok(server)
    }

    /// The CA, server and client certificates its stack script made.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    fn stack(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(workspace().join("scripts/stack.sh"))
            .args(args)
            .env("STACK_DIR", &self.dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "stack.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    pub fn url(&self) -> String {
        mysql_url(self.port)
    }
}

impl Drop for PrivateServer {
    /// Stops the server and removes its data (a quarter of a gigabyte,
    /// mostly redo log, for each of the suite's private servers); its log
    /// stays, beside the data directory.
    fn drop(&mut self) {
        if self.stack(&["stop", &self.name]).is_ok() {
            let _ = std::fs::remove_dir_all(self.dir.join(&self.name));
        }
    }
}

/// The source config for the local stack.
pub fn source_config(prefix: &str, databases: &[&str], server_id: u32, extra: &str) -> String {
    source_config_at(
        &mysql_url(source_port()),
        prefix,
        databases,
        server_id,
        extra,
    )
}

/// The source config for the source server at `url`.
pub fn source_config_at(
    url: &str,
    prefix: &str,
    databases: &[&str],
    server_id: u32,
    extra: &str,
) -> String {
    let dbs: Vec<String> = databases.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[source]\nurl = \"{url}\"\nserver_id = {server_id}\ndatabases = [{}]\n{extra}\n\n[kafka]\nbootstrap_servers = \"{}\"\ntopic_prefix = \"{prefix}\"\nposition_interval_ms = 200\n",
        dbs.join(", "),
        kafka_servers()
    )
}

/// The sink config for the local stack.
pub fn sink_config(prefix: &str, group: &str, dest_port: u16, extra: &str) -> String {
    format!(
        "[kafka]\nbootstrap_servers = \"{}\"\ntopic_prefix = \"{prefix}\"\ngroup_id = \"{group}\"\ntopic_refresh_secs = 1\n\n[destination]\nurl = \"{}\"\n{extra}\n",
        kafka_servers(),
        mysql_url(dest_port)
    )
}

/// Runs a connector to completion and returns (exit code, stderr).
pub fn run_to_exit(
    binary_name: &str,
    label: &str,
    config_text: &str,
    timeout: Duration,
) -> Result<(i32, String)> {
    let dir = workspace().join("target/e2e");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join(format!("{label}.toml"));
    std::fs::write(&config, config_text)?;
    let mut child = Command::new(binary(binary_name))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err)?;
            return Ok((status.code().unwrap_or(-1), err));
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            anyhow::bail!("{label} did not exit within {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Names of the topics that start with `prefix`.
pub fn list_topics(prefix: &str) -> Result<Vec<String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_servers())
        .create()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// Every message of a topic (key, value), read from the beginning to its
/// end as it is now.
pub fn read_topic(topic: &str) -> Result<Vec<change_stream::kafka::KeyValue>> {
    let config = change_stream::kafka::client_config(&kafka_servers(), &Default::default());
    Ok(change_stream::kafka::read_to_end(
        &config,
        topic,
        Duration::from_secs(60),
    )?)
}

/// Drops a database on the given servers.
pub async fn drop_database(ports: &[u16], db: &str) -> Result<()> {
    for &p in ports {
        Db::connect(p)
            .await?
            .exec(&format!("DROP DATABASE IF EXISTS `{db}`"))
            .await?;
    }
    Ok(())
}

/// Runs the scenario in `tests/scenarios/<name>/`:
/// - `prepare.sql` on the source before the connectors start (the snapshot
///   reads what it leaves);
/// - `changes.sql` on the source once the destination has caught up (the
///   binlog carries those);
/// - `checks.sql`, if present: one query per line, run on the destination
///   at the end, each of which must return the single value 1.
///
/// `${DB}` in the files stands for the scenario's own database. After each
/// phase every table of that database must be equal on both sides: rows
/// (ordered by the primary key, or by every column) and CHECKSUM TABLE.
pub async fn run_scenario(name: &str) -> Result<()> {
    let dir = workspace().join("tests/scenarios").join(name);
    let read = |file: &str| -> Result<Option<String>> {
        let path = dir.join(file);
        Ok(path
            .exists()
            .then(|| std::fs::read_to_string(&path))
            .transpose()?)
    };
    let db = unique(&format!("t_{name}"));
    let subst = |s: String| s.replace("${DB}", &db);
    let prepare =
        subst(read("prepare.sql")?.ok_or_else(|| anyhow::anyhow!("{name}: no prepare.sql"))?);
    let changes =
        subst(read("changes.sql")?.ok_or_else(|| anyhow::anyhow!("{name}: no changes.sql"))?);
    let checks = read("checks.sql")?.map(subst);

    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!("USE `{db}`")).await?;
    src.exec(&prepare).await?;

    let prefix = unique(&format!("sc-{}", name.replace('_', "-")));
    let server_id = 6000 + (fingerprint_of(name) % 1000) as u32;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], server_id, ""),
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;

    let tables = scenario_tables(&mut src, &db).await?;
    let refs: Vec<(&str, &str)> = tables
        .iter()
        .map(|(t, o)| (t.as_str(), o.as_str()))
        .collect();
    let wait = Duration::from_secs(180);
    for phase in ["the snapshot", "the changes"] {
        if phase == "the changes" {
            src.exec(&changes).await?;
        }
        let r = wait_equal_watching(
            source_port(),
            dest_port(),
            &refs,
            wait,
            &mut [&mut source, &mut sink],
        )
        .await;
        r.map_err(|e| {
            anyhow::anyhow!(
                "{name}, after {phase}: {e:#}\nsource: {}\nsink: {}",
                source.log_tail(),
                sink.log_tail()
            )
        })?;
    }
    if let Some(checks) = checks {
        let mut dst = Db::connect(dest_port()).await?;
        dst.exec(&format!("USE `{db}`")).await?;
        for q in checks
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("--"))
        {
            let rows = dst.rows(q).await?;
            let ok =
                rows.len() == 1 && rows[0].len() == 1 && rows[0][0] == Value::Bytes(b"1".to_vec());
            anyhow::ensure!(
                ok,
                "{name}: check failed at the destination: {q} gave {rows:?}"
            );
        }
    }
    source.assert_running()?;
    sink.assert_running()?;
    Ok(())
}

pub(crate) fn fingerprint_of(s: &str) -> u64 {
    s.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    })
}

/// The base tables of `db`, each with an ORDER BY: its primary key, or
/// every column.
pub(crate) async fn scenario_tables(db_conn: &mut Db, db: &str) -> Result<Vec<(String, String)>> {
    let tables: Vec<String> = db_conn
        .conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
            (db,),
        )
        .await?;
    let mut out = Vec::new();
    for t in tables {
        let pk: Vec<String> = db_conn
            .conn
            .exec(
                "SELECT CONCAT('`', COLUMN_NAME, '`') FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
                (db, &t),
            )
            .await?;
        let order = if pk.is_empty() {
            let cols: Vec<String> = db_conn
                .conn
                .exec(
                    "SELECT CONCAT('`', COLUMN_NAME, '`') FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (db, &t),
                )
                .await?;
            cols.join(", ")
        } else {
            pk.join(", ")
        };
        out.push((format!("`{db}`.`{t}`"), order));
    }
    Ok(out)
}

impl Connector {
    /// The address its `[http]` server listens on, as it logs it.
    pub async fn http_addr(&self) -> Result<String> {
        self.wait_log("serving /metrics", Duration::from_secs(60))
            .await?;
        let text = self.log_text();
        let line = text
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .expect("waited for it");
        // A text line has `addr=...`; a json one an `addr` field.
        let addr = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => v["fields"]["addr"].as_str().map(str::to_string),
            Err(_) => line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(|a| a.trim_matches('"').to_string()),
        };
        addr.ok_or_else(|| anyhow::anyhow!("no address in: {line}"))
    }
}

/// `GET path` from an HTTP server at `addr`: status code and body.
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response: {text}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in: {head}"))?;
    Ok((code, body.to_string()))
}

/// The value of the Prometheus sample `name` whose labels include every
/// one of `labels` (`key="value"`), in the text of `/metrics`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Headless Chromium (Debian's, installed by `scripts/test.sh`; or
/// `TEST_CHROMIUM`), with what a closed network needs.
pub fn chromium(args: &[&str]) -> Result<std::process::Output> {
    let program = std::env::var("TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let profile = std::env::temp_dir().join(format!("e2e-chromium-{}-{n}", std::process::id()));
    let output = Command::new(&program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {program} ({e}): scripts/test.sh installs Debian's chromium"
            )
        })?;
    let _ = std::fs::remove_dir_all(&profile);
    Ok(output)
}
