//! The database pool's series: connections open, idle and at most, read on every scrape.

use sea_orm::{DatabaseConnection, DbBackend, sqlx};

use super::Metrics;

impl Metrics {
    /// Reports the pool of `database`: open, idle and maximum connections.
    pub fn watch_pool(&self, database: &DatabaseConnection) {
        let open = self.gauge(
            "roster_db_pool_connections",
            "Connections open in the database pool (in use and idle)",
        );
        let idle = self.gauge(
            "roster_db_pool_idle_connections",
            "Idle connections in the database pool",
        );
        let max = self.gauge(
            "roster_db_pool_max_connections",
            "Largest number of connections the database pool opens",
        );
        let database = database.clone();
        self.on_scrape(move || {
            if let Some(pool) = pool_use(&database) {
                open.set(i64::from(pool.open));
                idle.set(pool.idle as i64);
                max.set(i64::from(pool.max));
            }
            std::future::ready(())
        });
    }
}

/// What a pool holds at one moment: connections open (in use and idle), idle, and at most.
struct PoolUse {
    open: u32,
    idle: usize,
    max: u32,
}

impl PoolUse {
    fn of<Db: sqlx::Database>(pool: &sqlx::Pool<Db>) -> Self {
        Self {
            open: pool.size(),
            idle: pool.num_idle(),
            max: pool.options().get_max_connections(),
        }
    }
}

/// The use of `database`'s pool, for the backends Roster runs on.
fn pool_use(database: &DatabaseConnection) -> Option<PoolUse> {
    match database.get_database_backend() {
        DbBackend::Postgres => Some(PoolUse::of(database.get_postgres_connection_pool())),
        DbBackend::Sqlite => Some(PoolUse::of(database.get_sqlite_connection_pool())),
        _ => None,
    }
}
