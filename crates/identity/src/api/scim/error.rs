//! SCIM error responses (RFC 7644 §3.12): every failure of the endpoint is one, with its HTTP
//! status, a `scimType` where the RFC defines one, and a `detail` saying what was wrong. A
//! refused username says it is used or was used on the platform, never by whom; a profile of
//! another account is the same 404 as one that does not exist.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::CONTENT_TYPE;
use crate::domain::error::{IdentityError, Refusal};

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM error response.
#[derive(Debug, PartialEq, Eq)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
    /// For 429 and 503: when to come back.
    pub retry_after: Option<Duration>,
}

impl ScimError {
    pub fn new(status: StatusCode, scim_type: Option<&'static str>, detail: String) -> Self {
        Self {
            status,
            scim_type,
            detail,
            retry_after: None,
        }
    }

    pub fn invalid_filter(detail: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
            format!("filter: {detail}"),
        )
    }

    pub fn invalid_path(detail: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("invalidPath"),
            format!("path: {detail}"),
        )
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail.into())
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            detail.into(),
        )
    }

    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("mutability"), detail.into())
    }

    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("noTarget"), detail.into())
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, format!("no such {what}"))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            None,
            "a valid SCIM token is required: Authorization: Bearer <token>".into(),
        )
    }

    pub fn stale() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the resource changed since the version in If-Match; read it again".into(),
        )
    }

    /// A change without If-Match lost to other changes of the same resource every time it
    /// was tried: 409, to be sent again (RFC 7644 §3.12 has no If-Match failure without one).
    pub fn busy_resource() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            None,
            "the resource kept changing while this request was applied; send it again".into(),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn too_many(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "too many requests with this token; retry after the time in Retry-After".into(),
            )
        }
    }

    /// The account has as many requests being served as it may.
    pub fn too_many_at_once() -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "too many requests of this account at once; retry when one has been answered"
                    .into(),
            )
        }
    }

    pub fn unavailable(detail: &str) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, None, detail.to_owned())
        }
    }
}

impl From<IdentityError> for ScimError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Invalid(violations)
            | IdentityError::ExtensionInvalid(violations)
            | IdentityError::RoleInvalid(violations) => ScimError::invalid_value(
                violations
                    .iter()
                    .map(|violation| {
                        format!(
                            "{} {}",
                            attribute_of(&violation.field),
                            violation.description
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            IdentityError::UsernameRefused { refusal, .. } => match refusal {
                Refusal::Taken => ScimError::new(
                    StatusCode::CONFLICT,
                    Some("uniqueness"),
                    "userName is used by another user on the platform".into(),
                ),
                Refusal::Retired => ScimError::new(
                    StatusCode::CONFLICT,
                    Some("uniqueness"),
                    "userName was used before on the platform, and usernames are never reused"
                        .into(),
                ),
                Refusal::Confusable => ScimError::invalid_value(
                    "userName can be confused with a username used on the platform (it looks \
                     the same); choose another",
                ),
                Refusal::Invalid => ScimError::invalid_value("userName is not a valid username"),
            },
            IdentityError::InvalidFilter(error) => ScimError::invalid_filter(error.to_string()),
            IdentityError::ExtensionTaken { number } => ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                format!("extension {number} is held by another user of the account"),
            ),
            IdentityError::NotFound(what) => ScimError::not_found(scim_resource(what)),
            IdentityError::StaleEtag => ScimError::stale(),
            IdentityError::Precondition(message) | IdentityError::NotPermitted(message) => {
                ScimError::mutability(message)
            }
            IdentityError::Changed { message, .. } => ScimError::stale_with(message),
            IdentityError::Throttled(delay) => ScimError::too_many(delay),
            IdentityError::HashingBusy => ScimError::unavailable("every password worker is busy"),
            IdentityError::Contention(message) => ScimError::unavailable(&message),
            other => {
                tracing::error!(error = %other, "SCIM request failed");
                ScimError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "the request failed; it is logged on the server".into(),
                )
            }
        }
    }
}

impl ScimError {
    fn stale_with(detail: String) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, None, detail)
    }
}

/// The SCIM resource a not-found domain object is.
fn scim_resource(what: &str) -> &str {
    match what {
        "profile" => "User",
        other => other,
    }
}

/// The SCIM attribute a field of the domain's messages is.
pub fn attribute_of(field: &str) -> String {
    let field = field.strip_prefix("profile.").unwrap_or(field);
    match field {
        "first_name" => "name.givenName",
        "last_name" => "name.familyName",
        "email" => "emails.value",
        "username" => "userName",
        "job_title" => "title",
        "department" => "department",
        "locale" => "locale",
        "time_zone" => "timezone",
        "external_id" => "externalId",
        "status" => "active",
        other => other,
    }
    .to_owned()
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = scim_type.into();
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(delay) = self.retry_after {
            let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"roster-scim\""),
            );
        }
        response
    }
}
