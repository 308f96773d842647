//! Use-cases of the Chatwoot link, shared by the HTTP handlers and the Tauri commands: link an account with an
//! administrator's token, choose the public webhook URL, register the account webhook and verify webhooks with
//! the secret Chatwoot generates, list inboxes by name, flag (and fix) an API inbox that would make every reply
//! go out twice, and prove that Chatwoot reaches the relay. No token or webhook secret is ever returned or
//! logged.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::task::TaskTracker;
use url::Url;

use super::dto::{
    self, ChatwootBody, CheckResult, HeldAction, HeldBody, HeldView, InboxAction, InboxView,
    InboxesBody, LinkAction, LinkBody, LinkInput, LinkProblem, LinkView, PublicUrlInput,
    WebhookView,
};
use crate::chatwoot::{self, CHECK_EVENT, Client, Problem, Reach, SUBSCRIPTIONS, Webhook};
use crate::config::{self, ChatwootLink, Secret};
use crate::error::{Error, Result};
use crate::events::UiEvent;
use crate::feedback;
use crate::ids::InboxId;
use crate::state::AppState;
use crate::store::chatwoot_inboxes::{self, KnownInbox};
use crate::store::chatwoot_links::{self, Link, NewLink};
use crate::store::chatwoot_recovered;
use crate::store::{now_ms, routes, settings, to_rfc3339};

/// The longest access token taken (Chatwoot's are 24 characters).
const MAX_TOKEN_CHARS: usize = 256;
/// How long the reachability check waits for Chatwoot's webhook unless told otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// At start: webhooks of linked accounts are verified with their secrets and inbox names are known; the task that
/// tells Chatwoot about replies runs (woken by `told`); the accounts of `CHATGOWA_CHATWOOT_*` are linked in the
/// background (Chatwoot may be down; the relay starts anyway).
///
/// # Errors
/// The database cannot be read.
pub async fn start(state: &AppState, tracker: &TaskTracker, told: feedback::Waker) -> Result<()> {
    // Before the first webhook: the accounts the environment names sign them, once linked.
    state
        .intake
        .linked()
        .linking(state.config.chatwoot_link.is_some());
    links_changed(state).await?;
    if !state.intake.signatures_required() && state.config.chatwoot_link.is_none() {
        tracing::warn!(
            "webhooks are accepted unsigned: anyone who can reach the webhook port can send WhatsApp messages in \
             the business's name. Link the Chatwoot account and register its webhook (the panel's Chatwoot page, \
             or CHATGOWA_CHATWOOT_URL/_ACCOUNT_ID/_TOKEN), or set CHATGOWA_CHATWOOT_SECRET"
        );
    }
    let feedback = feedback::Task {
        db: state.db.clone(),
        http: state.chatwoot_http.clone(),
        dispatcher: state.dispatcher.clone(),
        events: state.events.clone(),
        delayed_after: state.config.upkeep.delayed_after,
        waker: told.clone(),
        writer: state.writer.clone(),
    };
    tracker.spawn(feedback.run(state.shutdown.clone()));
    let catch_up = feedback::catchup::Task {
        db: state.db.clone(),
        http: state.chatwoot_http.clone(),
        writer: state.writer.clone(),
        metrics: state.metrics.clone(),
        upkeep: state.config.upkeep,
        handle: state.catch_up.clone(),
        events: state.events.clone(),
        feedback: told,
        dispatcher: state.dispatcher.clone(),
        intake: state.intake.clone(),
        next_call: tokio::sync::Mutex::new(tokio::time::Instant::now()),
    };
    tracker.spawn(catch_up.run(state.shutdown.clone()));
    if let Some(env) = state.config.chatwoot_link.clone() {
        let state = state.clone();
        tracker.spawn(async move { link_from_env(&state, env).await });
    }
    Ok(())
}

/// The public URL and the linked accounts.
///
/// # Errors
/// The database cannot be read.
pub async fn status(state: &AppState) -> Result<ChatwootBody> {
    let public = public_url(state).await?;
    let links = chatwoot_links::list(&state.db).await?;
    Ok(ChatwootBody {
        public_url: public.as_ref().map(|(url, _)| url.to_string()),
        public_url_source: public.as_ref().map(|(_, source)| (*source).to_owned()),
        suggested_url: suggested_url(state),
        public_url_reach: public
            .as_ref()
            .map(|(url, _)| chatwoot::classify(url).word().to_owned()),
        links: links
            .iter()
            .map(|link| link_view(state, link, public.as_ref().map(|(url, _)| url)))
            .collect(),
    })
}

