//! sink-connector: consumes the change records of one source prefix and
//! applies them to a destination MariaDB.
//!
//! Stages, one file each, in the order a record goes through them:
//! - intake: `consume.rs` (the Kafka consumers), `intake.rs` (records into a
//!   batch: decoded by `decode.rs`, named by `mapping.rs`, filtered);
//! - ordering: `order.rs` (every partition's position, and whole source
//!   transactions in commit order), `ddl.rs` (schema changes in order,
//!   partitions held where they fall);
//! - planning: `apply.rs` (folding a batch per key into statements);
//! - applying: `lanes.rs` (destination connections, commits with the
//!   positions, `state.rs`), `schema_apply.rs` (running a schema change
//!   once), `indexes.rs` (secondary indexes after the full sync).
//!
//! Beside them: `heartbeat.rs` (the lag of a sink with nothing to apply)
//! and `status.rs`, `reset.rs` (the `status` and `reset` subcommands).
//!
//! This file wires them: a batch from intake, what ordering releases,
//! planned and handed to the lanes, then the schema changes now due.

mod apply;
mod check;
mod config;
mod conflicts;
mod consume;
mod ddl;
mod decode;
mod error;
mod heartbeat;
mod indexes;
mod intake;
mod lanes;
mod mapping;
mod order;
mod reset;
mod schema_apply;
mod sql;
mod state;
mod status;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use change_stream::table::TableId;
use change_stream::topics;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

use crate::apply::{Applier, Change};
use crate::config::{Config, ConflictMode, ConflictPolicy, Consistency};
use crate::consume::{Input, SchemaFeed};
use crate::ddl::DdlQueue;
use crate::decode::Registry;
use crate::error::SinkError;
use crate::intake::Intake;
use crate::lanes::{Job, Lanes};
use crate::mapping::Mapping;
use crate::order::Assembly;
use crate::state::{Partition, PartitionState};

/// How often topics are looked for while no table topic is known.
const FIRST_TOPICS_EVERY: Duration = Duration::from_millis(200);

