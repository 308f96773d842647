//! A change made in Chatwoot whose webhook was lost is found again. An agent who deletes a reply that still waits
//! to go out (GoWA down) expects it never to go, and one who deletes a reply that went out expects it taken back on
//! WhatsApp (GoWA revokes it); an agent who presses Retry on a reply the relay marked failed expects it to go. Each
//! is a single `message_updated` that Chatwoot never posts again, so each catch-up round reads back from Chatwoot
//! the messages of the replies waiting, delivered lately, or marked failed by the relay. A deletion is stored as
//! the `message_updated` Chatwoot would have posted (the stored reply with the message's new state) and takes the
//! way its webhook takes: the writer stops a waiting reply in the same commit, and GoWA is told; when the real webhook comes after
//! all, it is a duplicate of the rebuilt one (a deletion's identity is the message's). A reply set back to `sent`
//! goes back in its lane directly, as Chatwoot's Retry does (two presses' webhooks are alike, so the status read
//! back is what tells a press that was not acted on).

use std::collections::BTreeMap;

use serde_json::Value;

use super::catchup::{Failure, Task, store};
use crate::chatwoot::Client;
use crate::store::chatwoot_feedback;
use crate::store::chatwoot_links::Link;
use crate::store::deliveries::{self, StoredReply};
use crate::store::now_ms;

/// Replies waiting this long (or a catch-up interval, if shorter) are read back: a deletion's webhook normally
/// comes within a second.
const WAITING_FOR: std::time::Duration = std::time::Duration::from_secs(10);
/// Failed marks made within this long are read back (Chatwoot's Retry on an older one is rare; the feedback
/// gives up telling after a day too).
const MARKED_WITHIN_MS: i64 = 24 * 3600 * 1000;
/// Delivered replies are read back for this long (or two catch-up intervals, if longer): an agent who deletes a
/// wrong reply does so soon after.
const DELIVERED_WITHIN: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Replies looked at per round and kind (per inbox for waiting and delivered ones), picked anew each round.
const PER_ROUND: i64 = 500;
/// Conversations read back per round (a page of 100 messages covers a conversation's recent replies).
const CONVERSATIONS_PER_ROUND: usize = 100;
/// Pages read of one conversation at most per round.
const PAGES: usize = 5;

/// What is looked for in a reply's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Waiting to go out: deleted?
    Waiting,
    /// Marked failed by the relay: set back to `sent` (Retry)?
    MarkedFailed,
    /// Delivered lately: deleted (GoWA takes it back on WhatsApp)?
    Delivered,
}

impl Task {
    /// Reads back the link's waiting, lately delivered and failed replies (see the module's documentation).
    pub(super) async fn recheck(&self, client: &Client, link: &Link) -> Result<(), Failure> {
        let mut watched: BTreeMap<(i64, i64), Vec<(StoredReply, Watch)>> = BTreeMap::new();
        let mut add = |replies: Vec<StoredReply>, watch| {
            for r in replies {
                let key = (r.conversation_id, r.message_id);
                watched.entry(key).or_default().push((r, watch));
            }
        };
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let waiting = now_ms().saturating_sub(ms(WAITING_FOR.min(self.upkeep.catchup_interval)));
        let delivered =
            now_ms().saturating_sub(ms(DELIVERED_WITHIN.max(self.upkeep.catchup_interval * 2)));
        for inbox in self.routed_inboxes(link).await? {
            let db = &self.db;
            add(
                deliveries::waiting_replies(db, inbox, waiting, PER_ROUND).await?,
                Watch::Waiting,
            );
            add(
                deliveries::delivered_replies(db, inbox, delivered, PER_ROUND).await?,
                Watch::Delivered,
            );
        }
        let since = now_ms() - MARKED_WITHIN_MS;
        let failed = chatwoot_feedback::marked_failed(&self.db, link.id, since, PER_ROUND).await?;
        add(failed, Watch::MarkedFailed);
        // Conversations in turn from a place that moves each round, each read from its lowest watched message
        // until all of its watched ones are seen.
        let mut from: BTreeMap<i64, i64> = BTreeMap::new();
        for (conversation, message) in watched.keys() {
            from.entry(*conversation).or_insert(*message);
        }
        let turn = usize::try_from(now_ms() / 1000).unwrap_or(0) % from.len().max(1);
        let mut conversations: Vec<(i64, i64)> = from.into_iter().collect();
        conversations.rotate_left(turn);
        conversations.truncate(CONVERSATIONS_PER_ROUND);
        for (conversation, first) in conversations {
            self.read_back(client, link, conversation, first, &mut watched)
                .await?;
        }
        Ok(())
    }

