//! The Redis rate limiter (spec §4.5) against a real Redis (`BAI_TEST_REDIS_URL`): the limit,
//! the `X-RateLimit-*` headers and the 429 of the N+1-th request, a count shared by two
//! managers, and a window that slides.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bai_manager::api::ratelimit::{RedisRateLimiter, REDIS_KEY_PREFIX};
use bai_manager::api::RateLimiter;
use bai_manager::config::{EventBackend, ManagerConfig};
use bai_manager::db::entities::keypair;
use bai_manager::db::repo;
use bai_manager::server::{self, RunningManager, StartOptions};
use bai_test_support::service_env;
use sea_orm::ActiveValue::Set;

/// A fresh access key, so that runs and parallel tests never share a window.
fn fresh_key() -> String {
    repo::generate_keypair().0
}

async fn forget(url: &str, access_key: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(format!("{REDIS_KEY_PREFIX}{access_key}")).query_async(&mut conn).await.unwrap();
}

#[tokio::test]
async fn two_limiters_share_the_count_of_a_keypair() {
    let Some(url) = service_env("BAI_TEST_REDIS_URL") else { return };
    let a = RedisRateLimiter::new(&url, Duration::from_secs(60)).unwrap();
    let b = RedisRateLimiter::new(&url, Duration::from_secs(60)).unwrap();
    let (ak, other) = (fresh_key(), fresh_key());
    for (limiter, remaining) in [(&a, 3), (&b, 2), (&a, 1), (&b, 0)] {
        let s = limiter.check(&ak, 4).await.unwrap();
        assert!(s.allowed, "{s:?}");
        assert_eq!((s.limit, s.remaining, s.window), (4, remaining, Duration::from_secs(60)));
        assert_eq!(s.retry_after, None);
    }
    for limiter in [&a, &b] {
        let refused = limiter.check(&ak, 4).await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        let after = refused.retry_after.expect("a refusal says when to retry");
        assert!(after > Duration::from_secs(50) && after <= Duration::from_secs(60), "{after:?}");
    }
    // Refused requests are not counted, and other keys are independent.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stored: i64 = redis::cmd("ZCARD").arg(format!("ratelimit.{ak}")).query_async(&mut conn).await.unwrap();
    assert_eq!(stored, 4);
    let ttl: i64 = redis::cmd("PTTL").arg(format!("ratelimit.{ak}")).query_async(&mut conn).await.unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "the key expires with the window: {ttl}");
    assert!(b.check(&other, 4).await.unwrap().allowed);
    // No limit: admitted, nothing stored.
    assert!(a.check(&fresh_key(), 0).await.unwrap().allowed);
    forget(&url, &ak).await;
    forget(&url, &other).await;
}

#[tokio::test]
async fn the_window_slides() {
    let Some(url) = service_env("BAI_TEST_REDIS_URL") else { return };
    let limiter = RedisRateLimiter::new(&url, Duration::from_millis(1500)).unwrap();
    let ak = fresh_key();
    assert!(limiter.check(&ak, 2).await.unwrap().allowed);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(limiter.check(&ak, 2).await.unwrap().remaining, 0);
    let refused = limiter.check(&ak, 2).await.unwrap();
    assert!(!refused.allowed);
    // The first request leaves the window ~700 ms from now, the second ~1500 ms.
    let after = refused.retry_after.unwrap();
    assert!(after <= Duration::from_millis(750), "{after:?}");
    tokio::time::sleep(after + Duration::from_millis(100)).await;
    let s = limiter.check(&ak, 2).await.unwrap();
    assert!(s.allowed, "the oldest request left the window");
    assert_eq!(s.remaining, 0);
    assert!(!limiter.check(&ak, 2).await.unwrap().allowed, "the second one is still in it");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(limiter.check(&ak, 2).await.unwrap().remaining, 1, "the whole window has passed");
    forget(&url, &ak).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_503() {
    let limiter = RedisRateLimiter::new("redis://127.0.0.1:1/0", Duration::from_secs(60)).unwrap();
    let err = limiter.check("AKIAUNREACHABLE00000", 5).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 503);
    assert!(RedisRateLimiter::new("not a url", Duration::from_secs(1)).is_err());
}

fn cluster_config(dir: &std::path::Path, redis_url: &str) -> ManagerConfig {
    let mut config = ManagerConfig::default();
    config.manager.api_listen = "127.0.0.1:0".parse().unwrap();
    config.manager.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.db.url = format!("sqlite://{}?mode=rwc", dir.join("manager.db").display());
    config.events.backend = EventBackend::Redis;
    config.events.redis_url = redis_url.to_string();
    config.agent_rpc.token = Some("ratelimit-test-token".into());
    config
}

async fn cluster_manager(dir: &std::path::Path, redis_url: &str, key: (&str, &str), limit: i32) -> RunningManager {
    let options = StartOptions { embedded_agent: None, fixture: Some(common::FIXTURE.to_string()) };
    let running = server::start(cluster_config(dir, redis_url), options).await.expect("manager");
    let db = running.manager.db();
    let user = repo::find_user_by_email(db, "user@lablup.com").await.unwrap().unwrap();
    repo::insert_keypair(
        db,
        keypair::ActiveModel {
            access_key: Set(key.0.into()),
            secret_key: Set(key.1.into()),
            user_id: Set(user.email.clone()),
            user: Set(user.uuid),
            rate_limit: Set(limit),
            resource_policy: Set("default".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_on_one_redis_answer_429_past_the_limit() {
    let Some(url) = service_env("BAI_TEST_REDIS_URL") else { return };
    let (ak, sk) = repo::generate_keypair();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cluster_manager(dir_a.path(), &url, (&ak, &sk), 3).await;
    let b = cluster_manager(dir_b.path(), &url, (&ak, &sk), 3).await;
    for (addr, remaining) in [(a.api_addr, "2"), (b.api_addr, "1"), (a.api_addr, "0")] {
        let reply = common::request(addr, Some((&ak, &sk)), "GET", "/bai/whoami", None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(reply.header("x-ratelimit-window"), Some("900"));
    }
    // The fourth request, on either manager, is refused.
    for addr in [b.api_addr, a.api_addr] {
        let reply = common::request(addr, Some((&ak, &sk)), "GET", "/bai/whoami", None).await;
        assert_eq!(reply.status, 429, "{}", reply.body);
        assert!(reply.json()["type"].as_str().unwrap().ends_with("/rate-limit-exceeded"), "{}", reply.body);
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(reply.header("x-ratelimit-window"), Some("900"));
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((800..=900).contains(&retry), "{retry}");
    }
    // Another keypair is not affected.
    let reply = common::request(a.api_addr, Some(common::USER), "GET", "/bai/whoami", None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    forget(&url, &ak).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_events_backend_selects_the_limiter() {
    let mut config = ManagerConfig::default();
    config.events.backend = EventBackend::Memory;
    config.events.redis_url = "redis://127.0.0.1:1/0".into();
    let limiter: Arc<dyn RateLimiter> = server::rate_limiter(&config).unwrap();
    assert!(limiter.check("AKIASELECTION0000000", 5).await.unwrap().allowed, "in process");
    // A cluster counts in the events' Redis (here an unreachable one).
    config.events.backend = EventBackend::Redis;
    let limiter = server::rate_limiter(&config).unwrap();
    assert_eq!(limiter.check("AKIASELECTION0000000", 5).await.unwrap_err().status().as_u16(), 503);
    config.events.redis_url = "not a url".into();
    let err = server::rate_limiter(&config).err().expect("a bad URL is refused").to_string();
    assert!(err.contains("events.redis-url"), "{err}");
}
