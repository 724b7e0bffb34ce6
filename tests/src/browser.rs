//! A headless Chromium for browser tests, driven through `chromedriver` with the W3C WebDriver
//! protocol over HTTP (reqwest and serde_json; no WebDriver crate needed for the handful of
//! commands the tests use).
//!
//! Chromium and chromedriver are Debian's (`apt-get install chromium chromium-driver`; `./x test`
//! installs them): `/usr/bin/chromium` and `/usr/bin/chromedriver`, or the paths in
//! [`CHROMIUM_ENV`] and [`CHROMEDRIVER_ENV`]. When they are missing, [`Browser::start`] fails
//! the test with a message saying so: a browser test never skips silently.
//!
//! Invariants: every WebDriver call has a time limit; chromedriver runs in its own process
//! group, which is killed (Chromium with it) when the [`Browser`] is dropped; the Chromium
//! profile is a fresh temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{free_port, http_client};

/// Environment variable naming the Chromium binary (default `/usr/bin/chromium`).
pub const CHROMIUM_ENV: &str = "LOYALTY_CHROMIUM";
/// Environment variable naming the chromedriver binary (default `/usr/bin/chromedriver`).
pub const CHROMEDRIVER_ENV: &str = "LOYALTY_CHROMEDRIVER";
/// Environment variable naming the directory screenshots go to (default
/// `<target>/test-artifacts/<test>`).
pub const ARTIFACTS_ENV: &str = "LOYALTY_ARTIFACTS_DIR";
/// How long chromedriver has to answer `/status` as ready.
pub const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a click has to load the next page.
pub const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(15);
/// Browser window width, CSS pixels.
pub const WINDOW_WIDTH: u64 = 1280;
/// Tallest screenshot, CSS pixels (a longer page is cut).
pub const SCREENSHOT_HEIGHT_MAX: u64 = 6000;

/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium flags: headless, no sandbox (tests may run as root), and nothing that reaches
/// out to the network on its own (without these, Chromium's own connections are refused on
/// test machines and it stalls).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
];

fn binary(env: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found: the browser tests need Debian's `{package}` \
         (apt-get install -y chromium chromium-driver; ./x test installs it), or set {env}",
        path.display()
    );
    path
}