    /// Reads `conversation` from message `first` on, a page at a time, until its watched replies are seen.
    async fn read_back(
        &self,
        client: &Client,
        link: &Link,
        conversation: i64,
        first: i64,
        watched: &mut BTreeMap<(i64, i64), Vec<(StoredReply, Watch)>>,
    ) -> Result<(), Failure> {
        let mut after = first - 1;
        for _ in 0..PAGES {
            self.pace().await;
            let page = client
                .messages_after(link.account_id, conversation, after)
                .await?;
            for m in &page {
                let id = m["id"].as_i64().unwrap_or_default();
                after = after.max(id);
                for (reply, watch) in watched.remove(&(conversation, id)).unwrap_or_default() {
                    self.changed(link, &reply, watch, m).await?;
                }
            }
            let more = watched.range((conversation, after + 1)..=(conversation, i64::MAX));
            if page.len() < 100 || more.count() == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Acts on what became of a watched reply in Chatwoot (`m`, its message as read back): Retry pressed, or
    /// deleted.
    async fn changed(
        &self,
        link: &Link,
        reply: &StoredReply,
        watch: Watch,
        m: &Value,
    ) -> Result<(), Failure> {
        let deleted = &m["content_attributes"]["deleted"];
        let deleted = deleted.as_bool() == Some(true) || deleted.as_str() == Some("true");
        if deleted {
            return self.deleted(link, reply, m).await;
        }
        if watch == Watch::MarkedFailed && m["status"].as_str() == Some("sent") {
            let (db, message) = (&self.db, (link.account_id, reply.message_id));
            super::send_again(db, &self.dispatcher, &self.events, message, reply.mark_id).await?;
        }
        Ok(())
    }

    /// Stores the deletion Chatwoot would have posted for `m`, unless its webhook came.
    async fn deleted(&self, link: &Link, reply: &StoredReply, m: &Value) -> Result<(), Failure> {
        let Some(body) = updated(&reply.body, m) else {
            return Ok(());
        };
        let Some(inbox) = crate::relay::payload::parse(&body)
            .ok()
            .and_then(|p| p.inbox_id)
        else {
            return Ok(());
        };
        let (after, message) = (reply.delivery_id, reply.message_id);
        if deliveries::deletion_stored_after(&self.db, inbox, after, message).await? {
            return Ok(());
        }
        if store(&self.writer, inbox, body).await?.is_some() {
            tracing::info!(
                account_id = link.account_id,
                message_id = message,
                "a reply deleted in Chatwoot whose webhook never came was found: acting on the deletion"
            );
            self.feedback.wake();
        }
        Ok(())
    }
}

/// The stored `message_created` body turned into the `message_updated` Chatwoot posts for the message as `m`
/// shows it now: its content, attributes and status.
fn updated(stored: &[u8], m: &Value) -> Option<Vec<u8>> {
    let mut body: Value = serde_json::from_slice(stored).ok()?;
    let fields = body.as_object_mut()?;
    fields.insert("event".into(), "message_updated".into());
    fields.insert("content".into(), m["content"].clone());
    let attributes = if m["content_attributes"].is_object() {
        m["content_attributes"].clone()
    } else {
        Value::Object(serde_json::Map::new())
    };
    fields.insert("content_attributes".into(), attributes);
    fields.insert("status".into(), m["status"].clone());
    serde_json::to_vec(&body).ok()
}
