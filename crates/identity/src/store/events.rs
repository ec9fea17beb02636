//! The audit log's SQL: appending events in a change's transaction, numbering them once their
//! transactions have ended, reading them by number or by filter, the relay's lease and
//! progress, and the purge.
//!
//! Why numbering is a step of its own: a number taken while writing (a sequence, an
//! autoincrement) follows the order transactions *started* writing, not the order they
//! committed, so a reader following "everything after 41" could pass 42 while 41's
//! transaction was still open and never see it. Instead events are written unnumbered, and the
//! sequencer — one at a time, under the lock of the `event_sequencer` row — numbers those
//! whose transactions have ended (PostgreSQL: the `event_pending` rows whose `txid` is older
//! than the oldest running transaction; SQLite: every committed one after the last numbered,
//! as it has a single writer), in writing order, 1, 2, 3, … without gaps. A reader that sees
//! number N has therefore seen every number below.
//!
//! A number is a narrow `event_numbers` row, inserted once, never an update of the event: the
//! event is written once (see the `event_numbers` migration for what that saves), and readers
//! select and order by the number row's indexes, then read the events by primary key.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, JoinType,
    Order, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, RelationTrait, Statement,
    TransactionTrait,
};
use uuid::Uuid;

use super::entities::{event, event_number};
use super::{Store, StoreError, is_postgres, now};
use crate::domain::error::IdentityError;
use crate::domain::event::{Event, EventType, FieldChange, NewEvent, Origin, Source, Subject};
use crate::domain::ids::AccountId;

/// Which events a reader wants. Every field narrows; `accounts` is the caller's scope.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// The accounts the caller may see (`None`: all).
    pub accounts: Option<HashSet<AccountId>>,
    pub account: Option<AccountId>,
    pub subject: Option<Uuid>,
    pub actor: Option<String>,
    pub event_type: Option<EventType>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// The numbered events this filter selects: account and subject on the number rows
    /// (whose indexes are in sequence order), the rest on the events.
    fn select(&self) -> sea_orm::Select<event::Entity> {
        let mut query = event::Entity::find().join(
            JoinType::InnerJoin,
            event_number::Relation::Event.def().rev(),
        );
        if let Some(accounts) = &self.accounts {
            query =
                query.filter(event_number::Column::AccountId.is_in(accounts.iter().map(|id| id.0)));
        }
        if let Some(account) = self.account {
            query = query.filter(event_number::Column::AccountId.eq(account.0));
        }
        if let Some(subject) = self.subject {
            query = query.filter(event_number::Column::SubjectId.eq(subject));
        }
        if let Some(actor) = &self.actor {
            query = query.filter(event::Column::Actor.eq(actor.as_str()));
        }
        if let Some(event_type) = self.event_type {
            query = query.filter(event::Column::EventType.eq(event_type.as_str()));
        }
        if let Some(since) = self.since {
            query = query.filter(event::Column::OccurredAt.gte(since));
        }
        if let Some(until) = self.until {
            query = query.filter(event::Column::OccurredAt.lt(until));
        }
        query
    }
}

/// The numbering of one sequencer round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbered {
    /// Another replica is numbering now.
    Busy,
    /// This many events were numbered; the log's last number is now `last`.
    Events { count: u64, last: i64 },
}

impl Store {
    /// Appends `events` as made by `origin`, in `txn`: they commit or roll back with the
    /// change they describe.
    pub async fn append_events(
        &self,
        txn: &DatabaseTransaction,
        origin: &Origin,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        self.append_event_sets(txn, &[(origin.clone(), events)])
            .await
    }

