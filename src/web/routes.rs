//! A router that remembers its paths: the API and the dashboard are built
//! with it, so that `route_paths` lists every route they serve and the
//! isolation tests (tests/all/isolation.rs) visit each one, a new route
//! included, without a list to keep up by hand.

use axum::routing::MethodRouter;
use axum::Router;

use super::AppState;

pub(super) struct Routes {
    router: Router<AppState>,
    paths: Vec<String>,
}

impl Routes {
    pub fn new() -> Self {
        Routes {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    pub fn route(mut self, path: &str, method: MethodRouter<AppState>) -> Self {
        self.paths.push(path.to_string());
        self.router = self.router.route(path, method);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.paths.extend(other.paths);
        self.router = self.router.merge(other.router);
        self
    }

    /// The paths, each under `prefix`.
    pub fn paths(&self, prefix: &str) -> Vec<String> {
        self.paths
            .iter()
            .map(|path| format!("{prefix}{path}"))
            .collect()
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}
