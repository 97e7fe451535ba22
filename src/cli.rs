//! Command-line interface. Every flag also reads an `ECR_GUARD_…` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::audit::local::AuditOutput;
use crate::registry::AssumeRoles;
use crate::registry::roles::{self, AccountRole, RoleTemplate};

/// Validating admission webhook that checks how the ECR repositories behind a
/// workload's images are encrypted.
#[derive(Debug, Parser)]
#[command(name = "ecr-guard", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook over HTTPS.
    Serve(Box<ServeArgs>),
    /// Judge images or manifests from a terminal or CI pipeline.
    Check(Box<CheckArgs>),
    /// Print the EcrEncryptionPolicy CustomResourceDefinition as YAML.
    Crd(CrdArgs),
    /// Re-judge the running Pods on an interval and publish PolicyReports.
    Audit(Box<AuditArgs>),
    /// Report how every repository of whole ECR registries is encrypted, what
    /// the policies say of each, and what the keys cost.
    Scan(Box<ScanArgs>),
}

#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Print the PolicyReport and ClusterPolicyReport CRDs (wgpolicyk8s.io/v1alpha2)
    /// instead, for clusters where Kyverno or Policy Reporter did not install them.
    #[arg(long)]
    pub policy_reports: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Time from the start of one cycle to the start of the next.
    #[arg(long, env = "ECR_GUARD_AUDIT_INTERVAL", value_parser = duration, default_value = "1h")]
    pub interval: Duration,
    /// Run one cycle, print a summary and exit: 0 when no enforced policy is
    /// violated, 1 when one is, 2 when the cycle or a lookup failed.
    #[arg(long)]
    pub once: bool,
    /// Namespaces whose Pods are never judged (the webhook's exclusions: its own
    /// namespace and kube-system); repeatable.
    #[arg(
        long = "exclude-namespace",
        env = "ECR_GUARD_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub excluded_namespaces: Vec<String>,
    /// Plain-HTTP address for /metrics, /healthz and /readyz (not with --once).
    #[arg(long, env = "ECR_GUARD_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Judge every Enforce policy as DryRun, as `serve --dry-run` does.
    #[arg(long, env = "ECR_GUARD_DRY_RUN")]
    pub dry_run: bool,
    /// Judge the Pods of this file instead of the cluster's (as `kubectl get pods
    /// -A -o yaml` or `-o json` prints them; a List or several documents);
    /// repeatable. Needs --once and --policy-file; the reports are printed, not written.
    #[arg(long = "pods-file", value_delimiter = ',', requires_all = ["once", "policy_files"])]
    pub pods_files: Vec<PathBuf>,
    /// With --pods-file: print a summary, or the PolicyReports as `kubectl get
    /// policyreport -A -o yaml` (or `-o json`) would show them.
    #[arg(long, short = 'o', value_enum, default_value_t = AuditOutput::Summary, requires = "pods_files")]
    pub output: AuditOutput,
    #[command(flatten)]
    pub policies: PolicySourceArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, global = true, env = "ECR_GUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `ecr_guard=debug,info`.
    /// Default: `info` for the long-running `serve` and `audit`, `warn` for the
    /// terminal commands (`check`, `scan`, `crd`), whose answer is on stdout.
    #[arg(long, global = true, env = "ECR_GUARD_LOG_LEVEL")]
    pub log_level: Option<String>,
}

impl Command {
    /// The log filter when `--log-level` is not given: a process that runs for
    /// days logs what it does; a command run from a terminal or CI says only
    /// what went wrong, beside its answer.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Self::Serve(_) | Self::Audit(_) => "info",
            Self::Check(_) | Self::Scan(_) | Self::Crd(_) => "warn",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where policies and namespace labels come from.
#[derive(Debug, Args, Clone)]
pub struct PolicySourceArgs {
    /// YAML file of EcrEncryptionPolicy objects (one or more documents); repeatable.
    /// Without it, policies and namespaces are read from the cluster.
    #[arg(
        long = "policy-file",
        env = "ECR_GUARD_POLICY_FILE",
        value_delimiter = ','
    )]
    pub policy_files: Vec<PathBuf>,
    /// Labels of a namespace when running from files: NS:KEY=VALUE[,KEY=VALUE…]
    /// (`NS:kubernetes.io/metadata.name=NS` for one with no labels of its own); repeatable. Names, keys and values
    /// follow Kubernetes' rules; a namespace given twice gets both sets of labels.
    #[arg(
        long = "namespace-labels",
        env = "ECR_GUARD_NAMESPACE_LABELS",
        value_delimiter = ';'
    )]
    pub namespace_labels: Vec<String>,
    /// Namespace objects as `kubectl get ns -o yaml` prints them; repeatable.
    #[arg(
        long = "namespaces-file",
        env = "ECR_GUARD_NAMESPACES_FILE",
        value_delimiter = ','
    )]
    pub namespaces_files: Vec<PathBuf>,
    /// Kubeconfig file (cluster mode); default: in-cluster, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "ECR_GUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (cluster mode).
    #[arg(long, env = "ECR_GUARD_CONTEXT")]
    pub context: Option<String>,
}

