//! Column types end to end: MariaDB's compressed columns
//! (`tests/scenarios/compressed/`), which the binlog carries compressed,
//! through the snapshot and the binlog, created compressed at the
//! destination.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed() -> e2e_tests::Result<()> {
    e2e_tests::run_scenario("compressed").await
}
