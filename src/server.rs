//! The HTTPS webhook endpoint and the plain-HTTP admin endpoint.
//!
//! `POST /validate` always answers a readable AdmissionReview with HTTP 200 (a
//! verdict sent as an HTTP error would make the API server apply failurePolicy
//! instead of showing the user why); only a body that is not a v1 AdmissionReview
//! gets 400, an oversize one 413, a wrong path 404 and a wrong method 405.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kube::core::admission::AdmissionResponse;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::admission::Admission;
use crate::inventory::Inventory;
use crate::tls::{self, Resolver, TlsError};

/// How long a client may take to finish the TLS handshake or send its headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight reviews before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// PEM files, re-read every `reload_interval`.
    Files {
        cert: PathBuf,
        key: PathBuf,
        reload_interval: Duration,
    },
    /// A generated CA + certificate for localhost, 127.0.0.1 and `names`; the CA PEM
    /// written to `write_ca` when given.
    SelfSigned {
        names: Vec<String>,
        write_ca: Option<PathBuf>,
    },
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls: TlsSource,
    pub client_ca: Option<PathBuf>,
    pub max_body_bytes: usize,
}

/// Whether the webhook may be sent traffic: policies/namespaces synced and AWS
/// clients (with credentials) ready.
pub struct Readiness {
    inventory: Arc<dyn Inventory>,
    aws: AtomicBool,
}

impl Readiness {
    pub fn new(inventory: Arc<dyn Inventory>) -> Arc<Self> {
        Arc::new(Self {
            inventory,
            aws: AtomicBool::new(false),
        })
    }

    pub fn set_aws_ready(&self) {
        self.aws.store(true, Ordering::Release);
    }

    /// `None` when ready, else what is still missing.
    pub fn missing(&self) -> Option<&'static str> {
        if !self.inventory.is_ready() {
            Some("policies and namespaces not synced yet")
        } else if !self.aws.load(Ordering::Acquire) {
            Some("AWS clients and credentials not ready yet")
        } else {
            None
        }
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Arc<Readiness>,
    metrics: Arc<MetricsRegistry>,
}

/// The admin endpoint: `/healthz`, `/readyz`, `/metrics`, plain HTTP.
pub fn admin_router(readiness: Arc<Readiness>, metrics: Arc<MetricsRegistry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { readiness, metrics })
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.readiness.missing() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(s): State<AdminState>) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &s.metrics) {
        error!(error = %e, "failed to encode metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The webhook endpoint: `POST /validate`.
pub fn webhook_router(admission: Arc<Admission>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(admission)
}

async fn validate(State(admission): State<Arc<Admission>>, body: Bytes) -> Response {
    match admission.review_bytes(&body).await {
        Ok(outcome) => axum::Json(outcome.review).into_response(),
        Err(bad) => {
            warn!(error = %bad, "unreadable admission request");
            let review = AdmissionResponse::invalid(bad.to_string()).into_review();
            (StatusCode::BAD_REQUEST, axum::Json(review)).into_response()
        }
    }
}

/// Sockets bound and TLS loaded: ready to serve. Split from [`Bound::run`] so the
/// caller (and tests) learn the actual addresses before serving.
pub struct Bound {
    webhook: TcpListener,
    admin: TcpListener,
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    tls: TlsSource,
}

impl Bound {
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        let (key, ca_pem) = match &config.tls {
            TlsSource::Files { cert, key, .. } => (tls::load_files(cert, key)?, None),
            TlsSource::SelfSigned { names, .. } => {
                let (key, ca) = tls::self_signed(names)?;
                (key, Some(ca))
            }
        };
        if let (
            TlsSource::SelfSigned {
                write_ca: Some(path),
                ..
            },
            Some(pem),
        ) = (&config.tls, &ca_pem)
        {
            tls::write_ca(path, pem)?;
            info!(path = %path.display(), "wrote the self-signed CA certificate");
        }
        let resolver = Resolver::new(key);
        let tls_config = tls::server_config(resolver.clone(), config.client_ca.as_deref())?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        Ok(Self {
            webhook: bind(config.listen).await?,
            admin: bind(config.metrics_listen).await?,
            acceptor: TlsAcceptor::from(Arc::new(tls_config)),
            resolver,
            tls: config.tls.clone(),
        })
    }

    pub fn webhook_addr(&self) -> std::io::Result<SocketAddr> {
        self.webhook.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// reviews finish (up to a bound) and returns.
    pub async fn run(self, webhook: Router, admin: Router, shutdown: impl Future<Output = ()>) {
        let reload = match self.tls {
            TlsSource::Files {
                cert,
                key,
                reload_interval,
            } => Some(tokio::spawn(tls::reload_loop(
                self.resolver.clone(),
                cert,
                key,
                reload_interval,
            ))),
            TlsSource::SelfSigned { .. } => None,
        };
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(async move {
            let served = axum::serve(self.admin, admin)
                .with_graceful_shutdown(async {
                    let _ = admin_stopped.await;
                })
                .await;
            if let Err(e) = served {
                error!(error = %e, "admin endpoint failed");
            }
        });

        info!(addr = ?self.webhook.local_addr().ok(), "serving the webhook over HTTPS");
        let graceful = GracefulShutdown::new();
        let service = TowerToHyperService::new(webhook);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT);
        let builder = Arc::new(builder);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.webhook.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "failed to accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let service = service.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let conn = builder
                    .serve_connection(TokioIo::new(tls), service)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }

        info!("shutting down: draining in-flight reviews");
        drop(self.webhook);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("gave up waiting for in-flight reviews");
        }
        let _ = stop_admin.send(());
        let _ = admin_task.await;
        if let Some(task) = reload {
            task.abort();
        }
        info!("stopped");
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "failed to listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("received SIGINT"),
        () = term => info!("received SIGTERM"),
    }
}
