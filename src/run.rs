//! What each subcommand does, wired from its arguments. `main` only calls these.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::OnceCell;
use tracing::{error, info};

use crate::admission::{Admission, ViolationSink};
use crate::audit::{AuditMetrics, Auditor};
use crate::check;
use crate::cli::{
    AuditArgs, AwsArgs, CheckArgs, CrdArgs, LogArgs, LogFormat, PolicySourceArgs, ScanArgs,
    ServeArgs,
};
use crate::cluster;
use crate::inventory::Inventory;
use crate::judging::{FactSource, Judge};
use crate::metrics::{AdmissionMetrics, WebhookMetrics};
use crate::policy::Options;
use crate::registry::{Registry, RegistryConfig, RegistryMetrics};
use crate::server::{self, Bound, Readiness, ServerConfig, TlsSource};

/// How often mounted certificate files are re-read.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long to wait between attempts to resolve AWS credentials at start-up.
const AWS_RETRY: Duration = Duration::from_secs(5);

/// Starts logging to stderr with `--log-level`, or `default` (see
/// [`crate::cli::Command::default_log_level`]) when it is not given.
pub fn init_tracing(log: &LogArgs, default: &str) {
    let level = log.log_level.as_deref().unwrap_or(default);
    let directives = crate::registry::quiet_sdk_logs(level);
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("ecr-guard: invalid --log-level {level:?} ({e}); using {default}");
        tracing_subscriber::EnvFilter::new(default)
    });
    // Colours only for a terminal: escape codes in a log file or collector are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match log.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn registry_config(aws: &AwsArgs) -> RegistryConfig {
    RegistryConfig {
        cache_ttl: aws.cache_ttl,
        negative_cache_ttl: aws.negative_cache_ttl,
        stale_ttl: aws.stale_ttl,
        lookup_timeout: aws.lookup_timeout,
        max_entries: aws.cache_capacity,
        max_concurrent_calls: usize::from(aws.max_concurrent_aws_calls),
        assume_roles: aws.assume_roles(),
        ..RegistryConfig::default()
    }
}

fn local_inventory(policies: &PolicySourceArgs) -> anyhow::Result<Arc<dyn Inventory>> {
    let inv = crate::inventory::files::inventory(
        &policies.policy_files,
        &policies.namespaces_files,
        &policies.namespace_labels,
    )?;
    Ok(Arc::new(inv))
}

/// The Kubernetes client for cluster mode (no `--policy-file`).
async fn cluster_client(policies: &PolicySourceArgs) -> anyhow::Result<kube::Client> {
    if !policies.namespace_labels.is_empty() || !policies.namespaces_files.is_empty() {
        anyhow::bail!(
            "--namespace-labels and --namespaces-file need --policy-file; without it policies \
             and namespace labels are read from the cluster"
        );
    }
    let client =
        cluster::client(policies.kubeconfig.as_deref(), policies.context.as_deref()).await?;
    Ok(client)
}

/// Policies and namespace labels for `check`: from files, or one read of the cluster.
async fn inventory(policies: &PolicySourceArgs) -> anyhow::Result<Arc<dyn Inventory>> {
    if policies.is_local() {
        return local_inventory(policies);
    }
    let client = cluster_client(policies).await?;
    let inventory = cluster::snapshot(client).await?;
    Ok(inventory)
}

/// Where `serve` gets policies and namespace labels, opened (every check that can
/// fail done) but not started.
enum ServeSource {
    /// Fixed, from files.
    Local(Arc<dyn Inventory>),
    /// Kept in sync with the cluster, which also gets Events and policy status.
    Cluster(kube::Client),
}

impl ServeSource {
    async fn open(policies: &PolicySourceArgs) -> anyhow::Result<Self> {
        if !policies.is_local() {
            return Ok(Self::Cluster(cluster_client(policies).await?));
        }
        let inventory = local_inventory(policies)?;
        for policy in inventory.policies().iter().filter(|p| !p.is_valid()) {
            let problems: Vec<String> = policy.problems().iter().map(ToString::to_string).collect();
            error!(policy = %policy.name, problems = %problems.join("; "), "invalid policy: it denies every request it applies to (fail closed)");
        }
        Ok(Self::Local(inventory))
    }

    /// The inventory, and where violations are reported. In cluster mode this
    /// starts watching the cluster and writing policy status and Events.
    fn start(self) -> (Arc<dyn Inventory>, Option<Arc<dyn ViolationSink>>) {
        match self {
            Self::Local(inventory) => (inventory, None),
            Self::Cluster(client) => {
                let cluster = cluster::start(client);
                (cluster.inventory, Some(cluster.events))
            }
        }
    }
}

