//! The floor of the load test (bench-only): the least an HTTPS admission webhook
//! can do. axum + hyper (HTTP/1.1 and h2) over rustls (ring, TLS 1.2/1.3, an
//! ECDSA P-256 certificate like ecr-guard's generated one) on a multi-threaded
//! tokio runtime; `POST /validate` reads the body and answers a fixed "allowed"
//! AdmissionReview. ecr-guard's warm path is measured against it in the same run.
//!
//! With `--read-json` it first reads the body with serde_json, keeping nothing
//! (`IgnoredAny`): the least any webhook that reads the review with serde_json
//! pays. The bench reports it beside the floor, as the ceiling of the
//! throughput ratio for such a webhook.
//!
//! `floor [--listen 127.0.0.1:8444] [--read-json]`

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const ALLOWED: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-4000-8000-000000000000","allowed":true,"status":{"metadata":{},"code":200}}}"#;

async fn validate(State(read_json): State<bool>, body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body.len());
    // UTF-8 checked once, then read as text: the way ecr-guard reads a review.
    let unreadable = read_json
        && std::str::from_utf8(&body)
            .ok()
            .and_then(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).ok())
            .is_none();
    let status = if unreadable {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        ALLOWED,
    )
}

fn tls_config() -> anyhow::Result<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?
        .self_signed(&key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:8444".parse()?;
    let mut read_json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(addr) => listen = addr.parse()?,
                None => anyhow::bail!("--listen needs an address"),
            },
            "--read-json" => read_json = true,
            _ => anyhow::bail!("usage: floor [--listen ADDR] [--read-json]"),
        }
    }
    let acceptor = TlsAcceptor::from(Arc::new(tls_config()?));
    let listener = TcpListener::bind(listen).await?;
    println!("floor listening on https://{}", listener.local_addr()?);
    let router = Router::new()
        .route("/validate", post(validate))
        .with_state(read_json);
    let service = TowerToHyperService::new(router);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, service, builder) = (acceptor.clone(), service.clone(), builder.clone());
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            }
        });
    }
}
