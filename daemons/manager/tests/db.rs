//! The database layer (`bai_manager::db`) against both backends: every test body runs on a
//! fresh SQLite file and on a fresh PostgreSQL database (`BAI_TEST_PG_URL`; skipped when
//! unset unless `BAI_REQUIRE_SERVICES=1`).

use bai_core::{AgentId, AgentStatus, KernelId, KernelStatus, ResourceSlot, SessionId, SessionStatus};
use bai_manager::db::entities::{kernel, session, user};
use bai_manager::db::repo::{self, AgentHeartbeatRow, SessionFilter, UpsertOutcome};
use bai_manager::db::types::{JsonOf, UserRole, Wire};
use bai_manager::db::{self, DbError};
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, Statement,
};
use serde_json::json;
use uuid::Uuid;

mod common;

use common::backends::{db_test, on_postgres, on_sqlite, with_database};

const EXAMPLE_FIXTURE: &str = include_str!("../fixtures/example-users.json");
const ADMIN_AK: &str = "AKIAIOSFODNN7EXAMPLE";
const USER_AK: &str = "AKIANABBDUSEREXAMPLE";
const ADMIN_UUID: &str = "f38dea23-50fa-42a0-b5ae-338f5f4693f4";
const USER_UUID: &str = "dfa9da54-4b28-432f-be29-c0d680c7a412";
const GROUP_ID: &str = "2de2b969-1d04-48a6-af16-0bc8adb3c831";

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("a UUID literal")
}

fn slots(pairs: &[(&str, i64)]) -> ResourceSlot {
    ResourceSlot::from_pairs(pairs.iter().map(|(k, v)| (*k, bai_core::Decimal::from(*v)))).expect("valid slot names")
}

async fn load_example(db: &DatabaseConnection) {
    let fixture: serde_json::Value = serde_json::from_str(EXAMPLE_FIXTURE).expect("the example fixture is JSON");
    repo::populate_fixture(db, &fixture).await.expect("loading the example fixture");
}

async fn count<E: EntityTrait>(db: &DatabaseConnection, _entity: E) -> u64
where
    E::Model: Sync,
{
    E::find().count(db).await.expect("counting rows")
}

/// The columns a table has in the database.
async fn table_columns(db: &DatabaseConnection, table: &str) -> Vec<String> {
    let backend = db.get_database_backend();
    let stmt = match backend {
        DbBackend::Sqlite => Statement::from_sql_and_values(
            backend,
            "SELECT name AS column_name FROM pragma_table_info(?) ORDER BY name",
            [table.into()],
        ),
        _ => Statement::from_sql_and_values(
            backend,
            "SELECT column_name::text AS column_name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY column_name",
            [table.into()],
        ),
    };
    let rows = db.query_all(stmt).await.expect("listing columns");
    rows.iter().map(|r| r.try_get::<String>("", "column_name").expect("column_name")).collect()
}

