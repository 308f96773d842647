//! Closing the loop with a linked Chatwoot: agents see, where they work, a reply that did not reach WhatsApp.
//!
//! A task of its own, so it never holds up a delivery. It decides from the database what to tell (so a crash
//! loses nothing): a reply given up on is marked failed (API inboxes) and gets one private note under it; a
//! reply delivered after such a mark is set back to sent; a conversation whose replies fail for longer than
//! `CHATGOWA_DELAYED_AFTER` gets one note per outage, and another when they are delivered. Chatwoot's Retry on a
//! reply marked failed (a `message_updated` back to `sent`) puts the stored original back in its lane. What to
//! tell is queued in `chatwoot_feedback` and sent with retries (Chatwoot can be down too), for at most a day.
//! It wakes on the lanes' outcomes, on `message_updated` webhooks and on its own due times; never on a timer.

pub mod catchup;
pub mod reply;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Db;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::reply::Reply;
use crate::chatwoot::{Client, Problem};
use crate::delivery::Dispatcher;
use crate::events::{Events, UiEvent};
use crate::ids::DeliveryId;
use crate::store::chatwoot_feedback::{self as store, Feedback, NewFeedback, Outage, Untold};
use crate::store::chatwoot_links::{self, Link};
use crate::store::{deliveries, now_ms, settings};

/// Feedback not sent within this long is given up (Chatwoot down for a day).
const MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// Pauses between tries of one feedback: 30 s doubling up to 30 min.
const FIRST_PAUSE_MS: i64 = 30_000;
const LONGEST_PAUSE_MS: i64 = 30 * 60_000;
/// Rows handled per look.
const BATCH: i64 = 200;

/// Wakes the feedback task (a `message_updated` arrived, a link changed).
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The feedback task.
pub struct Task {
    pub db: Db,
    pub http: reqwest::Client,
    pub dispatcher: Dispatcher,
    pub events: Events,
    /// How long a reply may fail before its conversation is told it is delayed.
    pub delayed_after: Duration,
    pub waker: Waker,
    /// For replies deleted in Chatwoot before they went out.
    pub writer: crate::store::Writer,
}

