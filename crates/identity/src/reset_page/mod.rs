//! The password-reset page, served by identity over HTTP on its own port.
//!
//! Plain HTML, a little JavaScript and CSS, all served from here (no framework, no third-party
//! asset), under a strict Content-Security-Policy. The token arrives in the URL fragment, which
//! browsers never send to a server; the page's script reads it and posts it in request bodies,
//! so it appears in no URL, access log or Referer. Nothing here logs a token or a password.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use roster_runtime::request::check_request_id;
use roster_runtime::{Caller, Shutdown};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::credentials::{INVALID_TOKEN, MAX_PASSWORD_CHARS, Passwords, password_too_long};
use crate::domain::error::IdentityError;
use crate::domain::policy::Rule;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Largest request body: a token and a password of [`MAX_PASSWORD_CHARS`] fit with room.
const MAX_BODY_BYTES: usize = 32 * 1024;

/// Longest token looked up: the links carry 43 characters; anything much longer is not one,
/// and is answered as an unknown token without reaching the database.
const MAX_TOKEN_BYTES: usize = 256;

/// Requests served at once; more wait for a free slot only briefly, then are answered 503.
/// The page is anonymous, so its load must not take every database connection and core the
/// gRPC callers share.
const MAX_CONCURRENT: usize = 32;

/// Longest time one request may take before it is answered 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest time a request's body may take to arrive, before it takes one of the
/// [`MAX_CONCURRENT`] slots: a client sending slowly holds its own connection, not a slot.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bodies being received at once; a request past them is answered 503 at once. Far more than
/// the slots, so that slow senders cannot shut the page for everyone as cheaply as before.
const MAX_RECEIVING: usize = 512;

/// The page acts for whoever holds a link: a token names its one profile, of any account.
fn holder() -> Caller {
    Caller::internal("reset-page").via("reset_page")
}

/// Binds `addr` and serves the page until `shutdown` fires; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    passwords: Passwords,
    shutdown: Shutdown,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("cannot bind the reset page to {addr}: {error}"))?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/reset", get(|| asset(PAGE, "text/html; charset=utf-8")))
        .route(
            "/reset/app.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/reset/app.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .route("/reset/api/requirements", post(requirements))
        .route("/reset/api/check", post(check))
        .route("/reset/api/complete", post(complete))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn({
            let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
            let receiving = Arc::new(Semaphore::new(MAX_RECEIVING));
            move |request, next| bounded(slots.clone(), receiving.clone(), request, next)
        }))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(passwords);
    tokio::spawn(async move {
        let stopped = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(error) = stopped {
            tracing::error!(%error, "reset page stopped");
        }
    });
    tracing::info!(addr = %local, "reset page serving");
    Ok(local)
}

/// Each request's body whole within [`BODY_TIMEOUT`] first, then the request within
/// [`REQUEST_TIMEOUT`] and [`MAX_CONCURRENT`]. The page's own files take no slot.
async fn bounded(
    slots: Arc<Semaphore>,
    receiving: Arc<Semaphore>,
    request: Request,
    next: Next,
) -> Response {
    let refused = |status: StatusCode, error: &str| {
        answer(
            status,
            Answer {
                rules: None,
                violations: None,
                error: Some(error.to_owned()),
            },
        )
    };
    let busy = || refused(StatusCode::SERVICE_UNAVAILABLE, BUSY);
    if request.method() == axum::http::Method::GET {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = {
        let Ok(_receiving) = receiving.try_acquire() else {
            return busy();
        };
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                return refused(StatusCode::PAYLOAD_TOO_LARGE, "The request is too large.");
            }
            Err(_) => {
                return refused(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request took too long to arrive. Please try again.",
                );
            }
        }
    };
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    let Ok(Ok(_slot)) = tokio::time::timeout(Duration::from_secs(1), slots.acquire_owned()).await
    else {
        return busy();
    };
    tokio::time::timeout(REQUEST_TIMEOUT, next.run(request))
        .await
        .unwrap_or_else(|_| busy())
}

const BUSY: &str = "The service is busy. Please try again in a moment.";

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
struct PasswordBody {
    token: String,
    password: String,
    /// The page's one id for its submissions (see CompletePasswordReset's `request_id`): a
    /// submission sent again after its answer was lost is answered as the first was.
    #[serde(default)]
    request_id: String,
}

