//! A WHERE row filter, in the snapshot (pushed down) and in the stream
//! (evaluated by the connector): NULLs, collation, decimals, dates, and
//! updates that move rows into and out of the condition. The destination
//! must hold exactly the rows MariaDB itself selects with the condition.

use std::time::Duration;

use e2e_tests::*;

const WAIT: Duration = Duration::from_secs(120);
const CONDITION: &str =
    "amount > 100 AND region IN ('eu','us') AND (day IS NULL OR day >= '2024-01-01')";

async fn wait_filtered(db: &str) -> Result<()> {
    let src_sql = format!("SELECT * FROM `{db}`.orders WHERE {CONDITION} ORDER BY id");
    let dst_sql = format!("SELECT * FROM `{db}`.orders ORDER BY id");
    wait_until("the filtered rows", WAIT, || {
        let (a, b) = (src_sql.clone(), dst_sql.clone());
        async move {
            let a = Db::connect(source_port()).await?.rows(&a).await?;
            let b = Db::connect(dest_port())
                .await?
                .rows(&b)
                .await
                .unwrap_or_default();
            Ok((a != b).then(|| format!("source (filtered) {a:?}\ndestination {b:?}")))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_filter_in_snapshot_and_stream() -> Result<()> {
    let db = unique("rowfilter");
    drop_database(&[source_port(), dest_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{db}`; USE `{db}`; \
         CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2) NULL, \
           region VARCHAR(8) COLLATE utf8mb4_general_ci NULL, day DATE NULL, note VARCHAR(10)); \
         CREATE TABLE other (id INT PRIMARY KEY); INSERT INTO other VALUES (1), (2); \
         INSERT INTO orders VALUES \
           (1, 150, 'EU', '2024-02-01', 'in'), (2, 50, 'eu', NULL, 'low'), (3, NULL, 'eu', NULL, 'null'), \
           (4, 200, NULL, NULL, 'noregion'), (5, 300, 'Us ', NULL, 'case'), (6, 101, 'xx', NULL, 'region'), \
           (7, 100.00, 'us', NULL, 'edge'), (8, 100.01, 'us', '2023-12-31', 'old');"
    ))
    .await?;
    let prefix = unique("rowfilter");
    let filter = format!(
        "[[source.row_filter]]\ntables = [\"{db}.orders\"]\nwhere = \"{}\"",
        CONDITION.replace('"', "\\\"")
    );
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 7990, &filter),
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), ""),
    )?;
    wait_filtered(&db).await?;
    assert_eq!(
        Db::connect(dest_port())
            .await?
            .count(&format!("`{db}`.orders"))
            .await?,
        2
    );
    // A table without a filter arrives whole (on its own apply connection,
    // so it may commit just after orders).
    let other = format!("`{db}`.other");
    wait_until("other at the destination", WAIT, || {
        let other = other.clone();
        async move {
            let n = Db::connect(dest_port()).await?.count(&other).await?;
            Ok((n != 2).then(|| format!("{n} rows of other")))
        }
    })
    .await?;

    src.exec(
        "INSERT INTO orders VALUES (9, 500, 'EU', NULL, 'new'), (10, NULL, 'us', NULL, 'newnull'); \
         UPDATE orders SET amount = 150 WHERE id = 2; \
         UPDATE orders SET region = 'asia' WHERE id = 1; \
         UPDATE orders SET amount = 120 WHERE id = 3; \
         UPDATE orders SET note = 'still' WHERE id = 5; \
         UPDATE orders SET day = '2024-06-30' WHERE id = 8; \
         UPDATE orders SET amount = amount + 0.01 WHERE id = 7; \
         UPDATE orders SET region = NULL WHERE id = 9; \
         DELETE FROM orders WHERE id IN (6, 2);",
    )
    .await?;
    wait_filtered(&db).await?;
    source.assert_running()?;
    sink.assert_running()?;
    drop_database(&[source_port(), dest_port()], &db).await?;
    Ok(())
}
