//! The notification service's schema, one migration per change, applied in order.

use sea_orm_migration::prelude::*;

/// The notification service's migrations.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateNotifications),
            Box::new(RetryAndCancel),
            Box::new(AddRetention),
        ]
    }
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    AccountId,
    Recipient,
    Template,
    Locale,
    RequestedLocale,
    Variables,
    AccountDisplayName,
    State,
    Attempts,
    LastError,
    MessageId,
    NextAttemptAt,
    LeaseOwner,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
    SentAt,
    AttemptsBeforeRetry,
}

#[derive(DeriveIden)]
enum NotificationAttempts {
    Table,
    NotificationId,
    Number,
    Worker,
    Outcome,
    SmtpCode,
    Error,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum NotificationRequestKeys {
    Table,
    Scope,
    RequestId,
    NotificationId,
    CreatedAt,
}

struct CreateNotifications;

impl MigrationName for CreateNotifications {
    fn name(&self) -> &str {
        "m20261125_000001_create_notifications"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotifications {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(
                        ColumnDef::new(Notifications::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Notifications::AccountId).uuid().not_null())
                    .col(ColumnDef::new(Notifications::Recipient).string().not_null())
                    .col(ColumnDef::new(Notifications::Template).string().not_null())
                    .col(ColumnDef::new(Notifications::Locale).string().not_null())
                    .col(
                        ColumnDef::new(Notifications::RequestedLocale)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Notifications::Variables).text().not_null())
                    .col(
                        ColumnDef::new(Notifications::AccountDisplayName)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Notifications::State).string().not_null())
                    .col(ColumnDef::new(Notifications::Attempts).integer().not_null())
                    .col(ColumnDef::new(Notifications::LastError).text().null())
                    .col(ColumnDef::new(Notifications::MessageId).string().not_null())
                    .col(optional_timestamp(Notifications::NextAttemptAt))
                    .col(ColumnDef::new(Notifications::LeaseOwner).string().null())
                    .col(optional_timestamp(Notifications::LeaseUntil))
                    .col(timestamp(Notifications::CreatedAt))
                    .col(timestamp(Notifications::UpdatedAt))
                    .col(optional_timestamp(Notifications::SentAt))
                    .to_owned(),
            )
            .await?;
        // Workers look for due messages by state and time: waiting ones by next_attempt_at,
        // SENDING ones whose worker died by lease_until.
        manager
            .create_index(
                Index::create()
                    .name("notifications_due")
                    .table(Notifications::Table)
                    .col(Notifications::State)
                    .col(Notifications::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notifications_lease")
                    .table(Notifications::Table)
                    .col(Notifications::State)
                    .col(Notifications::LeaseUntil)
                    .to_owned(),
            )
            .await?;
        // ListNotifications: an account's notifications, newest first.
        manager
            .create_index(
                Index::create()
                    .name("notifications_account_created")
                    .table(Notifications::Table)
                    .col(Notifications::AccountId)
                    .col(Notifications::CreatedAt)
                    .col(Notifications::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(NotificationAttempts::Table)
                    .col(
                        ColumnDef::new(NotificationAttempts::NotificationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationAttempts::Number)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationAttempts::Worker)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationAttempts::Outcome)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationAttempts::SmtpCode)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(NotificationAttempts::Error).text().null())
                    .col(timestamp(NotificationAttempts::StartedAt))
                    .col(timestamp(NotificationAttempts::FinishedAt))
                    .primary_key(
                        Index::create()
                            .col(NotificationAttempts::NotificationId)
                            .col(NotificationAttempts::Number),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                NotificationAttempts::Table,
                                NotificationAttempts::NotificationId,
                            )
                            .to(Notifications::Table, Notifications::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(NotificationRequestKeys::Table)
                    .col(
                        ColumnDef::new(NotificationRequestKeys::Scope)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationRequestKeys::RequestId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationRequestKeys::NotificationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(timestamp(NotificationRequestKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(NotificationRequestKeys::Scope)
                            .col(NotificationRequestKeys::RequestId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                NotificationRequestKeys::Table,
                                NotificationRequestKeys::NotificationId,
                            )
                            .to(Notifications::Table, Notifications::Id),
                    )
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum NotificationActionKeys {
    Table,
    Scope,
    Operation,
    RequestId,
    NotificationId,
    CreatedAt,
}

/// RetryNotification and CancelNotification: the attempt budget that a retry restarts, and the
/// idempotency keys of both.
struct RetryAndCancel;

impl MigrationName for RetryAndCancel {
    fn name(&self) -> &str {
        "m20261205_000001_retry_and_cancel"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for RetryAndCancel {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Notifications::Table)
                    .add_column(
                        ColumnDef::new(Notifications::AttemptsBeforeRetry)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationActionKeys::Table)
                    .col(
                        ColumnDef::new(NotificationActionKeys::Scope)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationActionKeys::Operation)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationActionKeys::RequestId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotificationActionKeys::NotificationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(timestamp(NotificationActionKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(NotificationActionKeys::Scope)
                            .col(NotificationActionKeys::Operation)
                            .col(NotificationActionKeys::RequestId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                NotificationActionKeys::Table,
                                NotificationActionKeys::NotificationId,
                            )
                            .to(Notifications::Table, Notifications::Id),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// Retention: `job_leases` (which replica runs the retention job); finished notifications
/// found by state and age, and a notification's request and action keys by the notification.
struct AddRetention;

impl MigrationName for AddRetention {
    fn name(&self) -> &str {
        "m20261206_000002_retention"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRetention {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        roster_runtime::retention::create_job_leases(manager).await?;
        manager
            .create_index(
                Index::create()
                    .name("notifications_finished")
                    .table(Notifications::Table)
                    .col(Notifications::State)
                    .col(Notifications::UpdatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notification_request_keys_notification")
                    .table(NotificationRequestKeys::Table)
                    .col(NotificationRequestKeys::NotificationId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notification_action_keys_notification")
                    .table(NotificationActionKeys::Table)
                    .col(NotificationActionKeys::NotificationId)
                    .to_owned(),
            )
            .await
    }
}

fn timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn optional_timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}
