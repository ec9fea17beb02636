//! Calls without generated types: any method by its path, with protobuf bytes made by hand,
//! for tests that must cover every RPC of the descriptor set or send what no typed client can
//! (malformed or oversized messages).

use roster_runtime::Service;
use tonic::transport::Channel;

/// Passes protobuf bytes through untouched, so any method can be called without its types, or
/// with bytes its types would never encode.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Every method of every Roster service, read from the descriptor set that reflection serves,
/// so a new RPC is covered the day it is added.
pub fn every_method() -> Vec<(Service, String)> {
    methods()
        .into_iter()
        .map(|method| (method.service, method.path))
        .collect()
}

/// Calls the unary method at `path` (`/package.Service/Method`) with `message` as its request's
/// bytes, as `key`; returns the response's bytes.
pub async fn raw_unary(
    channel: &Channel,
    key: &str,
    path: &'static str,
    message: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    grpc.unary(
        crate::authed(key, message),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Calls `path` with one request message of `bytes` (a stream of one message, which every kind
/// of method accepts), bearing `key` when given; the response messages or the status.
pub async fn call(
    channel: &Channel,
    path: &str,
    key: Option<&str>,
    bytes: Vec<u8>,
) -> Result<Vec<Vec<u8>>, tonic::Status> {
    use futures::StreamExt;
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let mut request = tonic::Request::new(tokio_stream::iter(vec![bytes]));
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    let response = grpc
        .streaming(
            request,
            http::uri::PathAndQuery::try_from(path).unwrap(),
            RawCodec,
        )
        .await?;
    let mut stream = response.into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.next().await {
        messages.push(message?);
    }
    Ok(messages)
}

/// A method of the descriptor set with the full name of its request message.
#[derive(Clone, Debug)]
pub struct Method {
    pub service: Service,
    /// `/package.Service/Method`.
    pub path: String,
    /// `package.Message`, without the leading dot.
    pub input: String,
}

/// Every method of every Roster service with its request type.
pub fn methods() -> Vec<Method> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(roster_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in set.file {
        let package = file.package.clone().unwrap_or_default();
        let service = match package.as_str() {
            "roster.identity.v1" => Service::Identity,
            "roster.imports.v1" => Service::BulkImport,
            "roster.notification.v1" => Service::Notification,
            _ => continue,
        };
        for definition in file.service {
            for method in &definition.method {
                methods.push(Method {
                    service,
                    path: format!("/{package}.{}/{}", definition.name(), method.name()),
                    input: method.input_type().trim_start_matches('.').to_owned(),
                });
            }
        }
    }
    methods
}

/// Every message type of the descriptor set (the well-known types included), by full name.
fn message_types() -> std::collections::HashMap<String, prost_types::DescriptorProto> {
    use prost::Message;
    fn collect(
        prefix: &str,
        messages: &[prost_types::DescriptorProto],
        into: &mut std::collections::HashMap<String, prost_types::DescriptorProto>,
    ) {
        for message in messages {
            let name = format!("{prefix}.{}", message.name());
            collect(&name, &message.nested_type, into);
            into.insert(name, message.clone());
        }
    }
    let set = prost_types::FileDescriptorSet::decode(roster_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut types = std::collections::HashMap::new();
    for file in &set.file {
        collect(file.package(), &file.message_type, &mut types);
    }
    types
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One length-delimited field: its key, its length, its bytes.
fn length_delimited(number: i32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 12);
    put_varint(&mut out, ((number as u64) << 3) | 2);
    put_varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

/// For every string field of the message `input` — at the top and inside its message fields
/// (maps and repeated fields included), down to `depth` levels — a request that sets only that
/// field, to `value`: the field's path and the encoded request.
pub fn requests_with_each_string_field(
    input: &str,
    value: &str,
    depth: usize,
) -> Vec<(String, Vec<u8>)> {
    fn walk(
        types: &std::collections::HashMap<String, prost_types::DescriptorProto>,
        message: &str,
        value: &str,
        depth: usize,
        out: &mut Vec<(String, Vec<u8>)>,
    ) {
        use prost_types::field_descriptor_proto::Type;
        let Some(descriptor) = types.get(message) else {
            return;
        };
        for field in &descriptor.field {
            match field.r#type() {
                Type::String => out.push((
                    field.name().to_owned(),
                    length_delimited(field.number(), value.as_bytes()),
                )),
                Type::Message if depth > 1 => {
                    let mut inner = Vec::new();
                    let nested = field.type_name().trim_start_matches('.');
                    walk(types, nested, value, depth - 1, &mut inner);
                    out.extend(inner.into_iter().map(|(path, bytes)| {
                        (
                            format!("{}.{path}", field.name()),
                            length_delimited(field.number(), &bytes),
                        )
                    }));
                }
                _ => {}
            }
        }
    }
    let types = message_types();
    let mut out = Vec::new();
    walk(&types, input, value, depth, &mut out);
    out
}
