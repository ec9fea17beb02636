//! SCIM 2.0 (RFC 7643, RFC 7644) for provisioning from Entra ID, Okta or any SCIM client, on
//! identity's own HTTP listener under `/scim/v2`: one more transport over the use cases, with
//! no rule of its own.
//!
//! Every request but discovery carries a SCIM token of one account (`Authorization: Bearer`),
//! looked up in the database on every request, so a revoked token is refused at once by every
//! replica. A token acts on its account only, through SCIM only: its caller is limited to that
//! account with the `profiles` scope, and its changes are recorded with source and actor
//! `scim`. Users are profiles, Groups are roles; every failure is a SCIM error response.

mod discovery;
mod error;
mod filter;
mod group;
mod project;
mod query;
mod schemas;
mod target;
mod user;
mod users;
mod values;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use roster_runtime::ratelimit::RateLimiter;
use roster_runtime::{Caller, Shutdown};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use error::ScimError;

use crate::app::Identity;
use crate::domain::ids::AccountId;
use crate::domain::scim_token::ScimToken;
use roster_runtime::places::{Place, Places};

/// The media type of every SCIM body (RFC 7644 §8.1).
pub const CONTENT_TYPE: &str = "application/scim+json";

/// Largest request body, in bytes: a User is a few kilobytes; a group PATCH of
/// [`group::MAX_MEMBERS_PER_PATCH`] members stays well below.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Longest time one request may take before it is answered 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests served at once; more wait for a free slot only briefly, then are answered 503.
const MAX_CONCURRENT: usize = 64;

/// Requests of one account served at once (a quarter of [`MAX_CONCURRENT`]); more are answered
/// 429 at once. The rate limit bounds how many requests a token starts, not how long each one
/// lasts: without this, one account's slow uploads could hold every slot and turn every other
/// account's requests away.
const MAX_CONCURRENT_PER_ACCOUNT: usize = MAX_CONCURRENT / 4;

/// The interface SCIM changes are recorded under (the audit log's source and actor).
pub const SCIM: &str = "scim";

const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// How the endpoint is set up.
#[derive(Clone, Debug)]
pub struct ScimSettings {
    pub addr: SocketAddr,
    /// Public URL of `/scim/v2` (resource locations are built from it, never from request
    /// headers), without a trailing slash.
    pub base_url: String,
    /// Requests per second per token, on average (0: no limit).
    pub requests_per_second: u32,
    /// Requests per token at once above the average.
    pub burst: u32,
    /// How long after its deletion a user comes back as itself (see [`users::create`]).
    pub restore_days: u64,
}

/// What every handler shares.
#[derive(Clone)]
pub struct Scim {
    identity: Identity,
    base: Arc<str>,
    limiter: Arc<RateLimiter>,
    /// Each account's requests being served.
    in_flight: Arc<Places<AccountId>>,
    restore_window: chrono::Duration,
}

impl Scim {
    fn location(&self, kind: &str, id: &str) -> String {
        format!("{}/{kind}/{id}", self.base)
    }
}

/// Binds the listener and serves SCIM until `shutdown` fires; returns the bound address.
pub async fn serve(
    settings: ScimSettings,
    identity: Identity,
    shutdown: Shutdown,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(settings.addr).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot bind the SCIM endpoint to {}: {error}",
            settings.addr
        )
    })?;
    let local = listener.local_addr()?;
    let scim = Scim {
        identity,
        base: settings.base_url.trim_end_matches('/').into(),
        limiter: Arc::new(RateLimiter::new(
            settings.requests_per_second,
            settings.burst,
        )),
        in_flight: Places::new(MAX_CONCURRENT_PER_ACCOUNT),
        restore_window: chrono::Duration::days(
            i64::try_from(settings.restore_days.min(36_500)).unwrap_or(36_500),
        ),
    };
    let app = router(scim);
    tokio::spawn(async move {
        let stopped = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(error) = stopped {
            tracing::error!(%error, "SCIM endpoint stopped");
        }
    });
    tracing::info!(addr = %local, "SCIM endpoint serving");
    Ok(local)
}

fn router(scim: Scim) -> Router {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let v2 = Router::new()
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .route("/Users", get(users::list).post(users::create))
        .route(
            "/Users/{id}",
            get(users::read)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/Groups", get(group::list).post(group::create))
        .route(
            "/Groups/{id}",
            get(group::read)
                .put(group::replace)
                .patch(group::patch)
                .delete(group::delete),
        )
        .route("/.search", post(search))
        .route("/Users/.search", post(search))
        .route("/Groups/.search", post(search));
    Router::new()
        .nest("/scim/v2", v2)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |request, next| {
            bounded(slots.clone(), request, next)
        }))
        .with_state(scim)
}

