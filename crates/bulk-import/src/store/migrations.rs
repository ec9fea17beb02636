//! Bulk-import's schema, one migration per change, applied in order.

use sea_orm_migration::prelude::*;

/// Bulk-import's migrations.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateImportTables),
            Box::new(AddTraceAndWelcome),
            Box::new(IndexUploadsByActivity),
            Box::new(AddFileFormat),
            Box::new(AddRetention),
            Box::new(SeparateOutcomes),
            Box::new(PinApplyBatchSize),
            Box::new(AddClaims),
            Box::new(IndexTakenClaims),
        ]
    }
}

#[derive(DeriveIden)]
enum Imports {
    Table,
    Id,
    AccountId,
    FileName,
    State,
    Encoding,
    Columns,
    FileBytes,
    TotalRowCount,
    CreateCount,
    UpdateCount,
    UnchangedCount,
    ErrorCount,
    AppliedCount,
    FailedCount,
    ErrorMessage,
    RequestKey,
    SubmitRequestId,
    CancelRequestId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    ExpireAt,
    Version,
    TraceContext,
    WelcomeEmails,
    EncodingGiven,
    Delimiter,
    LineEnding,
    ApplyBatchSize,
}

#[derive(DeriveIden)]
enum ImportChunks {
    Table,
    ImportId,
    Seq,
    Data,
}

#[derive(DeriveIden)]
enum ImportRows {
    Table,
    ImportId,
    RowNumber,
    Action,
    ProfileId,
    Claim,
    Cells,
    Changes,
    Errors,
    Notes,
    Outcome,
    OutcomeMessage,
    AppliedBy,
}

#[derive(DeriveIden)]
enum ImportLeases {
    Table,
    ImportId,
    Owner,
    ExpiresAt,
    HeartbeatAt,
    Claims,
}

struct CreateImportTables;

impl MigrationName for CreateImportTables {
    fn name(&self) -> &str {
        "m20261201_000001_create_import_tables"
    }
}

