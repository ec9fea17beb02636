//! Typed clients of each service, for tests: one method per RPC, taking the request message and
//! answering the response message (a stream of them for a server-streaming RPC) or the refusal,
//! with the caller's key attached; and the few compound calls tests repeat (an account, every
//! page of a listing, an import waited for). A client is cheap to clone and every method takes
//! `&self`, so concurrent calls need no ceremony. `refusal` reads what a caller can act on from
//! a refused call.

mod health;
mod identity;
mod imports;
mod notification;

pub use health::Health;
pub use identity::{Identity, rename_account, upsert_item};
pub use imports::{Imports, OpenUpload, upload_end, upload_header};
pub use notification::{Notifications, welcome_email};

use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Who calls and what else the call carries: the key sent as `authorization: Bearer <key>`
/// (none: no `authorization` at all) and more metadata (e.g. a `traceparent`).
#[derive(Clone, Debug)]
struct Caller {
    key: Option<String>,
    metadata: Vec<(String, String)>,
}

impl Caller {
    fn with_key(key: &str) -> Caller {
        Caller {
            key: Some(key.to_owned()),
            metadata: Vec::new(),
        }
    }

    /// `message` as a request carrying this caller's key and metadata.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = match &self.key {
            Some(key) => crate::authed(key, message),
            None => tonic::Request::new(message),
        };
        for (name, value) in &self.metadata {
            request.metadata_mut().insert(
                MetadataKey::from_bytes(name.as_bytes()).expect("a metadata name"),
                MetadataValue::try_from(value.as_str()).expect("an ASCII metadata value"),
            );
        }
        request
    }
}

/// The methods that change who calls: `with_key`, `without_key` and `with_metadata`, each
/// answering a client on the same connection.
macro_rules! caller {
    ($client:ident) => {
        /// The same connection, calling with another key.
        pub fn with_key(&self, key: &str) -> $client {
            let mut client = self.clone();
            client.caller.key = Some(key.to_owned());
            client
        }

        /// The same connection, calling without any `authorization` metadata.
        pub fn without_key(&self) -> $client {
            let mut client = self.clone();
            client.caller.key = None;
            client
        }

        /// The same caller, every call also carrying the metadata `name: value`.
        pub fn with_metadata(&self, name: &str, value: &str) -> $client {
            let mut client = self.clone();
            client
                .caller
                .metadata
                .push((name.to_owned(), value.to_owned()));
            client
        }
    };
}

/// One method per RPC of `$client` (a field holding a tonic client): the request message in,
/// what the RPC answers (`$answer`: a message, or a stream of them) or the refusal out, from
/// the client's caller. `$doc` ends each method's documentation.
macro_rules! rpcs {
    ($client:ident, $package:ident, $doc:literal: $($method:ident($request:ident) -> $answer:ty;)+) => {$(
        #[doc = concat!("Calls `", stringify!($method), "` from the client's caller", $doc)]
        pub async fn $method(
            &self,
            request: $package::$request,
        ) -> Result<$answer, tonic::Status> {
            self.$client
                .clone()
                .$method(self.caller.request(request))
                .await
                .map(tonic::Response::into_inner)
        }
    )+};
}

/// [`rpcs`] for unary RPCs: each answers its response message.
macro_rules! unary {
    ($client:ident, $package:ident: $($method:ident($request:ident) -> $response:ident;)+) => {
        $crate::clients::rpcs! { $client, $package, ".": $($method($request) -> $package::$response;)+ }
    };
}

/// [`rpcs`] for server-streaming RPCs: each answers the stream of its response messages.
macro_rules! server_streaming {
    ($client:ident, $package:ident: $($method:ident($request:ident) -> $response:ident;)+) => {
        $crate::clients::rpcs! {
            $client, $package, "; answers its stream.":
            $($method($request) -> tonic::Streaming<$package::$response>;)+
        }
    };
}

use caller;
use rpcs;
use server_streaming;
use unary;

/// What a caller can act on in a refused call: its code, its `ErrorInfo.reason` (empty when it
/// has none) and each `BadRequest` field violation as `field: description`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub reason: String,
    pub violations: Vec<String>,
}

/// The refusal a status carries.
pub fn refusal(status: &Status) -> Refusal {
    Refusal {
        code: status.code(),
        reason: crate::reason(status).unwrap_or_default(),
        violations: status
            .get_details_bad_request()
            .map(|bad| {
                bad.field_violations
                    .into_iter()
                    .map(|violation| format!("{}: {}", violation.field, violation.description))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
