//! Keypairs: generation, lookup for request authentication, usage stamps.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{insert_new, shown};
use crate::db::entities::{keypair, keypair_resource_policy, user};
use crate::db::{DbError, Result};

const ACCESS_KEY_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_KEY_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `len` characters drawn uniformly from `alphabet` (at most 256 characters) with the
/// operating system's random generator.
fn random_string(alphabet: &[u8], len: usize) -> String {
    // The largest multiple of the alphabet's size that fits in a byte: bytes above it are
    // dropped so that every character is equally likely.
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the operating system's random generator failed");
        for &byte in &buf {
            if (byte as usize) < limit && out.len() < len {
                out.push(alphabet[byte as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A new random keypair in the original's format: the access key is `AKIA` followed by 16
/// upper-case letters and digits, the secret key 40 characters of the URL-safe base64
/// alphabet (240 random bits, like the original's `token_urlsafe(30)`).
pub fn generate_keypair() -> (String, String) {
    (format!("AKIA{}", random_string(ACCESS_KEY_ALPHABET, 16)), random_string(SECRET_KEY_ALPHABET, 40))
}

/// Creates a keypair for the user `user_id` with a fresh random key pair and answers
/// `(access_key, secret_key)`.
///
/// The keypair is active, has the default rate limit and uses the keypair resource policy
/// `resource_policy`. When the user has no main access key yet, this one becomes it.
pub async fn create_keypair(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    is_admin: bool,
    resource_policy: &str,
) -> Result<(String, String)> {
    let owner = user::Entity::find_by_id(user_id).one(db).await?.ok_or_else(|| DbError::not_found("user", user_id))?;
    if keypair_resource_policy::Entity::find_by_id(resource_policy).one(db).await?.is_none() {
        return Err(DbError::not_found("keypair resource policy", resource_policy));
    }
    // A collision among 36^16 keys is next to impossible; retry once anyway rather than fail.
    let mut attempts = 0;
    let (access_key, secret_key) = loop {
        let (access_key, secret_key) = generate_keypair();
        let row = keypair::ActiveModel {
            access_key: Set(access_key.clone()),
            secret_key: Set(secret_key.clone()),
            user_id: Set(owner.email.clone()),
            user: Set(owner.uuid),
            is_admin: Set(is_admin),
            resource_policy: Set(resource_policy.to_string()),
            ..Default::default()
        };
        match insert_new(db, row, format!("keypair {access_key}")).await {
            Ok(_) => break (access_key, secret_key),
            Err(DbError::Conflict { .. }) if attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    if owner.main_access_key.is_none() {
        let mut row: user::ActiveModel = owner.into();
        row.main_access_key = Set(Some(access_key.clone()));
        row.update(db).await?;
    }
    Ok((access_key, secret_key))
}

/// Inserts a keypair exactly as given (keys included), filling the unset columns with the
/// defaults. A duplicate access key is [`DbError::Conflict`].
pub async fn insert_keypair(db: &impl ConnectionTrait, row: keypair::ActiveModel) -> Result<keypair::Model> {
    let what = format!("keypair {}", shown(&row.access_key));
    insert_new(db, row, what).await
}

/// The keypair with this access key.
pub async fn get_keypair(db: &impl ConnectionTrait, access_key: &str) -> Result<Option<keypair::Model>> {
    Ok(keypair::Entity::find_by_id(access_key).one(db).await?)
}

/// The keypair with this access key and its owner, as request authentication needs them.
/// Inactive keypairs are returned too: the caller decides.
pub async fn find_keypair_with_user(
    db: &impl ConnectionTrait,
    access_key: &str,
) -> Result<Option<(keypair::Model, user::Model)>> {
    let found = keypair::Entity::find_by_id(access_key).find_also_related(user::Entity).one(db).await?;
    match found {
        None => Ok(None),
        Some((keypair, Some(owner))) => Ok(Some((keypair, owner))),
        // The foreign key makes this impossible, unless the row was changed by hand.
        Some((keypair, None)) => Err(DbError::not_found("user", keypair.user)),
    }
}

/// The keypairs of a user (every keypair when `user_id` is `None`), by access key.
pub async fn list_keypairs(db: &impl ConnectionTrait, user_id: Option<Uuid>) -> Result<Vec<keypair::Model>> {
    let mut query = keypair::Entity::find().order_by_asc(keypair::Column::AccessKey);
    if let Some(user_id) = user_id {
        query = query.filter(keypair::Column::User.eq(user_id));
    }
    Ok(query.all(db).await?)
}

/// Records that the keypair just signed a request (`last_used = now`).
pub async fn touch_last_used(db: &impl ConnectionTrait, access_key: &str) -> Result<()> {
    let result = keypair::Entity::update_many()
        .set(keypair::ActiveModel { last_used: Set(Some(Utc::now())), ..Default::default() })
        .filter(keypair::Column::AccessKey.eq(access_key))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(DbError::not_found("keypair", access_key));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_original_format() {
        let (ak, sk) = generate_keypair();
        assert_eq!(ak.len(), 20);
        assert!(ak.starts_with("AKIA"));
        assert!(ak[4..].bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{ak}");
        assert_eq!(sk.len(), 40);
        assert!(sk.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{sk}");
        assert!(bai_core::AccessKey::new(ak.clone()).is_ok());
        assert_ne!(generate_keypair().0, ak);
    }
}
