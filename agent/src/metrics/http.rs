//! The HTTP endpoint: `GET /metrics` (OpenMetrics text), `/healthz` (200
//! while the process runs) and `/readyz` (200 once the programs are attached
//! and the metadata is synced, else 503 naming what is missing).

use std::{future::Future, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::{net::TcpListener, sync::watch};

use super::{Error, Metrics};
use crate::model::Readiness;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `None` when ready, else one line saying what is missing.
fn not_ready_reason(readiness: &Readiness) -> Option<String> {
    let missing: Vec<&str> = [
        (!readiness.attached).then_some("kernel programs not attached"),
        (!readiness.metadata_synced).then_some("cluster metadata not synced"),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!missing.is_empty()).then(|| format!("not ready: {}\n", missing.join(", ")))
}

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: watch::Receiver<Readiness>,
}

/// Serves GET /metrics, /healthz (200 while the process runs), /readyz (200 when
/// `ready` holds true, else 503 with a one-line reason body) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let address = listener
        .local_addr()
        .map_err(|source| Error::LocalAddress { source })?;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready });
    tracing::info!(%address, "metrics endpoint listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { address, source })?;
    tracing::info!(%address, "metrics endpoint stopped");
    Ok(())
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let missing = not_ready_reason(&state.ready.borrow());
    match missing {
        None => "ready\n".into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
        sync::oneshot,
    };

    use super::*;
    use crate::{
        metrics::MetricsConfig,
        model::{Event, EventKind, Protocol},
        testkit::{mk_drop_event, mk_tuple},
    };

    /// A deadline for each step, so a hang fails instead of blocking.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// One HTTP/1.1 request; the status code and the body.
    async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String, String) {
        let exchange = async {
            let mut stream = TcpStream::connect(address).await.expect("connects");
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .await
                .expect("request sent");
            let mut response = Vec::new();
            stream
                .read_to_end(&mut response)
                .await
                .expect("response read");
            String::from_utf8(response).expect("UTF-8 response")
        };
        let response = tokio::time::timeout(DEADLINE, exchange)
            .await
            .expect("response within the deadline");
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        (status, head.to_string(), body.to_string())
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::new(MetricsConfig::default()));
        metrics.record(&Event::Drop(mk_drop_event(
            1,
            EventKind::New,
            mk_tuple([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, Protocol::Tcp),
        )));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("local address");
        let (ready_tx, ready_rx) = watch::channel(Readiness::default());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), ready_rx, async {
            let _ = stop_rx.await;
        }));

        let (status, head, body) = get(address, "/metrics").await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text"),
            "{head}"
        );
        assert!(
            body.contains(
                r#"dropscope_drops_total{reason="NETFILTER_DROP",verdict="none",namespace="none"} 1"#
            ),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");

        let (status, _, body) = get(address, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));

        let (status, _, body) = get(address, "/readyz").await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            "not ready: kernel programs not attached, cluster metadata not synced\n"
        );

        ready_tx.send_replace(Readiness {
            attached: true,
            metadata_synced: false,
        });
        let (status, _, body) = get(address, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "not ready: cluster metadata not synced\n")
        );

        ready_tx.send_replace(Readiness {
            attached: true,
            metadata_synced: true,
        });
        let (status, _, body) = get(address, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"));

        let (status, _, _) = get(address, "/nothing").await;
        assert_eq!(status, 404);

        stop_tx.send(()).expect("server still running");
        tokio::time::timeout(DEADLINE, server)
            .await
            .expect("server stops within the deadline")
            .expect("server task did not panic")
            .expect("server ended without error");
    }
}