/// mimalloc: the connectors allocate and free many small values per row
/// (decoded records, SQL literals), across threads; glibc's allocator spent
/// a third of the sink's time on that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sink-connector",
    version,
    about = "Applies the change records of a source prefix to a destination MariaDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `text` or `json` (one object per line); overrides `[log] format`.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume and apply until stopped.
    Run {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the destination, the account and the broker, item by item;
    /// exits non-zero when an item fails.
    Check {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// List the schema changes that failed at the destination.
    FailedDdl {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// List the changes that found the destination's row other than they
    /// expected (`apply.on_row_conflict`), oldest first.
    Conflicts {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Set where the next run starts reading: the beginning of the topics
    /// or a time; optionally drop the destination's replicated databases
    /// first (rebuild). The sink must be stopped.
    Reset {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// Replay every topic from its beginning.
        #[arg(
            long,
            conflicts_with = "to_timestamp",
            required_unless_present = "to_timestamp"
        )]
        to_beginning: bool,
        /// Replay from the first record stamped at or after this time
        /// (Unix milliseconds or an RFC 3339 UTC time).
        #[arg(long, value_name = "T")]
        to_timestamp: Option<String>,
        /// Drop the databases the prefix's tables land in first.
        #[arg(long)]
        drop_databases: bool,
        /// Confirms --drop-databases.
        #[arg(long)]
        yes: bool,
    },
    /// Print where the sink is (positions and records behind, failed
    /// schema changes, conflicts, last error), without running it; with
    /// the running sink's own status when `[http] listen` answers.
    Status {
        /// Path of the TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

impl Command {
    /// The config file the subcommand reads.
    fn config(&self) -> &std::path::Path {
        match self {
            Command::Run { config, .. }
            | Command::Check { config, .. }
            | Command::FailedDdl { config, .. }
            | Command::Conflicts { config, .. }
            | Command::Status { config, .. }
            | Command::Reset { config, .. } => config,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = change_stream::process::LogFormat::choose(
        cli.log_format.as_deref(),
        Some(cli.command.config()),
    );
    change_stream::process::run_main("sink-connector", log_format, async {
        match cli.command {
            Command::Run { config: path } => {
                change_stream::process::stopping_while_starting_is_clean();
                run(Config::load(&path)?, &path).await
            }
            Command::Check { config, format } => {
                let report = check::report(&Config::load(&config)?).await;
                print!("{}", report.render(&format));
                if report.failed() {
                    return Err(SinkError::Precheck(report.summary()));
                }
                Ok(())
            }
            Command::FailedDdl { config } => failed_ddl(Config::load(&config)?).await,
            Command::Conflicts { config } => list_conflicts(Config::load(&config)?).await,
            Command::Status { config, format } => {
                status::print(&Config::load(&config)?, &format).await
            }
            Command::Reset {
                config,
                to_timestamp,
                drop_databases,
                yes,
                ..
            } => {
                let from = match to_timestamp {
                    Some(t) => reset::From::Timestamp(
                        reset::parse_timestamp(&t)
                            .map_err(|message| SinkError::Config { message })?,
                    ),
                    None => reset::From::Beginning,
                };
                reset::reset(&Config::load(&config)?, from, drop_databases, yes).await
            }
        }
    })
}

/// Runs the connector after its precheck; its telemetry told how it
/// ends, and the error that stops it recorded for `status`.
async fn run(config: Config, path: &std::path::Path) -> Result<(), SinkError> {
    change_stream::telemetry::start(
        "sink",
        &config.kafka.topic_prefix,
        config.http.listen.as_deref(),
    )
    .await
    .map_err(|message| SinkError::Config { message })?;
    change_stream::alerts::watch_lag(config.alerts.clone());
    if config.alerts.on_failure && config.alerts.delivered() {
        let config = config.clone();
        tokio::spawn(async move { status::resolve_failure(&config).await });
    }
    let result = async {
        check::report(&config)
            .await
            .gate(&format!("sink-connector check --config {}", path.display()))
            .map_err(SinkError::Precheck)?;
        consume_and_apply(&config).await
    }
    .await;
    match &result {
        Ok(()) => change_stream::telemetry::stopped(),
        Err(e) => {
            change_stream::telemetry::failed(&e.to_string());
            // For `status`; best effort (the destination may be what
            // failed).
            let record = async {
                let mut applier = state_session(&config).await?;
                state::record_last_error(
                    applier.conn(),
                    &config.destination.state_database,
                    &config.kafka.topic_prefix,
                    &config.kafka.group_id,
                    &e.to_string(),
                )
                .await
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), record).await;
            change_stream::alerts::failure(
                &config.alerts,
                "sink",
                &config.kafka.topic_prefix,
                &e.to_string(),
            )
            .await;
        }
    }
    result
}

/// Consumes and applies until stopped or a definite error, retrying
/// what may pass.
async fn consume_and_apply(config: &Config) -> Result<(), SinkError> {
    let client_config = change_stream::kafka::client_config(
        &config.kafka.bootstrap_servers,
        &config.kafka.properties,
    );
    // Fail fast, with the cause, on what a restart would not fix.
    drop(state_session(config).await?);
    if let Some(url) = &config.kafka.schema_registry_url {
        change_stream::registry::install_reader(url).map_err(crate::error::from_registry)?;
    }
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

    heartbeat::spawn(
        &client_config,
        &config.kafka.topic_prefix,
        &config.kafka.group_id,
    );
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        change_stream::process::wait_for_signal().await;
        tracing::info!("stopping after the batch in progress");
        let _ = shutdown_tx.send(true);
    });

    let mut registry = Registry::new(client_config.clone(), &config.kafka.topic_prefix);
    // Lost connections and failing statements are retried, each within
    // its window; anything else ends the sink at once.
    let mut connection_retries = change_stream::retry::Retries::default();
    let mut other_retries = change_stream::retry::Retries::default();
    // The consumer waits for the broker without end; this ends the wait
    // after the connection window.
    let watch = change_stream::kafka::watch_broker(
        client_config.clone(),
        change_stream::retry::minutes(config.retry.connection_window_minutes),
        change_stream::kafka::PROBE_EVERY,
    );
    tokio::pin!(watch);
    let attempts = async {
        loop {
            let mut shutdown = shutdown.clone();
            let attempt = Instant::now();
            let e = match sync(config, &client_config, &mut registry, &mut shutdown).await {
                Ok(()) => return Ok(()),
                Err(e) if *shutdown.borrow() => return Err(e),
                Err(e) => e,
            };
            let (retries, key, minutes, what) = if e.is_transient() {
                (
                    &mut connection_retries,
                    "connection_window_minutes",
                    config.retry.connection_window_minutes,
                    "lost a connection",
                )
            } else if e.is_statement_failure() {
                (
                    &mut other_retries,
                    "other_window_minutes",
                    config.retry.other_window_minutes,
                    "a statement failed at the destination",
                )
            } else {
                return Err(e);
            };
            let delay = match retries.failure(attempt.elapsed(), change_stream::retry::minutes(minutes)) {
            Ok(d) => d,
            Err(failing) => {
                return Err(SinkError::RetriesExhausted(format!(
                    "{e}; still failing after {} minutes of retries (retry.{key} = {minutes}); the applied position is kept at the destination: fix the cause and start the sink again",
                    failing.as_secs() / 60
                )))
            }
        };
            tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "{what}; retrying from the destination's applied position");
            change_stream::telemetry::retrying(&e.to_string());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    };
    tokio::select! {
        r = attempts => r,
        message = &mut watch => Err(SinkError::RetriesExhausted(message)),
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
    let mapping = config.mapping()?;
    let mut applier = Applier::connect(
        &config.destination,
        config.destination.connect_timeout_secs,
        config.apply.statement_max_bytes,
    )
    .await?;
    applier.take_origins(config.apply.origin_server_id).await;
    applier.conflicts =
        (config.apply.on_row_conflict != ConflictPolicy::Off).then(|| conflicts::Settings {
            policy: config.apply.on_row_conflict,
            state_database: state_db.clone(),
            prefix: config.kafka.topic_prefix.clone(),
        });
    let mut applied = state::load(applier.conn(), state_db, &config.kafka.topic_prefix).await?;
    // The transaction topic's position holds only while transactions are
    // kept whole: once records are applied without it, it is forgotten,
    // and a later start in transaction mode can tell (see run_loop).
    let transactions = (topics::transaction_topic(&config.kafka.topic_prefix), 0);
    if config.apply.consistency == Consistency::Row && applied.remove(&transactions).is_some() {
        state::forget(applier.conn(), state_db, &transactions.0).await?;
    }
    registry.refresh_schemas().await?;
    registry.refresh_definitions().await?;
    if applied.is_empty() {
        // First start: every conflicting table is reported before anything
        // is written.
        let mapped: Vec<_> = registry
            .definitions()
            .iter()
            .map(|d| std::sync::Arc::new(mapping.schema(d)))
            .collect();
        ddl::check_conflicts(applier.conn(), &mapped, config.schema.on_conflict).await?;
    }
    let mut appliers = Vec::with_capacity(config.apply.connections);
    for _ in 0..config.apply.connections {
        let mut lane = Applier::connect(
            &config.destination,
            config.destination.connect_timeout_secs,
            config.apply.statement_max_bytes,
        )
        .await?;
        lane.origins = applier.origins;
        lane.conflicts = applier.conflicts.clone();
        appliers.push(lane);
    }
    let mut lanes = Lanes::start(appliers, 2 * config.apply.batch_max_bytes);
    let result = run_loop(
        config,
        client_config,
        registry,
        shutdown,
        &mut applier,
        &mut applied,
        &mut lanes,
    )
    .await;
    // On shutdown as on an error: what the lanes are doing ends first.
    lanes.close().await;
    result
}

/// Consumes and applies until shutdown or an error.
#[allow(clippy::too_many_arguments)] // the attempt's state, lent to its loop
async fn run_loop(
    config: &Config,
    client_config: &rdkafka::ClientConfig,
    registry: &mut Registry,
    shutdown: &mut watch::Receiver<bool>,
    applier: &mut Applier,
    applied: &mut HashMap<Partition, PartitionState>,
    lanes: &mut Lanes,
) -> Result<(), SinkError> {
    let state_db = &config.destination.state_database;
    let mapping = config.mapping()?;
    let whole_transactions = config.apply.consistency == Consistency::Transaction;
    let input = Input::new(
        client_config,
        &config.kafka,
        whole_transactions,
        config.apply.batch_max_records,
    )?;
    let transactions = (topics::transaction_topic(&config.kafka.topic_prefix), 0);
    // Table positions stored without the transaction topic's: records were
    // applied in row mode (or by a version before transaction metadata),
    // and transactions already on the transaction topic are partly applied
    // already; they could never be made whole.
    let switched = whole_transactions
        && !applied.contains_key(&transactions)
        && applied
            .keys()
            .any(|(t, _)| topics::is_table_topic(&config.kafka.topic_prefix, t));
    if switched && input.holds_records(&transactions.0)? {
        return Err(SinkError::Config {
            message: format!(
                "this destination was synchronized with apply.consistency = \"row\" (or by an earlier version), so transactions on {} are partly applied there already and cannot be applied whole: keep apply.consistency = \"row\" for it, or synchronize it again from an empty destination",
                transactions.0
            ),
        });
    }
    let schema_changes_at = applied
        .get(&(topics::schema_changes_topic(&config.kafka.topic_prefix), 0))
        .map_or(0, |s| s.next_offset);
    let schema_feed =
        SchemaFeed::new(client_config, &config.kafka.topic_prefix, schema_changes_at)?;
    let mut intake = Intake::new(config, input, schema_feed)?;
    // Changes made at the destination itself come back around a ring:
    // not applied there again (unless the source has the destination's
    // server id, which the precheck refuses).
    let source_server_id = crate::consume::source_server(client_config, &config.kafka.topic_prefix)
        .await
        .and_then(|(id, _)| id);
    intake.home = (source_server_id != Some(applier.server_id)).then_some(applier.server_id);
    // Every partition's position; transactions held until whole.
    let mut assembly = Assembly::new(&config.kafka.topic_prefix, applied);
    // Whole transactions: positions of different lanes must never be
    // stored out of the order they were taken in (a kill between two
    // lanes' commits would store a table's partition past transactions the
    // transaction topic's position has not passed). So a job for the first
    // lane alone waits for the other lanes' jobs (`spread`), and a batch
    // spread over the lanes waits for the first lane's (`first_busy`).
    let mut spread = false;
    let mut first_busy = false;
    // Whether the first lane's destination transaction is left open.
    let mut open = false;
    let mut ready: HashSet<TableId> = HashSet::new();
    intake.input.discover(applied)?;
    let mut last_discovery = Instant::now();
    let refresh = Duration::from_secs(config.kafka.topic_refresh_secs);
    let prefix = config.kafka.topic_prefix.as_str();
    let schema_changes = topics::schema_changes_topic(prefix);
    let mut ddl_queue = DdlQueue::default();
    let mut row_limit = change_stream::throttle::Limiter::new(config.throttle.rows_per_second);
    let mut byte_limit =
        change_stream::throttle::Limiter::new(config.throttle.mb_per_second * 1_000_000.0);
    tracing::info!(partitions = applied.len(), "sink connector started");
    change_stream::telemetry::running();

    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        lanes.check().await?;
        // Until the first table topic shows up (a sink started before its
        // source), it is looked for often: the full sync starts with it.
        let refresh = if intake.input.has_table_topics() {
            refresh
        } else {
            refresh.min(FIRST_TOPICS_EVERY)
        };
        if last_discovery.elapsed() >= refresh {
            intake.input.discover(applied)?;
            last_discovery = Instant::now();
        }
        let batch = intake
            .batch(
                config,
                registry,
                &mut assembly,
                &mut ddl_queue,
                applied,
                lanes,
                shutdown,
                refresh,
            )
            .await?;
        let (mut changes, mut moved, bytes) = (batch.changes, batch.moved, batch.bytes);
        // The transaction topic's position is stored from the first batch
        // on, so that a restart can tell it from a start after row mode.
        if whole_transactions && !applied.contains_key(&transactions) {
            moved.insert(transactions.clone());
        }
        // Whole transactions: those now whole, in commit order, or the
        // next part of one too large to hold.
        let released = assembly.step(config.apply.batch_max_bytes, |t| intake.input.partitions(t));
        changes.extend(released.changes);
        moved.extend(released.partitions);
        let commits = !released.open;
        let caught_up =
            changes.is_empty() && !released.open && ddl_queue.head().is_none() && lanes.idle();
        if change_stream::telemetry::sink_caught_up(caught_up) != caught_up {
            tracing::debug!(
                caught_up,
                changes = changes.len(),
                open = released.open,
                ddl = ddl_queue.head().is_some(),
                lanes_idle = lanes.idle(),
                "caught up or not"
            );
        }
        // Transactions go to the first lane, all in one destination
        // transaction; so does a batch in the first lane's open one, or
        // with no rows for the other lanes.
        let single = whole_transactions
            && (released.transactions > 0 || released.open || open || changes.is_empty());
        let touched: HashMap<Partition, PartitionState> = moved
            .into_iter()
            .map(|p| {
                let state = assembly.position(&p);
                (p, state)
            })
            .collect();
        // Memory: while the oldest transaction waits for its last records,
        // later ones are not fetched beyond the budget.
        intake.bound(&assembly, &ddl_queue, config.apply.batch_max_bytes)?;
        if !touched.is_empty() || !changes.is_empty() {
            change_stream::throttle::take(&mut row_limit, changes.len() as f64).await;
            change_stream::throttle::take(&mut byte_limit, bytes as f64).await;
            if whole_transactions && ((single && spread) || (!single && first_busy)) {
                // After every job in flight: the positions of this batch
                // are stored after theirs.
                lanes.drain().await?;
                spread = false;
                first_busy = false;
            }
            first_busy |= single;
            let shape = Shape {
                single,
                continues: open,
                commits,
            };
            spread |= apply_batch(
                config, &mapping, applier, registry, lanes, &mut ready, changes, &touched, shape,
            )
            .await?;
            open = !commits;
            applied.extend(touched);
        }
        let committed = lanes.committed();
        if !committed.is_empty() {
            let refs: Vec<(&Partition, &PartitionState)> =
                committed.iter().map(|(p, s)| (p, s)).collect();
            intake.input.commit_hint(&refs);
        }
        // Schema changes read up to where they fall in their partitions.
        while let Some(head) = ddl_queue.head() {
            // After every source transaction before it, whole.
            if assembly.is_streaming() || head.order.is_some_and(|o| assembly.holds_before(&o)) {
                break;
            }
            // A copy of a statement applied since it was queued (the
            // source sent it again).
            let sc_key = (schema_changes.clone(), 0);
            let done = applied.get(&sc_key).map(|s| &s.last);
            if head
                .order
                .is_some_and(|o| done.is_some_and(|d| d.covers(&o)))
            {
                let pending = ddl_queue.pop(&[]).expect("a head");
                tracing::info!(id = %pending.change.id(), "schema change sent again by the source: skipped");
                continue;
            }
            // Read that far: consumed, or the consumer past it (only commit
            // markers and aborted records in between). Not a partition
            // paused for the budget: what it delivered past its position
            // was dropped. (Asked again for each statement: a partition
            // fetched again from where the last one fell has no position
            // until its first fetch.)
            let consumer_at = intake.input.positions();
            let reached = |p: &Partition, at: i64| {
                assembly.next_offset(p) >= at
                    || (!intake.is_paused(p) && consumer_at.get(p).is_some_and(|o| *o >= at))
            };
            let Some(released) = ddl_queue.ready(reached) else {
                // A topic it falls in may be new: look for it soon.
                if head
                    .falls
                    .iter()
                    .any(|((t, _), _)| intake.input.partitions(t).is_none())
                {
                    last_discovery = Instant::now() - refresh;
                }
                break;
            };
            if released.iter().any(|(p, _, _)| assembly.holds(p)) {
                break;
            }
            let pending = ddl_queue.pop(&released).expect("a head");
            // After every row before it.
            lanes.drain().await?;
            let mut with_position = schema_apply::apply(
                config,
                &mapping,
                applier,
                registry,
                &mut ready,
                &pending,
                intake.home,
            )
            .await?;
            let mut positions: Vec<(Partition, PartitionState)> = vec![(
                (schema_changes.clone(), 0),
                PartitionState {
                    next_offset: pending.offset + 1,
                    last: applied
                        .get(&(schema_changes.clone(), 0))
                        .map(|s| s.last.clone())
                        .unwrap_or_default()
                        .with(pending.order),
                },
            )];
            for (p, held, _) in &released {
                let now = assembly.position(p);
                positions.push((
                    p.clone(),
                    PartitionState {
                        next_offset: now.next_offset.max(held.at),
                        last: now.last.with(held.order),
                    },
                ));
            }
            let refs: Vec<(&Partition, &PartitionState)> =
                positions.iter().map(|(p, s)| (p, s)).collect();
            with_position.push(state::save_sql(state_db, &config.kafka.group_id, &refs));
            applier.apply(&[], &with_position).await?;
            schema_apply::applied(applier, config, &pending).await;
            for (p, held, was_held) in &released {
                if *was_held {
                    intake.input.resume_at(p, held.at)?;
                }
            }
            for (p, s) in &positions {
                assembly.set(p, s.clone());
            }
            applied.extend(positions);
        }
    }
}

/// How a batch goes to the lanes.
struct Shape {
    /// All of it to the first lane, in one destination transaction.
    single: bool,
    /// It continues the first lane's open destination transaction.
    continues: bool,
    /// It commits (else leaves the transaction open).
    commits: bool,
}

/// Hands one batch of row changes, with the positions they reach, to the
/// lanes: each lane gets the changes and positions of its topics, or the
/// first lane all of them (`shape.single`). Returns whether a lane other
/// than the first got a job.
#[allow(clippy::too_many_arguments)] // the sink's state, lent for one batch
async fn apply_batch(
    config: &Config,
    mapping: &Mapping,
    applier: &mut Applier,
    registry: &mut Registry,
    lanes: &mut Lanes,
    ready: &mut HashSet<TableId>,
    changes: Vec<(usize, Change)>,
    touched: &HashMap<Partition, PartitionState>,
    shape: Shape,
) -> Result<bool, SinkError> {
    let state_db = &config.destination.state_database;
    let lane_of = |lane: usize| if shape.single { 0 } else { lane };
    for (_, c) in &changes {
        if !ready.contains(&c.source) {
            match registry.definition(&c.source).await {
                Ok(definition) => {
                    ddl::ensure_table(applier.conn(), &mapping.schema(&definition)).await?;
                }
                // A table the source took up from the binlog alone
                // (renamed or dropped since): it is here already.
                Err(e) if !ddl::table_exists(applier.conn(), &c.table.id).await? => return Err(e),
                Err(_) => {}
            }
            ready.insert(c.source.clone());
        }
    }
    // Sized once: growing them change by change copied them and had the
    // kernel zero fresh pages at every doubling.
    let mut counts = vec![0usize; lanes.count()];
    for (lane, _) in &changes {
        counts[lane_of(*lane)] += 1;
    }
    let mut per_lane: Vec<Vec<Change>> = counts.into_iter().map(Vec::with_capacity).collect();
    for (lane, c) in changes {
        per_lane[lane_of(lane)].push(c);
    }
    let mut spread = false;
    for (lane, changes) in per_lane.into_iter().enumerate() {
        let mut positions: Vec<(Partition, PartitionState)> = Vec::new();
        for (p, s) in touched {
            if lane_of(lanes.lane(&p.0)) == lane {
                positions.push((p.clone(), s.clone()));
            }
        }
        // The first lane's open transaction goes on even without rows.
        if positions.is_empty() && changes.is_empty() && !(lane == 0 && shape.single) {
            continue;
        }
        spread |= lane != 0;
        positions.sort_by(|a, b| a.0.cmp(&b.0));
        let records = changes.len();
        let mut applied = change_stream::telemetry::Applied::default();
        for c in &changes {
            applied.count(
                c.record.op,
                c.record.source.ts_ms,
                c.record.source.gtid.as_deref(),
            );
        }
        let statements = apply::plan(
            changes,
            apply::Planning {
                max_bytes: applier.max_statement_bytes,
                keep_existing: config.schema.on_conflict == ConflictMode::Ignore,
                load_data: config.apply.load_data && applier.local_infile,
                origins: applier.origins,
                conflicts: applier.conflicts.as_ref().map(|c| c.policy),
            },
        )?;
        let refs: Vec<(&Partition, &PartitionState)> =
            positions.iter().map(|(p, s)| (p, s)).collect();
        let state = if refs.is_empty() {
            Vec::new()
        } else {
            vec![state::save_sql(state_db, &config.kafka.group_id, &refs)]
        };
        tracing::debug!(
            lane,
            records,
            statements = statements.len(),
            "batch planned"
        );
        lanes
            .submit(
                lane,
                Job {
                    statements,
                    state,
                    positions,
                    continues: shape.continues && lane == 0,
                    commits: shape.commits || lane != 0,
                    applied,
                },
            )
            .await?;
    }
    Ok(spread)
}

/// A session at the destination, its state tables there.
async fn state_session(config: &Config) -> Result<Applier, SinkError> {
    let mut applier = Applier::connect(
        &config.destination,
        config.destination.connect_timeout_secs,
        config.apply.statement_max_bytes,
    )
    .await?;
    state::ensure_table(applier.conn(), &config.destination.state_database).await?;
    Ok(applier)
}

/// Prints the recorded conflicts, one block each.
async fn list_conflicts(config: Config) -> Result<(), SinkError> {
    let mut applier = state_session(&config).await?;
    let listed = conflicts::list(
        applier.conn(),
        &config.destination.state_database,
        &config.kafka.topic_prefix,
    )
    .await?;
    for (at, position, table, key, op, expected, found, resolution) in &listed {
        let what = match op.as_str() {
            "c" => "insert",
            "u" => "update",
            _ => "delete",
        };
        println!(
            "{at}  {position}  {table} {key}  {what}, {resolution}\n  expected:    {expected}\n  destination: {}\n",
            found.as_deref().unwrap_or("no row")
        );
    }
    println!("{} conflict(s)", listed.len());
    Ok(())
}

/// Prints the failed schema changes, one block each.
async fn failed_ddl(config: Config) -> Result<(), SinkError> {
    let mut applier = state_session(&config).await?;
    let failures = state::failures(
        applier.conn(),
        &config.destination.state_database,
        &config.kafka.topic_prefix,
    )
    .await?;
    for (at, position, database, statement, error) in &failures {
        println!("{at}  {position}  database {database}\n  error: {error}\n  {statement}\n");
    }
    println!("{} failed schema change(s)", failures.len());
    Ok(())
}
