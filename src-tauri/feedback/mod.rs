//! Closing the loop with a linked Chatwoot: agents see, where they work, a reply that did not reach WhatsApp.
//!
//! A task of its own, so it never holds up a delivery. It decides from the database what to tell (so a crash
//! loses nothing): a reply given up on is marked failed (API inboxes) and gets one private note under it; a
//! reply delivered after such a mark is set back to sent; a conversation whose replies fail for longer than
//! `CHATGOWA_DELAYED_AFTER` gets one note per outage, and another when they are delivered. Chatwoot's Retry on a
//! reply marked failed (a `message_updated` back to `sent`) puts the stored original back in its lane. What to
//! tell is queued in `chatwoot_feedback` and sent with retries (Chatwoot can be down too), for at most a day.
//! It wakes on the lanes' outcomes, on `message_updated` webhooks and on its own due times, and while an account
//! is linked (or could be) it also looks at least every [`LOOK_EVERY`] (or `CHATGOWA_DELAYED_AFTER`, if shorter): a reply held
//! up without any attempt (a pause, a switched-off route, a failing message ahead of it, a webhook stored by
//! another relay) makes no outcome to wake it, and still gets its delayed note.

pub mod catchup;
mod recheck;
pub mod reply;
pub mod updates;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Db;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::reply::Reply;
use self::updates::Updates;
use crate::chatwoot::{Client, Problem};
use crate::delivery::Dispatcher;
use crate::events::{Events, UiEvent};
use crate::ids::DeliveryId;
use crate::store::chatwoot_feedback::{self as store, Feedback, NewFeedback, Outage, Untold};
use crate::store::chatwoot_links::{self, Link};
use crate::store::writer::DELETED;
use crate::store::{chatwoot_inboxes, deliveries, now_ms, settings};

