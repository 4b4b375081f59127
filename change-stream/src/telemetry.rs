//! What a running connector tells about itself: Prometheus metrics, its
//! health and a status document, served over HTTP when `[http] listen` is
//! set: `/metrics` (the Prometheus text format), `/healthz` (200 while the
//! connector works, 503 while it retries or after it failed), `/status`
//! (JSON) and `/`, the console (`console.html`, a page that reads
//! `/status` every two seconds and draws it).
//!
//! Stages report through the functions here as they go, once per batch,
//! chunk, rows event or transaction, never per row: counters and gauges go
//! to the `metrics` recorder, every series labelled with the topic prefix;
//! what the status document shows goes into one [`Status`] behind a mutex.
//! A task samples the lag and the rates once a second, keeping the last
//! ten minutes for the console's chart. Nothing here opens a connection:
//! whatever the status shows was reported by the stages, and so has no
//! password in it (errors name hosts, never URLs).
//!
//! Metric names follow what Debezium's connector metrics mean:
//! `tributary_source_milliseconds_behind_source` (now minus the commit time
//! of the last transaction read; 0 on a heartbeat of an idle binlog),
//! `tributary_sink_lag_milliseconds` (source commit to destination commit
//! of the last applied change), and so on (README, Operations).

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Samples the console's chart keeps: ten minutes, one a second.
pub const HISTORY: usize = 600;

/// Failed schema changes and conflicts the status keeps, newest first.
const RECENT: usize = 20;

/// The `[http]` section of both connectors' config files.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// `host:port` to serve `/metrics`, `/healthz`, `/status` and the
    /// console on (port 0: any free port, logged); off when absent.
    pub listen: Option<String>,
}

impl HttpSection {
    /// `Some(bad value)` when `listen` is not `host:port`.
    pub fn invalid_listen(&self) -> Option<String> {
        let listen = self.listen.as_ref()?;
        let ok = listen
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        (!ok).then(|| listen.clone())
    }
}

/// Whether the connector is doing its work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Starting,
    Running,
    /// A connection was lost or a statement failed: retrying.
    Retrying,
    /// It stopped on an error.
    Failed,
    Stopped,
}

/// The full synchronization of one table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TableProgress {
    pub table: String,
    pub rows: u64,
    /// The server's estimate (`information_schema.TABLES.TABLE_ROWS`).
    pub estimated_rows: Option<u64>,
    pub done: bool,
    pub rows_per_second: f64,
    /// Parts (key ranges) not read yet.
    #[serde(skip)]
    parts_left: usize,
    #[serde(skip)]
    rows_at_last_sample: u64,
}

/// The full synchronization, as far as this process has seen it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotStatus {
    pub running: bool,
    pub tables: Vec<TableProgress>,
    pub tables_remaining: usize,
    pub rows: u64,
    pub estimated_rows: u64,
    /// Seconds left at the rate of the last samples.
    pub eta_seconds: Option<u64>,
}

/// A schema change the destination refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailedDdl {
    pub at: String,
    pub statement: String,
    pub error: String,
}

/// Changes that found the destination's row other than they expected.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Conflicts {
    pub at: String,
    pub table: String,
    pub count: u64,
    pub resolution: String,
}

/// The last error, with when it happened (and, as recorded for
/// `status`, when the connector ran again after it stopped on it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LastError {
    pub at: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
}

/// One second of the chart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub at_ms: i64,
    pub lag_ms: Option<i64>,
    pub events_per_second: f64,
}

/// What `/status` returns.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub connector: String,
    pub prefix: String,
    pub version: String,
    pub started_at: String,
    pub health: Health,
    /// Why it is retrying or failed.
    pub health_detail: Option<String>,
    /// The last position stored (source) or committed (sink).
    pub position: Option<String>,
    pub lag_ms: Option<i64>,
    /// Change events read (source) or applied (sink).
    pub events_total: u64,
    pub events_per_second: f64,
    pub snapshot: SnapshotStatus,
    pub failed_ddl_total: u64,
    pub failed_ddl: VecDeque<FailedDdl>,
    pub conflicts_total: u64,
    pub conflicts: VecDeque<Conflicts>,
    pub retries_total: u64,
    pub last_error: Option<LastError>,
    pub history: VecDeque<Sample>,
    #[serde(skip)]
    events_at_last_sample: u64,
    /// The last lag measured, and when (Unix milliseconds).
    #[serde(skip)]
    lag_measured: Option<(i64, i64)>,
    /// Sink: the interval of the source's heartbeats, once one came.
    #[serde(skip)]
    heartbeat_interval_ms: Option<u64>,
}

