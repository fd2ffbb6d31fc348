//! The browser harness: Debian's chromedriver started per test on a free
//! loopback port, headless Chromium sessions sized like the screen each
//! page is made for (a phone, the bar's tablet, the pickup TV), the real
//! `rushhour` binary on a temporary data dir, and waits that poll a
//! condition in the page until a deadline (never a fixed sleep).
//!
//! Everything started here is stopped by a guard's `Drop`, so a failing
//! assertion still quits the browser and kills chromedriver: a CI machine
//! must not collect orphaned Chromium processes run after run. The
//! WebDriver client is fantoccini over plain HTTP to loopback (no TLS
//! feature, so no OpenSSL); the alternative, playwright, downloads a
//! browser of its own, which this network does not allow.

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const STORE: &str = crate::support::STORE;
/// Passwords of the staff accounts the tests create (at least 12 chars).
pub const STAFF_PASSWORD: &str = "browser test staff password";

/// How long a page may take to show what a test waits for. Generous: the
/// test machine has two cores shared by builds, servers and browsers.
pub const WAIT: Duration = Duration::from_secs(30);

/// The screens the pages are designed for; the window is sized to match.
#[derive(Clone, Copy, Debug)]
pub enum Screen {
    /// The customer's phone.
    Phone,
    /// The bar's 10" tablet (also the manager's and operator's screen).
    Tablet,
    /// The pickup board's TV.
    Tv,
}

impl Screen {
    fn size(self) -> (u32, u32) {
        match self {
            Screen::Phone => (390, 844),
            Screen::Tablet => (1280, 800),
            Screen::Tv => (1920, 1080),
        }
    }
}

/// A test-run switch (`NAME=1`), not an application setting: these are
/// read here, as `testkit::service_url` reads the service URLs.
#[allow(clippy::disallowed_methods)]
fn env_flag(name: &str) -> bool {
    std::env::var(name).as_deref() == Ok("1")
}

fn require_services() -> bool {
    env_flag("RUSHHOUR_REQUIRE_SERVICES")
}

/// A chromedriver of our own; `None` (after a loud message) when Chromium
/// or its driver is not installed, a failure when services are required.
pub async fn driver(test: &str) -> Option<Driver> {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(bin).exists() {
            if require_services() {
                panic!(
                    "{test}: {bin} is missing but RUSHHOUR_REQUIRE_SERVICES=1 \
                     (apt-get install chromium chromium-driver)"
                );
            }
            eprintln!("\n!!! SKIPPED {test}: {bin} is missing (apt-get install chromium chromium-driver) !!!\n");
            return None;
        }
    }
    Some(Driver::start().await)
}

/// One chromedriver process; its sessions are [`Page`]s.
pub struct Driver {
    port: u16,
    child: std::process::Child,
}

