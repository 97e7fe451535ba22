//! `ecr-guard serve` in-process on loopback ports, backed by a registry pointed at
//! moto (or the proxy in front of it), serving real HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ecr_guard::admission::{Admission, ViolationSink};
use ecr_guard::judging::Judge;
use ecr_guard::metrics::{AdmissionMetrics, WebhookMetrics};
use ecr_guard::policy::Options;
use ecr_guard::registry::{RegistryConfig, RegistryMetrics};
use ecr_guard::server::{self, Bound, Readiness, ServerConfig, Signal, TlsSource};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub struct Settings {
    /// EcrEncryptionPolicy documents (YAML, `---`-separated).
    pub policies: String,
    /// `NS:KEY=VALUE,…` as for `--namespace-labels`.
    pub namespaces: Vec<String>,
    pub dry_run: bool,
    pub lookup_timeout: Duration,
    pub max_body_bytes: usize,
    /// `--shutdown-delay`: how long [`Signal::Terminate`] keeps the webhook serving.
    pub shutdown_delay: Duration,
    pub tls: Option<TlsSource>,
    pub sink: Option<Arc<dyn ViolationSink>>,
    /// Cache TTLs, capacity and the AWS concurrency cap; its `lookup_timeout` is
    /// replaced by [`Settings::lookup_timeout`].
    pub registry: RegistryConfig,
    /// `--client-ca`: accept only clients with a certificate chaining to this PEM.
    pub client_ca: Option<PathBuf>,
}

impl Settings {
    pub fn new(policies: &str) -> Self {
        Self {
            policies: policies.to_string(),
            namespaces: Vec::new(),
            dry_run: false,
            lookup_timeout: Duration::from_secs(3),
            max_body_bytes: ecr_guard::cli::DEFAULT_MAX_BODY_BYTES,
            shutdown_delay: Duration::ZERO,
            tls: None,
            sink: None,
            registry: RegistryConfig::default(),
            client_ca: None,
        }
    }

    pub fn namespace(mut self, spec: &str) -> Self {
        self.namespaces.push(spec.to_string());
        self
    }
}

pub struct Webhook {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// PEM of the CA the serving certificate chains to.
    pub ca: String,
    signals: mpsc::Sender<Signal>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Webhook {
    /// Starts a webhook whose AWS endpoint is `aws_endpoint`.
    pub async fn start(aws_endpoint: &str, settings: Settings) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let policy_file = dir.path().join("policies.yaml");
        std::fs::write(&policy_file, &settings.policies).unwrap();
        let inventory: Arc<dyn ecr_guard::inventory::Inventory> = Arc::new(
            ecr_guard::inventory::files::inventory(&[policy_file], &[], &settings.namespaces)
                .expect("test policies load"),
        );

        let mut prometheus = prometheus_client::registry::Registry::default();
        let admission_metrics = AdmissionMetrics::default();
        admission_metrics.register(&mut prometheus);
        let registry_metrics = RegistryMetrics::default();
        registry_metrics.register(&mut prometheus);
        let webhook_metrics = WebhookMetrics::default();
        webhook_metrics.register(&mut prometheus);
        let config = RegistryConfig {
            lookup_timeout: settings.lookup_timeout,
            ..settings.registry.clone()
        };
        let registry = super::registry(aws_endpoint, config, registry_metrics);

        let ca_path = dir.path().join("ca.pem");
        let tls = settings.tls.clone().unwrap_or(TlsSource::SelfSigned {
            names: vec![],
            write_ca: Some(ca_path.clone()),
        });
        let server_config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            tls,
            client_ca: settings.client_ca.clone(),
            shutdown_delay: settings.shutdown_delay,
        };
        let bound = Bound::bind(&server_config).await.expect("bind");
        bound.write_ca().expect("write the CA");
        let (addr, admin) = (bound.webhook_addr().unwrap(), bound.admin_addr().unwrap());
        let ca = std::fs::read_to_string(&ca_path).unwrap_or_default();

        let readiness = Readiness::new(inventory.clone());
        readiness.set_aws_ready();
        let judge = Judge::new(
            Arc::new(registry),
            Options {
                dry_run: settings.dry_run,
            },
            settings.lookup_timeout,
        );
        let mut admission = Admission::new(inventory, judge, admission_metrics);
        if let Some(sink) = settings.sink {
            admission = admission.with_sink(sink);
        }
        let webhook = server::webhook_router(
            Arc::new(admission),
            settings.max_body_bytes,
            webhook_metrics,
        );
        let admin_router = server::admin_router(readiness.clone(), Arc::new(prometheus));
        let (signals, received) = mpsc::channel(4);
        let task = tokio::spawn(bound.run(webhook, admin_router, readiness, received));
        Self {
            addr,
            admin,
            ca,
            signals,
            task: Some(task),
            _dir: dir,
        }
    }

    /// Delivers `signal` as if the process had received it.
    pub async fn signal(&self, signal: Signal) {
        self.signals.send(signal).await.expect("server running");
    }

    /// Stops serving at once (SIGINT) and waits until in-flight reviews are done.
    pub async fn shutdown(mut self) {
        let _ = self.signals.send(Signal::Interrupt).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the server has stopped (after a signal).
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// The value of one exposed series on `/metrics`; 0 when not exposed yet.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse().expect("a number"))
            .unwrap_or(0.0)
    }

    /// GET on the admin port; (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        // Stop at once, as the server does when its signal sender goes away.
        let _ = self.signals.try_send(Signal::Interrupt);
    }
}
