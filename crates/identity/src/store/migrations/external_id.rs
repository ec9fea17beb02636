//! `profiles.external_id`: what the customer's directory calls each profile (SCIM
//! `externalId`), and an index to find a profile of an account by it.

use sea_orm_migration::prelude::*;

pub struct AddProfileExternalId;

impl MigrationName for AddProfileExternalId {
    fn name(&self) -> &str {
        "m20261205_000005_profile_external_id"
    }
}

#[derive(DeriveIden)]
enum Profiles {
    Table,
    AccountId,
    ExternalId,
}

#[async_trait::async_trait]
impl MigrationTrait for AddProfileExternalId {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Existing profiles have none.
        manager
            .alter_table(
                Table::alter()
                    .table(Profiles::Table)
                    .add_column(ColumnDef::new(Profiles::ExternalId).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profiles_account_external_id")
                    .table(Profiles::Table)
                    .col(Profiles::AccountId)
                    .col(Profiles::ExternalId)
                    .to_owned(),
            )
            .await
    }
}
