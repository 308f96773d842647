//! How far Chatwoot's clock is from this relay's, read from the `Date` header of the answers of Chatwoot's API
//! (an answer to the relay's own request over the linked address: no stranger can set it).
//!
//! Catching up compares Chatwoot's `created_at` with Chatwoot's time, not the relay's, and a signed webhook's
//! timestamp is held against Chatwoot's time too: a relay clock minutes off does not make it skip replies or
//! refuse every signed webhook. Without a linked account, the timestamps of webhooks whose signature matched
//! show the offset too: told, never reckoned with (an old webhook sent again would move it). An offset worth
//! telling is said in the log, the overview and `/healthz`.

use std::sync::{Arc, Mutex, PoisonError};

use reqwest::header::HeaderValue;

use crate::store::now_ms;

/// An offset beyond this is told to the admin (a `Date` header counts whole seconds, and a call takes time).
pub const TOLD_AFTER_MS: i64 = 30_000;
/// A call that took longer than this says less about when its `Date` was written (up to half its time off): its
/// offset is taken only while none better is known. A few seconds off beats none: catching up allows a minute
/// for clocks, and judged by this computer's clock minutes off it would skip replies for good.
const PRECISE_CALL_MS: i64 = 5_000;
/// Offsets further than a day are no clock: ignored (a proxy's cached answer, a wrong header).
const LARGEST_MS: i64 = 24 * 3600 * 1000;
/// A signed webhook's offset is told for this long after it arrived.
const SIGNED_TOLD_FOR_MS: i64 = 3600 * 1000;

/// Chatwoot's clock minus the relay's, in milliseconds: as Chatwoot's API answers show it (unknown until one was
/// read), and as the last signed webhook showed it.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<Mutex<Offsets>>);

#[derive(Debug, Default)]
struct Offsets {
    api: Option<i64>,
    /// When a signed webhook last arrived, and the offset its timestamp showed.
    signed: Option<(i64, i64)>,
}

/// An offset worth telling the admin: Chatwoot's clock minus this computer's, in seconds, and whether the relay
/// reckons with it (measured by Chatwoot's API) or only saw it on signed webhooks (which are refused once the
/// clocks are more than 5 minutes apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Told {
    pub seconds: i64,
    pub reckoned: bool,
}

impl Clock {
    /// Reads an answer's `Date` for a call sent at `sent` (relay ms) and answered at `answered`.
    pub fn observe(&self, date: Option<&HeaderValue>, sent: i64, answered: i64) {
        let Some((offset, precise)) = offset_of(date, sent, answered) else {
            return;
        };
        let was = {
            let mut offsets = self.offsets();
            if !precise && offsets.api.is_some() {
                return;
            }
            offsets.api.replace(offset)
        };
        if told(Some(offset)) && !told(was) {
            tracing::warn!(
                seconds = offset / 1000,
                "this computer's clock differs from Chatwoot's by {}: set it right (turn on automatic time); until \
                 then Chatgowa reckons with Chatwoot's time",
                words(offset)
            );
        } else if told(was) && !told(Some(offset)) {
            tracing::info!("this computer's clock agrees with Chatwoot's again");
        }
    }

    /// Reads the timestamp (unix seconds) of a webhook whose signature matched, arrived at `arrived` (relay ms).
    pub fn observe_signed(&self, timestamp: i64, arrived: i64) {
        let offset = timestamp.saturating_mul(1000).saturating_add(500) - arrived;
        if offset.abs() > LARGEST_MS {
            return;
        }
        let mut offsets = self.offsets();
        let was = offsets.signed.replace((arrived, offset)).map(|(_, o)| o);
        if offsets.api.is_none() && told(Some(offset)) && !told(was) {
            tracing::warn!(
                seconds = offset / 1000,
                "Chatwoot's signed webhooks show this computer's clock off by {}: set it right (turn on automatic \
                 time); once the clocks are more than 5 minutes apart they are refused, and their replies not sent. \
                 Linking the Chatwoot account lets Chatgowa reckon with Chatwoot's time. (Or someone is sending old \
                 webhooks again.)",
                words(offset)
            );
        }
    }

    /// Chatwoot's clock minus the relay's, in milliseconds, once measured by its API.
    pub fn offset_ms(&self) -> Option<i64> {
        self.offsets().api
    }

    /// The time on Chatwoot's clock now (unix ms): the relay's own until Chatwoot's was read.
    pub fn chatwoot_now(&self) -> i64 {
        now_ms().saturating_add(self.offset_ms().unwrap_or(0))
    }

