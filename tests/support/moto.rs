//! A moto server (the ECR/KMS emulator from PyPI) on a free loopback port, and
//! helpers that seed it through the real AWS API.
//!
//! What moto 5.2.5 cannot model, and how the tests treat it:
//! - AWS-managed KMS keys. Every key reports `KeyManager=CUSTOMER`, and a
//!   repository created with `KMS` and no key gets a made-up `kmsKey` ARN that
//!   does not exist in moto's KMS (`DescribeKey` → `NotFoundException`). On AWS
//!   that ARN is the `aws/ecr` key, which reports `KeyManager=AWS`. Tests assert
//!   what the code does with moto's answer (an unknown key); for the AWS-managed
//!   path a test has the proxy answer `DescribeKey` the way AWS does
//!   (`proxy::Fault::Answer`), in the open, rather than bending the code.
//! - `KMS_DSSE` without a key: moto omits `kmsKey` altogether (AWS names the
//!   `aws/ecr` key).
//! - `DisableKey`/`ScheduleKeyDeletion` take the key id; moto fails with a 500 on
//!   the ARN.
//! - Accounts: moto's default account is [`ACCOUNT`]; `CreateRepository` with a
//!   `registryId` seeds a repository in another account *as the default
//!   account sees it*. moto keeps each account's resources apart: credentials
//!   from `AssumeRole` into `arn:aws:iam::B:role/x` act as account B (moto does
//!   not need the role to exist, and enforces no trust policy), and what they
//!   create is invisible to the default account's credentials
//!   (`RepositoryNotFoundException`, `NotFoundException`). [`Moto::as_account`]
//!   seeds that way. A refused `AssumeRole` is the test proxy's to answer
//!   (`proxy::Fault::assume_role_denied`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecr::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_ecr::types::{EncryptionConfiguration, EncryptionType};
use ecr_guard::image::EcrRepository;

/// moto's default account id: what an unqualified `CreateRepository` uses.
pub const ACCOUNT: &str = "123456789012";

/// The region [`sdk_config`] defaults to.
pub const DEFAULT_REGION: &str = "us-east-1";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 3;

/// The AWS configuration tests use: static test credentials, `us-east-1`, and
/// every service at `endpoint` (moto, or a proxy in front of it). Built
/// explicitly, so the developer's own AWS environment never leaks in.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(DEFAULT_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "ecr-guard-tests",
        )))
        .build()
}

/// How to encrypt a repository seeded with [`Moto::create_repository`].
#[derive(Clone, Debug)]
pub enum Encryption {
    /// No encryption configuration in the request (ECR defaults to AES256).
    Unspecified,
    Aes256,
    /// `KMS` without a key: the AWS-managed `aws/ecr` key on AWS (see the
    /// module docs for what moto does instead).
    KmsDefaultKey,
    /// `KMS` with this key ARN.
    Kms(String),
    /// `KMS_DSSE` without a key.
    KmsDsseDefaultKey,
    /// `KMS_DSSE` with this key ARN.
    KmsDsse(String),
}

impl Encryption {
    fn configuration(&self) -> Option<EncryptionConfiguration> {
        let (encryption_type, key) = match self {
            Self::Unspecified => return None,
            Self::Aes256 => (EncryptionType::Aes256, None),
            Self::KmsDefaultKey => (EncryptionType::Kms, None),
            Self::Kms(key) => (EncryptionType::Kms, Some(key)),
            Self::KmsDsseDefaultKey => (EncryptionType::KmsDsse, None),
            Self::KmsDsse(key) => (EncryptionType::KmsDsse, Some(key)),
        };
        let mut builder = EncryptionConfiguration::builder().encryption_type(encryption_type);
        if let Some(key) = key {
            builder = builder.kms_key(key);
        }
        Some(builder.build().expect("encryption type is set"))
    }
}

/// A KMS key created in moto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub arn: String,
    pub region: String,
}

