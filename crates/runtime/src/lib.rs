//! The shared runtime of Roster's services: everything each of them needs exactly once.
//!
//! - [`settings`]: layered configuration (defaults → optional file → `ROSTER_<SERVICE>__<KEY>`).
//! - [`telemetry`]: `tracing` with pretty or JSON output and optional OTLP export.
//! - [`server`]: the tonic server bootstrap with health, reflection, tower layers and graceful
//!   shutdown.
//! - [`deadline`]: the server's deadline, kept off calls whose request is a stream (uploads).
//! - [`descriptors`]: the methods the services' descriptor sets declare.
//! - [`metrics`]: the Prometheus endpoint, gRPC call metrics and the services' own series.
//! - [`client`]: calls to another Roster service: balanced, with deadlines, retries of
//!   idempotent calls, the caller key, trace context and optional TLS.
//! - [`peer`]: how a service reaches another, configured the same way everywhere.
//! - [`auth`]: bearer-key authentication of callers, with scopes and account limits.
//! - [`request`]: request plumbing read the same way everywhere: ids, request ids, page sizes
//!   and tokens, etags, update masks, batch sizes and byte bounds.
//! - [`error`]: the one mapping from domain failures to `tonic::Status` with rich details.
//! - [`db`]: database connections (SQLite or PostgreSQL through sea-orm) and migrations.
//! - [`work`]: CPU-bound work of a call, kept off the async executor.
//! - [`retention`]: leased periodic jobs, and the purges' bounds and counters.

pub mod allocator;
pub mod auth;
pub mod client;
pub mod db;
pub mod deadline;
pub mod descriptors;
pub mod error;
pub mod metrics;
pub mod peer;
pub mod places;
pub mod ratelimit;
pub mod request;
pub mod retention;
pub mod server;
pub mod settings;
pub mod shared;
pub mod shutdown;
pub mod streams;
pub mod telemetry;
pub mod work;

pub use auth::{Caller, KeyRing, SharedKeyRing};
pub use error::ApiError;
pub use settings::{CommonSettings, Service};
pub use shutdown::Shutdown;
