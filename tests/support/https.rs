//! A small HTTPS client for talking to the webhook like the API server does:
//! rustls, trusting only the given CA, HTTP/1.1 with keep-alive or a fresh
//! connection per request.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One TLS connection; returns the server's leaf certificate too.
pub async fn connect(
    addr: SocketAddr,
    ca_pem: &str,
) -> Result<(http1::SendRequest<Full<Bytes>>, CertificateDer<'static>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector(ca_pem)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone()
        .into_owned();
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok((sender, leaf))
}

/// Sends one request on a new connection.
pub async fn request(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Response, String> {
    let (mut sender, _) = connect(addr, ca_pem).await?;
    send(&mut sender, method, path, body).await
}

pub async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Response, String> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    read_response(resp).await
}

pub async fn post_review(addr: SocketAddr, ca_pem: &str, review: &serde_json::Value) -> Response {
    request(
        addr,
        ca_pem,
        "POST",
        "/validate?timeout=10s",
        serde_json::to_vec(review).unwrap(),
    )
    .await
    .expect("HTTPS request")
}

/// A connector that offers only `h2` by ALPN, as the API server's Go client does
/// when the webhook supports it.
pub fn h2_connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// One HTTP/2 connection; the task driving it ends when the connection does (after
/// the server's GOAWAY, for instance).
pub async fn connect_h2<B>(
    addr: SocketAddr,
    ca_pem: &str,
) -> Result<
    (
        hyper::client::conn::http2::SendRequest<B>,
        tokio::task::JoinHandle<Result<(), String>>,
    ),
    String,
>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = h2_connector(ca_pem)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) });
    Ok((sender, driver))
}

/// Sends one request on an HTTP/2 connection.
pub async fn send_h2<B>(
    sender: &mut hyper::client::conn::http2::SendRequest<B>,
    method: &str,
    path: &str,
    body: B,
) -> Result<Response, String>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    read_response(resp).await
}

/// A request body that keeps sending `total` bytes of spaces in 64 KiB chunks,
/// declaring its length (`Content-Length`) or not (chunked, or HTTP/2 without a
/// length): a client that is still sending when the server answers.
pub struct Streaming {
    left: usize,
    declared: bool,
}

impl Streaming {
    pub fn new(total: usize, declared: bool) -> Self {
        Self {
            left: total,
            declared,
        }
    }
}

impl hyper::body::Body for Streaming {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        const CHUNK: usize = 64 * 1024;
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(CHUNK);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
            b' ';
            n
        ])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.declared {
            hyper::body::SizeHint::with_exact(self.left as u64)
        } else {
            hyper::body::SizeHint::default()
        }
    }
}

/// Status and whole body of an answer, from either protocol's sender.
async fn read_response(resp: hyper::Response<hyper::body::Incoming>) -> Result<Response, String> {
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Response { status, body })
}
