//! The floor of the load test (bench-only): the least an HTTPS admission webhook
//! can do. axum + hyper (HTTP/1.1 and h2) over rustls (ring, TLS 1.2/1.3, an
//! ECDSA P-256 certificate like ecr-guard's generated one) on a multi-threaded
//! tokio runtime; `POST /validate` reads the body and answers a fixed "allowed"
//! AdmissionReview. ecr-guard's warm path is measured against it in the same run.
//!
//! `floor --listen 127.0.0.1:8444`

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const ALLOWED: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-4000-8000-000000000000","allowed":true,"status":{"metadata":{},"code":200}}}"#;

async fn validate(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body.len());
    ([(header::CONTENT_TYPE, "application/json")], ALLOWED)
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
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = match (args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(addr)) => addr.parse()?,
        (None, _) => "127.0.0.1:8444".parse()?,
        _ => anyhow::bail!("usage: floor [--listen ADDR]"),
    };
    let acceptor = TlsAcceptor::from(Arc::new(tls_config()?));
    let listener = TcpListener::bind(listen).await?;
    println!("floor listening on https://{}", listener.local_addr()?);
    let service = TowerToHyperService::new(Router::new().route("/validate", post(validate)));
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
