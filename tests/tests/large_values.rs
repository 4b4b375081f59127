//! Large values: a 16 MiB LONGBLOB inserted and updated (a 32 MiB record),
//! a row at the maximum row size.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values() -> e2e_tests::Result<()> {
    e2e_tests::run_scenario("large_values").await
}
