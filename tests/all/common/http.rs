//! A real HTTP client (ureq) against a real dmarcd web listener on a
//! loopback port.

use std::net::SocketAddr;

use dmarcd::store::Store;
use dmarcd::web::{AppState, WebConfig};
use dmarcd::Limits;
use tokio::sync::watch;

pub struct Server {
    pub address: SocketAddr,
    pub state: AppState,
    stop: watch::Sender<bool>,
}

impl Server {
    pub async fn start(store: Store, config: WebConfig) -> Server {
        Self::start_with_state(AppState::new(store, config, Limits::default())).await
    }

    pub async fn start_with_state(state: AppState) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let router = dmarcd::web::router(state.clone());
        let listener = dmarcd::web::WebListener::new(listener, &state.config);
        tokio::spawn(async move { dmarcd::web::serve(listener, router, stopped).await });
        Server {
            address,
            state,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request("GET", path, token, None, Vec::new(), &[])
            .await
    }

    /// A request with a token and, if any, a JSON body.
    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let (content_type, bytes) = match body {
            Some(body) => (Some("application/json"), serde_json::to_vec(&body).unwrap()),
            None => (None, Vec::new()),
        };
        self.request(method, path, Some(token), content_type, bytes, &[])
            .await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = self.url(path);
        let method = method.to_string();
        let token = token.map(str::to_string);
        let content_type = content_type.map(str::to_string);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into();
            let mut builder = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(&url);
            if let Some(token) = token {
                builder = builder.header("Authorization", format!("Bearer {token}"));
            }
            if let Some(content_type) = content_type {
                builder = builder.header("Content-Type", content_type);
            }
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            let request = builder.body(body).unwrap();
            let mut response = agent.run(request).unwrap();
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let body = response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()
                .unwrap();
            Reply {
                status,
                headers,
                body,
            }
        })
        .await
        .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