struct Telemetry {
    connector: &'static str,
    status: Mutex<Status>,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Starts telemetry for `connector` (`source` or `sink`) of `prefix`: the
/// metrics recorder, the sampling task and, with `listen`, the HTTP server
/// (an address it cannot listen on is an error naming the setting).
/// Returns the address served. Called once, inside the runtime.
pub async fn start(
    connector: &'static str,
    prefix: &str,
    listen: Option<&str>,
) -> Result<Option<std::net::SocketAddr>, String> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .add_global_label("prefix", prefix)
        .install_recorder()
        .ok();
    let status = Status {
        connector: connector.to_string(),
        prefix: prefix.to_string(),
        version: crate::VERSION.to_string(),
        started_at: now_rfc3339(),
        ..Status::default()
    };
    let fresh = TELEMETRY
        .set(Telemetry {
            connector,
            status: Mutex::new(status),
            prometheus,
        })
        .is_ok();
    if fresh {
        metrics::gauge!("tributary_info", "connector" => connector, "version" => crate::VERSION)
            .set(1.0);
        tokio::spawn(sample_every_second());
    }
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        format!("[http] listen = \"{listen}\": cannot listen there: {e}; give a free host:port")
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new()
        .route("/", axum::routing::get(console))
        .route("/metrics", axum::routing::get(render_metrics))
        .route("/healthz", axum::routing::get(healthz))
        .route("/status", axum::routing::get(status_json));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the HTTP server stopped");
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz, /status and the console");
    Ok(Some(addr))
}

/// Resolves once the connector is running.
pub async fn until_running() {
    while status().health != Health::Running {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Changes the status, when telemetry has started.
fn with<R: Default>(f: impl FnOnce(&mut Status) -> R) -> R {
    match TELEMETRY.get() {
        Some(t) => f(&mut t.status.lock().expect("not poisoned")),
        None => R::default(),
    }
}

/// `source` or `sink`, for metric names.
fn side() -> &'static str {
    TELEMETRY.get().map_or("unknown", |t| t.connector)
}

/// A copy of the status now.
pub fn status() -> Status {
    with(|s| s.clone())
}

/// The connector works (connected, reading or applying).
pub fn running() {
    set_health(Health::Running, None);
}

/// The connector lost a connection or a statement failed, and retries.
pub fn retrying(why: &str) {
    // Not caught up while it cannot apply: heartbeats do not tell its lag.
    sink_caught_up(false);
    metrics::counter!("tributary_retries_total").increment(1);
    with(|s| s.retries_total += 1);
    error(why);
    set_health(Health::Retrying, Some(why));
}

/// The connector stops on an error.
pub fn failed(why: &str) {
    error(why);
    set_health(Health::Failed, Some(why));
}

/// The connector stopped as asked.
pub fn stopped() {
    set_health(Health::Stopped, None);
}

fn set_health(health: Health, why: Option<&str>) {
    let connected = matches!(health, Health::Running);
    metrics::gauge!(format!("tributary_{}_connected", side())).set(f64::from(u8::from(connected)));
    with(|s| {
        s.health = health;
        s.health_detail = why.map(str::to_string);
    });
}

/// Records the last error.
pub fn error(message: &str) {
    metrics::counter!("tributary_errors_total").increment(1);
    with(|s| {
        s.last_error = Some(LastError {
            at: now_rfc3339(),
            message: message.to_string(),
            resolved_at: None,
        })
    });
}

/// The position last stored or committed.
pub fn position(position: String) {
    with(|s| s.position = Some(position));
}

/// Source: `n` change events of kind `op` (`c`, `u`, `d`) read from the
/// binlog.
pub fn source_events(op: &'static str, n: u64) {
    if n == 0 {
        return;
    }
    metrics::counter!("tributary_source_events_total", "op" => op).increment(n);
    with(|s| s.events_total += n);
}

/// Source: a transaction committed at `commit_ms` (Unix milliseconds) was
/// read; `None` when the binlog is idle and read to its end.
pub fn source_behind(commit_ms: Option<i64>) {
    let lag = commit_ms.map_or(0, |t| (now_ms() - t).max(0));
    with(|s| set_lag(s, lag));
}

/// The lag now: measured, or, when no measure came for a while, the
/// last one plus the time since (a connector stuck on something shows as
/// falling behind; see [`sample`]).
fn set_lag(s: &mut Status, lag: i64) {
    s.lag_measured = Some((lag, now_ms()));
    show_lag(s, lag);
}

fn show_lag(s: &mut Status, lag: i64) {
    let name = if s.connector == "sink" {
        "tributary_sink_lag_milliseconds"
    } else {
        "tributary_source_milliseconds_behind_source"
    };
    metrics::gauge!(name).set(lag as f64);
    s.lag_ms = Some(lag);
}

/// How long a lag stands without a new measure before it grows: the
/// source measures at every transaction and at the server's heartbeat of
/// an idle binlog (2 s); a busy sink at every commit.
const LAG_STANDS_MS: i64 = 5000;

/// Source: the full synchronization starts with these tables, each with
/// the server's row estimate and the number of parts it is read in.
pub fn snapshot_plan(tables: Vec<(String, Option<u64>, usize)>) {
    metrics::gauge!("tributary_snapshot_running").set(1.0);
    metrics::gauge!("tributary_snapshot_tables_remaining").set(tables.len() as f64);
    with(|s| {
        s.snapshot.running = true;
        s.snapshot.tables = tables
            .into_iter()
            .map(|(table, estimated_rows, parts)| TableProgress {
                table,
                estimated_rows,
                parts_left: parts,
                ..TableProgress::default()
            })
            .collect();
        s.snapshot.tables_remaining = s.snapshot.tables.len();
    });
}

/// Source: `n` rows of `table` read by the full synchronization.
pub fn snapshot_rows(table: &str, n: u64) {
    metrics::counter!("tributary_snapshot_rows_total", "table" => table.to_string()).increment(n);
    with(|s| {
        s.events_total += n;
        if let Some(t) = s.snapshot.tables.iter_mut().find(|t| t.table == table) {
            t.rows += n;
        }
    });
}

/// Source: a part of `table` is read.
pub fn snapshot_part_done(table: &str) {
    with(|s| {
        if let Some(t) = s.snapshot.tables.iter_mut().find(|t| t.table == table) {
            t.parts_left = t.parts_left.saturating_sub(1);
            t.done = t.parts_left == 0;
        }
        s.snapshot.tables_remaining = s.snapshot.tables.iter().filter(|t| !t.done).count();
        metrics::gauge!("tributary_snapshot_tables_remaining")
            .set(s.snapshot.tables_remaining as f64);
    });
}

/// Source: the full synchronization is over (or was over before this
/// start).
pub fn snapshot_finished() {
    metrics::gauge!("tributary_snapshot_running").set(0.0);
    metrics::gauge!("tributary_snapshot_tables_remaining").set(0.0);
    with(|s| {
        s.snapshot.running = false;
        s.snapshot.tables_remaining = 0;
        s.snapshot.eta_seconds = None;
        for t in &mut s.snapshot.tables {
            t.done = true;
            t.rows_per_second = 0.0;
        }
    });
}

/// What a sink's batch applied, per operation.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// Inserts, updates, deletes and rows of the full synchronization.
    pub c: u64,
    pub u: u64,
    pub d: u64,
    pub r: u64,
    /// Source commit time of its newest change (Unix milliseconds).
    pub newest_ms: i64,
    /// GTID of its last binlog change.
    pub gtid: Option<String>,
}

