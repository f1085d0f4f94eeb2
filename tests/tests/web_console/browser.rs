//! Headless Chromium driven over WebDriver: `chromedriver` (Debian's `chromium-driver`) on a
//! free loopback port, with a fresh profile, talked to with `fantoccini`.
//!
//! # Notable behaviors
//! - Chromium or chromedriver missing fails the test with a message naming
//!   `deploy/chromium.sh install`; it never skips.
//! - chromedriver runs in a process group of its own; dropping a [`Browser`] SIGKILLs the group,
//!   Chromium included, also when the test panics.
//! - Screenshots go to the folder [`Browser::start`] is given; each is printed as it is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use test_support::ports::free_port;
use test_support::wait::eventually;

/// How long a page may take to show what a test waits for.
pub const PAGE: Duration = Duration::from_secs(30);

const CHROMIUM_VAR: &str = "CONSOLE_TEST_CHROMIUM";
const CHROMEDRIVER_VAR: &str = "CONSOLE_TEST_CHROMEDRIVER";

/// One browser session and its driver.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    shots: PathBuf,
    taken: usize,
}

fn binary(var: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.is_file(),
        "{} not found (set {var} to its path); install Chromium and its driver with `deploy/chromium.sh install` (deploy/test.sh does it)",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile under `work_dir`;
    /// screenshots go to `shots`.
    pub async fn start(work_dir: &Path, shots: &Path) -> Self {
        let chromium = binary(CHROMIUM_VAR, "/usr/bin/chromium");
        let chromedriver = binary(CHROMEDRIVER_VAR, "/usr/bin/chromedriver");
        std::fs::create_dir_all(shots).unwrap();
        let profile = work_dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let port = free_port();
        let log = std::fs::File::create(work_dir.join("chromedriver.log")).unwrap();
        let driver = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
        let driver_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually("chromedriver answers /status", PAGE, || async {
            http.get(format!("{driver_url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start a Chromium session through chromedriver: {e}\n{}",
                    std::fs::read_to_string(work_dir.join("chromedriver.log")).unwrap_or_default()
                )
            });
        Self {
            client,
            driver,
            shots: shots.to_owned(),
            taken: 0,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Waits until `script` returns a truthy value; returns it. The failure names `what` and
    /// the last value.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        eventually(what, PAGE, || async {
            let value = self
                .client
                .execute(script, Vec::new())
                .await
                .map_err(|e| e.to_string())?;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            truthy.then_some(value.clone()).ok_or(value.to_string())
        })
        .await
    }

    /// Clicks the element `css` selects. Live updates redraw rows under the pointer, so an
    /// element that went stale between finding and clicking is found again.
    pub async fn click(&self, css: &str) {
        eventually(&format!("a click on {css}"), PAGE, || async {
            let element = self
                .client
                .find(fantoccini::Locator::Css(css))
                .await
                .map_err(|e| format!("no {css}: {e}"))?;
            element.click().await.map_err(|e| e.to_string())
        })
        .await;
    }

    /// Types `text` into the field `css` selects, replacing what it holds.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Writes a PNG of the window as `<NN>-<name>.png` in the screenshot folder and prints it.
    pub async fn screenshot(&mut self, name: &str, shows: &str) -> PathBuf {
        self.taken += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.taken));
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {} ({shows})", path.display());
        path
    }

    /// Ends the session (Chromium quits) and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id().and_then(|pid| i32::try_from(pid).ok()) {
            // The driver's group holds Chromium too.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

/// The screenshot folder of test `name`: `$CONSOLE_TEST_SCREENSHOTS/<name>`, by default
/// `$TMPDIR/console-web-screenshots/<name>`, emptied first and kept after the test.
pub fn screenshot_dir(name: &str) -> PathBuf {
    let root = std::env::var_os("CONSOLE_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("console-web-screenshots"));
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("screenshots of {name}: {}", dir.display());
    dir
}
