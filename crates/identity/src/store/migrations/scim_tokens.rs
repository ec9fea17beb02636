//! `scim_tokens`: the tokens with which identity providers provision an account's users over
//! SCIM. A secret is kept only as its SHA-256 (hex), unique, which is how a SCIM request finds
//! its token; and as its shown prefix, which tells an account's tokens apart.

use sea_orm_migration::prelude::*;

use super::{Accounts, timestamp};

pub struct CreateScimTokens;

impl MigrationName for CreateScimTokens {
    fn name(&self) -> &str {
        "m20261205_000006_scim_tokens"
    }
}

#[derive(DeriveIden)]
enum ScimTokens {
    Table,
    Id,
    AccountId,
    DisplayName,
    SecretSha256,
    SecretPrefix,
    SendWelcomeEmails,
    CreatedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateScimTokens {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ScimTokens::Table)
                    .col(
                        ColumnDef::new(ScimTokens::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ScimTokens::AccountId).uuid().not_null())
                    .col(ColumnDef::new(ScimTokens::DisplayName).string().not_null())
                    .col(ColumnDef::new(ScimTokens::SecretSha256).string().not_null())
                    .col(ColumnDef::new(ScimTokens::SecretPrefix).string().not_null())
                    .col(
                        ColumnDef::new(ScimTokens::SendWelcomeEmails)
                            .boolean()
                            .not_null(),
                    )
                    .col(timestamp(ScimTokens::CreatedAt))
                    .col(
                        ColumnDef::new(ScimTokens::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ScimTokens::Table, ScimTokens::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("scim_tokens_secret_sha256")
                    .table(ScimTokens::Table)
                    .col(ScimTokens::SecretSha256)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // An account's tokens, newest first, and the count of its active ones.
        manager
            .create_index(
                Index::create()
                    .name("scim_tokens_account")
                    .table(ScimTokens::Table)
                    .col(ScimTokens::AccountId)
                    .col(ScimTokens::Id)
                    .to_owned(),
            )
            .await
    }
}
