//! Progress bars of the full synchronization on a terminal (indicatif):
//! one per table and one overall, drawn from what telemetry knows of the
//! snapshot, redrawn four times a second until it ends. Only when standard
//! error is a terminal and logs are text; otherwise the log lines say it.
//! Log lines written meanwhile go above the bars ([`LogWriter`]), never
//! through them.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars while they are shown.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Where log lines go: standard error, above the bars while they are shown.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = BARS.lock().expect("not poisoned").clone();
        match bars {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Whether bars are drawn: standard error a terminal, logs as text.
pub fn wanted() -> bool {
    crate::process::log_format() == crate::process::LogFormat::Text
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Draws the bars until the full synchronization ends (or never started).
pub fn show_snapshot() {
    tokio::spawn(async {
        // Until the plan is known. A small snapshot can start and end
        // between two looks: its plan is still there, and its bars are
        // drawn finished.
        let mut waited = 0;
        loop {
            let s = crate::telemetry::status();
            if s.snapshot.running || !s.snapshot.tables.is_empty() {
                break;
            }
            if waited > 600 || s.health == crate::telemetry::Health::Failed {
                return;
            }
            waited += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        *BARS.lock().expect("not poisoned") = Some(multi.clone());
        let table_style = ProgressStyle::with_template(
            "{prefix:<40!} [{bar:30.cyan/blue}] {pos:>10}/{len:<10} {msg}",
        )
        .expect("a template")
        .progress_chars("=> ");
        let total_style = ProgressStyle::with_template(
            "{prefix:<40!} [{bar:30.green/white}] {pos:>10}/{len:<10} {msg}",
        )
        .expect("a template")
        .progress_chars("=> ");
        let total = multi.add(ProgressBar::new(0).with_style(total_style));
        total.set_prefix("full synchronization");
        let mut bars: HashMap<String, ProgressBar> = HashMap::new();
        loop {
            let s = crate::telemetry::status();
            let snap = &s.snapshot;
            for t in &snap.tables {
                let bar = bars.entry(t.table.clone()).or_insert_with(|| {
                    let b = multi
                        .insert_before(&total, ProgressBar::new(0).with_style(table_style.clone()));
                    b.set_prefix(t.table.clone());
                    b
                });
                bar.set_length(t.estimated_rows.unwrap_or(0).max(t.rows));
                bar.set_position(t.rows);
                if t.done {
                    if !bar.is_finished() {
                        bar.set_length(t.rows);
                        bar.finish_with_message("done");
                    }
                } else {
                    bar.set_message(format!("{:.0} rows/s", t.rows_per_second));
                }
            }
            // From the tables as they are now (the status's sums are of
            // the last second).
            let rows: u64 = snap.tables.iter().map(|t| t.rows).sum();
            let estimated: u64 = snap
                .tables
                .iter()
                .map(|t| {
                    if t.done {
                        t.rows
                    } else {
                        t.estimated_rows.unwrap_or(0).max(t.rows)
                    }
                })
                .sum();
            let left = snap.tables.iter().filter(|t| !t.done).count();
            total.set_length(estimated);
            total.set_position(rows);
            total.set_message(match snap.eta_seconds {
                Some(eta) => format!("{left} table(s) left, about {eta} s"),
                None => format!("{left} table(s) left"),
            });
            if !snap.running {
                total.set_length(rows);
                total.finish_with_message("done");
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        *BARS.lock().expect("not poisoned") = None;
    });
}
