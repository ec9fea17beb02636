//! Database connections through sea-orm, on SQLite (the embedded default) or PostgreSQL, and the
//! migrations each service owns: applying them, and telling whether a database's schema is
//! what this binary needs ([`SchemaState`]), which the server's health follows.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::sea_query::Query;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    FromQueryResult, TransactionTrait,
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

#[cfg(test)]
mod tests {
    use super::sqlite_path;

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
