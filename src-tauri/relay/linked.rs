//! The Chatwoot accounts linked to the relay, as `POST /webhook` sees them: the secret each one's webhook is
//! signed with, which inboxes each one has (as last read from Chatwoot), and when a signed webhook of each last
//! arrived (what the reachability check waits for).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use tokio::sync::watch;

use crate::chatwoot::Clock;
use crate::config::Secret;
use crate::store::{Db, chatwoot_inboxes, chatwoot_links};

/// When an account's webhook last reached the relay, in unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heard {
    /// With a signature that matched.
    pub signed_at: Option<i64>,
    /// With a signature that did not match (or none).
    pub refused_at: Option<i64>,
}

/// What the linked accounts sign with: account id → its webhook's secrets, and inbox id → the linked accounts
/// that have it.
#[derive(Debug, Clone, Default)]
struct Keys {
    secrets: HashMap<i64, Vec<Secret<String>>>,
    inboxes: HashMap<i64, Vec<i64>>,
}

#[derive(Debug)]
pub struct Linked {
    keys: RwLock<Keys>,
    heard: Mutex<HashMap<i64, Heard>>,
    /// Bumped whenever `heard` changes.
    news: watch::Sender<u64>,
    /// How far Chatwoot's clock is from this relay's.
    clock: Clock,
    /// The accounts of `CHATGOWA_CHATWOOT_*` are not linked yet: the relay means to verify webhooks with secrets
    /// it does not know yet.
    linking: AtomicBool,
    /// One reload at a time: two at once (the link made while catching up reads the inboxes) could leave the keys
    /// the earlier one read, from before a webhook secret was stored, and webhooks taken unsigned.
    reloading: tokio::sync::Mutex<()>,
}

impl Default for Linked {
    fn default() -> Self {
        Self {
            keys: RwLock::default(),
            heard: Mutex::default(),
            news: watch::Sender::new(0),
            clock: Clock::default(),
            linking: AtomicBool::new(false),
            reloading: tokio::sync::Mutex::new(()),
        }
    }
}

impl Linked {
    /// Chatwoot's clock, as its API's answers show it.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether the accounts the environment names are still being linked (see [`Linked::linking`]).
    pub fn is_linking(&self) -> bool {
        self.linking.load(Ordering::Acquire)
    }

    /// Marks the accounts the environment names as being linked, or done: while they are, a webhook the
    /// relay has no secret for is refused rather than taken unsigned.
    pub fn linking(&self, on: bool) {
        self.linking.store(on, Ordering::Release);
    }

    /// Reads again what the linked accounts sign with and which inboxes they have (a link, its webhook or its
    /// inboxes changed).
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn reload(&self, db: &Db) -> sqlx::Result<()> {
        let _one = self.reloading.lock().await;
        let mut keys = Keys::default();
        let links = chatwoot_links::list(db).await?;
        for link in &links {
            if let Some(secret) = &link.webhook_secret {
                keys.secrets
                    .entry(link.account_id)
                    .or_default()
                    .push(Secret::new(secret.clone()));
            }
        }
        for inbox in chatwoot_inboxes::list(db).await? {
            if let Some(link) = links.iter().find(|l| l.id == inbox.link_id) {
                keys.inboxes
                    .entry(inbox.inbox_id)
                    .or_default()
                    .push(link.account_id);
            }
        }
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(())
    }

    /// The secrets of the linked accounts that have `inbox`, each with its account; with `None`, those of every
    /// linked account.
    pub(super) fn secrets(&self, inbox: Option<i64>) -> Vec<(i64, Secret<String>)> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let accounts: Vec<i64> = match inbox {
            Some(inbox) => keys.inboxes.get(&inbox).cloned().unwrap_or_default(),
            None => keys.secrets.keys().copied().collect(),
        };
        accounts
            .into_iter()
            .flat_map(|account| {
                let secrets = keys.secrets.get(&account).into_iter().flatten();
                secrets.map(move |secret| (account, secret.clone()))
            })
            .collect()
    }

    /// Notes that a webhook of a linked `account` arrived, signed rightly or not.
    pub(super) fn record(&self, account: i64, signed: bool) {
        let now = crate::store::now_ms();
        {
            let mut heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = heard.entry(account).or_default();
            if signed {
                entry.signed_at = Some(now);
            } else {
                entry.refused_at = Some(now);
            }
        }
        self.news.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn heard(&self, account: i64) -> Heard {
        let heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        heard.get(&account).copied().unwrap_or_default()
    }

    /// Changes to [`Linked::heard`], for waiting on the next webhook.
    pub fn news(&self) -> watch::Receiver<u64> {
        self.news.subscribe()
    }
}
