//! A small HTTP forward proxy in front of moto: counts requests by AWS operation
//! (the `X-Amz-Target` header of the JSON protocols ECR and KMS use, or the
//! `Action` of the query protocol STS uses) and can inject faults, so tests can see how many calls reached "AWS" and what
//! happens when AWS misbehaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub const DESCRIBE_REPOSITORIES: &str = "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories";
pub const DESCRIBE_KEY: &str = "TrentService.DescribeKey";
pub const GET_KEY_ROTATION_STATUS: &str = "TrentService.GetKeyRotationStatus";
/// STS operations, named by the `Action` of their form-encoded body.
pub const ASSUME_ROLE: &str = "AssumeRole";
pub const GET_CALLER_IDENTITY: &str = "GetCallerIdentity";
use super::pull_through::PullThrough;
pub use super::pull_through::{
    DESCRIBE_PULL_THROUGH_CACHE_RULES, DESCRIBE_REPOSITORY_CREATION_TEMPLATES,
};

/// What the proxy does instead of (or before) forwarding a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an AWS JSON error body of this `__type`.
    Error { status: u16, error_type: String },
    /// [`Fault::Error`] with the message AWS would give, for tests that show it.
    ErrorWithMessage {
        status: u16,
        error_type: String,
        message: String,
    },
    /// Never answer (a blackholed endpoint).
    Hang,
    /// Wait, then forward.
    Delay(Duration),
    /// Close the connection without answering.
    CloseConnection,
    /// Reset the connection (TCP RST: `SO_LINGER` 0, then close) without answering.
    Reset,
    /// Answer with this status and JSON body instead of moto: for what moto
    /// cannot model (AWS-managed keys), spelled out in the test that uses it.
    Answer { status: u16, body: String },
    /// Answer as the query protocol (STS) does when it refuses: this status
    /// and an `ErrorResponse` XML body with this `Code` and `Message`.
    QueryError {
        status: u16,
        code: String,
        message: String,
    },
    /// Answer with this status and XML body instead of moto (the query
    /// protocol's success shape, e.g. STS credentials a test chose).
    XmlAnswer { status: u16, body: String },
    /// Forward, then make the `<Expiration>` of the credentials STS answered
    /// with this far from now: a short session without waiting an hour.
    ExpireCredentialsIn(Duration),
}

impl Fault {
    pub fn error(status: u16, error_type: &str) -> Self {
        Self::Error {
            status,
            error_type: error_type.to_owned(),
        }
    }

    /// What ECR and KMS answer when they throttle.
    pub fn throttling() -> Self {
        Self::error(400, "ThrottlingException")
    }

    pub fn access_denied() -> Self {
        Self::error(400, "AccessDeniedException")
    }

    /// What KMS answers (HTTP 400, `AccessDeniedException` in `__type` and
    /// `x-amzn-ErrorType`, JSON body) when neither IAM nor the key policy lets
    /// the caller make `action` (e.g. `kms:GetKeyRotationStatus`) on `key_arn`:
    /// a key policy that allows `kms:DescribeKey` only, say.
    pub fn kms_access_denied(action: &str, key_arn: &str) -> Self {
        Self::ErrorWithMessage {
            status: 400,
            error_type: "AccessDeniedException".to_owned(),
            message: format!(
                "User: arn:aws:sts::123456789012:assumed-role/ecr-guard/webhook is not authorized \
                 to perform: {action} on resource: {key_arn} because no resource-based policy \
                 allows the {action} action"
            ),
        }
    }

    /// What STS answers (HTTP 403, `AccessDenied`) when the role's trust policy
    /// does not let the caller assume `role` (moto does not enforce trust
    /// policies). The message is the one AWS gives.
    pub fn assume_role_denied(role: &str) -> Self {
        Self::QueryError {
            status: 403,
            code: "AccessDenied".to_owned(),
            message: format!(
                "User: arn:aws:sts::123456789012:assumed-role/ecr-guard/webhook is not authorized \
                 to perform: sts:AssumeRole on resource: {role}"
            ),
        }
    }

