//! Schema-registry mode against a real registry (the stack's Apicurio
//! Registry, its Confluent-compatible API): the source writes the Confluent
//! wire format with its schemas registered under `<topic>-key` and
//! `<topic>-value`; confluent-kafka's AvroDeserializer, not our code, reads
//! the records back; and the sink applies them to a destination.

use std::time::Duration;

use anyhow::Result;
use e2e_tests::*;
use serde_json::Value;

/// The registry's Confluent-compatible API (`scripts/stack.sh`).
fn registry_url() -> String {
    let port = std::env::var("STACK_REGISTRY_PORT").unwrap_or_else(|_| "18081".into());
    format!("http://127.0.0.1:{port}/apis/ccompat/v7")
}

/// The records of `topic` as the Python consumer decoded them.
fn read_with_registry(topic: &str) -> Result<Vec<Value>> {
    let python = std::env::var("TEST_PYTHON").map_err(|_| {
        anyhow::anyhow!("TEST_PYTHON is not set: run the tests with scripts/test.sh, which makes the Python environment (scripts/python.sh)")
    })?;
    let out = std::process::Command::new(python)
        .arg(workspace().join("tests/python/registry_read.py"))
        .args([&kafka_servers(), &registry_url(), topic])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "registry_read.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice::<Vec<Value>>(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_format_read_by_a_confluent_deserializer_and_applied() -> Result<()> {
    let db = unique("e2e_registry");
    let prefix = unique("registry");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, \
         price DECIMAL(10,2), seen DATETIME(3))"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.items VALUES (1, 'one', 1.50, '2026-01-02 03:04:05.678'), \
         (2, 'two', NULL, NULL), (3, 'three', 3.25, '2026-12-31 23:59:59.999')"
    ))
    .await?;

    let registry = format!("schema_registry_url = \"{}\"\n", registry_url());
    let source_text = source_config(&prefix, &[&db], 9991, "")
        .replace("[kafka]\n", &format!("[kafka]\n{registry}"));
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_text,
    )?;
    let sink_text = sink_config(&prefix, &format!("{prefix}-g"), dest_port(), "")
        .replace("[kafka]\n", &format!("[kafka]\n{registry}"));
    let mut sink = Connector::start("sink-connector", &format!("{prefix}-sink"), &sink_text)?;
    let table = format!("`{db}`.items");
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(&table, "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    src.exec(&format!(
        "UPDATE `{db}`.items SET name = 'uno' WHERE id = 1"
    ))
    .await?;
    src.exec(&format!("DELETE FROM `{db}`.items WHERE id = 2"))
        .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.items VALUES (4, 'four', 4.00, NULL)"
    ))
    .await?;
    // A new shape: a new schema version under the same subject.
    src.exec(&format!(
        "ALTER TABLE `{db}`.items ADD COLUMN note VARCHAR(20)"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.items VALUES (5, 'five', NULL, NULL, 'new')"
    ))
    .await?;
    wait_equal_watching(
        source_port(),
        dest_port(),
        &[(&table, "id")],
        Duration::from_secs(120),
        &mut [&mut source, &mut sink],
    )
    .await?;
    anyhow::ensure!(source.stop()?.success(), "source: {}", source.log_tail());
    anyhow::ensure!(sink.stop()?.success(), "sink: {}", sink.log_tail());

    // Read back by a consumer that knows only the registry.
    let topic = format!("{prefix}.{db}.items");
    // Tombstones (after deletes) have no value to decode.
    let records: Vec<Value> = read_with_registry(&topic)?
        .into_iter()
        .filter(|r| !r["value"].is_null())
        .collect();
    let ops: Vec<&str> = records
        .iter()
        .filter_map(|r| r["value"]["op"].as_str())
        .collect();
    anyhow::ensure!(
        ops == ["r", "r", "r", "u", "d", "c", "c"],
        "operations read through the registry: {ops:?} in {records:?}"
    );
    let after = |i: usize| &records[i]["value"]["after"];
    anyhow::ensure!(
        records[0]["key"]["id"] == 1
            && after(0)["name"] == "one"
            && after(3)["name"] == "uno"
            && records[4]["value"]["before"]["id"] == 2
            && after(6)["note"] == "new",
        "records read through the registry: {records:?}"
    );
    // One schema id per shape, the same for every record of it; the
    // ALTER made a second value schema.
    let value_ids: std::collections::BTreeSet<u64> = records
        .iter()
        .filter_map(|r| r["value_schema_id"].as_u64())
        .collect();
    anyhow::ensure!(value_ids.len() == 2, "value schema ids: {value_ids:?}");
    let (status, subjects) = http_get_url(&format!("{}/subjects", registry_url())).await?;
    anyhow::ensure!(
        status == 200
            && subjects.contains(&format!("\"{topic}-key\""))
            && subjects.contains(&format!("\"{topic}-value\"")),
        "the registry's subjects: {status} {subjects}"
    );
    Ok(())
}

/// `GET url`: status and body.
async fn http_get_url(url: &str) -> Result<(u16, String)> {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    http_get(addr, path).await
}