/// Chooses the URL Chatwoot must post to (empty: none). Set by `CHATGOWA_PUBLIC_URL`, it cannot be changed here.
///
/// # Errors
/// `Conflict` when the environment sets it, `Invalid` for a URL Chatwoot could not use.
pub async fn set_public_url(state: &AppState, input: PublicUrlInput) -> Result<ChatwootBody> {
    if state.config.public_url.is_some() {
        return Err(Error::Conflict(
            "the public URL is set by CHATGOWA_PUBLIC_URL; change it there".into(),
        ));
    }
    let raw = input.url.as_deref().map(str::trim).unwrap_or_default();
    let value = if raw.is_empty() {
        String::new()
    } else {
        if raw.chars().count() > super::service::MAX_URL_CHARS {
            return Err(Error::invalid("url", "the public URL is too long"));
        }
        config::parse_public_url(raw)
            .map_err(|m| Error::invalid("url", format!("the public URL {m}")))?
            .to_string()
    };
    settings::upsert(&state.db, settings::PUBLIC_URL, &value).await?;
    state.events.send(UiEvent::Chatwoot);
    tracing::info!(public_url = value, "public webhook URL set");
    status(state).await
}

/// Links a Chatwoot account: checked at once against its API (the token's user must administer the account);
/// nothing is stored unless every check passed. Linking the same account again renews its token.
///
/// # Errors
/// `Invalid` for a missing or malformed field; `Remote` for what Chatwoot said (wrong address, token, account,
/// not an administrator, down).
pub async fn link(state: &AppState, input: LinkInput) -> Result<LinkBody> {
    let url = text(input.url.as_ref(), "url", "Chatwoot's address is required")?;
    let base = config::parse_chatwoot_url(&url)
        .map_err(|m| Error::invalid("url", format!("Chatwoot's address {m}")))?;
    let account = account_id(input.account_id.as_ref())?;
    let token = text(
        input.token.as_ref(),
        "token",
        "the access token is required (Chatwoot: Profile settings → Access Token)",
    )?;
    if token.chars().count() > MAX_TOKEN_CHARS {
        return Err(Error::invalid("token", "the access token is too long"));
    }
    let link = connect(state, &base, account, &Secret::new(token), false).await?;
    let public = public_url(state).await?;
    Ok(LinkBody {
        link: link_view(state, &link, public.as_ref().map(|(url, _)| url)),
    })
}

/// Unlinks an account; with `remove_webhook`, its webhook in Chatwoot goes first (if that fails, nothing changes).
///
/// # Errors
/// No such link, or Chatwoot refused to remove the webhook.
pub async fn unlink(state: &AppState, action: LinkAction) -> Result<dto::SuccessBody> {
    let link = find_link(state, action.id).await?;
    if let Some(webhook) = link.webhook_id.filter(|_| action.remove_webhook) {
        match client_of(state, &link)?
            .delete_webhook(link.account_id, webhook)
            .await
        {
            Ok(()) | Err(Problem::Gone(_)) => {}
            Err(problem) => return Err(remote(problem)),
        }
    }
    chatwoot_links::delete(&state.db, link.id).await?;
    account_changed(state).await?;
    tracing::info!(
        account_id = link.account_id,
        webhook_removed = action.remove_webhook,
        "Chatwoot account unlinked"
    );
    Ok(dto::SuccessBody { success: true })
}

