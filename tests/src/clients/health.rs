//! The gRPC health service's typed client (it needs no key).

use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::TestServer;

/// `grpc.health.v1.Health` on one connection.
#[derive(Clone)]
pub struct Health {
    health: HealthClient<Channel>,
}

impl Health {
    /// A client of the health service on `channel`.
    pub fn new(channel: Channel) -> Health {
        Health {
            health: HealthClient::new(channel),
        }
    }

    /// A client of the health service of `server`.
    pub async fn connect(server: &TestServer) -> Health {
        Health::new(server.channel().await)
    }

    /// The status of `service` ("" for the server as a whole).
    pub async fn check(&self, service: &str) -> Result<ServingStatus, Status> {
        self.health
            .clone()
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|response| {
                ServingStatus::try_from(response.into_inner().status).expect("a known status")
            })
    }

    /// The stream of the status of `service` ("" for the server as a whole) and its changes.
    pub async fn watch(
        &self,
        service: &str,
    ) -> Result<tonic::Streaming<HealthCheckResponse>, Status> {
        self.health
            .clone()
            .watch(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }
}
