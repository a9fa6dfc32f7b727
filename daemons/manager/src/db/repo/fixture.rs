//! Fixtures: loading rows from JSON in the original's layout
//! (`backend.ai mgr fixture populate`).

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::sea_query::ColumnType;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr,
    EntityTrait, IdenStatic, IntoActiveModel, Iterable, QueryFilter, TransactionTrait, Value,
};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::hash_password;
use crate::db::entities::*;
use crate::db::{DbError, Result};

/// The tables a fixture may fill, in the order they are loaded (referenced tables first,
/// whatever the order of the fixture's keys).
pub const FIXTURE_TABLES: &[&str] = &[
    "keypair_resource_policies",
    "user_resource_policies",
    "project_resource_policies",
    "domains",
    "scaling_groups",
    "groups",
    "users",
    "association_groups_users",
    "keypairs",
    "sgroups_for_domains",
    "sgroups_for_groups",
    "sgroups_for_keypairs",
    "agents",
    "images",
    "image_aliases",
    "resource_presets",
    "sessions",
    "session_dependencies",
    "kernels",
    "vfolders",
];

/// Loads a fixture: a JSON object whose keys are table names (`domains`, `users`,
/// `keypairs`, `groups`, `association_groups_users`, `*_resource_policies`,
/// `scaling_groups`, `sgroups_for_*`, `resource_presets`, …; see [`FIXTURE_TABLES`]) and
/// whose values are lists of rows, each an object of column names to values.
///
/// Values are JSON as in the original's fixtures: resource slots and options as objects,
/// enums by name, UUIDs and timestamps (RFC 3339) as strings, integers also as numeric
/// strings. Unset columns get their defaults. As in the original, a `users.password` is
/// plain text and is stored hashed, and a keypair may name its owner by e-mail (`user_id`)
/// alone. A user left without a main access key gets the first of its keypairs the fixture
/// loads.
///
/// Everything is loaded in one transaction: an unknown table or column, a malformed value
/// or a rejected row ([`DbError`] names the table, the row's index and the column) changes
/// nothing. Answers how many rows went into each table, in loading order.
pub async fn populate_fixture<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    fixture: &Json,
) -> Result<Vec<(&'static str, usize)>> {
    let Some(tables) = fixture.as_object() else {
        return Err(DbError::invalid("fixture", "expected a JSON object of table names to lists of rows"));
    };
    if let Some(unknown) = tables.keys().find(|k| !FIXTURE_TABLES.contains(&k.as_str())) {
        return Err(DbError::invalid(
            format!("fixture table {unknown:?}"),
            format!("no such table; a fixture may fill {}", FIXTURE_TABLES.join(", ")),
        ));
    }
    let mut plan = Vec::new();
    for &table in FIXTURE_TABLES {
        let Some(rows) = tables.get(table) else { continue };
        let Some(rows) = rows.as_array() else {
            return Err(DbError::invalid(format!("fixture table {table}"), "expected a list of rows"));
        };
        let mut objects = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let Some(object) = row.as_object() else {
                return Err(DbError::invalid(
                    format!("{table} row {i}"),
                    "expected an object of column names to values",
                ));
            };
            objects.push(object.clone());
        }
        plan.push((table, objects));
    }
    let txn = db.begin().await?;
    let loaded = load_all(&txn, plan).await;
    match loaded {
        Ok(counts) => {
            txn.commit().await?;
            Ok(counts)
        }
        Err(e) => {
            txn.rollback().await?;
            Err(e)
        }
    }
}

