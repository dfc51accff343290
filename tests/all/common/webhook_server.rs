//! A real HTTP server on loopback for webhooks dmarcd calls: records each
//! request (headers and body) and answers with the statuses it is told,
//! in turn (the last one from then on); `hang` never answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Script {
    statuses: Vec<u16>,
    hang: bool,
    received: Vec<Received>,
}

pub struct WebhookServer {
    pub address: SocketAddr,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookServer {
    /// Answers `statuses` in turn, repeating the last.
    pub async fn start(statuses: &[u16]) -> WebhookServer {
        Self::with(Script {
            statuses: statuses.to_vec(),
            ..Script::default()
        })
        .await
    }

    /// Reads each request, then never answers.
    pub async fn hanging() -> WebhookServer {
        Self::with(Script {
            hang: true,
            ..Script::default()
        })
        .await
    }

    async fn with(script: Script) -> WebhookServer {
        let script = Arc::new(Mutex::new(script));
        let shared = Arc::clone(&script);
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let script = Arc::clone(&shared);
                async move {
                    let (status, hang) = {
                        let mut script = script.lock().unwrap();
                        let turn = script.received.len();
                        script.received.push(Received {
                            headers,
                            body: body.to_vec(),
                        });
                        let status = script
                            .statuses
                            .get(turn)
                            .or(script.statuses.last())
                            .copied()
                            .unwrap_or(200);
                        (status, script.hang)
                    };
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        WebhookServer {
            address,
            script,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
