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
mod order;
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
use change_stream::transaction::TransactionEvent;
use clap::{Parser, Subcommand};
use rdkafka::Message;
use tokio::sync::watch;

use crate::apply::{Applier, Change};
use crate::config::{Config, ConflictMode, Consistency};
use crate::consume::Input;
use crate::ddl::{DdlQueue, Held, Pending};
use crate::decode::Registry;
use crate::error::SinkError;
use crate::lanes::{Job, Lanes};
use crate::mapping::Mapping;
use crate::order::Assembly;
use crate::state::{record_order, Partition, PartitionState, RecordOrder};

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
    let whole_transactions = config.apply.consistency == Consistency::Transaction;
    let mut input = Input::new(client_config, &config.kafka, whole_transactions)?;
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
    // Transactions held until whole (`order.rs`).
    let mut assembly = whole_transactions.then(|| {
        Assembly::new(
            topics::transaction_topic(&config.kafka.topic_prefix),
            applied,
        )
    });
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
    // Partitions not fetched while the held records are over budget, and
    // the oldest transaction then (they are fetched again once it goes).
    let mut paused: HashSet<Partition> = HashSet::new();
    let mut paused_for: Option<String> = None;
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
        // Partitions consumed from (whole transactions); the transaction
        // topic's position is stored from the first batch on, so that a
        // restart can tell it from a start after row mode.
        let mut moved: HashSet<Partition> = HashSet::new();
        if whole_transactions && !applied.contains_key(&transactions) {
            moved.insert(transactions.clone());
        }
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
            if let Some(asm) = assembly.as_mut() {
                let offset = msg.offset();
                if paused.contains(&key) {
                    continue; // fetched again once resumed
                }
                if asm.consumed(&key, offset) {
                    continue; // already applied
                }
                if !moved.contains(&key) {
                    moved.insert(key.clone());
                }
                let Some(payload) = msg.payload() else {
                    asm.pass(&key, offset, None);
                    continue; // tombstone
                };
                if asm.is_transaction_topic(&key) {
                    let event = TransactionEvent::decode(payload).map_err(|e| {
                        SinkError::Record(format!("{} offset {offset}: {e}", key.0))
                    })?;
                    asm.boundary(offset, event);
                    continue;
                }
                if let Some((change, order)) = marker(payload, marker_fingerprint)? {
                    if order.is_some_and(|o| asm.sent_twice(&key, &o)) {
                        asm.pass(&key, offset, None); // sent again by the source
                        continue;
                    }
                    hold_at_marker(&mut ddl_queue, &input, &key, offset, &change, order)?;
                    continue;
                }
                bytes += payload.len();
                let (change, allowed) = admit(
                    config,
                    &mapping,
                    registry,
                    &mut row_ops,
                    &key,
                    offset,
                    payload,
                )
                .await?;
                let order = record_order(&change.record);
                if order.is_some_and(|o| asm.sent_twice(&key, &o)) {
                    asm.pass(&key, offset, None); // sent again by the source
                    continue;
                }
                let lane = lanes.lane(&key.0);
                let mut change = change;
                // The id moves out of the record: nothing reads it after.
                match change
                    .record
                    .transaction
                    .as_mut()
                    .map(|t| std::mem::take(&mut t.id))
                {
                    Some(id) => asm.hold(
                        &key,
                        offset,
                        order,
                        id,
                        (lane, change),
                        allowed,
                        payload.len(),
                    ),
                    None => {
                        asm.pass(&key, offset, order);
                        if allowed {
                            changes.push((lane, change));
                        }
                    }
                }
                continue;
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
            if let Some((change, order)) = marker(payload, marker_fingerprint)? {
                if order.is_some_and(|o| st.last.covers(&o)) {
                    st.next_offset = msg.offset() + 1; // sent again by the source
                    continue;
                }
                hold_at_marker(&mut ddl_queue, &input, &key, msg.offset(), &change, order)?;
                continue;
            }
            st.next_offset = msg.offset() + 1;
            bytes += payload.len();
            let (change, allowed) = admit(
                config,
                &mapping,
                registry,
                &mut row_ops,
                &key,
                msg.offset(),
                payload,
            )
            .await?;
            if let Some(order) = record_order(&change.record) {
                if st.last.covers(&order) {
                    continue; // sent again by the source after its restart
                }
                st.last.advance(order);
            }
            if !allowed {
                continue; // filtered out; the position still advances
            }
            changes.push((lanes.lane(&key.0), change));
        }
        // Whole transactions: those now whole, in commit order, or the
        // next part of one too large to hold.
        let mut single = false;
        let mut commits = true;
        if let Some(asm) = assembly.as_mut() {
            let released = asm.release();
            single = released.transactions > 0;
            changes.extend(released.changes);
            let part = if asm.is_streaming() {
                asm.stream(0)
            } else if released.transactions == 0 {
                asm.stream(config.apply.batch_max_bytes)
            } else {
                None
            };
            if asm.is_streaming() {
                single = true;
                commits = false;
                changes.extend(part.unwrap_or_default());
            }
            moved.extend(released.partitions);
            for p in moved {
                let state = asm.position(&p);
                touched.insert(p, state);
            }
            // A job in the first lane's open transaction: everything goes
            // there; and so does a batch with no rows for the other lanes.
            single |= open || changes.is_empty();
            // Memory: while the oldest transaction waits for its last
            // records, later ones are not fetched beyond the budget.
            if !paused.is_empty() && asm.head() != paused_for.as_deref() {
                for p in paused.drain() {
                    input.resume_at(&p, asm.next_offset(&p))?;
                }
            }
            for p in asm.over(config.apply.batch_max_bytes) {
                if !ddl_queue.is_held(&p) && !paused.contains(&p) {
                    tracing::debug!(topic = %p.0, partition = p.1, "over the budget of held records: not fetched until the oldest transaction is applied");
                    input.pause(&p)?;
                    paused.insert(p);
                    paused_for = asm.head().map(str::to_string);
                }
            }
        }
        if !touched.is_empty() || !changes.is_empty() {
            change_stream::throttle::take(&mut row_limit, changes.len() as f64).await;
            change_stream::throttle::take(&mut byte_limit, bytes as f64).await;
            if assembly.is_some() && ((single && spread) || (!single && first_busy)) {
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
            input.commit_hint(&refs);
        }
        // Schema changes whose partitions have all reached their markers.
        while let Some(head) = ddl_queue.head() {
            // After every source transaction before it, whole.
            if assembly
                .as_ref()
                .is_some_and(|a| a.is_streaming() || head.order.is_some_and(|o| a.holds_before(&o)))
            {
                break;
            }
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
            if let Some(asm) = assembly.as_mut() {
                for (p, s) in &positions {
                    asm.set(p, s.clone());
                }
            }
            applied.extend(positions);
        }
    }
}

