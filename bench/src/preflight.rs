//! Before any scenario: PostgreSQL must have the free connections the run will open, or the
//! run stops at once saying so (rather than pgbench failing half-way with "too many
//! clients", or a service's pool timing out in the middle of a measurement).

use sea_orm::{ConnectionTrait, Database, Statement};

/// The connections a run needs at most at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// pgbench's clients at the highest CreateProfile concurrency (0 when it does not run).
    pub pgbench_clients: usize,
    /// One service's database pool.
    pub db_pool: u32,
    /// How many services with a pool of their own run at once (identity and bulk-import for
    /// the import scenario).
    pub pools: u32,
}

/// Connections set aside for the harness itself: creating and dropping test databases,
/// pgbench's set-up, the bare-SQL baseline and this check.
const HARNESS: usize = 4;

impl Needs {
    pub fn total(self) -> usize {
        self.pgbench_clients + (self.db_pool as usize) * (self.pools as usize) + HARNESS
    }
}

/// PostgreSQL's connection budget as it is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub max_connections: usize,
    pub reserved: usize,
    pub in_use: usize,
}

impl Budget {
    pub fn free(self) -> usize {
        self.max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.in_use)
    }
}

/// Refuses a run whose `needs` exceed the `budget`, naming both and what to change.
pub fn check(needs: Needs, budget: Budget) -> anyhow::Result<()> {
    if needs.total() <= budget.free() {
        return Ok(());
    }
    anyhow::bail!(
        "PostgreSQL has {free} free connections (max_connections {max}, {reserved} reserved for \
         superusers, {in_use} in use) but this run needs up to {total}: pgbench {pgbench} \
         clients + {pools} service pool(s) of {pool} + {harness} for the harness. Close other \
         clients, lower --create-concurrency or --db-pool, or raise max_connections.",
        free = budget.free(),
        max = budget.max_connections,
        reserved = budget.reserved,
        in_use = budget.in_use,
        total = needs.total(),
        pgbench = needs.pgbench_clients,
        pools = needs.pools,
        pool = needs.db_pool,
        harness = HARNESS,
    )
}

/// Reads the budget from the PostgreSQL at `url`.
pub async fn budget(url: &str) -> anyhow::Result<Budget> {
    let db = Database::connect(url)
        .await
        .map_err(|error| anyhow::anyhow!("PostgreSQL at {url} is unreachable: {error}"))?;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT current_setting('max_connections')::int AS max_connections, \
             current_setting('superuser_reserved_connections')::int AS reserved, \
             (SELECT COUNT(*) FROM pg_stat_activity)::int AS in_use",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL answered no connection counts"))?;
    let read = |column: &str| -> anyhow::Result<usize> {
        let value: i32 = row.try_get("", column)?;
        Ok(usize::try_from(value).unwrap_or(0))
    };
    let budget = Budget {
        max_connections: read("max_connections")?,
        reserved: read("reserved")?,
        in_use: read("in_use")?,
    };
    let _ = db.close().await;
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget {
        max_connections: 100,
        reserved: 3,
        in_use: 10,
    };

    #[test]
    fn a_run_that_fits_is_let_through() {
        let needs = Needs {
            pgbench_clients: 64,
            db_pool: 8,
            pools: 2,
        };
        assert_eq!(needs.total(), 84);
        assert!(check(needs, BUDGET).is_ok());
    }

    #[test]
    fn a_run_that_does_not_fit_is_refused_naming_the_numbers_and_the_remedies() {
        let needs = Needs {
            pgbench_clients: 64,
            db_pool: 16,
            pools: 2,
        };
        let message = check(needs, BUDGET).unwrap_err().to_string();
        for part in [
            "87 free connections",
            "max_connections 100",
            "needs up to 100",
            "pgbench 64 clients",
            "--create-concurrency",
            "--db-pool",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
    }
}