    /// The offset when it is worth telling the admin: the API's, else a recent signed webhook's.
    pub fn told(&self) -> Option<Told> {
        let offsets = self.offsets();
        let recent = offsets
            .signed
            .filter(|(at, _)| now_ms() - at < SIGNED_TOLD_FOR_MS)
            .map(|(_, offset)| Told {
                seconds: offset / 1000,
                reckoned: false,
            });
        let api = offsets.api.map(|offset| Told {
            seconds: offset / 1000,
            reckoned: true,
        });
        api.or(recent)
            .filter(|t| t.seconds.saturating_mul(1000).abs() > TOLD_AFTER_MS)
    }

    fn offsets(&self) -> std::sync::MutexGuard<'_, Offsets> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn told(offset: Option<i64>) -> bool {
    offset.is_some_and(|o| o.abs() > TOLD_AFTER_MS)
}

/// The offset a `Date` header shows (its second's middle against the call's), and whether the call was quick.
fn offset_of(date: Option<&HeaderValue>, sent: i64, answered: i64) -> Option<(i64, bool)> {
    let took = answered - sent;
    let longest = i64::try_from(super::CALL_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
    if !(0..=longest).contains(&took) {
        return None;
    }
    let at = httpdate::parse_http_date(date?.to_str().ok()?).ok()?;
    let at = i64::try_from(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()?;
    let offset = at + 500 - (sent + answered) / 2;
    (offset.abs() <= LARGEST_MS).then_some((offset, took <= PRECISE_CALL_MS))
}

/// "5 minutes ahead", "2 minutes behind": this computer's clock against Chatwoot's.
fn words(offset: i64) -> String {
    let side = if offset < 0 { "ahead" } else { "behind" };
    if offset.abs() < 90_000 {
        format!("{} seconds ({side})", offset.abs() / 1000)
    } else {
        format!("{} minutes ({side})", (offset.abs() + 30_000) / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(at_ms: i64) -> HeaderValue {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms.unsigned_abs());
        HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap()
    }

    #[test]
    fn the_offset_is_read_from_the_answers_date() {
        let clock = Clock::default();
        assert_eq!(clock.offset_ms(), None);
        let now = now_ms();
        // Chatwoot's clock ten minutes ahead of this computer's.
        clock.observe(Some(&date(now + 600_000)), now - 100, now);
        let offset = clock.offset_ms().unwrap();
        assert!((599_000..=601_000).contains(&offset), "{offset}");
        assert!(
            clock
                .told()
                .is_some_and(|t| t.reckoned && (599..=601).contains(&t.seconds))
        );
        assert!((clock.chatwoot_now() - now - 600_000).abs() < 2_000);
        // Clocks that agree within a second or two are not worth telling.
        clock.observe(Some(&date(now + 1_000)), now - 100, now);
        assert_eq!(clock.told(), None);
        // A slow call once a quick one was read, a call longer than any, a missing or broken header, a day away:
        // nothing learned.
        for (header, sent) in [
            (Some(date(now + 600_000)), now - 6_000),
            (Some(date(now + 600_000)), now - 11_000),
            (None, now - 100),
            (Some(HeaderValue::from_static("yesterday")), now - 100),
            (Some(date(now + 2 * LARGEST_MS)), now - 100),
        ] {
            clock.observe(header.as_ref(), sent, now);
            assert_eq!(clock.told(), None);
        }
        // A slow call is read while nothing better is known.
        let fresh = Clock::default();
        fresh.observe(Some(&date(now + 600_000)), now - 6_000, now);
        let offset = fresh.offset_ms().unwrap();
        assert!((602_000..=604_000).contains(&offset), "{offset}");
        assert_eq!(words(-300_000), "5 minutes (ahead)");
        assert_eq!(words(45_000), "45 seconds (behind)");
    }

    #[test]
    fn signed_webhooks_show_the_offset_without_a_link_and_never_move_chatwoots_time() {
        let clock = Clock::default();
        let now = now_ms();
        // This computer ten minutes ahead: webhooks signed just now look ten minutes old.
        clock.observe_signed((now - 600_000) / 1000, now);
        assert_eq!(clock.offset_ms(), None, "not reckoned with");
        assert!((clock.chatwoot_now() - now_ms()).abs() < 1_000);
        let told = clock.told().unwrap();
        assert!(!told.reckoned);
        assert!((-601..=-599).contains(&told.seconds), "{told:?}");
        // An offset measured by the API is told first; a signed webhook no longer old is not told.
        clock.observe(Some(&date(now + 120_000)), now - 100, now);
        let told = clock.told().unwrap();
        assert!(
            told.reckoned && (119..=121).contains(&told.seconds),
            "{told:?}"
        );
        let fresh = Clock::default();
        fresh.observe_signed(now / 1000, now);
        assert_eq!(fresh.told(), None);
        // An hour later the webhook's offset is no longer told.
        fresh.observe_signed((now - 600_000) / 1000, now - SIGNED_TOLD_FOR_MS - 1);
        assert_eq!(fresh.told(), None);
    }
}
