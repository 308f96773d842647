//! What the browser test and the native-window test share: finding elements, the route form, screenshots.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt as _;

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};

use crate::support::eventually;

/// How long one scenario may take in all: a WebDriver call that never answers fails its test, instead of holding
/// the display (and the tests waiting for it) until CI's own limit.
pub const SCENARIO: Duration = Duration::from_secs(420);

/// The step a scenario was at, for the report of one that stalled.
static STEP_AT: Mutex<String> = Mutex::new(String::new());

fn at(step: impl Into<String>) {
    *STEP_AT.lock().unwrap_or_else(|e| e.into_inner()) = step.into();
}

/// Runs `scenario` within [`SCENARIO`]; when it fails or stalls, leaves what the page showed; then ends the
/// WebDriver session (each call bounded). The outcome is the caller's to report after its own cleanup.
pub async fn run_scenario(
    c: &Client,
    name: &str,
    scenario: impl Future<Output = ()>,
) -> std::thread::Result<()> {
    at("the start");
    let outcome = std::panic::AssertUnwindSafe(scenario).catch_unwind();
    let outcome = tokio::time::timeout(SCENARIO, outcome)
        .await
        .unwrap_or_else(|_| {
            let step = STEP_AT.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Err(Box::new(format!(
                "{name}: not done within {SCENARIO:?}; it was at {step}"
            )))
        });
    if outcome.is_err() {
        record_failure(c, name).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), c.clone().close()).await;
    outcome
}

/// Waits for an element (fantoccini polls the page).
pub async fn css(c: &Client, selector: &str) -> Element {
    at(format!("finding {selector}"));
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
}

/// Waits until the page has not changed for a moment. A live redraw that replaces an element between the
/// driver's mouse-down and mouse-up on it makes no click at all (as for a person clicking at that instant): a
/// click is made on a page at rest.
async fn settled(c: &Client) {
    const QUIET_MS: u32 = 250;
    let probe = format!(
        "(() => {{ if (!window.__changedAt) {{ window.__changedAt = performance.now(); \
         new MutationObserver(() => {{ window.__changedAt = performance.now(); }}) \
         .observe(document.documentElement, {{ subtree: true, childList: true, attributes: true, characterData: true }}); }} \
         return performance.now() - window.__changedAt > {QUIET_MS}; }})()"
    );
    eventually("the page to settle", STEP, || async {
        (eval(c, &probe).await? == serde_json::Value::Bool(true)).then_some(())
    })
    .await;
}

/// Clicks an element on a settled page, finding it again if the screen redrew it in between (a stale element
/// is not clicked).
pub async fn click(c: &Client, selector: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        settled(c).await;
        let element = css(c, selector).await;
        at(format!("clicking {selector}"));
        match element.click().await {
            Ok(_) => return,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                    && std::time::Instant::now() < deadline => {}
            Err(e) => panic!("clicking {selector}: {e}"),
        }
    }
}

/// Fills the open add-route form by typing, and saves it.
pub async fn submit_route(c: &Client, inbox: &str, name: &str, url: &str) {
    css(c, "#route-inboxId")
        .await
        .send_keys(inbox)
        .await
        .unwrap();
    css(c, "#route-name").await.send_keys(name).await.unwrap();
    css(c, "#route-webhookUrl")
        .await
        .send_keys(url)
        .await
        .unwrap();
    click(c, "#route-save").await;
}

/// Retypes the form's URL and saves again.
pub async fn resubmit_url(c: &Client, url: &str) {
    let field = css(c, "#route-webhookUrl").await;
    field.clear().await.unwrap();
    field.send_keys(url).await.unwrap();
    click(c, "#route-save").await;
}

/// Saves what the page shows as `name`, in `docs/screenshots/` with `CHATGOWA_UPDATE_SCREENSHOTS=1`, else in the
/// test output folder.
pub async fn screenshot(c: &Client, name: &str) {
    at(format!("taking {name}"));
    let png = tokio::time::timeout(STEP, c.screenshot())
        .await
        .unwrap_or_else(|_| panic!("{name}: no screenshot within {STEP:?}"))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    std::fs::write(screenshot_dir().join(name), png).unwrap();
}

fn screenshot_dir() -> PathBuf {
    let dir = if std::env::var_os("CHATGOWA_UPDATE_SCREENSHOTS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Leaves what the page showed when a step failed: a screenshot and its text, in the test output folder (each
/// call bounded: the page may be what stalled).
async fn record_failure(c: &Client, name: &str) {
    let bounded = |call| tokio::time::timeout(Duration::from_secs(10), call);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("failures");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(Ok(png)) = bounded(c.screenshot().boxed()).await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
    let text = eval(c, "document.body.innerText").await;
    let url = eval(c, "location.href").await;
    eprintln!("{name}: the page showed {text:?} at {url:?}");
}

/// How long a step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(30);

/// Evaluates `expression` in the page, giving up on a call after a few seconds (so a busy webview cannot hang
/// the test).
pub async fn eval(c: &Client, expression: &str) -> Option<serde_json::Value> {
    at(format!("evaluating {expression}"));
    let script = format!("return {expression};");
    let call = c.execute(&script, vec![]);
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .ok()?
        .ok()
}

/// Waits until the element's text contains `needle`.
pub async fn text_of(c: &Client, selector: &str, needle: &str) -> String {
    let expression = format!("document.querySelector({selector:?})?.textContent ?? ''");
    eventually(&format!("{selector} to show {needle:?}"), STEP, || async {
        let text = eval(c, &expression).await?.as_str()?.to_owned();
        text.contains(needle).then_some(text)
    })
    .await
}

/// Waits until an input holds `expected`.
#[cfg_attr(not(feature = "desktop"), allow(dead_code))] // only the native window's test reads values
pub async fn value_of(c: &Client, selector: &str, expected: &str) {
    let expression = format!("document.querySelector({selector:?})?.value ?? ''");
    eventually(
        &format!("{selector} to hold {expected:?}"),
        STEP,
        || async { (eval(c, &expression).await?.as_str()? == expected).then_some(()) },
    )
    .await;
}

/// Switches screens (after the script returns: a navigation inside a script call can stall WebKit's driver)
/// and waits until `ready` is on the page.
pub async fn show(c: &Client, hash: &str, ready: &str) {
    // Asks again on every poll until the screen is there: a lost request cannot strand the test.
    let probe = format!(
        "(() => {{ if (location.hash !== '{hash}') setTimeout(() => {{ location.hash = '{hash}'; }}, 0); \
         return location.hash === '{hash}' && document.querySelector({ready:?}) !== null; }})()"
    );
    eventually(&format!("{hash} to show {ready}"), STEP, || async {
        (eval(c, &probe).await? == serde_json::Value::Bool(true)).then_some(())
    })
    .await;
}

/// Waits until `selector` matches an element, asking the page itself.
pub async fn present(c: &Client, selector: &str) {
    let probe = format!("document.querySelector({selector:?}) !== null");
    eventually(&format!("{selector} on the page"), STEP, || async {
        (eval(c, &probe).await? == serde_json::Value::Bool(true)).then_some(())
    })
    .await;
}

/// Sets an input's value as a user would have typed it.
pub async fn set_value(c: &Client, selector: &str, value: &str) {
    let expression = format!("(document.querySelector({selector:?}).value = {value:?}, true)");
    assert_eq!(
        eval(c, &expression).await,
        Some(serde_json::Value::Bool(true)),
        "setting {selector}"
    );
}
