//! The HTTP endpoint: `GET /metrics`, `/healthz` (200 while the process
//! runs) and `/readyz` (200 once the programs are attached and the metadata
//! is synced, else 503 naming what is missing).
//!
//! `/metrics` negotiates its format from the `Accept` header: OpenMetrics
//! text when the scraper asks for `application/openmetrics-text` (as
//! Prometheus does), else the classic text format 0.0.4 (what `curl`,
//! `promtool check metrics` and older scrapers read).

use std::{future::Future, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::{net::TcpListener, sync::watch};

use super::{Error, Metrics, classic};
use crate::model::Readiness;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type a scraper names to ask for OpenMetrics.
const OPENMETRICS_MEDIA_TYPE: &str = "application/openmetrics-text";

/// The exposition formats `/metrics` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// OpenMetrics text 1.0.0, as the registry encodes it.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4.
    Classic,
}

impl Format {
    /// The format a request asks for, from its `Accept` header values:
    /// OpenMetrics when an `application/openmetrics-text` range is
    /// acceptable (q above 0) and weighs at least as much as every range
    /// the classic format matches (`text/plain`, `text/*`, `*/*`); the
    /// classic format otherwise, also without an `Accept` header. A `q`
    /// that does not parse counts as 1.
    fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Self {
        let mut openmetrics = 0.0_f32;
        let mut classic = 0.0_f32;
        for range in accept.into_iter().flat_map(|value| value.split(',')) {
            let mut parts = range.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or_default();
            let weight = parts
                .filter_map(|parameter| parameter.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, value)| value.trim().parse().unwrap_or(1.0));
            if media_type.eq_ignore_ascii_case(OPENMETRICS_MEDIA_TYPE) {
                openmetrics = openmetrics.max(weight);
            } else if ["text/plain", "text/*", "*/*"]
                .iter()
                .any(|classic_range| media_type.eq_ignore_ascii_case(classic_range))
            {
                classic = classic.max(weight);
            }
        }
        if openmetrics > 0.0 && openmetrics >= classic {
            Self::OpenMetrics
        } else {
            Self::Classic
        }
    }
}

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

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok());
    let (encoded, content_type) = match Format::negotiate(accept) {
        Format::OpenMetrics => (state.metrics.encode(), OPENMETRICS),
        Format::Classic => (state.metrics.encode_classic(), classic::CONTENT_TYPE),
    };
    match encoded {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::VARY, "accept"),
            ],
            text,
        )
            .into_response(),
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

    /// One HTTP/1.1 request; the status code, the head and the body.
    async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String, String) {
        get_with(address, path, "").await
    }

    /// One HTTP/1.1 request with extra header lines (each ending in
    /// `\r\n`); the status code, the head and the body.
    async fn get_with(
        address: std::net::SocketAddr,
        path: &str,
        headers: &str,
    ) -> (u16, String, String) {
        let exchange = async {
            let mut stream = TcpStream::connect(address).await.expect("connects");
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n"
            );
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

    #[test]
    fn the_accept_header_chooses_the_format() {
        use Format::{Classic, OpenMetrics};
        for (accept, expected, why) in [
            (vec![], Classic, "no Accept header"),
            (vec!["*/*"], Classic, "anything: the classic format"),
            (vec!["text/plain"], Classic, "the classic format by name"),
            (
                vec!["text/plain;version=0.0.4;q=1.0"],
                Classic,
                "the classic format with a version",
            ),
            (
                vec![
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ],
                OpenMetrics,
                "Prometheus 2.x's header",
            ),
            (
                vec!["application/openmetrics-text; version=1.0.0; charset=utf-8"],
                OpenMetrics,
                "OpenMetrics alone",
            ),
            (
                vec!["Application/OpenMetrics-Text"],
                OpenMetrics,
                "media types are case-insensitive",
            ),
            (
                vec!["text/plain", "application/openmetrics-text"],
                OpenMetrics,
                "equal weights across two header values: the one asked by name",
            ),
            (
                vec!["text/plain;q=1, application/openmetrics-text;q=0.5"],
                Classic,
                "the classic format weighs more",
            ),
            (
                vec!["application/openmetrics-text;q=0"],
                Classic,
                "q=0 means not acceptable",
            ),
            (
                vec!["application/openmetrics-text;q=0.2, */*;q=0.1"],
                OpenMetrics,
                "OpenMetrics weighs more than anything",
            ),
            (
                vec!["application/openmetrics-text;q=oops"],
                OpenMetrics,
                "a q that does not parse counts as 1",
            ),
            (
                vec!["application/json"],
                Classic,
                "nothing the endpoint has: the classic format",
            ),
        ] {
            assert_eq!(
                Format::negotiate(accept.clone()),
                expected,
                "{why}: {accept:?}"
            );
        }
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

        let sample =
            r#"dropscope_drops_total{reason="NETFILTER_DROP",verdict="none",namespace="none"} 1"#;
        // Prometheus 2.x asks for OpenMetrics first.
        let (status, head, body) = get_with(
            address,
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n",
        )
        .await;
        assert_eq!(status, 200, "{head}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        assert!(head.contains("vary: accept"), "{head}");
        assert!(body.contains(sample), "{body}");
        assert!(body.contains("# TYPE dropscope_drops counter\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        // curl, promtool and older scrapers get the classic format.
        for accept in ["", "Accept: */*\r\n", "Accept: text/plain\r\n"] {
            let (status, head, body) = get_with(address, "/metrics", accept).await;
            assert_eq!(status, 200, "{accept:?}: {head}");
            let head = head.to_ascii_lowercase();
            assert!(
                head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
                "{accept:?}: {head}"
            );
            assert!(head.contains("vary: accept"), "{head}");
            assert!(body.contains(sample), "{body}");
            assert!(
                body.contains("# TYPE dropscope_drops_total counter\n"),
                "{body}"
            );
            assert!(!body.contains("# EOF"), "{body}");
        }

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
