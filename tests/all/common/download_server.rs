//! A real HTTP server on loopback standing in for DB-IP's download site:
//! serves the files a test puts at paths, answers 404 for the rest, can
//! stream a body of any length in chunks (no Content-Length), and records
//! each path asked for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Clone)]
pub enum Served {
    File(Vec<u8>),
    /// This many bytes, sent in 64 KiB chunks with no declared length.
    Endless(usize),
}

#[derive(Default)]
struct Site {
    files: HashMap<String, Served>,
    asked: Vec<String>,
}

pub struct DownloadServer {
    pub address: SocketAddr,
    site: Arc<Mutex<Site>>,
    task: tokio::task::JoinHandle<()>,
}

impl DownloadServer {
    pub async fn start() -> DownloadServer {
        let site = Arc::new(Mutex::new(Site::default()));
        let shared = Arc::clone(&site);
        let router = axum::Router::new().fallback(move |uri: Uri| {
            let site = Arc::clone(&shared);
            async move {
                let served = {
                    let mut site = site.lock().unwrap();
                    site.asked.push(uri.path().to_string());
                    site.files.get(uri.path()).cloned()
                };
                match served {
                    None => StatusCode::NOT_FOUND.into_response(),
                    Some(Served::File(bytes)) => bytes.into_response(),
                    Some(Served::Endless(total)) => {
                        let chunks = (0..total.div_ceil(65536)).map(move |i| {
                            let size = (total - i * 65536).min(65536);
                            Ok::<_, std::io::Error>(Bytes::from(vec![0x1fu8; size]))
                        });
                        Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        DownloadServer {
            address,
            site,
            task,
        }
    }

    pub fn put(&self, path: &str, served: Served) {
        self.site
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), served);
    }

    pub fn remove(&self, path: &str) {
        self.site.lock().unwrap().files.remove(path);
    }

    /// The paths asked for so far, in order.
    pub fn asked(&self) -> Vec<String> {
        self.site.lock().unwrap().asked.clone()
    }

    /// A URL template for `name` (`dbip-country-lite`) with `{year}-{month}`.
    pub fn template(&self, name: &str) -> String {
        format!("http://{}/{name}-{{year}}-{{month}}.mmdb.gz", self.address)
    }
}

impl Drop for DownloadServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
