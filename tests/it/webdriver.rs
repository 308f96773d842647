//! What the browser test and the native-window test share: finding elements, the route form, screenshots.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};

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