fn count(column: Imports) -> ColumnDef {
    ColumnDef::new(column)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateImportTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Imports::Table)
                    .col(ColumnDef::new(Imports::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Imports::AccountId).uuid().not_null())
                    .col(ColumnDef::new(Imports::FileName).string().not_null())
                    .col(ColumnDef::new(Imports::State).integer().not_null())
                    .col(ColumnDef::new(Imports::Encoding).string().null())
                    .col(ColumnDef::new(Imports::Columns).text().null())
                    .col(count(Imports::FileBytes))
                    .col(count(Imports::TotalRowCount))
                    .col(count(Imports::CreateCount))
                    .col(count(Imports::UpdateCount))
                    .col(count(Imports::UnchangedCount))
                    .col(count(Imports::ErrorCount))
                    .col(count(Imports::AppliedCount))
                    .col(count(Imports::FailedCount))
                    .col(ColumnDef::new(Imports::ErrorMessage).text().not_null())
                    .col(ColumnDef::new(Imports::RequestKey).string().null())
                    .col(ColumnDef::new(Imports::SubmitRequestId).string().null())
                    .col(ColumnDef::new(Imports::CancelRequestId).string().null())
                    .col(ColumnDef::new(Imports::CreatedBy).string().not_null())
                    .col(ColumnDef::new(Imports::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Imports::UpdatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Imports::ExpireAt).big_integer().null())
                    .col(ColumnDef::new(Imports::Version).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("imports_request_key")
                    .table(Imports::Table)
                    .col(Imports::RequestKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("imports_account")
                    .table(Imports::Table)
                    .col(Imports::AccountId)
                    .col(Imports::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("imports_expire_at")
                    .table(Imports::Table)
                    .col(Imports::ExpireAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ImportChunks::Table)
                    .col(ColumnDef::new(ImportChunks::ImportId).uuid().not_null())
                    .col(ColumnDef::new(ImportChunks::Seq).integer().not_null())
                    .col(ColumnDef::new(ImportChunks::Data).blob().not_null())
                    .primary_key(
                        Index::create()
                            .col(ImportChunks::ImportId)
                            .col(ImportChunks::Seq),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ImportRows::Table)
                    .col(ColumnDef::new(ImportRows::ImportId).uuid().not_null())
                    .col(
                        ColumnDef::new(ImportRows::RowNumber)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ImportRows::Action).integer().not_null())
                    .col(ColumnDef::new(ImportRows::ProfileId).string().null())
                    .col(ColumnDef::new(ImportRows::Claim).string().null())
                    .col(ColumnDef::new(ImportRows::Cells).text().not_null())
                    .col(ColumnDef::new(ImportRows::Changes).text().not_null())
                    .col(ColumnDef::new(ImportRows::Errors).text().not_null())
                    .col(ColumnDef::new(ImportRows::Notes).text().not_null())
                    .col(
                        ColumnDef::new(ImportRows::Outcome)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(ImportRows::OutcomeMessage).text().not_null())
                    .col(ColumnDef::new(ImportRows::AppliedBy).string().null())
                    .primary_key(
                        Index::create()
                            .col(ImportRows::ImportId)
                            .col(ImportRows::RowNumber),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "import_rows_action",
                vec![
                    ImportRows::ImportId,
                    ImportRows::Action,
                    ImportRows::RowNumber,
                ],
            ),
            (
                "import_rows_claim",
                vec![ImportRows::ImportId, ImportRows::Claim],
            ),
            (
                "import_rows_profile",
                vec![ImportRows::ImportId, ImportRows::ProfileId],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(ImportRows::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ImportLeases::Table)
                    .col(
                        ColumnDef::new(ImportLeases::ImportId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ImportLeases::Owner).string().null())
                    .col(
                        ColumnDef::new(ImportLeases::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ImportLeases::HeartbeatAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ImportLeases::Claims)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ImportLeases::Table.into_iden(),
            ImportRows::Table.into_iden(),
            ImportChunks::Table.into_iden(),
            Imports::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// The trace an import's background work continues, and whether its new profiles get a
/// welcome email.
struct AddTraceAndWelcome;

impl MigrationName for AddTraceAndWelcome {
    fn name(&self) -> &str {
        "m20261201_000002_import_trace_and_welcome"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddTraceAndWelcome {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Imports::Table)
                    .add_column(
                        ColumnDef::new(Imports::TraceContext)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Imports::Table)
                    .add_column(
                        ColumnDef::new(Imports::WelcomeEmails)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// The sweep of abandoned uploads looks for UPLOADING imports by their last activity, on every
/// replica every sweep interval: an index keeps that from reading every import.
struct IndexUploadsByActivity;

impl MigrationName for IndexUploadsByActivity {
    fn name(&self) -> &str {
        "m20261215_000003_index_uploads_by_activity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IndexUploadsByActivity {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("imports_state_updated_at")
                    .table(Imports::Table)
                    .col(Imports::State)
                    .col(Imports::UpdatedAt)
                    .to_owned(),
            )
            .await
    }
}

/// How the file was read, as GetImport reports it: whether the request named the encoding,
/// and the delimiter and line ends validation found.
struct AddFileFormat;

impl MigrationName for AddFileFormat {
    fn name(&self) -> &str {
        "m20261202_000004_import_file_format"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddFileFormat {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Imports::Table)
                    .add_column(
                        ColumnDef::new(Imports::EncodingGiven)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        for column in [Imports::Delimiter, Imports::LineEnding] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Imports::Table)
                        .add_column(ColumnDef::new(column).string().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Retention: `job_leases` (which replica runs the retention job) and `import_purges`, the
/// imports deleted whose rows and file pieces are still being deleted a batch at a time.
struct AddRetention;

impl MigrationName for AddRetention {
    fn name(&self) -> &str {
        "m20261206_000005_retention"
    }
}

#[derive(DeriveIden)]
enum ImportPurges {
    Table,
    ImportId,
    PurgedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for AddRetention {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        roster_runtime::retention::create_job_leases(manager).await?;
        manager
            .create_table(
                Table::create()
                    .table(ImportPurges::Table)
                    .col(
                        ColumnDef::new(ImportPurges::ImportId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ImportPurges::PurgedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ImportOutcomes {
    Table,
    ImportId,
    RowNumber,
    Outcome,
    Message,
    ProfileId,
    AppliedBy,
}

/// Each row's outcome in a narrow table of its own, `import_outcomes`, inserted once, instead
/// of columns of the staged row: recording an outcome used to write a new version of the whole
/// staged row (its cells, changes and notes) and an entry in each of its four indexes. Outcomes
/// recorded before move over; the columns go.
struct SeparateOutcomes;

impl MigrationName for SeparateOutcomes {
    fn name(&self) -> &str {
        "m20261206_000006_import_outcomes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SeparateOutcomes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ImportOutcomes::Table)
                    .col(ColumnDef::new(ImportOutcomes::ImportId).uuid().not_null())
                    .col(
                        ColumnDef::new(ImportOutcomes::RowNumber)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ImportOutcomes::Outcome).integer().not_null())
                    .col(ColumnDef::new(ImportOutcomes::Message).text().not_null())
                    .col(ColumnDef::new(ImportOutcomes::ProfileId).string().null())
                    .col(ColumnDef::new(ImportOutcomes::AppliedBy).string().null())
                    .primary_key(
                        Index::create()
                            .col(ImportOutcomes::ImportId)
                            .col(ImportOutcomes::RowNumber),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO import_outcomes \
                 (import_id, row_number, outcome, message, profile_id, applied_by) \
                 SELECT import_id, row_number, outcome, outcome_message, profile_id, applied_by \
                 FROM import_rows WHERE outcome <> 0",
            )
            .await?;
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            ImportRows::Outcome,
            ImportRows::OutcomeMessage,
            ImportRows::AppliedBy,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ImportRows::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// `imports.apply_batch_size`: the rows per batch of an import's apply, pinned when it is
/// submitted, so that every replica sends the same windows of rows and identity can keep one
/// answer per window instead of one per row. Imports submitted before keep NULL and their rows
/// their own idempotency keys, which is what identity kept their written rows under.
struct PinApplyBatchSize;

impl MigrationName for PinApplyBatchSize {
    fn name(&self) -> &str {
        "m20261206_000007_import_apply_batch_size"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PinApplyBatchSize {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Imports::Table)
                    .add_column(ColumnDef::new(Imports::ApplyBatchSize).integer().null())
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ImportClaims {
    Table,
    ImportId,
    Kind,
    Value,
    RowNumber,
    Held,
    HolderId,
    HolderUsername,
}

/// `import_claims`: the usernames' skeletons and the extension numbers that staged rows would
/// take (whether the row's profile holds the number already, or which other profile does),
/// one narrow row each, for finding two rows of a file that take the same while the
/// import validates. Its primary key is the index the repeats are found by.
struct AddClaims;

impl MigrationName for AddClaims {
    fn name(&self) -> &str {
        "m20261207_000008_import_claims"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddClaims {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ImportClaims::Table)
                    .col(ColumnDef::new(ImportClaims::ImportId).uuid().not_null())
                    .col(ColumnDef::new(ImportClaims::Kind).integer().not_null())
                    .col(ColumnDef::new(ImportClaims::Value).text().not_null())
                    .col(
                        ColumnDef::new(ImportClaims::RowNumber)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ImportClaims::Held).boolean().not_null())
                    .col(ColumnDef::new(ImportClaims::HolderId).text().null())
                    .col(ColumnDef::new(ImportClaims::HolderUsername).text().null())
                    .primary_key(
                        Index::create()
                            .col(ImportClaims::ImportId)
                            .col(ImportClaims::Kind)
                            .col(ImportClaims::Value)
                            .col(ImportClaims::RowNumber),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// `import_claims_taken`: the extension numbers that rows give while another profile holds
/// them, in row order. Whether such a row is an error depends on the holder's row above it,
/// which may itself be one for a number of its own: they are decided top to bottom, a page at
/// a time from where the last page ended. Partial: only claims of a held number are in it,
/// a few in most files, so staging writes no more than before.
struct IndexTakenClaims;

impl MigrationName for IndexTakenClaims {
    fn name(&self) -> &str {
        "m20261207_000009_index_taken_claims"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IndexTakenClaims {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Both databases take a partial index in the same words.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX import_claims_taken ON import_claims (import_id, row_number, value) \
                 WHERE holder_id IS NOT NULL",
            )
            .await?;
        Ok(())
    }
}
