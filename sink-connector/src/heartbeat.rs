//! Heartbeats: the lag of a sink with nothing to apply.
//!
//! The sink's lag is the time from the source's commit of a change to the
//! destination's commit of it, told by each batch it applies. With
//! nothing changing at the source that figure would stay at its last
//! value, whatever happened since. The source connector therefore sends a
//! heartbeat (`kafka.heartbeat_interval_ms`) to
//! `__tributary-heartbeat.<prefix>`, and this task reads it from its last
//! record on: while the sink is caught up (nothing read waits to be
//! applied), a heartbeat's age when it arrives is the lag; heartbeats that
//! stop coming (a source stopped or cut off) make it grow (see
//! `telemetry::sink_heartbeat`). The last record comes first so that the
//! source's interval is known at once, even if the source stopped before
//! this task found the topic: a sink that never heard of heartbeats has
//! no way to tell an idle source from a stopped one. Nothing is applied or
//! stored from here.

use std::time::Duration;

use change_stream::topics;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// How often a topic not created yet is looked for (the source creates it
/// as it starts, which may be after the sink).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Reads heartbeats until the process ends.
pub fn spawn(client_config: &ClientConfig, prefix: &str, group_id: &str) {
    let mut cc = client_config.clone();
    cc.set("group.id", format!("{group_id}-heartbeat"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let topic = topics::heartbeat_topic(prefix);
    tokio::spawn(async move {
        loop {
            if let Err(e) = follow(&cc, &topic).await {
                tracing::debug!(error = %e, %topic, "heartbeats not read");
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    });
}

/// Follows the topic from its last record, once it exists.
async fn follow(cc: &ClientConfig, topic: &str) -> Result<(), String> {
    let consumer: StreamConsumer = cc.create().map_err(|e| e.to_string())?;
    let partitions = {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        match metadata.topics().first() {
            Some(t) if t.error().is_none() => t.partitions().len(),
            _ => 0,
        }
    };
    if partitions == 0 {
        return Err("no such topic (the source sends no heartbeats)".into());
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::OffsetTail(1))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    loop {
        let m = consumer.recv().await.map_err(|e| e.to_string())?;
        let Some(v) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        else {
            continue;
        };
        if let Some(ts) = v["ts_ms"].as_i64() {
            change_stream::telemetry::sink_heartbeat(ts, v["interval_ms"].as_u64().unwrap_or(0));
        }
    }
}
