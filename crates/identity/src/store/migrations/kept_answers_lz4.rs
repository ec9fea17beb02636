//! Kept answers compressed with LZ4 on PostgreSQL.
//!
//! A batch's kept answers are one `idempotency_keys.response` of some hundreds of kilobytes,
//! which PostgreSQL compresses as it stores it out of line. Its default, pglz, is several times
//! slower than LZ4 on these records, and it was the largest part of what writing them cost a
//! bulk import. LZ4 is a column setting (PostgreSQL 14 and later) that applies to values
//! written from now on; values already stored stay as they are and read as before. A server
//! built without LZ4 (or older than 14, where the setting does not exist) keeps pglz. SQLite
//! does not compress and has nothing to change.

use sea_orm::{DbBackend, Statement};
use sea_orm_migration::prelude::*;

pub struct CompressKeptAnswersWithLz4;

impl MigrationName for CompressKeptAnswersWithLz4 {
    fn name(&self) -> &str {
        "m20261206_000010_kept_answers_lz4"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CompressKeptAnswersWithLz4 {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let connection = manager.get_connection();
        let lz4 = connection
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT 1 FROM pg_settings \
                 WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)",
            ))
            .await?
            .is_some();
        if lz4 {
            connection
                .execute_unprepared(
                    "ALTER TABLE idempotency_keys ALTER COLUMN response SET COMPRESSION lz4",
                )
                .await?;
        }
        Ok(())
    }
}