impl PolicySourceArgs {
    pub fn is_local(&self) -> bool {
        !self.policy_files.is_empty()
    }
}

/// AWS lookups and their cache.
#[derive(Debug, Args, Clone)]
pub struct AwsArgs {
    /// How long a repository's encryption facts, its key's facts, and a
    /// registry's pull-through cache rules and repository creation templates
    /// are cached.
    #[arg(long, env = "ECR_GUARD_CACHE_TTL", value_parser = duration, default_value = "10m")]
    pub cache_ttl: Duration,
    /// How long "repository not found" (also when a pull-through cache rule
    /// will create it: the repository itself is judged soon after its first
    /// pull) and "key cannot be described" are cached.
    #[arg(long, env = "ECR_GUARD_NEGATIVE_CACHE_TTL", value_parser = duration, default_value = "30s")]
    pub negative_cache_ttl: Duration,
    /// How long past its TTL a cached answer may be served while AWS is failing.
    #[arg(long, env = "ECR_GUARD_STALE_TTL", value_parser = duration, default_value = "1h")]
    pub stale_ttl: Duration,
    /// Budget for all AWS lookups of one review, retries included; keep it well
    /// below the webhook's timeoutSeconds.
    #[arg(long, env = "ECR_GUARD_LOOKUP_TIMEOUT", value_parser = duration, default_value = "3s")]
    pub lookup_timeout: Duration,
    /// Most AWS calls in flight at once; a quarter of them (at least one) is kept
    /// for KMS calls, so keys are not queued behind a burst of repository lookups.
    #[arg(long, env = "ECR_GUARD_MAX_CONCURRENT_AWS_CALLS", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_aws_calls: u16,
    /// Most repositories kept in the cache.
    #[arg(long, env = "ECR_GUARD_CACHE_CAPACITY", default_value_t = 50_000)]
    pub cache_capacity: u64,
    #[command(flatten)]
    pub roles: RoleArgs,
}

impl AwsArgs {
    /// The roles to assume (see [`RoleArgs`]).
    pub fn assume_roles(&self) -> AssumeRoles {
        self.roles.assume_roles()
    }
}

/// The roles for the repositories and keys of other AWS accounts (central
/// registry accounts): `serve`, `check`, `audit` and `scan` share them.
#[derive(Debug, Args, Clone)]
pub struct RoleArgs {
    /// Role to assume for the repositories and keys of every AWS account other
    /// than ecr-guard's own: an IAM role ARN with `{account}` as its account,
    /// e.g. `arn:aws:iam::{account}:role/ecr-guard-reader`. Without it (and
    /// without --assume-role), every call uses ecr-guard's own credentials.
    #[arg(long, env = "ECR_GUARD_ASSUME_ROLE_TEMPLATE", value_parser = RoleTemplate::parse)]
    pub assume_role_template: Option<RoleTemplate>,
    /// Role to assume for one account, ACCOUNT=ROLE_ARN (12-digit account id);
    /// wins over --assume-role-template; repeatable.
    #[arg(
        long = "assume-role",
        env = "ECR_GUARD_ASSUME_ROLE",
        value_delimiter = ',',
        value_parser = AccountRole::parse
    )]
    pub assume_roles: Vec<AccountRole>,
    /// External id sent with every AssumeRole (the `sts:ExternalId` the roles'
    /// trust policies require).
    #[arg(long, env = "ECR_GUARD_ASSUME_ROLE_EXTERNAL_ID", value_parser = roles::parse_external_id)]
    pub assume_role_external_id: Option<String>,
}

impl RoleArgs {
    /// The roles to assume, from the three flags.
    pub fn assume_roles(&self) -> AssumeRoles {
        AssumeRoles {
            template: self.assume_role_template.clone(),
            external_id: self.assume_role_external_id.clone(),
            ..AssumeRoles::default()
        }
        .with_account_roles(self.assume_roles.iter().cloned())
    }
}

