//! `sink-connector check`: whether the destination, the account and the
//! broker are ready, item by item (see `change_stream::check`). `run` runs
//! the same check first and refuses to start on a failed item.

use std::collections::BTreeSet;
use std::time::Duration;

use change_stream::check::{grantee, parse_version, Grants, Report, Status};
use change_stream::topics;
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::apply::Applier;
use crate::config::{Config, ConflictMode};
use crate::decode::Registry;

/// What the sink does at the destination: rows, tables, indexes, views,
/// routines, triggers, events, and its state table.
const REQUIRED: [&str; 15] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "INDEX",
    "REFERENCES",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "TRIGGER",
    "EVENT",
];

/// Every item of the sink side's check.
pub async fn report(config: &Config) -> Report {
    let mut r = Report::default();
    let client_config = change_stream::kafka::client_config(
        &config.kafka.bootstrap_servers,
        &config.kafka.properties,
    );
    let mut registry = Registry::new(client_config.clone(), &config.kafka.topic_prefix);
    let broker_ok = r
        .broker(&client_config, &config.kafka.bootstrap_servers)
        .await;
    if let Some(url) = &config.kafka.schema_registry_url {
        r.registry(url).await;
        let _ = change_stream::registry::install_reader(url);
    }
    // The source's server, as the source connector described it.
    let (source_server_id, source_version) = if broker_ok {
        crate::consume::source_server(&client_config, &config.kafka.topic_prefix)
            .await
            .unwrap_or_default()
    } else {
        (None, None)
    };
    // The source's functions that a destination with its binlog on
    // refuses to create without log_bin_trust_function_creators.
    let mapping = config.mapping().unwrap_or_default();
    let mut functions_needing_trust = Vec::new();
    if broker_ok {
        let topic = topics::schema_changes_topic(&config.kafka.topic_prefix);
        let cc = client_config.clone();
        if let Ok(Ok(records)) = tokio::task::spawn_blocking(move || {
            change_stream::kafka::read_to_end(&cc, &topic, Duration::from_secs(30))
        })
        .await
        {
            let mut values = Vec::new();
            for v in records.into_iter().filter_map(|(_, v)| v) {
                if let Ok(v) = change_stream::registry::unframed(v).await {
                    values.push(v);
                }
            }
            functions_needing_trust = functions_needing_trust_in(values.into_iter(), &mapping);
        }
    }
    // The source's tables, under their names at the destination.
    let definitions: Vec<_> = if broker_ok && registry.refresh_definitions().await.is_ok() {
        registry
            .definitions()
            .iter()
            .map(|d| std::sync::Arc::new(mapping.schema(d)))
            .collect()
    } else {
        Vec::new()
    };

    let mut applier = match Applier::connect(
        &config.destination,
        config.destination.connect_timeout_secs,
        config.apply.statement_max_bytes,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            r.push(
                "destination.connect",
                Status::Fail,
                e.to_string(),
                "a connection to the destination",
                "check [destination] url (host, port, user, password) and that the server runs",
            );
            return r;
        }
    };
    r.pass(
        "destination.connect",
        "connected",
        "a connection to the destination",
    );
    let conn = applier.conn();
    if let Err(e) = check_destination(
        conn,
        config,
        source_version,
        &definitions,
        &functions_needing_trust,
        &mut r,
    )
    .await
    {
        r.push(
            "destination.queries",
            Status::Fail,
            format!("a query failed: {e}"),
            "the account can read server variables and information_schema",
            "grant the privileges listed under destination.privileges",
        );
    }
    origin_items(&mut applier, config, source_server_id, &mut r).await;
    r.acknowledge(&config.check.acknowledge);
    r
}

