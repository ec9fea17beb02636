//! The audit log: who made a change ([`origin`], recorded by every use case that changes
//! something, in its own transaction), and reading the log — a page of it, newest first, or
//! everything after a cursor, oldest first, for a watcher.
//!
//! A caller limited to some accounts reads only their events: the filter always carries the
//! caller's scope, and naming another account is refused like everywhere else.

use roster_runtime::Caller;
use roster_runtime::telemetry::current_trace_id;

use super::{Identity, account_scope};
use crate::domain::error::IdentityError;
use crate::domain::event::{Event, Origin, Source};
use crate::store::EventFilter;

/// Who a change by `caller` within `request_id` is attributed to, and where it came from.
pub(crate) fn origin(caller: &Caller, request_id: &str) -> Origin {
    Origin {
        actor: caller.actor().to_owned(),
        caller: caller.name.clone(),
        source: Source::from_name(caller.via).unwrap_or(Source::Grpc),
        request_id: request_id.to_owned(),
        trace_id: current_trace_id(),
    }
}

impl Identity {
    /// The filter a caller reads with: `filter` narrowed to the accounts the caller may see.
    /// A named account the caller may not see is refused (PERMISSION_DENIED, as a request
    /// naming another account is everywhere).
    pub fn scoped_filter(
        &self,
        caller: &Caller,
        mut filter: EventFilter,
    ) -> Result<EventFilter, IdentityError> {
        if let Some(account) = filter.account
            && !caller.may_access(account.0)
        {
            return Err(IdentityError::NotPermitted(
                "the caller key may not act on this account".into(),
            ));
        }
        filter.accounts = account_scope(caller);
        Ok(filter)
    }

    /// A page of the events `filter` selects, newest first, numbered before `before`; one
    /// more than `limit` tells that another page follows.
    pub async fn list_events(
        &self,
        caller: &Caller,
        filter: EventFilter,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Event>, IdentityError> {
        let filter = self.scoped_filter(caller, filter)?;
        Ok(self.store.list_events(&filter, before, limit).await?)
    }

    /// The log's last number: a watcher starting "now" starts after it.
    pub async fn last_event(&self) -> Result<i64, IdentityError> {
        Ok(self.store.last_sequence().await?)
    }

    /// Up to `limit` events `filter` (already scoped) selects, numbered after `after` and at
    /// most `upto`, oldest first.
    pub async fn events_after(
        &self,
        filter: &EventFilter,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<Event>, IdentityError> {
        Ok(self.store.events_after(filter, after, upto, limit).await?)
    }
}
