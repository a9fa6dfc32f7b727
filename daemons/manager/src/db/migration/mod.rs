//! Schema migrations (sea-orm-migration), portable to PostgreSQL and SQLite.
//!
//! Only portable column types are used: text, integers, booleans, `uuid` (native on
//! PostgreSQL, text-typed on SQLite), `jsonb` (text-typed JSON on SQLite) and
//! `timestamp with time zone`. Lists are JSON arrays rather than PostgreSQL arrays.
//! Applied migrations are recorded in `seaql_migrations`, so running them again is a no-op.

use sea_orm_migration::prelude::*;

mod m20250101_000001_initial;
mod m20250102_000002_vfolder_sharing;

/// The manager's migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20250101_000001_initial::Migration), Box::new(m20250102_000002_vfolder_sharing::Migration)]
    }
}
