//! Precheck reports: items that pass, warn or fail, each saying what was
//! found, what is required and how to fix it; printed as text or JSON.
//! Both connectors' `check` commands build one, and `run` refuses to start
//! when an item fails.

use serde::{Deserialize, Serialize};

/// `[check]`: the precheck's settings, the same in both connectors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// Items whose failure is acknowledged: reported as warnings, and not
    /// stopping `run`.
    #[serde(default)]
    pub acknowledge: Vec<String>,
}

impl CheckSection {
    /// The first acknowledged name that is none of `items`, with what is
    /// expected instead: `(expected, actual)` for a setting error.
    pub fn unknown(&self, items: &[&str]) -> Option<(String, String)> {
        self.acknowledge
            .iter()
            .find(|a| !items.contains(&a.as_str()))
            .map(|bad| {
                (
                    format!("names of check items ({})", items.join(", ")),
                    bad.clone(),
                )
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warning,
    Fail,
}

/// One checked item.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// Stable name, as `source.binlog_format`; what `[check] acknowledge`
    /// lists.
    pub id: String,
    pub status: Status,
    /// What was found.
    pub found: String,
    /// What is required.
    pub required: String,
    /// How to fix it (empty when it passed).
    pub fix: String,
    /// A failure the config acknowledged, shown as a warning.
    pub acknowledged: bool,
}

/// Every item of one check, in order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    pub fn pass(&mut self, id: &str, found: impl Into<String>, required: impl Into<String>) {
        self.push(id, Status::Pass, found, required, "");
    }

    pub fn push(
        &mut self,
        id: &str,
        status: Status,
        found: impl Into<String>,
        required: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.items.push(Item {
            id: id.to_string(),
            status,
            found: found.into(),
            required: required.into(),
            fix: fix.into(),
            acknowledged: false,
        });
    }

    /// Turns the failures of the listed items into acknowledged warnings.
    pub fn acknowledge(&mut self, ids: &[String]) {
        for item in &mut self.items {
            if item.status == Status::Fail && ids.iter().any(|i| i == &item.id) {
                item.status = Status::Warning;
                item.acknowledged = true;
            }
        }
    }

    pub fn failures(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.status == Status::Fail)
    }

    pub fn failed(&self) -> bool {
        self.failures().next().is_some()
    }

    fn count(&self, status: Status) -> usize {
        self.items.iter().filter(|i| i.status == status).count()
    }

    /// `12 items: 10 passed, 1 warning, 1 failed; success rate 92%` (the
    /// share of items that did not fail).
    pub fn summary(&self) -> String {
        let total = self.items.len();
        let failed = self.count(Status::Fail);
        let rate = self.success_rate();
        format!(
            "{total} items: {} passed, {} warning(s), {failed} failed; success rate {rate}%",
            self.count(Status::Pass),
            self.count(Status::Warning),
        )
    }

    /// Percentage of the items that did not fail.
    pub fn success_rate(&self) -> usize {
        let total = self.items.len();
        ((total - self.count(Status::Fail)) * 100)
            .checked_div(total)
            .unwrap_or(100)
    }

    /// One block per item, then the summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for i in &self.items {
            let status = match (i.status, i.acknowledged) {
                (Status::Pass, _) => "PASS",
                (Status::Warning, false) => "WARN",
                (Status::Warning, true) => "WARN (acknowledged failure)",
                (Status::Fail, _) => "FAIL",
            };
            out.push_str(&format!("{status:<5} {}\n", i.id));
            out.push_str(&format!("      found:    {}\n", i.found));
            out.push_str(&format!("      required: {}\n", i.required));
            if i.status != Status::Pass && !i.fix.is_empty() {
                out.push_str(&format!("      fix:      {}\n", i.fix));
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `{"items": [...], "summary": "...", "failed": n, "success_rate": p}`.
    pub fn json(&self) -> String {
        let failed = self.count(Status::Fail);
        serde_json::json!({
            "items": self.items,
            "summary": self.summary(),
            "passed": self.count(Status::Pass),
            "warnings": self.count(Status::Warning),
            "failed": failed,
            "success_rate": self.success_rate(),
        })
        .to_string()
    }

    /// The report as `text` or `json`.
    pub fn render(&self, format: &str) -> String {
        if format == "json" {
            self.json() + "\n"
        } else {
            self.text()
        }
    }

    /// Logs every item that did not pass (for `run`, which goes on).
    pub fn log_warnings(&self) {
        for w in self.items.iter().filter(|i| i.status != Status::Pass) {
            tracing::warn!(item = %w.id, found = %w.found, fix = %w.fix, "precheck warning");
        }
    }

    /// The `kafka.connect` item: whether the broker at `servers` answers.
    pub async fn broker(&mut self, config: &rdkafka::ClientConfig, servers: &str) -> bool {
        let cc = config.clone();
        let answer = tokio::task::spawn_blocking(move || {
            crate::kafka::check_broker(&cc, std::time::Duration::from_secs(10))
        })
        .await
        .expect("blocking task");
        let required = "the broker answers";
        match answer {
            Ok(()) => {
                self.pass("kafka.connect", format!("reached {servers}"), required);
                true
            }
            Err(e) => {
                self.push(
                    "kafka.connect",
                    Status::Fail,
                    format!("cannot reach the broker at {servers}: {e}"),
                    required,
                    "check [kafka] bootstrap_servers and that the broker runs",
                );
                false
            }
        }
    }

    /// The `kafka.schema_registry` item: whether the registry at `url`
    /// answers its Confluent-compatible API.
    pub async fn registry(&mut self, url: &str) {
        let required = "the schema registry answers (kafka.schema_registry_url)";
        let answer = match crate::registry::Registry::new(url) {
            Ok(r) => r.check().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(()) => self.pass(
                "kafka.schema_registry",
                format!("reached {}", crate::registry::shown(url)),
                required,
            ),
            Err(e) => self.push(
                "kafka.schema_registry",
                Status::Fail,
                e.to_string(),
                required,
                "check kafka.schema_registry_url and that the registry runs",
            ),
        }
    }

    /// For `run`: `Err` with the one-line refusal when an item failed
    /// (`command` shows the whole report), else the warnings are logged.
    pub fn gate(&self, command: &str) -> Result<(), String> {
        if self.failed() {
            return Err(self.refusal(command));
        }
        self.log_warnings();
        Ok(())
    }

    /// One line for `run`: the first failure and how many there are.
    pub fn refusal(&self, command: &str) -> String {
        let failures: Vec<&Item> = self.failures().collect();
        match failures.first() {
            None => String::new(),
            Some(first) => format!(
                "precheck failed: {}: {}; {}{}",
                first.id,
                first.found,
                first.fix,
                if failures.len() > 1 {
                    format!(
                        " ({} more failed item(s); `{command}` shows the whole report)",
                        failures.len() - 1
                    )
                } else {
                    String::new()
                }
            ),
        }
    }
}

