//! Bulk-import's use cases: one public function per operation, each owning its transaction and
//! its idempotency. gRPC calls them through [`crate::api`]; any later interface calls the same.
//!
//! - [`imports`]: creating an import (with its file given whole), reading, listing, submitting
//!   and cancelling imports.
//! - [`uploads`]: an import receiving its file piece by piece, and what becomes of an upload
//!   that does not complete.
//! - [`rows`]: an import's staged rows, page by page, and the report.
//!
//! A caller sees only imports of accounts its key may touch: reaching another account's import
//! by id is [`ImportError::NotFound`], exactly like an import that does not exist.

mod error;
pub mod imports;
pub mod offboarding;
pub mod rows;
pub mod uploads;

use std::sync::Arc;
use std::time::Duration;

use roster_runtime::telemetry::TraceContext;
use roster_runtime::{Caller, SharedKeyRing};
use tokio::sync::Notify;

pub use error::ImportError;

use crate::domain::import::{Import, ImportId};
use crate::store::Store;

/// Limits the use cases enforce.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Largest accepted file, in bytes.
    pub max_file_bytes: u64,
    /// How long an unsubmitted import lives.
    pub import_ttl: Duration,
    /// Rows per batch of an apply, pinned on each import when it is submitted.
    pub apply_batch_size: usize,
}

/// The use cases over bulk-import's store.
#[derive(Clone)]
pub struct ImportApp {
    store: Store,
    config: AppConfig,
    /// Wakes this replica's worker when there is new work.
    wake: Arc<Notify>,
    /// The accounts identity deleted, as last read (the key ring holds them).
    closed: SharedKeyRing,
}

impl ImportApp {
    pub fn new(store: Store, config: AppConfig, wake: Arc<Notify>, closed: SharedKeyRing) -> Self {
        Self {
            store,
            config,
            wake,
            closed,
        }
    }

    /// Largest accepted file, in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.config.max_file_bytes
    }

    /// The import if it exists and the caller may see it.
    pub async fn get(&self, caller: &Caller, id: ImportId) -> Result<Import, ImportError> {
        self.store
            .import(id)
            .await?
            .filter(|import| caller.may_access(import.account_id.0))
            .ok_or(ImportError::NotFound)
    }
}

/// The current request's W3C `traceparent`, stored on an import for its background work to
/// continue the trace; empty when no trace is recorded.
fn current_traceparent() -> String {
    TraceContext::current()
        .traceparent()
        .unwrap_or_default()
        .to_owned()
}
