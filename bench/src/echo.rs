//! The bare tonic baseline of the CheckUsername benchmark: a unary echo service served by a
//! plain `tonic::transport::Server` — no tower layers, no authentication, no database — on the
//! same runtime as the load generator, as Roster's in-process identity server is.

use std::net::SocketAddr;

use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The generated code of `proto/echo.proto`.
pub mod pb {
    tonic::include_proto!("roster.bench.v1");
}

use pb::echo_service_server::{EchoService, EchoServiceServer};

struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(
        &self,
        request: Request<pb::EchoRequest>,
    ) -> Result<Response<pb::EchoResponse>, Status> {
        Ok(Response::new(pb::EchoResponse {
            text: request.into_inner().text,
        }))
    }
}

/// A running echo server; it stops when this value is dropped.
pub struct EchoServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl EchoServer {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // TCP_NODELAY as Roster's servers set it, so the two differ only above the socket.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(EchoServiceServer::new(Echo))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            stop: Some(stop),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
