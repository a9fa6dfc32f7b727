//! A session and its main kernel in one statement: what `GET /session/{ref}` reads on every
//! request.
//!
//! [`match_sessions_with_main_kernel`] answers exactly what [`match_sessions`] followed by
//! [`list_kernels_of_session`]'s first kernel would, in one round trip instead of two. Its SQL
//! text is built once per backend and shape (by id or by name, with or without an owner, live
//! or any) and kept for the life of the process, instead of being built by sea-query on every
//! call; rows are decoded by position, not by column name. Nothing read is cached: every call
//! asks the database.
//!
//! [`match_sessions`]: super::match_sessions
//! [`list_kernels_of_session`]: super::list_kernels_of_session

use std::sync::OnceLock;

use bai_core::SessionStatus;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use uuid::Uuid;

use crate::db::entities::{kernel, session};
use crate::db::Result;

/// Declares the columns of a model in their table order, and a decoder reading them by
/// position: a column missing here fails to compile (the struct literal is incomplete), and
/// a test checks the names against the entity's columns.
macro_rules! positional {
    ($columns:ident, $decode:ident, $module:ident, [$($field:ident),* $(,)?]) => {
        const $columns: &[&str] = &[$(stringify!($field)),*];

        #[allow(unused_assignments)]
        fn $decode(row: &QueryResult, first: usize) -> std::result::Result<$module::Model, DbErr> {
            let mut at = first;
            Ok($module::Model {
                $($field: {
                    let value = row.try_get_by_index(at)?;
                    at += 1;
                    value
                }),*
            })
        }
    };
}

positional!(
    SESSION_COLUMNS,
    decode_session,
    session,
    [
        id,
        creation_id,
        name,
        session_type,
        priority,
        cluster_mode,
        cluster_size,
        agent_ids,
        scaling_group_name,
        target_sgroup_names,
        domain_name,
        group_id,
        user_uuid,
        access_key,
        images,
        tag,
        occupying_slots,
        requested_slots,
        vfolder_mounts,
        environ,
        bootstrap_script,
        use_host_network,
        timeout,
        batch_timeout,
        created_at,
        terminated_at,
        starts_at,
        status,
        status_changed,
        status_info,
        status_data,
        status_history,
        callback_url,
        startup_command,
        result,
        num_queries,
        last_stat,
    ]
);

positional!(
    KERNEL_COLUMNS,
    decode_kernel,
    kernel,
    [
        id,
        session_id,
        session_creation_id,
        session_name,
        session_type,
        cluster_mode,
        cluster_size,
        cluster_role,
        cluster_idx,
        local_rank,
        cluster_hostname,
        scaling_group,
        agent,
        agent_addr,
        domain_name,
        group_id,
        user_uuid,
        access_key,
        image,
        architecture,
        registry,
        tag,
        container_id,
        occupied_slots,
        requested_slots,
        occupied_shares,
        environ,
        attached_devices,
        resource_opts,
        vfolder_mounts,
        bootstrap_script,
        kernel_host,
        repl_in_port,
        repl_out_port,
        stdin_port,
        stdout_port,
        service_ports,
        preopen_ports,
        use_host_network,
        created_at,
        terminated_at,
        starts_at,
        status,
        status_changed,
        status_info,
        status_data,
        status_history,
        startup_command,
        result,
        internal_data,
        num_queries,
        last_stat,
        exit_code,
    ]
);

/// What a reference is compared with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Id,
    Name,
}

/// The statement's text for one backend and shape. The parameters are the reference (the id
/// as a UUID, or the name), then the access key when `owned`.
fn statement_text(backend: DbBackend, by: By, owned: bool, include_dead: bool) -> String {
    let placeholder = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_string(),
    };
    let list = |alias: &str, columns: &[&str]| {
        columns.iter().map(|c| format!("{alias}.\"{c}\"")).collect::<Vec<_>>().join(", ")
    };
    let mut sql = format!(
        "SELECT {}, {} FROM \"sessions\" AS s LEFT JOIN \"kernels\" AS k ON k.\"id\" = (\
         SELECT m.\"id\" FROM \"kernels\" AS m WHERE m.\"session_id\" = s.\"id\" \
         ORDER BY CASE WHEN m.\"cluster_role\" = 'main' THEN 0 ELSE 1 END, m.\"cluster_role\", m.\"cluster_idx\" \
         LIMIT 1)",
        list("s", SESSION_COLUMNS),
        list("k", KERNEL_COLUMNS),
    );
    let column = match by {
        By::Id => "id",
        By::Name => "name",
    };
    sql.push_str(&format!(" WHERE s.\"{column}\" = {}", placeholder(1)));
    if owned {
        sql.push_str(&format!(" AND s.\"access_key\" = {}", placeholder(2)));
    }
    if !include_dead {
        sql.push_str(&format!(
            " AND s.\"status\" NOT IN ('{}', '{}')",
            SessionStatus::Terminated.as_str(),
            SessionStatus::Cancelled.as_str()
        ));
    }
    sql.push_str(" ORDER BY s.\"created_at\" DESC, s.\"id\" DESC");
    sql
}