/// `ecr-guard serve`. Every start-up step that can fail runs before any that has
/// an effect outside the process (writing `--write-ca`, watching the cluster and
/// writing to it), so a `serve` that cannot start changes nothing: a second one
/// on a busy port leaves the running one's CA file alone.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
            reload_interval: TLS_RELOAD_INTERVAL,
        },
        _ => TlsSource::SelfSigned {
            names: args.tls_sans.clone(),
            write_ca: args.write_ca.clone(),
        },
    };
    let config = ServerConfig {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        tls,
        client_ca: args.client_ca.clone(),
        shutdown_delay: args.shutdown_delay,
    };
    let bound = Bound::bind(&config).await?;
    let source = ServeSource::open(&args.policies).await?;
    bound.write_ca()?;
    let (inventory, sink) = source.start();

    let mut metrics_registry = prometheus_client::registry::Registry::default();
    let admission_metrics = AdmissionMetrics::default();
    admission_metrics.register(&mut metrics_registry);
    let registry_metrics = RegistryMetrics::default();
    registry_metrics.register(&mut metrics_registry);
    let webhook_metrics = WebhookMetrics::default();
    webhook_metrics.register(&mut metrics_registry);

    let readiness = Readiness::new(inventory.clone());
    let facts = Arc::new(LazyRegistry::new(
        registry_config(&args.aws),
        registry_metrics,
    ));
    {
        // Credentials are resolved before /readyz says ready, so the first review
        // pays no credential exchange; until then the admin port already answers.
        let (facts, readiness) = (facts.clone(), readiness.clone());
        tokio::spawn(async move {
            loop {
                match facts.get().await {
                    Ok(_) => {
                        readiness.set_aws_ready();
                        info!("AWS clients ready");
                        break;
                    }
                    Err(e) => {
                        error!(error = %e, "AWS not ready; retrying");
                        tokio::time::sleep(AWS_RETRY).await;
                    }
                }
            }
        });
    }
    let options = Options {
        dry_run: args.dry_run,
    };
    if args.dry_run {
        info!("--dry-run: Enforce policies report violations but deny nothing");
    }
    let judge = Judge::new(facts, options, args.aws.lookup_timeout);
    let mut admission = Admission::new(inventory, judge, admission_metrics);
    if let Some(sink) = sink {
        admission = admission.with_sink(sink);
    }
    let admission = Arc::new(admission);
    info!(
        webhook = %bound.webhook_addr()?,
        admin = %bound.admin_addr()?,
        "ecr-guard listening"
    );
    let webhook = server::webhook_router(admission, args.max_body_bytes, webhook_metrics);
    let admin = server::admin_router(readiness.clone(), Arc::new(metrics_registry));
    bound
        .run(webhook, admin, readiness, server::os_signals())
        .await;
    Ok(())
}

/// Reports the error that ended `serve`, once: as a log line in the chosen format
/// (so JSON logs stay JSON), or on plain stderr when the log filter drops errors.
pub fn report_fatal(error: &anyhow::Error) {
    if tracing::enabled!(tracing::Level::ERROR) {
        error!("{error:#}");
    } else {
        eprintln!("ecr-guard: {error:#}");
    }
}

/// The exit code of a terminal command: its own, or 2 (a usage, input or
/// set-up error, said once on stderr) when it could not run.
pub fn exit_code(result: anyhow::Result<i32>) -> i32 {
    result.unwrap_or_else(|e| {
        eprintln!("ecr-guard: {e:#}");
        2
    })
}

/// `ecr-guard check`; returns the exit code.
pub async fn check(args: CheckArgs) -> i32 {
    exit_code(check_inner(args).await)
}

async fn check_inner(args: CheckArgs) -> anyhow::Result<i32> {
    let units = check::units(&args)?;
    let inventory = inventory(&args.policies).await?;
    check::require_valid_policies(inventory.as_ref())?;
    let facts = Arc::new(LazyRegistry::new(
        registry_config(&args.aws),
        RegistryMetrics::default(),
    ));
    let judge = Judge::new(
        facts,
        Options {
            dry_run: args.dry_run,
        },
        args.aws.lookup_timeout,
    );
    let reports = check::decide_all(inventory.as_ref(), &judge, units).await;
    let mut out = std::io::stdout().lock();
    let code = check::print(&reports, args.output, &mut out, &mut std::io::stderr())
        .context("failed to write the report")?;
    out.flush().context("failed to write the report")?;
    Ok(code)
}

/// `ecr-guard scan`; returns the exit code (see [`crate::scan::exit_code`]).
pub async fn scan(args: ScanArgs) -> i32 {
    exit_code(scan_inner(args).await)
}