/// Registers the account webhook for the public URL: adopts the one Chatwoot has for that URL (URLs are unique
/// per account), moves the relay's own one when the public URL changed, or creates it; then verifies the
/// account's webhooks with the secret Chatwoot generated. Running it again changes nothing.
///
/// # Errors
/// No such link, no public URL yet, or Chatwoot refused.
pub async fn register(state: &AppState, action: LinkAction) -> Result<LinkBody> {
    let link = find_link(state, action.id).await?;
    let Some((public, _)) = public_url(state).await? else {
        return Err(Error::invalid(
            "publicUrl",
            "set the public URL first: the address Chatwoot must post to",
        ));
    };
    let client = client_of(state, &link)?;
    let account = link.account_id;
    let hooks = client.webhooks(account).await.map_err(remote)?;
    let mut hook = ensure_webhook(&client, &link, &hooks, public.as_str())
        .await
        .map_err(remote)?;
    if hook.secret.is_none() {
        // Not every answer carries the secret; the list does (Chatwoot before 4.11.2 has none at all).
        let listed = client.webhooks(account).await.map_err(remote)?;
        hook.secret = listed
            .into_iter()
            .find(|h| h.id == hook.id)
            .and_then(|h| h.secret);
    }
    let secret = hook.secret.as_ref().map(|s| s.expose().as_str());
    chatwoot_links::set_webhook(&state.db, link.id, Some((hook.id, &hook.url, secret))).await?;
    account_changed(state).await?;
    tracing::info!(
        account_id = account,
        webhook_id = hook.id,
        url = hook.url,
        verified = secret.is_some(),
        "Chatwoot webhook registered"
    );
    let link = find_link(state, link.id).await?;
    Ok(LinkBody {
        link: link_view(state, &link, Some(&public)),
    })
}

/// The linked accounts' inboxes, read from Chatwoot now (and kept for their names). An account that cannot be
/// read is reported, not fatal.
///
/// # Errors
/// The database cannot be read.
pub async fn inboxes(state: &AppState) -> Result<InboxesBody> {
    let routes = routes::list(&state.db).await?;
    let gowa: Vec<String> = routes
        .iter()
        .filter_map(|r| origin(&r.webhook_url))
        .collect();
    let mut body = InboxesBody {
        inboxes: Vec::new(),
        problems: Vec::new(),
    };
    for link in chatwoot_links::list(&state.db).await? {
        let read = client_of(state, &link)?.inboxes(link.account_id).await;
        let inboxes = match read {
            Ok(inboxes) => inboxes,
            Err(problem) => {
                body.problems.push(LinkProblem {
                    link_id: link.id,
                    code: problem.code().into(),
                    message: problem.to_string(),
                });
                continue;
            }
        };
        store_inboxes(state, link.id, &inboxes).await?;
        body.inboxes.extend(inboxes.into_iter().map(|inbox| {
            let own = inbox.webhook_url.as_deref().and_then(origin);
            InboxView {
                link_id: link.id,
                account_id: link.account_id,
                route_id: routes
                    .iter()
                    .find(|r| r.inbox_id.0 == inbox.id)
                    .map(|r| r.id),
                double_delivery: inbox.is_api() && own.as_ref().is_some_and(|o| gowa.contains(o)),
                own_webhook: own,
                id: inbox.id,
                name: inbox.name,
                channel_type: inbox.channel_type,
            }
        }));
    }
    links_changed(state).await?;
    Ok(body)
}

/// Clears an API inbox's own callback URL in Chatwoot (the fix for double delivery), then lists the inboxes.
///
/// # Errors
/// No such link, or Chatwoot refused.
pub async fn clear_inbox_webhook(state: &AppState, action: InboxAction) -> Result<InboxesBody> {
    let link = find_link(state, action.link_id).await?;
    client_of(state, &link)?
        .set_inbox_webhook(link.account_id, action.inbox_id, "")
        .await
        .map_err(remote)?;
    tracing::info!(
        account_id = link.account_id,
        inbox_id = action.inbox_id,
        "API inbox's own webhook cleared (replies went out twice)"
    );
    inboxes(state).await
}

/// Why catching up with a linked account failed last, if it did (for the tray).
pub fn catch_up_problem(state: &AppState) -> Option<String> {
    state.catch_up.reports.first_error()
}

