//! What both connector processes do the same way: logging and signals.

/// How log lines are written: `text` for a person, `json` (one object per
/// line, as `tracing-subscriber` writes it) for a log collector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// `text` or `json`, as `--log-format` takes them.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    /// The format a run logs in: `--log-format` when given, else the config
    /// file's `[log] format`, else text. The file is only peeked at here
    /// (logging starts before the config is loaded); an unreadable file or
    /// an invalid value falls back to text, and loading the config then
    /// reports it.
    pub fn choose(flag: Option<&str>, config: Option<&std::path::Path>) -> LogFormat {
        if let Some(f) = flag.and_then(LogFormat::parse) {
            return f;
        }
        config
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
            .and_then(|t| {
                t.get("log")?
                    .get("format")?
                    .as_str()
                    .and_then(LogFormat::parse)
            })
            .unwrap_or_default()
    }
}

/// The `[log]` section of both connectors' config files.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (the default) or `json`; `--log-format` overrides it.
    #[serde(default)]
    pub format: LogFormat,
}

/// Runs a connector's main future on a multi-threaded runtime with logging
/// set up; an error is printed as one line, `<name>: error: <error>` (in
/// the json format, one object whose level is ERROR), and gives exit code 1.
///
/// SIGTERM and SIGINT are caught from the start. Once the main future
/// waits for them ([`wait_for_signal`]) it decides how to stop; before
/// that (a connector still starting: its precheck, its first connections,
/// a broker it waits for) the future is dropped, as a crash would end it,
/// which every stage is built to survive: `run` then exits 0 (a stop), any
/// other subcommand 1 (it did not finish).
pub fn run_main<E: std::fmt::Display>(
    name: &str,
    format: LogFormat,
    main: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    init_logging(format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        tokio::select! {
            r = main => r.map_err(|e| e.to_string()),
            () = signals_until_waited_for() => {
                if STOP_IS_CLEAN.load(std::sync::atomic::Ordering::SeqCst) {
                    tracing::info!("stopped while starting");
                    Ok(())
                } else {
                    Err("stopped by a signal before it finished".to_string())
                }
            }
        }
    });
    // A blocking call still waiting for a server that does not answer (a
    // broker that is down) must not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match format {
                LogFormat::Text => eprintln!("{name}: error: {e}"),
                LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({
                        "timestamp": now_rfc3339(),
                        "level": "ERROR",
                        "target": name,
                        "fields": { "message": format!("error: {e}") },
                    })
                ),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`): as
/// text, with colours only on a terminal, or as one JSON object per line.
pub fn init_logging(format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(|| crate::progress::LogWriter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// The format logging was set up with.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// The format logs are written in.
pub fn log_format() -> LogFormat {
    LOG_FORMAT.get().copied().unwrap_or_default()
}

/// The time now as `tracing-subscriber`'s json lines write it (UTC,
/// RFC 3339 with microseconds), for the one line written after logging.
pub fn now_rfc3339() -> String {
    use tracing_subscriber::fmt::time::FormatTime;
    let mut s = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime
        .format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut s));
    s
}

/// Whether a signal came, and whether the main future waits for it.
static STOP: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> = std::sync::OnceLock::new();
static WAITED_FOR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static STOP_IS_CLEAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stop() -> &'static tokio::sync::watch::Sender<bool> {
    STOP.get_or_init(|| tokio::sync::watch::channel(false).0)
}

/// A signal before [`wait_for_signal`] is a stop, not a failure (`run`).
pub fn stopping_while_starting_is_clean() {
    STOP_IS_CLEAN.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Catches SIGTERM and SIGINT from the start; returns at one that comes
/// before the main future waits for them, never after.
async fn signals_until_waited_for() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop().send_replace(true);
        if !WAITED_FOR.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
    }
}

/// Resolves on SIGTERM or SIGINT, at once if one came already.
pub async fn wait_for_signal() {
    WAITED_FOR.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut rx = stop().subscribe();
    let _ = rx.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_config_file_which_wins_over_text() {
        let dir = std::env::temp_dir().join(format!("log-format-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("json.toml");
        std::fs::write(&json, "[kafka]\nx = 1\n\n[log]\nformat = \"json\"\n").unwrap();
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[log]\nformat = \"xml\"\n").unwrap();
        assert_eq!(LogFormat::choose(None, Some(&json)), LogFormat::Json);
        assert_eq!(
            LogFormat::choose(Some("text"), Some(&json)),
            LogFormat::Text
        );
        assert_eq!(LogFormat::choose(None, Some(&bad)), LogFormat::Text);
        assert_eq!(
            LogFormat::choose(None, Some(&dir.join("absent"))),
            LogFormat::Text
        );
        assert_eq!(LogFormat::choose(Some("json"), None), LogFormat::Json);
        let section: LogSection = toml::from_str("format = \"json\"").unwrap();
        assert_eq!(section.format, LogFormat::Json);
        assert!(toml::from_str::<LogSection>("format = \"xml\"").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
