//! The webhook over real HTTPS, against moto: what needs a real connection or
//! the real AWS API — lookups and their cache end to end, TLS versions, HTTP/1.1
//! and HTTP/2, bodies over the limit still streaming, the API server's timeout
//! against AWS that hangs, and the metrics port. Admission behaviour itself
//! (verdicts, warnings, the dry-run annotation, what is judged, the error
//! answers) is tested in-process in tests/admission.rs.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::https::{self, post_review};
use support::moto::Moto;
use support::proxy::{self, Proxy};
use support::reviews::{HOST, STRICT, bad, good, workload_review};
use support::webhook::{Settings, Webhook};

/// moto with `team/secure` (customer key, rotation on) and `team/plain` (AES256),
/// a counting proxy in front of it.
async fn aws() -> (Moto, Proxy) {
    let moto = Moto::start_with_team_repositories().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    (moto, proxy)
}

async fn webhook(proxy: &Proxy, policies: &str) -> Webhook {
    Webhook::start(
        proxy.endpoint(),
        Settings::new(policies).namespace("demo:tier=regulated"),
    )
    .await
}

fn response(resp: &https::Response) -> Value {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body = resp.json();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    body["response"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_judged_kind_is_allowed_with_a_compliant_image_and_denied_with_an_aes256_one() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    let kinds = [
        ("", "Pod", "pods"),
        ("apps", "Deployment", "deployments"),
        ("apps", "StatefulSet", "statefulsets"),
        ("apps", "DaemonSet", "daemonsets"),
        ("apps", "ReplicaSet", "replicasets"),
        ("batch", "Job", "jobs"),
        ("batch", "CronJob", "cronjobs"),
        ("", "ReplicationController", "replicationcontrollers"),
    ];
    for (group, kind, resource) in kinds {
        let review = workload_review(group, kind, resource, &good());
        let r = response(&post_review(hook.addr, &hook.ca, &review).await);
        assert_eq!(r["uid"], review["request"]["uid"], "{kind}");
        assert_eq!(r["allowed"], true, "{kind}: {r}");

        let review = workload_review(group, kind, resource, &bad());
        let r = response(&post_review(hook.addr, &hook.ca, &review).await);
        assert_eq!(r["allowed"], false, "{kind}: {r}");
        assert_eq!(r["status"]["code"], 403, "{kind}");
        assert_eq!(r["status"]["reason"], "Forbidden", "{kind}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "container \"app\" image {}: repository team/plain is encrypted with AES256; policy strict allows only KMS, KMS_DSSE",
                bad()
            )),
            "{kind}: {message}"
        );
        assert!(
            message.contains("\nhint: a repository's encryption cannot be changed"),
            "{message}"
        );
    }
    // Two repositories, looked up once each (then cached), however many reviews.
    assert_eq!(proxy.count(proxy::DESCRIBE_REPOSITORIES), 2);
}

