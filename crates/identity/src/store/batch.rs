//! Set-based statements for batch calls: a batch of up to 1,000 profiles costs a handful of
//! statements, not a round trip per row.

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, OnConflict, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

use super::Store;
use super::StoreError;
use super::entities::{idempotency_key, profile, username_registry};
use super::profiles::model_of;
use super::registry::registry_row;
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::Profile;
use crate::domain::username::Username;

/// Rows per multi-row statement: a 500-row batch is one statement per table, and a profile
/// insert (22 values a row) stays below SQLite's and PostgreSQL's bind-parameter caps (32,766
/// and 65,535).
const CHUNK: usize = 500;

impl Store {
    /// The stored responses of the keys under `scope` that were answered before.
    ///
    /// Each wanted (scope, key) pair is looked up by a correlated subquery of its own, which
    /// neither database can run as anything but a primary-key probe, whatever it knows or
    /// believes of the table's size. The shapes tried before were planned from estimates:
    /// `scope = $1 AND request_id IN (…)`, on a young table without statistics, as a scan of
    /// every key of the scope (every key of one caller's batches shares it), and a join of the
    /// pairs given as `VALUES` as a hash join over a sequential scan of the whole table once the
    /// 200 probes were estimated dearer than one scan — 10 to 60 ms per lookup during a
    /// 100,000-row import, growing with every row, where the probes take 0.3 ms.
    pub async fn stored_responses(
        &self,
        conn: &impl ConnectionTrait,
        scope: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        use sea_orm::FromQueryResult;

        #[derive(FromQueryResult)]
        struct Stored {
            request_id: String,
            response: Option<Vec<u8>>,
        }
        let mut stored = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let rows = (0..chunk.len())
                .map(|index| format!("(${})", index + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT wanted.column1 AS request_id, \
                 (SELECT k.response FROM idempotency_keys k \
                 WHERE k.scope = $1 AND k.request_id = wanted.column1) AS response \
                 FROM (VALUES {rows}) AS wanted"
            );
            let values = std::iter::once(scope.to_owned())
                .chain(chunk.iter().cloned())
                .map(sea_orm::Value::from)
                .collect();
            let statement = roster_runtime::db::statement(conn, &sql, values);
            for row in Stored::find_by_statement(statement).all(conn).await? {
                if let Some(response) = row.response {
                    stored.insert(row.request_id, response);
                }
            }
        }
        Ok(stored)
    }

    /// Records responses under `scope`; keys recorded already are left as they are.
    pub async fn store_responses(
        &self,
        txn: &DatabaseTransaction,
        scope: &str,
        responses: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let now = crate::store::now();
        for chunk in responses.chunks(CHUNK) {
            let rows = chunk
                .iter()
                .map(|(key, response)| idempotency_key::ActiveModel {
                    scope: sea_orm::ActiveValue::Set(scope.to_owned()),
                    request_id: sea_orm::ActiveValue::Set(key.clone()),
                    response: sea_orm::ActiveValue::Set(response.clone()),
                    created_at: sea_orm::ActiveValue::Set(now),
                    // A batch's records are keyed per row and batch by the caller, within
                    // the account the call names; they keep no digest.
                    request_digest: sea_orm::ActiveValue::NotSet,
                });
            idempotency_key::Entity::insert_many(rows)
                .on_conflict(OnConflict::new().do_nothing().to_owned())
                .exec_without_returning(txn)
                .await?;
        }
        Ok(())
    }

    /// The answers kept for a whole batch under `(scope, request_id)`, if it was answered
    /// before. On PostgreSQL the record stays locked until the transaction ends, so that two
    /// concurrent repeats of a batch add their answers to it one after the other.
    pub async fn batch_answers(
        &self,
        txn: &DatabaseTransaction,
        scope: &str,
        request_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut query =
            idempotency_key::Entity::find_by_id((scope.to_owned(), request_id.to_owned()));
        if crate::store::is_postgres(txn) {
            query = query.lock_exclusive();
        }
        Ok(query.one(txn).await?.map(|row| row.response))
    }

    /// Keeps a batch's answers under `(scope, request_id)`: replaces the record that
    /// [`Store::batch_answers`] found (and locked) when `existed`, or inserts it. False when
    /// the insert found a record kept meanwhile by a concurrent twin of the call.
    pub async fn keep_batch_answers(
        &self,
        txn: &DatabaseTransaction,
        scope: &str,
        request_id: &str,
        response: Vec<u8>,
        existed: bool,
    ) -> Result<bool, StoreError> {
        if !existed {
            // A batch's record keeps no digest: its items are keyed one by one.
            return self
                .keep_response(txn, scope, request_id, None, response)
                .await;
        }
        let updated = idempotency_key::Entity::update_many()
            .col_expr(idempotency_key::Column::Response, Expr::value(response))
            .filter(idempotency_key::Column::Scope.eq(scope))
            .filter(idempotency_key::Column::RequestId.eq(request_id))
            .exec(txn)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// The profiles among `ids` that belong to `accounts` (`None`: to any account), locked
    /// for update until the transaction ends (PostgreSQL; SQLite serialises writers anyway).
    ///
    /// The accounts are part of the statement, so a caller never locks — and so never holds
    /// up — a profile of an account it may not act on, whatever ids it names.
    pub async fn lock_profiles(
        &self,
        txn: &DatabaseTransaction,
        ids: &[ProfileId],
        accounts: Option<&HashSet<AccountId>>,
    ) -> Result<Vec<Profile>, StoreError> {
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut query = profile::Entity::find()
                .filter(profile::Column::Id.is_in(chunk.iter().map(|id| id.0)));
            if let Some(accounts) = accounts {
                query =
                    query.filter(profile::Column::AccountId.is_in(accounts.iter().map(|id| id.0)));
            }
            if crate::store::is_postgres(txn) {
                query = query.lock_exclusive();
            }
            let models = query.all(txn).await?;
            records.extend(self.with_assignments(txn, models).await?);
        }
        Ok(records)
    }