    pub fn service_unavailable() -> Self {
        Self::error(503, "ServiceUnavailableException")
    }
}

#[derive(Debug)]
struct Rule {
    /// `None` matches every operation.
    target: Option<String>,
    /// Matches only requests whose body contains this text (e.g. one key's ARN).
    body_contains: Option<String>,
    fault: Fault,
}

/// Faults applied to a random share of requests (after the fixed rules).
#[derive(Debug)]
struct RandomFaults {
    faults: Vec<Fault>,
    /// The operations faulted; `None`: every operation.
    targets: Option<Vec<String>>,
    /// Share of requests faulted, in percent.
    percent: u64,
}

#[derive(Debug)]
struct State {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    counts: Mutex<HashMap<String, usize>>,
    /// Every request's operation, in the order they arrived.
    arrivals: Mutex<Vec<String>>,
    rules: Mutex<Vec<Rule>>,
    random: Mutex<Option<RandomFaults>>,
    /// Requests seen, the seed of the random choice.
    sequence: AtomicU64,
    faulted: Mutex<HashMap<&'static str, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Pull-through cache rules and creation templates, answered in moto's place.
    pull_through: Mutex<PullThrough>,
}

/// Counts a request as in flight while alive.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running proxy; stops (with its connections) on drop.
#[derive(Debug)]
pub struct Proxy {
    endpoint: String,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            counts: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(Vec::new()),
            rules: Mutex::new(Vec::new()),
            random: Mutex::new(None),
            sequence: AtomicU64::new(0),
            faulted: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            pull_through: Mutex::new(PullThrough::default()),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Self {
            endpoint,
            state,
            server,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Requests received for one operation (e.g. [`DESCRIBE_REPOSITORIES`]),
    /// faulted ones included.
    pub fn count(&self, target: &str) -> usize {
        self.state
            .counts
            .lock()
            .expect("counts")
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    /// The operations of all requests received, in order of arrival.
    pub fn arrivals(&self) -> Vec<String> {
        self.state.arrivals.lock().expect("arrivals").clone()
    }

    /// The most requests the proxy has been handling at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_counts(&self) {
        self.state.counts.lock().expect("counts").clear();
    }

    /// Applies `fault` to every request until [`clear_faults`](Self::clear_faults).
    pub fn set_fault(&self, fault: Fault) {
        self.state.rules.lock().expect("rules").push(Rule {
            target: None,
            body_contains: None,
            fault,
        });
    }

    /// Applies `fault` to one operation. Rules are matched in the order they
    /// were set; the first match wins.
    pub fn set_fault_for(&self, target: &str, fault: Fault) {
        self.state.rules.lock().expect("rules").push(Rule {
            target: Some(target.to_owned()),
            body_contains: None,
            fault,
        });
    }

    /// Applies `fault` to the requests of one operation whose body contains
    /// `needle` (a key ARN, a registry id), matched in order with the other rules.
    pub fn set_fault_for_body(&self, target: &str, needle: &str, fault: Fault) {
        self.state.rules.lock().expect("rules").push(Rule {
            target: Some(target.to_owned()),
            body_contains: Some(needle.to_owned()),
            fault,
        });
    }

    /// Faults `percent`% of requests (those no fixed rule matched), each with
    /// one of `faults` picked at random; the rest are forwarded. The choice is
    /// pseudo-random with a fixed seed, so runs are comparable.
    pub fn set_random_faults(&self, faults: Vec<Fault>, percent: u64) {
        *self.state.random.lock().expect("random") = Some(RandomFaults {
            faults,
            targets: None,
            percent,
        });
    }

    /// [`set_random_faults`](Self::set_random_faults) for these operations only.
    pub fn set_random_faults_for(&self, targets: &[&str], faults: Vec<Fault>, percent: u64) {
        *self.state.random.lock().expect("random") = Some(RandomFaults {
            faults,
            targets: Some(targets.iter().map(|t| (*t).to_owned()).collect()),
            percent,
        });
    }

    /// Removes fixed and random faults.
    pub fn clear_faults(&self) {
        self.state.rules.lock().expect("rules").clear();
        *self.state.random.lock().expect("random") = None;
    }

    /// The pull-through cache rules and creation templates the proxy answers
    /// with in moto's place (none until added), and the request-shape
    /// problems it saw.
    pub fn pull_through(&self) -> std::sync::MutexGuard<'_, PullThrough> {
        self.state.pull_through.lock().expect("pull-through state")
    }