/// The AdmissionReview body of an HTTP error: `response.status` carries the same
/// code, a Kubernetes reason and a message starting with `message`.
fn assert_error_review(
    resp: &https::Response,
    status: u16,
    reason: &str,
    message: &str,
    what: &str,
) {
    assert_eq!(
        resp.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    let body = resp.json();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1", "{what}");
    assert_eq!(body["kind"], "AdmissionReview", "{what}");
    let r = &body["response"];
    assert_eq!(r["allowed"], false, "{what}");
    assert_eq!(r["status"]["code"], status, "{what}: {r}");
    assert_eq!(r["status"]["status"], "Failure", "{what}: {r}");
    assert_eq!(r["status"]["reason"], reason, "{what}: {r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with(message),
        "{what}: {r}"
    );
}

/// An UPDATE review of a Deployment whose annotation `big` holds `bytes` bytes in
/// both the new and the old object; the new object runs `image`, the old `old_image`.
fn large_update(bytes: usize, image: &str, old_image: &str) -> Value {
    let mut review = workload_review("apps", "Deployment", "deployments", image);
    let request = &mut review["request"];
    request["operation"] = json!("UPDATE");
    request["options"] = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
    request["object"]["metadata"]["annotations"] = json!({"big": "x".repeat(bytes)});
    let mut old = request["object"].clone();
    old["spec"]["template"]["spec"]["containers"][0]["image"] = json!(old_image);
    request["oldObject"] = old;
    review
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_body_limit_admits_the_largest_update_an_api_server_sends() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    // etcd's limit is 1.5 MiB an object (a ~3.4 MB review, the example); the
    // API server takes write bodies of up to 3 MiB, so an UPDATE of such an object
    // carries twice that: ~6 MiB.
    for (what, bytes) in [
        ("1.5 MiB object", 3 * 1024 * 1024 / 2),
        ("3 MiB object", 3 * 1024 * 1024 - 4096),
    ] {
        let review = large_update(bytes, &bad(), &good());
        let body = serde_json::to_vec(&review).unwrap();
        assert!(body.len() > 2 * bytes, "{what}: {}", body.len());
        let resp = https::request(
            hook.addr,
            &hook.ca,
            "POST",
            "/validate?timeout=10s",
            body.clone(),
        )
        .await
        .unwrap();
        let r = response(&resp);
        assert_eq!(
            r["allowed"], false,
            "{what}: judged, the image changed to AES256"
        );
        assert_eq!(r["uid"], review["request"]["uid"]);
        // The same over HTTP/2.
        let (mut h2, _) = https::connect_h2(hook.addr, &hook.ca).await.unwrap();
        let resp = https::send_h2(
            &mut h2,
            "POST",
            "/validate?timeout=10s",
            http_body_util::Full::new(bytes::Bytes::from(body)),
        )
        .await
        .unwrap();
        assert_eq!(response(&resp)["allowed"], false, "{what} over HTTP/2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_sending_a_body_over_the_limit_reads_the_json_413() {
    use http_body_util::Either;
    let (_moto, proxy) = aws().await;
    let mut settings = Settings::new(STRICT);
    settings.max_body_bytes = 64 * 1024;
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    let total = 8 * 1024 * 1024;
    let limit_message = "request body is larger than the 65536 bytes ecr-guard accepts";
    let declared_message =
        format!("request body of {total} bytes is larger than the 65536 bytes ecr-guard accepts");
    let mut refused = 0.0;
    for declared in [true, false] {
        let message = if declared {
            declared_message.as_str()
        } else {
            limit_message
        };
        // HTTP/1.1, Content-Length or chunked: hyper's client keeps sending while it
        // reads the answer, and must get all of it before the connection ends.
        let req = hyper::Request::builder()
            .method("POST")
            .uri("/validate?timeout=10s")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(https::Streaming::new(total, declared))
            .unwrap();
        let (mut sender, conn) = {
            // The helper's senders take whole bodies; this one streams.
            let tcp = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
            let tls = https::connector(&hook.ca)
                .connect(
                    rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    tcp,
                )
                .await
                .unwrap();
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap()
        };
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            resp.headers()["connection"],
            "close",
            "HTTP/1.1 says the connection ends"
        );
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let what = format!("HTTP/1.1, declared length {declared}");
        assert_error_review(
            &https::Response { status, body },
            413,
            "RequestEntityTooLarge",
            message,
            &what,
        );
        refused += 1.0;

        // HTTP/2: the answer, then the stream reset with NO_ERROR.
        let (mut h2, _) = https::connect_h2(hook.addr, &hook.ca).await.unwrap();
        let resp = https::send_h2(
            &mut h2,
            "POST",
            "/validate",
            Either::Left(https::Streaming::new(total, declared)),
        )
        .await
        .unwrap();
        let what = format!("HTTP/2, declared length {declared}");
        assert_error_review(&resp, 413, "RequestEntityTooLarge", message, &what);
        refused += 1.0;
        // The connection carries on.
        let review = serde_json::to_vec(&workload_review("", "Pod", "pods", "nginx")).unwrap();
        let resp = https::send_h2(
            &mut h2,
            "POST",
            "/validate",
            Either::Right(http_body_util::Full::new(bytes::Bytes::from(review))),
        )
        .await
        .unwrap();
        assert_eq!(
            response(&resp)["allowed"],
            true,
            "{what}: the connection still serves"
        );
    }
    assert_eq!(
        hook.metric(
            "ecr_guard_webhook_refused_requests_total{code=\"413\",reason=\"body_too_large\"}"
        )
        .await,
        refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_late_still_gets_the_413_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_moto, proxy) = aws().await;
    let mut settings = Settings::new(STRICT);
    settings.max_body_bytes = 64 * 1024;
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    // A raw HTTP/1.1 client: one task keeps sending the body, the answer is read
    // only after the server has had every chance to close the connection. A server
    // that closes with the rest of the body unread makes the kernel reset the
    // connection, and the reset throws the unread answer away.
    let total = 4 * 1024 * 1024;
    let tcp = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
    let tls = https::connector(&hook.ca)
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = tokio::io::split(tls);
    let sender = tokio::spawn(async move {
        let head = format!(
            "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
        );
        writer
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..total / chunk.len() {
            writer.write_all(&chunk).await.map_err(|e| e.to_string())?;
        }
        writer.flush().await.map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut answer = Vec::new();
    reader.read_to_end(&mut answer).await.unwrap_or_else(|e| {
        panic!(
            "reading the answer failed ({e}) after {} bytes",
            answer.len()
        )
    });
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["response"]["status"]["code"], 413, "{body}");
    // The body was drained, not refused with a reset: all of it went out.
    sender.await.unwrap().expect("the whole body was sent");
}

/// Issue 14, fault 5, HTTP/2's half, seen with the h2 crate itself (hyper's
/// client hides how a stream ends): a client still sending a body over the limit
/// gets the whole JSON 413 (the stream ended by the server), then the stream is
/// reset with NO_ERROR, which RFC 9113 §8.1 gives for "stop sending, the
/// response is complete" and Go's client (the API server's) accepts; the
/// connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_the_whole_413_comes_first_then_a_no_error_reset() {
    let (_moto, proxy) = aws().await;
    let mut settings = Settings::new(STRICT);
    settings.max_body_bytes = 64 * 1024;
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    let tcp = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
    let tls = https::h2_connector(&hook.ca)
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(connection);
    let post = || {
        hyper::Request::post("https://localhost/validate")
            .header("content-type", "application/json")
            .body(())
            .unwrap()
    };

    let mut client = client.ready().await.unwrap();
    let (response, mut sending) = client.send_request(post(), false).unwrap();
    // 4 MiB queued, sent as flow control lets it go; the stream is never ended.
    sending
        .send_data(bytes::Bytes::from(vec![b' '; 4 * 1024 * 1024]), false)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 413);
    let mut body = response.into_body();
    let mut answer = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the answer is read whole, not cut by the reset");
        let _ = body.flow_control().release_capacity(chunk.len());
        answer.extend_from_slice(&chunk);
    }
    assert!(
        body.is_end_stream(),
        "the server ended its side of the stream"
    );
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["response"]["status"]["code"], 413, "{answer}");
    assert_eq!(
        answer["response"]["status"]["reason"], "RequestEntityTooLarge",
        "{answer}"
    );
    let reset = std::future::poll_fn(|cx| sending.poll_reset(cx))
        .await
        .unwrap();
    assert_eq!(reset, h2::Reason::NO_ERROR);

    // The connection carries on.
    let review = serde_json::to_vec(&workload_review("", "Pod", "pods", "nginx")).unwrap();
    let mut client = client.ready().await.unwrap();
    let (response, mut sending) = client.send_request(post(), false).unwrap();
    sending.send_data(bytes::Bytes::from(review), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut answer = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        answer.extend_from_slice(&chunk);
    }
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    drop(client);
    driver.abort();
}

