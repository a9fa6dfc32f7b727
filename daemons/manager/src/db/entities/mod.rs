//! One sea-orm entity per table. Table and column names are the original's.
//!
//! Each module holds `Model` (a row), `ActiveModel` (a row being written), `Entity`,
//! `Column` and `Relation`. [`FillDefaults`] fills the columns a caller left unset with the
//! same defaults whether the row comes from a repository function or from a fixture.

use sea_orm::prelude::DateTimeUtc;
use sea_orm::{ActiveValue, Value};

pub mod agent;
pub mod association_groups_users;
pub mod domain;
pub mod group;
pub mod image;
pub mod image_alias;
pub mod kernel;
pub mod keypair;
pub mod keypair_resource_policy;
pub mod project_resource_policy;
pub mod resource_preset;
pub mod scaling_group;
pub mod session;
pub mod session_dependency;
pub mod sgroups_for_domains;
pub mod sgroups_for_groups;
pub mod sgroups_for_keypairs;
pub mod user;
pub mod user_resource_policy;
pub mod vfolder;
pub mod vfolder_invitation;
pub mod vfolder_permission;

/// Fills the columns of a new row that the caller left unset (ids, timestamps, empty JSON
/// objects, the original's defaults). Columns already set are left alone.
pub trait FillDefaults {
    /// Fills the unset columns; `now` is the creation time.
    fn fill_defaults(&mut self, now: DateTimeUtc);
}

/// Sets `field` to `value()` when it is not set.
pub(crate) fn or_set<V: Into<Value>>(field: &mut ActiveValue<V>, value: impl FnOnce() -> V) {
    if field.is_not_set() {
        *field = ActiveValue::Set(value());
    }
}

/// An empty JSON object.
pub(crate) fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A timestamp as the original writes it into `status_history`: ISO 8601 with microseconds
/// and an explicit offset (`2024-05-01T12:34:56.123456+00:00`).
pub fn iso_timestamp(at: DateTimeUtc) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// A one-entry status history, `{"<STATUS>": "<iso timestamp>"}`.
pub(crate) fn history_entry(status: impl std::fmt::Display, at: DateTimeUtc) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert(status.to_string(), serde_json::Value::String(iso_timestamp(at)));
    serde_json::Value::Object(map)
}
