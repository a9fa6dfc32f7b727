//! The composed manager: an all-in-one start answers signed requests with keypairs from the
//! database, and refuses unsigned ones.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_in_one_manager_answers_signed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let version = common::request(running.api_addr, None, "GET", "/", None).await;
    assert_eq!(version.status, 200, "{version:?}");
    assert_eq!(version.json()["version"], "v7.20230615");
    let me = common::request(running.api_addr, Some(common::USER), "GET", "/bai/whoami", None).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json()["access_key"], common::USER.0);
    let anonymous = common::request(running.api_addr, None, "GET", "/bai/whoami", None).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let wrong =
        common::request(running.api_addr, Some((common::USER.0, "not-the-secret")), "GET", "/bai/whoami", None).await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    running.shutdown().await;
}