impl Task {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut outcomes = self.dispatcher.outcomes();
        // Other relays on the database: an outage they told Chatwoot of.
        let mut others = self.dispatcher.leases().map(|l| l.outages.subscribe());
        // Where the last run stopped reading `message_updated` webhooks (the first run starts from now).
        let seen = settings::find(&self.db, settings::FEEDBACK_UPDATES_SEEN)
            .await
            .ok()
            .flatten();
        let mut updates_after = match seen.and_then(|s| s.parse().ok()) {
            Some(id) => DeliveryId(id),
            None => deliveries::max_id(&self.db).await.unwrap_or(DeliveryId(0)),
        };
        loop {
            let next = match self.look(&mut updates_after).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "Chatwoot feedback: database error; trying again shortly");
                    Some(now_ms() + 5_000)
                }
            };
            let sleep = async {
                match next {
                    Some(at) => {
                        let wait = u64::try_from(at - now_ms()).unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                _ = outcomes.changed() => {}
                () = changed(&mut others) => {}
                () = self.waker.0.notified() => {}
                () = sleep => {}
            }
        }
    }

    /// Decides what to tell, sends what is due, and says when to look again.
    async fn look(&self, updates_after: &mut DeliveryId) -> sqlx::Result<Option<i64>> {
        let links = chatwoot_links::list(&self.db).await?;
        if links.is_empty() {
            return Ok(None);
        }
        // Relays sharing a PostgreSQL database tell Chatwoot one at a time; the others look again later, from
        // where the one that had the turn stopped reading.
        let turn = self.look_in_turn(&links, updates_after);
        match crate::store::in_turn(&self.db, crate::store::Job::Feedback, turn).await? {
            Some(next) => next,
            None => {
                self.watch_outages().await?;
                Ok(Some(now_ms() + FIRST_PAUSE_MS))
            }
        }
    }

    async fn look_in_turn(
        &self,
        links: &[Link],
        updates_after: &mut DeliveryId,
    ) -> sqlx::Result<Option<i64>> {
        if let Some(seen) = settings::find(&self.db, settings::FEEDBACK_UPDATES_SEEN)
            .await?
            .and_then(|s| s.parse().ok())
        {
            *updates_after = (*updates_after).max(DeliveryId(seen));
        }
        let indonesian = settings::find(&self.db, settings::LANGUAGE)
            .await?
            .as_deref()
            == Some("id");
        let words = Words { indonesian };
        self.chatwoot_retries(links, updates_after).await?;
        self.dead(links, words).await?;
        self.sent_again().await?;
        let delayed_next = self.delayed(links, words).await?;
        self.watch_outages().await?;
        self.ended(words).await?;
        self.send_due(links).await?;
        let due = store::next_due(&self.db).await?;
        Ok([due, delayed_next].into_iter().flatten().min())
    }

    /// Dead replies: marked failed (API inboxes) and noted.
    async fn dead(&self, links: &[Link], words: Words) -> sqlx::Result<()> {
        // Replies that died before the account was linked (or more than a day ago) are not told now.
        let since = now_ms() - MAX_AGE_MS;
        for untold in store::dead_untold(&self.db, since, BATCH).await? {
            let reply = reply::read(&untold.body);
            let link = reply.as_ref().and_then(|r| link_of(links, r.account));
            let mut items = Vec::new();
            match (reply, link) {
                (Some(r), Some(link)) if r.to_customer => {
                    let reason = words.reason(&untold);
                    if r.api_channel {
                        let text = reply::failed_mark(words.indonesian, &reason);
                        items.push(item(&untold, link, &r, "mark_failed", text));
                    }
                    let text = reply::dead_note(words.indonesian, &reason, r.api_channel);
                    items.push(item(&untold, link, &r, "note_dead", text));
                }
                (r, _) => items.push(NewFeedback {
                    done: true,
                    ..nothing(&untold, r.as_ref())
                }),
            }
            store::insert(&self.db, &items).await?;
        }
        Ok(())
    }

    /// Replies marked failed and delivered since (a retry worked): set back to sent.
    async fn sent_again(&self) -> sqlx::Result<()> {
        for mark in store::delivered_after_failed(&self.db).await? {
            store::insert(&self.db, &[about(&mark, "mark_sent")]).await?;
        }
        Ok(())
    }

    /// Conversations whose replies fail for longer than `delayed_after`: one note each. Returns when to look
    /// again for the next one.
    async fn delayed(&self, links: &[Link], words: Words) -> sqlx::Result<Option<i64>> {
        let delay = i64::try_from(self.delayed_after.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(delay);
        let mut opened = false;
        for untold in store::delayed_untold(&self.db, before).await? {
            let Some(r) = reply::read(&untold.body).filter(|r| r.to_customer) else {
                continue;
            };
            let Some(link) = link_of(links, r.account) else {
                continue;
            };
            let outage = Outage {
                account_id: r.account,
                conversation_id: r.conversation,
                delivery_id: untold.delivery_id,
                message_id: Some(r.message),
                link_id: Some(link.id),
            };
            let text = reply::delayed_note(words.indonesian, &words.reason(&untold));
            store::open_outage(
                &self.db,
                &outage,
                &item(&untold, link, &r, "note_delayed", text),
            )
            .await?;
            opened = true;
        }
        if let Some(leases) = self.dispatcher.leases().filter(|_| opened) {
            // The conversation's replies may be another relay's to send: it watches the conversation too.
            leases.hint(crate::delivery::leases::Hint::Outages);
        }
        let oldest = store::oldest_delayed_untold(&self.db).await?;
        Ok(oldest
            .map(|at| at.saturating_add(delay))
            .filter(|at| *at > now_ms()))
    }

    /// Asks the lanes to report any delivery in a conversation with an outage open. Before [`Task::ended`]
    /// looks: a delivery that its look does not see is then reported, and wakes this task.
    async fn watch_outages(&self) -> sqlx::Result<()> {
        let open = store::outage_conversations(&self.db).await?;
        self.dispatcher
            .watch_conversations(open.into_iter().collect());
        Ok(())
    }

    /// Outages whose conversation has no failing reply left: told that the replies went out.
    async fn ended(&self, words: Words) -> sqlx::Result<()> {
        for ended in store::ended_outages(&self.db).await? {
            let (outage, delivered) = (ended.outage, ended.delivered);
            let note = delivered.then(|| NewFeedback {
                delivery_id: outage.delivery_id,
                at_attempt: 0,
                link_id: outage.link_id,
                account_id: outage.account_id,
                conversation_id: outage.conversation_id,
                message_id: outage.message_id,
                kind: "note_delivered",
                text: reply::delivered_note(words.indonesian),
                done: false,
            });
            store::close_outage(&self.db, &outage, note.as_ref()).await?;
        }
        Ok(())
    }

    /// Chatwoot's Retry: a `message_updated` back to `sent` on a reply the relay marked failed puts the stored
    /// original back in its conversation's lane (as the panel's retry does).
    async fn chatwoot_retries(
        &self,
        links: &[Link],
        updates_after: &mut DeliveryId,
    ) -> sqlx::Result<()> {
        let updates = deliveries::updates_after(&self.db, *updates_after, BATCH).await?;
        let last = updates.last().map(|(id, _)| *id);
        for (id, body) in updates {
            *updates_after = id;
            let Some(r) = reply::read(&body) else {
                continue;
            };
            if r.deleted {
                self.cancel_deleted(&body, &r).await?;
                continue;
            }
            if r.status.as_deref() != Some("sent")
                || r.deleted
                || link_of(links, r.account).is_none()
            {
                continue;
            }
            let Some(mark) = store::failed_mark(&self.db, r.account, r.message).await? else {
                continue;
            };
            let requeued = deliveries::requeue(&self.db, mark.delivery_id, now_ms()).await?;
            let resent = NewFeedback {
                done: true,
                ..about(&mark, "resent")
            };
            store::insert(&self.db, &[resent]).await?;
            if let Some(pending) = requeued {
                tracing::info!(delivery_id = %mark.delivery_id, message_id = r.message, "Retry pressed in Chatwoot: sending the reply again");
                self.dispatcher.enqueue([pending]);
                self.events.send(UiEvent::Deliveries);
            }
        }
        // Kept, so that a `message_updated` stored before a restart is still looked at after it.
        if let Some(last) = last {
            let last = last.0.to_string();
            settings::upsert(&self.db, settings::FEEDBACK_UPDATES_SEEN, &last).await?;
        }
        Ok(())
    }

    /// A reply deleted in Chatwoot while it still waited to go out (queued behind an outage) is not sent any
    /// more: it is dead with that reason, and Chatwoot is told nothing of it. The deletion itself goes on to GoWA,
    /// which takes back on WhatsApp whatever an earlier, unanswered attempt may have sent.
    async fn cancel_deleted(&self, body: &[u8], r: &Reply) -> sqlx::Result<()> {
        let Some(inbox) = crate::relay::payload::parse(body)
            .ok()
            .and_then(|p| p.inbox_id)
        else {
            return Ok(());
        };
        let Some((id, attempts)) = deliveries::find_unsent(&self.db, inbox, r.message).await?
        else {
            return Ok(());
        };
        let untold = NewFeedback {
            delivery_id: id,
            at_attempt: attempts,
            link_id: None,
            account_id: r.account,
            conversation_id: r.conversation,
            message_id: Some(r.message),
            kind: "none",
            text: String::new(),
            done: true,
        };
        store::insert(&self.db, &[untold]).await?;
        // The lane reads it again before its next attempt, not the copy kept from when it arrived.
        self.dispatcher.forget(id);
        let reason = "deleted in Chatwoot before it was sent: not sent".to_owned();
        match self.writer.mark_dead(id, reason, None).await {
            Ok(()) => {
                tracing::info!(delivery_id = %id, message_id = r.message, "reply deleted in Chatwoot before it went out: not sent");
                self.events.send(UiEvent::Deliveries);
            }
            Err(e) => {
                tracing::warn!(delivery_id = %id, error = %e, "a reply deleted in Chatwoot could not be cancelled")
            }
        }
        Ok(())
    }

    /// Sends what is due, each with its retries.
    async fn send_due(&self, links: &[Link]) -> sqlx::Result<()> {
        let mut clients: HashMap<i64, Option<Client>> = HashMap::new();
        for feedback in store::due(&self.db, now_ms(), BATCH).await? {
            let client = feedback.link_id.and_then(|id| {
                clients
                    .entry(id)
                    .or_insert_with(|| {
                        let link = links.iter().find(|l| l.id == id)?;
                        Client::of_link(&self.http, link).ok()
                    })
                    .clone()
            });
            let outcome = match client {
                Some(client) => send(&client, &feedback).await,
                None => Err(Problem::Gone("the linked Chatwoot account".into())),
            };
            self.recorded(&feedback, outcome).await?;
        }
        Ok(())
    }

    async fn recorded(
        &self,
        feedback: &Feedback,
        outcome: Result<(), Problem>,
    ) -> sqlx::Result<()> {
        let error = match outcome {
            Ok(()) => return store::record(&self.db, feedback.id, None, None).await,
            Err(problem) => problem,
        };
        let message = error.to_string();
        let pause = FIRST_PAUSE_MS
            .saturating_mul(1 << feedback.attempts.clamp(0, 16))
            .min(LONGEST_PAUSE_MS);
        let next = now_ms() + pause;
        // A refusal that waiting cannot fix (not an API inbox, a message deleted) ends it; a token or Chatwoot
        // that may come back is tried again, for a day.
        let again = (error.is_failure()
            || matches!(error, Problem::BadToken | Problem::NotAdmin(_)))
            && next - feedback.created_at < MAX_AGE_MS;
        tracing::warn!(kind = feedback.kind, delivery_id = %feedback.delivery_id, problem = %message, again, "Chatwoot feedback not sent");
        store::record(&self.db, feedback.id, Some(&message), again.then_some(next)).await
    }
}

