//! Images: the root `images(is_installed, is_operation)` (what `admin image list` reads) and
//! the types `Image`, `KVPair` and `ResourceLimit`, from the manager's image records.
//!
//! `name` is the image's path without registry and tag (`stable/python`), as in the
//! original; `size_bytes` is a number, never null. A superadmin sees every image, anyone else
//! the images of the registries their domain allows. `is_operation: true` keeps only the
//! images whose `ai.backend.features` label lists `operation`. Which agent holds which image
//! is not recorded: `installed` is false, `installed_agents` empty, and `is_installed` (any
//! value but null) is refused with an error rather than answered wrongly.

use async_graphql::{Context, Error, Object, Result};

use super::scalars::{BigInt, Uuid};
use super::{db_error, GqlContext};
use crate::api::auth::Role;
use crate::db::entities::image;
use crate::db::repo;

/// A label of an image.
#[derive(Debug, Clone)]
pub struct KvPair {
    key: String,
    value: String,
}

#[Object(name = "KVPair", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl KvPair {
    /// The key.
    async fn key(&self) -> &str {
        &self.key
    }
    /// The value.
    async fn value(&self) -> &str {
        &self.value
    }
}

/// The least and most of a slot an image accepts.
#[derive(Debug, Clone)]
pub struct ResourceLimit {
    key: String,
    min: Option<String>,
    max: Option<String>,
}

#[Object(name = "ResourceLimit", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl ResourceLimit {
    /// The slot.
    async fn key(&self) -> &str {
        &self.key
    }
    /// The minimum.
    async fn min(&self) -> Option<&str> {
        self.min.as_deref()
    }
    /// The maximum (null: unlimited).
    async fn max(&self) -> Option<&str> {
        self.max.as_deref()
    }
}

/// An image record.
#[derive(Debug, Clone)]
pub struct Image {
    row: image::Model,
    aliases: Vec<String>,
}

fn text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Image {
    fn label(&self, key: &str) -> Option<String> {
        self.row.labels.get(key).and_then(text)
    }

    fn operation(&self) -> bool {
        self.label("ai.backend.features").is_some_and(|f| f.split([' ', ',']).any(|x| x == "operation"))
    }
}

#[Object(name = "Image", serial, rename_fields = "snake_case", rename_args = "snake_case")]
impl Image {
    /// The record's id.
    async fn id(&self) -> Uuid {
        Uuid(self.row.id)
    }
    /// The path without registry and tag, e.g. `stable/python`.
    async fn name(&self) -> &str {
        &self.row.image
    }
    /// The same as `name`.
    async fn humanized_name(&self) -> &str {
        &self.row.image
    }
    /// The canonical reference, e.g. `cr.backend.ai/stable/python:3.11`.
    async fn canonical_ref(&self) -> &str {
        &self.row.name
    }
    /// The tag.
    async fn tag(&self) -> Option<&str> {
        self.row.tag.as_deref()
    }
    /// The registry.
    async fn registry(&self) -> &str {
        &self.row.registry
    }
    /// The architecture.
    async fn architecture(&self) -> &str {
        &self.row.architecture
    }
    /// The configuration digest.
    async fn digest(&self) -> &str {
        &self.row.config_digest
    }
    /// The labels, by key.
    async fn labels(&self) -> Vec<KvPair> {
        let mut pairs: Vec<KvPair> = self
            .row
            .labels
            .as_object()
            .map(|m| m.iter().map(|(k, v)| KvPair { key: k.clone(), value: text(v).unwrap_or_default() }).collect())
            .unwrap_or_default();
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        pairs
    }
    /// The aliases naming it.
    async fn aliases(&self) -> &[String] {
        &self.aliases
    }
    /// The size in bytes (0 when unknown).
    async fn size_bytes(&self) -> BigInt {
        BigInt(self.row.size_bytes)
    }
    /// Per-slot limits.
    async fn resource_limits(&self) -> Vec<ResourceLimit> {
        self.row
            .resources
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| ResourceLimit {
                        key: k.clone(),
                        min: v.get("min").and_then(text),
                        max: v.get("max").and_then(text),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    /// Accelerators the image supports.
    async fn supported_accelerators(&self) -> Vec<String> {
        self.row
            .accelerators
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
    /// Whether an agent holds it (not recorded: false).
    async fn installed(&self) -> bool {
        false
    }
    /// The agents holding it (not recorded: none).
    async fn installed_agents(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether it is an operation image.
    async fn is_operation(&self) -> bool {
        self.operation()
    }
}

/// The image roots.
#[derive(Debug, Default)]
pub struct ImageQuery;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl ImageQuery {
    /// The images the caller may use, by name and architecture.
    async fn images(
        &self,
        ctx: &Context<'_>,
        is_installed: Option<bool>,
        is_operation: Option<bool>,
    ) -> Result<Vec<Image>> {
        let gql = ctx.data::<GqlContext>()?;
        if is_installed.is_some() {
            return Err(Error::new(
                "is_installed is not supported: the manager does not record which agent holds which image",
            ));
        }
        let db = gql.db.as_ref();
        let rows = repo::list_images(db).await.map_err(db_error)?;
        let allowed: Option<Vec<String>> = if gql.auth.role() == Role::Superadmin {
            None
        } else {
            let domain = repo::get_domain(db, &gql.auth.credential.domain_name).await.map_err(db_error)?;
            Some(domain.map(|d| d.allowed_docker_registries.0).unwrap_or_default())
        };
        let mut aliases = repo::image_aliases(db).await.map_err(db_error)?;
        Ok(rows
            .into_iter()
            .filter(|row| allowed.as_ref().is_none_or(|a| a.contains(&row.registry)))
            .map(|row| Image { aliases: aliases.remove(&row.id).unwrap_or_default(), row })
            .filter(|img| !is_operation.unwrap_or(false) || img.operation())
            .collect())
    }
}