/// Feedback not sent within this long is given up (Chatwoot down for a day).
const MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// Pauses between tries of one feedback: 30 s doubling up to 30 min.
const FIRST_PAUSE_MS: i64 = 30_000;
const LONGEST_PAUSE_MS: i64 = 30 * 60_000;
/// The longest time between two looks while an account is linked.
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// Rows handled per look.
const BATCH: i64 = 200;
/// Pages of a conversation (100 messages each) read for a note an earlier try may have written.
const NOTE_PAGES: usize = 10;
/// Stored webhooks read at a time for `message_updated` (most are other events, read as ids only).
const UPDATES_BATCH: i64 = 5_000;
/// Such readings per look, one after another: a gap in the ids waited for (see [`updates`]) does not hold up
/// what was stored after it.
const UPDATES_BATCHES: usize = 10;
/// Waiting messages looked at per look for delayed notes (their conversations are told once each).
const DELAYED_BATCH: i64 = 2_000;

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
        let done_to = match seen.and_then(|s| s.parse().ok()) {
            Some(id) => DeliveryId(id),
            None => deliveries::max_id(&self.db).await.unwrap_or(DeliveryId(0)),
        };
        // Several relays' writers commit ids out of order on PostgreSQL; SQLite's one writer does not.
        let gap_wait = match self.db {
            crate::store::Db::Postgres(_) => updates::GAP_WAIT,
            crate::store::Db::Sqlite(_) => Duration::ZERO,
        };
        let mut updates_after = Updates::new(done_to, gap_wait);
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
    async fn look(&self, updates_after: &mut Updates) -> sqlx::Result<Option<i64>> {
        let links = chatwoot_links::list(&self.db).await?;
        self.late_arrivals(&links).await?;
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
        updates_after: &mut Updates,
    ) -> sqlx::Result<Option<i64>> {
        if let Some(seen) = settings::find(&self.db, settings::FEEDBACK_UPDATES_SEEN)
            .await?
            .and_then(|s| s.parse().ok())
        {
            updates_after.read_elsewhere_to(DeliveryId(seen));
        }
        if links.is_empty() {
            // Nothing to tell anyone; a reply deleted in Chatwoot before it went out is still not sent.
            self.chatwoot_retries(links, updates_after).await?;
            return Ok(Some(self.look_anyway()));
        }
        let indonesian = settings::find(&self.db, settings::LANGUAGE)
            .await?
            .as_deref()
            == Some("id");
        let words = Words { indonesian };
        self.chatwoot_retries(links, updates_after).await?;
        self.dead(links, words).await?;
        self.sent_again().await?;
        self.late(words).await?;
        let delayed_next = self.delayed(links, words).await?;
        self.watch_outages().await?;
        self.ended(words).await?;
        self.send_due(links).await?;
        let due = store::next_due(&self.db).await?;
        let anyway = self.look_anyway();
        Ok([due, delayed_next, Some(anyway)]
            .into_iter()
            .flatten()
            .min())
    }

    /// When to look again at the latest (see the module's documentation); also how soon an account linked
    /// meanwhile is looked after.
    fn look_anyway(&self) -> i64 {
        let every = LOOK_EVERY
            .min(self.delayed_after)
            .max(Duration::from_millis(100));
        now_ms().saturating_add(i64::try_from(every.as_millis()).unwrap_or(i64::MAX))
    }

    /// Dead replies: marked failed (API inboxes) and noted; a dead deletion of a reply that went out, noted.
    async fn dead(&self, links: &[Link], words: Words) -> sqlx::Result<()> {
        // Replies that died before the account was linked (or more than a day ago) are not told now.
        let since = now_ms() - MAX_AGE_MS;
        let untold = store::dead_untold(&self.db, since, BATCH).await?;
        if untold.is_empty() {
            return Ok(());
        }
        let inboxes = chatwoot_inboxes::list(&self.db).await?;
        for untold in untold {
            let reply = reply::read(&untold.body);
            let link = reply.as_ref().and_then(|r| link_of(links, r.account));
            let mut items = Vec::new();
            // A reply its agent deleted before it went out: nothing to tell.
            let cancelled = untold.last_error.as_deref() == Some(DELETED);
            match (reply, link) {
                // A deletion GoWA never got, of a reply that went out (or may have): the customer may still have
                // it.
                (Some(r), Some(link)) if r.deleted => {
                    let inbox = untold.inbox_id;
                    if deliveries::reply_may_have_gone(&self.db, inbox, r.message).await? {
                        let text =
                            reply::not_taken_back_note(words.indonesian, &words.reason(&untold));
                        items.push(item(&untold, link, &r, "note_dead", text));
                    } else {
                        items.push(NewFeedback {
                            done: true,
                            ..nothing(&untold, Some(&r))
                        });
                    }
                }
                (Some(mut r), Some(link)) if r.to_customer && !cancelled => {
                    // Which channel the inbox is, as the account lists it (a body rebuilt by catching up does
                    // not say).
                    r.api_channel |= inboxes.iter().any(|i| {
                        i.link_id == link.id
                            && i.inbox_id == untold.inbox_id.0
                            && i.channel_type == "Channel::Api"
                    });
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

    /// Replies recovered by catching up, or posted late by Chatwoot, that reached WhatsApp after later replies of
    /// their conversation: a note under each, so the agent knows the customer read them out of order.
    async fn late(&self, words: Words) -> sqlx::Result<()> {
        for late in store::overtaken(&self.db, now_ms() - MAX_AGE_MS, BATCH).await? {
            let note = NewFeedback {
                delivery_id: late.delivery_id,
                at_attempt: late.attempts,
                link_id: Some(late.link_id),
                account_id: late.account_id,
                conversation_id: late.conversation_id,
                message_id: Some(late.message_id),
                kind: "note_late",
                text: if late.overtaken {
                    reply::late_note(words.indonesian, late.recovered)
                } else {
                    reply::found_late_note(words.indonesian)
                },
                done: false,
            };
            store::insert(&self.db, &[note]).await?;
        }
        Ok(())
    }

    /// Replies Chatwoot posted after a later reply of their conversation had started to go (stored so by the lane
    /// that sends them, before they go): marked, so that [`Task::late`] notes them once delivered. Any relay marks
    /// them, in turn or not, after a restart too (the one that sent them may be gone).
    async fn late_arrivals(&self, links: &[Link]) -> sqlx::Result<()> {
        for id in deliveries::arrived_late(&self.db, BATCH).await? {
            let Some(d) = deliveries::find(&self.db, id).await? else {
                continue;
            };
            let marker = reply::read(&d.body)
                .filter(|r| r.to_customer)
                .and_then(|r| Some((link_of(links, r.account)?, r)))
                .map(|(link, r)| NewFeedback {
                    delivery_id: id,
                    at_attempt: d.attempts,
                    link_id: Some(link.id),
                    account_id: r.account,
                    conversation_id: r.conversation,
                    message_id: Some(r.message),
                    kind: "late_arrival",
                    text: String::new(),
                    done: true,
                });
            store::settle_late_arrival(&self.db, id, marker.as_ref()).await?;
        }
        Ok(())
    }

    /// Conversations whose replies fail for longer than `delayed_after`: one note each. Returns when to look
    /// again for the next one.
    async fn delayed(&self, links: &[Link], words: Words) -> sqlx::Result<Option<i64>> {
        let delay = i64::try_from(self.delayed_after.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(delay);
        let mut opened = false;
        let mut told = std::collections::HashSet::new();
        for untold in store::delayed_untold(&self.db, before, DELAYED_BATCH).await? {
            let Some(r) = reply::read(&untold.body).filter(|r| r.to_customer) else {
                continue;
            };
            let Some(link) = link_of(links, r.account) else {
                continue;
            };
            if !told.insert((untold.inbox_id, r.conversation)) {
                continue;
            }
            let outage = Outage {
                account_id: r.account,
                inbox_id: Some(untold.inbox_id),
                conversation_id: r.conversation,
                delivery_id: untold.delivery_id,
                message_id: Some(r.message),
                link_id: Some(link.id),
            };
            let reason = self.why_waiting(&untold, r.conversation, words).await?;
            let text = reply::delayed_note(words.indonesian, &reason);
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

    /// Why a reply waits: its own last failure, else what holds up its lane (a pause, its route switched off, a
    /// failing message ahead of it).
    async fn why_waiting(
        &self,
        untold: &Untold,
        conversation: i64,
        words: Words,
    ) -> sqlx::Result<String> {
        let holdup = |h| Ok(reply::holdup(words.indonesian, h));
        if untold.attempts > 0 {
            return Ok(words.reason(untold));
        }
        if self.dispatcher.is_paused() {
            return holdup(reply::Holdup::Paused);
        }
        if self
            .dispatcher
            .route(untold.inbox_id)
            .is_some_and(|r| !r.enabled)
        {
            return holdup(reply::Holdup::RouteOff);
        }
        match store::lane_failure(&self.db, untold.inbox_id, conversation).await? {
            Some((status, error)) => Ok(reply::reason(words.indonesian, status, error.as_deref())),
            None => holdup(reply::Holdup::Queued),
        }
    }

    /// Asks the lanes to report any delivery in a conversation with an outage open. Before [`Task::ended`]
    /// looks: a delivery that its look does not see is then reported, and wakes this task.
    async fn watch_outages(&self) -> sqlx::Result<()> {
        let mut watched = store::outage_conversations(&self.db).await?;
        // A recovered reply, or one Chatwoot posted late, that goes out may have gone after later ones.
        watched.extend(store::overtaken_waiting(&self.db).await?);
        self.dispatcher
            .watch_conversations(watched.into_iter().collect());
        Ok(())
    }

    /// Outages whose conversation has no failing reply left: told that the replies went out.
    async fn ended(&self, words: Words) -> sqlx::Result<()> {
        for outage in store::ended_outages(&self.db).await? {
            // Went out: a reply to the customer (not the relay's own note, nor the customer's message).
            let delivered = store::delivered_since(&self.db, &outage, BATCH)
                .await?
                .iter()
                .any(|body| reply::read(body).is_some_and(|r| r.to_customer));
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
        updates_after: &mut Updates,
    ) -> sqlx::Result<()> {
        let before = updates_after.done_to();
        let mut from = before;
        for _ in 0..UPDATES_BATCHES {
            let stored = deliveries::stored_after(&self.db, from, UPDATES_BATCH).await?;
            for (id, body) in &stored {
                if let Some(body) = body.as_deref().filter(|_| updates_after.is_new(*id)) {
                    self.updated(links, *id, body).await?;
                }
            }
            let ids: Vec<DeliveryId> = stored.iter().map(|(id, _)| *id).collect();
            updates_after.read_ids(&ids, std::time::Instant::now());
            match ids.last() {
                Some(last) if stored.len() == usize::try_from(UPDATES_BATCH).unwrap_or(0) => {
                    from = *last
                }
                _ => break,
            }
        }
        // Kept, so that a `message_updated` stored before a restart is still looked at after it.
        if updates_after.done_to() != before {
            let done_to = updates_after.done_to().0.to_string();
            settings::upsert(&self.db, settings::FEEDBACK_UPDATES_SEEN, &done_to).await?;
        }
        Ok(())
    }

    /// A stored `message_updated`: a reply set back to `sent` by Chatwoot's Retry goes again. (A reply deleted in
    /// Chatwoot while it still waited was stopped by the writer, in the commit that stored its deletion.)
    async fn updated(&self, links: &[Link], id: DeliveryId, body: &[u8]) -> sqlx::Result<()> {
        let Some(r) = reply::read(body) else {
            return Ok(());
        };
        if !r.deleted
            && r.status.as_deref() == Some("sent")
            && let Some(link) = link_of(links, r.account)
        {
            self.retry_pressed(link, id, &r).await?;
        }
        Ok(())
    }

    /// A reply set back to `sent` in Chatwoot: if the relay marked it failed, its stored original goes back in
    /// its lane. Unless Chatwoot shows it failed again by now: two presses' webhooks are alike, and this one is a
    /// late twin of a press already acted on (or an edit made before the mark, posted late). Nor when Chatwoot
    /// cannot be asked: a press is then found by the next catch-up, which reads the message back (a message
    /// Chatwoot no longer has is taken as sent).
    async fn retry_pressed(&self, link: &Link, id: DeliveryId, r: &Reply) -> sqlx::Result<()> {
        // `None`: Chatwoot could not be asked; `Some(None)`: it no longer has the message.
        let shown = match Client::of_link(&self.http, link) {
            Ok(client) => client
                .messages_after(r.account, r.conversation, r.message - 1)
                .await
                .ok()
                .map(|page| {
                    page.into_iter()
                        .find(|m| m["id"].as_i64() == Some(r.message))
                }),
            Err(_) => None,
        };
        let not_a_press = match &shown {
            None => Some(
                "a Retry webhook while Chatwoot cannot be asked what it shows: left to catching up",
            ),
            Some(Some(m)) if m["status"].as_str() != Some("sent") => {
                Some("a Retry webhook for a reply Chatwoot shows failed again: already acted on")
            }
            Some(_) => None,
        };
        if let Some(why) = not_a_press {
            tracing::info!(message_id = r.message, "{why}");
            // The next press's webhook, alike, is then not taken for this one's twin.
            return deliveries::release_identity(&self.db, id).await;
        }
        let (db, message) = (&self.db, (r.account, r.message));
        send_again(db, &self.dispatcher, &self.events, message, None).await
    }

    /// Sends what is due, each with its retries.
    async fn send_due(&self, links: &[Link]) -> sqlx::Result<()> {
        let mut clients: HashMap<i64, Option<Client>> = HashMap::new();
        for feedback in store::due(&self.db, now_ms(), BATCH).await? {
            // Not due again while the call may last; another relay's already.
            if !store::take(&self.db, &feedback, now_ms() + FIRST_PAUSE_MS).await? {
                continue;
            }
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

/// A reply (account, message) set back to `sent` in Chatwoot (Retry) while the relay's failed mark is in force: its
/// stored original goes back in its lane, once per mark.
async fn send_again(
    db: &Db,
    dispatcher: &Dispatcher,
    events: &Events,
    (account, message): (i64, i64),
    only: Option<i64>,
) -> sqlx::Result<()> {
    // `only`: the mark Chatwoot was seen set back from; a later one (it failed again since) is not this press's.
    // A mark Chatwoot was not told yet cannot have been pressed: a `sent` seen meanwhile is an earlier press's.
    let Some(mark) = store::failed_mark(db, account, message)
        .await?
        .filter(|mark| mark.status == "done" && only.is_none_or(|id| id == mark.id))
    else {
        return Ok(());
    };
    let requeued = deliveries::requeue(db, mark.delivery_id, now_ms()).await?;
    let resent = NewFeedback {
        done: true,
        ..about(&mark, "resent")
    };
    store::insert(db, &[resent]).await?;
    if let Some(pending) = requeued {
        tracing::info!(delivery_id = %mark.delivery_id, message_id = message, "Retry pressed in Chatwoot: sending the reply again");
        dispatcher.enqueue([pending]);
        events.send(UiEvent::Deliveries);
    }
    Ok(())
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
            // An earlier try may have been written although its answer was lost (a proxy's timeout, or the relay
            // died during the call): not twice.
            if f.attempts > 0 && already_written(client, f).await? {
                return Ok(());
            }
            client
                .private_note(account, conversation, f.message_id, &f.text)
                .await
        }
    }
}

/// Whether the note `f` is in its conversation already (after the message it is about, and under it: another
/// reply's note may say the same words).
async fn already_written(client: &Client, f: &Feedback) -> Result<bool, Problem> {
    let mut after = f.message_id.unwrap_or(0);
    for _ in 0..NOTE_PAGES {
        let page = client
            .messages_after(f.account_id, f.conversation_id, after)
            .await?;
        let written = page.iter().any(|m| {
            m["private"].as_bool() == Some(true)
                && m["content"].as_str() == Some(f.text.as_str())
                && m["content_attributes"]["in_reply_to"].as_i64() == f.message_id
        });
        match page.iter().filter_map(|m| m["id"].as_i64()).max() {
            _ if written => return Ok(true),
            Some(last) if page.len() >= 100 => after = last,
            _ => return Ok(false),
        }
    }
    Ok(false)
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
