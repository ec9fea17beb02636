//! Database connections through sea-orm, on SQLite (the embedded default) or PostgreSQL, and the
//! migrations each service owns: applying them, and telling whether a database's schema is
//! what this binary needs ([`SchemaState`]), which the server's health follows.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    DbErr, EntityName, EntityTrait, FromQueryResult, IdenStatic, Iterable, TransactionTrait, Value,
};
use sea_orm_migration::{
    IntoSchemaManagerConnection, MigratorTrait, SchemaManager, seaql_migrations,
};

/// Opens a pool on `url` (`sqlite://path?mode=rwc` or `postgres://…`). For a SQLite file its
/// directory is created, and the pool uses WAL with a busy timeout so concurrent writers wait
/// for one another instead of failing.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    if let Some(path) = sqlite_path(url)
        && let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|error| DbErr::Custom(format!("creating {}: {error}", parent.display())))?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|options| {
            options
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
        });
    Database::connect(options).await
}

/// Applies every pending migration of `M` and returns their names (none when the schema was
/// current). Logs what it applied, or that there was nothing to apply.
///
/// A database that already holds migrations this binary does not know (a newer version ran
/// `roster migrate` during a rolling upgrade) is left as it is when nothing of this binary's is
/// missing; when something is, the migrations would interleave, and it is refused.
///
/// Replicas starting together on a new database would race to create the same tables: on
/// PostgreSQL the check and the migrations run in one transaction that first takes an advisory
/// lock, so one replica migrates and the others, waiting behind it, find the schema current
/// (and a failed migration leaves nothing half-applied).
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return migrate_now::<M, _>(db).await;
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await?;
    let applied = migrate_now::<M, _>(&txn).await?;
    txn.commit().await?;
    Ok(applied)
}

/// The advisory lock key of migrations ("Roster" in ASCII).
const MIGRATION_LOCK: i64 = 0x526f_7374_6572;

async fn migrate_now<'c, M, C>(db: &'c C) -> Result<Vec<String>, DbErr>
where
    M: MigratorTrait,
    C: ConnectionTrait,
    &'c C: IntoSchemaManagerConnection<'c>,
{
    let state = schema_state_on::<M, C>(db).await?;
    match (state.pending.is_empty(), state.unknown.is_empty()) {
        (true, true) => {
            tracing::info!(migrations = M::migrations().len(), "schema is current");
            Ok(Vec::new())
        }
        (true, false) => {
            tracing::warn!(
                unknown = ?state.unknown,
                "schema is ahead of this binary (a newer version migrated it); nothing to apply"
            );
            Ok(Vec::new())
        }
        (false, false) => Err(DbErr::Migration(format!(
            "the database holds migrations this binary does not know ({}) and lacks some of \
             its own ({}): migrate it with the newest version",
            state.unknown.join(", "),
            state.pending.join(", ")
        ))),
        (false, true) => {
            M::up(db, None).await?;
            tracing::info!(applied = ?state.pending, "migrations applied");
            Ok(state.pending)
        }
    }
}

/// How a database's schema stands against the migrations a binary carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaState {
    /// This binary's migrations that the database has not applied, in order: the schema is
    /// behind and the service cannot work on it.
    pub pending: Vec<String>,
    /// Migrations the database has applied that this binary does not know, sorted: a newer
    /// version migrated it. Additive migrations keep older binaries working, so this is no
    /// reason not to serve.
    pub unknown: Vec<String>,
}

