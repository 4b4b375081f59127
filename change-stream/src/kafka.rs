//! Kafka plumbing both connectors use: client settings, topic creation, and
//! reading a topic to its end (the positions, schemas and schema-changes
//! topics are read that way at start).
//!
//! These calls block; run them on a blocking thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::Error;

/// A client config for the brokers, with the user's extra properties.
pub fn client_config(
    bootstrap_servers: &str,
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers);
    c.set("log_level", "3");
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Fetches cluster metadata to prove the broker answers. A failure says
/// what the client last reported: a refused certificate shows there, not
/// in the timeout that follows it.
pub fn check_broker(config: &ClientConfig, timeout: Duration) -> Result<(), Error> {
    let consumer: BaseConsumer<LastError> = config
        .create_with_context(LastError::default())
        .map_err(|e| Error::Kafka(e.to_string()))?;
    consumer
        .fetch_metadata(None, timeout)
        .map(|_| ())
        .map_err(|e| {
            // Errors reach the context from the client's queue.
            let _ = consumer.poll(Duration::from_millis(100));
            let reported = consumer.context().0.lock().unwrap().take();
            Error::Kafka(match reported {
                Some(r) => match tls_hint(&r) {
                    Some(hint) => format!("{r}; {hint}"),
                    None => format!("{}: {r}", describe(&e)),
                },
                None => describe(&e),
            })
        })
}

/// The last error a client reported.
#[derive(Default)]
struct LastError(std::sync::Mutex<Option<String>>);

impl rdkafka::ClientContext for LastError {
    /// Kept rather than logged: the check's own error tells it, once.
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, message: &str) {
        self.0
            .lock()
            .unwrap()
            .get_or_insert_with(|| message.to_string());
    }

    fn error(&self, error: KafkaError, reason: &str) {
        *self.0.lock().unwrap() = Some(if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_string()
        });
    }
}

impl rdkafka::consumer::ConsumerContext for LastError {}

/// How to fix a TLS failure with the broker, when `reported` is one;
/// such a failure is a setting to change, not one to wait out.
pub fn tls_hint(reported: &str) -> Option<&'static str> {
    let r = reported.to_ascii_lowercase();
    if r.contains("certificate verify failed") {
        Some("the broker's certificate is not signed by a CA the client trusts: set kafka.properties \"ssl.ca.location\" to the CA's PEM file")
    } else if r.contains("ssl handshake failed") || r.contains("wrong version number") {
        Some("the TLS handshake with the broker failed: check that bootstrap_servers names the broker's TLS listener and kafka.properties \"security.protocol\"")
    } else {
        None
    }
}

/// How often [`watch_broker`] asks the broker for its metadata (and how
/// long it waits for the answer).
pub const PROBE_EVERY: Duration = Duration::from_secs(10);

/// Watches that the broker answers, for the connectors' retry window on
/// broker connections: their clients wait for the broker without end (so
/// that no record is dropped), and this is what ends the wait. Returns,
/// once the broker has not answered for `window`, the error to exit with;
/// never returns while it answers.
pub async fn watch_broker(config: ClientConfig, window: Duration, probe_every: Duration) -> String {
    let mut failing = FailingSince::default();
    let servers = config
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_string();
    // One client for every probe: it reconnects by itself.
    let client: Result<std::sync::Arc<BaseConsumer>, String> = config
        .create()
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string());
    loop {
        let probe = match &client {
            Ok(client) => {
                let client = client.clone();
                tokio::task::spawn_blocking(move || {
                    // Serves the client's queued events, so they do not pile up.
                    let _ = client.poll(Duration::ZERO);
                    client
                        .fetch_metadata(None, probe_every)
                        .map(|_| ())
                        .map_err(|e| Error::Kafka(describe(&e)))
                })
                .await
                .unwrap_or_else(|e| Err(Error::Kafka(e.to_string())))
            }
            Err(e) => Err(Error::Kafka(e.clone())),
        };
        match probe {
            Ok(()) => failing.ok(),
            Err(e) => {
                let down = failing.failed(Instant::now());
                tracing::warn!(error = %e, down_secs = down.as_secs(), "the broker does not answer");
                if down >= window {
                    return format!(
                        "Kafka: the broker at {servers} has not answered for {} minutes (retry.connection_window_minutes = {}): {e}; the stored position is intact: fix the broker and start the connector again",
                        down.as_secs() / 60,
                        window.as_secs() / 60
                    );
                }
            }
        }
        tokio::time::sleep(probe_every).await;
    }
}

/// Since when consecutive probes have failed.
#[derive(Debug, Default)]
struct FailingSince(Option<Instant>);

impl FailingSince {
    fn ok(&mut self) {
        self.0 = None;
    }

    /// Records a failure at `now`; how long the failures have lasted.
    fn failed(&mut self, now: Instant) -> Duration {
        now.duration_since(*self.0.get_or_insert(now))
    }
}

/// A topic to create if missing.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub config: BTreeMap<String, String>,
}

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(config: &ClientConfig, topics: &[TopicSpec]) -> Result<(), Error> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|e| Error::Kafka(e.to_string()))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            );
            for (k, v) in &t.config {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(|e| Error::Kafka(format!("cannot create topics: {}", describe(&e))))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Kafka(format!("cannot create topic {topic}: {code}")))
            }
        }
    }
    Ok(())
}

