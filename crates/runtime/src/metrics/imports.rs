//! The import progress series: what bulk-import reports as it validates and applies rows, and
//! how many of its jobs are in each state.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::Metrics;

impl Metrics {
    /// The import progress series (registered on first use): what bulk-import reports as it
    /// validates and applies rows.
    pub fn import_progress(&self) -> ImportProgress {
        self.inner
            .imports
            .get_or_init(|| ImportProgress {
                rows: self.registered(
                    "roster_import_rows_processed",
                    "Import rows processed, by the state they reached",
                    Family::default(),
                ),
                jobs: self.registered("roster_imports", "Import jobs, by state", Family::default()),
            })
            .clone()
    }
}

/// Import progress, for bulk-import to report: rows processed per state, and jobs per state.
#[derive(Clone, Debug)]
pub struct ImportProgress {
    rows: Family<[(&'static str, String); 1], Counter>,
    jobs: Family<[(&'static str, String); 1], Gauge>,
}

impl ImportProgress {
    /// Counts `rows` more rows that reached `state` — bulk-import reports `validated` (staged
    /// with their preview), `applied` and `failed` (written, or refused, by identity):
    /// `roster_import_rows_processed_total{state}`.
    pub fn rows_processed(&self, state: &str, rows: u64) {
        self.rows
            .get_or_create(&[("state", state.to_owned())])
            .inc_by(rows);
    }

    /// Sets how many jobs are in `state` now: `roster_imports{state}` (from an
    /// [`Metrics::on_scrape`] hook that counts them in the database).
    pub fn set_jobs(&self, state: &str, jobs: i64) {
        self.jobs
            .get_or_create(&[("state", state.to_owned())])
            .set(jobs);
    }
}
