//! Roster's end-to-end tests, one module per subject, linked into one test binary: each module
//! starts real servers on real sockets and talks to them through the typed clients of
//! [`roster_tests::clients`]. Tests keep their module path (`identity::…`, `isolation::…`), so
//! `scripts/test -p roster-tests -E 'binary(e2e) and test(/^imports::/)'` picks one subject.
//!
//! The telemetry tests are not here: each installs the process-global tracing subscriber and
//! OTLP exporter, so each is a test binary of its own (`tests/telemetry.rs`,
//! `tests/telemetry_import.rs`).

mod abuse;
mod assignments;
mod events;
mod events_table;
mod identity;
mod import_assignments;
mod import_formats;
mod import_tls;
mod imports;
mod isolation;
mod lifecycle;
mod metrics;
mod notification;
mod notification_store;
mod notification_tls;
mod offboarding;
mod passwords;
mod profile_query;
mod relay;
mod retention;
mod scim;
mod scim_tokens;
mod smoke;
mod uploads;
mod welcome;