/// The text for this backend and shape, built on first use.
fn cached_text(backend: DbBackend, by: By, owned: bool, include_dead: bool) -> &'static str {
    const SHAPES: usize = 8;
    static TEXTS: [[OnceLock<String>; SHAPES]; 3] = [const { [const { OnceLock::new() }; SHAPES] }; 3];
    let b = match backend {
        DbBackend::Postgres => 0,
        DbBackend::Sqlite => 1,
        DbBackend::MySql => 2,
    };
    let shape = usize::from(by == By::Name) * 4 + usize::from(owned) * 2 + usize::from(include_dead);
    TEXTS[b][shape].get_or_init(|| statement_text(backend, by, owned, include_dead))
}

async fn run(
    db: &impl ConnectionTrait,
    by: By,
    reference: Value,
    access_key: Option<&str>,
    include_dead: bool,
) -> Result<Vec<(session::Model, Option<kernel::Model>)>> {
    let backend = db.get_database_backend();
    let sql = cached_text(backend, by, access_key.is_some(), include_dead);
    let mut values = Vec::with_capacity(2);
    values.push(reference);
    if let Some(access_key) = access_key {
        values.push(access_key.into());
    }
    let rows = db.query_all(Statement::from_sql_and_values(backend, sql, values)).await?;
    let kernel_at = SESSION_COLUMNS.len();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let session = decode_session(row, 0)?;
        let kernel = match row.try_get_by_index::<Option<Uuid>>(kernel_at)? {
            Some(_) => Some(decode_kernel(row, kernel_at)?),
            None => None,
        };
        out.push((session, kernel));
    }
    Ok(out)
}

/// The sessions `reference` matches, exactly as [`match_sessions`](super::match_sessions)
/// finds them (an id first, else the name; `access_key`'s only, or any owner's when `None`;
/// live ones only unless `include_dead`; newest first), each with its main kernel as
/// [`list_kernels_of_session`](super::list_kernels_of_session) orders them (`None` when it has
/// no kernel) — one statement per attempt.
pub async fn match_sessions_with_main_kernel(
    db: &impl ConnectionTrait,
    access_key: Option<&str>,
    reference: &str,
    include_dead: bool,
) -> Result<Vec<(session::Model, Option<kernel::Model>)>> {
    if let Ok(id) = Uuid::parse_str(reference.trim()) {
        let by_id = run(db, By::Id, id.into(), access_key, include_dead).await?;
        if !by_id.is_empty() {
            return Ok(by_id);
        }
    }
    run(db, By::Name, reference.into(), access_key, include_dead).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{EntityTrait, Iden, Iterable};

    fn names<C: Iden>(columns: impl Iterator<Item = C>) -> Vec<String> {
        columns.map(|c| c.to_string()).collect()
    }

    #[test]
    fn the_positional_columns_are_the_entities_columns_in_order() {
        assert_eq!(SESSION_COLUMNS, names(<session::Entity as EntityTrait>::Column::iter()));
        assert_eq!(KERNEL_COLUMNS, names(<kernel::Entity as EntityTrait>::Column::iter()));
    }

    #[test]
    fn statement_texts_use_each_backends_placeholders() {
        let pg = statement_text(DbBackend::Postgres, By::Name, true, false);
        assert!(pg.contains("WHERE s.\"name\" = $1 AND s.\"access_key\" = $2 AND s.\"status\" NOT IN"), "{pg}");
        let lite = statement_text(DbBackend::Sqlite, By::Id, false, true);
        assert!(lite.contains("WHERE s.\"id\" = ? ORDER BY"), "{lite}");
        assert!(!lite.contains("NOT IN"), "{lite}");
        // the cache hands out the same text
        assert_eq!(cached_text(DbBackend::Postgres, By::Name, true, false), pg);
        assert_eq!(cached_text(DbBackend::Sqlite, By::Id, false, true), lite);
        assert_ne!(cached_text(DbBackend::Sqlite, By::Id, true, true), lite);
    }
}
