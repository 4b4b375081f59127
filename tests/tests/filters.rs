//! Per-table operation filters (`[[filter]]` in the sink's config), in the
//! snapshot and in the stream.

use std::time::Duration;

use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(120);

async fn ids(port: u16, table: &str) -> Result<Vec<(i64, String)>> {
    use mysql_async::prelude::*;
    let mut c = Db::connect(port).await?;
    Ok(c.conn
        .query(format!("SELECT id, v FROM {table} ORDER BY id"))
        .await?)
}

async fn wait_rows(table: String, want: Vec<(i64, &'static str)>) -> Result<()> {
    let want: Vec<(i64, String)> = want.into_iter().map(|(i, v)| (i, v.to_string())).collect();
    wait_until(&table.clone(), WAIT, || {
        let (table, want) = (table.clone(), want.clone());
        async move {
            let got = ids(dest_port(), &table).await.unwrap_or_default();
            Ok((got != want).then(|| format!("{got:?}")))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_filtered_per_table() -> Result<()> {
    let db = unique("filters");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE no_deletes (id INT PRIMARY KEY, v VARCHAR(10)); \
         CREATE TABLE inserts_only (id INT PRIMARY KEY, v VARCHAR(10)); \
         CREATE TABLE no_truncate (id INT PRIMARY KEY, v VARCHAR(10)); \
         CREATE TABLE everything (id INT PRIMARY KEY, v VARCHAR(10)); \
         INSERT INTO no_deletes VALUES (1, 'a'), (2, 'b'); \
         INSERT INTO inserts_only VALUES (1, 'a'); \
         INSERT INTO no_truncate VALUES (1, 'a'); \
         INSERT INTO everything VALUES (1, 'a');"
    ))
    .await?;
    let prefix = unique("filters");
    let filters = format!(
        "\n[[filter]]\ntables = [\"{db}.no_deletes\"]\noperations = [\"INSERT\", \"UPDATE\", \"DDL\"]\n\
         \n[[filter]]\ntables = [\"{db}.inserts_*\"]\noperations = [\"insert\"]\n\
         \n[[filter]]\ntables = [\"{db}.no_truncate\"]\noperations = [\"INSERT\", \"UPDATE\", \"DELETE\", \"ALTER TABLE\"]\n"
    );
    let _source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 7970, ""),
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), &filters),
    )?;
    // The snapshot's rows count as inserts.
    wait_rows(format!("`{db}`.no_deletes"), vec![(1, "a"), (2, "b")]).await?;
    wait_rows(format!("`{db}`.inserts_only"), vec![(1, "a")]).await?;

    src.exec(
        "DELETE FROM no_deletes WHERE id = 1; UPDATE no_deletes SET v = 'B' WHERE id = 2; \
         UPDATE inserts_only SET v = 'changed' WHERE id = 1; DELETE FROM inserts_only WHERE id = 1; \
         INSERT INTO inserts_only VALUES (2, 'b'); \
         TRUNCATE TABLE no_truncate; INSERT INTO no_truncate VALUES (2, 'b'); \
         ALTER TABLE no_truncate ADD COLUMN w INT; \
         DELETE FROM everything WHERE id = 1; INSERT INTO everything VALUES (2, 'b');",
    )
    .await?;
    wait_rows(format!("`{db}`.everything"), vec![(2, "b")]).await?;
    wait_rows(format!("`{db}`.no_deletes"), vec![(1, "a"), (2, "B")]).await?;
    wait_rows(format!("`{db}`.inserts_only"), vec![(1, "a"), (2, "b")]).await?;
    wait_rows(format!("`{db}`.no_truncate"), vec![(1, "a"), (2, "b")]).await?;
    // The ALTER TABLE (allowed) ran; the TRUNCATE (not allowed) did not.
    let cols: Vec<String> = {
        use mysql_async::prelude::*;
        Db::connect(dest_port())
            .await?
            .conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'no_truncate' ORDER BY ORDINAL_POSITION",
                (&db,),
            )
            .await?
    };
    assert_eq!(cols, vec!["id", "v", "w"]);
    assert!(sink.log_text().contains("schema change filtered out"));
    sink.assert_running()?;
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}