/// Changes are written under their origin's server id: the account may
/// set it, and the destination's server id is not the source's.
async fn origin_items(
    applier: &mut Applier,
    config: &Config,
    source_server_id: Option<u32>,
    r: &mut Report,
) {
    let dest = applier.server_id;
    match source_server_id {
        Some(src) if src == dest => r.push(
            "destination.server_id",
            Status::Fail,
            format!("the destination has the source's server_id {dest}"),
            "the destination's server_id differs from the source's",
            "give every server of the topology its own server_id (server_id in its configuration)",
        ),
        Some(src) => r.pass(
            "destination.server_id",
            format!("destination {dest}, source {src}"),
            "the destination's server_id differs from the source's",
        ),
        None => r.push(
            "destination.server_id",
            Status::Warning,
            format!("destination {dest}; the source's is not known yet"),
            "the destination's server_id differs from the source's",
            "start the source connector (it records its server's server_id), then check again",
        ),
    }
    if !config.apply.origin_server_id {
        r.pass(
            "destination.origin_server_id",
            "off (apply.origin_server_id = false): changes are written under the destination's own server_id",
            "the account may set the session's server_id",
        );
        return;
    }
    match applier.may_set_server_id().await {
        Ok(()) => r.pass(
            "destination.origin_server_id",
            "the account sets each change's origin as its session's server_id",
            "the account may set the session's server_id",
        ),
        Err(e) => r.push(
            "destination.origin_server_id",
            Status::Fail,
            format!("cannot set the session's server_id: {e}"),
            "the account may set the session's server_id",
            "GRANT BINLOG REPLAY ON *.* (SUPER before MariaDB 10.5.2) to the sink's account, or acknowledge this item: the destination's binlog then names the destination as the origin of every change, and a two-way pair or a ring loops",
        ),
    }
}

