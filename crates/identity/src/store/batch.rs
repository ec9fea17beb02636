//! Set-based statements for batch calls: a batch of up to 1,000 profiles costs a handful of
//! statements, not a round trip per row.

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, OnConflict, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    TryInsertResult,
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

/// Rows per multi-row statement: stays far below SQLite's and PostgreSQL's bind-parameter caps.
const CHUNK: usize = 200;

impl Store {
    /// The stored responses of the keys under `scope` that were answered before.
    ///
    /// The wanted (scope, key) pairs are joined as a `VALUES` list rather than tested with
    /// `scope = … AND request_id IN (…)`: every key of one caller's batches shares the scope,
    /// and PostgreSQL, lacking statistics on a young table, takes `scope = …` for a selective
    /// condition and reads the caller's every stored key, once per lookup (hash join or bitmap
    /// scan: 50 to 350 ms for 200 keys among 30,000, growing with every import). With nothing
    /// but the join to go on, each pair is one primary-key lookup (1.4 ms for 200).
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
            response: Vec<u8>,
        }
        let backend = conn.get_database_backend();
        let placeholder = |index: usize| match backend {
            sea_orm::DbBackend::Postgres => format!("${index}"),
            _ => "?".to_owned(),
        };
        let mut stored = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let rows = (0..chunk.len())
                .map(|index| {
                    format!(
                        "({}, {})",
                        placeholder(2 * index + 1),
                        placeholder(2 * index + 2)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT k.request_id, k.response FROM (VALUES {rows}) AS wanted \
                 JOIN idempotency_keys k \
                 ON k.scope = wanted.column1 AND k.request_id = wanted.column2"
            );
            let values = chunk
                .iter()
                .flat_map(|key| [scope.to_owned(), key.clone()])
                .map(sea_orm::Value::from);
            let statement = sea_orm::Statement::from_sql_and_values(backend, sql, values);
            for row in Stored::find_by_statement(statement).all(conn).await? {
                stored.insert(row.request_id, row.response);
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
                });
            idempotency_key::Entity::insert_many(rows)
                .on_conflict(OnConflict::new().do_nothing().to_owned())
                .exec_without_returning(txn)
                .await?;
        }
        Ok(())
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

    /// Inserts new profiles.
    pub async fn insert_profiles(
        &self,
        txn: &DatabaseTransaction,
        profiles: &[Profile],
    ) -> Result<(), StoreError> {
        for chunk in profiles.chunks(CHUNK) {
            profile::Entity::insert_many(
                chunk
                    .iter()
                    .map(|p| profile::ActiveModel::from(model_of(p))),
            )
            .exec_without_returning(txn)
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
