//! Mutual TLS: with `--client-ca`, only clients whose certificate chains to that
//! CA get an answer (the API server presents one when its AdmissionConfiguration
//! kubeconfig names a client certificate). Certificates are made here with rcgen.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use support::https;
use support::webhook::{Settings, Webhook};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A CA (PEM) and a client certificate + key it signed.
struct ClientPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn client_pki(name: &str) -> ClientPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} client CA"));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    ClientPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn connector(server_ca: &str, client: Option<&ClientPki>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(pki) => {
            let chain = CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    TlsConnector::from(Arc::new(config))
}

fn review() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "mtls", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": "CREATE", "userInfo": {},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                       "spec": {"containers": [{"name": "a", "image": "nginx"}]}}
        }
    }))
    .unwrap()
}

/// One review over a TLS connection made with `connector`: the HTTP status, or
/// why there was none.
async fn post(hook: &Webhook, connector: TlsConnector) -> Result<u16, String> {
    let tcp = TcpStream::connect(hook.addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    // TLS 1.3 finishes the client's side of the handshake before the server has
    // checked the client certificate: a refusal shows up on the first request.
    https::send(&mut sender, "POST", "/validate", review())
        .await
        .map(|r| r.status)
}

async fn webhook_requiring(ca_pem: &str) -> (Webhook, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client-ca.pem");
    std::fs::write(&path, ca_pem).unwrap();
    let mut settings = Settings::new("");
    settings.client_ca = Some(path);
    // No policy and a non-ECR image: no AWS call is made.
    (Webhook::start("http://127.0.0.1:9", settings).await, dir)
}

#[tokio::test]
async fn with_a_client_ca_only_clients_it_signed_get_an_answer() {
    let trusted = client_pki("trusted");
    let stranger = client_pki("stranger");
    let (hook, _dir) = webhook_requiring(&trusted.ca_pem).await;

    assert_eq!(
        post(&hook, connector(&hook.ca, Some(&trusted))).await,
        Ok(200)
    );

    let anonymous = post(&hook, connector(&hook.ca, None)).await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");

    let foreign = post(&hook, connector(&hook.ca, Some(&stranger))).await;
    assert!(foreign.is_err(), "certificate from another CA: {foreign:?}");

    // The server still answers the trusted client afterwards.
    assert_eq!(
        post(&hook, connector(&hook.ca, Some(&trusted))).await,
        Ok(200)
    );
}

#[tokio::test]
async fn without_a_client_ca_any_client_gets_an_answer() {
    let pki = client_pki("any");
    let hook = Webhook::start("http://127.0.0.1:9", Settings::new("")).await;
    assert_eq!(post(&hook, connector(&hook.ca, None)).await, Ok(200));
    assert_eq!(post(&hook, connector(&hook.ca, Some(&pki))).await, Ok(200));
}

#[tokio::test]
async fn a_client_ca_file_without_certificates_is_a_start_up_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let config = ecr_guard::server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        tls: ecr_guard::server::TlsSource::SelfSigned {
            names: vec![],
            write_ca: None,
        },
        client_ca: Some(path.clone()),
        shutdown_delay: std::time::Duration::ZERO,
    };
    let err = match ecr_guard::server::Bound::bind(&config).await {
        Ok(_) => panic!("bound with an unusable client CA"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("failed to build the client CA verifier from") && err.contains("empty.pem"),
        "{err}"
    );
}
