//! The initial schema: organisations, credentials and policies, scaling groups, agents,
//! sessions and kernels, images, presets and virtual folders.
//!
//! Names follow the original's tables and columns. Rust-side defaults live in
//! [`crate::db::entities::FillDefaults`]; the SQL defaults here cover rows written by hand.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The initial migration.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20250101_000001_initial"
    }
}

fn a(name: &str) -> Alias {
    Alias::new(name)
}

/// A `CREATE TABLE IF NOT EXISTS`.
fn table(name: &str) -> TableCreateStatement {
    Table::create().table(a(name)).if_not_exists().to_owned()
}

/// A foreign key `from_table.from_col → to_table.to_col`.
fn fk(
    from_table: &str,
    from_col: &str,
    to_table: &str,
    to_col: &str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from_table}_{from_col}_{to_table}"))
        .from(a(from_table), a(from_col))
        .to(a(to_table), a(to_col))
        .on_delete(on_delete)
        .on_update(ForeignKeyAction::Cascade)
        .to_owned()
}

/// A composite primary key.
fn pk(cols: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    for col in cols {
        index.col(a(col));
    }
    index.to_owned()
}

/// `CREATE [UNIQUE] INDEX IF NOT EXISTS ix_<table>_<cols>`.
fn index(table: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(format!("ix_{table}_{}", cols.join("_"))).table(a(table)).if_not_exists();
    for col in cols {
        index.col(a(col));
    }
    if unique {
        index.unique();
    }
    index.to_owned()
}

fn created_at() -> ColumnDef {
    timestamp_with_time_zone(a("created_at"))
}

fn json_object(name: &str) -> ColumnDef {
    json_binary(a(name)).default("{}").to_owned()
}

fn json_array(name: &str) -> ColumnDef {
    json_binary(a(name)).default("[]").to_owned()
}

fn flag(name: &str, default: bool) -> ColumnDef {
    boolean(a(name)).default(default).to_owned()
}

fn int(name: &str, default: i32) -> ColumnDef {
    integer(a(name)).default(default).to_owned()
}

fn bigint(name: &str, default: i64) -> ColumnDef {
    big_integer(a(name)).default(default).to_owned()
}

use ForeignKeyAction::{Cascade, NoAction, SetNull};

fn keypair_resource_policies() -> TableCreateStatement {
    table("keypair_resource_policies")
        .col(string(a("name")).primary_key())
        .col(created_at())
        .col(string(a("default_for_unspecified")).default("UNLIMITED"))
        .col(json_object("total_resource_slots"))
        .col(int("max_session_lifetime", 0))
        .col(int("max_concurrent_sessions", 0))
        .col(int("max_concurrent_sftp_sessions", 1))
        .col(integer_null(a("max_pending_session_count")))
        .col(json_binary_null(a("max_pending_session_resource_slots")))
        .col(int("max_containers_per_session", 1))
        .col(bigint("idle_timeout", 0))
        .col(json_object("allowed_vfolder_hosts"))
        .col(int("max_vfolder_count", 0))
        .col(bigint("max_vfolder_size", 0))
        .col(bigint("max_quota_scope_size", -1))
        .to_owned()
}

fn user_resource_policies() -> TableCreateStatement {
    table("user_resource_policies")
        .col(string(a("name")).primary_key())
        .col(created_at())
        .col(int("max_vfolder_count", 0))
        .col(bigint("max_quota_scope_size", -1))
        .col(int("max_session_count_per_model_session", 10))
        .col(int("max_customized_image_count", 3))
        .to_owned()
}

fn project_resource_policies() -> TableCreateStatement {
    table("project_resource_policies")
        .col(string(a("name")).primary_key())
        .col(created_at())
        .col(int("max_vfolder_count", 0))
        .col(bigint("max_quota_scope_size", -1))
        .col(int("max_network_count", 3))
        .to_owned()
}

