//! The pages' router over real embedded adapters (SQLite log and store
//! seeded with the demo menu, in-memory cache and feed), called with
//! `tower::ServiceExt::oneshot`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use domain::{Rushhour, RushhourConfig};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tower::ServiceExt;

pub const STORE: &str = "demo-downtown";

pub struct Pages {
    pub router: Router,
    pub app: Arc<Rushhour>,
    _dir: TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8 page")
    }
}

pub async fn pages() -> Pages {
    let dir = TempDir::new().unwrap();
    let log = eventlog::SqliteEventLog::open(&dir.path().join("log.db"), eventlog::SqliteLogOptions::default())
        .expect("open the event log");
    let store = Arc::new(
        store::SqliteStore::open(&dir.path().join("store.db"), store::SqliteStoreOptions::default())
            .expect("open the store"),
    );
    domain::ports::MenuStore::upsert_menu(&*store, &domain::menu::demo_menu())
        .await
        .expect("seed the demo menu");
    let app = Arc::new(Rushhour {
        log: Arc::new(log),
        store,
        menus: Arc::new(cache::MemoryMenuCache::new(Duration::from_secs(60), 100)),
        feed: Arc::new(cache::BroadcastFeed::new(64)),
        clock: Arc::new(worker::TokioClock),
        config: RushhourConfig {
            apply_wait: Duration::from_millis(20),
            order_token_key: b"web-test-key".to_vec().into(),
        },
    });
    Pages {
        router: web::router(app.clone(), web::WebConfig::default()),
        app,
        _dir: dir,
    }
}

impl Pages {
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: axum::body::to_bytes(body, usize::MAX).await.unwrap(),
        }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    pub async fn get_with(&self, uri: &str, headers: &[(&str, &str)]) -> Answer {
        let mut b = Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }
}
