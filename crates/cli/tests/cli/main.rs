//! The `roster` binary's tests, one module per subject, linked into one test binary: each runs
//! `roster` as real processes (servers, operator commands, kills and signals sent to those
//! children, never to this process). Tests keep their module path (`uploads::…`, `faults::…`),
//! so `scripts/test -p roster -E 'binary(cli) and test(/^tls::/)'` picks one subject.

mod allocator;
mod common;
mod events;
mod events_kill;
mod faults;
mod import_kill;
mod json_output;
mod keys_reload;
mod operations;
mod operator;
mod outbox;
mod reset_page;
mod shutdown;
mod tls;
mod trace_ids;
mod uploads;
