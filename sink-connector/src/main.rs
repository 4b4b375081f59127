//! sink-connector: consumes the change records of one source prefix and
//! applies them to a destination MariaDB.
//!
//! Stages, one file each: `consume.rs` (the Kafka consumer), `decode.rs`
//! (writer schemas and table definitions), `ddl.rs` (creating tables, and
//! holding partitions at schema-change markers), `apply.rs` (batches in
//! transactions), `schema_apply.rs` (running a schema change once),
//! `state.rs` (what has been applied), `sql.rs` (literals). This file wires
//! them.

mod apply;
mod check;
mod config;
mod consume;
mod ddl;
mod decode;
mod error;
mod indexes;
mod lanes;
mod mapping;
mod schema_apply;
mod sql;
mod state;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use change_stream::schema_change::SchemaChange;
use change_stream::table::TableId;
use change_stream::topics;
use clap::{Parser, Subcommand};
use rdkafka::Message;
use tokio::sync::watch;

use crate::apply::{Applier, Change};
use crate::config::{Config, ConflictMode};
use crate::consume::Input;
use crate::ddl::{DdlQueue, Held, Pending};
use crate::decode::Registry;
use crate::error::SinkError;
use crate::lanes::{Job, Lanes};
use crate::mapping::Mapping;
use crate::state::{record_order, Partition, PartitionState};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    change_stream::process::run_main("sink-connector", async {
        match cli.command {
            Command::Run { config: path } => {
                let config = Config::load(&path)?;
                check::report(&config)
                    .await
                    .gate(&format!("sink-connector check --config {}", path.display()))
                    .map_err(SinkError::Precheck)?;
                run(config).await
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
            let e = match sync(&config, &client_config, &mut registry, &mut shutdown).await {
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
        &config.destination.url,
        config.destination.connect_timeout_secs,
        config.apply.statement_max_bytes,
    )
    .await?;
    let mut applied = state::load(applier.conn(), state_db, &config.kafka.topic_prefix).await?;
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
        appliers.push(
            Applier::connect(
                &config.destination.url,
                config.destination.connect_timeout_secs,
                config.apply.statement_max_bytes,
            )
            .await?,
        );
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
    let mut input = Input::new(client_config, &config.kafka)?;
    let mut ready: HashSet<TableId> = HashSet::new();
    input.discover(applied)?;
    let mut last_discovery = Instant::now();
    let linger = Duration::from_millis(config.apply.batch_linger_ms);
    let refresh = Duration::from_secs(config.kafka.topic_refresh_secs);
    let prefix = config.kafka.topic_prefix.as_str();
    let schema_changes = topics::schema_changes_topic(prefix);
    let marker_fingerprint = change_stream::schema_change::schema().fingerprint;
    let mut ddl_queue = DdlQueue::default();
    let mut row_ops: HashMap<TableId, [bool; 3]> = HashMap::new();
    let mut row_limit = change_stream::throttle::Limiter::new(config.throttle.rows_per_second);
    let mut byte_limit =
        change_stream::throttle::Limiter::new(config.throttle.mb_per_second * 1_000_000.0);
    tracing::info!(partitions = applied.len(), "sink connector started");

    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        lanes.check().await?;
        // Until the first table topic shows up (a sink started before its
        // source), it is looked for often: the full sync starts with it.
        let refresh = if input.has_table_topics() {
            refresh
        } else {
            refresh.min(FIRST_TOPICS_EVERY)
        };
        if last_discovery.elapsed() >= refresh {
            input.discover(applied)?;
            last_discovery = Instant::now();
        }
        // Collect a batch: up to the limits, or what arrives within the
        // linger time after the first record.
        // Each change with the lane of its topic.
        let mut changes: Vec<(usize, Change)> =
            Vec::with_capacity(config.apply.batch_max_records.min(16_384));
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
                _ = lanes.failed() => break, // checked above, at once
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
            if key.0 == schema_changes {
                // Schema changes queue up; they run in order, below.
                let st = applied.get(&key).cloned().unwrap_or_default();
                if msg.offset() < st.next_offset || ddl_queue.queued(msg.offset()) {
                    continue;
                }
                let Some(payload) = msg.payload() else {
                    continue;
                };
                let change = SchemaChange::decode(payload)?;
                let order = change.source.change_order().map(|o| (o, 0));
                if order.is_some_and(|o| st.last.covers(&o)) || ddl_queue.has(&change.id()) {
                    continue; // sent again by the source after its restart
                }
                ddl_queue.push(Pending {
                    offset: msg.offset(),
                    order,
                    change,
                });
                continue;
            }
            if ddl_queue.is_held(&key) {
                continue; // past a marker: fetched again once it is applied
            }
            let st = touched
                .entry(key.clone())
                .or_insert_with(|| applied.get(&key).cloned().unwrap_or_default());
            if msg.offset() < st.next_offset {
                continue; // already applied
            }
            let Some(payload) = msg.payload() else {
                st.next_offset = msg.offset() + 1;
                continue; // tombstone
            };
            if change_stream::avro::split_single_object(payload)
                .is_ok_and(|(fp, _)| fp == marker_fingerprint)
            {
                // A schema-change marker: this partition waits for it.
                let change = SchemaChange::decode(payload)?;
                let order = change.source.change_order().map(|o| (o, 0));
                if order.is_some_and(|o| st.last.covers(&o)) {
                    st.next_offset = msg.offset() + 1; // sent again by the source
                    continue;
                }
                ddl_queue.hold(
                    key.clone(),
                    Held {
                        offset: msg.offset(),
                        id: change.id(),
                        order,
                    },
                );
                input.pause(&key)?;
                continue;
            }
            st.next_offset = msg.offset() + 1;
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
                if st.last.covers(&order) {
                    continue; // sent again by the source after its restart
                }
                st.last.advance(order);
            }
            let source = table.id.clone();
            let table = mapping.shape(&table);
            if table.id.database == *state_db {
                return Err(SinkError::Config {
                    message: format!(
                        "records of database {} arrive, which is the sink's state database; set destination.state_database to another name",
                        table.id.database
                    ),
                });
            }
            // [[filter]]: INSERT, UPDATE, DELETE allowed, per table.
            let ops = match row_ops.get(&source) {
                Some(ops) => *ops,
                None => {
                    let ops = ["INSERT", "UPDATE", "DELETE"].map(|o| config.allows(&source, o));
                    row_ops.insert(source.clone(), ops);
                    ops
                }
            };
            let allowed = match record.op {
                change_stream::event::Op::Read | change_stream::event::Op::Create => ops[0],
                change_stream::event::Op::Update => ops[1],
                change_stream::event::Op::Delete => ops[2],
            };
            if !allowed {
                continue; // filtered out; the position still advances
            }
            changes.push((
                lanes.lane(&key.0),
                Change {
                    table,
                    source,
                    record,
                },
            ));
        }
        if !touched.is_empty() {
            change_stream::throttle::take(&mut row_limit, changes.len() as f64).await;
            change_stream::throttle::take(&mut byte_limit, bytes as f64).await;
            apply_batch(
                config, &mapping, applier, registry, lanes, &mut ready, changes, &touched,
            )
            .await?;
            applied.extend(touched);
        }
        let committed = lanes.committed();
        if !committed.is_empty() {
            let refs: Vec<(&Partition, &PartitionState)> =
                committed.iter().map(|(p, s)| (p, s)).collect();
            input.commit_hint(&refs);
        }
        // Schema changes whose partitions have all reached their markers.
        while let Some(head) = ddl_queue.head() {
            // A copy of a statement applied since it was queued (the
            // source sent it again): its markers are skipped, so it must
            // not wait for them.
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
            let Some(released) = ddl_queue.ready(prefix, |t| input.partitions(t)) else {
                // A topic it names may be new: look for it soon.
                if head.change.tables.iter().any(|t| {
                    input
                        .partitions(&topics::table_topic(prefix, &t.id.database, &t.id.table))
                        .is_none()
                }) {
                    last_discovery = Instant::now() - refresh;
                }
                break;
            };
            let pending = ddl_queue.pop(&released).expect("a head");
            // After every row before it.
            lanes.drain().await?;
            let mut with_position =
                schema_apply::apply(config, &mapping, applier, registry, &mut ready, &pending)
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
            for (p, held) in &released {
                positions.push((
                    p.clone(),
                    PartitionState {
                        next_offset: held.offset + 1,
                        last: applied
                            .get(p)
                            .map(|s| s.last.clone())
                            .unwrap_or_default()
                            .with(held.order),
                    },
                ));
            }
            let refs: Vec<(&Partition, &PartitionState)> =
                positions.iter().map(|(p, s)| (p, s)).collect();
            with_position.push(state::save_sql(state_db, &config.kafka.group_id, &refs));
            applier.apply(&[], &with_position).await?;
            schema_apply::applied(applier, config, &pending).await;
            for (p, held) in &released {
                input.resume_at(p, held.offset + 1)?;
            }
            applied.extend(positions);
        }
    }
}

