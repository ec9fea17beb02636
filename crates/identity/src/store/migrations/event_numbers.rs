//! The audit log's numbers in a narrow table of their own, `event_numbers`, instead of a
//! column of `events`.
//!
//! Numbering an event used to update its row: a second version of the whole event (its
//! changes included) and an entry in each of its indexes, for every event — the largest
//! single write of a bulk import. Now the sequencer inserts `(sequence, insert_id,
//! account_id, subject_id)`, and the readers' indexes (by account, by subject, in sequence
//! order) are on that narrow row; `events` is written once and keeps only its primary key,
//! the unique event id and the time index.
//!
//! Which events wait for a number: on PostgreSQL, the rows of `event_pending` (written in the
//! event's statement, with its transaction's id and the columns of its number row, and deleted
//! as the sequencer numbers them: the sequencer never reads `events`), since an open
//! transaction may hold an event written before a committed one. SQLite
//! has one writer at a time, so its events commit in writing order and those after the last
//! numbered one are the ones waiting.
//!
//! Existing logs keep their numbers: numbered events move to `event_numbers`, PostgreSQL's
//! unnumbered ones to `event_pending`.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

pub struct NumberEventsApart;

impl MigrationName for NumberEventsApart {
    fn name(&self) -> &str {
        "m20261206_000009_event_numbers"
    }
}

/// Both backends; `{uuid}` is what they spell differently.
const NUMBERS: &str = r#"
CREATE TABLE event_numbers (
    sequence BIGINT PRIMARY KEY,
    insert_id BIGINT NOT NULL,
    account_id {uuid} NOT NULL,
    subject_id {uuid} NOT NULL
);
INSERT INTO event_numbers (sequence, insert_id, account_id, subject_id)
    SELECT sequence, insert_id, account_id, subject_id FROM events WHERE sequence IS NOT NULL;
CREATE INDEX event_numbers_account ON event_numbers (account_id, sequence);
CREATE INDEX event_numbers_subject ON event_numbers (subject_id, sequence);
DROP INDEX events_sequence;
DROP INDEX events_unsequenced;
DROP INDEX events_account;
DROP INDEX events_subject
"#;

/// PostgreSQL's waiting events and the columns `events` no longer needs.
const POSTGRES: &str = r#"
CREATE TABLE event_pending (
    insert_id BIGINT PRIMARY KEY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    account_id UUID NOT NULL,
    subject_id UUID NOT NULL
);
INSERT INTO event_pending (insert_id, txid, account_id, subject_id)
    SELECT insert_id, txid, account_id, subject_id FROM events WHERE sequence IS NULL;
ALTER TABLE events DROP COLUMN sequence;
ALTER TABLE events DROP COLUMN txid
"#;

#[async_trait::async_trait]
impl MigrationTrait for NumberEventsApart {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut sql = NUMBERS.replace(
            "{uuid}",
            if backend == DbBackend::Postgres {
                "UUID"
            } else {
                "TEXT"
            },
        );
        sql.push(';');
        sql.push_str(if backend == DbBackend::Postgres {
            POSTGRES
        } else {
            "ALTER TABLE events DROP COLUMN sequence"
        });
        let connection = manager.get_connection();
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            connection.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