impl SchemaState {
    /// True while some of this binary's migrations are missing.
    pub fn is_behind(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Compares the migrations recorded in `db` with `M`'s, reading only: nothing is created, so
/// it works on an empty database and with a user that may not change the schema.
pub async fn schema_state<M: MigratorTrait>(db: &DatabaseConnection) -> Result<SchemaState, DbErr> {
    schema_state_on::<M, _>(db).await
}

async fn schema_state_on<'c, M, C>(db: &'c C) -> Result<SchemaState, DbErr>
where
    M: MigratorTrait,
    C: ConnectionTrait,
    &'c C: IntoSchemaManagerConnection<'c>,
{
    let table = M::migration_table_name();
    let applied: HashSet<String> = if SchemaManager::new(db).has_table(table.to_string()).await? {
        let select = Query::select()
            .column(seaql_migrations::Column::Version)
            .column(seaql_migrations::Column::AppliedAt)
            .from(table)
            .to_owned();
        db.query_all(&select)
            .await?
            .iter()
            .map(|row| seaql_migrations::Model::from_query_result(row, "").map(|row| row.version))
            .collect::<Result<_, _>>()?
    } else {
        HashSet::new()
    };
    let known: Vec<String> = M::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let mut unknown: Vec<String> = applied
        .iter()
        .filter(|name| !known.contains(name))
        .cloned()
        .collect();
    unknown.sort();
    Ok(SchemaState {
        pending: known
            .into_iter()
            .filter(|name| !applied.contains(name))
            .collect(),
        unknown,
    })
}

/// A service's database as its server sees it: the pool, and the check of its schema against
/// the service's migrations, which the health status follows.
#[derive(Clone)]
pub struct ServiceDatabase {
    connection: DatabaseConnection,
    schema: SchemaCheck,
}

/// [`schema_state`] for one service's migrator.
type SchemaCheck = for<'a> fn(&'a DatabaseConnection) -> BoxFuture<'a, Result<SchemaState, DbErr>>;

impl ServiceDatabase {
    /// `connection`, whose schema must hold every migration of `M`.
    pub fn new<M: MigratorTrait + 'static>(connection: DatabaseConnection) -> Self {
        fn check<M: MigratorTrait + 'static>(
            db: &DatabaseConnection,
        ) -> BoxFuture<'_, Result<SchemaState, DbErr>> {
            Box::pin(schema_state::<M>(db))
        }
        Self {
            connection,
            schema: check::<M>,
        }
    }

    /// The connection pool.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.connection
    }

    /// How the schema stands against the service's migrations.
    pub async fn schema(&self) -> Result<SchemaState, DbErr> {
        (self.schema)(&self.connection).await
    }
}