impl Driver {
    async fn start() -> Driver {
        let port = crate::crash::free_port();
        // std's Child, not tokio's: Drop must kill it synchronously.
        let child = std::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { port, child };
        let client = crate::support::http_client(Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/status", driver.url())).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new browser (its own Chromium and empty profile) sized for `screen`.
    pub async fn page(&self, screen: Screen) -> Page {
        let profile = TempDir::new().unwrap();
        let (w, h) = screen.size();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                    // Background windows of a test keep their live updates.
                    "--disable-background-timer-throttling",
                    "--disable-renderer-backgrounding",
                    "--disable-backgrounding-occluded-windows",
                    format!("--window-size={w},{h}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        // The viewport is set by device emulation, as Chrome's device
        // toolbar does: a headless window's size includes room for browser
        // UI it does not draw, and desktop Chromium will not make a window
        // narrower than 500 px. The phone gets a mobile layout at 2×.
        let (ratio, mobile) = match screen {
            Screen::Phone => (2.0, true),
            Screen::Tablet | Screen::Tv => (1.0, false),
        };
        let mut caps = caps;
        caps["goog:chromeOptions"]["mobileEmulation"] = json!({
            "deviceMetrics": {"width": w, "height": h, "pixelRatio": ratio, "mobile": mobile, "touch": false}
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url())
            .await
            .expect("start a Chromium session");
        let session = client.session_id().await.unwrap().expect("a session id");
        Page {
            client,
            driver_port: self.port,
            session,
            profile: Some(profile),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session. Dropping it quits the browser, whatever the test's
/// outcome; a Chromium left behind by the driver is killed by its pid.
pub struct Page {
    pub client: Client,
    driver_port: u16,
    session: String,
    profile: Option<TempDir>,
}

impl Drop for Page {
    fn drop(&mut self) {
        // A blocking request: Drop cannot await, and the runtime may be
        // unwinding. DELETE /session/{id} makes chromedriver quit Chromium.
        let _ = raw_delete(self.driver_port, &format!("/session/{}", self.session));
        if let Some(profile) = self.profile.take() {
            kill_browsers_using(profile.path());
            drop(profile);
        }
    }
}

fn raw_delete(port: u16, path: &str) -> std::io::Result<()> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    Ok(())
}

/// Pids of the processes whose command line names this profile directory.
pub fn processes_using(profile: &Path) -> Vec<u32> {
    let needle = format!("--user-data-dir={}", profile.display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline).contains(&needle).then_some(pid)
        })
        .collect()
}

/// Kill, by pid, every process still using this profile (a Chromium the
/// driver failed to quit).
fn kill_browsers_using(profile: &Path) {
    for pid in processes_using(profile) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

impl Page {
    pub fn profile_dir(&self) -> PathBuf {
        self.profile.as_ref().unwrap().path().to_owned()
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    /// Run a script in the page (`return ...;` gives its value).
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Poll `script` (a function body that `return`s) until its value is
    /// truthy; returns that value. Fails, with a screenshot, after [`WAIT`].
    pub async fn wait_js(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let last_err = match self.client.execute(script, vec![]).await {
                Ok(v) if truthy(&v) => return v,
                Ok(v) => format!("last value {v}"),
                Err(e) => format!("last error {e}"),
            };
            if Instant::now() >= deadline {
                let name = format!("FAILED-{}", slug(what));
                let path = self.shot(&name).await;
                panic!(
                    "timed out waiting for {what} ({last_err}); screenshot {}",
                    path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait for an element matching `css` to be in the page and visible.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        let script = format!(
            "const e = document.querySelector({sel}); return !!e && e.getClientRects().length > 0;",
            sel = json!(css)
        );
        self.wait_js(&format!("`{css}` to show"), &script).await;
        self.client.find(Locator::Css(css)).await.unwrap()
    }

    /// Wait until the text of the first element matching `css` satisfies
    /// `test` (a JS expression over `t`, e.g. `t.includes('READY')`).
    pub async fn wait_text(&self, css: &str, test: &str) -> String {
        let script = format!(
            "const e = document.querySelector({sel}); if (!e) return null; \
             const t = e.textContent.trim(); return ({test}) ? (t || ' ') : null;",
            sel = json!(css)
        );
        let v = self.wait_js(&format!("`{css}` text where {test}"), &script).await;
        v.as_str().unwrap().trim().to_owned()
    }

    /// Wait until exactly `n` elements match `css`.
    pub async fn wait_count(&self, css: &str, n: usize) {
        let script = format!(
            "return document.querySelectorAll({sel}).length === {n};",
            sel = json!(css)
        );
        self.wait_js(&format!("{n} × `{css}`"), &script).await;
    }

    pub async fn count(&self, css: &str) -> usize {
        let v = self
            .eval(&format!("return document.querySelectorAll({}).length;", json!(css)))
            .await;
        v.as_u64().unwrap() as usize
    }

    /// Texts of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .eval(&format!(
                "return [...document.querySelectorAll({})].map(e => e.textContent.trim());",
                json!(css)
            ))
            .await;
        serde_json::from_value(v).unwrap()
    }

    /// A value of an attribute on every element matching `css`.
    pub async fn attrs(&self, css: &str, attr: &str) -> Vec<Option<String>> {
        let v = self
            .eval(&format!(
                "return [...document.querySelectorAll({})].map(e => e.getAttribute({}));",
                json!(css),
                json!(attr)
            ))
            .await;
        serde_json::from_value(v).unwrap()
    }

    pub async fn click(&self, css: &str) {
        let el = self.wait_for(css).await;
        el.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait_for(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Press keys on whatever has the focus, as a keyboard or bump bar
    /// would (no element is clicked first). Special keys:
    /// `fantoccini::key::Key` as chars.
    pub async fn press(&self, keys: &[char]) {
        let mut seq = KeyActions::new("keyboard".into());
        for &k in keys {
            seq = seq.then(KeyAction::Down { value: k }).then(KeyAction::Up { value: k });
        }
        self.client.perform_actions(seq).await.unwrap();
    }

    /// Save a PNG of the window to `<CARGO_TARGET_TMPDIR>/screenshots/`,
    /// and to `docs/screenshots/` when `RUSHHOUR_UPDATE_SCREENSHOTS=1`.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        if env_flag("RUSHHOUR_UPDATE_SCREENSHOTS") && !name.starts_with("FAILED") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
        }
        path
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.chars().take(60).collect()
}

/// The real binary (`rushhour serve`) on a data dir and port that survive
/// a restart, with an admin logged in over the API.
pub struct Server {
    pub base: String,
    pub port: u16,
    pub http: reqwest::Client,
    dir: TempDir,
    child: Option<Child>,
    /// The first admin's bearer token (a session made over the API).
    pub admin: String,
    /// The first admin's generated password (from the data dir).
    pub admin_password: String,
}

impl Server {
    pub async fn start() -> Server {
        let dir = TempDir::new().unwrap();
        let port = crate::crash::free_port();
        let http = crate::support::http_client(Duration::from_secs(30));
        let base = format!("http://127.0.0.1:{port}");
        let mut server = Server {
            base,
            port,
            http,
            dir,
            child: None,
            admin: String::new(),
            admin_password: String::new(),
        };
        server.boot().await;
        let password = std::fs::read_to_string(server.dir.path().join("admin.password")).unwrap();
        server.admin_password = password.trim().to_owned();
        server.admin = server.login_token("admin", &server.admin_password).await;
        server
    }

    async fn boot(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_rushhour"))
            .args(["serve", "--addr", &format!("127.0.0.1:{}", self.port), "--data-dir"])
            .arg(self.dir.path())
            .env_remove("RUSHHOUR_CONFIG")
            .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start rushhour");
        self.child = Some(child);
        crate::crash::ready(&self.http, &self.base).await;
    }

    /// Stop the process (SIGTERM, a graceful drain) and wait for it.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        if let Some(pid) = child.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
            }
        }
    }

    /// Start again on the same data dir and port.
    pub async fn restart(&mut self) {
        self.boot().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn login_token(&self, username: &str, password: &str) -> String {
        let r = self
            .http
            .post(self.url("/v1/sessions"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "log in {username}");
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// Create a staff account (as the admin) and return its bearer token.
    pub async fn add_user(&self, username: &str, role: &str) -> String {
        let r = self
            .http
            .post(self.url("/v1/admin/users"))
            .bearer_auth(&self.admin)
            .json(&json!({"username": username, "role": role, "password": STAFF_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "add {username}: {}", r.text().await.unwrap());
        self.login_token(username, STAFF_PASSWORD).await
    }

    /// A JSON request with a bearer token; asserts a 2xx answer.
    pub async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method.clone(), self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn get(&self, path: &str, token: &str) -> Value {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str) -> Value {
        self.call(reqwest::Method::POST, path, token, None).await
    }

    /// Place an order over the API (as a till would); returns the 202 body.
    pub async fn place(&self, body: &Value) -> Value {
        let res = self
            .http
            .post(self.url("/v1/orders"))
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
            .json(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "place {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Poll the order (as staff) until `test` holds on it; returns it.
    pub async fn order_until(&self, id: &str, token: &str, what: &str, test: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.get(&format!("/v1/orders/{id}"), token).await;
            if test(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "order {id}: timed out waiting for {what}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Page {
    /// Sign in on the login page the browser is on (or was sent to), and
    /// wait until it leaves for its `next` page.
    pub async fn sign_in(&self, username: &str, password: &str) {
        self.wait_for("[data-testid=login-form]").await;
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("[data-testid=login-submit]").await;
        self.wait_js(
            &format!("{username} to leave the login page"),
            "return location.pathname !== '/login';",
        )
        .await;
    }
}

/// An order's page as its customer keeps it: the 202's `links.page`
/// (made here from the token when an older server has no such link).
pub fn order_page(receipt: &Value) -> String {
    match receipt["links"]["page"].as_str() {
        Some(p) => p.to_owned(),
        None => format!(
            "/orders/{}?token={}",
            receipt["id"].as_str().unwrap(),
            receipt["access_token"].as_str().unwrap()
        ),
    }
}