/// Default `--max-body-bytes`: 7 MiB, controller-runtime's limit and reasoning
/// (pkg/webhook/admission/http.go): the API server takes write bodies of up to
/// 3 MiB, an UPDATE review carries the object twice (new and old, each up to
/// 3 MiB as JSON; etcd keeps up to 1.5 MiB of it, encoded) and the rest of a
/// review stays under 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 7 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address for POST /validate.
    #[arg(long, env = "ECR_GUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain; reloaded when the file changes. Without it (and
    /// --tls-key) a self-signed certificate is generated.
    #[arg(long, env = "ECR_GUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "ECR_GUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS name or IP for the generated self-signed certificate; repeatable.
    #[arg(
        long = "tls-san",
        env = "ECR_GUARD_TLS_SAN",
        value_delimiter = ',',
        conflicts_with = "tls_cert"
    )]
    pub tls_sans: Vec<String>,
    /// Where to write the generated certificate's PEM (the CA bundle a client trusts).
    #[arg(long, env = "ECR_GUARD_WRITE_CA", conflicts_with = "tls_cert")]
    pub write_ca: Option<PathBuf>,
    /// Accept only clients presenting a certificate that chains to this PEM CA (mutual TLS).
    #[arg(long, env = "ECR_GUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Plain-HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "ECR_GUARD_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Turn every Enforce policy into DryRun: report, never deny (the staging switch).
    #[arg(long, env = "ECR_GUARD_DRY_RUN")]
    pub dry_run: bool,
    /// Largest AdmissionReview body accepted, in bytes; larger ones get HTTP 413.
    /// The default admits every review an API server sends (see
    /// DEFAULT_MAX_BODY_BYTES).
    #[arg(long, env = "ECR_GUARD_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// After SIGTERM, how long reviews are still accepted and answered (while
    /// /readyz answers 503) before the listener closes and in-flight reviews drain:
    /// the time the API server takes to stop sending to a terminating Pod.
    /// SIGINT skips it.
    #[arg(long, env = "ECR_GUARD_SHUTDOWN_DELAY", value_parser = duration, default_value = "10s")]
    pub shutdown_delay: Duration,
    #[command(flatten)]
    pub policies: PolicySourceArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Image to judge as a Pod in --namespace; repeatable.
    #[arg(long = "image", env = "ECR_GUARD_IMAGE", value_delimiter = ',')]
    pub images: Vec<String>,
    /// YAML file of Pods and workloads (multi-document), each judged in its own
    /// namespace; `-` reads standard input; repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        env = "ECR_GUARD_FILENAME",
        value_delimiter = ','
    )]
    pub files: Vec<PathBuf>,
    /// Namespace for --image, and for manifests that name none [default: default].
    /// As with kubectl, a manifest naming another namespace is an error when -n is given.
    #[arg(long, short = 'n', env = "ECR_GUARD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', env = "ECR_GUARD_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Judge every Enforce policy as DryRun.
    #[arg(long, env = "ECR_GUARD_DRY_RUN")]
    pub dry_run: bool,
    #[command(flatten)]
    pub policies: PolicySourceArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// `ecr-guard scan`: see docs/scan.md.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Region to scan; repeatable [default: the configured region, AWS_REGION].
    #[arg(long = "region", env = "ECR_GUARD_REGION", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Account whose registry is scanned besides ecr-guard's own (always
    /// scanned); reached through --assume-role or --assume-role-template when
    /// one names it; repeatable.
    #[arg(
        long = "account",
        env = "ECR_GUARD_ACCOUNT",
        value_delimiter = ',',
        value_parser = account_id
    )]
    pub accounts: Vec<String>,
    /// Judge with the policies that select this namespace (and its labels from
    /// --namespace-labels, --namespaces-file or the cluster); without it every
    /// policy judges every repository, namespace selectors ignored.
    #[arg(long, short = 'n', env = "ECR_GUARD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', env = "ECR_GUARD_OUTPUT", value_enum, default_value_t = crate::scan::render::OutputFormat::Table)]
    pub output: crate::scan::render::OutputFormat,
    /// Write the report to this file instead of standard output.
    #[arg(long, env = "ECR_GUARD_OUTPUT_FILE")]
    pub output_file: Option<PathBuf>,
    /// Most AWS calls in flight at once (the webhook's default cap).
    #[arg(long, env = "ECR_GUARD_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Price of one customer-managed KMS key, USD per month (AWS's list price).
    #[arg(long, env = "ECR_GUARD_KMS_KEY_MONTHLY_USD", default_value_t = 1.0, value_parser = price)]
    pub kms_key_monthly_usd: f64,
    /// Price of 10,000 KMS requests, USD (AWS's list price for symmetric keys).
    #[arg(long, env = "ECR_GUARD_KMS_REQUEST_USD_PER_10K", default_value_t = 0.03, value_parser = price)]
    pub kms_request_usd_per_10k: f64,
    /// KMS requests a month made for the repositories' images (pushes and
    /// pulls), for the request cost; 0 (the default) is shown as an assumption.
    #[arg(long, env = "ECR_GUARD_KMS_REQUESTS_PER_MONTH", default_value_t = 0)]
    pub kms_requests_per_month: u64,
    /// Upper bound of one AWS call, retries included.
    #[arg(long, env = "ECR_GUARD_SCAN_CALL_TIMEOUT", value_parser = duration, default_value = "60s")]
    pub call_timeout: Duration,
    /// Attempts per AWS call: throttling and transient errors are retried
    /// with exponential backoff (the AWS SDK's standard mode).
    #[arg(long, env = "ECR_GUARD_SCAN_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    #[command(flatten)]
    pub roles: RoleArgs,
    #[command(flatten)]
    pub policies: PolicySourceArgs,
}

