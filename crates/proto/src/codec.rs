//! The codec of every Roster RPC: prost's encoding, with a decode failure of a request reported
//! as the caller's mistake.
//!
//! tonic's prost codec answers any message that does not decode — a string field that is not
//! UTF-8, a truncated or garbled message — with INTERNAL, as if the server had failed, and
//! nothing is logged. A request that does not decode is a bad request: [`RosterCodec`] answers
//! INVALID_ARGUMENT naming the field where prost knows it (`invalid request: field
//! \`CreateProfileRequest.first_name\`: invalid string value: data is not UTF-8 encoded`), with a
//! `BadRequest` violation for that field, and logs the failure at debug inside the call's span,
//! which names the method.
//!
//! The generated clients share the codec. What they decode is a response, and a response that
//! does not decode is the server's fault: that stays INTERNAL. The two are told apart by the
//! message's name, which buf's STANDARD lint fixes: every RPC takes a `<Rpc>Request` and returns
//! a `<Rpc>Response`.

use std::collections::HashMap;
use std::marker::PhantomData;

use prost::{Message, Name};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

/// prost's encoding; a request that does not decode is INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct RosterCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for RosterCodec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for RosterCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RosterDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RosterDecoder {
            _message: PhantomData,
        }
    }
}

/// Decodes `U`, reporting a failure as [`decode_failure`] describes.
#[derive(Debug, Clone)]
pub struct RosterDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Name + Default> Decoder for RosterDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|error| decode_failure(U::NAME, &error))
    }
}

/// The status for a `message` (a message type's name) that did not decode: INVALID_ARGUMENT
/// for a request, INTERNAL for a response.
pub fn decode_failure(message: &str, error: &prost::DecodeError) -> Status {
    let failure = DecodeFailure::parse(&error.to_string());
    if !message.ends_with("Request") {
        return Status::internal(format!("invalid response {message}: {}", failure.text()));
    }
    tracing::debug!(request = message, error = %failure.text(), "request not decoded");
    let mut details = ErrorDetails::new();
    details.set_error_info("INVALID_ARGUMENT", "roster", HashMap::new());
    let text = match failure.fields() {
        Some(fields) => {
            details.add_bad_request_violation(fields, failure.description.clone());
            format!("invalid request: {}", failure.text())
        }
        None => format!(
            "invalid request: not a valid {message}: {}",
            failure.description
        ),
    };
    Status::with_error_details(Code::InvalidArgument, text, details)
}

/// A prost decode error taken apart: where it happened and what was wrong.
#[derive(Debug, PartialEq, Eq)]
struct DecodeFailure {
    /// `(message, field)` pairs from the outermost message inwards, e.g.
    /// `[("BatchUpsertProfilesRequest", "items"), ("ProfileInput", "first_name")]`.
    path: Vec<(String, String)>,
    /// prost's description, e.g. `invalid string value: data is not UTF-8 encoded`.
    description: String,
}

impl DecodeFailure {
    /// Reads prost's text, `failed to decode Protobuf message: Inner.field: Outer.field: what`
    /// (its only public form: the innermost location comes first).
    fn parse(text: &str) -> DecodeFailure {
        let mut rest = text
            .strip_prefix("failed to decode Protobuf message: ")
            .unwrap_or(text);
        let mut path = Vec::new();
        while let Some((head, tail)) = rest.split_once(": ") {
            let Some((message, field)) = head.split_once('.') else {
                break;
            };
            let identifier = |name: &str| {
                !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            };
            if !identifier(message) || !identifier(field) {
                break;
            }
            path.push((message.to_owned(), field.to_owned()));
            rest = tail;
        }
        path.reverse();
        DecodeFailure {
            path,
            description: rest.to_owned(),
        }
    }

    /// The field path below the request, `items.first_name`, when prost named one.
    fn fields(&self) -> Option<String> {
        (!self.path.is_empty()).then(|| {
            self.path
                .iter()
                .map(|(_, field)| field.as_str())
                .collect::<Vec<_>>()
                .join(".")
        })
    }

    /// `field \`Outer.items.first_name\`: what`, or only what was wrong.
    fn text(&self) -> String {
        match (self.path.first(), self.fields()) {
            (Some((outer, _)), Some(fields)) => {
                format!("field `{outer}.{fields}`: {}", self.description)
            }
            _ => self.description.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_locations_read_from_the_outermost_message_inwards() {
        let failure = DecodeFailure::parse(
            "failed to decode Protobuf message: ProfileInput.first_name: \
             BatchUpsertProfilesRequest.items: invalid string value: data is not UTF-8 encoded",
        );
        assert_eq!(failure.fields().as_deref(), Some("items.first_name"));
        assert_eq!(
            failure.text(),
            "field `BatchUpsertProfilesRequest.items.first_name`: invalid string value: data is \
             not UTF-8 encoded"
        );
    }

    #[test]
    fn a_request_that_does_not_decode_is_invalid_argument_naming_the_field() {
        // first_name (field 3, length-delimited) holding a byte that is never UTF-8.
        let error = crate::identity::v1::CreateProfileRequest::decode(&[0x1a, 0x01, 0xff][..])
            .expect_err("not UTF-8");
        let status = decode_failure(crate::identity::v1::CreateProfileRequest::NAME, &error);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: field `CreateProfileRequest.first_name`: invalid string value: \
             data is not UTF-8 encoded"
        );
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "first_name");
        assert!(
            violations[0].description.contains("UTF-8"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_truncated_request_is_invalid_argument_and_a_bad_response_internal() {
        // A length of 5 with one byte behind it.
        let error = crate::identity::v1::GetProfileRequest::decode(&[0x0a, 0x05, b'x'][..])
            .expect_err("truncated");
        let status = decode_failure(crate::identity::v1::GetProfileRequest::NAME, &error);
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with("invalid request:"),
            "{status:?}"
        );
        let status = decode_failure(crate::identity::v1::GetProfileResponse::NAME, &error);
        assert_eq!(status.code(), Code::Internal, "{status:?}");
    }
}