    /// Appends each set of events as made by its origin (a batch's items, each with its own
    /// request id), in `txn`, in order.
    pub async fn append_event_sets(
        &self,
        txn: &DatabaseTransaction,
        sets: &[(Origin, Vec<NewEvent>)],
    ) -> Result<(), StoreError> {
        let occurred_at = now();
        let mut rows = Vec::new();
        for (origin, events) in sets {
            for new in events {
                rows.push(event_row(origin, new, occurred_at)?);
            }
        }
        // Within both databases' limits on bound values (13 a row).
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let (mut sql, values) = roster_runtime::db::insert_rows(rows.by_ref().take(500))?;
            if is_postgres(&self.db) {
                // The events wait in event_pending, with this transaction's id and what their
                // number rows need, until the sequencer numbers them: one statement.
                sql = format!(
                    "WITH written AS ({sql} RETURNING insert_id, account_id, subject_id) \
                     INSERT INTO event_pending (insert_id, account_id, subject_id) \
                     SELECT insert_id, account_id, subject_id FROM written"
                );
            }
            txn.execute_raw(roster_runtime::db::statement(txn, &sql, values))
                .await?;
        }
        Ok(())
    }

    /// One sequencer round: numbers up to `limit` events whose transactions have ended, in
    /// writing order, after the log's last number. `Busy` when another replica holds the
    /// sequencer's lock; it will number them.
    pub async fn number_events(&self, limit: u64) -> Result<Numbered, StoreError> {
        let backend = self.db.get_database_backend();
        let postgres = is_postgres(&self.db);
        let waiting = self
            .db
            .query_one_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT 1 AS waiting FROM {} LIMIT 1",
                    waiting_events(postgres)
                ),
            ))
            .await?;
        if waiting.is_none() {
            return Ok(Numbered::Events {
                count: 0,
                last: self.last_sequence().await?,
            });
        }
        let txn = self.begin().await?;
        let lock = if postgres {
            "SELECT last_sequence FROM event_sequencer WHERE id = 1 FOR UPDATE SKIP LOCKED"
        } else {
            "SELECT last_sequence FROM event_sequencer WHERE id = 1"
        };
        let Some(row) = txn
            .query_one_raw(Statement::from_string(backend, lock))
            .await?
        else {
            return Ok(Numbered::Busy);
        };
        let last: i64 = row.try_get("", "last_sequence")?;
        let number = if postgres {
            // Only events of ended transactions: one still open may hold an earlier
            // insert_id. Taking them off event_pending and numbering them is one statement,
            // which reads nothing but event_pending. The picked ids are an array computed
            // once, not a subquery to join: the table is tiny right after it is tidied, and
            // its statistics then say so, which once made the planner re-run the subquery for
            // every row deleted (quadratic in the events waiting).
            format!(
                "WITH picked AS (DELETE FROM event_pending WHERE insert_id = ANY(ARRAY( \
                 SELECT insert_id FROM event_pending \
                 WHERE txid < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY insert_id LIMIT {limit})) RETURNING insert_id, account_id, subject_id) \
                 INSERT INTO event_numbers (sequence, insert_id, account_id, subject_id) \
                 SELECT {last} + ROW_NUMBER() OVER (ORDER BY insert_id), insert_id, \
                 account_id, subject_id FROM picked"
            )
        } else {
            // The write lock is held (an immediate transaction): every event is committed.
            format!(
                "INSERT INTO event_numbers (sequence, insert_id, account_id, subject_id) \
                 SELECT {last} + ROW_NUMBER() OVER (ORDER BY insert_id), insert_id, \
                 account_id, subject_id FROM {} ORDER BY insert_id LIMIT {limit}",
                waiting_events(false)
            )
        };
        let count = txn
            .execute_raw(Statement::from_string(backend, number))
            .await?
            .rows_affected();
        let last = last + count as i64;
        if count > 0 {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                if postgres {
                    "UPDATE event_sequencer SET last_sequence = $1 WHERE id = 1"
                } else {
                    "UPDATE event_sequencer SET last_sequence = ? WHERE id = 1"
                },
                [last.into()],
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(Numbered::Events { count, last })
    }

    /// Frees the space of the waiting events numbered so far (PostgreSQL's `event_pending`,
    /// a queue whose every row is deleted soon after it is written): without it every look for
    /// waiting events reads past all the deleted ones since the table was last vacuumed —
    /// milliseconds per look after a million events where autovacuum is off or behind. A
    /// plain `VACUUM` of a table that holds only what waits: it blocks no writer. SQLite has
    /// no such table.
    pub async fn tidy_waiting_events(&self) -> Result<(), StoreError> {
        if is_postgres(&self.db) {
            self.db.execute_unprepared("VACUUM event_pending").await?;
        }
        Ok(())
    }

    /// The log's last number: every event up to it is readable.
    pub async fn last_sequence(&self) -> Result<i64, StoreError> {
        self.log_number("event_sequencer", "last_sequence").await
    }

    /// `column` of the one row of `table`, a worker's number.
    async fn log_number(&self, table: &str, column: &str) -> Result<i64, StoreError> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT {column} FROM {table} WHERE id = 1"),
            ))
            .await?
            .ok_or_else(|| IdentityError::Corrupt(format!("{table} has no row")))?;
        Ok(row.try_get("", column)?)
    }

    /// Events numbered after `after` up to `upto`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        filter: &EventFilter,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<Event>, StoreError> {
        let query = filter
            .select()
            .filter(event_number::Column::Sequence.gt(after))
            .filter(event_number::Column::Sequence.lte(upto));
        self.events_in_order(query, Order::Asc, limit).await
    }

    /// A page of events, newest first, numbered before `before` (when given).
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Event>, StoreError> {
        let mut query = filter.select();
        if let Some(before) = before {
            query = query.filter(event_number::Column::Sequence.lt(before));
        }
        self.events_in_order(query, Order::Desc, limit).await
    }

    /// Up to `limit` events `query` selects, in sequence `order`.
    ///
    /// The columns are named once in the statement and read by position: the relay reads up to
    /// 500 events a round, and reading them as two models by prefixed names (formatted and
    /// looked up for every column of every row) was a third of its work.
    async fn events_in_order(
        &self,
        query: sea_orm::Select<event::Entity>,
        order: Order,
        limit: u64,
    ) -> Result<Vec<Event>, StoreError> {
        use event::Column;
        let statement = query
            .select_only()
            .columns([
                Column::Id,
                Column::OccurredAt,
                Column::AccountId,
                Column::SubjectType,
                Column::SubjectId,
                Column::EventType,
                Column::Actor,
                Column::Caller,
                Column::Source,
                Column::RequestId,
                Column::TraceId,
                Column::Changes,
            ])
            .column(event_number::Column::Sequence)
            .order_by(event_number::Column::Sequence, order)
            .limit(limit)
            .build(self.db.get_database_backend());
        self.db
            .query_all_raw(statement)
            .await?
            .iter()
            .map(event_of)
            .collect()
    }

    /// Events written but not numbered yet (their transactions are open, or the sequencer is
    /// behind).
    pub async fn unnumbered_events(&self) -> Result<u64, StoreError> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                format!(
                    "SELECT COUNT(*) AS waiting FROM {}",
                    waiting_events(is_postgres(&self.db))
                ),
            ))
            .await?
            .ok_or_else(|| IdentityError::Corrupt("no count of unnumbered events".into()))?;
        let waiting: i64 = row.try_get("", "waiting")?;
        Ok(u64::try_from(waiting).unwrap_or(0))
    }

    /// Takes or renews the relay's lease for `owner` until `until`; the number NATS has
    /// everything up to when this replica holds it, `None` when another replica does.
    pub async fn claim_relay(
        &self,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let backend = self.db.get_database_backend();
        let (claim, read) = if is_postgres(&self.db) {
            (
                "UPDATE event_relay SET owner = $1, lease_until = $2 \
                 WHERE id = 1 AND (owner IS NULL OR owner = $1 OR lease_until < $3)",
                "SELECT published_sequence FROM event_relay WHERE id = 1 AND owner = $1",
            )
        } else {
            (
                "UPDATE event_relay SET owner = ?1, lease_until = ?2 \
                 WHERE id = 1 AND (owner IS NULL OR owner = ?1 OR lease_until < ?3)",
                "SELECT published_sequence FROM event_relay WHERE id = 1 AND owner = ?1",
            )
        };
        let txn = self.db.begin().await?;
        let claimed = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                claim,
                [owner.into(), until.into(), now().into()],
            ))
            .await?
            .rows_affected();
        if claimed == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                read,
                [owner.into()],
            ))
            .await?;
        txn.commit().await?;
        Ok(match row {
            Some(row) => Some(row.try_get("", "published_sequence")?),
            None => None,
        })
    }

    /// Gives the relay's lease up (at shutdown, or when NATS failed), so that another
    /// replica need not wait for it to run out.
    pub async fn release_relay(&self, owner: &str) -> Result<(), StoreError> {
        let sql = if is_postgres(&self.db) {
            "UPDATE event_relay SET owner = NULL, lease_until = NULL WHERE id = 1 AND owner = $1"
        } else {
            "UPDATE event_relay SET owner = NULL, lease_until = NULL WHERE id = 1 AND owner = ?1"
        };
        self.db
            .execute_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                [owner.into()],
            ))
            .await?;
        Ok(())
    }

    /// Records that NATS has every event up to `sequence`, when `owner` still holds the
    /// relay's lease; false when it lost it (the new holder goes on from the stored number).
    pub async fn mark_published(&self, owner: &str, sequence: i64) -> Result<bool, StoreError> {
        let sql = if is_postgres(&self.db) {
            "UPDATE event_relay SET published_sequence = $2 \
             WHERE id = 1 AND owner = $1 AND published_sequence < $2"
        } else {
            "UPDATE event_relay SET published_sequence = ?2 \
             WHERE id = 1 AND owner = ?1 AND published_sequence < ?2"
        };
        let updated = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                [owner.into(), sequence.into()],
            ))
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    /// The number NATS has every event up to.
    pub async fn published_sequence(&self) -> Result<i64, StoreError> {
        self.log_number("event_relay", "published_sequence").await
    }

    /// Deletes up to `limit` numbered events that happened before `cutoff` and are numbered
    /// at most `published` (NATS has them, when events are published), oldest first.
    pub async fn purge_events(
        &self,
        cutoff: DateTime<Utc>,
        published: Option<i64>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let mut oldest = event::Entity::find()
            .join(
                JoinType::InnerJoin,
                event_number::Relation::Event.def().rev(),
            )
            .select_only()
            .column(event_number::Column::Sequence)
            .column(event::Column::InsertId)
            .filter(event::Column::OccurredAt.lt(cutoff));
        if let Some(published) = published {
            oldest = oldest.filter(event_number::Column::Sequence.lte(published));
        }
        let picked: Vec<(i64, i64)> = oldest
            .order_by(event_number::Column::Sequence, Order::Asc)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if picked.is_empty() {
            return Ok(0);
        }
        let (sequences, ids): (Vec<i64>, Vec<i64>) = picked.into_iter().unzip();
        let txn = self.db.begin().await?;
        event_number::Entity::delete_many()
            .filter(event_number::Column::Sequence.is_in(sequences))
            .exec(&txn)
            .await?;
        let deleted = event::Entity::delete_many()
            .filter(event::Column::InsertId.is_in(ids))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(deleted)
    }
}

