//! DDL replication: one scenario per family of statements (tests/scenarios/
//! ddl_*), each with rows changed before and after every statement, run
//! with the sink up and with the sink killed between statements; the
//! destination must match the source object by object and row by row.

use e2e_tests::ddl::run_ddl_scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns() -> e2e_tests::Result<()> {
    run_ddl_scenario("columns", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_indexes() -> e2e_tests::Result<()> {
    run_ddl_scenario("keys", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rename_truncate_drop_tables() -> e2e_tests::Result<()> {
    run_ddl_scenario("tables", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_routines_triggers() -> e2e_tests::Result<()> {
    run_ddl_scenario("objects", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_and_create_database() -> e2e_tests::Result<()> {
    run_ddl_scenario("database", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_options_and_partitions() -> e2e_tests::Result<()> {
    run_ddl_scenario("options", "").await
}