async fn load_all(
    txn: &DatabaseTransaction,
    plan: Vec<(&'static str, Vec<Map<String, Json>>)>,
) -> Result<Vec<(&'static str, usize)>> {
    let now = Utc::now();
    let mut counts = Vec::with_capacity(plan.len());
    for (table, mut rows) in plan {
        match table {
            "users" => hash_passwords(&mut rows),
            "keypairs" => resolve_keypair_owners(txn, &mut rows).await?,
            _ => {}
        }
        let n = load_table(txn, table, &rows, now).await?;
        if table == "keypairs" {
            assign_main_access_keys(txn, &rows).await?;
        }
        counts.push((table, n));
    }
    Ok(counts)
}

async fn load_table(
    txn: &DatabaseTransaction,
    table: &'static str,
    rows: &[Map<String, Json>],
    now: DateTime<Utc>,
) -> Result<usize> {
    match table {
        "keypair_resource_policies" => load::<keypair_resource_policy::ActiveModel>(txn, table, rows, now).await,
        "user_resource_policies" => load::<user_resource_policy::ActiveModel>(txn, table, rows, now).await,
        "project_resource_policies" => load::<project_resource_policy::ActiveModel>(txn, table, rows, now).await,
        "domains" => load::<domain::ActiveModel>(txn, table, rows, now).await,
        "scaling_groups" => load::<scaling_group::ActiveModel>(txn, table, rows, now).await,
        "groups" => load::<group::ActiveModel>(txn, table, rows, now).await,
        "users" => load::<user::ActiveModel>(txn, table, rows, now).await,
        "association_groups_users" => load::<association_groups_users::ActiveModel>(txn, table, rows, now).await,
        "keypairs" => load::<keypair::ActiveModel>(txn, table, rows, now).await,
        "sgroups_for_domains" => load::<sgroups_for_domains::ActiveModel>(txn, table, rows, now).await,
        "sgroups_for_groups" => load::<sgroups_for_groups::ActiveModel>(txn, table, rows, now).await,
        "sgroups_for_keypairs" => load::<sgroups_for_keypairs::ActiveModel>(txn, table, rows, now).await,
        "agents" => load::<agent::ActiveModel>(txn, table, rows, now).await,
        "images" => load::<image::ActiveModel>(txn, table, rows, now).await,
        "image_aliases" => load::<image_alias::ActiveModel>(txn, table, rows, now).await,
        "resource_presets" => load::<resource_preset::ActiveModel>(txn, table, rows, now).await,
        "sessions" => load::<session::ActiveModel>(txn, table, rows, now).await,
        "session_dependencies" => load::<session_dependency::ActiveModel>(txn, table, rows, now).await,
        "kernels" => load::<kernel::ActiveModel>(txn, table, rows, now).await,
        "vfolders" => load::<vfolder::ActiveModel>(txn, table, rows, now).await,
        other => Err(DbError::invalid(format!("fixture table {other:?}"), "no such table")),
    }
}

/// Inserts `rows` into the table of `A`, column by column.
async fn load<A>(
    txn: &DatabaseTransaction,
    table: &str,
    rows: &[Map<String, Json>],
    now: DateTime<Utc>,
) -> Result<usize>
where
    A: ActiveModelTrait + ActiveModelBehavior + FillDefaults + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    for (i, object) in rows.iter().enumerate() {
        let mut row = A::default();
        for (key, json) in object {
            let Some(column) = <A::Entity as EntityTrait>::Column::iter().find(|c| c.as_str() == key) else {
                let known: Vec<String> =
                    <A::Entity as EntityTrait>::Column::iter().map(|c| c.as_str().to_string()).collect();
                return Err(DbError::invalid(
                    format!("{table}.{key}"),
                    format!("row {i}: no such column in {table}; its columns are {}", known.join(", ")),
                ));
            };
            let value = json_to_value(column.def().get_column_type(), json)
                .map_err(|reason| DbError::invalid(format!("{table}.{key}"), format!("row {i}: {reason}")))?;
            row.try_set(column, value).map_err(|_| {
                DbError::invalid(
                    format!("{table}.{key}"),
                    format!("row {i}: {json} is not a valid value for this column"),
                )
            })?;
        }
        row.fill_defaults(now);
        <A::Entity as EntityTrait>::insert(row)
            .exec_without_returning(txn)
            .await
            .map_err(|e| row_error(e, table, i))?;
    }
    Ok(rows.len())
}

/// A refused row: duplicates are [`DbError::Conflict`], other refusals by the database
/// (a missing required column, a dangling reference) [`DbError::Invalid`], each naming the
/// table and the row.
fn row_error(err: DbErr, table: &str, index: usize) -> DbError {
    let what = format!("{table} row {index}");
    match err {
        DbErr::Exec(_) | DbErr::Query(_) => match DbError::from_write(err, &what) {
            DbError::Db(err) => DbError::invalid(what, err.to_string()),
            other => other,
        },
        other => DbError::Db(other),
    }
}

