//! sink-connector: consumes the change records of one source prefix and
//! applies them to a destination MariaDB.
//!
//! Stages, one file each: `consume.rs` (the Kafka consumer), `decode.rs`
//! (writer schemas and table definitions), `ddl.rs` (creating tables),
//! `apply.rs` (batches in transactions), `state.rs` (what has been applied),
//! `sql.rs` (literals). This file wires them.

mod apply;
mod config;
mod consume;
mod ddl;
mod decode;
mod error;
mod sql;
mod state;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use change_stream::table::TableId;
use clap::{Parser, Subcommand};
use rdkafka::Message;
use tokio::sync::watch;

use crate::apply::{Applier, Change};
use crate::config::Config;
use crate::consume::Input;
use crate::decode::Registry;
use crate::error::SinkError;
use crate::state::{record_order, Partition, PartitionState};

#[derive(Parser)]
#[command(
    name = "sink-connector",
    version,
    about = "Applies the change records of a source prefix to a destination MariaDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume and apply until stopped.
    Run {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    change_stream::process::run_main("sink-connector", async {
        match cli.command {
            Command::Run { config } => run(Config::load(&config)?).await,
        }
    })
}

async fn run(config: Config) -> Result<(), SinkError> {
    let client_config = change_stream::kafka::client_config(
        &config.kafka.bootstrap_servers,
        &config.kafka.properties,
    );
    // Fail fast, with the cause, on what a restart would not fix.
    let mut applier = Applier::connect(
        &config.destination.url,
        config.destination.connect_timeout_secs,
        config.apply.statement_max_bytes,
    )
    .await?;
    state::ensure_table(applier.conn(), &config.destination.state_database).await?;
    drop(applier);
    {
        let cc = client_config.clone();
        let servers = config.kafka.bootstrap_servers.clone();
        tokio::task::spawn_blocking(move || {
            change_stream::kafka::check_broker(&cc, Duration::from_secs(10))
        })
        .await
        .expect("blocking task")
        .map_err(|e| SinkError::Config {
            message: format!(
                "Kafka: cannot reach the broker at {servers}: {e}; check [kafka] bootstrap_servers"
            ),
        })?;
    }

    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        change_stream::process::wait_for_signal().await;
        tracing::info!("stopping after the batch in progress");
        let _ = shutdown_tx.send(true);
    });

    let mut registry = Registry::new(client_config.clone(), &config.kafka.topic_prefix);
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut shutdown = shutdown.clone();
        let attempt = Instant::now();
        match sync(&config, &client_config, &mut registry, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                if attempt.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1); // it had recovered
                }
                tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "lost a connection; continuing from the destination's applied position");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One attempt: positions from the destination, then consume and apply until
/// shutdown or an error.
async fn sync(
    config: &Config,
    client_config: &rdkafka::ClientConfig,
    registry: &mut Registry,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SinkError> {
    let state_db = &config.destination.state_database;
    let mut applier = Applier::connect(
        &config.destination.url,
        config.destination.connect_timeout_secs,
        config.apply.statement_max_bytes,
    )
    .await?;
    let mut applied = state::load(applier.conn(), state_db, &config.kafka.topic_prefix).await?;
    registry.refresh_schemas().await?;
    registry.refresh_definitions().await?;
    let mut input = Input::new(client_config, &config.kafka)?;
    let mut ready: HashSet<TableId> = HashSet::new();
    input.discover(&applied)?;
    create_tables(&mut applier, registry, &mut ready).await?;
    let mut last_discovery = Instant::now();
    let linger = Duration::from_millis(config.apply.batch_linger_ms);
    let refresh = Duration::from_secs(config.kafka.topic_refresh_secs);
    tracing::info!(partitions = applied.len(), "sink connector started");

    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if last_discovery.elapsed() >= refresh {
            if input.discover(&applied)? > 0 {
                // New table topics: their tables exist at the destination
                // even before (or without) any row.
                registry.refresh_definitions().await?;
                create_tables(&mut applier, registry, &mut ready).await?;
            }
            last_discovery = Instant::now();
        }
        // Collect a batch: up to the limits, or what arrives within the
        // linger time after the first record.
        let mut changes: Vec<Change> = Vec::new();
        let mut touched: HashMap<Partition, PartitionState> = HashMap::new();
        let mut count = 0usize;
        let mut bytes = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        while count < config.apply.batch_max_records && bytes < config.apply.batch_max_bytes {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
                None => refresh,
            };
            let msg = tokio::select! {
                m = tokio::time::timeout(wait, input.consumer.recv()) => m,
                _ = shutdown.changed() => break,
            };
            let msg = match msg {
                Err(_) => break,
                // The client retries transport failures itself.
                Ok(Err(e)) if !change_stream::kafka::is_fatal(&e) => {
                    tracing::debug!(error = %e, "the consumer reported a transient error");
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(SinkError::Kafka(format!(
                        "cannot consume: {}",
                        change_stream::kafka::describe(&e)
                    )))
                }
                Ok(Ok(m)) => m,
            };
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
            count += 1;
            let key: Partition = (msg.topic().to_string(), msg.partition());
            let st = touched
                .entry(key.clone())
                .or_insert_with(|| applied.get(&key).cloned().unwrap_or_default());
            if msg.offset() < st.next_offset {
                continue; // already applied
            }
            st.next_offset = msg.offset() + 1;
            let Some(payload) = msg.payload() else {
                continue;
            }; // tombstone
            bytes += payload.len();
            let (record, table) = registry.decode(payload).await.map_err(|e| {
                SinkError::Record(format!(
                    "{} partition {} offset {}: {e}",
                    key.0,
                    key.1,
                    msg.offset()
                ))
            })?;
            if let Some(order) = record_order(&record) {
                if st.last.is_some_and(|last| order <= last) {
                    continue; // sent again by the source after its restart
                }
                st.last = Some(order);
            }
            if table.id.database == *state_db {
                return Err(SinkError::Config {
                    message: format!(
                        "records of database {} arrive, which is the sink's state database; set destination.state_database to another name",
                        table.id.database
                    ),
                });
            }
            changes.push(Change { table, record });
        }
        if touched.is_empty() {
            continue;
        }
        for c in &changes {
            if !ready.contains(&c.table.id) {
                let definition = registry.definition(&c.table.id).await?;
                ddl::ensure_table(applier.conn(), &definition).await?;
                ready.insert(c.table.id.clone());
            }
        }
        let statements = apply::plan(&changes, applier.max_statement_bytes)?;
        let mut positions: Vec<(&Partition, &PartitionState)> = touched.iter().collect();
        positions.sort_by(|a, b| a.0.cmp(b.0));
        let state_sql = state::save_sql(state_db, &config.kafka.group_id, &positions);
        applier.apply(&statements, &state_sql).await?;
        input.commit_hint(&positions);
        tracing::debug!(
            records = changes.len(),
            statements = statements.len(),
            "batch applied"
        );
        applied.extend(touched);
    }
}

/// Creates, at the destination, every table the source has published a
/// definition of and that does not exist yet.
async fn create_tables(
    applier: &mut Applier,
    registry: &Registry,
    ready: &mut HashSet<TableId>,
) -> Result<(), SinkError> {
    for table in registry.definitions() {
        if !ready.contains(&table.id) {
            ddl::ensure_table(applier.conn(), table).await?;
            ready.insert(table.id.clone());
        }
    }
    Ok(())
}
