//! Reviews that miss the cache: how many AWS calls they make, how many at once,
//! and how long they take; and the memory of a cache holding many repositories.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

use super::fixtures;
use super::https;

/// What a burst of reviews got back.
#[derive(Debug, Default)]
pub struct Burst {
    pub elapsed: Duration,
    pub allowed: usize,
    pub denied: usize,
    pub failed: usize,
    /// A denial message, to show why when there are denials.
    pub example_denial: Option<String>,
}

/// A one-container Pod review naming `repository` of the benchmark account.
pub fn review_body(i: usize, namespace: &str, repository: &str) -> Vec<u8> {
    let containers = vec![("app".to_string(), fixtures::ecr_image(repository, "1.0"))];
    let review = fixtures::pod_review(
        &format!("00000000-0000-4000-9000-{i:012}"),
        namespace,
        &format!("cold-{i}-x7k2p"),
        &containers,
        0,
    );
    serde_json::to_vec(&review).expect("encode a review")
}

/// Opens `count` TLS connections first, then sends one review on each at the
/// same moment (so the reviews really are concurrent), and waits for all.
pub async fn burst(addr: SocketAddr, ca: &str, bodies: Vec<Vec<u8>>) -> Burst {
    let ca: Arc<str> = Arc::from(ca);
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..bodies.len() {
        let ca = ca.clone();
        opening.spawn(async move { https::connect(addr, &ca).await.map(|(sender, _)| sender) });
    }
    let mut senders: Vec<SendRequest<Full<Bytes>>> = Vec::with_capacity(bodies.len());
    while let Some(opened) = opening.join_next().await {
        senders.push(
            opened
                .expect("connect task")
                .expect("open a TLS connection to ecr-guard"),
        );
    }
    let start = Arc::new(tokio::sync::Barrier::new(bodies.len() + 1));
    let mut sending = tokio::task::JoinSet::new();
    for (mut sender, body) in senders.into_iter().zip(bodies) {
        let start = start.clone();
        sending.spawn(async move {
            start.wait().await;
            https::send(&mut sender, "POST", "/validate?timeout=10s", body).await
        });
    }
    start.wait().await;
    let began = Instant::now();
    let mut burst = Burst::default();
    while let Some(answer) = sending.join_next().await {
        tally(&mut burst, answer.expect("send task"));
    }
    burst.elapsed = began.elapsed();
    burst
}

fn tally(burst: &mut Burst, answer: Result<https::Response, String>) {
    match answer {
        Ok(r) if r.status == 200 => {
            let json = r.json();
            if json["response"]["allowed"].as_bool() == Some(true) {
                burst.allowed += 1;
            } else {
                burst.denied += 1;
                burst.example_denial.get_or_insert_with(|| {
                    json["response"]["status"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                });
            }
        }
        _ => burst.failed += 1,
    }
}

/// Sends `count` reviews, review `i` naming the repository `name(i)`, over
/// `connections` keep-alive connections.
pub async fn stream(
    addr: SocketAddr,
    ca: &str,
    count: usize,
    connections: usize,
    namespace: &'static str,
    name: fn(usize) -> String,
) -> Burst {
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let ca = ca.to_string();
        tasks.spawn(async move {
            let mut burst = Burst::default();
            let (mut sender, _) = https::connect(addr, &ca).await.expect("connect");
            for i in (c..count).step_by(connections) {
                let body = review_body(i, namespace, &name(i));
                // The connection takes the next request once it has finished the last.
                let answer = match sender.ready().await {
                    Ok(()) => https::send(&mut sender, "POST", "/validate", body).await,
                    Err(e) => Err(e.to_string()),
                };
                tally(&mut burst, answer);
            }
            burst
        });
    }
    let mut total = Burst::default();
    while let Some(part) = tasks.join_next().await {
        let part = part.expect("stream task");
        total.allowed += part.allowed;
        total.denied += part.denied;
        total.failed += part.failed;
        if total.example_denial.is_none() {
            total.example_denial = part.example_denial;
        }
    }
    total.elapsed = began.elapsed();
    total
}
