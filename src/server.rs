//! The HTTPS webhook endpoint and the plain-HTTP admin endpoint.
//!
//! `POST /validate` always answers a readable AdmissionReview with HTTP 200 (a
//! verdict sent as an HTTP error would make the API server apply failurePolicy
//! instead of showing the user why); every other answer of the webhook port is an
//! HTTP error with an AdmissionReview body saying why (see `server::webhook`).
//!
//! Shutdown (see [`Bound::run`]): on SIGTERM `/readyz` turns 503 at once while
//! reviews are still accepted and answered for the shutdown delay (the time the
//! API server takes to stop sending to this Pod); then the listener closes,
//! kept-alive connections are told to go (HTTP/2 GOAWAY, HTTP/1.1
//! `Connection: close`) and in-flight reviews finish, for up to [`DRAIN_TIMEOUT`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::inventory::Inventory;
use crate::tls::{self, Resolver, TlsError};
use linger::Lingering;

pub mod deadline;
mod linger;
mod webhook;

pub use webhook::webhook_router;

/// How long a client may take to finish the TLS handshake or send its headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight reviews, once the listener is closed,
/// before giving up on them: the longest the API server waits for a webhook
/// (`timeoutSeconds` is at most 30), so no review it still waits for is cut off.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// How long reviews are still accepted after SIGTERM (`/readyz` already 503).
    pub shutdown_delay: Duration,
}

/// Whether the webhook may be sent traffic: policies/namespaces synced, AWS
/// clients (with credentials) ready, and not shutting down.
pub struct Readiness {
    inventory: Arc<dyn Inventory>,
    aws: AtomicBool,
    stopping: AtomicBool,
}

impl Readiness {
    pub fn new(inventory: Arc<dyn Inventory>) -> Arc<Self> {
        Arc::new(Self {
            inventory,
            aws: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        })
    }

    pub fn set_aws_ready(&self) {
        self.aws.store(true, Ordering::Release);
    }

    /// From now on `/readyz` answers 503, for good.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// `None` when ready, else what is still missing.
    pub fn missing(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.inventory.is_ready() {
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

/// Sockets bound and TLS loaded: ready to serve. Split from [`Bound::run`] so the
/// caller (and tests) learn the actual addresses before serving. Binding has no
/// effect outside the process: the CA file is written by [`Bound::write_ca`],
/// after every other start-up step that can fail.
pub struct Bound {
    webhook: TcpListener,
    admin: TcpListener,
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    tls: TlsSource,
    /// The generated CA's PEM, to be written where `--write-ca` says.
    ca_pem: Option<String>,
    shutdown_delay: Duration,
}

impl Bound {
    /// Binds both ports, then loads (or generates) the certificate and the client
    /// CA. Writes nothing: a second `serve` on a busy port fails here, before it
    /// could overwrite the running server's `--write-ca` file.
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let webhook = bind(config.listen).await?;
        let admin = bind(config.metrics_listen).await?;
        let (key, ca_pem) = match &config.tls {
            TlsSource::Files { cert, key, .. } => (tls::load_files(cert, key)?, None),
            TlsSource::SelfSigned { names, .. } => {
                let (key, ca) = tls::self_signed(names)?;
                (key, Some(ca))
            }
        };
        let resolver = Resolver::new(key);
        let tls_config = tls::server_config(resolver.clone(), config.client_ca.as_deref())?;
        Ok(Self {
            webhook,
            admin,
            acceptor: TlsAcceptor::from(Arc::new(tls_config)),
            resolver,
            tls: config.tls.clone(),
            ca_pem,
            shutdown_delay: config.shutdown_delay,
        })
    }

    /// Writes the generated CA to `--write-ca`, if both exist. Call it after every
    /// other start-up step that can fail.
    pub fn write_ca(&self) -> Result<(), ServerError> {
        if let (
            TlsSource::SelfSigned {
                write_ca: Some(path),
                ..
            },
            Some(pem),
        ) = (&self.tls, &self.ca_pem)
        {
            tls::write_ca(path, pem)?;
            info!(path = %path.display(), "wrote the self-signed CA certificate");
        }
        Ok(())
    }

    pub fn webhook_addr(&self) -> std::io::Result<SocketAddr> {
        self.webhook.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Serves until told to stop by `signals`, then stops the way a rollout needs:
    ///
    /// 1. At the first signal `/readyz` answers 503 (`readiness` is the one the
    ///    admin router reports). After [`Signal::Terminate`] reviews are still
    ///    accepted and answered for the shutdown delay, while the API server learns
    ///    that this Pod is going; a second signal (or the sender going away) ends
    ///    the delay early. [`Signal::Interrupt`] skips it.
    /// 2. The listener closes; kept-alive connections are told to go (HTTP/2
    ///    GOAWAY, HTTP/1.1 `Connection: close` on the next answer, idle ones closed)
    ///    and in-flight reviews finish, for up to [`DRAIN_TIMEOUT`].
    pub async fn run(
        self,
        webhook: Router,
        admin: Router,
        readiness: Arc<Readiness>,
        signals: mpsc::Receiver<Signal>,
    ) {
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
        let stop_accepting = stop_accepting(signals, readiness, self.shutdown_delay);
        tokio::pin!(stop_accepting);
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
                () = &mut stop_accepting => break,
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
                    .serve_connection(TokioIo::new(Lingering::new(tls)), service)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }

        info!("shutting down: no new connections; draining in-flight reviews");
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

/// Resolves when the listener should close: at the first signal `/readyz` turns
/// 503; after [`Signal::Terminate`] the webhook keeps serving for `delay` more.
async fn stop_accepting(
    mut signals: mpsc::Receiver<Signal>,
    readiness: Arc<Readiness>,
    delay: Duration,
) {
    let first = signals.recv().await;
    readiness.set_stopping();
    if first != Some(Signal::Terminate) || delay.is_zero() {
        return;
    }
    info!(
        delay = %humantime::format_duration(delay),
        "not ready any more; still answering reviews for the shutdown delay"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = signals.recv() => info!("shutdown delay cut short"),
    }
}

/// What asks a running server to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (the kubelet): keep answering for the shutdown delay, then stop.
    Terminate,
    /// SIGINT (Ctrl-C in a terminal): stop without the delay.
    Interrupt,
}

/// SIGTERM and SIGINT as [`Signal`]s, for [`Bound::run`]. The handlers are
/// installed before this returns, so a signal sent right after is not lost.
pub fn os_signals() -> mpsc::Receiver<Signal> {
    let (sender, receiver) = mpsc::channel(4);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(e) => {
                error!(error = %e, "failed to listen for {name}");
                None
            }
        };
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        tokio::spawn(async move {
            loop {
                let signal = tokio::select! {
                    Some(()) = recv(&mut term) => {
                        info!("received SIGTERM");
                        Signal::Terminate
                    }
                    Some(()) = recv(&mut int) => {
                        info!("received SIGINT");
                        Signal::Interrupt
                    }
                    // Neither can end; waiting forever keeps the server running.
                    else => std::future::pending::<Signal>().await,
                };
                if sender.send(signal).await.is_err() {
                    break;
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            info!("received Ctrl-C");
            if sender.send(Signal::Interrupt).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    });
    receiver
}

/// The next delivery of a signal we listen for; never, for one we could not.
#[cfg(unix)]
async fn recv(stream: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match stream {
        Some(stream) => stream.recv().await,
        None => std::future::pending().await,
    }
}
