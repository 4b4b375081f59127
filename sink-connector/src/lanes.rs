//! Applying batches on several destination connections at once.
//!
//! The sink's intake collects a batch, and the batch is split by table
//! topic into *lanes*: `apply.connections` tasks, each with a connection of
//! its own, each applying the jobs it is given one after the other. A topic
//! always goes to the same lane (topics are dealt to the lanes in turn as
//! they first appear, so that tables read at once by the snapshot land on
//! different connections), so each table, and each of its partitions, is
//! applied by one connection, in order, and the positions a job reaches
//! (its partitions' offsets) commit in the same destination transaction as
//! its rows, as with a single connection: what a crash leaves is exactly
//! what the state table records, per partition.
//!
//! The lanes run while the intake consumes, decodes and plans the next
//! batch: the destination is not idle while the sink works, nor the sink
//! while the destination does. What is in flight is bounded in bytes (SQL
//! text and `LOAD DATA` rows, twice `apply.batch_max_bytes` whatever the
//! number of lanes), so the memory budget holds; each lane may have a few
//! jobs queued, so that a lane with a queue does not hold the intake back
//! while another runs dry.
//!
//! With `apply.consistency = "transaction"`, a batch that holds source
//! transactions goes whole to the first lane (one destination transaction
//! for all its tables), and a source transaction too large to hold goes
//! there in parts, in one destination transaction that the part finishing
//! it commits.
//!
//! A schema change runs only when every lane is idle ([`Lanes::drain`]):
//! it comes after every row before it. A job that fails ends its lane, and
//! the intake hears of it at once ([`Lanes::failed`], [`Lanes::check`]),
//! not only when it next hands that lane a job: the failed job's records
//! were counted as consumed, and with no more records for that lane's
//! topics nothing else would ever apply them. The error ends the attempt
//! once every other lane has finished what it was doing ([`Lanes::close`]),
//! so that a new attempt, which starts from the positions stored at the
//! destination, never races a commit of the old one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::apply::{Applier, Statement};
use crate::error::SinkError;
use crate::state::{Partition, PartitionState};

/// Jobs waiting for each lane (the byte budget bounds them too).
const QUEUED: usize = 4;

/// No lane has failed.
const NONE: usize = usize::MAX;

/// One lane's part of a batch.
pub struct Job {
    pub statements: Vec<Statement>,
    /// The statements that record the positions it reaches.
    pub state: Vec<String>,
    /// Those positions, reported back once committed.
    pub positions: Vec<(Partition, PartitionState)>,
    /// Whether it continues the destination transaction the lane's last
    /// job left open, rather than starting one.
    pub continues: bool,
    /// Whether it commits; a job that does not leaves its transaction open
    /// for the next one (a source transaction streamed in parts).
    pub commits: bool,
    /// What it applies, for telemetry once committed.
    pub applied: change_stream::telemetry::Applied,
}

enum Msg {
    Apply(Job, OwnedSemaphorePermit),
    Drain(oneshot::Sender<()>),
}

pub struct Lanes {
    senders: Vec<mpsc::Sender<Msg>>,
    handles: Vec<JoinHandle<Result<(), SinkError>>>,
    done: mpsc::UnboundedReceiver<Vec<(Partition, PartitionState)>>,
    /// Bytes of SQL in flight.
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    /// Told when a lane ends with an error; `failed` holds which lane.
    ended: Arc<Notify>,
    failed: Arc<AtomicUsize>,
    /// The lane of each topic seen so far.
    lanes: std::collections::HashMap<String, usize>,
}