/// `(major, minor, patch)` of a server version string such as
/// `10.11.9-MariaDB-log`.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let core = v.split(|c: char| c != '.' && !c.is_ascii_digit()).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The account's privileges, as `information_schema` lists them.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// Global privileges (`USER_PRIVILEGES`).
    pub global: Vec<String>,
    /// Database-level privileges (`SCHEMA_PRIVILEGES`): the database name
    /// or LIKE pattern, and the privilege.
    pub schema: Vec<(String, String)>,
}

impl Grants {
    /// The required privileges that are missing: each (any of its
    /// alternatives) must be global, or, when `on_databases` is set,
    /// granted on every one of `databases`.
    pub fn missing(
        &self,
        required: &[&[&str]],
        on_databases: bool,
        databases: &[String],
    ) -> Vec<String> {
        let has_global = |p: &str| self.global.iter().any(|g| g.eq_ignore_ascii_case(p));
        let has_on = |p: &str, db: &str| {
            self.schema
                .iter()
                .any(|(pattern, g)| g.eq_ignore_ascii_case(p) && like(pattern, db))
        };
        required
            .iter()
            .filter(|alternatives| {
                !alternatives.iter().any(|p| {
                    has_global(p)
                        || (on_databases
                            && !databases.is_empty()
                            && databases.iter().all(|db| has_on(p, db)))
                })
            })
            .map(|alternatives| alternatives.join(" or "))
            .collect()
    }
}

/// SQL `LIKE` as grants use it: `%`, `_`, and `\` escaping.
fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('_') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&p[2..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// The `GRANTEE` form (`'user'@'host'`) of `CURRENT_USER()`.
pub fn grantee(current_user: &str) -> String {
    match current_user.rsplit_once('@') {
        Some((u, h)) => format!("'{u}'@'{h}'"),
        None => format!("'{current_user}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("10.11.19-MariaDB-0+deb12u1-log"),
            Some((10, 11, 19))
        );
        assert_eq!(parse_version("11.4.2-MariaDB"), Some((11, 4, 2)));
        assert_eq!(parse_version("10.6"), Some((10, 6, 0)));
        assert!(parse_version("10.5.1").unwrap() < parse_version("10.11.0").unwrap());
        assert_eq!(parse_version("MariaDB"), None);
    }

    #[test]
    fn grants() {
        let g = Grants {
            global: vec!["REPLICATION SLAVE".into(), "BINLOG MONITOR".into()],
            schema: vec![
                ("shop".into(), "SELECT".into()),
                ("shop\\_%".into(), "SELECT".into()),
                ("shop".into(), "SHOW VIEW".into()),
            ],
        };
        let required: &[&[&str]] = &[
            &["REPLICATION SLAVE"],
            &["BINLOG MONITOR", "REPLICATION CLIENT"],
            &["SELECT"],
            &["SHOW VIEW"],
        ];
        let dbs = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            g.missing(required, true, &dbs(&["shop", "shop_eu"])),
            vec!["SHOW VIEW"]
        );
        assert!(g.missing(required, true, &dbs(&["shop"])).is_empty());
        assert_eq!(
            g.missing(required, true, &dbs(&["shopx"])),
            vec!["SELECT", "SHOW VIEW"]
        );
        assert_eq!(
            g.missing(required, false, &dbs(&["shop"])),
            vec!["SELECT", "SHOW VIEW"]
        );
        assert_eq!(grantee("root@127.0.0.1"), "'root'@'127.0.0.1'");
        assert!(
            like("a%", "abc")
                && like("a_c", "abc")
                && !like("a\\_c", "abc")
                && like("a\\_c", "a_c")
        );
    }

    #[test]
    fn report() {
        let mut r = Report::default();
        r.pass("a", "ok", "ok");
        r.push(
            "b",
            Status::Fail,
            "STATEMENT",
            "ROW",
            "SET GLOBAL binlog_format = ROW",
        );
        r.push("c", Status::Fail, "1 day", "7 days", "raise it");
        assert!(r.failed());
        assert_eq!(
            r.summary(),
            "3 items: 1 passed, 0 warning(s), 2 failed; success rate 33%"
        );
        assert!(r
            .refusal("x check")
            .starts_with("precheck failed: b: STATEMENT; SET GLOBAL"));
        r.acknowledge(&["c".to_string()]);
        assert_eq!(
            r.summary(),
            "3 items: 1 passed, 1 warning(s), 1 failed; success rate 66%"
        );
        assert!(r.text().contains("WARN (acknowledged failure) c"));
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["failed"], 1);
        assert_eq!(j["items"][1]["status"], "fail");
    }
}