#[derive(Serialize)]
struct RuleView {
    code: &'static str,
    description: String,
}

#[derive(Serialize)]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    rules: Option<Vec<RuleView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    violations: Option<Vec<RuleView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn views(rules: Vec<Rule>) -> Vec<RuleView> {
    rules
        .into_iter()
        .map(|rule| RuleView {
            code: rule.code,
            description: rule.description,
        })
        .collect()
}

fn answer(status: StatusCode, answer: Answer) -> Response {
    (status, Json(answer)).into_response()
}

fn error(failure: IdentityError) -> Response {
    let (status, message) = match failure {
        IdentityError::InvalidResetToken => (StatusCode::GONE, INVALID_TOKEN.to_owned()),
        IdentityError::PasswordPolicy(rules) => {
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                Answer {
                    rules: None,
                    violations: Some(views(rules)),
                    error: None,
                },
            );
        }
        IdentityError::HashingBusy => (StatusCode::SERVICE_UNAVAILABLE, BUSY.to_owned()),
        // The page's request id sent again with another password, after the first was set.
        IdentityError::Invalid(_) => (
            StatusCode::BAD_REQUEST,
            "The password was already set from this page. Open the link from your email \
             again to set another."
                .to_owned(),
        ),
        other => {
            tracing::error!(error = %other, "reset page failure");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Please try again later.".to_owned(),
            )
        }
    };
    answer(
        status,
        Answer {
            rules: None,
            violations: None,
            error: Some(message),
        },
    )
}

/// A token too long to be one: answered as an unknown token, before any lookup.
fn implausible(token: &str) -> bool {
    token.len() > MAX_TOKEN_BYTES
}

fn too_long_answer() -> Response {
    bad_request(&format!(
        "The password is longer than {MAX_PASSWORD_CHARS} characters."
    ))
}

fn bad_request(message: &str) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        Answer {
            rules: None,
            violations: None,
            error: Some(message.to_owned()),
        },
    )
}

async fn requirements(State(passwords): State<Passwords>, Json(body): Json<TokenBody>) -> Response {
    if implausible(&body.token) {
        return error(IdentityError::InvalidResetToken);
    }
    match passwords.token_owner(&holder(), &body.token).await {
        Ok((account, _)) => answer(
            StatusCode::OK,
            Answer {
                rules: Some(views(account.policy.rules())),
                violations: None,
                error: None,
            },
        ),
        Err(failure) => error(failure),
    }
}

/// The rules a candidate fails as it is typed: every rule but the history, which costs an
/// argon2 verification per stored password and is checked on submit.
async fn check(State(passwords): State<Passwords>, Json(body): Json<PasswordBody>) -> Response {
    if implausible(&body.token) {
        return error(IdentityError::InvalidResetToken);
    }
    if password_too_long(&body.password) {
        return too_long_answer();
    }
    let password = SecretString::from(body.password);
    match passwords.token_owner(&holder(), &body.token).await {
        Ok((account, profile)) => answer(
            StatusCode::OK,
            Answer {
                rules: None,
                violations: Some(views(Passwords::check(&account, Some(&profile), &password))),
                error: None,
            },
        ),
        Err(failure) => error(failure),
    }
}

async fn complete(State(passwords): State<Passwords>, Json(body): Json<PasswordBody>) -> Response {
    if implausible(&body.token) {
        return error(IdentityError::InvalidResetToken);
    }
    if password_too_long(&body.password) {
        return too_long_answer();
    }
    if check_request_id("request_id", &body.request_id).is_err() {
        return bad_request("The request id must be at most 128 printable ASCII characters.");
    }
    let request_id = crate::api::request_key(
        &roster_proto::identity::v1::CompletePasswordResetRequest {
            token: body.token.clone(),
            new_password: body.password.clone(),
            request_id: body.request_id.clone(),
        },
        &body.request_id,
    );
    let password = SecretString::from(body.password);
    match passwords
        .complete_reset(&holder(), request_id, &body.token, password)
        .await
    {
        Ok(_) => answer(
            StatusCode::OK,
            Answer {
                rules: None,
                violations: None,
                error: None,
            },
        ),
        Err(failure) => error(failure),
    }
}