/// The row of a new event.
pub(super) fn event_row(
    origin: &Origin,
    new: &NewEvent,
    occurred_at: DateTime<Utc>,
) -> Result<event::ActiveModel, StoreError> {
    let changes = serde_json::to_string(&new.changes)
        .map_err(|error| IdentityError::Corrupt(format!("event changes to write: {error}")))?;
    Ok(event::ActiveModel {
        insert_id: sea_orm::ActiveValue::NotSet,
        id: Set(Uuid::now_v7()),
        occurred_at: Set(occurred_at),
        account_id: Set(new.account_id.0),
        subject_type: Set(new.subject.kind().to_owned()),
        subject_id: Set(new.subject.id()),
        event_type: Set(new.event_type.as_str().to_owned()),
        actor: Set(origin.actor.clone()),
        caller: Set(origin.caller.clone()),
        source: Set(origin.source.as_str().to_owned()),
        request_id: Set(origin.request_id.clone()),
        trace_id: Set(origin.trace_id.clone()),
        changes: Set(changes),
    })
}

/// The events waiting for a number, as a `FROM` clause: PostgreSQL's `event_pending`; on
/// SQLite (one writer at a time, so events commit in writing order) the events after the last
/// numbered one — or all of them when every numbered one has been purged.
fn waiting_events(postgres: bool) -> &'static str {
    if postgres {
        "event_pending"
    } else {
        "events WHERE insert_id > COALESCE((SELECT insert_id FROM event_numbers \
         ORDER BY sequence DESC LIMIT 1), 0)"
    }
}

/// The event of a row of [`Store::events_in_order`]'s statement, read by position.
fn event_of(row: &QueryResult) -> Result<Event, StoreError> {
    let corrupt = |what: &str| StoreError::from(IdentityError::Corrupt(format!("event: {what}")));
    let text = |index: usize| row.try_get_by_index::<String>(index);
    let changes: Vec<FieldChange> =
        serde_json::from_str(&text(11)?).map_err(|_| corrupt("changes"))?;
    Ok(Event {
        sequence: row.try_get_by_index(12)?,
        id: row.try_get_by_index(0)?,
        time: row.try_get_by_index(1)?,
        account_id: AccountId(row.try_get_by_index(2)?),
        subject: Subject::from_parts(&text(3)?, row.try_get_by_index(4)?)
            .ok_or_else(|| corrupt("subject type"))?,
        event_type: EventType::from_name(&text(5)?).ok_or_else(|| corrupt("type"))?,
        actor: text(6)?,
        caller: text(7)?,
        source: Source::from_name(&text(8)?).ok_or_else(|| corrupt("source"))?,
        request_id: text(9)?,
        trace_id: text(10)?,
        changes,
    })
}
