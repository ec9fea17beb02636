//! Identity's schema, one migration per change, applied in order. The seed's tables in this
//! file, read top to bottom; each later area in a file of its own. A migration is never edited
//! once released.

mod account_deletion;
mod event_numbers;
mod events;
mod external_id;
mod kept_answers_lz4;
mod kept_extensions;
mod partial_profile_indexes;
mod request_digest;
mod retention;
mod scim_tokens;

use sea_orm_migration::prelude::*;

/// Identity's migrations.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateCoreTables),
            Box::new(CreateCredentialTables),
            Box::new(AddAccountExtensionBounds),
            Box::new(events::CreateEventLog),
            Box::new(external_id::AddProfileExternalId),
            Box::new(scim_tokens::CreateScimTokens),
            Box::new(kept_extensions::CreateKeptExtensions),
            Box::new(account_deletion::AddAccountDeletion),
            Box::new(retention::AddRetention),
            Box::new(event_numbers::NumberEventsApart),
            Box::new(kept_answers_lz4::CompressKeptAnswersWithLz4),
            Box::new(partial_profile_indexes::PartialProfileIndexes),
            Box::new(request_digest::AddRequestDigest),
        ]
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    DisplayName,
    PasswordPolicy,
    CreatedAt,
    UpdatedAt,
    Version,
    ExtensionMinLength,
    ExtensionMaxLength,
}

#[derive(DeriveIden)]
enum Profiles {
    Table,
    Id,
    AccountId,
    FirstName,
    LastName,
    Email,
    EmailSearch,
    Username,
    CanonicalUsername,
    JobTitle,
    Department,
    Locale,
    TimeZone,
    Status,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
    Version,
}