fn domains() -> TableCreateStatement {
    table("domains")
        .col(string(a("name")).primary_key())
        .col(text_null(a("description")))
        .col(flag("is_active", true))
        .col(created_at())
        .col(timestamp_with_time_zone(a("modified_at")))
        .col(json_object("total_resource_slots"))
        .col(json_object("allowed_vfolder_hosts"))
        .col(json_array("allowed_docker_registries"))
        .col(string_null(a("integration_id")))
        .to_owned()
}

fn scaling_groups() -> TableCreateStatement {
    table("scaling_groups")
        .col(string(a("name")).primary_key())
        .col(text_null(a("description")))
        .col(flag("is_active", true))
        .col(flag("is_public", true))
        .col(created_at())
        .col(string_null(a("wsproxy_addr")))
        .col(string_null(a("wsproxy_api_token")))
        .col(string(a("driver")).default("static"))
        .col(json_object("driver_opts"))
        .col(string(a("scheduler")).default("fifo"))
        .col(json_object("scheduler_opts"))
        .col(flag("use_host_network", false))
        .to_owned()
}

fn groups() -> TableCreateStatement {
    table("groups")
        .col(uuid(a("id")).primary_key())
        .col(string(a("name")))
        .col(text_null(a("description")))
        .col(flag("is_active", true))
        .col(created_at())
        .col(timestamp_with_time_zone(a("modified_at")))
        .col(string_null(a("integration_id")))
        .col(string(a("domain_name")))
        .col(json_object("total_resource_slots"))
        .col(json_object("allowed_vfolder_hosts"))
        .col(string(a("resource_policy")).default("default"))
        .col(string(a("type")).default("general"))
        .foreign_key(&mut fk("groups", "domain_name", "domains", "name", Cascade))
        .foreign_key(&mut fk("groups", "resource_policy", "project_resource_policies", "name", NoAction))
        .to_owned()
}

fn users() -> TableCreateStatement {
    table("users")
        .col(uuid(a("uuid")).primary_key())
        .col(string_null(a("username")))
        .col(string(a("email")))
        .col(string_null(a("password")))
        .col(flag("need_password_change", false))
        .col(timestamp_with_time_zone_null(a("password_changed_at")))
        .col(string_null(a("full_name")))
        .col(text_null(a("description")))
        .col(string(a("status")).default("active"))
        .col(text_null(a("status_info")))
        .col(created_at())
        .col(timestamp_with_time_zone(a("modified_at")))
        .col(string(a("domain_name")))
        .col(string(a("role")).default("user"))
        .col(string(a("resource_policy")).default("default"))
        .col(json_binary_null(a("allowed_client_ip")))
        .col(flag("totp_activated", false))
        .col(flag("sudo_session_enabled", false))
        // No foreign key: users and keypairs would refer to each other.
        .col(string_null(a("main_access_key")))
        .foreign_key(&mut fk("users", "domain_name", "domains", "name", Cascade))
        .foreign_key(&mut fk("users", "resource_policy", "user_resource_policies", "name", NoAction))
        .to_owned()
}

fn association_groups_users() -> TableCreateStatement {
    table("association_groups_users")
        .col(uuid(a("user_id")))
        .col(uuid(a("group_id")))
        .primary_key(&mut pk(&["user_id", "group_id"]))
        .foreign_key(&mut fk("association_groups_users", "user_id", "users", "uuid", Cascade))
        .foreign_key(&mut fk("association_groups_users", "group_id", "groups", "id", Cascade))
        .to_owned()
}

fn keypairs() -> TableCreateStatement {
    table("keypairs")
        .col(string(a("access_key")).primary_key())
        .col(string(a("secret_key")))
        .col(string(a("user_id")))
        .col(uuid(a("user")))
        .col(flag("is_active", true))
        .col(flag("is_admin", false))
        .col(created_at())
        .col(timestamp_with_time_zone(a("modified_at")))
        .col(timestamp_with_time_zone_null(a("last_used")))
        .col(int("rate_limit", 30_000))
        .col(bigint("num_queries", 0))
        .col(string(a("resource_policy")).default("default"))
        .col(text_null(a("ssh_public_key")))
        .col(text_null(a("ssh_private_key")))
        .foreign_key(&mut fk("keypairs", "user", "users", "uuid", Cascade))
        .foreign_key(&mut fk("keypairs", "resource_policy", "keypair_resource_policies", "name", NoAction))
        .to_owned()
}