/// Replies found by catching up that wait for a decision (older than `CHATGOWA_CATCHUP_SEND_WITHIN`).
///
/// # Errors
/// The database cannot be read.
pub async fn held(state: &AppState) -> Result<HeldBody> {
    let held = chatwoot_recovered::list_held(&state.db).await?;
    Ok(HeldBody {
        held: held
            .into_iter()
            .map(|r| {
                let (id, r) = (r.id, r.found);
                let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                HeldView {
                    id,
                    account_id: r.account_id,
                    inbox_id: r.inbox_id,
                    inbox_name: state.inbox_name(r.inbox_id),
                    conversation_id: r.conversation_id,
                    message_id: r.message_id,
                    written_at: to_rfc3339(r.written_at),
                    content: body["content"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect(),
    })
}

/// Sends a held reply now (in its conversation's order), or discards it (`send` false).
///
/// # Errors
/// No such held reply, `Conflict` when its real webhook arrived meanwhile.
pub async fn decide_held(state: &AppState, action: HeldAction) -> Result<HeldBody> {
    let found = chatwoot_recovered::find(&state.db, action.id)
        .await?
        .filter(|r| r.state == "held")
        .ok_or_else(|| Error::NotFound {
            what: "held reply",
            id: action.id.to_string(),
        })?;
    let delivery = if action.send {
        let queued = feedback::catchup::queue(&state.writer, &found.found)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        if queued.is_none() {
            chatwoot_recovered::decide(&state.db, found.id, None).await?;
            return Err(Error::Conflict(
                "this reply was delivered meanwhile (or its inbox has no route): nothing was sent"
                    .into(),
            ));
        }
        queued
    } else {
        None
    };
    chatwoot_recovered::decide(&state.db, found.id, delivery).await?;
    tracing::info!(
        message_id = found.found.message_id,
        sent = delivery.is_some(),
        "held reply decided"
    );
    held(state).await
}

/// Proves that Chatwoot reaches the relay: switches the token user's typing indicator on in the account's latest
/// conversation (and off again), which makes Chatwoot post a signed `conversation_typing_on` to the webhook, and
/// waits for it. The webhook is subscribed to that event for the check only. The customer sees nothing (GoWA
/// ignores typing events) and nothing stays in the conversation.
///
/// # Errors
/// No such link, or the database cannot be read; a failed step is an answer, not an error.
pub async fn check(state: &AppState, action: LinkAction) -> Result<CheckResult> {
    let link = find_link(state, action.id).await?;
    let wait = action
        .wait_seconds
        .map_or(DEFAULT_WAIT, |s| Duration::from_secs(s.clamp(1, 30)));
    let Some((public, _)) = public_url(state).await? else {
        return Ok(failed(
            "no_public_url",
            "Set the public URL first: the address Chatwoot must post to.",
        ));
    };
    let client = client_of(state, &link)?;
    let account = link.account_id;
    let (hook, conversation) = match ready_to_check(&client, &link, &public).await {
        Ok(ready) => ready,
        Err(failure) => return Ok(failure),
    };
    // On a task of its own: an admin request that times out (or a window closed) meanwhile does not leave the
    // webhook subscribed to the check's event.
    let state = state.clone();
    let checked = tokio::spawn(async move {
        let target = (account, conversation);
        let result = subscribed_for_check(&state, &client, &hook, target, wait, &public).await;
        tracing::info!(
            account_id = account,
            step = result.step,
            "reachability check"
        );
        result
    });
    checked
        .await
        .map_err(|e| Error::Unavailable(format!("the check stopped: {e}")))
}

/// Subscribes the webhook to the check's event (unless it is already), provokes it, and puts the subscriptions
/// back as they were.
async fn subscribed_for_check(
    state: &AppState,
    client: &Client,
    hook: &Webhook,
    (account, conversation): (i64, i64),
    wait: Duration,
    public: &Url,
) -> CheckResult {
    let widened = !hook.subscriptions.iter().any(|s| s == CHECK_EVENT);
    if widened {
        let mut with_check = hook.subscriptions.clone();
        with_check.push(CHECK_EVENT.into());
        if let Err(problem) = client
            .update_webhook(account, hook.id, &hook.url, &with_check)
            .await
        {
            return failed("api", problem.to_string());
        }
    }
    let result = provoke(state, client, account, conversation, wait, public).await;
    if widened
        && let Err(problem) = client
            .update_webhook(account, hook.id, &hook.url, &hook.subscriptions)
            .await
    {
        tracing::warn!(account_id = account, problem = %problem, "could not unsubscribe the check's event");
    }
    result
}

/// The relay's webhook (registered for the public URL) and a conversation to type in, or the step that failed.
async fn ready_to_check(
    client: &Client,
    link: &Link,
    public: &Url,
) -> std::result::Result<(Webhook, i64), CheckResult> {
    let account = link.account_id;
    let hooks = client
        .webhooks(account)
        .await
        .map_err(|problem| failed("api", problem.to_string()))?;
    let hook = link
        .webhook_id
        .and_then(|id| hooks.into_iter().find(|h| h.id == id && h.url == public.as_str()))
        .ok_or_else(|| {
            failed(
                "webhook_missing",
                "Chatwoot has no webhook of this account to the public URL: press Register webhook.",
            )
        })?;
    match client.latest_conversation(account).await {
        Ok(Some(conversation)) => Ok((hook, conversation)),
        Ok(None) => Err(failed(
            "no_conversation",
            "The account has no conversation yet to test with: send a WhatsApp message to the number first, \
             then check again.",
        )),
        Err(problem) => Err(failed("api", problem.to_string())),
    }
}

/// Makes Chatwoot fire the check's event and waits for it.
async fn provoke(
    state: &AppState,
    client: &Client,
    account: i64,
    conversation: i64,
    wait: Duration,
    public: &Url,
) -> CheckResult {
    let linked = state.intake.linked();
    let mut news = linked.news();
    let since = now_ms();
    let asked = Instant::now();
    if let Err(problem) = client.typing(account, conversation, true).await {
        return failed("api", problem.to_string());
    }
    let deadline = tokio::time::Instant::now() + wait;
    let heard = loop {
        let heard = linked.heard(account);
        if let Some(at) = heard.signed_at.filter(|at| *at >= since) {
            break Some(Ok(at));
        }
        if heard.refused_at.is_some_and(|at| at >= since) {
            break Some(Err(()));
        }
        if !matches!(
            tokio::time::timeout_at(deadline, news.changed()).await,
            Ok(Ok(()))
        ) {
            break None;
        }
    };
    if let Err(problem) = client.typing(account, conversation, false).await {
        tracing::debug!(problem = %problem, "typing indicator not switched off");
    }
    match heard {
        Some(Ok(at)) => CheckResult {
            ok: true,
            step: "reached".into(),
            message: format!("Chatwoot reached this relay at {}.", to_rfc3339(at)),
            reached_at: Some(to_rfc3339(at)),
            latency_ms: Some(u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX)),
        },
        Some(Err(())) => failed(
            "refused",
            "A webhook of this account arrived, but its signature did not match: press Register webhook again \
             (the webhook's secret may have been changed in Chatwoot).",
        ),
        None => failed(
            "timeout",
            format!(
                "Nothing arrived from Chatwoot within {} s. {}",
                wait.as_secs(),
                likely_cause(public)
            ),
        ),
    }
}

/// Why Chatwoot may not reach `public`.
fn likely_cause(public: &Url) -> String {
    let host = public.host_str().unwrap_or_default();
    let kind = match chatwoot::classify(public) {
        Reach::Public => {
            return format!(
                "Check that {public} can be reached from Chatwoot's server: the port open in the firewall, the \
                 tunnel or port forward running, and Chatwoot's background jobs (Sidekiq) running."
            );
        }
        Reach::Private => "an address of a local network",
        Reach::Loopback => "an address of this computer only",
        Reach::LinkLocal => "a link-local address",
    };
    format!(
        "{host} is {kind}: Chatwoot 4.14 and later refuse it unless its operator sets \
         SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true, and Chatwoot Cloud cannot reach it at all. Use a public address: a \
         tunnel (Cloudflare Tunnel, ngrok, Tailscale Funnel), a port forward on the router, or a reverse proxy."
    )
}

fn failed(step: &str, message: impl Into<String>) -> CheckResult {
    CheckResult {
        ok: false,
        step: step.into(),
        message: message.into(),
        reached_at: None,
        latency_ms: None,
    }
}

/// The webhook for `url`: the account's own for that URL, the relay's earlier one moved to it, or a new one.
async fn ensure_webhook(
    client: &Client,
    link: &Link,
    hooks: &[Webhook],
    url: &str,
) -> Result<Webhook, Problem> {
    let account = link.account_id;
    let existing = hooks.iter().find(|h| h.url == url).or_else(|| {
        link.webhook_id
            .and_then(|id| hooks.iter().find(|h| h.id == id))
    });
    if let Some(hook) = existing {
        let wanted = with_subscriptions(&hook.subscriptions);
        if hook.url == url && wanted.len() == hook.subscriptions.len() {
            return Ok(hook.clone());
        }
        return client.update_webhook(account, hook.id, url, &wanted).await;
    }
    match client
        .create_webhook(account, url, &with_subscriptions(&[]))
        .await
    {
        // Made meanwhile by someone else: the URL is unique in the account, so it is this one.
        Err(Problem::Rejected(said)) => client
            .webhooks(account)
            .await?
            .into_iter()
            .find(|h| h.url == url)
            .ok_or(Problem::Rejected(said)),
        made => made,
    }
}

/// `current` plus the events the routes need.
fn with_subscriptions(current: &[String]) -> Vec<String> {
    let mut all = current.to_vec();
    for needed in SUBSCRIPTIONS {
        if !all.iter().any(|s| s == needed) {
            all.push(needed.to_owned());
        }
    }
    all
}

/// Checks a token against Chatwoot and stores the link (and the account's inboxes).
async fn connect(
    state: &AppState,
    base: &Url,
    account: i64,
    token: &Secret<String>,
    from_env: bool,
) -> Result<Link> {
    let client = Client::new(state.chatwoot_http.clone(), base.clone(), token)
        .map_err(|m| Error::invalid("token", m))?;
    let accounts = client.accounts().await.map_err(remote)?;
    let Some(found) = accounts.into_iter().find(|a| a.id == account) else {
        return Err(remote(Problem::NoAccount(account)));
    };
    if found.role != "administrator" {
        return Err(remote(Problem::NotAdmin(account)));
    }
    // What an administrator may see, asked for real.
    client.webhooks(account).await.map_err(remote)?;
    let inboxes = client.inboxes(account).await.map_err(remote)?;
    let base_url = base.as_str().trim_end_matches('/');
    let new = NewLink {
        base_url,
        account_id: account,
        account_name: &found.name,
        token: token.expose(),
        from_env,
    };
    let link = chatwoot_links::upsert(&state.db, &new).await?;
    store_inboxes(state, link.id, &inboxes).await?;
    account_changed(state).await?;
    state.catch_up.now();
    tracing::info!(
        account_id = account,
        chatwoot = base_url,
        "Chatwoot account linked"
    );
    Ok(link)
}

/// Links the accounts of `CHATGOWA_CHATWOOT_*`, and registers their webhook when the public URL is known. While
/// Chatwoot is unreachable it tries again, less and less often; a refusal (wrong token, account) is logged once.
async fn link_from_env(state: &AppState, env: ChatwootLink) {
    let mut left = env.accounts.clone();
    let mut delay = Duration::from_secs(15);
    let mut refused = false;
    while !left.is_empty() {
        let mut again = Vec::new();
        for account in left {
            match connect(state, &env.url, account, &env.token, true).await {
                Ok(link) => {
                    if !register_from_env(state, link.id).await {
                        again.push(account);
                    }
                }
                Err(Error::Remote {
                    gateway: true,
                    message,
                    ..
                }) => {
                    tracing::warn!(account_id = account, problem = message, retry_in = ?delay, "cannot link Chatwoot yet");
                    again.push(account);
                }
                Err(e) => {
                    tracing::error!(account_id = account, problem = %e, "Chatwoot account not linked (CHATGOWA_CHATWOOT_*)");
                    refused = true;
                }
            }
        }
        left = again;
        if left.is_empty() {
            break;
        }
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(600));
    }
    // Linked (a refused one stays unlinked, and its webhooks refused, until the panel links it).
    if !refused {
        state.intake.linked().linking(false);
    }
}

/// Registers the webhook of the environment's link `id`; `false` when Chatwoot could not be asked (to be tried
/// again). Without a public URL there is nothing to register.
async fn register_from_env(state: &AppState, id: i64) -> bool {
    if matches!(public_url(state).await, Ok(None)) {
        return true;
    }
    let action = LinkAction {
        id,
        ..LinkAction::default()
    };
    if let Err(e) = register(state, action).await {
        tracing::warn!(problem = %e, "Chatwoot webhook not registered");
        return false;
    }
    true
}

/// The linked accounts changed (here, or at another relay on the same PostgreSQL database): webhooks are
/// verified with the new secrets, screens show the new names.
///
/// # Errors
/// The database cannot be read.
pub async fn links_changed(state: &AppState) -> Result<()> {
    state.intake.linked().reload(&state.db).await?;
    let names = chatwoot_inboxes::list(&state.db)
        .await?
        .into_iter()
        .map(|inbox| (InboxId(inbox.inbox_id), inbox.name))
        .collect();
    *state
        .inbox_names
        .write()
        .unwrap_or_else(PoisonError::into_inner) = names;
    state.events.send(UiEvent::Routes);
    Ok(())
}

/// [`links_changed`], and open Chatwoot pages (another admin's, the native window) show the change. Not for
/// reading the inboxes: a Chatwoot page reads them on every change.
async fn account_changed(state: &AppState) -> Result<()> {
    links_changed(state).await?;
    if let Some(leases) = state.dispatcher.leases() {
        leases.hint(crate::delivery::leases::Hint::Links);
    }
    state.events.send(UiEvent::Chatwoot);
    Ok(())
}

async fn store_inboxes(state: &AppState, link_id: i64, inboxes: &[chatwoot::Inbox]) -> Result<()> {
    let known: Vec<KnownInbox> = inboxes.iter().map(|i| i.known(link_id)).collect();
    chatwoot_inboxes::replace(&state.db, link_id, &known).await?;
    Ok(())
}

/// The URL Chatwoot must post to, and where it was set.
async fn public_url(state: &AppState) -> Result<Option<(Url, &'static str)>> {
    if let Some(url) = &state.config.public_url {
        return Ok(Some((url.clone(), "env")));
    }
    let stored = settings::find(&state.db, settings::PUBLIC_URL).await?;
    Ok(stored
        .and_then(|raw| Url::parse(&raw).ok())
        .map(|url| (url, "setting")))
}

/// The webhook listener's address on this computer's network: right when Chatwoot runs on the same network (and
/// may reach private addresses), a starting point otherwise.
fn suggested_url(state: &AppState) -> String {
    let listening = *state
        .webhook_addr
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let addr = listening.unwrap_or_else(|| SocketAddr::new(state.config.bind, state.config.port));
    let ip = if addr.ip().is_unspecified() {
        outward_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    } else {
        addr.ip()
    };
    format!("http://{}/webhook", SocketAddr::new(ip, addr.port()))
}

/// The address this computer would send from to the internet (no packet is sent).
fn outward_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn link_view(state: &AppState, link: &Link, public: Option<&Url>) -> LinkView {
    let heard = state.intake.linked().heard(link.account_id);
    LinkView {
        id: link.id,
        url: link.base_url.clone(),
        account_id: link.account_id,
        account_name: link.account_name.clone(),
        from_env: link.from_env,
        webhook: link
            .webhook_id
            .zip(link.webhook_url.clone())
            .map(|(id, url)| WebhookView {
                id,
                current: public.is_some_and(|p| p.as_str() == url),
                url,
                verified: link.webhook_secret.is_some(),
            }),
        heard_at: heard.signed_at.map(to_rfc3339),
        caught_up: state
            .catch_up
            .reports
            .of(link.id)
            .map(|r| dto::CatchUpView {
                at: to_rfc3339(r.at),
                error: r.error,
                queued: r.queued,
                held: r.held,
            }),
    }
}

async fn find_link(state: &AppState, id: i64) -> Result<Link> {
    chatwoot_links::find(&state.db, id)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "Chatwoot link",
            id: id.to_string(),
        })
}

