//! Name mapping at the sink: a database, a table and a column renamed, in
//! the schema synchronization, every row and replicated DDL on the mapped
//! table.

use std::time::Duration;

use e2e_tests::*;
use mysql_async::prelude::*;

const WAIT: Duration = Duration::from_secs(120);

/// Waits until `src_sql` at the source and `dst_sql` at the destination
/// give the same rows.
async fn wait_same(src_sql: String, dst_sql: String) -> Result<()> {
    wait_until(&dst_sql.clone(), WAIT, || {
        let (a, b) = (src_sql.clone(), dst_sql.clone());
        async move {
            let a = Db::connect(source_port()).await?.rows(&a).await?;
            let b = Db::connect(dest_port()).await?.rows(&b).await;
            Ok(match b {
                Ok(b) if a == b => None,
                Ok(b) => Some(format!("{} rows vs {}", a.len(), b.len())),
                Err(e) => Some(e.to_string()),
            })
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_names_hold_through_rows_and_ddl() -> Result<()> {
    let src_db = unique("map_src");
    let dst_db = unique("map_dst");
    drop_database(&[source_port(), dest_port()], &src_db).await?;
    drop_database(&[dest_port()], &dst_db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!(
        "CREATE DATABASE `{src_db}`; USE `{src_db}`; \
         CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2) NOT NULL, note VARCHAR(20)); \
         CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20)); \
         CREATE TABLE `lines` (id INT PRIMARY KEY, order_id INT, CONSTRAINT fk_order FOREIGN KEY (order_id) REFERENCES orders (id)); \
         INSERT INTO orders VALUES (1, 10.50, 'a'), (2, 20.00, 'b'); \
         INSERT INTO customers VALUES (1, 'ann'); INSERT INTO `lines` VALUES (1, 1);"
    ))
    .await?;
    let prefix = unique("map");
    let mapping = format!(
        "\n[mapping]\ndatabases = {{ \"{src_db}\" = \"{dst_db}\" }}\ntables = {{ \"{src_db}.orders\" = \"orders_v2\" }}\ncolumns = {{ \"{src_db}.orders.amount\" = \"total\" }}\n"
    );
    let _source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&src_db], 7980, ""),
    )?;
    let mut sink = Connector::start(
        "sink-connector",
        &format!("{prefix}-sink"),
        &sink_config(&prefix, &prefix, dest_port(), &mapping),
    )?;
    let orders_src = format!("SELECT id, amount, note FROM `{src_db}`.orders ORDER BY id");
    let orders_dst = format!("SELECT id, total, note FROM `{dst_db}`.orders_v2 ORDER BY id");
    wait_same(orders_src.clone(), orders_dst.clone()).await?;
    wait_same(
        format!("SELECT * FROM `{src_db}`.`lines`"),
        format!("SELECT * FROM `{dst_db}`.`lines`"),
    )
    .await?;

    // Rows and DDL on the mapped table and column.
    src.exec(
        "INSERT INTO orders VALUES (3, 30.25, 'c'); UPDATE orders SET amount = 11.00 WHERE id = 1; \
         ALTER TABLE orders ADD COLUMN extra INT AFTER amount; \
         UPDATE orders SET extra = 7, amount = amount + 1 WHERE id = 2; \
         ALTER TABLE orders MODIFY amount DECIMAL(12,2) NOT NULL DEFAULT 0; \
         CREATE INDEX ix_amount ON orders (amount); \
         INSERT INTO orders (id, note) VALUES (4, 'd'); \
         RENAME TABLE customers TO clients; INSERT INTO clients VALUES (2, 'bob'); \
         DELETE FROM orders WHERE id = 3;",
    )
    .await?;
    wait_same(
        format!("SELECT id, amount, extra, note FROM `{src_db}`.orders ORDER BY id"),
        format!("SELECT id, total, extra, note FROM `{dst_db}`.orders_v2 ORDER BY id"),
    )
    .await?;
    wait_same(
        format!("SELECT * FROM `{src_db}`.clients ORDER BY id"),
        format!("SELECT * FROM `{dst_db}`.clients ORDER BY id"),
    )
    .await?;
    let mut dst = Db::connect(dest_port()).await?;
    let create: Option<(String, String)> = dst
        .conn
        .query_first(format!("SHOW CREATE TABLE `{dst_db}`.orders_v2"))
        .await?;
    let create = create.map(|c| c.1).unwrap_or_default();
    assert!(
        create.contains("`total` decimal(12,2) NOT NULL DEFAULT 0.00"),
        "{create}"
    );
    assert!(create.contains("KEY `ix_amount` (`total`)"), "{create}");
    let fk: Option<(String, String)> = dst
        .conn
        .query_first(format!("SHOW CREATE TABLE `{dst_db}`.`lines`"))
        .await?;
    assert!(fk
        .unwrap_or_default()
        .1
        .contains("REFERENCES `orders_v2` (`id`)"));
    assert!(
        !dst.table_exists(&src_db, "orders").await?,
        "the source's names reached the destination"
    );
    sink.assert_running()?;
    assert!(
        !sink.log_text().contains("schema change failed"),
        "{}",
        sink.log_tail()
    );
    drop_database(&[source_port(), dest_port()], &src_db).await?;
    drop_database(&[dest_port()], &dst_db).await?;
    Ok(())
}