    /// Requests answered with a fault so far, by kind of fault
    /// (`error`, `hang`, `delay`, `close`, `reset`, `answer`).
    pub fn faulted(&self) -> HashMap<&'static str, usize> {
        self.state.faulted.lock().expect("faulted").clone()
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    // Owned here so that aborting the server task drops (aborts) every connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // A second handle on the socket, for `Fault::Reset` to set SO_LINGER 0 on.
        let Ok((stream, socket)) = duplicate(stream) else {
            continue;
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service =
                service_fn(move |request| handle(Arc::clone(&state), Arc::clone(&socket), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
}

type ProxyResult = Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>>;

type SocketHandle = Arc<Mutex<Option<std::net::TcpStream>>>;

fn duplicate(
    stream: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, SocketHandle)> {
    let stream = stream.into_std()?;
    let copy = stream.try_clone()?;
    Ok((
        tokio::net::TcpStream::from_std(stream)?,
        Arc::new(Mutex::new(Some(copy))),
    ))
}

/// splitmix64: a well-mixed pseudo-random number from a counter.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_fault(state: &State, target: &str) -> Option<Fault> {
    let random = state.random.lock().expect("random");
    let random = random.as_ref()?;
    if random
        .targets
        .as_ref()
        .is_some_and(|targets| !targets.iter().any(|t| t == target))
    {
        return None;
    }
    let n = mix(state.sequence.fetch_add(1, Ordering::Relaxed));
    if random.faults.is_empty() || n % 100 >= random.percent {
        return None;
    }
    let pick = (n / 100) as usize % random.faults.len();
    Some(random.faults[pick].clone())
}

fn fault_kind(fault: &Fault) -> &'static str {
    match fault {
        Fault::Error { .. } | Fault::ErrorWithMessage { .. } => "error",
        Fault::Hang => "hang",
        Fault::Delay(_) => "delay",
        Fault::CloseConnection => "close",
        Fault::Reset => "reset",
        Fault::Answer { .. } => "answer",
        Fault::QueryError { .. } => "error",
        Fault::XmlAnswer { .. } => "answer",
        Fault::ExpireCredentialsIn(_) => "expiration",
    }
}

async fn handle(
    state: Arc<State>,
    socket: SocketHandle,
    request: Request<Incoming>,
) -> ProxyResult {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = match parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        Some(target) => target.to_owned(),
        None => query_action(&body).unwrap_or_default(),
    };
    *state
        .counts
        .lock()
        .expect("counts")
        .entry(target.clone())
        .or_default() += 1;
    state
        .arrivals
        .lock()
        .expect("arrivals")
        .push(target.clone());
    let _in_flight = InFlight::enter(&state);