/// A schema-change marker in a table topic, with its place; `None` for
/// any other record.
fn marker(
    payload: &[u8],
    fingerprint: u64,
) -> Result<Option<(SchemaChange, Option<RecordOrder>)>, SinkError> {
    if !change_stream::avro::split_single_object(payload).is_ok_and(|(fp, _)| fp == fingerprint) {
        return Ok(None);
    }
    let change = SchemaChange::decode(payload)?;
    let order = change.source.change_order().map(|o| (o, 0));
    Ok(Some((change, order)))
}

/// Holds partition `key` at a marker: it waits for the schema change, and
/// is fetched again from past the marker once that is applied.
fn hold_at_marker(
    ddl_queue: &mut DdlQueue,
    input: &Input,
    key: &Partition,
    offset: i64,
    change: &SchemaChange,
    order: Option<RecordOrder>,
) -> Result<(), SinkError> {
    ddl_queue.hold(
        key.clone(),
        Held {
            offset,
            id: change.id(),
            order,
        },
    );
    input.pause(key)
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

/// Decodes a record of table topic partition `key` into a change of its
/// destination table; with whether `[[filter]]` lets its operation through.
async fn admit(
    config: &Config,
    mapping: &Mapping,
    registry: &mut Registry,
    row_ops: &mut HashMap<TableId, [bool; 3]>,
    key: &Partition,
    offset: i64,
    payload: &[u8],
) -> Result<(Change, bool), SinkError> {
    let (record, table) = registry.decode(payload).await.map_err(|e| {
        SinkError::Record(format!(
            "{} partition {} offset {offset}: {e}",
            key.0, key.1
        ))
    })?;
    let source = table.id.clone();
    let table = mapping.shape(&table);
    if table.id.database == config.destination.state_database {
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
    Ok((
        Change {
            table,
            source,
            record,
        },
        allowed,
    ))
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
        let statements = apply::plan(
            changes,
            applier.max_statement_bytes,
            config.schema.on_conflict == ConflictMode::Ignore,
            config.apply.load_data && applier.local_infile,
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
                },
            )
            .await?;
    }
    Ok(spread)
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