/// True when the connection is PostgreSQL.
pub fn is_postgres(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// `sql`, written with PostgreSQL's `$1` placeholders, as a statement for `conn`'s database
/// (SQLite numbers them `?1`).
pub fn statement(
    conn: &impl sea_orm::ConnectionTrait,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// `INSERT INTO <table> (<columns>) VALUES (…), (…), …` for `rows`: the statement's text, with
/// `$n` placeholders (see [`statement`] for SQLite's), and its values; see [`insert_parts`].
///
/// It writes what `Entity::insert_many(rows)` builds, taken straight from the models: sea-query
/// wraps each value in an expression and writes the text through its generic builder, which
/// for batches of 500 profiles (11,000 values) and their events was a sixth of identity's CPU
/// during an import (call-graph profile of the apply).
pub fn insert_rows<A>(rows: impl IntoIterator<Item = A>) -> Result<(String, Vec<Value>), DbErr>
where
    A: ActiveModelTrait,
{
    let mut values = Vec::new();
    let (head, rows) = insert_parts(rows, &mut values)?;
    Ok((format!("{head} VALUES ({})", rows.join("), (")), values))
}

/// The parts of a multi-row insert of `rows`, for statements to put together as they need:
/// `INSERT INTO "<table>" ("<column>", …)`, and each row's placeholders (`$n, …`), numbered
/// after the values already in `values`, onto which the rows' values go. The columns are those
/// the first row sets; every row must set exactly those (an error names the table, the row and
/// the column otherwise, so no value is dropped), and there must be a row.
pub fn insert_parts<A>(
    rows: impl IntoIterator<Item = A>,
    values: &mut Vec<Value>,
) -> Result<(String, Vec<String>), DbErr>
where
    A: ActiveModelTrait,
{
    use std::fmt::Write as _;

    let mut rows = rows.into_iter().peekable();
    let table = <A::Entity as Default>::default();
    let Some(first) = rows.peek() else {
        return Err(DbErr::Custom(format!(
            "inserting into {}: no rows",
            table.table_name()
        )));
    };
    let (columns, unset): (Vec<_>, Vec<_>) = <A::Entity as EntityTrait>::Column::iter()
        .partition(|column| !first.get(*column).is_not_set());
    let mut head = format!("INSERT INTO \"{}\" (", table.table_name());
    for (index, column) in columns.iter().enumerate() {
        let separator = if index == 0 { "" } else { ", " };
        let _ = write!(head, "{separator}\"{}\"", column.as_str());
    }
    head.push(')');
    let mut placeholders = Vec::new();
    for (row_index, mut row) in rows.enumerate() {
        let mut numbers = String::new();
        for (index, column) in columns.iter().enumerate() {
            let Some(value) = row.take(*column).into_value() else {
                return Err(DbErr::Custom(format!(
                    "inserting into {}: row {row_index} does not set {}",
                    table.table_name(),
                    column.as_str()
                )));
            };
            values.push(value);
            let separator = if index == 0 { "" } else { ", " };
            let _ = write!(numbers, "{separator}${}", values.len());
        }
        if let Some(column) = unset.iter().find(|column| !row.get(**column).is_not_set()) {
            return Err(DbErr::Custom(format!(
                "inserting into {}: row {row_index} sets {}, which the first row leaves unset",
                table.table_name(),
                column.as_str()
            )));
        }
        placeholders.push(numbers);
    }
    Ok((head, placeholders))
}

#[cfg(test)]
mod tests {
    use sea_orm::ActiveValue::{NotSet, Set};
    use sea_orm::entity::prelude::*;
    use sea_orm::{ConnectionTrait, Database};

    use super::{insert_parts, insert_rows, sqlite_path, statement};

    mod item {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "items")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub name: String,
            pub note: Option<String>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    fn row(name: &str, note: Option<&str>) -> item::ActiveModel {
        item::ActiveModel {
            id: NotSet,
            name: Set(name.to_owned()),
            note: Set(note.map(str::to_owned)),
        }
    }

    /// The rows go in as `insert_many` would write them: the columns the rows set, a value
    /// each, in order; a column left unset (the generated key) is left to the database.
    #[tokio::test]
    async fn insert_rows_writes_every_row_and_value() {
        let (sql, values) =
            insert_rows([row("a", None), row("b", Some("ß")), row("c", Some("x"))]).unwrap();
        assert_eq!(
            sql,
            r#"INSERT INTO "items" ("name", "note") VALUES ($1, $2), ($3, $4), ($5, $6)"#
        );
        assert_eq!(values.len(), 6);

        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared(
            "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, note TEXT)",
        )
        .await
        .unwrap();
        db.execute_raw(statement(&db, &sql, values)).await.unwrap();
        let stored = item::Entity::find().all(&db).await.unwrap();
        let got: Vec<(i64, &str, Option<&str>)> = stored
            .iter()
            .map(|item| (item.id, item.name.as_str(), item.note.as_deref()))
            .collect();
        assert_eq!(
            got,
            [(1, "a", None), (2, "b", Some("ß")), (3, "c", Some("x"))]
        );
        // Unchanged values (a model turned into an active model) are written too.
        let model = item::Model {
            id: 10,
            name: "d".into(),
            note: None,
        };
        let (sql, _) = insert_rows([item::ActiveModel::from(model)]).unwrap();
        assert_eq!(
            sql,
            r#"INSERT INTO "items" ("id", "name", "note") VALUES ($1, $2, $3)"#
        );
    }

    /// The parts number their placeholders after the values already in the statement.
    #[test]
    fn insert_parts_number_after_the_values_already_there() {
        let mut values = vec![Value::from(1_i64), Value::from(2_i64)];
        let (head, rows) = insert_parts([row("a", None), row("b", None)], &mut values).unwrap();
        assert_eq!(head, r#"INSERT INTO "items" ("name", "note")"#);
        assert_eq!(rows, ["$3, $4", "$5, $6"]);
        assert_eq!(values.len(), 6);
    }

    /// Rows that set different columns, or no rows, are an error naming the table.
    #[test]
    fn rows_that_differ_or_no_rows_are_refused() {
        let mut short = row("b", None);
        short.note = NotSet;
        let error = insert_rows([row("a", None), short])
            .unwrap_err()
            .to_string();
        assert!(error.contains("items") && error.contains("note"), "{error}");
        // A later row setting a column the first leaves unset is refused too, not dropped.
        let mut first = row("a", None);
        first.note = NotSet;
        let error = insert_rows([first, row("b", Some("kept"))])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("items") && error.contains("row 1 sets note"),
            "{error}"
        );
        let error = insert_rows(Vec::<item::ActiveModel>::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("items: no rows"), "{error}");
    }

    #[test]
    fn sqlite_paths_are_found() {
        assert_eq!(
            sqlite_path("sqlite://var/identity.db?mode=rwc"),
            Some("var/identity.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://localhost/x"), None);
    }
}
