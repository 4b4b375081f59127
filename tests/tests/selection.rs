//! Selection of databases, tables and columns, by name and pattern, with
//! include and exclude lists: in the snapshot, in the stream, for tables
//! created later, and with excluded columns absent from Kafka.

use std::time::Duration;

use e2e_tests::*;
use mysql_async::prelude::*;

const WAIT: Duration = Duration::from_secs(120);

async fn tables_of(port: u16, db: &str) -> Result<Vec<String>> {
    let mut c = Db::connect(port).await?;
    Ok(c.conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
            (db,),
        )
        .await?)
}

async fn columns_of(port: u16, db: &str, table: &str) -> Result<Vec<String>> {
    let mut c = Db::connect(port).await?;
    Ok(c.conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?)
}

/// Waits until `sql` gives the same rows on the source and the destination.
async fn wait_same(sql: String) -> Result<()> {
    wait_until(&sql.clone(), WAIT, || {
        let sql = sql.clone();
        async move {
            let a = Db::connect(source_port()).await?.rows(&sql).await;
            let b = Db::connect(dest_port()).await?.rows(&sql).await;
            Ok(match (a, b) {
                (Ok(a), Ok(b)) if a == b => None,
                (a, b) => Some(format!(
                    "{:?} vs {:?}",
                    a.map(|r| r.len()),
                    b.map(|r| r.len())
                )),
            })
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_tables_and_columns_are_selected() -> Result<()> {
    let a = unique("sel_a");
    let b = unique("sel_b");
    drop_database(&[source_port(), dest_port()], &a).await?;
    drop_database(&[source_port(), dest_port()], &b).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{a}`; CREATE DATABASE `{b}`; \
         CREATE TABLE `{a}`.people (id INT PRIMARY KEY, name VARCHAR(20), secret VARCHAR(20), \
            hint VARCHAR(2) AS (RIGHT(secret, 2)) VIRTUAL, KEY ix_secret (secret)); \
         INSERT INTO `{a}`.people (id, name, secret) VALUES (1, 'ann', 'TOPSECRET1'), (2, 'bob', 'TOPSECRET2'); \
         CREATE TABLE `{a}`.tmp_scratch (id INT PRIMARY KEY); INSERT INTO `{a}`.tmp_scratch VALUES (1); \
         CREATE TABLE `{b}`.keep_1 (id INT PRIMARY KEY, v INT); INSERT INTO `{b}`.keep_1 VALUES (1, 1); \
         CREATE TABLE `{b}`.other (id INT PRIMARY KEY); INSERT INTO `{b}`.other VALUES (1);"
    ))
    .await?;
    let prefix = unique("sel");
    let extra = format!(
        "exclude_tables = [\"{a}.tmp_*\"]\ntables = [\"{b}.keep_*\"]\nexclude_columns = [\"{a}.people.SECRET\"]"
    );
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&a], 7901, &extra),
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;

    // Snapshot.
    wait_same(format!("SELECT id, name FROM `{a}`.people ORDER BY id")).await?;
    wait_same(format!("SELECT * FROM `{b}`.keep_1 ORDER BY id")).await?;
    assert_eq!(tables_of(dest_port(), &a).await?, vec!["people"]);
    assert_eq!(tables_of(dest_port(), &b).await?, vec!["keep_1"]);
    // The excluded column, the generated column computed from it and the
    // index on it are not at the destination.
    assert_eq!(
        columns_of(dest_port(), &a, "people").await?,
        vec!["id", "name"]
    );

    // Stream: changes, and tables created later that match or not.
    src.exec(&format!(
        "INSERT INTO `{a}`.people (id, name, secret) VALUES (3, 'cy', 'TOPSECRET3'); \
         UPDATE `{a}`.people SET secret = 'TOPSECRET4', name = 'ann2' WHERE id = 1; \
         DELETE FROM `{a}`.people WHERE id = 2; \
         CREATE TABLE `{a}`.later (id INT PRIMARY KEY); INSERT INTO `{a}`.later VALUES (7); \
         CREATE TABLE `{a}`.tmp_later (id INT PRIMARY KEY); INSERT INTO `{a}`.tmp_later VALUES (7); \
         CREATE TABLE `{b}`.keep_2 (id INT PRIMARY KEY); INSERT INTO `{b}`.keep_2 VALUES (8); \
         CREATE TABLE `{b}`.nope (id INT PRIMARY KEY); INSERT INTO `{b}`.nope VALUES (9); \
         INSERT INTO `{b}`.other VALUES (2);"
    ))
    .await?;
    wait_same(format!("SELECT id, name FROM `{a}`.people ORDER BY id")).await?;
    wait_same(format!("SELECT * FROM `{a}`.later")).await?;
    wait_same(format!("SELECT * FROM `{b}`.keep_2")).await?;
    assert_eq!(tables_of(dest_port(), &a).await?, vec!["later", "people"]);
    assert_eq!(tables_of(dest_port(), &b).await?, vec!["keep_1", "keep_2"]);
    source.assert_running()?;
    sink.assert_running()?;

    // Nothing of the excluded column reached Kafka: not in a schema, not
    // in a record, not in a schema change.
    let mut seen = 0;
    for topic in list_topics(&format!("{prefix}."))? {
        for (_, value) in read_topic(&topic)? {
            let Some(v) = value else { continue };
            seen += 1;
            let text = String::from_utf8_lossy(&v);
            assert!(
                !text.contains("TOPSECRET"),
                "{topic} carries a secret value"
            );
            assert!(
                !text.contains("`secret`") && !text.contains("\"secret\""),
                "{topic} names the excluded column: {text}"
            );
        }
    }
    assert!(seen > 10, "read only {seen} messages");
    drop_database(&[source_port(), dest_port()], &a).await?;
    drop_database(&[source_port(), dest_port()], &b).await?;
    Ok(())
}

/// Single tables alone, no whole database: only they are synchronized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_tables_alone_are_a_selection() -> Result<()> {
    let db = unique("e2e_single");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT); \
         CREATE TABLE `{db}`.u (id INT PRIMARY KEY); INSERT INTO `{db}`.t VALUES (1, 1); INSERT INTO `{db}`.u VALUES (1);"
    ))
    .await?;
    let prefix = unique("single");
    let source_text = source_config(&prefix, &[], 5508, &format!("tables = [\"{db}.t\"]"))
        .replace("databases = []\n", "");
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_text,
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    src.exec(&format!(
        "INSERT INTO `{db}`.t VALUES (2, 2); INSERT INTO `{db}`.u VALUES (2)"
    ))
    .await?;
    wait_same(format!("SELECT * FROM `{db}`.t ORDER BY id")).await?;
    assert_eq!(tables_of(dest_port(), &db).await?, vec!["t".to_string()]);
    source.assert_running()?;
    sink.assert_running()?;
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}
