//! The manager's database: sea-orm entities, migrations and repository functions.
//!
//! One schema serves both backends: PostgreSQL in production and SQLite as the embedded
//! default. Structured values (resource slots, status data, options) are JSON columns, enums
//! are text columns holding their wire names (`PENDING`, `single-node`, …) and timestamps are
//! timezone-aware UTC.
//!
//! - [`connect`] opens a pool for a `postgres://…` or `sqlite:…` URL;
//! - [`migrate`] brings the schema up to date (idempotent; `schema oneshot` calls it);
//! - [`entities`] holds one sea-orm entity per table;
//! - [`repo`] holds the functions the rest of the manager calls. They take any
//!   [`ConnectionTrait`](sea_orm::ConnectionTrait), so they work on the pool and inside a
//!   transaction alike;
//! - [`types`] holds the column wrappers ([`types::Wire`], [`types::JsonOf`]) and the enums
//!   that only the database knows (user roles, vfolder modes, …).
//!
//! ```no_run
//! # async fn demo() -> Result<(), bai_manager::db::DbError> {
//! use bai_manager::db;
//! let conn = db::connect("sqlite:///var/lib/bai/manager.db?mode=rwc").await?;
//! db::migrate(&conn).await?;
//! let agents = db::repo::list_agents(&conn, None, None).await?;
//! # let _ = agents; Ok(()) }
//! ```

use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
use sea_orm::{DatabaseConnection, DbErr, SqlErr, SqlxPostgresConnector, SqlxSqliteConnector};
use sea_orm_migration::MigratorTrait;

pub mod entities;
pub mod migration;
pub mod repo;
pub mod types;

pub use migration::Migrator;

/// What went wrong in the database layer. Every message names the object or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The row does not exist.
    #[error("no such {kind}: {id}")]
    NotFound {
        /// What was looked up (`session`, `keypair`, `agent`, …).
        kind: &'static str,
        /// The key that was looked up.
        id: String,
    },
    /// The change contradicts the current state: a duplicate key, an illegal status
    /// transition, an ambiguous reference.
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicted, in a sentence.
        what: String,
    },
    /// An input is malformed or refers to something that does not exist.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field (`table.column` for fixtures) at fault.
        field: String,
        /// Why it was refused, and what was expected.
        reason: String,
    },
    /// The database itself failed (connection, SQL, decoding).
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

impl DbError {
    /// Shorthand for [`DbError::NotFound`].
    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Self::NotFound { kind, id: id.to_string() }
    }

    /// Shorthand for [`DbError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`DbError::Conflict`].
    pub fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    /// Maps a failed write: a unique-key violation becomes [`DbError::Conflict`] (`what`
    /// already exists), a foreign-key violation [`DbError::Invalid`] on `what`, anything else
    /// stays [`DbError::Db`].
    pub fn from_write(err: DbErr, what: impl std::fmt::Display) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(detail)) => {
                Self::conflict(format!("{what} already exists ({detail})"))
            }
            Some(SqlErr::ForeignKeyConstraintViolation(detail)) => Self::invalid(
                what.to_string(),
                format!("refers to a row that does not exist, or is still referred to ({detail})"),
            ),
            _ => Self::Db(err),
        }
    }
}

/// The result type of this module.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// How long to wait for a connection (and, on SQLite, for a lock held by another writer).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL connection idle for longer than this is pinged before it is handed out (see
/// [`connect`]).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Opens a connection pool.
///
/// Accepts `postgres://…` (or `postgresql://…`), `sqlite://path?mode=rwc` (or any other URL
/// that sqlx's SQLite driver takes) and `sqlite::memory:`. SQLite connections get foreign keys
/// on, a 10-second busy timeout and, for files, WAL journaling, on a single connection (see
/// below). An in-memory database's connection is never recycled, since each connection would
/// see its own.
///
/// Every query outside a transaction takes a connection from the pool, so what the pool does
/// on each acquire is paid per query. Neither pool pings every connection it hands out (sqlx's
/// `test_before_acquire`, which doubled the round trips of every query): an SQLite connection
/// lives in this process and cannot be lost the way a socket can, and a PostgreSQL connection
/// is pinged only when it has been idle for more than a second — the connections a restarted
/// server or a proxy's idle timeout may have closed — and replaced when the ping fails.
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    let url = url.trim();
    if url.starts_with("sqlite:") {
        connect_sqlite(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        connect_postgres(url).await
    } else {
        Err(DbError::invalid(
            "database url",
            format!("{url:?} is neither postgres://… nor sqlite:… (e.g. sqlite://manager.db?mode=rwc)"),
        ))
    }
}

fn sqlx_error(e: sea_orm::sqlx::Error) -> DbError {
    DbError::Db(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))
}

async fn connect_postgres(url: &str) -> Result<DatabaseConnection> {
    let options = PgConnectOptions::from_str(url).map_err(sqlx_error)?.disable_statement_logging();
    let pool = PgPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(sqlx_error)?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

async fn connect_sqlite(url: &str) -> Result<DatabaseConnection> {
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    let mut options = SqliteConnectOptions::from_str(url)
        .map_err(|e| DbError::invalid("database url", format!("{url:?}: {e}")))?
        .foreign_keys(true)
        .busy_timeout(ACQUIRE_TIMEOUT)
        .disable_statement_logging();
    let mut pool = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT).test_before_acquire(false);
    if memory {
        pool = pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
    } else {
        options = options.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal);
        // One connection: SQLite has one writer anyway, and a transaction that reads and then
        // writes would otherwise fail with SQLITE_BUSY_SNAPSHOT when another connection wrote
        // in between (no busy timeout helps there). Code must not use the pool while it holds
        // a transaction on it.
        pool = pool.max_connections(1);
    }
    let pool = pool.connect_with(options).await.map_err(sqlx_error)?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

/// Applies every migration not yet applied; running it again changes nothing.
///
/// On PostgreSQL the migrations run in one transaction.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None).await?;
    Ok(())
}