async fn scan_inner(args: ScanArgs) -> anyhow::Result<i32> {
    use crate::scan::report::{Prices, RegistryId};

    let inventory = inventory(&args.policies).await?;
    check::require_valid_policies(inventory.as_ref())?;
    let all = inventory.policies();
    let policies: Vec<&crate::policy::Policy> = match &args.namespace {
        None => all.iter().collect(),
        Some(namespace) => {
            crate::k8s_names::dns1123_label(namespace).map_err(|e| {
                anyhow::anyhow!("--namespace {namespace:?} is not a valid namespace name: {e}")
            })?;
            let info = inventory.namespace(namespace);
            if !info.known {
                eprintln!(
                    "ecr-guard: warning: namespace {namespace:?} is not in {}: judged by its name label alone",
                    inventory.namespace_source()
                );
            }
            crate::policy::applicable(&all, &info.labels)
        }
    };
    let concurrency = usize::from(args.concurrency);
    let config = RegistryConfig {
        lookup_timeout: args.call_timeout,
        max_concurrent_calls: concurrency,
        assume_roles: args.roles.assume_roles(),
        max_attempts: args.max_attempts,
        ..RegistryConfig::default()
    };
    let registry = Registry::from_env(config, RegistryMetrics::default()).await?;
    let own = registry.own_account().await.map_err(|e| {
        anyhow::anyhow!("could not learn ecr-guard's own account (sts:GetCallerIdentity): {e}")
    })?;
    let regions = if args.regions.is_empty() {
        match registry.default_region() {
            Some(region) => vec![region],
            None => anyhow::bail!("no region: give --region, or set AWS_REGION"),
        }
    } else {
        args.regions.clone()
    };
    let mut accounts = vec![own];
    accounts.extend(args.accounts.iter().cloned());
    accounts.sort();
    accounts.dedup();
    let mut registries: Vec<RegistryId> = accounts
        .iter()
        .flat_map(|account| {
            regions.iter().map(|region| RegistryId {
                account: account.clone(),
                region: region.clone(),
            })
        })
        .collect();
    registries.sort();
    registries.dedup();
    let settings = crate::scan::ScanSettings {
        registries,
        concurrency,
        prices: Prices {
            kms_key_monthly_usd: args.kms_key_monthly_usd,
            kms_request_usd_per_10k: args.kms_request_usd_per_10k,
            kms_requests_per_month: args.kms_requests_per_month,
        },
    };
    let progress = crate::scan::progress::Progress::on_stderr();
    let report = crate::scan::scan(&registry, &policies, &settings, &progress).await;
    for e in &report.errors {
        eprintln!(
            "ecr-guard: account {} region {}: {}: {}",
            e.account, e.region, e.api, e.message
        );
    }
    let text =
        crate::scan::render::render(&report, args.output).context("failed to render the report")?;
    match &args.output_file {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("failed to write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("failed to write the report")?;
        }
    }
    Ok(crate::scan::exit_code(&report))
}

/// `ecr-guard crd`.
pub fn crd(args: &CrdArgs) -> anyhow::Result<()> {
    let yaml = if args.policy_reports {
        crate::audit::crd::yaml()
    } else {
        crate::policy::crd_yaml().context("failed to render the CRD")?
    };
    print!("{yaml}");
    Ok(())
}

/// How often `audit` checks whether the cluster inventory has synced.
const SYNC_POLL: Duration = Duration::from_millis(200);

/// `ecr-guard audit`; returns the exit code (only `--once` returns).
pub async fn audit(args: AuditArgs) -> i32 {
    match audit_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            report_fatal(&e);
            2
        }
    }
}