/// Each request within [`REQUEST_TIMEOUT`] and [`MAX_CONCURRENT`], answered with a SCIM
/// error when it is not.
async fn bounded(slots: Arc<Semaphore>, request: Request, next: Next) -> Response {
    let Ok(Ok(_slot)) = tokio::time::timeout(Duration::from_secs(1), slots.acquire_owned()).await
    else {
        return ScimError::unavailable("the SCIM endpoint is busy; retry shortly").into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ScimError::unavailable("the request took too long; retry it").into_response(),
    }
}

async fn not_found() -> ScimError {
    ScimError::new(
        StatusCode::NOT_FOUND,
        None,
        "no such endpoint: SCIM is served under /scim/v2 (/Users, /Groups, \
         /ServiceProviderConfig, /ResourceTypes, /Schemas)"
            .into(),
    )
}

async fn method_not_allowed() -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "this endpoint does not take that method".into(),
    )
}

async fn search() -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "searching with POST /.search is not supported; use GET with a filter".into(),
    )
}

/// The authenticated token of a request, as the caller the use cases know.
pub struct ScimCaller {
    pub caller: Caller,
    pub account: AccountId,
    pub token: ScimToken,
    /// Held while the request is served (its body read, its change made).
    _place: Place<AccountId>,
}

impl FromRequestParts<Scim> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, scim: &Scim) -> Result<Self, ScimError> {
        let secret = bearer(&parts.headers).ok_or_else(ScimError::unauthorized)?;
        let token = scim
            .identity
            .scim_token(secret)
            .await
            .map_err(ScimError::from)?
            .ok_or_else(ScimError::unauthorized)?;
        scim.limiter
            .admit(&token.id.0.to_string())
            .map_err(ScimError::too_many)?;
        let place = scim
            .in_flight
            .take(&token.account_id)
            .ok_or_else(ScimError::too_many_at_once)?;
        let caller = Caller::limited(
            format!("scim-token {}", token.id.0),
            &["profiles"],
            token.account_id.0,
        )
        .via(SCIM)
        .acting_for(SCIM);
        Ok(ScimCaller {
            caller,
            account: token.account_id,
            token,
            _place: place,
        })
    }
}

/// The bearer token of `Authorization`, when there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// A request body as JSON, bounded by [`MAX_BODY_BYTES`] before it is read.
pub async fn json_body(headers: &HeaderMap, body: Body) -> Result<Value, ScimError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(ScimError::too_large(MAX_BODY_BYTES));
    }
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ScimError::too_large(MAX_BODY_BYTES))?;
    serde_json::from_slice(&bytes)
        .map_err(|error| ScimError::invalid_syntax(format!("the body is not valid JSON: {error}")))
}

/// One operation of a PatchOp body, as sent.
pub struct PatchOperation {
    /// `add`, `replace` or `remove`, in any case.
    pub op: String,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// The operations of a PatchOp body (RFC 7644 §3.5.2).
pub fn patch_operations(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body must be a JSON object"))?;
    if let Some(schemas) = field(object, "schemas").and_then(Value::as_array)
        && !schemas.iter().any(|schema| {
            schema
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA))
        })
    {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body's schemas must hold {PATCH_SCHEMA}"
        )));
    }
    let operations = field(object, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body needs a list of Operations"))?;
    operations
        .iter()
        .map(|operation| {
            let operation = operation
                .as_object()
                .ok_or_else(|| ScimError::invalid_syntax("each of Operations must be an object"))?;
            let op = field(operation, "op")
                .and_then(Value::as_str)
                .ok_or_else(|| ScimError::invalid_syntax("each operation needs an op"))?;
            let path = match field(operation, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(path)) if path.trim().is_empty() => None,
                Some(Value::String(path)) => Some(path.clone()),
                Some(_) => return Err(ScimError::invalid_path("must be a string".into())),
            };
            Ok(PatchOperation {
                op: op.to_owned(),
                path,
                value: field(operation, "value").cloned(),
            })
        })
        .collect()
}

/// A member of a JSON object by name, ignoring case as SCIM does.
pub fn field<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// A SCIM response: `status`, the body, and any extra headers.
pub fn respond(
    status: StatusCode,
    body: &Value,
    headers: &[(header::HeaderName, String)],
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let map = response.headers_mut();
    map.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(name.clone(), value);
        }
    }
    response
}

/// A ListResponse of one page.
pub fn list_response(resources: Vec<Value>, total: u64, start_index: u64) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// A time as SCIM writes it (RFC 3339, UTC).
pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The weak entity tag of a resource at `version` (`meta.version`, the `ETag` header).
pub fn version(version: i64) -> String {
    format!("W/\"{}\"", roster_runtime::request::etag(version))
}

/// The version an `If-Match` header names: `None` without one or for `*`; 412 for one that
/// is not an entity tag Roster gave.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ScimError::stale())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    roster_runtime::request::parse_etag("If-Match", tag)
        .ok()
        .flatten()
        .map(Some)
        .ok_or_else(ScimError::stale)
}