fn sgroups_for(name: &str, col: ColumnDef, target: &str, target_col: &str) -> TableCreateStatement {
    let col_name = col.get_column_name();
    table(name)
        .col(string(a("scaling_group")))
        .col(col)
        .primary_key(&mut pk(&["scaling_group", &col_name]))
        .foreign_key(&mut fk(name, "scaling_group", "scaling_groups", "name", Cascade))
        .foreign_key(&mut fk(name, &col_name, target, target_col, Cascade))
        .to_owned()
}

fn agents() -> TableCreateStatement {
    table("agents")
        .col(string(a("id")).primary_key())
        .col(string(a("status")).default("ALIVE"))
        .col(timestamp_with_time_zone_null(a("status_changed")))
        .col(string(a("region")))
        .col(string(a("scaling_group")).default("default"))
        .col(flag("schedulable", true))
        .col(json_object("available_slots"))
        .col(json_object("occupied_slots"))
        .col(string(a("addr")))
        .col(string_null(a("public_host")))
        .col(text_null(a("public_key")))
        .col(timestamp_with_time_zone(a("first_contact")))
        .col(timestamp_with_time_zone_null(a("lost_at")))
        .col(string(a("version")))
        .col(string(a("architecture")).default("x86_64"))
        .col(json_object("compute_plugins"))
        .col(flag("auto_terminate_abusing_kernel", false))
        .foreign_key(&mut fk("agents", "scaling_group", "scaling_groups", "name", NoAction))
        .to_owned()
}

fn images() -> TableCreateStatement {
    table("images")
        .col(uuid(a("id")).primary_key())
        .col(string(a("name")))
        .col(string(a("image")))
        .col(string_null(a("project")))
        .col(string_null(a("tag")))
        .col(string(a("registry")))
        .col(string(a("architecture")).default("x86_64"))
        .col(string(a("config_digest")))
        .col(bigint("size_bytes", 0))
        .col(string(a("type")).default("compute"))
        .col(string_null(a("accelerators")))
        .col(json_object("labels"))
        .col(json_object("resources"))
        .col(flag("is_local", false))
        .col(created_at())
        .to_owned()
}

fn image_aliases() -> TableCreateStatement {
    table("image_aliases")
        .col(uuid(a("id")).primary_key())
        .col(string(a("alias")))
        .col(uuid(a("image")))
        .foreign_key(&mut fk("image_aliases", "image", "images", "id", Cascade))
        .to_owned()
}

fn resource_presets() -> TableCreateStatement {
    table("resource_presets")
        .col(string(a("name")).primary_key())
        .col(json_object("resource_slots"))
        .col(big_integer_null(a("shared_memory")))
        .col(string_null(a("scaling_group_name")))
        .foreign_key(&mut fk("resource_presets", "scaling_group_name", "scaling_groups", "name", Cascade))
        .to_owned()
}

