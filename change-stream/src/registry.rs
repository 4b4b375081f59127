//! Schema-registry mode (`kafka.schema_registry_url`): keys and values in
//! the Confluent wire format, as Debezium's AvroConverter writes them,
//! instead of Avro single-object encoding.
//!
//! The wire format is the byte `0`, the schema's id in the registry (four
//! bytes, big-endian), then the same Avro binary datum. Schemas are
//! registered under TopicNameStrategy subjects, `<topic>-key` and
//! `<topic>-value`, through the registry's REST API (`POST
//! /subjects/{subject}/versions`); registering a schema the subject has
//! already returns its id again, so a restart finds the same ids.
//!
//! The connectors build single-object messages either way: the source
//! turns each into the wire format as it sends it ([`Registry::frame`]), the
//! sink turns a wire-format message back ([`Registry::unframe`]) as it
//! reads it, so that everything between works on one form. Both only swap
//! the header in front of the datum. Ids and schemas are cached: the
//! registry is asked once per subject and schema, not per record.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::avro::{split_single_object, AvroSchema, SINGLE_OBJECT_MAGIC};
use crate::Error;

/// The first byte of the Confluent wire format.
pub const WIRE_MAGIC: u8 = 0;

/// The media type of the registry's requests.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A schema registry that speaks the Confluent REST API.
pub struct Registry {
    url: String,
    /// `url` without its credentials, for messages.
    shown: String,
    client: reqwest::Client,
    /// (subject, fingerprint) -> id, as registered.
    ids: Mutex<HashMap<(String, u64), u32>>,
    /// Fingerprint -> schema JSON, of the schemas the source may frame.
    schemas: Mutex<HashMap<u64, String>>,
    /// Id -> fingerprint, of the schemas the sink met.
    fingerprints: Mutex<HashMap<u32, (u64, String)>>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
}

impl Registry {
    /// A client of the registry at `url` (its Confluent-compatible API's
    /// base, e.g. `http://registry:8081`).
    pub fn new(url: &str) -> Result<Self, Error> {
        let url = url.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Registry(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            shown: shown(&url),
            url,
            client,
            ids: Mutex::default(),
            schemas: Mutex::default(),
            fingerprints: Mutex::default(),
        })
    }

    /// Proves the registry answers (`GET /subjects`).
    pub async fn check(&self) -> Result<(), Error> {
        let url = format!("{}/subjects", self.url);
        let answer = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !answer.status().is_success() {
            return Err(Error::Registry(format!(
                "GET /subjects answered {}: is {} the registry's Confluent-compatible API?",
                answer.status(),
                self.shown
            )));
        }
        Ok(())
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        Error::RegistryUnreachable(format!(
            "cannot reach the schema registry at {}: {}",
            self.shown,
            without_url(&e)
        ))
    }

    /// Makes `schema` one that [`Registry::frame`] may meet.
    pub fn know(&self, schema: &AvroSchema) {
        self.schemas
            .lock()
            .unwrap()
            .entry(schema.fingerprint)
            .or_insert_with(|| schema.json.clone());
    }

    /// The id of the schema `fingerprint` under `subject`, registered the
    /// first time.
    async fn id(&self, subject: &str, fingerprint: u64) -> Result<u32, Error> {
        let cached = self
            .ids
            .lock()
            .unwrap()
            .get(&(subject.to_string(), fingerprint))
            .copied();
        if let Some(id) = cached {
            return Ok(id);
        }
        let json = self
            .schemas
            .lock()
            .unwrap()
            .get(&fingerprint)
            .cloned()
            .ok_or_else(|| {
                Error::Registry(format!(
                    "schema {fingerprint:016x} of {subject} was not published before its record"
                ))
            })?;
        let url = format!("{}/subjects/{subject}/versions", self.url);
        let answer = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .json(&serde_json::json!({ "schema": json }))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = answer.status();
        let text = answer.text().await.map_err(|e| self.unreachable(e))?;
        if status.as_u16() == 409 {
            return Err(Error::Registry(format!(
                "the schema registry refused a new schema for subject {subject} as incompatible ({}); the table's definition changed in a way the subject's compatibility rule forbids: set it to NONE (PUT {}/config/{subject} {{\"compatibility\": \"NONE\"}}) and restart",
                text.trim(),
                self.shown
            )));
        }
        if status.is_server_error() {
            return Err(Error::RegistryUnreachable(format!(
                "the schema registry at {} answered {status} registering {subject}: {}",
                self.shown,
                text.trim()
            )));
        }
        let id = serde_json::from_str::<IdAnswer>(&text)
            .map_err(|_| {
                Error::Registry(format!(
                    "the schema registry answered {status} registering {subject}: {}",
                    text.trim()
                ))
            })?
            .id;
        tracing::info!(subject, id, "schema registered");
        self.ids
            .lock()
            .unwrap()
            .insert((subject.to_string(), fingerprint), id);
        Ok(id)
    }

    /// `message` (single-object encoded, a key when `key`) in the wire
    /// format of `topic`'s subject; anything else (JSON, text) as it is.
    pub async fn frame(&self, topic: &str, key: bool, message: &[u8]) -> Result<Vec<u8>, Error> {
        if !message.starts_with(&SINGLE_OBJECT_MAGIC) {
            return Ok(message.to_vec());
        }
        let (fingerprint, datum) = split_single_object(message)?;
        let subject = format!("{topic}-{}", if key { "key" } else { "value" });
        let id = self.id(&subject, fingerprint).await?;
        let mut out = Vec::with_capacity(5 + datum.len());
        out.push(WIRE_MAGIC);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(datum);
        Ok(out)
    }

    /// The writer schema of id `id`: its fingerprint and JSON, asked of the
    /// registry the first time (`GET /schemas/ids/{id}`).
    pub async fn schema(&self, id: u32) -> Result<(u64, String), Error> {
        if let Some(known) = self.fingerprints.lock().unwrap().get(&id).cloned() {
            return Ok(known);
        }
        let url = format!("{}/schemas/ids/{id}", self.url);
        let answer = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = answer.status();
        let text = answer.text().await.map_err(|e| self.unreachable(e))?;
        if status.is_server_error() {
            return Err(Error::RegistryUnreachable(format!(
                "the schema registry at {} answered {status} for schema {id}",
                self.shown
            )));
        }
        let json = serde_json::from_str::<SchemaAnswer>(&text)
            .map_err(|_| {
                Error::Registry(format!(
                    "the schema registry at {} has no schema {id} ({status}: {}); is kafka.schema_registry_url the registry the source writes to?",
                    self.shown,
                    text.trim()
                ))
            })?
            .schema;
        let schema = AvroSchema::parse(&json)?;
        let known = (schema.fingerprint, schema.json);
        self.fingerprints.lock().unwrap().insert(id, known.clone());
        Ok(known)
    }
}