/// Where a test's artifacts (screenshots) go: `$LOYALTY_ARTIFACTS_DIR`, or else
/// `test-artifacts/<test>` in the Cargo target directory of `target_tmp` (pass
/// `env!("CARGO_TARGET_TMPDIR")`, which is `<target>/tmp`). Created empty.
pub fn artifacts_dir(target_tmp: &str, test: &str) -> PathBuf {
    let dir = match std::env::var_os(ARTIFACTS_ENV) {
        Some(d) => PathBuf::from(d),
        None => Path::new(target_tmp)
            .parent()
            .expect("CARGO_TARGET_TMPDIR is <target>/tmp")
            .join("test-artifacts")
            .join(test),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the artifacts directory");
    dir
}

/// A WebDriver element reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(pub String);

/// A chromedriver process with one Chromium session.
pub struct Browser {
    driver: Option<Child>,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session with a fresh
    /// profile. Fails the test when Chromium or chromedriver is missing.
    pub async fn start() -> Browser {
        let chromium = binary(CHROMIUM_ENV, "/usr/bin/chromium", "chromium");
        let driver_bin = binary(CHROMEDRIVER_ENV, "/usr/bin/chromedriver", "chromium-driver");
        let port = free_port();
        let profile = tempfile::tempdir().expect("a Chromium profile directory");
        let mut cmd = Command::new(&driver_bin);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that dropping the browser kills Chromium too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_bin.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = http_client();
        let mut browser = Browser {
            driver: Some(driver),
            base,
            session: String::new(),
            http,
            profile,
        };
        browser.wait_driver_ready().await;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser.profile.path().display()
        ));
        args.push(format!("--window-size={WINDOW_WIDTH},900"));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let v = browser
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_owned();
        browser
    }

    async fn wait_driver_ready(&mut self) {
        let deadline = Instant::now() + DRIVER_READY_TIMEOUT;
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/status", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == json!(true) {
                        return;
                    }
                }
            }
            if let Some(Ok(Some(status))) = self.driver.as_mut().map(|c| c.try_wait()) {
                panic!("chromedriver exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within {DRIVER_READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One WebDriver command; fails the test on an error answer. Returns `value`.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = r.status();
        let v: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: not JSON: {e}"));
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, &self.session_path("/url"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, &self.session_path("/title"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every element matching the CSS selector, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .call(
                reqwest::Method::POST,
                &self.session_path("/elements"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching the CSS selector; fails the test when there is none.
    pub async fn find(&self, css: &str) -> Element {
        let url = self.url().await;
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {css:?} on {url}"))
    }

    /// An attribute of an element (`None` when it has none).
    pub async fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.call(
            reqwest::Method::GET,
            &self.session_path(&format!("/element/{}/attribute/{name}", e.0)),
            None,
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// An attribute that must be there.
    pub async fn must_attr(&self, e: &Element, name: &str) -> String {
        self.attr(e, name)
            .await
            .unwrap_or_else(|| panic!("element has no attribute {name:?}"))
    }

    /// The element's rendered text.
    pub async fn text(&self, e: &Element) -> String {
        self.call(
            reqwest::Method::GET,
            &self.session_path(&format!("/element/{}/text", e.0)),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Clicks an element (to follow a link, see [`Browser::follow`]).
    pub async fn click(&self, e: &Element) {
        self.call(
            reqwest::Method::POST,
            &self.session_path(&format!("/element/{}/click", e.0)),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks an element that loads a new page (a link, a form's button) and waits until the
    /// new document has loaded: the old one is marked first, so that a click answered before
    /// the navigation started is never mistaken for its end.
    pub async fn follow(&self, e: &Element) {
        self.script(
            "document.documentElement.dataset.leftBehind = '1';",
            json!([]),
        )
        .await;
        self.click(e).await;
        let deadline = Instant::now() + NAVIGATION_TIMEOUT;
        loop {
            let loaded = self
                .script(
                    "return document.readyState === 'complete' \
                     && !document.documentElement.dataset.leftBehind;",
                    json!([]),
                )
                .await;
            if loaded == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no new page loaded within {NAVIGATION_TIMEOUT:?} of the click (at {})",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Types `text` into an input element.
    pub async fn type_text(&self, e: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &self.session_path(&format!("/element/{}/value", e.0)),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Runs a script in the page and returns its result (WebDriver `execute/sync`; the pages
    /// themselves run no script).
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The `data-*` attributes of every element matching `css`, as objects.
    pub async fn datasets(&self, css: &str) -> Vec<Value> {
        self.script(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => Object.assign({}, e.dataset));",
            json!([css]),
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// Saves a PNG screenshot of the whole page (the window is made as tall as the page, up
    /// to [`SCREENSHOT_HEIGHT_MAX`]) to `path`.
    pub async fn screenshot(&self, path: &Path) {
        // Small first: a page's scroll height is never less than the window's.
        self.set_window(400).await;
        let v = self
            .script(
                "return [document.documentElement.scrollHeight, \
                 window.outerHeight - window.innerHeight];",
                json!([]),
            )
            .await;
        let page = v[0].as_u64().unwrap_or(900);
        let frame = v[1].as_u64().unwrap_or(0);
        self.set_window((page + frame).min(SCREENSHOT_HEIGHT_MAX))
            .await;
        let v = self
            .call(
                reqwest::Method::GET,
                &self.session_path("/screenshot"),
                None,
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a base64 screenshot"))
            .expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    async fn set_window(&self, height: u64) {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/window/rect"),
            Some(json!({"width": WINDOW_WIDTH, "height": height})),
        )
        .await;
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn quit(mut self) {
        let path = self.session_path("");
        let _ = self
            .http
            .delete(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.driver.take() {
            // The whole process group: chromedriver and the Chromium it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}