#[derive(DeriveIden)]
enum UsernameRegistry {
    Table,
    Canonical,
    Skeleton,
    Username,
    ProfileId,
    AccountId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Scope,
    RequestId,
    Response,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ProfileRoles {
    Table,
    ProfileId,
    Role,
}

#[derive(DeriveIden)]
enum Extensions {
    Table,
    AccountId,
    Number,
    ProfileId,
    Kind,
    CreatedAt,
}

struct CreateCoreTables;

impl MigrationName for CreateCoreTables {
    fn name(&self) -> &str {
        "m20261125_000001_create_core_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateCoreTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(ColumnDef::new(Accounts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Accounts::DisplayName).string().not_null())
                    .col(ColumnDef::new(Accounts::PasswordPolicy).text().not_null())
                    .col(timestamp(Accounts::CreatedAt))
                    .col(timestamp(Accounts::UpdatedAt))
                    .col(ColumnDef::new(Accounts::Version).big_integer().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Profiles::Table)
                    .col(ColumnDef::new(Profiles::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Profiles::AccountId).uuid().not_null())
                    .col(ColumnDef::new(Profiles::FirstName).string().not_null())
                    .col(ColumnDef::new(Profiles::LastName).string().not_null())
                    .col(ColumnDef::new(Profiles::Email).string().not_null())
                    .col(ColumnDef::new(Profiles::EmailSearch).string().not_null())
                    .col(ColumnDef::new(Profiles::Username).string().not_null())
                    .col(
                        ColumnDef::new(Profiles::CanonicalUsername)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Profiles::JobTitle).string().null())
                    .col(ColumnDef::new(Profiles::Department).string().null())
                    .col(ColumnDef::new(Profiles::Locale).string().null())
                    .col(ColumnDef::new(Profiles::TimeZone).string().null())
                    .col(ColumnDef::new(Profiles::Status).string().not_null())
                    .col(timestamp(Profiles::CreatedAt))
                    .col(timestamp(Profiles::UpdatedAt))
                    .col(
                        ColumnDef::new(Profiles::DeletedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Profiles::Version).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Profiles::Table, Profiles::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profiles_account_id")
                    .table(Profiles::Table)
                    .col(Profiles::AccountId)
                    .col(Profiles::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profiles_account_email")
                    .table(Profiles::Table)
                    .col(Profiles::AccountId)
                    .col(Profiles::EmailSearch)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profiles_canonical_username")
                    .table(Profiles::Table)
                    .col(Profiles::CanonicalUsername)
                    .to_owned(),
            )
            .await?;

        // The username registry: one row per canonical username ever held, never deleted or
        // reassigned. Both unique indexes compare bytes: the canonical form and the UTS #39
        // skeleton are computed by the application, so no database collation is involved.
        manager
            .create_table(
                Table::create()
                    .table(UsernameRegistry::Table)
                    .col(
                        ColumnDef::new(UsernameRegistry::Canonical)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(UsernameRegistry::Skeleton)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UsernameRegistry::Username)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UsernameRegistry::ProfileId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UsernameRegistry::AccountId)
                            .uuid()
                            .not_null(),
                    )
                    .col(timestamp(UsernameRegistry::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("username_registry_skeleton")
                    .table(UsernameRegistry::Table)
                    .col(UsernameRegistry::Skeleton)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(ColumnDef::new(IdempotencyKeys::Scope).string().not_null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::Response)
                            .binary()
                            .not_null(),
                    )
                    .col(timestamp(IdempotencyKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::Scope)
                            .col(IdempotencyKeys::RequestId),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ProfileRoles::Table)
                    .col(ColumnDef::new(ProfileRoles::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(ProfileRoles::Role).string().not_null())
                    .primary_key(
                        Index::create()
                            .col(ProfileRoles::ProfileId)
                            .col(ProfileRoles::Role),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Extensions::Table)
                    .col(ColumnDef::new(Extensions::AccountId).uuid().not_null())
                    .col(ColumnDef::new(Extensions::Number).string().not_null())
                    .col(ColumnDef::new(Extensions::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(Extensions::Kind).string().not_null())
                    .col(timestamp(Extensions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(Extensions::AccountId)
                            .col(Extensions::Number),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("extensions_profile")
                    .table(Extensions::Table)
                    .col(Extensions::ProfileId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    ProfileId,
    Hash,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PasswordHistory {
    Table,
    Id,
    ProfileId,
    Hash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ResetTokens {
    Table,
    TokenHash,
    ProfileId,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Payload,
    Attempts,
    NextAttemptAt,
    LeaseOwner,
    LeaseUntil,
    LastError,
    DeliveredAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SigninThrottle {
    Table,
    Canonical,
    Failures,
    LastFailureAt,
    LockedUntil,
}

struct CreateCredentialTables;

impl MigrationName for CreateCredentialTables {
    fn name(&self) -> &str {
        "m20261125_000002_create_credential_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateCredentialTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .col(
                        ColumnDef::new(Credentials::ProfileId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Credentials::Hash).string().not_null())
                    .col(timestamp(Credentials::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PasswordHistory::Table)
                    .col(
                        ColumnDef::new(PasswordHistory::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(PasswordHistory::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(PasswordHistory::Hash).string().not_null())
                    .col(timestamp(PasswordHistory::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("password_history_profile")
                    .table(PasswordHistory::Table)
                    .col(PasswordHistory::ProfileId)
                    .col(PasswordHistory::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // Reset tokens are stored only as their SHA-256 hash.
        manager
            .create_table(
                Table::create()
                    .table(ResetTokens::Table)
                    .col(
                        ColumnDef::new(ResetTokens::TokenHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ResetTokens::ProfileId).uuid().not_null())
                    .col(timestamp(ResetTokens::ExpiresAt))
                    .col(
                        ColumnDef::new(ResetTokens::UsedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ResetTokens::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(timestamp(ResetTokens::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("reset_tokens_profile")
                    .table(ResetTokens::Table)
                    .col(ResetTokens::ProfileId)
                    .to_owned(),
            )
            .await?;
        // Emails to hand to the notification service, written in the same transaction as the
        // change that causes them (transactional outbox).
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(ColumnDef::new(Outbox::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Outbox::Payload).text().not_null())
                    .col(ColumnDef::new(Outbox::Attempts).integer().not_null())
                    .col(timestamp(Outbox::NextAttemptAt))
                    .col(ColumnDef::new(Outbox::LeaseOwner).string().null())
                    .col(
                        ColumnDef::new(Outbox::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Outbox::LastError).text().null())
                    .col(
                        ColumnDef::new(Outbox::DeliveredAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(timestamp(Outbox::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_pending")
                    .table(Outbox::Table)
                    .col(Outbox::DeliveredAt)
                    .col(Outbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // Failed sign-ins per canonical username (known or not, so the throttle itself reveals
        // nothing about which usernames exist).
        manager
            .create_table(
                Table::create()
                    .table(SigninThrottle::Table)
                    .col(
                        ColumnDef::new(SigninThrottle::Canonical)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SigninThrottle::Failures)
                            .integer()
                            .not_null(),
                    )
                    .col(timestamp(SigninThrottle::LastFailureAt))
                    .col(
                        ColumnDef::new(SigninThrottle::LockedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }
}

struct AddAccountExtensionBounds;

impl MigrationName for AddAccountExtensionBounds {
    fn name(&self) -> &str {
        "m20261125_000003_account_extension_bounds"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddAccountExtensionBounds {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time. Existing accounts get
        // the defaults (2 to 8 digits).
        for (column, default) in [
            (Accounts::ExtensionMinLength, 2),
            (Accounts::ExtensionMaxLength, 8),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Accounts::Table)
                        .add_column(ColumnDef::new(column).integer().not_null().default(default))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

fn timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}