impl Applied {
    /// Counts one change.
    pub fn count(&mut self, op: crate::event::Op, ts_ms: i64, gtid: Option<&str>) {
        use crate::event::Op;
        match op {
            Op::Create => self.c += 1,
            Op::Update => self.u += 1,
            Op::Delete => self.d += 1,
            Op::Read => self.r += 1,
        }
        self.newest_ms = self.newest_ms.max(ts_ms);
        if let Some(g) = gtid {
            self.gtid = Some(g.to_string());
        }
    }

    /// Adds another batch's counts (one destination transaction of
    /// several jobs).
    pub fn add(&mut self, other: &Applied) {
        self.c += other.c;
        self.u += other.u;
        self.d += other.d;
        self.r += other.r;
        self.newest_ms = self.newest_ms.max(other.newest_ms);
        if other.gtid.is_some() {
            self.gtid = other.gtid.clone();
        }
    }

    pub fn total(&self) -> u64 {
        self.c + self.u + self.d + self.r
    }
}

/// Sink: a batch was committed at the destination.
pub fn sink_applied(applied: &Applied) {
    metrics::counter!("tributary_sink_batches_total").increment(1);
    for (op, n) in [
        ("c", applied.c),
        ("u", applied.u),
        ("d", applied.d),
        ("r", applied.r),
    ] {
        if n > 0 {
            metrics::counter!("tributary_sink_applied_total", "op" => op).increment(n);
        }
    }
    let lag = (applied.newest_ms > 0).then(|| (now_ms() - applied.newest_ms).max(0));
    with(|s| {
        s.events_total += applied.total();
        if let Some(lag) = lag {
            set_lag(s, lag);
        }
        if let Some(g) = &applied.gtid {
            s.position = Some(g.clone());
        }
    });
}