    let fault = state
        .rules
        .lock()
        .expect("rules")
        .iter()
        .find(|rule| {
            rule.target.as_deref().is_none_or(|t| t == target)
                && rule
                    .body_contains
                    .as_deref()
                    .is_none_or(|needle| contains(&body, needle.as_bytes()))
        })
        .map(|rule| rule.fault.clone())
        .or_else(|| random_fault(&state, &target));
    if let Some(fault) = &fault {
        *state
            .faulted
            .lock()
            .expect("faulted")
            .entry(fault_kind(fault))
            .or_default() += 1;
    }
    match fault {
        None => answer_or_forward(&state, &target, parts, body).await,
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            answer_or_forward(&state, &target, parts, body).await
        }
        Some(Fault::ExpireCredentialsIn(lifetime)) => {
            let response = answer_or_forward(&state, &target, parts, body).await?;
            Ok(expire_credentials_in(response, lifetime).await?)
        }
        Some(Fault::QueryError {
            status,
            code,
            message,
        }) => Ok(query_error(status, &code, &message)),
        Some(Fault::XmlAnswer { status, body }) => Ok(xml_response(status, body)),
        Some(Fault::Hang) => std::future::pending::<ProxyResult>().await,
        Some(Fault::CloseConnection) => Err("fault injected: close the connection".into()),
        Some(Fault::Reset) => {
            // SO_LINGER 0 makes the close that follows the error a TCP RST.
            if let Some(copy) = socket.lock().expect("socket").take() {
                tokio::net::TcpStream::from_std(copy)?.set_zero_linger()?;
            }
            Err("fault injected: reset the connection".into())
        }
        Some(Fault::Error { status, error_type }) => Ok(aws_error(
            status,
            &error_type,
            &format!("injected by the test proxy: {error_type}"),
        )),
        Some(Fault::ErrorWithMessage {
            status,
            error_type,
            message,
        }) => Ok(aws_error(status, &error_type, &message)),
        Some(Fault::Answer { status, body }) => Ok(json_response(status, body, None)),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn aws_error(status: u16, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "__type": error_type,
        "message": message,
    });
    json_response(status, body.to_string(), Some(error_type))
}

fn json_response(status: u16, body: String, error_type: Option<&str>) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/x-amz-json-1.1");
    if let Some(error_type) = error_type {
        response = response.header("x-amzn-errortype", error_type);
    }
    response
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

/// The `Action` of a query-protocol (form-encoded) body, e.g. `AssumeRole`.
fn query_action(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "Action")
        .map(|(_, value)| value.into_owned())
}

/// STS's error shape (API reference, "Common Errors"; the query protocol):
/// `<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error><RequestId>…</RequestId></ErrorResponse>`.
fn query_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
    );
    xml_response(status, body)
}

fn xml_response(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

/// `response` (an AssumeRole answer) with its `<Expiration>` `lifetime` from now.
async fn expire_credentials_in(
    response: Response<Full<Bytes>>,
    lifetime: Duration,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = response.into_parts();
    let text = String::from_utf8(body.collect().await?.to_bytes().to_vec())?;
    let expiration =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + lifetime).to_string();
    let rewritten = match (text.find("<Expiration>"), text.find("</Expiration>")) {
        (Some(start), Some(end)) if start < end => {
            format!("{}<Expiration>{expiration}{}", &text[..start], &text[end..])
        }
        _ => text,
    };
    parts.headers.remove("content-length");
    Ok(Response::from_parts(
        parts,
        Full::new(Bytes::from(rewritten)),
    ))
}

