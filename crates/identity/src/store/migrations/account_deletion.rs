//! Offboarding: `accounts.deleted_at` (DeleteAccount) and `accounts.purged_at` (its personal
//! data removed after `account_retention_days`); `profiles.purged_at` (a deleted profile's
//! personal data removed after its restore window); `profiles.account_deleted_status`, the
//! status a profile had when its account was deleted (set only while it is), so that
//! UndeleteAccount brings back exactly the profiles the deletion took, each as it was.

use sea_orm_migration::prelude::*;

pub struct AddAccountDeletion;

impl MigrationName for AddAccountDeletion {
    fn name(&self) -> &str {
        "m20261206_000001_account_deletion"
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    DeletedAt,
    PurgedAt,
}

#[derive(DeriveIden)]
enum Profiles {
    Table,
    DeletedAt,
    PurgedAt,
    AccountDeletedStatus,
}

fn nullable_timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for AddAccountDeletion {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [Accounts::DeletedAt, Accounts::PurgedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Accounts::Table)
                        .add_column(nullable_timestamp(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Profiles::Table)
                    .add_column(nullable_timestamp(Profiles::PurgedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Profiles::Table)
                    .add_column(
                        ColumnDef::new(Profiles::AccountDeletedStatus)
                            .string()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The purge looks for profiles not purged yet by deletion time: an index range that
        // purged profiles leave, so a run never walks what earlier runs did.
        manager
            .create_index(
                Index::create()
                    .name("profiles_purge")
                    .table(Profiles::Table)
                    .col(Profiles::PurgedAt)
                    .col(Profiles::DeletedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