async fn audit_inner(args: AuditArgs) -> anyhow::Result<i32> {
    if !args.pods_files.is_empty() {
        return audit_local(args).await;
    }
    // Pods always come from the cluster; policies from files or the cluster.
    let (client, inventory): (kube::Client, Arc<dyn Inventory>) = if args.policies.is_local() {
        let client = cluster::client(
            args.policies.kubeconfig.as_deref(),
            args.policies.context.as_deref(),
        )
        .await?;
        (client, local_inventory(&args.policies)?)
    } else {
        let client = cluster_client(&args.policies).await?;
        // Long-running: the watch syncs while the admin port already answers
        // (/healthz at once, /readyz once synced), see below.
        let inventory: Arc<dyn Inventory> = if args.once {
            cluster::snapshot(client.clone()).await?
        } else {
            cluster::watch(client.clone())
        };
        (client, inventory)
    };
    let mut config = registry_config(&args.aws);
    // Key facts (state, rotation) must be at most one cycle old: a key disabled
    // since the last cycle shows in the next.
    config.cache_ttl = config.cache_ttl.min(args.interval);
    let mut metrics_registry = prometheus_client::registry::Registry::default();
    let registry_metrics = RegistryMetrics::default();
    registry_metrics.register(&mut metrics_registry);
    let audit_metrics = AuditMetrics::default();
    audit_metrics.register(&mut metrics_registry);
    let facts = Arc::new(LazyRegistry::new(config, registry_metrics));
    let judge = Judge::new(
        facts,
        Options {
            dry_run: args.dry_run,
        },
        args.aws.lookup_timeout,
    );
    let auditor = Auditor {
        events: crate::audit::KeyWarnings::new(client.clone()),
        client,
        inventory: inventory.clone(),
        judge,
        excluded_namespaces: args.excluded_namespaces.clone(),
        // Half the interval: lookups spread out, with time left before the next cycle.
        spread: if args.once {
            Duration::ZERO
        } else {
            args.interval / 2
        },
        metrics: audit_metrics,
    };
    if args.once {
        let summary = auditor.cycle().await;
        print!("{summary}");
        return Ok(summary.exit_code());
    }
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.metrics_listen))?;
    let readiness = Readiness::new(inventory);
    // The audit answers no review: AWS readiness would gate nothing.
    readiness.set_aws_ready();
    let admin = server::admin_router(readiness, Arc::new(metrics_registry));
    info!(admin = %args.metrics_listen, interval = ?args.interval, "ecr-guard audit running");
    let cycles = async {
        // The first cycle waits for policies and namespaces (/readyz says so meanwhile).
        while !auditor.inventory.is_ready() {
            tokio::time::sleep(SYNC_POLL).await;
        }
        auditor.run(args.interval).await;
    };
    tokio::select! {
        () = cycles => {}
        served = axum::serve(listener, admin) => served.context("admin endpoint failed")?,
    }
    Ok(0)
}

/// `ecr-guard audit --once --pods-file …`: Pods and policies from files, facts
/// from AWS, the reports printed (clap made sure of --once and --policy-file).
async fn audit_local(args: AuditArgs) -> anyhow::Result<i32> {
    let inventory = local_inventory(&args.policies)?;
    check::require_valid_policies(inventory.as_ref())?;
    let pods = crate::audit::local::read_pods(&args.pods_files, &args.excluded_namespaces)?;
    let facts = Arc::new(LazyRegistry::new(
        registry_config(&args.aws),
        RegistryMetrics::default(),
    ));
    let judge = Judge::new(
        facts,
        Options {
            dry_run: args.dry_run,
        },
        args.aws.lookup_timeout,
    );
    let now = std::time::SystemTime::now();
    let judged = crate::audit::judge_pods(
        inventory.as_ref(),
        &judge,
        &AuditMetrics::default(),
        Duration::ZERO,
        pods,
        now,
    )
    .await;
    let mut out = std::io::stdout().lock();
    let code = crate::audit::local::print(judged, now, args.output, &mut out)
        .context("failed to write the reports")?;
    out.flush().context("failed to write the reports")?;
    Ok(code)
}

/// The AWS registry, built on first use: `check` runs that need no lookup need no
/// AWS credentials, and `serve` can answer its admin port while credentials resolve.
pub struct LazyRegistry {
    cell: OnceCell<Registry>,
    config: RegistryConfig,
    metrics: RegistryMetrics,
}

impl LazyRegistry {
    pub fn new(config: RegistryConfig, metrics: RegistryMetrics) -> Self {
        Self {
            cell: OnceCell::new(),
            config,
            metrics,
        }
    }

    pub async fn get(&self) -> Result<&Registry, crate::registry::Error> {
        self.cell
            .get_or_try_init(|| Registry::from_env(self.config.clone(), self.metrics.clone()))
            .await
    }
}

impl FactSource for LazyRegistry {
    fn lookup_all(
        &self,
        repositories: std::collections::BTreeSet<crate::image::EcrRepository>,
        deadline: tokio::time::Instant,
    ) -> futures::future::BoxFuture<
        '_,
        std::collections::HashMap<crate::image::EcrRepository, crate::policy::facts::Lookup>,
    > {
        // Once the registry exists, box only its lookup: the future of `get()`
        // holds AWS's configuration loader (~12 KB), and boxing it too cost a
        // copy of that much on every warm review.
        if let Some(registry) = self.cell.get() {
            return Box::pin(registry.lookup_all(repositories, deadline));
        }
        Box::pin(async move {
            match self.get().await {
                Ok(registry) => registry.lookup_all(repositories, deadline).await,
                Err(e) => {
                    // Every lookup fails as the setup did (no credentials:
                    // the hint says what to set, not "retry").
                    let failure = e.lookup_failure();
                    repositories
                        .into_iter()
                        .map(|repo| (repo, Err(failure.clone())))
                        .collect()
                }
            }
        })
    }
}