fn client_of(state: &AppState, link: &Link) -> Result<Client> {
    let base = Url::parse(&link.base_url).map_err(|e| Error::invalid("url", e.to_string()))?;
    Client::new(
        state.chatwoot_http.clone(),
        base,
        &Secret::new(link.token.clone()),
    )
    .map(|client| client.measuring(state.intake.linked().clock()))
    .map_err(|m| Error::invalid("token", m))
}

/// What Chatwoot said, as the service's error.
fn remote(problem: Problem) -> Error {
    Error::Remote {
        code: problem.code(),
        field: problem.field(),
        gateway: problem.is_failure(),
        message: problem.to_string(),
    }
}

/// Scheme, host and port of a URL (no credentials, path or query), if it is one.
fn origin(raw: &str) -> Option<String> {
    let url = Url::parse(raw.trim()).ok()?;
    url.host()?;
    Some(url.origin().ascii_serialization())
}

fn text(value: Option<&Value>, field: &'static str, missing: &str) -> Result<String> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(Error::invalid(field, missing)),
    }
}

fn account_id(value: Option<&Value>) -> Result<i64> {
    let id = match value {
        // Typed into a form: spaces around the number are the form's, not the id's.
        Some(Value::String(s)) => crate::ids::parse_text(s.trim()),
        Some(v) => crate::ids::parse_json(v),
        None => None,
    };
    id.ok_or_else(|| {
        Error::invalid(
            "accountId",
            "the account id is a positive number: the one after /accounts/ in Chatwoot's address",
        )
    })
}
