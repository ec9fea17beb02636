//! A SCIM client over real HTTP/1.1: JSON in, status, headers and JSON out, with the token a
//! test gives it.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// One answer of the endpoint.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `Value::Null` for an empty body.
    pub body: Value,
}

impl Answer {
    /// The SCIM error's `scimType`, when the answer is an error that has one.
    pub fn scim_type(&self) -> Option<&str> {
        self.body["scimType"].as_str()
    }

    /// The SCIM error's `detail`.
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A client of one SCIM endpoint with one token.
#[derive(Clone)]
pub struct Scim {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Scim {
    /// A client of the endpoint at `addr`, sending `token` as its bearer token.
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Self {
            base: format!("http://{addr}"),
            token: Some(token.to_owned()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The same endpoint with another token (`None`: none at all).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Sends `method` to `path` (below the host, such as `/scim/v2/Users`) with `body` as
    /// JSON and `headers`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let bytes = body.map(|body| body.to_string()).unwrap_or_default();
        self.send_bytes(method, path, bytes.into_bytes(), headers)
            .await
    }

    /// Sends raw bytes as the body.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/scim+json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let response = self
            .client
            .request(request)
            .await
            .unwrap_or_else(|error| panic!("SCIM request to {path}: {error}"));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the response body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                panic!(
                    "{path} answered {status} with a body that is not JSON ({error}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, &format!("/scim/v2{path}"), None, &[])
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, &format!("/scim/v2{path}"), Some(body), &[])
            .await
    }

    pub async fn put(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::PUT, &format!("/scim/v2{path}"), Some(body), headers)
            .await
    }

    pub async fn patch(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        self.send(
            Method::PATCH,
            &format!("/scim/v2{path}"),
            Some(body),
            headers,
        )
        .await
    }

    pub async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::DELETE, &format!("/scim/v2{path}"), None, headers)
            .await
    }
}

/// A PatchOp body of `operations`.
pub fn patch_op(operations: Value) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": operations,
    })
}
