//! Virtual-folder sharing: `vfolder_permissions` (who, besides the owner, may use a folder and
//! how) and `vfolder_invitations` (offers to share a folder, accepted or rejected by the
//! invitee).
//!
//! Names follow the original's tables and columns. A folder's permission rows and invitations
//! go with the folder; a user's permission rows go with the user.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The sharing migration.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20250102_000002_vfolder_sharing"
    }
}

fn a(name: &str) -> Alias {
    Alias::new(name)
}

/// A foreign key `from_table.from_col → to_table.to_col`, deleted with the row it refers to.
fn fk(from_table: &str, from_col: &str, to_table: &str, to_col: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from_table}_{from_col}_{to_table}"))
        .from(a(from_table), a(from_col))
        .to(a(to_table), a(to_col))
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::Cascade)
        .to_owned()
}

/// `CREATE INDEX IF NOT EXISTS ix_<table>_<cols>`.
fn index(table: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(format!("ix_{table}_{}", cols.join("_"))).table(a(table)).if_not_exists();
    for col in cols {
        index.col(a(col));
    }
    index.to_owned()
}

/// `vfolder_permissions`: one row per (folder, user), the primary key, so a user has at most
/// one permission on a folder.
fn vfolder_permissions() -> TableCreateStatement {
    Table::create()
        .table(a("vfolder_permissions"))
        .if_not_exists()
        .col(uuid(a("vfolder")))
        .col(uuid(a("user")))
        .col(string(a("permission")).default("ro"))
        .primary_key(Index::create().col(a("vfolder")).col(a("user")))
        .foreign_key(&mut fk("vfolder_permissions", "vfolder", "vfolders", "id"))
        .foreign_key(&mut fk("vfolder_permissions", "user", "users", "uuid"))
        .to_owned()
}

/// `vfolder_invitations`: inviter and invitee by e-mail address, as the original stores them.
fn vfolder_invitations() -> TableCreateStatement {
    Table::create()
        .table(a("vfolder_invitations"))
        .if_not_exists()
        .col(uuid(a("id")).primary_key())
        .col(uuid(a("vfolder")))
        .col(string(a("inviter")))
        .col(string(a("invitee")))
        .col(string(a("permission")).default("ro"))
        .col(string(a("state")).default("pending"))
        .col(timestamp_with_time_zone(a("created_at")))
        .col(timestamp_with_time_zone_null(a("modified_at")))
        .foreign_key(&mut fk("vfolder_invitations", "vfolder", "vfolders", "id"))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(vfolder_permissions()).await?;
        manager.create_table(vfolder_invitations()).await?;
        for stmt in [
            index("vfolder_permissions", &["user"]),
            index("vfolder_invitations", &["invitee", "state"]),
            index("vfolder_invitations", &["vfolder"]),
        ] {
            manager.create_index(stmt).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["vfolder_invitations", "vfolder_permissions"] {
            manager.drop_table(Table::drop().table(a(name)).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
