//! Catching up with a linked Chatwoot: replies written while Chatwoot could not reach the relay (the PC off, the
//! tunnel down, the relay restarting) are never sent again by Chatwoot. At start and every
//! `CHATGOWA_CATCHUP_INTERVAL` (only while an account is linked), the relay asks for the routed inboxes'
//! conversations updated since it was last current (at most `CHATGOWA_CATCHUP_MAX` back) and their messages after
//! the last one it stored; an agent's reply it never received is rebuilt in the webhook's shape (GoWA binds
//! `message_type` as a string: the REST API's integer would be refused) and stored through the writer with the
//! message's identity, so the real webhook arriving late is a duplicate and vice versa. It is queued in its
//! conversation's lane in message-id order, or held for a decision when older than
//! `CHATGOWA_CATCHUP_SEND_WITHIN` (a reply hours late may surprise a customer).

use crate::store::Db;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::chatwoot::{Client, Conversation, Problem};
use crate::config::Upkeep;
use crate::events::{Events, UiEvent};
use crate::ids::InboxId;
use crate::metrics::Metrics;
use crate::relay::payload;
use crate::store::chatwoot_feedback::{self, NewFeedback};
use crate::store::chatwoot_inboxes::{self, KnownInbox};
use crate::store::chatwoot_links::{self, Link};
use crate::store::chatwoot_recovered::{self as recovered, NewRecovered};
use crate::store::deliveries::NewDelivery;
use crate::store::writer::Decision;
use crate::store::{Writer, now_ms, routes, settings};

/// The last catch-up of each link: when, and what went wrong (shown in the panel).
#[derive(Debug, Clone, Default)]
pub struct Reports(Arc<Mutex<HashMap<i64, Report>>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub at: i64,
    pub error: Option<String>,
    /// Replies queued and held by that catch-up.
    pub queued: usize,
    pub held: usize,
}

impl Reports {
    pub fn of(&self, link: i64) -> Option<Report> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&link)
            .cloned()
    }

    /// The first account that could not be caught up with, and why.
    pub fn first_error(&self) -> Option<String> {
        let reports = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        reports.values().find_map(|r| r.error.clone())
    }

    fn set(&self, link: i64, report: Report) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(link, report);
    }
}

/// What the rest of the relay holds of the catch-up task: its reports, and a way to make it look now.
#[derive(Debug, Clone, Default)]
pub struct CatchUp {
    pub reports: Reports,
    wake: Arc<Notify>,
}

impl CatchUp {
    /// Catch up now (an account was linked).
    pub fn now(&self) {
        self.wake.notify_one();
    }
}