/// Converts a fixture's JSON value into the database value of a column of type `ty`.
fn json_to_value(ty: &ColumnType, json: &Json) -> std::result::Result<Value, String> {
    let null = json.is_null();
    Ok(match ty {
        ColumnType::Char(_) | ColumnType::String(_) | ColumnType::Text => match json {
            _ if null => Value::String(None),
            Json::String(s) => Value::String(Some(Box::new(s.clone()))),
            other => return Err(format!("expected a string, got {other}")),
        },
        ColumnType::Integer => Value::Int(if null { None } else { Some(integer(json)?) }),
        ColumnType::BigInteger => Value::BigInt(if null { None } else { Some(integer(json)?) }),
        ColumnType::SmallInteger => Value::SmallInt(if null { None } else { Some(integer(json)?) }),
        ColumnType::Boolean => match json {
            _ if null => Value::Bool(None),
            Json::Bool(b) => Value::Bool(Some(*b)),
            other => return Err(format!("expected true or false, got {other}")),
        },
        ColumnType::Uuid => match json {
            _ if null => Value::Uuid(None),
            Json::String(s) => match Uuid::parse_str(s.trim()) {
                Ok(id) => Value::Uuid(Some(Box::new(id))),
                Err(e) => return Err(format!("expected a UUID, got {s:?} ({e})")),
            },
            other => return Err(format!("expected a UUID string, got {other}")),
        },
        ColumnType::TimestampWithTimeZone => match json {
            _ if null => Value::ChronoDateTimeUtc(None),
            Json::String(s) => Value::ChronoDateTimeUtc(Some(Box::new(timestamp(s)?))),
            other => return Err(format!("expected an RFC 3339 timestamp string, got {other}")),
        },
        ColumnType::Json | ColumnType::JsonBinary => {
            Value::Json(if null { None } else { Some(Box::new(json.clone())) })
        }
        other => return Err(format!("columns of type {other:?} cannot be loaded from fixtures")),
    })
}

fn integer<T: TryFrom<i64>>(json: &Json) -> std::result::Result<T, String> {
    let n = match json {
        Json::Number(n) => n.as_i64().ok_or_else(|| format!("expected an integer, got {n}"))?,
        Json::String(s) => s.trim().parse::<i64>().map_err(|_| format!("expected an integer, got {s:?}"))?,
        other => return Err(format!("expected an integer, got {other}")),
    };
    T::try_from(n).map_err(|_| format!("{n} is out of range for this column"))
}

fn timestamp(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s.trim(), format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!("expected an RFC 3339 timestamp, got {s:?}"))
}

/// `users.password` holds plain text in fixtures; the database keeps the hash.
fn hash_passwords(rows: &mut [Map<String, Json>]) {
    for row in rows {
        if let Some(Json::String(plain)) = row.get("password") {
            let hashed = hash_password(plain);
            row.insert("password".into(), Json::String(hashed));
        }
    }
}

/// A keypair names its owner by e-mail (`user_id`) and by id (`user`); either is enough.
async fn resolve_keypair_owners(txn: &DatabaseTransaction, rows: &mut [Map<String, Json>]) -> Result<()> {
    for (i, row) in rows.iter_mut().enumerate() {
        let email = row.get("user_id").and_then(Json::as_str).map(str::to_string);
        let uuid = row.get("user").and_then(Json::as_str).map(str::to_string);
        match (email, uuid) {
            (Some(email), None) => {
                let owner = user::Entity::find().filter(user::Column::Email.eq(email.as_str())).one(txn).await?;
                let owner = owner.ok_or_else(|| {
                    DbError::invalid("keypairs.user_id", format!("row {i}: no user has the e-mail address {email:?}"))
                })?;
                row.insert("user".into(), Json::String(owner.uuid.to_string()));
            }
            (None, Some(uuid)) => {
                let id = Uuid::parse_str(&uuid).map_err(|e| {
                    DbError::invalid("keypairs.user", format!("row {i}: expected a UUID, got {uuid:?} ({e})"))
                })?;
                let owner = user::Entity::find_by_id(id).one(txn).await?;
                let owner = owner
                    .ok_or_else(|| DbError::invalid("keypairs.user", format!("row {i}: no user has the id {id}")))?;
                row.insert("user_id".into(), Json::String(owner.email));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Gives each owner of the loaded keypairs that has no main access key its first one.
async fn assign_main_access_keys(txn: &DatabaseTransaction, rows: &[Map<String, Json>]) -> Result<()> {
    for row in rows {
        let (Some(Json::String(access_key)), Some(Json::String(owner))) = (row.get("access_key"), row.get("user"))
        else {
            continue;
        };
        let Ok(owner) = Uuid::parse_str(owner) else { continue };
        user::Entity::update_many()
            .set(user::ActiveModel { main_access_key: Set(Some(access_key.clone())), ..Default::default() })
            .filter(user::Column::Uuid.eq(owner))
            .filter(user::Column::MainAccessKey.is_null())
            .exec(txn)
            .await?;
    }
    Ok(())
}