/// One call to Chatwoot for one feedback.
async fn send(client: &Client, f: &Feedback) -> Result<(), Problem> {
    let (account, conversation) = (f.account_id, f.conversation_id);
    let message = f.message_id.unwrap_or_default();
    match f.kind.as_str() {
        "mark_failed" => {
            client
                .set_message_status(account, conversation, message, "failed", Some(&f.text))
                .await
        }
        "mark_sent" => {
            client
                .set_message_status(account, conversation, message, "sent", Some(""))
                .await
        }
        _ => {
            client
                .private_note(account, conversation, f.message_id, &f.text)
                .await
        }
    }
}

/// The language of the notes.
#[derive(Debug, Clone, Copy)]
struct Words {
    indonesian: bool,
}

impl Words {
    fn reason(self, untold: &Untold) -> String {
        reply::reason(
            self.indonesian,
            untold.last_status_code,
            untold.last_error.as_deref(),
        )
    }
}

/// The link that serves `account` (the first, if several Chatwoot servers share an account id).
fn link_of(links: &[Link], account: i64) -> Option<&Link> {
    links.iter().find(|l| l.account_id == account)
}

fn item(untold: &Untold, link: &Link, r: &Reply, kind: &'static str, text: String) -> NewFeedback {
    NewFeedback {
        delivery_id: untold.delivery_id,
        at_attempt: untold.attempts,
        link_id: Some(link.id),
        account_id: r.account,
        conversation_id: r.conversation,
        message_id: Some(r.message),
        kind,
        text,
        done: false,
    }
}

/// A dead delivery with nothing to tell (not a reply to a customer, or its account is not linked).
fn nothing(untold: &Untold, r: Option<&Reply>) -> NewFeedback {
    NewFeedback {
        delivery_id: untold.delivery_id,
        at_attempt: untold.attempts,
        link_id: None,
        account_id: r.map_or(0, |r| r.account),
        conversation_id: r.map_or(0, |r| r.conversation),
        message_id: r.map(|r| r.message),
        kind: "none",
        text: String::new(),
        done: true,
    }
}

/// Something more to tell about the message of `mark` (a failed mark told earlier).
fn about(mark: &Feedback, kind: &'static str) -> NewFeedback {
    NewFeedback {
        delivery_id: mark.delivery_id,
        at_attempt: mark.at_attempt,
        link_id: mark.link_id,
        account_id: mark.account_id,
        conversation_id: mark.conversation_id,
        message_id: mark.message_id,
        kind,
        text: String::new(),
        done: false,
    }
}

/// Waits for `watched` to change (forever without one, or once its sender is gone).
async fn changed(watched: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let gone = match watched {
        Some(rx) => rx.changed().await.is_err(),
        None => true,
    };
    if gone {
        std::future::pending::<()>().await;
    }
}
