//! `idempotency_keys.request_digest`: a digest of the whole request whose answer a row keeps.
//!
//! A request id was the only thing a repeat had to match, so the same id sent with another
//! request (another profile, another account) was answered the first request's answer: to a key
//! whose accounts were narrowed since, an answer about an account it may no longer see. A
//! repeat is now answered only when it is the same request; the same id with another request is
//! refused. Rows kept before have no digest and are replayed as before until retention removes
//! them. The batch calls' rows (keyed by bulk-import per row and batch, within the account the
//! call names) keep none.

use sea_orm_migration::prelude::*;

pub struct AddRequestDigest;

impl MigrationName for AddRequestDigest {
    fn name(&self) -> &str {
        "m20261207_000012_request_digest"
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    RequestDigest,
}

#[async_trait::async_trait]
impl MigrationTrait for AddRequestDigest {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(IdempotencyKeys::Table)
                    .add_column(
                        ColumnDef::new(IdempotencyKeys::RequestDigest)
                            .binary()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
