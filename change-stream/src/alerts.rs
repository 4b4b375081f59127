//! Alerts (`[alerts]`): the lag above a threshold for a while, and the
//! connector stopping on an error, told to a webhook (an HTTP POST of a
//! JSON document) and/or a command (run by `sh -c`, the alert in its
//! environment).
//!
//! One alert per episode: the lag alert fires once when the lag has been
//! above `latency_threshold_ms` for `latency_for_secs`, and is resolved
//! once when it comes back under. A failure alert fires when the
//! connector stops on an error (a retry window that runs out is one); its
//! episode ends when the connector next runs, which sends the resolved
//! message (the connectors record the failure where `status` reads it,
//! and whether it was resolved).
//!
//! Delivery is tried three times, a few seconds apart, then logged as
//! lost: an alert never stops or slows the pipeline (the lag watch runs
//! in its own task; a failure alert is waited for, within a bound, before
//! the process exits).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[alerts]` section of both connectors' config files.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// The lag (milliseconds behind the source; the sink's lag) above
    /// which a lag alert is due; none without it.
    pub latency_threshold_ms: Option<u64>,
    /// How long the lag must stay above the threshold, in seconds.
    #[serde(default = "default_latency_for_secs")]
    pub latency_for_secs: u64,
    /// Whether the connector stopping on an error is an alert.
    #[serde(default = "default_on_failure")]
    pub on_failure: bool,
    /// Where alerts are POSTed, as JSON (`http://` or `https://`).
    pub webhook_url: Option<String>,
    /// A command run by `sh -c` for each alert, with `TRIBUTARY_ALERT_*`
    /// in its environment (`KIND`, `STATE`, `CONNECTOR`, `PREFIX`,
    /// `MESSAGE`, `JSON`).
    pub command: Option<String>,
}

fn default_latency_for_secs() -> u64 {
    60
}

fn default_on_failure() -> bool {
    true
}

impl AlertsSection {
    /// Whether alerts go anywhere.
    pub fn delivered(&self) -> bool {
        self.webhook_url.is_some() || self.command.is_some()
    }

    /// The setting that is wrong, what it should be, and its value.
    pub fn invalid(&self) -> Option<(&'static str, &'static str, String)> {
        if let Some(url) = &self.webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || reqwest::Url::parse(url).is_err()
            {
                return Some((
                    "alerts.webhook_url",
                    "an http:// or https:// URL",
                    url.clone(),
                ));
            }
        }
        if self.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Some(("alerts.command", "a shell command", String::new()));
        }
        if !self.delivered() && (self.latency_threshold_ms.is_some()) {
            return Some((
                "alerts.latency_threshold_ms",
                "alerts.webhook_url or alerts.command set too, to deliver the alert",
                "no destination".into(),
            ));
        }
        None
    }
}

/// What an alert says, as POSTed and in `TRIBUTARY_ALERT_JSON`.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// `latency` or `failure`.
    pub kind: &'static str,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub connector: String,
    pub prefix: String,
    pub at: String,
    pub message: String,
    /// For `latency`: the lag and the threshold, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_ms: Option<u64>,
}

/// Delivers `alert` to every destination of `config`.
pub async fn deliver(config: &AlertsSection, alert: &Alert) {
    tracing::warn!(kind = alert.kind, state = alert.state, message = %alert.message, "alert");
    let json = serde_json::to_string(alert).expect("serializes");
    let webhook = async {
        let Some(url) = &config.webhook_url else {
            return;
        };
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alert not sent: no HTTP client");
                return;
            }
        };
        for attempt in 1..=3 {
            let sent = client
                .post(url)
                .header("content-type", "application/json")
                .body(json.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    tracing::warn!(status = %r.status(), attempt, "the alert webhook refused the alert")
                }
                Err(e) => tracing::warn!(error = %e, attempt, "the alert webhook is unreachable"),
            }
            if attempt < 3 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        tracing::error!(
            kind = alert.kind,
            state = alert.state,
            "alert lost: alerts.webhook_url did not take it"
        );
    };
    let command = async {
        let Some(command) = &config.command else {
            return;
        };
        let run = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("TRIBUTARY_ALERT_KIND", alert.kind)
            .env("TRIBUTARY_ALERT_STATE", alert.state)
            .env("TRIBUTARY_ALERT_CONNECTOR", &alert.connector)
            .env("TRIBUTARY_ALERT_PREFIX", &alert.prefix)
            .env("TRIBUTARY_ALERT_MESSAGE", &alert.message)
            .env("TRIBUTARY_ALERT_JSON", &json)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => tracing::error!(status = %s, "the alert command failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "the alert command cannot run"),
            Err(_) => tracing::error!("the alert command ran for 30 s: stopped"),
        }
    };
    tokio::join!(webhook, command);
}

