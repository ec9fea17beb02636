//! The methods a server hosts, read from the descriptor sets with their streaming type, and the
//! labels each one's calls are counted under: any other path is counted as `unknown`.

use std::collections::{HashMap, HashSet};

use prometheus_client::encoding::EncodeLabelSet;
use tonic::Code;

use super::codes::grpc_code_label;
use crate::descriptors::declared_methods;

/// The label value of every part of a call to a path the server does not host.
const UNKNOWN: &str = "unknown";

/// The labels naming a method: what every gRPC series but `grpc_server_handled_total` has.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CallLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

impl MethodLabels {
    pub(super) fn unknown() -> Self {
        Self {
            grpc_type: UNKNOWN,
            grpc_service: UNKNOWN.to_owned(),
            grpc_method: UNKNOWN.to_owned(),
        }
    }

    pub(super) fn with_code(&self, code: Code) -> CallLabels {
        CallLabels {
            grpc_type: self.grpc_type,
            grpc_service: self.grpc_service.clone(),
            grpc_method: self.grpc_method.clone(),
            grpc_code: grpc_code_label(code),
        }
    }
}

/// How a method streams, as go-grpc-middleware's `grpc_type` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcType {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    /// The type of a method whose request (`client_streaming`) and response
    /// (`server_streaming`) are, or are not, streams.
    pub fn of(client_streaming: bool, server_streaming: bool) -> Self {
        match (client_streaming, server_streaming) {
            (false, false) => Self::Unary,
            (true, false) => Self::ClientStream,
            (false, true) => Self::ServerStream,
            (true, true) => Self::BidiStream,
        }
    }

    /// The label value: `unary`, `client_stream`, `server_stream`, `bidi_stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ClientStream => "client_stream",
            Self::ServerStream => "server_stream",
            Self::BidiStream => "bidi_stream",
        }
    }
}

/// The methods a server hosts, by `/package.Service/Method` path, with their streaming type:
/// what the call series label by name. Any other path is counted as `unknown`.
#[derive(Clone, Debug, Default)]
pub struct HostedMethods {
    methods: HashMap<String, (GrpcType, MethodLabels)>,
}

impl HostedMethods {
    /// Whether `path` is a hosted method.
    pub fn contains(&self, path: &str) -> bool {
        self.methods.contains_key(path)
    }

    /// The streaming type of the hosted method at `path`.
    pub fn grpc_type(&self, path: &str) -> Option<GrpcType> {
        self.methods.get(path).map(|(grpc_type, _)| *grpc_type)
    }

    pub(super) fn labels(&self, path: &str) -> MethodLabels {
        self.methods
            .get(path)
            .map_or_else(MethodLabels::unknown, |(_, labels)| labels.clone())
    }
}

/// The methods of `services` found in the encoded file descriptor sets, with the streaming type
/// their descriptors declare.
pub fn hosted_methods(descriptor_sets: &[&[u8]], services: &[&str]) -> HostedMethods {
    let services: HashSet<&str> = services.iter().copied().collect();
    let methods = declared_methods(descriptor_sets)
        .into_iter()
        .filter(|method| services.contains(method.service.as_str()))
        .map(|method| {
            let grpc_type = GrpcType::of(
                method.descriptor.client_streaming(),
                method.descriptor.server_streaming(),
            );
            let labels = MethodLabels {
                grpc_type: grpc_type.as_str(),
                grpc_service: method.service.clone(),
                grpc_method: method.descriptor.name().to_owned(),
            };
            (method.path(), (grpc_type, labels))
        })
        .collect();
    HostedMethods { methods }
}
