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
//! sink turns a wire-format message back ([`unframe`]) as it
//! reads it, so that everything between works on one form. Both only swap
//! the header in front of the datum. Ids and schemas are cached: the
//! registry is asked once per subject and schema, not per record. The
//! REST calls are schema_registry_converter's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{
    get_all_subjects, get_schema_by_id, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::avro::{split_single_object, AvroSchema, SINGLE_OBJECT_MAGIC};
use crate::Error;

/// The first byte of the Confluent wire format.
pub const WIRE_MAGIC: u8 = 0;

/// A schema registry that speaks the Confluent REST API.
pub struct Registry {
    settings: SrSettings,
    /// The URL without its credentials, for messages.
    shown: String,
    /// (subject, fingerprint) -> id, as registered.
    ids: Mutex<HashMap<(String, u64), u32>>,
    /// Fingerprint -> schema JSON, of the schemas the source may frame.
    schemas: Mutex<HashMap<u64, String>>,
    /// Id -> fingerprint, of the schemas the sink met.
    fingerprints: Mutex<HashMap<u32, (u64, String)>>,
}

impl Registry {
    /// A client of the registry at `url` (its Confluent-compatible API's
    /// base, e.g. `http://registry:8081`); credentials in the URL are sent
    /// as basic authentication.
    pub fn new(url: &str) -> Result<Self, Error> {
        let shown = shown(url);
        let mut builder = SrSettings::new_builder(shown.clone());
        if let Ok(u) = reqwest::Url::parse(url) {
            if !u.username().is_empty() {
                builder.set_basic_authorization(u.username(), u.password());
            }
        }
        let settings = builder
            .set_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| {
                Error::Registry(format!("cannot make a client for {shown}: {}", e.error))
            })?;
        Ok(Self {
            settings,
            shown,
            ids: Mutex::default(),
            schemas: Mutex::default(),
            fingerprints: Mutex::default(),
        })
    }

    /// Proves the registry answers (`GET /subjects`).
    pub async fn check(&self) -> Result<(), Error> {
        get_all_subjects(&self.settings)
            .await
            .map(|_| ())
            .map_err(|e| self.failed("listing the subjects", e))
    }

    /// What a failed call says: a registry that does not answer (retried),
    /// or one that refuses.
    fn failed(&self, doing: &str, e: SRCError) -> Error {
        let cause = without_url(e.cause.as_deref().unwrap_or(&e.error));
        let said = format!(
            "the schema registry at {} failed {doing}: {}: {cause}",
            self.shown, e.error
        );
        if e.retriable {
            Error::RegistryUnreachable(said)
        } else {
            Error::Registry(said)
        }
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
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, json);
        let registered = post_schema(&self.settings, subject.to_string(), supplied)
            .await
            .map_err(|e| {
                if e.cause.as_deref().is_some_and(|c| c.contains("409")) || e.error.contains("409") {
                    Error::Registry(format!(
                        "the schema registry at {} refused a new schema for subject {subject} as incompatible: the table's definition changed in a way the subject's compatibility rule forbids; set it to NONE (PUT /config/{subject} {{\"compatibility\": \"NONE\"}}) and restart",
                        self.shown
                    ))
                } else {
                    self.failed(&format!("registering {subject}"), e)
                }
            })?;
        let id = registered.id;
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
        let registered = get_schema_by_id(id, &self.settings).await.map_err(|e| {
            match self.failed(&format!("reading schema {id}"), e) {
                Error::Registry(m) => Error::Registry(format!(
                    "{m}; is kafka.schema_registry_url the registry the source writes to?"
                )),
                e => e,
            }
        })?;
        let schema = AvroSchema::parse(&registered.schema)?;
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

/// An HTTP error without the URL it names.
fn without_url(e: &str) -> String {
    match e.find(" for url (") {
        Some(at) => e[..at].to_string(),
        None => e.to_string(),
    }
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