/// Whether the sink has applied everything it has read.
static CAUGHT_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sink: whether everything read is applied (heartbeats then tell the
/// lag); returns what it was.
pub fn sink_caught_up(yes: bool) -> bool {
    CAUGHT_UP.swap(yes, std::sync::atomic::Ordering::Relaxed)
}

/// Sink: a heartbeat the source sent at `ts_ms`, one every `interval_ms`.
/// While the sink is caught up, its age is the lag.
pub fn sink_heartbeat(ts_ms: i64, interval_ms: u64) {
    let caught_up = CAUGHT_UP.load(std::sync::atomic::Ordering::Relaxed);
    with(|s| {
        s.heartbeat_interval_ms = Some(interval_ms);
        if caught_up {
            set_lag(s, (now_ms() - ts_ms).max(0));
        }
    });
}

/// Sink: a schema change failed at the destination and was recorded.
pub fn sink_failed_ddl(statement: &str, error: &str) {
    metrics::counter!("tributary_sink_failed_ddl_total").increment(1);
    with(|s| {
        s.failed_ddl_total += 1;
        s.failed_ddl.push_front(FailedDdl {
            at: now_rfc3339(),
            statement: statement.to_string(),
            error: error.to_string(),
        });
        s.failed_ddl.truncate(RECENT);
    });
}

/// Sink: `n` changes of `table` found the destination's rows other than
/// they expected, and were resolved so.
pub fn sink_conflicts(table: &str, n: u64, resolution: &str) {
    metrics::counter!("tributary_sink_conflicts_total", "resolution" => resolution.to_string())
        .increment(n);
    with(|s| {
        s.conflicts_total += n;
        s.conflicts.push_front(Conflicts {
            at: now_rfc3339(),
            table: table.to_string(),
            count: n,
            resolution: resolution.to_string(),
        });
        s.conflicts.truncate(RECENT);
    });
}

/// Once a second: the chart's sample, the rates and the snapshot's ETA.
async fn sample_every_second() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if let Some(t) = TELEMETRY.get() {
            if let Some(p) = &t.prometheus {
                p.run_upkeep();
            }
        }
        with(sample);
    }
}

fn sample(s: &mut Status) {
    // A lag not measured for a while grows. A caught-up sink measures
    // by heartbeats, if the source sends them: one missed is allowed for;
    // without any, an idle sink has nothing to be behind.
    if let Some((lag, at)) = s.lag_measured {
        let since = now_ms() - at;
        let stands = match (s.connector.as_str(), s.heartbeat_interval_ms) {
            ("sink", hb) if CAUGHT_UP.load(std::sync::atomic::Ordering::Relaxed) => {
                hb.map(|i| LAG_STANDS_MS.max(2 * i as i64 + 1000))
            }
            _ => Some(LAG_STANDS_MS),
        };
        if stands.is_some_and(|stands| since > stands) {
            show_lag(s, lag + since);
        }
    }
    // Rates smoothed over a few seconds: a batch lands in one second.
    let smooth = |old: f64, new: f64| 0.6 * old + 0.4 * new;
    let new = (s.events_total - s.events_at_last_sample) as f64;
    s.events_at_last_sample = s.events_total;
    s.events_per_second = smooth(s.events_per_second, new);
    let snapshot = &mut s.snapshot;
    let (mut rows, mut estimated, mut rate) = (0u64, 0u64, 0f64);
    for t in &mut snapshot.tables {
        let new = (t.rows - t.rows_at_last_sample) as f64;
        t.rows_at_last_sample = t.rows;
        t.rows_per_second = if t.done {
            0.0
        } else {
            smooth(t.rows_per_second, new)
        };
        rows += t.rows;
        estimated += t.estimated_rows.unwrap_or(0).max(t.rows);
        rate += t.rows_per_second;
    }
    snapshot.rows = rows;
    snapshot.estimated_rows = estimated;
    snapshot.eta_seconds = (snapshot.running && rate >= 1.0)
        .then(|| (estimated.saturating_sub(rows) as f64 / rate).round() as u64);
    s.history.push_back(Sample {
        at_ms: now_ms(),
        lag_ms: s.lag_ms,
        events_per_second: s.events_per_second,
    });
    while s.history.len() > HISTORY {
        s.history.pop_front();
    }
}

async fn console() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("console.html"))
}

