//! Running a test body on both database backends: a fresh SQLite file, and a fresh PostgreSQL
//! database created through `BAI_TEST_PG_URL` (skipped when unset unless
//! `BAI_REQUIRE_SERVICES=1`) and dropped afterwards.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bai_manager::db;
use bai_test_support::service_env;
use futures::FutureExt;
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// A name no other test (of this run or another) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock before 1970").as_nanos();
    format!("{prefix}{}_{}_{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs `body` with a deadline, so a hung query fails the test instead of stalling the run.
pub async fn run_body<F, Fut>(backend: &str, db: DatabaseConnection, body: F) -> std::thread::Result<()>
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()>,
{
    AssertUnwindSafe(async {
        tokio::time::timeout(Duration::from_secs(120), body(db))
            .await
            .unwrap_or_else(|_| panic!("the test body timed out on {backend}"))
    })
    .catch_unwind()
    .await
}

/// Runs `body` on a migrated SQLite database in a new file, then removes the files.
pub async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()>,
{
    let path: PathBuf = std::env::temp_dir().join(format!("{}.db", unique("bai-db-test-")));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let conn = db::connect(&url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    db::migrate(&conn).await.expect("migrating a new SQLite database");
    let outcome = run_body("SQLite", conn.clone(), body).await;
    conn.close().await.expect("closing the SQLite pool");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// Runs `body` on a migrated PostgreSQL database created for it, then drops the database.
pub async fn on_postgres<F, Fut>(body: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = service_env("BAI_TEST_PG_URL") else {
        return;
    };
    let admin = db::connect(&url).await.unwrap_or_else(|e| panic!("connecting to PostgreSQL at {url}: {e}"));
    let name = unique("bai_t_");
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
    let test_url = with_database(&url, &name);
    let conn = db::connect(&test_url).await.unwrap_or_else(|e| panic!("connecting to {test_url}: {e}"));
    let migrated = db::migrate(&conn).await;
    let outcome = match migrated {
        Ok(()) => run_body("PostgreSQL", conn.clone(), body).await,
        Err(e) => Err(Box::new(format!("migrating a new PostgreSQL database: {e}")) as Box<dyn std::any::Any + Send>),
    };
    conn.close().await.expect("closing the PostgreSQL pool");
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.expect("DROP DATABASE");
    admin.close().await.expect("closing the PostgreSQL admin pool");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Declares a test module running `$body` on SQLite and on PostgreSQL.
macro_rules! db_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::on_sqlite(super::$name).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::on_postgres(super::$name).await;
            }
        }
    };
}

pub(crate) use db_test;