/// A 12-digit AWS account id.
fn account_id(s: &str) -> Result<String, String> {
    if roles::is_account_id(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not an AWS account id (12 digits)"))
    }
}

/// A price in USD: finite and not negative.
fn price(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!("{s:?} is not a price in USD (e.g. 1.00)")),
    }
}

/// Parses durations like `30s`, `10m`, `1h30m`, `500ms`.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration like 30s, 10m, 500ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_like_the_design_says() {
        let cli = Cli::try_parse_from([
            "ecr-guard",
            "serve",
            "--cache-ttl",
            "10m",
            "--lookup-timeout",
            "500ms",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.aws.cache_ttl, Duration::from_secs(600));
        assert_eq!(args.aws.lookup_timeout, Duration::from_millis(500));
        assert_eq!(args.aws.negative_cache_ttl, Duration::from_secs(30));
        let err = Cli::try_parse_from(["ecr-guard", "serve", "--cache-ttl", "ten"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a duration"), "{err}");
    }

    #[test]
    fn serve_defaults_admit_large_updates_and_wait_before_stopping() {
        let cli = Cli::try_parse_from(["ecr-guard", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.max_body_bytes, 7 * 1024 * 1024);
        assert_eq!(args.shutdown_delay, Duration::from_secs(10));
        let cli = Cli::try_parse_from(["ecr-guard", "serve", "--shutdown-delay", "0s"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.shutdown_delay, Duration::ZERO);
    }

    #[test]
    fn audit_defaults_to_hourly_cycles_outside_kube_system() {
        let cli = Cli::try_parse_from(["ecr-guard", "audit"]).unwrap();
        let Command::Audit(args) = cli.command else {
            panic!("audit")
        };
        assert_eq!(args.interval, Duration::from_secs(3600));
        assert!(!args.once);
        assert_eq!(args.excluded_namespaces, ["kube-system"]);
        let cli = Cli::try_parse_from([
            "ecr-guard",
            "audit",
            "--once",
            "--interval",
            "5m",
            "--exclude-namespace",
            "ecr-guard,kube-system",
        ])
        .unwrap();
        let Command::Audit(args) = cli.command else {
            panic!("audit")
        };
        assert!(args.once);
        assert_eq!(args.interval, Duration::from_secs(300));
        assert_eq!(args.excluded_namespaces, ["ecr-guard", "kube-system"]);
    }

    #[test]
    fn pods_file_needs_once_and_policy_file_and_output_needs_pods_file() {
        for args in [
            &[
                "ecr-guard",
                "audit",
                "--pods-file",
                "p.yaml",
                "--policy-file",
                "x.yaml",
            ][..],
            &["ecr-guard", "audit", "--pods-file", "p.yaml", "--once"][..],
            &["ecr-guard", "audit", "--once", "--output", "yaml"][..],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{args:?}"
            );
        }
        let cli = Cli::try_parse_from([
            "ecr-guard",
            "audit",
            "--once",
            "--pods-file",
            "a.yaml,b.yaml",
            "--policy-file",
            "p.yaml",
            "-o",
            "yaml",
        ])
        .unwrap();
        let Command::Audit(args) = cli.command else {
            panic!("audit")
        };
        assert_eq!(args.pods_files.len(), 2);
        assert_eq!(args.output, AuditOutput::Yaml);
    }

    #[test]
    fn tls_cert_needs_its_key() {
        let err = Cli::try_parse_from(["ecr-guard", "serve", "--tls-cert", "a.pem"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
