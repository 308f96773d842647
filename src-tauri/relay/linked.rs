//! The Chatwoot accounts linked to the relay, as `POST /webhook` sees them: the secret each one's webhook is
//! signed with, and when a signed webhook of each last arrived (what the reachability check waits for).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};

use tokio::sync::watch;

use crate::config::Secret;

/// When an account's webhook last reached the relay, in unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heard {
    /// With a signature that matched.
    pub signed_at: Option<i64>,
    /// With a signature that did not match (or none).
    pub refused_at: Option<i64>,
}

#[derive(Debug)]
pub struct Linked {
    secrets: RwLock<HashMap<i64, Vec<Secret<String>>>>,
    heard: Mutex<HashMap<i64, Heard>>,
    /// Bumped whenever `heard` changes.
    news: watch::Sender<u64>,
}

impl Default for Linked {
    fn default() -> Self {
        Self {
            secrets: RwLock::default(),
            heard: Mutex::default(),
            news: watch::Sender::new(0),
        }
    }
}

impl Linked {
    /// Replaces the secrets: account id → what its webhook is signed with.
    pub fn set_secrets(&self, secrets: HashMap<i64, Vec<Secret<String>>>) {
        *self.secrets.write().unwrap_or_else(PoisonError::into_inner) = secrets;
    }

    /// The secrets of `account`'s registered webhook; empty when it has none.
    pub(super) fn secrets(&self, account: Option<i64>) -> Vec<Secret<String>> {
        let Some(account) = account else {
            return Vec::new();
        };
        let secrets = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        secrets.get(&account).cloned().unwrap_or_default()
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