/// A running `moto_server`, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts `.venv/bin/moto_server` on a free loopback port and waits until it
    /// listens.
    pub async fn start() -> Self {
        let program = moto_server_path();
        let mut last_output = String::new();
        for _ in 0..START_ATTEMPTS {
            let spawn_program = program.clone();
            let started = tokio::task::spawn_blocking(move || start_once(&spawn_program))
                .await
                .expect("moto start-up thread panicked");
            match started {
                Ok(moto) => return moto,
                // Another test may have bound the port between our probe and
                // moto's bind: try another one.
                Err(output) => last_output = output,
            }
        }
        panic!(
            "moto_server did not start after {START_ATTEMPTS} attempts; its last output:\n{last_output}"
        );
    }

    /// [`start`](Self::start), seeded with the two repositories most webhook tests
    /// use, in us-east-1: `team/secure` (KMS with a customer key, rotation on) and
    /// `team/plain` (AES256).
    pub async fn start_with_team_repositories() -> Self {
        let moto = Self::start().await;
        let key = moto.create_key("us-east-1").await;
        moto.enable_key_rotation(&key).await;
        moto.create_repository("us-east-1", "team/secure", Encryption::Kms(key.arn.clone()))
            .await;
        moto.create_repository("us-east-1", "team/plain", Encryption::Aes256)
            .await;
        moto
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An ECR client for seeding, talking to moto directly.
    pub fn ecr(&self, region: &str) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::from_conf(
            aws_sdk_ecr::config::Builder::from(&sdk_config(&self.endpoint))
                .region(Region::new(region.to_owned()))
                .http_client(plain_http_client())
                .build(),
        )
    }

    /// A KMS client for seeding, talking to moto directly.
    pub fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&sdk_config(&self.endpoint))
                .region(Region::new(region.to_owned()))
                .http_client(plain_http_client())
                .build(),
        )
    }

    /// Creates a repository in moto's default account.
    pub async fn create_repository(
        &self,
        region: &str,
        name: &str,
        encryption: Encryption,
    ) -> EcrRepository {
        self.create_repository_in(ACCOUNT, region, name, encryption)
            .await
    }

    /// Creates a repository in `account` (ECR's `registryId`).
    pub async fn create_repository_in(
        &self,
        account: &str,
        region: &str,
        name: &str,
        encryption: Encryption,
    ) -> EcrRepository {
        self.ecr(region)
            .create_repository()
            .registry_id(account)
            .repository_name(name)
            .set_encryption_configuration(encryption.configuration())
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateRepository {name} in {account}/{region}: {e:?}"));
        repository(account, region, name)
    }

    /// What ECR reports as the repository's `kmsKey` (for the moto gaps above).
    pub async fn reported_kms_key(&self, repo: &EcrRepository) -> Option<String> {
        let output = self
            .ecr(&repo.region)
            .describe_repositories()
            .registry_id(&repo.account)
            .repository_names(&repo.name)
            .send()
            .await
            .expect("DescribeRepositories");
        output
            .repositories()
            .first()
            .and_then(|r| r.encryption_configuration())
            .and_then(|c| c.kms_key())
            .map(str::to_owned)
    }

    /// Creates a symmetric customer-managed key (rotation off, as on AWS).
    pub async fn create_key(&self, region: &str) -> Key {
        let output = self
            .kms(region)
            .create_key()
            .description("ecr-guard test key")
            .send()
            .await
            .expect("CreateKey");
        let metadata = output.key_metadata().expect("CreateKey returns metadata");
        Key {
            id: metadata.key_id().to_owned(),
            arn: metadata
                .arn()
                .expect("CreateKey returns the ARN")
                .to_owned(),
            region: region.to_owned(),
        }
    }

    pub async fn enable_key_rotation(&self, key: &Key) {
        self.kms(&key.region)
            .enable_key_rotation()
            .key_id(&key.id)
            .send()
            .await
            .expect("EnableKeyRotation");
    }

    pub async fn disable_key(&self, key: &Key) {
        self.kms(&key.region)
            .disable_key()
            .key_id(&key.id)
            .send()
            .await
            .expect("DisableKey");
    }

    /// Schedules deletion in 7 days (the minimum): the key is `PendingDeletion`.
    pub async fn schedule_key_deletion(&self, key: &Key) {
        self.kms(&key.region)
            .schedule_key_deletion()
            .key_id(&key.id)
            .pending_window_in_days(7)
            .send()
            .await
            .expect("ScheduleKeyDeletion");
    }
}

