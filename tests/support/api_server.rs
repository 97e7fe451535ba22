//! A mock API server (tower-test) for the audit tests: each call the code makes
//! is read (method, URI, JSON body) and answered by the test.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{Method, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use kube::Client;
use serde_json::Value;

type MockBody = UnsyncBoxBody<Bytes, Infallible>;
type Handle = tower_test::mock::Handle<Request<kube::client::Body>, Response<MockBody>>;
type Respond = tower_test::mock::SendResponse<Response<MockBody>>;

pub struct ApiServer(Handle);

pub struct Call {
    pub method: Method,
    pub uri: String,
    pub body: Value,
    respond: Respond,
}

pub fn mock() -> (Client, ApiServer) {
    let (service, handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<MockBody>>();
    (Client::new(service, "default"), ApiServer(handle))
}

impl ApiServer {
    pub async fn next(&mut self) -> Call {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
                .await
                .expect("the code made no API call in time")
                .expect("the client is gone");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Call {
            method: parts.method,
            uri: parts.uri.to_string(),
            body,
            respond,
        }
    }
}

impl Call {
    pub fn assert(&self, method: Method, uri: &str) {
        assert_eq!((&self.method, self.uri.as_str()), (&method, uri));
    }

    pub fn ok(self, body: Value) {
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
        let response = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Full::new(bytes).boxed_unsync())
            .unwrap();
        self.respond.send_response(response);
    }
}