fn sessions() -> TableCreateStatement {
    table("sessions")
        .col(uuid(a("id")).primary_key())
        .col(string_null(a("creation_id")))
        .col(string(a("name")))
        .col(string(a("session_type")).default("interactive"))
        .col(int("priority", 10))
        .col(string(a("cluster_mode")).default("single-node"))
        .col(int("cluster_size", 1))
        .col(json_binary_null(a("agent_ids")))
        .col(string_null(a("scaling_group_name")))
        .col(json_array("target_sgroup_names"))
        .col(string(a("domain_name")))
        .col(uuid(a("group_id")))
        .col(uuid(a("user_uuid")))
        .col(string_null(a("access_key")))
        .col(json_array("images"))
        .col(string_null(a("tag")))
        .col(json_object("occupying_slots"))
        .col(json_object("requested_slots"))
        .col(json_binary_null(a("vfolder_mounts")))
        .col(json_object("environ"))
        .col(text_null(a("bootstrap_script")))
        .col(flag("use_host_network", false))
        .col(big_integer_null(a("timeout")))
        .col(big_integer_null(a("batch_timeout")))
        .col(created_at())
        .col(timestamp_with_time_zone_null(a("terminated_at")))
        .col(timestamp_with_time_zone_null(a("starts_at")))
        .col(string(a("status")).default("PENDING"))
        .col(timestamp_with_time_zone_null(a("status_changed")))
        .col(text_null(a("status_info")))
        .col(json_binary_null(a("status_data")))
        .col(json_object("status_history"))
        .col(text_null(a("callback_url")))
        .col(text_null(a("startup_command")))
        .col(string(a("result")).default("undefined"))
        .col(bigint("num_queries", 0))
        .col(json_binary_null(a("last_stat")))
        .foreign_key(&mut fk("sessions", "scaling_group_name", "scaling_groups", "name", NoAction))
        .foreign_key(&mut fk("sessions", "domain_name", "domains", "name", NoAction))
        .foreign_key(&mut fk("sessions", "group_id", "groups", "id", NoAction))
        .foreign_key(&mut fk("sessions", "user_uuid", "users", "uuid", NoAction))
        .foreign_key(&mut fk("sessions", "access_key", "keypairs", "access_key", SetNull))
        .to_owned()
}

fn session_dependencies() -> TableCreateStatement {
    table("session_dependencies")
        .col(uuid(a("session_id")))
        .col(uuid(a("depends_on")))
        .primary_key(&mut pk(&["session_id", "depends_on"]))
        .foreign_key(&mut fk("session_dependencies", "session_id", "sessions", "id", Cascade))
        .foreign_key(&mut fk("session_dependencies", "depends_on", "sessions", "id", Cascade))
        .to_owned()
}

fn kernels() -> TableCreateStatement {
    table("kernels")
        .col(uuid(a("id")).primary_key())
        .col(uuid(a("session_id")))
        .col(string_null(a("session_creation_id")))
        .col(string_null(a("session_name")))
        .col(string(a("session_type")).default("interactive"))
        .col(string(a("cluster_mode")).default("single-node"))
        .col(int("cluster_size", 1))
        .col(string(a("cluster_role")).default("main"))
        .col(int("cluster_idx", 1))
        .col(int("local_rank", 0))
        .col(string(a("cluster_hostname")))
        .col(string_null(a("scaling_group")))
        .col(string_null(a("agent")))
        .col(string_null(a("agent_addr")))
        .col(string(a("domain_name")))
        .col(uuid(a("group_id")))
        .col(uuid(a("user_uuid")))
        .col(string_null(a("access_key")))
        .col(string_null(a("image")))
        .col(string(a("architecture")).default("x86_64"))
        .col(string_null(a("registry")))
        .col(string_null(a("tag")))
        .col(string_null(a("container_id")))
        .col(json_object("occupied_slots"))
        .col(json_object("requested_slots"))
        .col(json_object("occupied_shares"))
        .col(json_binary_null(a("environ")))
        .col(json_object("attached_devices"))
        .col(json_object("resource_opts"))
        .col(json_binary_null(a("vfolder_mounts")))
        .col(text_null(a("bootstrap_script")))
        .col(string_null(a("kernel_host")))
        .col(int("repl_in_port", 0))
        .col(int("repl_out_port", 0))
        .col(int("stdin_port", 0))
        .col(int("stdout_port", 0))
        .col(json_binary_null(a("service_ports")))
        .col(json_binary_null(a("preopen_ports")))
        .col(flag("use_host_network", false))
        .col(created_at())
        .col(timestamp_with_time_zone_null(a("terminated_at")))
        .col(timestamp_with_time_zone_null(a("starts_at")))
        .col(string(a("status")).default("PENDING"))
        .col(timestamp_with_time_zone_null(a("status_changed")))
        .col(text_null(a("status_info")))
        .col(json_binary_null(a("status_data")))
        .col(json_object("status_history"))
        .col(text_null(a("startup_command")))
        .col(string(a("result")).default("undefined"))
        .col(json_binary_null(a("internal_data")))
        .col(bigint("num_queries", 0))
        .col(json_binary_null(a("last_stat")))
        .col(integer_null(a("exit_code")))
        .foreign_key(&mut fk("kernels", "session_id", "sessions", "id", Cascade))
        .foreign_key(&mut fk("kernels", "agent", "agents", "id", NoAction))
        .foreign_key(&mut fk("kernels", "domain_name", "domains", "name", NoAction))
        .foreign_key(&mut fk("kernels", "group_id", "groups", "id", NoAction))
        .foreign_key(&mut fk("kernels", "user_uuid", "users", "uuid", NoAction))
        .foreign_key(&mut fk("kernels", "access_key", "keypairs", "access_key", SetNull))
        .to_owned()
}