/// POSTs `review` to `/validate?{query}` and returns the AdmissionResponse, giving
/// up after a minute (far longer than any deadline these tests set, far shorter
/// than their lookup timeouts).
async fn review_with_query(hook: &Webhook, query: &str, review: &Value) -> Value {
    let path = format!("/validate?{query}");
    let body = serde_json::to_vec(review).unwrap();
    let resp = tokio::time::timeout(
        Duration::from_secs(60),
        https::request(hook.addr, &hook.ca, "POST", &path, body),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer to ?{query} within a minute"))
    .unwrap();
    response(&resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_servers_timeout_cuts_the_lookups_short_of_the_lookup_timeout() {
    let (_moto, proxy) = aws().await;
    let mut settings = Settings::new(STRICT).namespace("demo:tier=regulated");
    // A flag (or chart) mismatch: ecr-guard would wait far longer than the API server.
    settings.lookup_timeout = Duration::from_secs(600);
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    proxy.set_fault_for(proxy::DESCRIBE_REPOSITORIES, proxy::Fault::Hang);
    // The API server's `timeout=4s`: answered by 2.5 s, onLookupFailure (Deny) decides.
    let r = review_with_query(
        &hook,
        "timeout=4s",
        &workload_review("", "Pod", "pods", &good()),
    )
    .await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("AWS did not answer before the lookup deadline"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_within_the_margin_leaves_no_time_for_aws_and_a_malformed_one_is_ignored() {
    let (_moto, proxy) = aws().await;
    let mut settings = Settings::new(STRICT).namespace("demo:tier=regulated");
    settings.lookup_timeout = Duration::from_secs(30);
    // Nothing cached (nor served stale): each review shows its own deadline.
    settings.registry.cache_ttl = Duration::ZERO;
    settings.registry.negative_cache_ttl = Duration::ZERO;
    settings.registry.stale_ttl = Duration::ZERO;
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    // AWS answers, a little slowly.
    proxy.set_fault_for(
        proxy::DESCRIBE_REPOSITORIES,
        proxy::Fault::Delay(Duration::from_millis(300)),
    );
    // 1 s is all the safety margin: nothing is left for a lookup that is not cached.
    // (Another repository than below: a lookup that gave up at its deadline is
    // still in flight for a moment, and a review joining it shares its outcome.)
    let r = review_with_query(
        &hook,
        "timeout=1s",
        &workload_review("", "Pod", "pods", &bad()),
    )
    .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("AWS did not answer before the lookup deadline"),
        "{r}"
    );
    // Not a Go duration: the parameter is ignored and --lookup-timeout alone
    // applies, so the facts are learnt and the compliant image admitted.
    let review = workload_review("", "Pod", "pods", &good());
    for query in ["timeout=ten", "timeout=10", "timeout=", "timeout=10%20s"] {
        let r = review_with_query(&hook, query, &review).await;
        assert_eq!(r["allowed"], true, "?{query}: {r}");
    }
    // Go's other spellings of a long enough timeout work the same.
    for query in ["timeout=1m0s", "timeout=9.5s", "dryRun=All&timeout=30s"] {
        let r = review_with_query(&hook, query, &review).await;
        assert_eq!(r["allowed"], true, "?{query}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_http_and_tls_1_1_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;

    let mut tcp = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
    tcp.write_all(b"POST /validate HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plaintext must not be served: {}",
        String::from_utf8_lossy(&answer)
    );

    // rustls cannot speak TLS 1.1, so ask openssl (on the machine) to try.
    let (ok, text) = openssl_handshake(hook.addr, "-tls1_1").await;
    assert!(!ok, "TLS 1.1 handshake must fail: {text}");
    assert!(text.contains("no peer certificate available"), "{text}");
    // …while TLS 1.2 works.
    let (ok, text) = openssl_handshake(hook.addr, "-tls1_2").await;
    assert!(ok && text.contains("Protocol  : TLSv1.2"), "{text}");
}

/// `openssl s_client` with one protocol flag: (exit success, stdout + stderr).
async fn openssl_handshake(addr: std::net::SocketAddr, protocol: &'static str) -> (bool, String) {
    let addr = addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                protocol,
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("openssl must be installed");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    let (status, _) = hook.admin_get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(hook.admin_get("/healthz").await.0, 200);
    for image in [good(), bad(), bad()] {
        post_review(
            hook.addr,
            &hook.ca,
            &workload_review("", "Pod", "pods", &image),
        )
        .await;
    }
    // Kinds ecr-guard does not judge share one label value, whatever they are called.
    for kind in ["ConfigMap", "Made-Up-Kind-1", "Made-Up-Kind-2"] {
        post_review(
            hook.addr,
            &hook.ca,
            &workload_review("", kind, "configmaps", &good()),
        )
        .await;
    }
    let (status, text) = hook.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(!text.contains("Made-Up-Kind"), "{text}");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, number) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(number.parse::<f64>().is_ok(), "bad value in {line}");
        assert!(!series.contains(HOST), "no image names in labels: {line}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
    assert_eq!(
        value(
            "ecr_guard_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",decision=\"allowed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            "ecr_guard_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",decision=\"denied\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            "ecr_guard_policy_violations_total{policy=\"strict\",mode=\"Enforce\",reason=\"encryption_type\"}"
        ),
        2.0
    );
    assert_eq!(
        value("ecr_guard_admission_duration_seconds_count{kind=\"Pod\"}"),
        3.0
    );
    assert_eq!(
        value(
            "ecr_guard_admission_requests_total{kind=\"other\",operation=\"CREATE\",decision=\"skipped\"}"
        ),
        3.0
    );
}