/// Watches the lag once a second, firing and resolving lag alerts.
pub fn watch_lag(config: AlertsSection) {
    let Some(threshold) = config.latency_threshold_ms else {
        return;
    };
    let hold = Duration::from_secs(config.latency_for_secs);
    tokio::spawn(async move {
        let mut above_since: Option<std::time::Instant> = None;
        let mut firing = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let s = crate::telemetry::status();
            let lag = s.lag_ms.unwrap_or(0);
            let alert = |state, message: String| Alert {
                kind: "latency",
                state,
                connector: s.connector.clone(),
                prefix: s.prefix.clone(),
                at: crate::process::now_rfc3339(),
                message,
                lag_ms: Some(lag),
                threshold_ms: Some(threshold),
            };
            if lag > threshold as i64 {
                let since = *above_since.get_or_insert_with(std::time::Instant::now);
                if !firing && since.elapsed() >= hold {
                    firing = true;
                    let a = alert(
                        "firing",
                        format!(
                            "the {} lag is {lag} ms, above {threshold} ms for {} s",
                            s.connector, config.latency_for_secs
                        ),
                    );
                    deliver(&config, &a).await;
                }
            } else {
                above_since = None;
                if firing {
                    firing = false;
                    let a = alert(
                        "resolved",
                        format!(
                            "the {} lag is {lag} ms, under {threshold} ms again",
                            s.connector
                        ),
                    );
                    deliver(&config, &a).await;
                }
            }
        }
    });
}

/// The failure alert of a connector that stops on `message`.
pub async fn failure(config: &AlertsSection, connector: &str, prefix: &str, message: &str) {
    if !config.on_failure || !config.delivered() {
        return;
    }
    let alert = Alert {
        kind: "failure",
        state: "firing",
        connector: connector.to_string(),
        prefix: prefix.to_string(),
        at: crate::process::now_rfc3339(),
        message: format!("the {connector} connector stopped: {message}"),
        lag_ms: None,
        threshold_ms: None,
    };
    // Within a bound: the process is exiting.
    let _ = tokio::time::timeout(Duration::from_secs(60), deliver(config, &alert)).await;
}

/// The failure recorded at `at` ended: the connector runs again.
pub async fn failure_resolved(
    config: &AlertsSection,
    connector: &str,
    prefix: &str,
    at: &str,
    message: &str,
) {
    if !config.on_failure || !config.delivered() {
        return;
    }
    let alert = Alert {
        kind: "failure",
        state: "resolved",
        connector: connector.to_string(),
        prefix: prefix.to_string(),
        at: crate::process::now_rfc3339(),
        message: format!(
            "the {connector} connector runs again after it stopped at {at}: {message}"
        ),
        lag_ms: None,
        threshold_ms: None,
    };
    deliver(config, &alert).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let ok: AlertsSection =
            toml::from_str("latency_threshold_ms = 5000\nwebhook_url = \"http://127.0.0.1:1/x\"")
                .unwrap();
        assert!(ok.invalid().is_none());
        assert_eq!((ok.latency_for_secs, ok.on_failure), (60, true));
        let bad: AlertsSection = toml::from_str("webhook_url = \"ftp://x\"").unwrap();
        assert_eq!(bad.invalid().unwrap().0, "alerts.webhook_url");
        let nowhere: AlertsSection = toml::from_str("latency_threshold_ms = 5").unwrap();
        assert_eq!(nowhere.invalid().unwrap().0, "alerts.latency_threshold_ms");
        assert!(toml::from_str::<AlertsSection>("latency = 5").is_err());
    }
}
