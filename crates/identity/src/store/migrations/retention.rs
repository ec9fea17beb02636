//! Retention: `job_leases` (which replica runs the retention job), and the indexes by which
//! the job finds what has expired without reading whole tables.

use sea_orm_migration::prelude::*;

pub struct AddRetention;

impl MigrationName for AddRetention {
    fn name(&self) -> &str {
        "m20261206_000008_retention"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRetention {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        roster_runtime::retention::create_job_leases(manager).await?;
        for (name, table, column) in [
            (
                "idempotency_keys_created_at",
                "idempotency_keys",
                "created_at",
            ),
            ("reset_tokens_expires_at", "reset_tokens", "expires_at"),
            (
                "signin_throttle_last_failure_at",
                "signin_throttle",
                "last_failure_at",
            ),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Alias::new(table))
                        .col(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