impl Moto {
    /// Seeding as `account`: through credentials from `AssumeRole` into a role
    /// of that account, so that what is created belongs to it (module docs).
    pub async fn as_account(&self, account: &str) -> AccountSeeder {
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&sdk_config(&self.endpoint))
                .http_client(plain_http_client())
                .build(),
        );
        let output = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/test-seeder"))
            .role_session_name("test-seeder")
            .send()
            .await
            .expect("AssumeRole into the account to seed");
        let c = output
            .credentials()
            .expect("AssumeRole returns credentials");
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "test-seeder",
        );
        AccountSeeder {
            account: account.to_owned(),
            sdk: sdk_config(&self.endpoint)
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(credentials))
                .http_client(plain_http_client())
                .build(),
        }
    }
}

/// Creates repositories and keys in one account of moto (see [`Moto::as_account`]).
pub struct AccountSeeder {
    account: String,
    sdk: SdkConfig,
}

impl AccountSeeder {
    fn ecr(&self, region: &str) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::from_conf(
            aws_sdk_ecr::config::Builder::from(&self.sdk)
                .region(Region::new(region.to_owned()))
                .build(),
        )
    }

    fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&self.sdk)
                .region(Region::new(region.to_owned()))
                .build(),
        )
    }

    pub async fn create_repository(
        &self,
        region: &str,
        name: &str,
        encryption: Encryption,
    ) -> EcrRepository {
        let output = self
            .ecr(region)
            .create_repository()
            .repository_name(name)
            .set_encryption_configuration(encryption.configuration())
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateRepository {name} as {}: {e:?}", self.account));
        let registry = output
            .repository()
            .and_then(|r| r.registry_id())
            .expect("CreateRepository names the registry");
        assert_eq!(registry, self.account, "seeded in the wrong account");
        repository(&self.account, region, name)
    }

    /// A symmetric customer-managed key of this account (rotation off).
    pub async fn create_key(&self, region: &str) -> Key {
        let output = self
            .kms(region)
            .create_key()
            .description("ecr-guard test key of another account")
            .send()
            .await
            .expect("CreateKey");
        let metadata = output.key_metadata().expect("CreateKey returns metadata");
        let arn = metadata
            .arn()
            .expect("CreateKey returns the ARN")
            .to_owned();
        assert!(arn.contains(&format!(":{}:key/", self.account)), "{arn}");
        Key {
            id: metadata.key_id().to_owned(),
            arn,
            region: region.to_owned(),
        }
    }

    pub async fn enable_key_rotation(&self, key: &Key) {
        self.kms(&key.region)
            .enable_key_rotation()
            .key_id(&key.id)
            .send()
            .await
            .expect("EnableKeyRotation");
    }
}

/// The repository the image `ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME` names.
pub fn repository(account: &str, region: &str, name: &str) -> EcrRepository {
    EcrRepository {
        account: account.to_owned(),
        region: region.to_owned(),
        name: name.to_owned(),
    }
}

fn plain_http_client() -> aws_sdk_ecr::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_http()
}

fn moto_server_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-tools.sh` (make test does it)",
        path.display()
    );
    path
}

/// Starts one moto on a probed port; `Err` with its output if it exits first.
fn start_once(program: &PathBuf) -> Result<Moto, String> {
    let port = super::free_port();
    let mut child = Command::new(program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));

    // moto (werkzeug) says " * Running on http://127.0.0.1:PORT" once it has
    // bound *its* socket: more reliable than connecting, which could reach
    // another test's server that won a port race. The thread keeps draining
    // stderr (one line per request) so moto never blocks on a full pipe.
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let ready = format!("Running on http://127.0.0.1:{port}");
    let mut output = String::new();
    loop {
        match lines_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
                if line.contains(&ready) {
                    return Ok(Moto {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    });
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                return Err(output);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "moto_server did not listen within {STARTUP_TIMEOUT:?}; its output:\n{output}"
                );
            }
        }
    }
}

/// DescribeKey's answer for the AWS-managed `aws/ecr` key, as KMS gives it:
/// moto has no AWS-managed keys, so the proxy answers with this in its place.
pub fn aws_ecr_key_metadata(arn: &str) -> String {
    let key_id = arn.rsplit('/').next().unwrap_or_default();
    serde_json::json!({
        "KeyMetadata": {
            "AWSAccountId": ACCOUNT,
            "KeyId": key_id,
            "Arn": arn,
            "CreationDate": 1.7e9,
            "Enabled": true,
            "Description": "Default key that protects my ECR data when no other key is defined",
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": "Enabled",
            "Origin": "AWS_KMS",
            "KeyManager": "AWS",
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "MultiRegion": false
        }
    })
    .to_string()
}