    /// Registers many usernames at once; returns the canonical forms that were registered.
    /// The others were registered by someone else first (possibly a concurrent transaction).
    pub async fn reserve_usernames(
        &self,
        txn: &DatabaseTransaction,
        account_id: AccountId,
        usernames: &[(&Username, ProfileId)],
    ) -> Result<HashSet<String>, StoreError> {
        let mut registered = HashSet::new();
        for chunk in usernames.chunks(CHUNK) {
            let rows = chunk
                .iter()
                .map(|(username, profile_id)| registry_row(username, *profile_id, account_id));
            let result = username_registry::Entity::insert_many(rows)
                .on_conflict(OnConflict::new().do_nothing().to_owned())
                .try_insert()
                .exec_with_returning_many(txn)
                .await?;
            if let TryInsertResult::Inserted(models) = result {
                registered.extend(models.into_iter().map(|model| model.canonical));
            }
        }
        Ok(registered)
    }

    /// Registers every one of `usernames`, or none: true when all were registered; false when
    /// the insert failed — normally because one was registered before (by anyone, possibly a
    /// concurrent transaction) — and then nothing of it is kept (a savepoint is rolled back).
    /// A plain multi-row `INSERT`, without `ON CONFLICT` or `RETURNING`: the cheapest way to
    /// register a batch in which every username is free, the common case of an import.
    pub async fn reserve_all_usernames(
        &self,
        txn: &DatabaseTransaction,
        account_id: AccountId,
        usernames: &[(&Username, ProfileId)],
    ) -> Result<bool, StoreError> {
        if usernames.is_empty() {
            return Ok(true);
        }
        let savepoint = txn.begin().await?;
        let inserted: Result<(), sea_orm::DbErr> = async {
            for chunk in usernames.chunks(CHUNK) {
                let (sql, values) =
                    roster_runtime::db::insert_rows(chunk.iter().map(|(username, profile_id)| {
                        registry_row(username, *profile_id, account_id)
                    }))?;
                savepoint
                    .execute_raw(roster_runtime::db::statement(&savepoint, &sql, values))
                    .await?;
            }
            Ok(())
        }
        .await;
        // Whatever the failure, the rollback tells: a lost connection fails it too.
        if inserted.is_err() {
            savepoint.rollback().await?;
            return Ok(false);
        }
        savepoint.commit().await?;
        Ok(true)
    }

    /// Inserts new profiles.
    pub async fn insert_profiles(
        &self,
        txn: &DatabaseTransaction,
        profiles: &[Profile],
    ) -> Result<(), StoreError> {
        for chunk in profiles.chunks(CHUNK) {
            let (sql, values) = roster_runtime::db::insert_rows(
                chunk
                    .iter()
                    .map(|p| profile::ActiveModel::from(model_of(p))),
            )?;
            txn.execute_raw(roster_runtime::db::statement(txn, &sql, values))
                .await?;
        }
        Ok(())
    }

    /// Writes new values over locked profiles, one `UPDATE … SET col = CASE id …` per chunk.
    pub async fn update_profiles(
        &self,
        txn: &DatabaseTransaction,
        profiles: &[Profile],
    ) -> Result<(), StoreError> {
        let models: Vec<profile::Model> = profiles.iter().map(model_of).collect();
        for chunk in models.chunks(CHUNK / 2) {
            let ids: Vec<Uuid> = chunk.iter().map(|model| model.id).collect();
            let column = |col: profile::Column, value: &dyn Fn(&profile::Model) -> SimpleExpr| {
                let mut case = CaseStatement::new();
                for model in chunk {
                    case = case.case(Expr::col(profile::Column::Id).eq(model.id), value(model));
                }
                let case: SimpleExpr = case.finally(Expr::col(col)).into();
                (col, case)
            };
            let text = |value: &str| Expr::val(value.to_owned());
            let optional = |value: &Option<String>| Expr::val(value.clone());
            let statement = Query::update()
                .table(profile::Entity)
                .values([
                    column(profile::Column::FirstName, &|m| text(&m.first_name)),
                    column(profile::Column::LastName, &|m| text(&m.last_name)),
                    column(profile::Column::Email, &|m| text(&m.email)),
                    column(profile::Column::EmailSearch, &|m| text(&m.email_search)),
                    column(profile::Column::Username, &|m| text(&m.username)),
                    column(profile::Column::CanonicalUsername, &|m| {
                        text(&m.canonical_username)
                    }),
                    column(profile::Column::JobTitle, &|m| optional(&m.job_title)),
                    column(profile::Column::Department, &|m| optional(&m.department)),
                    column(profile::Column::Locale, &|m| optional(&m.locale)),
                    column(profile::Column::TimeZone, &|m| optional(&m.time_zone)),
                    column(profile::Column::ExternalId, &|m| optional(&m.external_id)),
                    column(profile::Column::UpdatedAt, &|m| Expr::val(m.updated_at)),
                    column(profile::Column::Version, &|m| Expr::val(m.version)),
                ])
                .and_where(Expr::col(profile::Column::Id).is_in(ids))
                .to_owned();
            txn.execute(&statement).await?;
        }
        Ok(())
    }
}