async fn render_metrics() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let text = TELEMETRY
        .get()
        .and_then(|t| t.prometheus.as_ref())
        .map(|p| p.render())
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn healthz() -> (axum::http::StatusCode, String) {
    let s = status();
    let code = match s.health {
        Health::Starting | Health::Running => axum::http::StatusCode::OK,
        _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
    };
    let text = match &s.health_detail {
        Some(why) => format!("{}: {why}\n", name(s.health)),
        None => format!("{}\n", name(s.health)),
    };
    (code, text)
}

fn name(h: Health) -> &'static str {
    match h {
        Health::Starting => "starting",
        Health::Running => "running",
        Health::Retrying => "retrying",
        Health::Failed => "failed",
        Health::Stopped => "stopped",
    }
}

async fn status_json() -> axum::Json<Status> {
    axum::Json(status())
}

/// The status a connector running with `[http] listen` serves, when one
/// answers there (within two seconds).
pub async fn fetch(listen: &str) -> Option<Status> {
    // A server listening on every address answers on loopback.
    let host = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "127.0.0.1:");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{host}/status"))
        .send()
        .await
        .ok()?;
    response.json::<Status>().await.ok()
}

/// The lines of `status` for a running connector's status.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    line(
        "health",
        match &s.health_detail {
            Some(why) => format!("{}: {why}", name(s.health)),
            None => name(s.health).to_string(),
        },
    );
    line("running since", s.started_at.clone());
    line("position", s.position.clone().unwrap_or_else(|| "-".into()));
    line("lag", s.lag_ms.map_or("-".into(), |ms| format!("{ms} ms")));
    line(
        "events",
        format!("{} ({:.1}/s)", s.events_total, s.events_per_second),
    );
    let snap = &s.snapshot;
    if !snap.tables.is_empty() {
        let state = if snap.running { "running" } else { "done" };
        let eta = snap
            .eta_seconds
            .map_or(String::new(), |e| format!(", about {e} s left"));
        line(
            "full synchronization",
            format!(
                "{state}: {} of {} tables done, {} of ~{} rows{eta}",
                snap.tables.len() - snap.tables_remaining,
                snap.tables.len(),
                snap.rows,
                snap.estimated_rows
            ),
        );
        for t in &snap.tables {
            let est = t.estimated_rows.map_or("?".into(), |e| e.to_string());
            let state = if t.done {
                "done".to_string()
            } else {
                format!("{:.0} rows/s", t.rows_per_second)
            };
            line(
                "",
                format!("{}  {} / ~{est} rows  {state}", t.table, t.rows),
            );
        }
    }
    if s.connector == "sink" {
        line("failed schema changes", s.failed_ddl_total.to_string());
        line("conflicts", s.conflicts_total.to_string());
    }
    line("retries", s.retries_total.to_string());
    line(
        "last error",
        s.last_error
            .as_ref()
            .map_or("none".into(), |e| format!("{}  {}", e.at, e.message)),
    );
    out
}

/// Unix time now, milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn now_rfc3339() -> String {
    crate::process::now_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_give_rates_and_the_time_left() {
        let mut s = Status::default();
        s.snapshot.running = true;
        s.snapshot.tables = vec![TableProgress {
            table: "d.t".into(),
            estimated_rows: Some(1000),
            parts_left: 1,
            ..TableProgress::default()
        }];
        for _ in 0..20 {
            s.snapshot.tables[0].rows += 10;
            s.events_total += 10;
            sample(&mut s);
        }
        assert_eq!(s.snapshot.rows, 200);
        assert!((s.events_per_second - 10.0).abs() < 0.01);
        // 800 rows left at 10 a second.
        assert_eq!(s.snapshot.eta_seconds, Some(80));
        // Never more history than the chart shows.
        for _ in 0..HISTORY {
            sample(&mut s);
        }
        assert_eq!(s.history.len(), HISTORY);
        // An estimate below what was read counts what was read.
        s.snapshot.tables[0].rows = 1500;
        sample(&mut s);
        assert_eq!(s.snapshot.estimated_rows, 1500);
    }

    #[test]
    fn applied_counts_per_operation() {
        let mut a = Applied::default();
        a.count(crate::event::Op::Create, 5, Some("0-1-5"));
        a.count(crate::event::Op::Read, 9, None);
        a.count(crate::event::Op::Delete, 7, Some("0-1-7"));
        assert_eq!(
            (a.c, a.u, a.d, a.r, a.total(), a.newest_ms),
            (1, 0, 1, 1, 3, 9)
        );
        let mut b = Applied::default();
        b.add(&a);
        b.add(&a);
        assert_eq!((b.total(), b.gtid.as_deref()), (6, Some("0-1-7")));
    }
}
