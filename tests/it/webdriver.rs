//! What the browser test and the native-window test share: finding elements, the route form, screenshots.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};

use crate::support::eventually;

/// Waits for an element (fantoccini polls the page).
pub async fn css(c: &Client, selector: &str) -> Element {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
}

/// Clicks an element, finding it again if the screen redrew it in between (a stale element is not clicked).
pub async fn click(c: &Client, selector: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match css(c, selector).await.click().await {
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

/// Where screenshots go: `docs/screenshots/` with `CHATGOWA_UPDATE_SCREENSHOTS=1`, else the test output folder.
pub fn screenshot_dir() -> PathBuf {
    let dir = if std::env::var_os("CHATGOWA_UPDATE_SCREENSHOTS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Leaves what the page showed when a step failed: a screenshot and its text, in the test output folder.
pub async fn record_failure(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("failures");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = c.screenshot().await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
    let text = c.execute("return document.body.innerText", vec![]).await;
    eprintln!(
        "{name}: the page showed {:?} at {:?}",
        text.ok(),
        c.current_url().await.ok().map(|u| u.to_string())
    );
}

/// How long a step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(30);

/// Evaluates `expression` in the page, giving up on a call after a few seconds (so a busy webview cannot hang
/// the test).
pub async fn eval(c: &Client, expression: &str) -> Option<serde_json::Value> {
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
    let script = format!("document.querySelector({selector:?}).value = {value:?}; return true;");
    c.execute(&script, vec![]).await.unwrap();
}
