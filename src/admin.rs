//! The admin listener: plain HTTP serving `/metrics` (the counters of `metrics`),
//! `/healthz` (alive) and `/readyz` (the backend can take requests).

use crate::body::{self, Body};
use crate::metrics::get;
use crate::state::{Backend, Shared, State};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::Duration;

/// `/readyz`: can the backend take requests? Upstreams: at least one answers a TCP
/// connect within a second. Bundled registry: its storage folder is there.
pub async fn backend_ready(state: &State) -> Result<(), String> {
    match &state.backend {
        Backend::Upstream(pool) => {
            for peer in pool.peers() {
                let host = peer
                    .base
                    .host()
                    .unwrap_or("")
                    .trim_matches(|c| c == '[' || c == ']')
                    .to_string();
                let port =
                    peer.base
                        .port_u16()
                        .unwrap_or(if peer.base.scheme_str() == Some("https") {
                            443
                        } else {
                            80
                        });
                let connect = tokio::net::TcpStream::connect((host.as_str(), port));
                if let Ok(Ok(_)) =
                    tokio::time::timeout(std::time::Duration::from_secs(1), connect).await
                {
                    return Ok(());
                }
            }
            Err("no upstream accepts connections".into())
        }
        Backend::Registry(r) => {
            use crate::registry::storage::Storage as _;
            r.storage().ready().await
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, s: String) -> Response<Body> {
    let mut r = Response::new(body::full(s));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Serve `/metrics`, `/healthz` (alive) and `/readyz` (listeners bound and backend
/// reachable) on a plain-HTTP listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    let r = match req.uri().path() {
                        "/metrics" => text(
                            StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            get().encode(),
                        ),
                        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
                        "/readyz" => match backend_ready(&state.load_full()).await {
                            Ok(()) => text(StatusCode::OK, "text/plain", "ready\n".into()),
                            Err(why) => text(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "text/plain",
                                format!("not ready: {why}\n"),
                            ),
                        },
                        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
                    };
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