/// The registry a sink reads wire-format records with, once configured.
static READER: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();

/// Has [`unframe`] resolve schema ids at the registry at `url`.
pub fn install_reader(url: &str) -> Result<(), Error> {
    let _ = READER.set(Registry::new(url)?);
    Ok(())
}

/// Appends `message` to `out` single-object encoded: a wire-format
/// message with its header swapped (its schema asked of the registry of
/// [`install_reader`] once per id), anything else as it is.
pub async fn unframe(message: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let Some(id) = wire_id(message) else {
        out.extend_from_slice(message);
        return Ok(());
    };
    let registry = READER.get().ok_or_else(|| {
        Error::Registry(format!(
            "a record is in the schema registry's wire format (schema id {id}): set kafka.schema_registry_url to the registry the source writes to"
        ))
    })?;
    let (fingerprint, _) = registry.schema(id).await?;
    out.extend_from_slice(&crate::avro::single_object_header(fingerprint));
    out.extend_from_slice(&message[5..]);
    Ok(())
}

/// [`unframe`] into a new buffer.
pub async fn unframed(message: Vec<u8>) -> Result<Vec<u8>, Error> {
    if wire_id(&message).is_none() {
        return Ok(message);
    }
    let mut out = Vec::with_capacity(message.len() + 5);
    unframe(&message, &mut out).await?;
    Ok(out)
}

/// The writer schema JSON of `fingerprint`, if a wire-format record with
/// it was read.
pub fn met(fingerprint: u64) -> Option<String> {
    READER.get().and_then(|r| {
        r.fingerprints
            .lock()
            .unwrap()
            .values()
            .find(|(fp, _)| *fp == fingerprint)
            .map(|(_, json)| json.clone())
    })
}

/// `url` without a user name or password, for messages and logs.
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "the configured URL".to_string(),
    }
}

/// Whether `url` can be a registry's: `http://` or `https://`.
pub fn valid_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && reqwest::Url::parse(url).is_ok()
}

/// The schema id of a wire-format message.
pub fn wire_id(message: &[u8]) -> Option<u32> {
    match message {
        [WIRE_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// An HTTP error without its URL (which may hold credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(at) = e.find(" for url (") {
        e.truncate(at);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_ids_are_big_endian_after_a_zero() {
        assert_eq!(wire_id(&[0, 0, 0, 1, 2, 9, 9]), Some(258));
        assert_eq!(wire_id(&[0xC3, 1, 0, 0, 0, 0]), None);
        assert_eq!(wire_id(&[0, 0, 0]), None);
    }

    #[test]
    fn credentials_are_not_shown() {
        assert_eq!(
            shown("https://user:secret@registry:8081/apis/ccompat/v7"),
            "https://registry:8081/apis/ccompat/v7"
        );
        assert!(valid_url("http://127.0.0.1:18081"));
        assert!(!valid_url("registry:8081"));
    }
}