/// Hands one batch of row changes, with the positions they reach, to the
/// lanes: each lane gets the changes and positions of its topics.
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
) -> Result<(), SinkError> {
    let state_db = &config.destination.state_database;
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
        counts[*lane] += 1;
    }
    let mut per_lane: Vec<Vec<Change>> = counts.into_iter().map(Vec::with_capacity).collect();
    for (lane, c) in changes {
        per_lane[lane].push(c);
    }
    for (lane, changes) in per_lane.into_iter().enumerate() {
        let mut positions: Vec<(Partition, PartitionState)> = Vec::new();
        for (p, s) in touched {
            if lanes.lane(&p.0) == lane {
                positions.push((p.clone(), s.clone()));
            }
        }
        if positions.is_empty() {
            continue;
        }
        positions.sort_by(|a, b| a.0.cmp(&b.0));
        let records = changes.len();
        let statements = apply::plan(
            changes,
            applier.max_statement_bytes,
            config.schema.on_conflict == ConflictMode::Ignore,
            config.apply.load_data && applier.local_infile,
        )?;
        let refs: Vec<(&Partition, &PartitionState)> =
            positions.iter().map(|(p, s)| (p, s)).collect();
        let state = vec![state::save_sql(state_db, &config.kafka.group_id, &refs)];
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
                },
            )
            .await?;
    }
    Ok(())
}

/// Prints the failed schema changes, one block each.
async fn failed_ddl(config: Config) -> Result<(), SinkError> {
    let mut applier = Applier::connect(
        &config.destination.url,
        config.destination.connect_timeout_secs,
        config.apply.statement_max_bytes,
    )
    .await?;
    state::ensure_table(applier.conn(), &config.destination.state_database).await?;
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