/// The columns an entity declares, sorted.
fn entity_columns<E: EntityTrait>(_entity: E) -> Vec<String> {
    use sea_orm::{IdenStatic, Iterable};
    let mut names: Vec<String> = E::Column::iter().map(|c| c.as_str().to_string()).collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------

db_test!(migrate_is_idempotent_and_matches_the_entities);
async fn migrate_is_idempotent_and_matches_the_entities(db: DatabaseConnection) {
    db::migrate(&db).await.expect("a second migration is a no-op");
    db::migrate(&db).await.expect("a third migration is a no-op");
    let applied = db
        .query_one(Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) AS n FROM seaql_migrations"))
        .await
        .expect("reading seaql_migrations")
        .expect("one row");
    let migrations = <db::Migrator as sea_orm_migration::MigratorTrait>::migrations().len() as i64;
    assert_eq!(applied.try_get::<i64>("", "n").expect("n"), migrations, "each migration is recorded once");

    use bai_manager::db::entities::*;
    macro_rules! check {
        ($($module:ident => $table:literal),+ $(,)?) => {$(
            let declared = entity_columns($module::Entity);
            let actual = table_columns(&db, $table).await;
            assert_eq!(actual, declared, "the columns of {} differ from its entity", $table);
            $module::Entity::find().all(&db).await.unwrap_or_else(|e| panic!("selecting from {}: {e}", $table));
        )+};
    }
    check!(
        agent => "agents",
        association_groups_users => "association_groups_users",
        domain => "domains",
        group => "groups",
        image => "images",
        image_alias => "image_aliases",
        kernel => "kernels",
        keypair => "keypairs",
        keypair_resource_policy => "keypair_resource_policies",
        project_resource_policy => "project_resource_policies",
        resource_preset => "resource_presets",
        scaling_group => "scaling_groups",
        session => "sessions",
        session_dependency => "session_dependencies",
        sgroups_for_domains => "sgroups_for_domains",
        sgroups_for_groups => "sgroups_for_groups",
        sgroups_for_keypairs => "sgroups_for_keypairs",
        user => "users",
        user_resource_policy => "user_resource_policies",
        vfolder => "vfolders",
        vfolder_invitation => "vfolder_invitations",
        vfolder_permission => "vfolder_permissions",
    );
}

db_test!(the_example_fixture_loads);
async fn the_example_fixture_loads(db: DatabaseConnection) {
    let fixture: serde_json::Value = serde_json::from_str(EXAMPLE_FIXTURE).unwrap();
    let counts = repo::populate_fixture(&db, &fixture).await.expect("loading the example fixture");
    let get = |table: &str| counts.iter().find(|(t, _)| *t == table).map(|(_, n)| *n);
    assert_eq!(get("users"), Some(2));
    assert_eq!(get("keypairs"), Some(2));
    assert_eq!(get("resource_presets"), Some(3));
    assert_eq!(counts.first().map(|(t, _)| *t), Some("keypair_resource_policies"), "policies load first");

    let (keypair, admin) = repo::find_keypair_with_user(&db, ADMIN_AK).await.unwrap().expect("the admin keypair");
    assert_eq!(keypair.secret_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    assert!(keypair.is_admin && keypair.is_active);
    assert_eq!(keypair.user_id, "admin@lablup.com");
    assert_eq!(admin.uuid, uuid(ADMIN_UUID));
    assert_eq!(admin.role, Wire(UserRole::Superadmin));
    assert_eq!(admin.main_access_key.as_deref(), Some(ADMIN_AK), "the fixture gives users their main keypair");
    let hash = admin.password.as_deref().expect("a password hash");
    assert_ne!(hash, "wJalrXUt", "passwords are stored hashed");
    assert!(repo::verify_password(hash, "wJalrXUt"));

    let (_, regular) = repo::find_keypair_with_user(&db, USER_AK).await.unwrap().expect("the user keypair");
    assert_eq!(regular.role, Wire(UserRole::User));
    let groups = repo::groups_of_user(&db, regular.uuid).await.unwrap();
    assert_eq!(groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["default"]);

    let presets = repo::list_resource_presets(&db, Some("default")).await.unwrap();
    assert_eq!(presets.len(), 3);
    assert_eq!(presets[1].name, "02-medium");
    assert_eq!(presets[1].shared_memory, Some(1 << 30));
    assert_eq!(presets[1].resource_slots.0, slots(&[("cpu", 2), ("mem", 4 << 30)]));

    let allowed = repo::allowed_scaling_groups(&db, "default", uuid(GROUP_ID), USER_AK).await.unwrap();
    assert_eq!(allowed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["default"]);
    let policy = repo::get_keypair_resource_policy(&db, "default").await.unwrap().expect("the default policy");
    assert_eq!(policy.max_concurrent_sessions, 5);
    assert_eq!(policy.max_pending_session_count, None, "unset columns get their defaults");

    // Loading it again collides on every key and still changes nothing.
    let err = repo::populate_fixture(&db, &fixture).await.unwrap_err();
    assert!(matches!(err, DbError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("keypair_resource_policies row 0"), "{err}");
    assert_eq!(count(&db, user::Entity).await, 2);
}

db_test!(a_bad_fixture_row_changes_nothing);
async fn a_bad_fixture_row_changes_nothing(db: DatabaseConnection) {
    use bai_manager::db::entities::domain;
    let good_domain = json!({"name": "d1"});
    let user_row = |extra: serde_json::Value| {
        let mut row = json!({
            "uuid": "7f6f6bd2-43c2-4c4b-9b59-04b1b4b6a0e1", "email": "x@example.com",
            "domain_name": "d1", "resource_policy": "p1",
        });
        row.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        row
    };
    let cases = [
        // an unknown column, in the last table loaded
        (json!({"nickname": "x"}), "users.nickname", "no such column in users"),
        // a value of the wrong type
        (json!({"need_password_change": "yes"}), "users.need_password_change", "expected true or false"),
        // an enum value that does not exist
        (json!({"role": "root"}), "users.role", "is not a valid value"),
        // a reference to a missing row (the database refuses it)
        (json!({"domain_name": "nowhere"}), "users row 0", ""),
        // a required column left out
        (json!({"email": null}), "users.email", "is not a valid value"),
    ];
    for (extra, field, reason) in cases {
        let fixture = json!({
            "users": [user_row(extra)],
            "domains": [good_domain.clone()],
            "user_resource_policies": [{"name": "p1"}],
        });
        let err = repo::populate_fixture(&db, &fixture).await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains(field), "{field}: {message}");
        assert!(message.contains(reason), "{field}: {message}");
        assert!(message.contains("row 0"), "{message}");
        assert_eq!(count(&db, domain::Entity).await, 0, "{field}: the domain row was rolled back");
        assert_eq!(count(&db, user::Entity).await, 0);
    }

    let err = repo::populate_fixture(&db, &json!({"domains": [good_domain.clone(), {"description": "no name"}]}))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("invalid domains row 1: "), "{err}");
    assert!(err.to_string().contains("name"), "the database's message names the column: {err}");
    let err =
        repo::populate_fixture(&db, &json!({"domains": [good_domain.clone(), {"name": "d1"}]})).await.unwrap_err();
    assert!(err.to_string().starts_with("conflict: domains row 1 already exists"), "{err}");
    let err = repo::populate_fixture(&db, &json!({"domains": [good_domain.clone()], "userz": []})).await.unwrap_err();
    assert!(err.to_string().contains("\"userz\""), "{err}");
    let err = repo::populate_fixture(&db, &json!({"domains": {"name": "d1"}})).await.unwrap_err();
    assert!(err.to_string().contains("expected a list of rows"), "{err}");
    assert_eq!(count(&db, domain::Entity).await, 0);

    // The same rows without the mistake load.
    let fixture = json!({
        "users": [user_row(json!({}))],
        "domains": [good_domain],
        "user_resource_policies": [{"name": "p1"}],
    });
    repo::populate_fixture(&db, &fixture).await.expect("the corrected fixture loads");
    assert_eq!(count(&db, user::Entity).await, 1);
}

db_test!(keypairs_are_created_and_found);
async fn keypairs_are_created_and_found(db: DatabaseConnection) {
    load_example(&db).await;
    let owner = uuid(USER_UUID);
    let (ak, sk) = repo::create_keypair(&db, owner, false, "default").await.expect("creating a keypair");
    assert!(ak.starts_with("AKIA") && ak.len() == 20, "{ak}");
    assert_eq!(sk.len(), 40, "{sk}");

    let (keypair, found_user) = repo::find_keypair_with_user(&db, &ak).await.unwrap().expect("the new keypair");
    assert_eq!(keypair.secret_key, sk);
    assert_eq!(keypair.user, owner);
    assert_eq!(keypair.user_id, "user@lablup.com");
    assert!(keypair.is_active && !keypair.is_admin);
    assert_eq!(keypair.rate_limit, 30_000);
    assert_eq!(keypair.last_used, None);
    assert_eq!(found_user.email, "user@lablup.com");
    assert_eq!(found_user.main_access_key.as_deref(), Some(USER_AK), "an existing main key is kept");
    assert_eq!(repo::list_keypairs(&db, Some(owner)).await.unwrap().len(), 2);

    let before = Utc::now() - chrono::Duration::seconds(1);
    repo::touch_last_used(&db, &ak).await.expect("touching the keypair");
    let touched = repo::get_keypair(&db, &ak).await.unwrap().unwrap();
    assert!(touched.last_used.expect("last_used is set") >= before);

    assert!(repo::find_keypair_with_user(&db, "AKIANOSUCHKEY0000000").await.unwrap().is_none());
    let err = repo::touch_last_used(&db, "AKIANOSUCHKEY0000000").await.unwrap_err();
    assert_eq!(err.to_string(), "no such keypair: AKIANOSUCHKEY0000000");
    let nobody = Uuid::new_v4();
    let err = repo::create_keypair(&db, nobody, false, "default").await.unwrap_err();
    assert_eq!(err.to_string(), format!("no such user: {nobody}"));
    let err = repo::create_keypair(&db, owner, false, "gold").await.unwrap_err();
    assert_eq!(err.to_string(), "no such keypair resource policy: gold");

    // A user without keypairs gets the first one as its main access key.
    let fresh = repo::create_user(
        &db,
        user::ActiveModel {
            email: Set("fresh@example.com".into()),
            domain_name: Set("default".into()),
            password: Set(Some(repo::hash_password("pw"))),
            ..Default::default()
        },
    )
    .await
    .expect("creating a user");
    assert_eq!(fresh.role, Wire(UserRole::User));
    let (fresh_ak, _) = repo::create_keypair(&db, fresh.uuid, true, "default").await.unwrap();
    let fresh = repo::get_user(&db, fresh.uuid).await.unwrap().unwrap();
    assert_eq!(fresh.main_access_key, Some(fresh_ak));
    let err = repo::create_user(
        &db,
        user::ActiveModel {
            email: Set("fresh@example.com".into()),
            domain_name: Set("default".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DbError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("user fresh@example.com already exists"), "{err}");
}

fn heartbeat(id: &str, cpu: i64) -> AgentHeartbeatRow {
    AgentHeartbeatRow {
        id: AgentId::new(id).unwrap(),
        region: "local".into(),
        scaling_group: "default".into(),
        available_slots: slots(&[("cpu", cpu), ("mem", 8 << 30)]),
        addr: format!("tcp://127.0.0.1:6011/{id}"),
        public_host: Some("127.0.0.1".into()),
        public_key: None,
        architecture: "x86_64".into(),
        version: "0.1.0".into(),
        compute_plugins: json!({}),
        auto_terminate_abusing_kernel: false,
    }
}

db_test!(agent_heartbeats_insert_refresh_and_revive);
async fn agent_heartbeats_insert_refresh_and_revive(db: DatabaseConnection) {
    load_example(&db).await;
    let id = AgentId::new("i-node01").unwrap();
    assert_eq!(
        repo::upsert_agent_from_heartbeat(&db, heartbeat("i-node01", 8)).await.unwrap(),
        UpsertOutcome::Inserted
    );
    let row = repo::get_agent(&db, &id).await.unwrap().expect("the agent row");
    assert_eq!(row.status, Wire(AgentStatus::Alive));
    assert!(row.occupied_slots.0.is_empty(), "a new agent occupies nothing");
    assert_eq!(row.available_slots.0, slots(&[("cpu", 8), ("mem", 8 << 30)]));
    let first_contact = row.first_contact;

    assert_eq!(
        repo::upsert_agent_from_heartbeat(&db, heartbeat("i-node01", 8)).await.unwrap(),
        UpsertOutcome::Updated { changed: false }
    );
    // The scheduler's occupancy survives heartbeats.
    repo::set_agent_occupied_slots(&db, &id, &slots(&[("cpu", 2)])).await.unwrap();
    assert_eq!(
        repo::upsert_agent_from_heartbeat(&db, heartbeat("i-node01", 16)).await.unwrap(),
        UpsertOutcome::Updated { changed: true }
    );
    let row = repo::get_agent(&db, &id).await.unwrap().unwrap();
    assert_eq!(row.available_slots.0.get("cpu"), bai_core::Decimal::from(16));
    assert_eq!(row.occupied_slots.0, slots(&[("cpu", 2)]));

    assert!(repo::mark_agent_lost(&db, &id).await.unwrap());
    assert!(!repo::mark_agent_lost(&db, &id).await.unwrap(), "marking it lost again changes nothing");
    let lost = repo::get_agent(&db, &id).await.unwrap().unwrap();
    assert_eq!(lost.status, Wire(AgentStatus::Lost));
    assert!(lost.lost_at.is_some());
    assert_eq!(repo::list_agents(&db, None, Some(AgentStatus::Alive)).await.unwrap().len(), 0);

    assert_eq!(
        repo::upsert_agent_from_heartbeat(&db, heartbeat("i-node01", 16)).await.unwrap(),
        UpsertOutcome::Revived { previous: AgentStatus::Lost }
    );
    let revived = repo::get_agent(&db, &id).await.unwrap().unwrap();
    assert_eq!(revived.status, Wire(AgentStatus::Alive));
    assert_eq!(revived.lost_at, None);
    assert_eq!(revived.first_contact, first_contact, "first_contact is kept");
    assert!(revived.status_changed >= lost.status_changed);

    assert!(repo::mark_agent_terminated(&db, &id).await.unwrap());
    assert_eq!(
        repo::upsert_agent_from_heartbeat(&db, heartbeat("i-node01", 16)).await.unwrap(),
        UpsertOutcome::Revived { previous: AgentStatus::Terminated }
    );

    repo::upsert_agent_from_heartbeat(&db, heartbeat("i-node00", 4)).await.unwrap();
    let all = repo::list_agents(&db, Some("default"), None).await.unwrap();
    assert_eq!(all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["i-node00", "i-node01"]);
    assert!(repo::list_agents(&db, Some("gpu"), None).await.unwrap().is_empty());

    // Heartbeats of a new agent racing each other insert it once.
    let racing = (0..4).map(|_| repo::upsert_agent_from_heartbeat(&db, heartbeat("i-node03", 4)));
    let outcomes: Vec<UpsertOutcome> =
        futures::future::join_all(racing).await.into_iter().map(|r| r.expect("a racing heartbeat")).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == UpsertOutcome::Inserted).count(), 1, "{outcomes:?}");

    let mut stray = heartbeat("i-node02", 4);
    stray.scaling_group = "gpu".into();
    let err = repo::upsert_agent_from_heartbeat(&db, stray).await.unwrap_err();
    assert_eq!(err.to_string(), "no such scaling group: gpu");
    let err = repo::mark_agent_lost(&db, &AgentId::new("i-ghost").unwrap()).await.unwrap_err();
    assert_eq!(err.to_string(), "no such agent: i-ghost");
}

/// A PENDING session of `access_key` in the default group and scaling group, created at
/// `created_at`, with `n` kernels of one CPU each.
fn new_session(
    name: &str,
    access_key: &str,
    owner: &str,
    created_at: DateTime<Utc>,
    n: usize,
) -> (session::ActiveModel, Vec<kernel::ActiveModel>) {
    let session = session::ActiveModel {
        name: Set(name.into()),
        domain_name: Set("default".into()),
        group_id: Set(uuid(GROUP_ID)),
        user_uuid: Set(uuid(owner)),
        access_key: Set(Some(access_key.into())),
        scaling_group_name: Set(Some("default".into())),
        images: Set(JsonOf(vec!["cr.backend.ai/stable/python:3.11".into()])),
        created_at: Set(created_at),
        ..Default::default()
    };
    let kernels = (0..n)
        .map(|i| kernel::ActiveModel {
            cluster_role: Set(if i == 0 { "main" } else { "sub" }.into()),
            cluster_idx: Set(if i == 0 { 1 } else { i as i32 }),
            local_rank: Set(i as i32),
            image: Set(Some("cr.backend.ai/stable/python:3.11".into())),
            requested_slots: Set(JsonOf(slots(&[("cpu", 1), ("mem", 1 << 30)]))),
            ..Default::default()
        })
        .collect();
    (session, kernels)
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

db_test!(sessions_are_inserted_listed_and_found);
async fn sessions_are_inserted_listed_and_found(db: DatabaseConnection) {
    load_example(&db).await;
    let mut ids = Vec::new();
    for (i, (name, ak, owner)) in [
        ("u-one", USER_AK, USER_UUID),
        ("a-one", ADMIN_AK, ADMIN_UUID),
        ("u-two", USER_AK, USER_UUID),
        ("u-three", USER_AK, USER_UUID),
        ("a-two", ADMIN_AK, ADMIN_UUID),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, k) = new_session(name, ak, owner, at(i as i64), if name == "u-two" { 3 } else { 1 });
        let (row, kernels) = repo::insert_session_with_kernels(&db, s, k).await.expect("inserting a session");
        assert_eq!(row.status, Wire(SessionStatus::Pending));
        let enqueued = format!("2023-11-14T22:13:{:02}.000000+00:00", 20 + i);
        assert_eq!(row.status_history, json!({ "PENDING": enqueued }));
        assert_eq!(row.cluster_size as usize, kernels.len());
        for k in &kernels {
            assert_eq!(k.session_id, row.id);
            assert_eq!(k.access_key, row.access_key, "kernels inherit the owner");
            assert_eq!(k.session_name.as_deref(), Some(name));
            assert_eq!(k.status, Wire(KernelStatus::Pending));
            assert_eq!(k.occupied_slots, k.requested_slots);
        }
        ids.push(row.id);
    }
    let (three, kernels) = repo::get_session_with_kernels(&db, SessionId::from_uuid(ids[2])).await.unwrap().unwrap();
    assert_eq!(three.requested_slots.0, slots(&[("cpu", 3), ("mem", 3 << 30)]), "the sum of the kernels'");
    assert_eq!(kernels.len(), 3);
    assert_eq!(kernels[0].cluster_role, "main");
    assert_eq!(kernels.iter().map(|k| k.cluster_hostname.as_str()).collect::<Vec<_>>(), ["main1", "sub1", "sub2"]);

    // Owner filter, total count, paging (newest first).
    let mine = SessionFilter { access_key: Some(USER_AK.into()), limit: 2, ..Default::default() };
    let (page, total) = repo::list_sessions(&db, &mine).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(page.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["u-three", "u-two"]);
    let (page, total) = repo::list_sessions(&db, &SessionFilter { offset: 2, ..mine.clone() }).await.unwrap();
    assert_eq!((page.len(), total), (1, 3));
    assert_eq!(page[0].name, "u-one");
    let (all, total) = repo::list_sessions(&db, &SessionFilter::default()).await.unwrap();
    assert_eq!((all.len(), total), (5, 5));
    let running = SessionFilter { statuses: vec![SessionStatus::Running], ..Default::default() };
    assert_eq!(repo::list_sessions(&db, &running).await.unwrap(), (vec![], 0));

    // References: by name or id, scoped to the owner; None (an admin) sees everyone's.
    let found = repo::find_session_by_name_or_id(&db, Some(USER_AK), "u-two").await.unwrap();
    assert_eq!(found.id, ids[2]);
    let found = repo::find_session_by_name_or_id(&db, Some(USER_AK), &ids[3].to_string()).await.unwrap();
    assert_eq!(found.name, "u-three");
    let err = repo::find_session_by_name_or_id(&db, Some(USER_AK), "a-one").await.unwrap_err();
    assert_eq!(err.to_string(), "no such session: a-one");
    assert_eq!(repo::find_session_by_name_or_id(&db, None, "a-one").await.unwrap().id, ids[1]);
    let (s, k) = new_session("u-two", USER_AK, USER_UUID, at(10), 1);
    repo::insert_session_with_kernels(&db, s, k).await.unwrap();
    let err = repo::find_session_by_name_or_id(&db, Some(USER_AK), "u-two").await.unwrap_err();
    assert!(matches!(err, DbError::Conflict { .. }) && err.to_string().contains("2 sessions match"), "{err}");

    // The scheduler's queue: PENDING sessions of the scaling group, oldest first.
    let queue = repo::pending_sessions(&db, "default").await.unwrap();
    assert_eq!(queue.len(), 6);
    assert_eq!(queue[0].0.name, "u-one");
    assert_eq!(queue[2].1.len(), 3);
    assert!(repo::pending_sessions(&db, "gpu").await.unwrap().is_empty());

    // A session with two main kernels is refused whole.
    let (s, mut k) = new_session("bad", USER_AK, USER_UUID, at(20), 2);
    k[1].cluster_role = Set("main".into());
    let err = repo::insert_session_with_kernels(&db, s, k).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid kernels: a session needs exactly one main kernel, got 2");
    // So is a kernel that fails in the database, after its session was written.
    let (s, mut k) = new_session("bad", USER_AK, USER_UUID, at(20), 2);
    k[1].agent = Set(Some("i-ghost".into()));
    repo::insert_session_with_kernels(&db, s, k).await.unwrap_err();
    assert_eq!(count(&db, session::Entity).await, 6, "the refused sessions left no row");
    assert_eq!(count(&db, kernel::Entity).await, 8);
}

async fn one_session(db: &DatabaseConnection) -> (SessionId, KernelId) {
    let (s, k) = new_session("s1", USER_AK, USER_UUID, at(0), 1);
    let (row, kernels) = repo::insert_session_with_kernels(db, s, k).await.unwrap();
    (SessionId::from_uuid(row.id), KernelId::from_uuid(kernels[0].id))
}

db_test!(illegal_transitions_are_refused_without_change);
async fn illegal_transitions_are_refused_without_change(db: DatabaseConnection) {
    load_example(&db).await;
    let (sid, kid) = one_session(&db).await;
    let before = repo::get_session(&db, sid).await.unwrap().unwrap();
    let err = repo::set_session_status(&db, sid, SessionStatus::Running, Some("nope"), Some(json!({"x": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Conflict { .. }), "{err}");
    assert_eq!(err.to_string(), format!("conflict: session {sid}: illegal status transition from PENDING to RUNNING"));
    assert_eq!(repo::get_session(&db, sid).await.unwrap().unwrap(), before, "the row is unchanged");

    let kernel_before = repo::get_kernel(&db, kid).await.unwrap().unwrap();
    let err = repo::set_kernel_status(&db, kid, KernelStatus::Terminated, None, None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("conflict: kernel {kid}: illegal status transition from PENDING to TERMINATED")
    );
    assert_eq!(repo::get_kernel(&db, kid).await.unwrap().unwrap(), kernel_before);

    // Racing the same transition: exactly one applies, the others see SCHEDULED → SCHEDULED.
    let racing = (0..4).map(|_| repo::set_session_status(&db, sid, SessionStatus::Scheduled, None, None));
    let results = futures::future::join_all(racing).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for err in results.into_iter().filter_map(Result::err) {
        assert!(err.to_string().contains("from SCHEDULED to SCHEDULED"), "{err}");
    }

    // Terminal statuses have no way out.
    repo::set_session_status(&db, sid, SessionStatus::Cancelled, Some("user-requested"), None).await.unwrap();
    let err = repo::set_session_status(&db, sid, SessionStatus::Pending, None, None).await.unwrap_err();
    assert!(err.to_string().contains("from CANCELLED to PENDING"), "{err}");
    let err =
        repo::set_session_status(&db, SessionId::new_random(), SessionStatus::Scheduled, None, None).await.unwrap_err();
    assert!(matches!(err, DbError::NotFound { kind: "session", .. }), "{err}");
}

db_test!(status_changes_append_to_the_history);
async fn status_changes_append_to_the_history(db: DatabaseConnection) {
    load_example(&db).await;
    let (sid, kid) = one_session(&db).await;
    let scheduling = json!({"scheduler": {"retries": 1, "failed_predicates": [], "passed_predicates": []}});
    let row = repo::set_session_status(&db, sid, SessionStatus::Scheduled, Some("scheduled"), Some(scheduling.clone()))
        .await
        .unwrap();
    assert_eq!(row.status, Wire(SessionStatus::Scheduled));
    repo::set_session_status(&db, sid, SessionStatus::Preparing, None, None).await.unwrap();
    repo::set_session_status(&db, sid, SessionStatus::Prepared, None, None).await.unwrap();
    // PREPARED → CREATING has no edge in the map; the scheduler sets it directly.
    let err = repo::set_session_status(&db, sid, SessionStatus::Creating, None, None).await.unwrap_err();
    assert!(err.to_string().contains("from PREPARED to CREATING"), "{err}");
    repo::force_session_status(&db, sid, SessionStatus::Creating, None, None).await.unwrap();
    repo::set_session_status(&db, sid, SessionStatus::Running, None, None).await.unwrap();

    let row = repo::get_session(&db, sid).await.unwrap().unwrap();
    let history = row.status_history.as_object().expect("an object");
    let mut keys: Vec<&str> = history.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["CREATING", "PENDING", "PREPARED", "PREPARING", "RUNNING", "SCHEDULED"]);
    let running_at = DateTime::parse_from_rfc3339(history["RUNNING"].as_str().unwrap()).expect("ISO 8601");
    let pending_at = DateTime::parse_from_rfc3339(history["PENDING"].as_str().unwrap()).expect("ISO 8601");
    assert!(running_at > pending_at);
    assert!(history["RUNNING"].as_str().unwrap().ends_with("+00:00"), "{history:?}");
    assert_eq!(row.status_info.as_deref(), Some("scheduled"), "kept when not given");
    assert_eq!(row.status_data, Some(scheduling), "kept when not given");
    assert_eq!(row.terminated_at, None);

    let row = repo::set_session_status(&db, sid, SessionStatus::Terminated, Some("user-requested"), Some(json!({})))
        .await
        .unwrap();
    let stored = repo::get_session(&db, sid).await.unwrap().unwrap();
    assert!(stored.terminated_at.is_some(), "TERMINATED sets terminated_at");
    assert_eq!(stored.status_info.as_deref(), Some("user-requested"));
    assert_eq!(stored.status_data, Some(json!({})));
    assert_eq!(stored.status_history, row.status_history, "the answer is the stored row");

    // Kernels: the same bookkeeping, plus placement.
    load_agent(&db).await;
    repo::set_kernel_status(&db, kid, KernelStatus::Scheduled, Some("scheduled"), None).await.unwrap();
    let placed = repo::assign_kernel_agent(&db, kid, &AgentId::new("i-node01").unwrap()).await.unwrap();
    assert_eq!(placed.agent.as_deref(), Some("i-node01"));
    assert_eq!(placed.agent_addr.as_deref(), Some("tcp://127.0.0.1:6011/i-node01"));
    let k = repo::get_kernel(&db, kid).await.unwrap().unwrap();
    assert_eq!(k.agent, placed.agent);
    assert_eq!(k.scaling_group.as_deref(), Some("default"));
    let mut keys: Vec<String> = k.status_history.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["PENDING", "SCHEDULED"]);
    let s = repo::get_session(&db, sid).await.unwrap().unwrap();
    assert_eq!(s.agent_ids, Some(JsonOf(vec!["i-node01".to_string()])));
    let err = repo::assign_kernel_agent(&db, kid, &AgentId::new("i-ghost").unwrap()).await.unwrap_err();
    assert_eq!(err.to_string(), "no such agent: i-ghost");
}

db_test!(a_session_and_its_main_kernel_in_one_statement);
/// `match_sessions_with_main_kernel` answers what `match_sessions` and the first of
/// `list_kernels_of_session` answer, for every shape of reference.
async fn a_session_and_its_main_kernel_in_one_statement(db: DatabaseConnection) {
    load_example(&db).await;
    let mut ids = Vec::new();
    for (i, (name, ak, owner, n)) in [
        ("one", USER_AK, USER_UUID, 1),
        ("three", USER_AK, USER_UUID, 3),
        ("three", USER_AK, USER_UUID, 2),
        ("three", ADMIN_AK, ADMIN_UUID, 1),
        ("dead", USER_AK, USER_UUID, 1),
        ("aux", USER_AK, USER_UUID, 2),
        ("bare", USER_AK, USER_UUID, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let (mut s, mut k) = new_session(name, ak, owner, at(i as i64), n);
        s.tag = Set(Some(format!("tag-{i}")));
        s.status_data = Set(Some(json!({"why": i})));
        s.last_stat = Set(Some(json!({"cpu_util": {"current": "1.5"}})));
        if name == "aux" {
            // a role that sorts before "main": the main kernel still comes first
            k[1].cluster_role = Set("aux".into());
        }
        k[0].container_id = Set(Some(format!("c{i}")));
        k[0].last_stat = Set(Some(json!({"mem": {"current": "1024"}})));
        k[0].resource_opts = Set(json!({"shmem": "64m"}));
        let (row, _) = repo::insert_session_with_kernels(&db, s, k).await.expect("inserting a session");
        ids.push(row.id);
    }
    repo::force_session_status(&db, SessionId::from_uuid(ids[4]), SessionStatus::Terminated, Some("gone"), None)
        .await
        .unwrap();
    kernel::Entity::delete_many().filter(kernel::Column::SessionId.eq(ids[6])).exec(&db).await.unwrap();

    let mut references: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    references.extend(["one", "three", "dead", "aux", "bare", "nothing", " "].map(String::from));
    references.push(Uuid::new_v4().to_string());
    let mut with_kernels = 0;
    for reference in &references {
        for access_key in [Some(USER_AK), Some(ADMIN_AK), None] {
            for include_dead in [false, true] {
                let combined = repo::match_sessions_with_main_kernel(&db, access_key, reference, include_dead)
                    .await
                    .unwrap_or_else(|e| panic!("{reference} {access_key:?} {include_dead}: {e}"));
                let mut separate = Vec::new();
                for s in repo::match_sessions(&db, access_key, reference, include_dead).await.unwrap() {
                    let main = repo::list_kernels_of_session(&db, SessionId::from_uuid(s.id))
                        .await
                        .unwrap()
                        .into_iter()
                        .next();
                    separate.push((s, main));
                }
                assert_eq!(combined, separate, "{reference} {access_key:?} {include_dead}");
                with_kernels += combined.iter().filter(|(_, k)| k.is_some()).count();
            }
        }
    }
    assert!(with_kernels > 20, "the cases found kernels: {with_kernels}");
    let three = repo::match_sessions_with_main_kernel(&db, Some(USER_AK), "three", false).await.unwrap();
    assert_eq!(three.iter().map(|(s, _)| s.id).collect::<Vec<_>>(), [ids[2], ids[1]], "newest first");
    let aux = repo::match_sessions_with_main_kernel(&db, None, "aux", false).await.unwrap();
    assert_eq!(aux[0].1.as_ref().unwrap().cluster_role, "main");
    let bare = repo::match_sessions_with_main_kernel(&db, None, &ids[6].to_string(), false).await.unwrap();
    assert_eq!((bare.len(), bare[0].1.is_none()), (1, true));
}

async fn load_agent(db: &DatabaseConnection) {
    repo::upsert_agent_from_heartbeat(db, heartbeat("i-node01", 8)).await.unwrap();
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(with_database("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
    assert_eq!(with_database("postgres://u@h:5/postgres?sslmode=disable", "x"), "postgres://u@h:5/x?sslmode=disable");
    assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = db::connect("mysql://localhost/x").await.unwrap_err();
    assert!(err.to_string().starts_with("invalid database url: \"mysql://localhost/x\" is neither"), "{err}");
    let memory = db::connect("sqlite::memory:").await.expect("an in-memory database");
    db::migrate(&memory).await.expect("migrating it");
    load_example(&memory).await;
    assert_eq!(count(&memory, user::Entity).await, 2, "one connection keeps the in-memory database");
}