/// Sets the topics' configurations to theirs (as a whole: a setting not
/// given goes back to the broker's default).
pub async fn set_topic_configs(config: &ClientConfig, topics: &[TopicSpec]) -> Result<(), Error> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|e| Error::Kafka(e.to_string()))?;
    let changes: Vec<AlterConfig<'_>> = topics
        .iter()
        .map(|t| {
            t.config.iter().fold(
                AlterConfig::new(ResourceSpecifier::Topic(&t.name)),
                |a, (k, v)| a.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .alter_configs(&changes, &opts)
        .await
        .map_err(|e| Error::Kafka(format!("cannot set topic configs: {}", describe(&e))))?;
    for r in results {
        if let Err((topic, code)) = r {
            return Err(Error::Kafka(format!(
                "cannot set the configuration of topic {topic:?}: {code}"
            )));
        }
    }
    Ok(())
}

/// A message's key and value (either may be absent).
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every committed message of `topic` from the beginning to its end at the
/// time of the call (as a `read_committed` consumer sees it), in offset
/// order per partition, as (key, value) pairs. A topic that does not exist
/// reads as empty.
pub fn read_to_end(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<KeyValue>, Error> {
    let mut config = config.clone();
    config
        .set("enable.auto.commit", "false")
        // The end of a partition a transactional producer writes is not
        // its last offset (a commit marker, or records not committed yet,
        // which a read_committed reader does not get): the client says
        // where it is.
        .set("enable.partition.eof", "true")
        // The end is reported by a fetch that finds nothing more, which the
        // broker holds back this long (500 ms by default).
        .set("fetch.wait.max.ms", "10")
        .set("group.id", "tributary-reader");
    let consumer: BaseConsumer<EndsQuietly> = config
        .create_with_context(EndsQuietly)
        .map_err(|e| Error::Kafka(e.to_string()))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Error::Kafka(format!("cannot read metadata of {topic}: {}", describe(&e))))?;
    let Some(t) = metadata.topics().first() else {
        return Ok(Vec::new());
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(Vec::new());
    }
    let mut targets = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        let (low, high) = watermarks(&consumer, topic, p.id(), timeout)?;
        if high > low {
            targets.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                .map_err(|e| Error::Kafka(e.to_string()))?;
        }
    }
    let mut out = Vec::new();
    if targets.is_empty() {
        return Ok(out);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::Kafka(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let mut done = BTreeMap::new();
    let mut last_error: Option<String> = None;
    while done.len() < targets.len() {
        if Instant::now() > deadline {
            return Err(Error::Kafka(format!(
                "timed out reading {topic} to its end after {}s{}",
                timeout.as_secs(),
                last_error.map(|e| format!(": {e}")).unwrap_or_default()
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) if targets.contains_key(&p) => {
                done.insert(p, ());
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            // Transport errors are reported but retried by the client; a
            // lasting one ends in the deadline above.
            Some(Err(e)) if !is_fatal(&e) => last_error = Some(describe(&e)),
            Some(Err(e)) => {
                return Err(Error::Kafka(format!(
                    "cannot read {topic}: {}",
                    describe(&e)
                )))
            }
            Some(Ok(m)) => {
                let high = targets[&m.partition()];
                if m.offset() < high {
                    out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
                }
                if m.offset() + 1 >= high {
                    done.insert(m.partition(), ());
                }
            }
        }
    }
    Ok(out)
}

/// The low and high watermarks of a partition (for a `read_committed`
/// client the high one is the end of what is committed). A topic created a
/// moment ago may have no leader yet: it is asked again until it has,
/// within the timeout.
pub fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64), Error> {
    let started = Instant::now();
    loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Err(e) if leader_moving(&e) && started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => {
                return other.map_err(|e| {
                    Error::Kafka(format!(
                        "cannot read the offsets of {topic} [{partition}]: {}",
                        describe(&e)
                    ))
                })
            }
        }
    }
}

/// A reader's context that does not log the end of a partition, which it
/// reads to, as an error.
pub struct EndsQuietly;

impl rdkafka::client::ClientContext for EndsQuietly {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_))
            && error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF)
        {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndsQuietly {}

/// Whether an error says a partition's leader is not there yet (a topic
/// just created) or moving.
fn leader_moving(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::NotLeaderForPartition)
            | Some(RDKafkaErrorCode::LeaderNotAvailable)
            | Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    )
}

/// Whether a consumer error is final, rather than a transport problem the
/// client is already retrying.
pub fn is_fatal(e: &KafkaError) -> bool {
    !matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure)
            | Some(RDKafkaErrorCode::AllBrokersDown)
            | Some(RDKafkaErrorCode::OperationTimedOut)
            | Some(RDKafkaErrorCode::NetworkException)
            | Some(RDKafkaErrorCode::RequestTimedOut)
            | Some(RDKafkaErrorCode::PartitionEOF)
    )
}

/// A Kafka error in words an operator can act on.
pub fn describe(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::BrokerTransportFailure)
        | Some(RDKafkaErrorCode::AllBrokersDown)
        | Some(RDKafkaErrorCode::OperationTimedOut) => {
            format!("{e} (is the broker running and reachable?)")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_from_the_first_of_a_run() {
        let mut f = FailingSince::default();
        let t0 = Instant::now();
        assert_eq!(f.failed(t0), Duration::ZERO);
        assert_eq!(
            f.failed(t0 + Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        f.ok();
        assert_eq!(f.failed(t0 + Duration::from_secs(40)), Duration::ZERO);
    }

    #[tokio::test]
    async fn watch_ends_when_no_broker_answers_for_the_window() {
        // Nothing listens on port 1.
        let config = client_config("127.0.0.1:1", &BTreeMap::new());
        let message = tokio::time::timeout(
            Duration::from_secs(60),
            watch_broker(config, Duration::from_secs(2), Duration::from_millis(500)),
        )
        .await
        .expect("the watch gives up after its window");
        assert!(
            message.contains("the broker at 127.0.0.1:1 has not answered"),
            "{message}"
        );
        assert!(
            message.contains("retry.connection_window_minutes"),
            "{message}"
        );
    }
}
