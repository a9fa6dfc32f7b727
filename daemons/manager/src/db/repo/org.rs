//! Domains, groups (projects), users, group membership and password hashes.

use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationDef,
};
use sha2::Sha256;
use uuid::Uuid;

use super::{insert_new, shown};
use crate::db::entities::{association_groups_users as membership, domain, group, user};
#[cfg(doc)]
use crate::db::DbError;
use crate::db::Result;

/// Creates a domain; a duplicate name is [`DbError::Conflict`].
pub async fn create_domain(db: &impl ConnectionTrait, row: domain::ActiveModel) -> Result<domain::Model> {
    let what = format!("domain {}", shown(&row.name));
    insert_new(db, row, what).await
}

/// The domain with this name.
pub async fn get_domain(db: &impl ConnectionTrait, name: &str) -> Result<Option<domain::Model>> {
    Ok(domain::Entity::find_by_id(name).one(db).await?)
}

/// Every domain, by name.
pub async fn list_domains(db: &impl ConnectionTrait) -> Result<Vec<domain::Model>> {
    Ok(domain::Entity::find().order_by_asc(domain::Column::Name).all(db).await?)
}

/// Creates a group (project); a duplicate name within the domain is [`DbError::Conflict`],
/// an unknown domain or project resource policy [`DbError::Invalid`].
pub async fn create_group(db: &impl ConnectionTrait, row: group::ActiveModel) -> Result<group::Model> {
    let what = format!("group {}", shown(&row.name));
    insert_new(db, row, what).await
}

/// The group with this id.
pub async fn get_group(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<group::Model>> {
    Ok(group::Entity::find_by_id(id).one(db).await?)
}

/// The group with this name in this domain.
pub async fn find_group_by_name(
    db: &impl ConnectionTrait,
    domain_name: &str,
    name: &str,
) -> Result<Option<group::Model>> {
    Ok(group::Entity::find()
        .filter(group::Column::DomainName.eq(domain_name))
        .filter(group::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// The groups of a domain (every group when `domain_name` is `None`), by domain and name.
pub async fn list_groups(db: &impl ConnectionTrait, domain_name: Option<&str>) -> Result<Vec<group::Model>> {
    let mut query = group::Entity::find().order_by_asc(group::Column::DomainName).order_by_asc(group::Column::Name);
    if let Some(domain_name) = domain_name {
        query = query.filter(group::Column::DomainName.eq(domain_name));
    }
    Ok(query.all(db).await?)
}

/// Makes `user_id` a member of `group_id`; adding an existing member is
/// [`DbError::Conflict`], an unknown user or group [`DbError::Invalid`].
pub async fn add_user_to_group(db: &impl ConnectionTrait, user_id: Uuid, group_id: Uuid) -> Result<()> {
    let row = membership::ActiveModel { user_id: Set(user_id), group_id: Set(group_id) };
    insert_new(db, row, format!("membership of user {user_id} in group {group_id}")).await?;
    Ok(())
}

/// Removes `user_id` from `group_id`; answers whether it was a member.
pub async fn remove_user_from_group(db: &impl ConnectionTrait, user_id: Uuid, group_id: Uuid) -> Result<bool> {
    let result = membership::Entity::delete_by_id((user_id, group_id)).exec(db).await?;
    Ok(result.rows_affected > 0)
}

fn membership_to_group() -> RelationDef {
    membership::Entity::belongs_to(group::Entity).from(membership::Column::GroupId).to(group::Column::Id).into()
}

/// The groups a user belongs to, by name.
pub async fn groups_of_user(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<group::Model>> {
    Ok(group::Entity::find()
        .join(JoinType::InnerJoin, membership_to_group().rev())
        .filter(membership::Column::UserId.eq(user_id))
        .order_by_asc(group::Column::Name)
        .all(db)
        .await?)
}

/// Whether `user_id` is a member of `group_id`.
pub async fn is_group_member(db: &impl ConnectionTrait, user_id: Uuid, group_id: Uuid) -> Result<bool> {
    Ok(membership::Entity::find_by_id((user_id, group_id)).one(db).await?.is_some())
}

/// Creates a user; a duplicate e-mail address or username is [`DbError::Conflict`], an
/// unknown domain or user resource policy [`DbError::Invalid`]. `password` must already be a
/// hash ([`hash_password`]).
pub async fn create_user(db: &impl ConnectionTrait, row: user::ActiveModel) -> Result<user::Model> {
    let what = format!("user {}", shown(&row.email));
    insert_new(db, row, what).await
}

/// The user with this id.
pub async fn get_user(db: &impl ConnectionTrait, uuid: Uuid) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(uuid).one(db).await?)
}

/// The user with this e-mail address.
pub async fn find_user_by_email(db: &impl ConnectionTrait, email: &str) -> Result<Option<user::Model>> {
    Ok(user::Entity::find().filter(user::Column::Email.eq(email)).one(db).await?)
}

/// The users of a domain (every user when `domain_name` is `None`), by e-mail address.
pub async fn list_users(db: &impl ConnectionTrait, domain_name: Option<&str>) -> Result<Vec<user::Model>> {
    let mut query = user::Entity::find().order_by_asc(user::Column::Email);
    if let Some(domain_name) = domain_name {
        query = query.filter(user::Column::DomainName.eq(domain_name));
    }
    Ok(query.all(db).await?)
}

/// PBKDF2 rounds for new password hashes. The count is stored in each hash, so raising it
/// later leaves existing hashes valid.
pub const PASSWORD_ROUNDS: u32 = 60_000;

/// PBKDF2-HMAC-SHA256 with one 32-byte block.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    let keyed = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes keys of any length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut block: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = block;
    for _ in 1..rounds {
        let mut mac = keyed.clone();
        mac.update(&block);
        block = mac.finalize().into_bytes().into();
        for (o, b) in out.iter_mut().zip(block.iter()) {
            *o ^= b;
        }
    }
    out
}

/// A salted hash of `password` for `users.password`:
/// `pbkdf2_sha256$<rounds>$<salt hex>$<hash hex>`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random generator failed");
    let hash = pbkdf2_sha256(password.as_bytes(), &salt, PASSWORD_ROUNDS);
    format!("pbkdf2_sha256${PASSWORD_ROUNDS}${}${}", hex::encode(salt), hex::encode(hash))
}

/// Whether `password` matches a hash made by [`hash_password`] (compared in constant time).
/// A stored value in any other format never matches.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, rounds, salt, hash] = parts.as_slice() else {
        return false;
    };
    let (Ok(rounds), Ok(salt), Ok(hash)) = (rounds.parse::<u32>(), hex::decode(salt), hex::decode(hash)) else {
        return false;
    };
    if *scheme != "pbkdf2_sha256" || rounds == 0 || hash.len() != 32 {
        return false;
    }
    let computed = pbkdf2_sha256(password.as_bytes(), &salt, rounds);
    computed.iter().zip(hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbError;

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1.
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(hex::encode(out), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
    }

    #[test]
    fn password_hashes_verify() {
        let hash = hash_password("wJalrXUt");
        assert!(hash.starts_with("pbkdf2_sha256$"));
        assert!(verify_password(&hash, "wJalrXUt"));
        assert!(!verify_password(&hash, "wJalrXUx"));
        assert!(!verify_password("plain", "plain"));
        assert_ne!(hash_password("same"), hash_password("same"), "salted");
    }

    #[test]
    fn failed_lookups_name_the_kind() {
        assert_eq!(DbError::not_found("user", "x").to_string(), "no such user: x");
    }
}
