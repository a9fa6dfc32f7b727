//! [`DbKeypairs`]: the [`KeypairStore`] the manager serves with — keypairs and their users from
//! the database (wrap it in [`CachedKeypairs`](super::CachedKeypairs) so a request does not
//! cost a query).

use async_trait::async_trait;
use sea_orm::DatabaseConnection;

use super::auth::{Credential, KeypairStore, Role};
use super::error::ApiError;
use crate::db::repo;
use crate::db::types::{UserRole, UserStatus};

/// Keypairs from the database.
#[derive(Debug, Clone)]
pub struct DbKeypairs {
    db: DatabaseConnection,
}

impl DbKeypairs {
    /// Keypairs of `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl KeypairStore for DbKeypairs {
    async fn lookup(&self, access_key: &str) -> Result<Option<Credential>, ApiError> {
        let found = repo::find_keypair_with_user(&self.db, access_key)
            .await
            .map_err(|e| ApiError::internal(format!("keypair lookup: {e}")))?;
        Ok(found.map(|(kp, user)| Credential {
            access_key: kp.access_key,
            secret_key: kp.secret_key,
            user_id: user.uuid,
            email: user.email,
            role: match user.role.0 {
                UserRole::Superadmin => Role::Superadmin,
                UserRole::Admin => Role::Admin,
                _ => Role::User,
            },
            domain_name: user.domain_name,
            is_active: kp.is_active && user.status.0 == UserStatus::Active,
            resource_policy: kp.resource_policy,
            rate_limit: i64::from(kp.rate_limit),
        }))
    }
}
