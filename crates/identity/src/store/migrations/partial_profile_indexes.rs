//! Two indexes of profiles that held every profile, now only the profiles they are for.
//!
//! `profiles_account_external_id` served lookups by a directory's `externalId`, and
//! `profiles_purge` the purge's look for deleted profiles not purged yet; both held an entry
//! for every profile, most with the same key (no external id; not deleted, not purged). Every
//! profile written added one to each, and concurrent writers (a bulk import's batches in
//! flight) queued for the one page where those equal keys end. They now hold only the
//! profiles with an external id, and the deleted profiles waiting for the purge, in
//! deletion order: every query that used them states their condition (`external_id IS NOT
//! NULL` is implied by each comparison with an external id; the purge asks for `purged_at IS
//! NULL AND status = 'deleted'` ordered by `deleted_at`). Both databases have partial
//! indexes, with the same statements.

use sea_orm_migration::prelude::*;

pub struct PartialProfileIndexes;

impl MigrationName for PartialProfileIndexes {
    fn name(&self) -> &str {
        "m20261206_000011_partial_profile_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PartialProfileIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        for statement in [
            "DROP INDEX profiles_account_external_id",
            "CREATE INDEX profiles_account_external_id ON profiles (account_id, external_id) \
             WHERE external_id IS NOT NULL",
            "DROP INDEX profiles_purge",
            "CREATE INDEX profiles_purge ON profiles (deleted_at) \
             WHERE purged_at IS NULL AND status = 'deleted'",
        ] {
            connection.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