/// The operations moto does not implement are answered here; the rest go to moto.
async fn answer_or_forward(
    state: &State,
    target: &str,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> ProxyResult {
    if target == ASSUME_ROLE {
        let role_account = role_account(&body);
        let response = forward(state, parts, body).await?;
        return note_assumed_key(state, response, role_account).await;
    }
    if target == DESCRIBE_REPOSITORIES {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let response = forward(state, parts, body).await?;
        return paginate_repositories(&request, response).await;
    }
    if target != DESCRIBE_PULL_THROUGH_CACHE_RULES
        && target != DESCRIBE_REPOSITORY_CREATION_TEMPLATES
    {
        return forward(state, parts, body).await;
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header("content-type");
    let access_key_id = access_key_id(&header("authorization"));
    let answer = state
        .pull_through
        .lock()
        .expect("pull-through state")
        .answer(target, &content_type, &access_key_id, &body);
    match answer {
        Some((status, body, error_type)) => Ok(json_response(status, body, error_type)),
        None => Err("not a pull-through operation".into()),
    }
}

/// ECR pages a `DescribeRepositories` without `repositoryNames`: at most
/// `maxResults` (1..=1000, default 100) repositories, and a `nextToken` while
/// more remain. moto 5.2.5 answers every repository at once, so the proxy
/// pages moto's answer (whose order is stable) in its place; its tokens are
/// `after-N`.
async fn paginate_repositories(
    request: &serde_json::Value,
    response: Response<Full<Bytes>>,
) -> ProxyResult {
    if request.get("repositoryNames").is_some() || !response.status().is_success() {
        return Ok(response);
    }
    let max = request
        .get("maxResults")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Ok(aws_error(
            400,
            "InvalidParameterException",
            "maxResults must be between 1 and 1000",
        ));
    }
    let offset = match request.get("nextToken").and_then(serde_json::Value::as_str) {
        None => 0,
        Some(token) => match token.strip_prefix("after-").and_then(|n| n.parse().ok()) {
            Some(offset) => offset,
            None => {
                return Ok(aws_error(
                    400,
                    "InvalidParameterException",
                    "invalid nextToken",
                ));
            }
        },
    };
    let (parts, body) = response.into_parts();
    let mut answer: serde_json::Value = serde_json::from_slice(&body.collect().await?.to_bytes())?;
    let all = answer["repositories"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let end = (offset + max as usize).min(all.len());
    let page: Vec<serde_json::Value> = all.get(offset..end).unwrap_or_default().to_vec();
    answer["repositories"] = serde_json::Value::Array(page);
    if end < all.len() {
        answer["nextToken"] = serde_json::Value::String(format!("after-{end}"));
    }
    let mut parts = parts;
    parts.headers.remove("content-length");
    Ok(Response::from_parts(
        parts,
        Full::new(Bytes::from(answer.to_string())),
    ))
}

/// The access key id of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, …`).
fn access_key_id(authorization: &str) -> String {
    authorization
        .split_once("Credential=")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// The account of the `RoleArn` of an `AssumeRole` form body.
fn role_account(body: &[u8]) -> Option<String> {
    let arn = form_urlencoded::parse(body)
        .find(|(name, _)| name == "RoleArn")
        .map(|(_, value)| value.into_owned())?;
    arn.split(':').nth(4).map(str::to_owned)
}

/// Records which account the credentials of a successful `AssumeRole` answer
/// act as (moto: the role's), for the pull-through answers.
async fn note_assumed_key(
    state: &State,
    response: Response<Full<Bytes>>,
    role_account: Option<String>,
) -> ProxyResult {
    let (Some(account), true) = (role_account, response.status().is_success()) else {
        return Ok(response);
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    let open = "<AccessKeyId>";
    let key = text
        .find(open)
        .zip(text.find("</AccessKeyId>"))
        .and_then(|(start, end)| text.get(start + open.len()..end));
    if let Some(key) = key {
        state
            .pull_through
            .lock()
            .expect("pull-through state")
            .credentials_of(key.trim(), &account);
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

async fn forward(state: &State, parts: hyper::http::request::Parts, body: Bytes) -> ProxyResult {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = Request::builder()
        .method(parts.method)
        .uri(format!("{}{}", state.upstream, path));
    for (name, value) in &parts.headers {
        upstream = upstream.header(name, value);
    }
    let response = state
        .client
        .request(upstream.body(Full::new(body))?)
        .await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    // The body is re-sent whole; framing headers are hyper's to set.
    parts.headers.remove("transfer-encoding");
    parts.headers.remove("connection");
    Ok(Response::from_parts(parts, Full::new(body)))
}
