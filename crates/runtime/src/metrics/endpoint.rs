//! The plain HTTP endpoint Prometheus scrapes: `GET /metrics` on `metrics_addr`.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::Metrics;

/// Serves `GET /metrics` on `addr` until `stop` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|| async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    )],
                    metrics.encode().await,
                )
            }),
        )
        .into_make_service();
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    Ok((local_addr, task))
}
