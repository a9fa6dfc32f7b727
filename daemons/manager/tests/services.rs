//! The real services the manager depends on — PostgreSQL, Redis and etcd — are reachable and
//! store what they are given. `scripts/test` starts them and sets the `BAI_TEST_*` variables.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};

use bai_test_support::service_env;

/// Runs `fut` and fails the test with `what` if it errors or takes longer than 30 seconds.
async fn within<T, E: std::fmt::Debug>(what: &str, fut: impl Future<Output = Result<T, E>>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => panic!("{what} failed: {err:?}"),
        Err(_) => panic!("{what} timed out after 30 s"),
    }
}

/// A key no other test run uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock before 1970").as_nanos();
    format!("{prefix}{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn postgres_round_trip() {
    let Some(url) = service_env("BAI_TEST_PG_URL") else { return };
    let mut options = ConnectOptions::new(url.as_str());
    options.connect_timeout(Duration::from_secs(10)).acquire_timeout(Duration::from_secs(10)).sqlx_logging(false);
    let db = within(&format!("connecting to PostgreSQL at {url}"), Database::connect(options)).await;

    let row = within(
        "SELECT 1",
        db.query_one(Statement::from_string(DbBackend::Postgres, "SELECT 1::int4 AS one, version() AS version")),
    )
    .await
    .expect("SELECT 1 returned no row");
    assert_eq!(row.try_get::<i32>("", "one").expect("column one"), 1);
    let version: String = row.try_get("", "version").expect("column version");
    assert!(version.starts_with("PostgreSQL"), "unexpected version(): {version}");

    // A temporary table lives on one connection, so the round trip runs in one transaction.
    let txn = within("BEGIN", db.begin()).await;
    within(
        "CREATE TEMP TABLE",
        txn.execute_unprepared("CREATE TEMP TABLE bai_probe (id int4 PRIMARY KEY, name text NOT NULL) ON COMMIT DROP"),
    )
    .await;
    let name = unique("probe-");
    let inserted = within(
        "INSERT",
        txn.execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO bai_probe (id, name) VALUES ($1, $2), ($3, $4)",
            [7.into(), name.clone().into(), 8.into(), "other".into()],
        )),
    )
    .await;
    assert_eq!(inserted.rows_affected(), 2);
    let rows = within(
        "SELECT from the temp table",
        txn.query_all(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, name FROM bai_probe WHERE id = $1",
            [7.into()],
        )),
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].try_get::<i32>("", "id").expect("column id"), 7);
    assert_eq!(rows[0].try_get::<String>("", "name").expect("column name"), name);
    within("ROLLBACK", txn.rollback()).await;
    within("closing the pool", db.close()).await;
}

#[tokio::test]
async fn redis_round_trip() {
    let Some(url) = service_env("BAI_TEST_REDIS_URL") else { return };
    let client = redis::Client::open(url.as_str()).unwrap_or_else(|err| panic!("bad Redis URL {url}: {err}"));
    let mut conn = within(&format!("connecting to Redis at {url}"), client.get_multiplexed_async_connection()).await;

    let key = unique("bai-test:");
    let value = format!("value of {key}");
    within("SET", conn.set_ex::<_, _, ()>(&key, &value, 60)).await;
    let read: Option<String> = within("GET", conn.get(&key)).await;
    assert_eq!(read.as_deref(), Some(value.as_str()));
    let deleted: i64 = within("DEL", conn.del(&key)).await;
    assert_eq!(deleted, 1);
    let gone: Option<String> = within("GET after DEL", conn.get(&key)).await;
    assert_eq!(gone, None);
}

#[tokio::test]
async fn etcd_round_trip() {
    let Some(endpoints) = service_env("BAI_TEST_ETCD_ENDPOINTS") else { return };
    let endpoints: Vec<&str> = endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    let mut client = within(
        &format!("connecting to etcd at {endpoints:?}"),
        etcd_client::Client::connect(&endpoints, Some(options)),
    )
    .await;

    let key = unique("bai-test/");
    let value = format!("value of {key}");
    within(&format!("etcd put to {endpoints:?}"), client.put(key.as_str(), value.as_str(), None)).await;
    let got = within("etcd get", client.get(key.as_str(), None)).await;
    assert_eq!(got.kvs().len(), 1, "expected exactly one key {key}");
    assert_eq!(got.kvs()[0].key_str().expect("utf-8 key"), key);
    assert_eq!(got.kvs()[0].value_str().expect("utf-8 value"), value);
    let deleted = within("etcd delete", client.delete(key.as_str(), None)).await;
    assert_eq!(deleted.deleted(), 1);
    let gone = within("etcd get after delete", client.get(key.as_str(), None)).await;
    assert!(gone.kvs().is_empty(), "{key} still present after delete");
}
