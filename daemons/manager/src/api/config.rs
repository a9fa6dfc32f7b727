//! The small read-only routes the official client's `admin resource …` commands and its
//! session-open check call (`client-wire.md` §9), all signed:
//!
//! - `GET /config/resource-slots` → `{slot: unit}` with every value a string (`count`, `bytes`
//!   or `unique`): `cpu` and `mem`, plus every slot an agent reports;
//! - `GET /config/vfolder-types` → `["user", "group"]`;
//! - `GET /config/docker-registries` → `{name: url}`: the configured registries
//!   (`[registries.*]`, etcd's `config/docker/registry/*`) and any other registry the image
//!   list names (local engines' `local` left out);
//! - `GET /manager/announcement` → `{"enabled", "message"}`: the shared configuration's
//!   `manager/announcement` key (etcd or its fallback file) when set, else disabled. The CLI
//!   shows an enabled message on stderr.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::{DatabaseConnection, EntityTrait, QuerySelect};
use serde_json::{json, Value};

use super::{ApiError, ApiState, Shared};
use crate::db::entities::image;
use crate::shared_config::SharedConfig;

/// The shared-configuration key of the announcement (markdown; empty or absent: none).
pub const ANNOUNCEMENT_KEY: &str = "manager/announcement";

/// The signed routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/config/resource-slots", get(resource_slots))
        .route("/config/vfolder-types", get(vfolder_types))
        .route("/config/docker-registries", get(docker_registries))
        .route("/manager/announcement", get(announcement))
}

async fn resource_slots(Shared(db): Shared<DatabaseConnection>) -> Result<Json<Value>, ApiError> {
    let known = crate::sessions::known_slots(&db).await?;
    let slots: BTreeMap<&str, &str> = known.iter().map(|(name, t)| (name, t.as_str())).collect();
    Ok(Json(json!(slots)))
}

async fn vfolder_types() -> Json<Value> {
    Json(json!(["user", "group"]))
}

async fn docker_registries(
    State(state): State<ApiState>,
    Shared(db): Shared<DatabaseConnection>,
) -> Result<Json<Value>, ApiError> {
    let mut registries: BTreeMap<String, String> = BTreeMap::new();
    if let Some(manager) = state.service::<crate::manager::Manager>() {
        let configured = manager.registries().resolve().await.map_err(|e| ApiError::internal(e.to_string()))?;
        registries.extend(configured.into_iter().map(|r| (r.name, r.url.to_string())));
    }
    let names: Vec<String> = image::Entity::find()
        .select_only()
        .column(image::Column::Registry)
        .distinct()
        .into_tuple()
        .all(&*db)
        .await
        .map_err(|e| ApiError::internal(format!("database: {e}")))?;
    let scanned = names
        .into_iter()
        .filter(|name| !name.is_empty() && name != "local" && !registries.contains_key(name))
        .map(|name| {
            let url = if name.starts_with("http://") || name.starts_with("https://") {
                name.clone()
            } else {
                format!("https://{name}")
            };
            (name, url)
        })
        .collect::<Vec<_>>();
    registries.extend(scanned);
    Ok(Json(json!(registries)))
}

async fn announcement(State(state): State<ApiState>) -> Json<Value> {
    let message = state
        .service::<SharedConfig>()
        .and_then(|shared: Arc<SharedConfig>| shared.current().get(ANNOUNCEMENT_KEY).map(str::to_string))
        .filter(|m| !m.trim().is_empty());
    Json(json!({"enabled": message.is_some(), "message": message.unwrap_or_default()}))
}
