//! `deleted_profile_extensions`: the extensions a profile held when it was deleted. Deleting
//! frees the numbers for the account's other profiles; these rows remember them, so that
//! UndeleteProfile can give back each one still free. They exist only while the profile is
//! deleted.

use sea_orm_migration::prelude::*;

pub struct CreateKeptExtensions;

impl MigrationName for CreateKeptExtensions {
    fn name(&self) -> &str {
        "m20261205_000007_deleted_profile_extensions"
    }
}

#[derive(DeriveIden)]
enum DeletedProfileExtensions {
    Table,
    ProfileId,
    Number,
    Kind,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateKeptExtensions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeletedProfileExtensions::Table)
                    .col(
                        ColumnDef::new(DeletedProfileExtensions::ProfileId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeletedProfileExtensions::Number)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeletedProfileExtensions::Kind)
                            .string()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(DeletedProfileExtensions::ProfileId)
                            .col(DeletedProfileExtensions::Number),
                    )
                    .to_owned(),
            )
            .await
    }
}
