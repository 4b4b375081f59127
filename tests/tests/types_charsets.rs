//! Column types end to end: `tests/scenarios/charsets/` through the snapshot
//! and the binlog, compared value by value and with CHECKSUM TABLE.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charsets() -> e2e_tests::Result<()> {
    e2e_tests::run_scenario("charsets").await
}