async fn check_destination(
    conn: &mut Conn,
    config: &Config,
    source_version: Option<String>,
    definitions: &[std::sync::Arc<change_stream::table::TableSchema>],
    functions_needing_trust: &[String],
    r: &mut Report,
) -> Result<(), crate::error::SinkError> {
    let sql = |e| crate::error::from_mysql("check", e);
    let version: String = conn
        .query_first("SELECT @@version")
        .await
        .map_err(sql)?
        .unwrap_or_default();
    match source_version {
        None => r.push(
            "destination.version",
            Status::Warning,
            format!("destination {version}; the source's version is not known yet"),
            "the destination's MariaDB version not older than the source's",
            "start the source connector (it records its server's version), then check again",
        ),
        Some(src) => match (parse_version(&version), parse_version(&src)) {
            (Some(d), Some(s)) if d >= s && version.contains("MariaDB") => r.pass(
                "destination.version",
                format!("destination {version}, source {src}"),
                "the destination's MariaDB version not older than the source's",
            ),
            _ => r.push(
                "destination.version",
                Status::Fail,
                format!("destination {version}, source {src}"),
                "the destination's MariaDB version not older than the source's",
                "upgrade the destination to the source's MariaDB version or newer",
            ),
        },
    }

    // Privileges, globally or on every database the sink writes.
    let user: String = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(sql)?
        .unwrap_or_default();
    let who = grantee(&user);
    let grants = Grants {
        global: conn
            .exec(
                "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
                (&who,),
            )
            .await
            .map_err(sql)?,
        schema: conn
            .exec(
                "SELECT TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
                (&who,),
            )
            .await
            .map_err(sql)?,
    };
    let mut databases: BTreeSet<String> =
        definitions.iter().map(|d| d.id.database.clone()).collect();
    databases.insert(config.destination.state_database.clone());
    let databases: Vec<String> = databases.into_iter().collect();
    let required: Vec<&[&str]> = REQUIRED.iter().map(std::slice::from_ref).collect();
    let missing = grants.missing(&required, true, &databases);
    let required_text = format!(
        "{} on the replicated databases and on `{}` (or globally)",
        REQUIRED.join(", "),
        config.destination.state_database
    );
    if missing.is_empty() {
        r.pass(
            "destination.privileges",
            format!("{user} has them"),
            required_text,
        );
    } else {
        r.push(
            "destination.privileges",
            Status::Fail,
            format!("{user} lacks {}", missing.join(", ")),
            required_text,
            format!(
                "GRANT {} ON *.* TO {who} (or on each database)",
                missing.join(", ")
            ),
        );
    }
    let definer = grants.missing(&[&["SET USER", "SUPER"]], false, &[]);
    if definer.is_empty() {
        r.pass(
            "destination.definer",
            format!("{user} may set other DEFINERs"),
            "SET USER, to keep the source's DEFINER accounts",
        );
    } else {
        r.push(
            "destination.definer",
            Status::Warning,
            format!("{user} lacks SET USER"),
            "SET USER, to keep the source's DEFINER accounts",
            format!("GRANT SET USER ON *.* TO {who}; without it views, routines and triggers are created with the sink's account as DEFINER"),
        );
    }

    // Functions the destination would refuse (error 1418), where a native
    // replica creates them.
    let (log_bin, trust): (Option<String>, Option<String>) = conn
        .query_first("SELECT @@log_bin, @@log_bin_trust_function_creators")
        .await
        .map_err(sql)?
        .unwrap_or_default();
    let on = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("ON"))
    };
    let required = "every function of the source can be created at the destination (with its binlog on, functions without DETERMINISTIC, NO SQL or READS SQL DATA need log_bin_trust_function_creators = ON)";
    if !on(&log_bin) || on(&trust) {
        r.pass(
            "destination.function_creators",
            if on(&trust) {
                "log_bin_trust_function_creators is ON"
            } else {
                "the destination's binlog is off"
            },
            required,
        );
    } else if functions_needing_trust.is_empty() {
        r.pass(
            "destination.function_creators",
            "log_bin ON, log_bin_trust_function_creators OFF; no function of the source's needs it",
            required,
        );
    } else {
        r.push(
            "destination.function_creators",
            Status::Fail,
            format!(
                "log_bin ON, log_bin_trust_function_creators OFF, and {} function(s) of the source's declare none of DETERMINISTIC, NO SQL, READS SQL DATA: {}",
                functions_needing_trust.len(),
                functions_needing_trust.join(", ")
            ),
            required,
            "SET GLOBAL log_bin_trust_function_creators = 1 at the destination (and log_bin_trust_function_creators = 1 in its config), as a native replica needs no such setting; or declare the functions DETERMINISTIC, NO SQL or READS SQL DATA at the source",
        );
    }

    // The state database is the sink's own.
    if definitions
        .iter()
        .any(|d| d.id.database == config.destination.state_database)
    {
        r.push(
            "destination.state_database",
            Status::Fail,
            format!(
                "`{}` is also a replicated database",
                config.destination.state_database
            ),
            "a database of the sink's own",
            "set [destination] state_database to another name",
        );
    } else {
        r.pass(
            "destination.state_database",
            format!("`{}`", config.destination.state_database),
            "a database of the sink's own",
        );
    }

    // Conflicting tables, when nothing has been applied yet.
    let first_start = crate::state::load(
        conn,
        &config.destination.state_database,
        &config.kafka.topic_prefix,
    )
    .await
    .map(|a| a.is_empty())
    .unwrap_or(true);
    let required = "no table of the source's already at the destination with rows or another definition (schema.on_conflict = fail)";
    if !first_start {
        r.pass(
            "destination.conflicts",
            "not a first start: the tables are the sink's",
            required,
        );
    } else if definitions.is_empty() {
        r.push(
            "destination.conflicts",
            Status::Warning,
            "the source has published no table definitions yet",
            required,
            "start the source connector, then check again",
        );
    } else {
        let mut found = Vec::new();
        for d in definitions {
            if let Some(why) = crate::ddl::conflict(conn, d).await? {
                found.push(why);
            }
        }
        found.sort();
        match (found.is_empty(), config.schema.on_conflict) {
            (true, _) => r.pass("destination.conflicts", format!("none of {} table(s)", definitions.len()), required),
            (false, ConflictMode::Ignore) => r.push(
                "destination.conflicts",
                Status::Warning,
                format!("{} table(s) already exist at the destination: {}", found.len(), found.join(", ")),
                required,
                "schema.on_conflict = ignore: the sink writes into them (full synchronization keeps their rows with the same key, incremental overwrites them)",
            ),
            (false, ConflictMode::Fail) => r.push(
                "destination.conflicts",
                Status::Fail,
                format!("{} table(s) already exist at the destination: {}", found.len(), found.join(", ")),
                required,
                "drop or rename them, or set [schema] on_conflict = \"ignore\" to write into them",
            ),
        }
    }
    Ok(())
}

/// The functions (as `db.name` at the destination) that the schema-change
/// records, read in order, leave defined without DETERMINISTIC, NO SQL or
/// READS SQL DATA.
fn functions_needing_trust_in(
    records: impl Iterator<Item = Vec<u8>>,
    mapping: &crate::mapping::Mapping,
) -> Vec<String> {
    let mut found = std::collections::BTreeMap::new();
    for value in records {
        let Ok(change) = change_stream::schema_change::SchemaChange::decode(&value) else {
            continue;
        };
        let Some(sql) = &change.ddl else { continue };
        let ansi = change_stream::ddl::ansi_quotes(change.sql_mode.as_deref());
        match change_stream::ddl::classify_in(sql, &change.database, ansi) {
            change_stream::ddl::Ddl::Object {
                kind,
                database,
                name,
            } if kind.ends_with(" FUNCTION") => {
                let needs = change_stream::ddl::function_needing_trust(sql, &change.database, ansi)
                    .is_some();
                let key = format!("{}.{name}", mapping.database(&database));
                if needs {
                    found.insert(key, ());
                } else {
                    found.remove(&key);
                }
            }
            _ => {}
        }
    }
    found.into_keys().collect()
}