/// The catch-up task.
pub struct Task {
    pub db: Db,
    pub http: reqwest::Client,
    pub writer: Writer,
    pub metrics: Metrics,
    pub upkeep: Upkeep,
    pub handle: CatchUp,
    pub events: Events,
    /// The feedback task, which sends the notes under held replies.
    pub feedback: super::Waker,
    /// The lanes, for a reply whose Retry in Chatwoot was found by reading it back.
    pub dispatcher: crate::delivery::Dispatcher,
    /// Webhooks are verified by the inboxes each linked account has, read again here.
    pub intake: crate::relay::Intake,
    /// When the next call to Chatwoot may go (see [`Task::pace`]).
    pub next_call: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Task {
    /// Catches up at start and every interval while an account is linked; sleeps without waking otherwise.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let linked = match chatwoot_links::list(&self.db).await {
                Ok(links) => {
                    // Relays sharing a PostgreSQL database catch up one at a time.
                    let all = async {
                        for link in &links {
                            self.catch_up(link).await;
                        }
                    };
                    if let Err(e) =
                        crate::store::in_turn(&self.db, crate::store::Job::CatchUp, all).await
                    {
                        tracing::warn!(error = %e, "catching up: database error");
                    }
                    !links.is_empty()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "catching up: database error");
                    true
                }
            };
            let pause = async {
                if linked {
                    tokio::time::sleep(self.upkeep.catchup_interval).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.handle.wake.notified() => {}
                () = pause => {}
            }
        }
    }

    /// One catch-up of one account; the outcome is logged and reported.
    async fn catch_up(&self, link: &Link) {
        let mut report = Report {
            at: now_ms(),
            error: None,
            queued: 0,
            held: 0,
        };
        match self.look(link, &mut report).await {
            Ok(started) => {
                if let Err(e) = chatwoot_links::set_caught_up(&self.db, link.id, started).await {
                    report.error = Some(e.to_string());
                }
                if report.queued + report.held > 0 {
                    tracing::info!(
                        account_id = link.account_id,
                        queued = report.queued,
                        held = report.held,
                        "caught up with Chatwoot: replies recovered"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(account_id = link.account_id, problem = %e, "cannot catch up with Chatwoot; relaying goes on");
                report.error = Some(e.to_string());
            }
        }
        let news = report.error.is_some() || report.queued + report.held > 0;
        let before = self.handle.reports.of(link.id);
        let changed = before.is_none_or(|b| b.error != report.error);
        self.handle.reports.set(link.id, report);
        if news || changed {
            self.events.send(UiEvent::Chatwoot);
        }
    }

    /// One round for one account; when it started, by Chatwoot's clock. Each conversation on its own: one that
    /// fails is tried again next round (the account is not marked current, so the same window is looked at
    /// again), the others go on.
    async fn look(&self, link: &Link, report: &mut Report) -> Result<i64, Failure> {
        let clock = self.intake.linked().clock();
        let client = Client::of_link(&self.http, link)
            .map_err(|_| Failure::Chatwoot(Problem::BadToken))?
            .measuring(clock);
        // The account's inboxes read again (one made and routed since the link counts too), first: the answer
        // tells Chatwoot's time, even on the first round after a start.
        self.pace().await;
        let inboxes = client.inboxes(link.account_id).await?;
        // Chatwoot's time: its `created_at` are compared with it (a relay clock ahead of Chatwoot's would
        // otherwise count a reply as settled, or outside the window, too early).
        let started = clock.chatwoot_now();
        let since = self.since(link, started);
        // A minute more, for clocks that differ a little.
        let seconds = (started - since) / 1000 + 60;
        tracing::debug!(
            account_id = link.account_id,
            since,
            started,
            seconds,
            "catching up"
        );
        let known: Vec<KnownInbox> = inboxes.iter().map(|i| i.known(link.id)).collect();
        chatwoot_inboxes::replace(&self.db, link.id, &known).await?;
        self.intake.linked().reload(&self.db).await?;
        let mut failed = None;
        for inbox in self.routed_inboxes(link).await? {
            self.pace().await;
            let conversations = client
                .conversations_updated(link.account_id, inbox.0, seconds)
                .await?;
            for conversation in conversations {
                let read = Read {
                    client: &client,
                    link,
                    inbox,
                    conversation: &conversation,
                    since,
                    started,
                };
                match self.conversation(&read, report).await {
                    Ok(()) => {}
                    // Chatwoot asks for fewer calls: the rest waits for the next round.
                    Err(e @ Failure::Chatwoot(Problem::RateLimited)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(account_id = link.account_id, conversation_id = conversation.id, problem = %e, "cannot catch up with a conversation; trying again next round");
                        failed.get_or_insert(e);
                    }
                }
            }
        }
        self.recheck(&client, link).await?;
        failed.map_or(Ok(started), Err)
    }

    /// Where a round that started at `started` (Chatwoot's clock) looks back to. The first round starts when the
    /// account was linked: what was written before is not the relay's. The link was made by this relay's clock;
    /// `caught_up_at` is Chatwoot's (one to come was stored by a relay that had not read Chatwoot's clock yet).
    fn since(&self, link: &Link, started: i64) -> i64 {
        let max = i64::try_from(self.upkeep.catchup_max.as_millis()).unwrap_or(i64::MAX);
        let offset = self.intake.linked().clock().offset_ms().unwrap_or(0);
        link.caught_up_at
            .unwrap_or(link.created_at.saturating_add(offset))
            .min(started)
            .max(started.saturating_sub(max))
    }

    /// The account's inboxes that have a route.
    pub(super) async fn routed_inboxes(&self, link: &Link) -> sqlx::Result<Vec<InboxId>> {
        let routed: Vec<InboxId> = routes::list(&self.db)
            .await?
            .into_iter()
            .map(|r| r.inbox_id)
            .collect();
        Ok(chatwoot_inboxes::list(&self.db)
            .await?
            .into_iter()
            .filter(|i| i.link_id == link.id)
            .map(|i| InboxId(i.inbox_id))
            .filter(|i| routed.contains(i))
            .collect())
    }

    /// The conversation's messages after the last one catching up has read (a first visit: those written since
    /// the account was last current); each reply the relay never received is recovered. How far it has read is
    /// kept, up to the newest message old enough that no lower id can still appear (Chatwoot's ids are given
    /// out before commit, so a message may become visible after a newer one).
    async fn conversation(&self, read: &Read<'_>, report: &mut Report) -> Result<(), Failure> {
        let (link, conversation) = (read.link, read.conversation);
        let cursor = recovered::read_to(&self.db, link.id, conversation.id).await?;
        let mut after = cursor.unwrap_or(0);
        let mut settled = true;
        loop {
            self.pace().await;
            let page = read
                .client
                .messages_after(link.account_id, conversation.id, after)
                .await?;
            for message in &page {
                let Some(id) = message["id"].as_i64().filter(|id| *id > after) else {
                    continue;
                };
                let written_at = written_at(message);
                // A first visit looks back only to when the account was last current (a minute of slack for
                // clocks; a reply seen before is known by its identity, so it is not sent twice).
                let new = cursor.is_some() || written_at >= read.since.saturating_sub(60_000);
                if new {
                    self.message(read, message, written_at, report).await?;
                } else {
                    tracing::debug!(
                        conversation_id = conversation.id,
                        message_id = id,
                        written_at,
                        since = read.since,
                        "catching up: written before the window"
                    );
                }
                after = id;
                settled &= written_at <= read.started.saturating_sub(SETTLE_MS);
                if settled {
                    recovered::set_read_to(&self.db, link.id, conversation.id, id).await?;
                }
            }
            if page.len() < 100 {
                return Ok(());
            }
        }
    }

    async fn message(
        &self,
        read: &Read<'_>,
        m: &Value,
        written_at: i64,
        report: &mut Report,
    ) -> Result<(), Failure> {
        let (link, inbox) = (read.link, read.inbox);
        let Some(id) = m["id"].as_i64() else {
            return Ok(());
        };
        // A reply its agent deleted meanwhile is not found: it was never meant to go.
        let deleted = &m["content_attributes"]["deleted"];
        let reply = m["message_type"].as_i64() == Some(1)
            && m["private"].as_bool() != Some(true)
            && !m["source_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("WAID:"))
            && !(deleted.as_bool() == Some(true) || deleted.as_str() == Some("true"));
        if !reply
            || recovered::known(&self.db, link.account_id, id).await?
            || recovered::delivered_before(&self.db, inbox, id).await?
        {
            return Ok(());
        }
        let found = NewRecovered {
            link_id: link.id,
            account_id: link.account_id,
            inbox_id: inbox,
            conversation_id: read.conversation.id,
            message_id: id,
            written_at,
            body: rebuild(link.account_id, inbox, read.conversation, m),
        };
        let age = self.intake.linked().clock().chatwoot_now() - written_at;
        let fresh = age <= i64::try_from(self.upkeep.send_within.as_millis()).unwrap_or(i64::MAX);
        if !fresh {
            if recovered::insert(&self.db, &found, None).await? {
                self.metrics.recovered("held");
                report.held += 1;
                self.note_held(link, &found).await?;
            }
            return Ok(());
        }
        if let Some(delivery) = queue(&self.writer, &found).await? {
            recovered::insert(&self.db, &found, Some(delivery)).await?;
            if age > i64::try_from(self.upkeep.delayed_after.as_millis()).unwrap_or(i64::MAX) {
                // Found after its agent would have had the delayed note: told once it went.
                self.found_late(&found, delivery).await?;
            }
            // It may have gone out already, after a later reply: the feedback looks (a note if so).
            self.feedback.wake();
            self.metrics.recovered("queued");
            report.queued += 1;
        }
        Ok(())
    }

    /// Waits for the next call's turn: catching up stays far below Chatwoot's rate limit (3 000 calls a minute
    /// per address by default), which the relay's feedback and the office's own tools share.
    pub(super) async fn pace(&self) {
        let mut next = self.next_call.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = tokio::time::Instant::now() + CALL_GAP;
    }
}

/// How long after a message was written catching up counts on no lower id of its conversation still appearing.
const SETTLE_MS: i64 = 60_000;
/// The least time between two of catching up's calls to Chatwoot: at most 600 a minute.
const CALL_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// When a REST message was written (unix ms; Chatwoot's clock).
fn written_at(m: &Value) -> i64 {
    m["created_at"].as_i64().unwrap_or(0).saturating_mul(1000)
}

/// What one conversation is read with.
struct Read<'a> {
    client: &'a Client,
    link: &'a Link,
    inbox: InboxId,
    conversation: &'a Conversation,
    /// When the account was last current (the relay's clock, unix ms).
    since: i64,
    /// When this round started.
    started: i64,
}

impl Task {
    /// One private note under a held reply, telling the agent it was not sent and where it waits.
    async fn note_held(&self, link: &Link, found: &NewRecovered) -> sqlx::Result<()> {
        let language = settings::find(&self.db, settings::LANGUAGE).await?;
        let note = NewFeedback {
            // Not a delivery (yet).
            delivery_id: crate::ids::DeliveryId(0),
            at_attempt: 0,
            link_id: Some(link.id),
            account_id: found.account_id,
            conversation_id: found.conversation_id,
            message_id: Some(found.message_id),
            kind: "note_held",
            text: super::reply::held_note(language.as_deref() == Some("id")),
            done: false,
        };
        chatwoot_feedback::insert(&self.db, &[note]).await?;
        self.feedback.wake();
        Ok(())
    }

    /// Marks a reply found only after `CHATGOWA_DELAYED_AFTER` (a marker, not a note): the feedback notes it under
    /// the reply once it went out (by Chatwoot's clock here; the delivery's times are the relay's).
    async fn found_late(
        &self,
        found: &NewRecovered,
        delivery: crate::ids::DeliveryId,
    ) -> sqlx::Result<()> {
        let marker = NewFeedback {
            delivery_id: delivery,
            at_attempt: 0,
            link_id: Some(found.link_id),
            account_id: found.account_id,
            conversation_id: found.conversation_id,
            message_id: Some(found.message_id),
            kind: "caught_up_late",
            text: String::new(),
            done: true,
        };
        chatwoot_feedback::insert(&self.db, &[marker]).await
    }
}

/// Stores a recovered reply as a webhook would be stored: `None` when its identity is taken already (the real
/// webhook came) or its inbox has no route.
///
/// # Errors
/// The writer failed.
pub async fn queue(
    writer: &Writer,
    found: &NewRecovered,
) -> Result<Option<crate::ids::DeliveryId>, Failure> {
    store(writer, found.inbox_id, found.body.clone()).await
}

/// Stores a webhook the relay rebuilt as if Chatwoot had posted it to `inbox`'s route.
pub(super) async fn store(
    writer: &Writer,
    inbox: InboxId,
    body: Vec<u8>,
) -> Result<Option<crate::ids::DeliveryId>, Failure> {
    let parsed = payload::parse(&body).map_err(|e| Failure::Store(e.to_string()))?;
    let delivery = NewDelivery {
        inbox_id: inbox,
        conversation_id: parsed.conversation_id,
        event: parsed.event,
        message_id: parsed.message_id,
        dedupe_key: parsed.identity,
        cw_delivery: None,
        cw_timestamp: None,
        cw_signature: None,
        body: Bytes::from(body),
    };
    match writer.ingest(delivery).await {
        Ok(Decision::Queued(id)) => Ok(Some(id)),
        Ok(Decision::Duplicate(_) | Decision::Deleted(_) | Decision::NoRoute) => Ok(None),
        Err(e) => Err(Failure::Store(e.to_string())),
    }
}

/// A REST message rebuilt in the webhook's shape, with what GoWA decodes.
fn rebuild(account: i64, inbox: InboxId, conversation: &Conversation, m: &Value) -> Vec<u8> {
    let attachments: Vec<Value> = m["attachments"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    json!({"id": a["id"], "file_type": a["file_type"], "data_url": a["data_url"],
                           "thumb_url": a["thumb_url"], "extension": a["extension"]})
                })
                .collect()
        })
        .unwrap_or_default();
    let sender = &conversation.meta["sender"];
    let body = json!({
        "event": "message_created",
        "id": m["id"],
        "message_type": "outgoing",
        "private": false,
        "content": m["content"],
        "content_type": m["content_type"].as_str().unwrap_or("text"),
        "source_id": m["source_id"],
        "content_attributes": if m["content_attributes"].is_object() { m["content_attributes"].clone() } else { json!({}) },
        "account": {"id": account},
        "inbox": {"id": inbox.0},
        "conversation": {
            "id": conversation.id,
            "inbox_id": inbox.0,
            "meta": {"sender": {
                "id": sender["id"],
                "phone_number": sender["phone_number"],
                "identifier": sender["identifier"],
                "custom_attributes": if sender["custom_attributes"].is_object() { sender["custom_attributes"].clone() } else { json!({}) },
            }},
        },
        "sender": {"id": m["sender"]["id"], "name": m["sender"]["name"], "type": "user"},
        "attachments": attachments,
    });
    body.to_string().into_bytes()
}

/// Why catching up stopped.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Chatwoot(#[from] Problem),
    #[error("database: {0}")]
    Store(String),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.to_string())
    }
}