fn vfolders() -> TableCreateStatement {
    table("vfolders")
        .col(uuid(a("id")).primary_key())
        .col(string(a("host")))
        .col(string_null(a("quota_scope_id")))
        .col(string(a("name")))
        .col(string(a("usage_mode")).default("general"))
        .col(string(a("permission")).default("rw"))
        .col(int("max_files", 0))
        .col(big_integer_null(a("max_size")))
        .col(int("num_files", 0))
        .col(bigint("cur_size", 0))
        .col(created_at())
        .col(timestamp_with_time_zone_null(a("last_used")))
        .col(string_null(a("creator")))
        .col(text_null(a("unmanaged_path")))
        .col(string(a("ownership_type")).default("user"))
        .col(uuid_null(a("user")))
        .col(uuid_null(a("group")))
        .col(flag("cloneable", false))
        .col(string(a("status")).default("ready"))
        .foreign_key(&mut fk("vfolders", "user", "users", "uuid", Cascade))
        .foreign_key(&mut fk("vfolders", "group", "groups", "id", Cascade))
        .to_owned()
}

/// Every table, referenced tables first.
fn tables() -> Vec<(&'static str, TableCreateStatement)> {
    vec![
        ("keypair_resource_policies", keypair_resource_policies()),
        ("user_resource_policies", user_resource_policies()),
        ("project_resource_policies", project_resource_policies()),
        ("domains", domains()),
        ("scaling_groups", scaling_groups()),
        ("groups", groups()),
        ("users", users()),
        ("association_groups_users", association_groups_users()),
        ("keypairs", keypairs()),
        ("sgroups_for_domains", sgroups_for("sgroups_for_domains", string(a("domain")), "domains", "name")),
        ("sgroups_for_groups", sgroups_for("sgroups_for_groups", uuid(a("group")), "groups", "id")),
        (
            "sgroups_for_keypairs",
            sgroups_for("sgroups_for_keypairs", string(a("access_key")), "keypairs", "access_key"),
        ),
        ("agents", agents()),
        ("images", images()),
        ("image_aliases", image_aliases()),
        ("resource_presets", resource_presets()),
        ("sessions", sessions()),
        ("session_dependencies", session_dependencies()),
        ("kernels", kernels()),
        ("vfolders", vfolders()),
    ]
}

/// Every index: the lookups the manager makes, plus the unique keys.
fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        index("groups", &["domain_name", "name"], true),
        index("users", &["email"], true),
        index("users", &["username"], true),
        index("users", &["domain_name"], false),
        index("keypairs", &["user"], false),
        index("agents", &["status"], false),
        index("agents", &["scaling_group"], false),
        index("images", &["name", "architecture"], true),
        index("image_aliases", &["alias"], true),
        index("sessions", &["status"], false),
        index("sessions", &["access_key"], false),
        index("sessions", &["name"], false),
        index("sessions", &["scaling_group_name", "status"], false),
        index("sessions", &["created_at"], false),
        index("kernels", &["session_id"], false),
        index("kernels", &["agent"], false),
        index("kernels", &["status"], false),
        index("kernels", &["access_key"], false),
        index("vfolders", &["user"], false),
        index("vfolders", &["group"], false),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (_, stmt) in tables() {
            manager.create_table(stmt).await?;
        }
        for stmt in indexes() {
            manager.create_index(stmt).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in tables().into_iter().rev() {
            manager.drop_table(Table::drop().table(a(name)).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
