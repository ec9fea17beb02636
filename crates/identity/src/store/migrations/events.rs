//! The audit log: `events`, and the two one-row tables of its workers, `event_sequencer`
//! (the last number given) and `event_relay` (what NATS has, and which replica publishes).
//!
//! Written as SQL per backend: PostgreSQL keeps each event's transaction id (`xid8`), which
//! the sequencer compares with the oldest running transaction so that it numbers only events
//! whose transactions have ended; SQLite has one writer at a time and needs no such column.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

pub struct CreateEventLog;

impl MigrationName for CreateEventLog {
    fn name(&self) -> &str {
        "m20261204_000004_event_log"
    }
}

/// The log's schema; the braces are what the backends spell differently (see [`schema`]).
const SCHEMA: &str = r#"
CREATE TABLE events (
    insert_id {serial},
    sequence BIGINT NULL,{txid}
    id {uuid} NOT NULL UNIQUE,
    occurred_at {time} NOT NULL,
    account_id {uuid} NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id {uuid} NOT NULL,
    event_type TEXT NOT NULL,
    actor TEXT NOT NULL,
    caller TEXT NOT NULL,
    source TEXT NOT NULL,
    request_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    changes TEXT NOT NULL
);
CREATE UNIQUE INDEX events_sequence ON events (sequence);
CREATE INDEX events_unsequenced ON events (insert_id) WHERE sequence IS NULL;
CREATE INDEX events_account ON events (account_id, sequence);
CREATE INDEX events_subject ON events (subject_id, sequence);
CREATE INDEX events_time ON events (occurred_at);
CREATE TABLE event_sequencer (id INTEGER PRIMARY KEY, last_sequence BIGINT NOT NULL);
INSERT INTO event_sequencer (id, last_sequence) VALUES (1, 0);
CREATE TABLE event_relay (
    id INTEGER PRIMARY KEY,
    published_sequence BIGINT NOT NULL,
    owner TEXT NULL,
    lease_until {time} NULL
);
INSERT INTO event_relay (id, published_sequence) VALUES (1, 0);
"#;

/// The schema's SQL on `backend`: PostgreSQL's native types and the writer's transaction id;
/// SQLite's affinities, and an autoincrement that never hands a purged number out again.
fn schema(backend: DbBackend) -> String {
    let (serial, txid, uuid, time) = match backend {
        DbBackend::Postgres => (
            "BIGSERIAL PRIMARY KEY",
            "\n    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),",
            "UUID",
            "TIMESTAMPTZ",
        ),
        _ => ("INTEGER PRIMARY KEY AUTOINCREMENT", "", "TEXT", "TEXT"),
    };
    SCHEMA
        .replace("{serial}", serial)
        .replace("{txid}", txid)
        .replace("{uuid}", uuid)
        .replace("{time}", time)
}

#[async_trait::async_trait]
impl MigrationTrait for CreateEventLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = schema(manager.get_database_backend());
        let connection = manager.get_connection();
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            connection.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
