//! `roster events list`: the newest events first, page after page up to `--limit`.

use prost_types::Timestamp;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::event_service_client::EventServiceClient;
use tonic::transport::Channel;

use super::{Filters, show};
use crate::client::Client;
use crate::output;

/// The most events ListEvents returns in one page.
const MAX_PAGE_SIZE: u32 = 1000;

/// The ListEvents request of these filters, without its paging.
pub fn request(
    filters: Filters,
    actor: String,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> pb::ListEventsRequest {
    pb::ListEventsRequest {
        account_id: filters.account,
        subject_id: filters.profile,
        actor,
        r#type: filters.event_type.unwrap_or_default(),
        start_time: since,
        end_time: until,
        page_size: 0,
        page_token: String::new(),
    }
}

/// Lists up to `limit` events from `page_token` on: each page asks for what is still missing,
/// so that the listing stops exactly at the limit with the token of the page after it.
pub async fn run(
    client: &Client,
    events: EventServiceClient<Channel>,
    request: pb::ListEventsRequest,
    limit: u32,
    page_token: String,
) -> anyhow::Result<()> {
    let limit = limit as usize;
    let next_size = |fetched: usize| {
        (fetched < limit).then(|| (limit - fetched).min(MAX_PAGE_SIZE as usize) as i32)
    };
    let (items, next) = output::page_through(
        "events",
        limit > MAX_PAGE_SIZE as usize,
        page_token,
        next_size,
        async |page_token, page_size| {
            let response = client
                .call(
                    "roster.identity.v1.EventService/ListEvents",
                    None,
                    pb::ListEventsRequest {
                        page_size,
                        page_token,
                        ..request.clone()
                    },
                    async |request| events.clone().list_events(request).await,
                )
                .await?;
            Ok((response.events, response.next_page_token))
        },
    )
    .await?;
    let response = pb::ListEventsResponse {
        events: items,
        next_page_token: next,
    };
    output::show(client.json(), &response, |response| {
        output::listing(
            "No events.",
            &show::HEADER,
            response.events.iter().map(show::row),
            "",
        )?;
        if !response.next_page_token.is_empty() {
            eprintln!(
                "(more: repeat with --page-token {}, or raise --limit)",
                response.next_page_token
            );
        }
        Ok(())
    })
}