impl Lanes {
    /// One lane per applier, with `budget_bytes` of SQL in flight at most.
    pub fn start(appliers: Vec<Applier>, budget_bytes: usize) -> Self {
        let (done_tx, done) = mpsc::unbounded_channel();
        let failure = Arc::new(Notify::new());
        let failed = Arc::new(AtomicUsize::new(NONE));
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for (lane, mut applier) in appliers.into_iter().enumerate() {
            let (tx, mut rx) = mpsc::channel::<Msg>(QUEUED);
            let done_tx = done_tx.clone();
            let failure = failure.clone();
            let failed = failed.clone();
            handles.push(tokio::spawn(async move {
                // What the lane's open transaction has applied so far.
                let mut uncommitted = change_stream::telemetry::Applied::default();
                while let Some(msg) = rx.recv().await {
                    match msg {
                        Msg::Apply(job, permit) => {
                            let applied = applier
                                .apply_in(&job.statements, &job.state, !job.continues, job.commits)
                                .await;
                            if let Err(e) = applied {
                                let _ = failed.compare_exchange(
                                    NONE,
                                    lane,
                                    Ordering::SeqCst,
                                    Ordering::SeqCst,
                                );
                                failure.notify_one();
                                return Err(e);
                            }
                            drop(permit);
                            uncommitted.add(&job.applied);
                            if job.commits {
                                change_stream::telemetry::sink_applied(&uncommitted);
                                uncommitted = Default::default();
                                let _ = done_tx.send(job.positions);
                            }
                        }
                        Msg::Drain(tx) => {
                            let _ = tx.send(());
                        }
                    }
                }
                Ok(())
            }));
            senders.push(tx);
        }
        Self {
            senders,
            handles,
            done,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            ended: failure,
            failed,
            lanes: Default::default(),
        }
    }

    /// Whether no job is in flight.
    pub fn idle(&self) -> bool {
        self.budget.available_permits() == self.budget_bytes
    }

    pub fn count(&self) -> usize {
        self.senders.len()
    }

    /// The lane of a topic.
    pub fn lane(&mut self, topic: &str) -> usize {
        if let Some(&lane) = self.lanes.get(topic) {
            return lane;
        }
        let lane = self.lanes.len() % self.senders.len();
        self.lanes.insert(topic.to_string(), lane);
        lane
    }

    /// Hands a job to its lane (waiting while the lane is busy or too many
    /// bytes are in flight).
    pub async fn submit(&mut self, lane: usize, job: Job) -> Result<(), SinkError> {
        let bytes: usize = job
            .statements
            .iter()
            .map(|s| s.sql.len() + s.data.as_ref().map_or(0, |d| d.len()))
            .sum();
        let permits = bytes.clamp(1, self.budget_bytes) as u32;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(permits)
            .await
            .expect("the budget is never closed");
        if self.senders[lane]
            .send(Msg::Apply(job, permit))
            .await
            .is_err()
        {
            return Err(self.failure(lane).await);
        }
        Ok(())
    }

    /// Waits until every lane has applied everything handed to it.
    pub async fn drain(&mut self) -> Result<(), SinkError> {
        let mut waits = Vec::new();
        for lane in 0..self.senders.len() {
            let (tx, rx) = oneshot::channel();
            if self.senders[lane].send(Msg::Drain(tx)).await.is_err() {
                return Err(self.failure(lane).await);
            }
            waits.push((lane, rx));
        }
        for (lane, rx) in waits {
            if rx.await.is_err() {
                return Err(self.failure(lane).await);
            }
        }
        Ok(())
    }

    /// Resolves when a lane has ended with an error (then [`Lanes::check`]
    /// returns it). Cancel-safe: a failure told while nobody waits is kept.
    pub fn failed(&self) -> impl std::future::Future<Output = ()> + 'static {
        let ended = self.ended.clone();
        async move { ended.notified().await }
    }

    /// The error of a lane that has ended, if one has.
    pub async fn check(&mut self) -> Result<(), SinkError> {
        match self.failed.load(Ordering::SeqCst) {
            NONE => Ok(()),
            lane => Err(self.failure(lane).await),
        }
    }

    /// The positions committed since the last call.
    pub fn committed(&mut self) -> Vec<(Partition, PartitionState)> {
        let mut out = Vec::new();
        while let Ok(positions) = self.done.try_recv() {
            out.extend(positions);
        }
        out
    }

    /// The error that ended a lane.
    async fn failure(&mut self, lane: usize) -> SinkError {
        let handle = std::mem::replace(&mut self.handles[lane], tokio::spawn(async { Ok(()) }));
        match handle.await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => SinkError::Destination("an apply connection ended".into()),
            Err(e) => SinkError::Destination(format!("an apply connection failed: {e}")),
        }
    }

    /// Lets every lane finish what it was doing, and stops them.
    pub async fn close(self) {
        drop(self.senders);
        for h in self.handles {
            let _ = h.await;
        }
    }
}
