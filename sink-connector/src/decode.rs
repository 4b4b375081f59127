//! Decoding records: writer schemas from `<prefix>.schemas`, table
//! definitions from `<prefix>.schema-changes`.
//!
//! Both topics are read to their end at start, and again whenever a record
//! names a schema or a table not seen yet (the source publishes both before
//! the records that need them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How many times the schemas topic is read for a schema it lacks.
const SCHEMA_LOOKS: u32 = 25;

use change_stream::avro::{split_single_object, EnvelopeCodec};
use change_stream::event::ChangeRecord;
use change_stream::schema_change::SchemaChange;
use change_stream::table::{TableId, TableSchema};
use change_stream::topics;
use rdkafka::ClientConfig;

use crate::error::SinkError;

pub struct Registry {
    client_config: ClientConfig,
    prefix: String,
    codecs: HashMap<u64, Arc<EnvelopeCodec>>,
    schema_json: HashMap<u64, String>,
    definitions: HashMap<TableId, Arc<TableSchema>>,
    /// Table shapes by writer schema and table.
    shapes: HashMap<(u64, TableId), Arc<TableSchema>>,
}

impl Registry {
    pub fn new(client_config: ClientConfig, prefix: &str) -> Self {
        Self {
            client_config,
            prefix: prefix.to_string(),
            codecs: HashMap::new(),
            schema_json: HashMap::new(),
            definitions: HashMap::new(),
            shapes: HashMap::new(),
        }
    }

    async fn read(&self, topic: String) -> Result<Vec<change_stream::kafka::KeyValue>, SinkError> {
        let cc = self.client_config.clone();
        tokio::task::spawn_blocking(move || {
            change_stream::kafka::read_to_end(&cc, &topic, Duration::from_secs(60))
        })
        .await
        .expect("blocking task")
        .map_err(|e| SinkError::Kafka(e.to_string()))
    }

    /// Reads the schemas topic to its end.
    pub async fn refresh_schemas(&mut self) -> Result<(), SinkError> {
        for (key, value) in self.read(topics::schemas_topic(&self.prefix)).await? {
            let (Some(key), Some(value)) = (key, value) else {
                continue;
            };
            let Ok(fp) = u64::from_str_radix(&String::from_utf8_lossy(&key), 16) else {
                continue;
            };
            if let Ok(json) = String::from_utf8(value) {
                self.schema_json.insert(fp, json);
            }
        }
        Ok(())
    }

    /// Reads the schema-changes topic to its end; the last definition of
    /// each table wins.
    pub async fn refresh_definitions(&mut self) -> Result<(), SinkError> {
        for (_, value) in self
            .read(topics::schema_changes_topic(&self.prefix))
            .await?
        {
            let Some(value) = value else { continue };
            let value = change_stream::registry::unframed(value)
                .await
                .map_err(crate::error::from_registry)?;
            let change = SchemaChange::decode(&value)?;
            for t in change.tables {
                match t.definition {
                    Some(def) => self.definitions.insert(t.id, Arc::new(def)),
                    None => self.definitions.remove(&t.id),
                };
            }
        }
        Ok(())
    }

    /// The decoder for a writer schema fingerprint.
    async fn codec(&mut self, fp: u64) -> Result<Arc<EnvelopeCodec>, SinkError> {
        if let Some(c) = self.codecs.get(&fp) {
            return Ok(c.clone());
        }
        // A record can be visible a moment before the schema committed in
        // the same Kafka transaction (the commit reaches each partition
        // in turn): look again for a while before giving up.
        let mut looks = 0;
        // A record in the registry's wire format brought its schema.
        if let Some(json) = change_stream::registry::met(fp) {
            self.schema_json.entry(fp).or_insert(json);
        }
        while !self.schema_json.contains_key(&fp) && looks < SCHEMA_LOOKS {
            if looks > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.refresh_schemas().await?;
            looks += 1;
        }
        let json = self.schema_json.get(&fp).ok_or_else(|| {
            SinkError::Record(format!(
                "writer schema {fp:016x} is not on {}; was the topic deleted?",
                topics::schemas_topic(&self.prefix)
            ))
        })?;
        let codec = Arc::new(EnvelopeCodec::new(json)?);
        self.codecs.insert(fp, codec.clone());
        Ok(codec)
    }

    /// Decodes a record value.
    /// Decodes a record value; returns it with the shape of its table as
    /// the record's writer schema describes it (which is what its values
    /// fit, whatever the table's latest definition).
    pub async fn decode(
        &mut self,
        payload: &[u8],
    ) -> Result<(ChangeRecord, Arc<TableSchema>), SinkError> {
        let (fp, datum) = split_single_object(payload)?;
        let codec = self.codec(fp).await?;
        let record = codec.decode(datum)?;
        let id = TableId::new(
            record.source.db.clone(),
            record.source.table.clone().unwrap_or_default(),
        );
        let shape = match self.shapes.get(&(fp, id.clone())) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(codec.table_shape(id.clone()));
                self.shapes.insert((fp, id), s.clone());
                s
            }
        };
        Ok((record, shape))
    }

    /// Every table definition known so far.
    pub fn definitions(&self) -> Vec<Arc<TableSchema>> {
        self.definitions.values().cloned().collect()
    }

    /// Takes the tables' shapes after a schema change as their definitions.
    pub fn apply_change(&mut self, change: &SchemaChange) {
        for t in &change.tables {
            match &t.definition {
                Some(def) => self.definitions.insert(t.id.clone(), Arc::new(def.clone())),
                None => self.definitions.remove(&t.id),
            };
        }
    }

    /// The definition of a table, reading the schema-changes topic again if
    /// it is not known yet.
    pub async fn definition(&mut self, id: &TableId) -> Result<Arc<TableSchema>, SinkError> {
        if let Some(d) = self.definitions.get(id) {
            return Ok(d.clone());
        }
        self.refresh_definitions().await?;
        self.definitions.get(id).cloned().ok_or_else(|| {
            SinkError::Record(format!(
                "no definition of table {id} on {}",
                topics::schema_changes_topic(&self.prefix)
            ))
        })
    }
}
