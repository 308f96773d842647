//! When to try again: pure functions over the retry schedule, the response and the clock.

use std::time::{Duration, SystemTime};

use crate::store::deliveries::NextState;

/// How an attempt's outcome is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Success,
    /// Worth retrying; `slow_down` after a 429 or a timeout, where the receiver is overloaded.
    Retryable {
        slow_down: bool,
    },
    /// Retrying cannot help (4xx other than 408/425/429, a redirect): dead at once.
    Permanent,
}

/// Classifies a response status, or a transport failure (`status` = `None`).
pub fn classify(status: Option<u16>, timed_out: bool) -> Class {
    match status {
        Some(200..=299) => Class::Success,
        Some(429) => Class::Retryable { slow_down: true },
        Some(408 | 425 | 500..) => Class::Retryable { slow_down: false },
        Some(_) => Class::Permanent,
        None => Class::Retryable {
            slow_down: timed_out,
        },
    }
}

/// Delay before the next attempt, after `attempts_made` attempts (≥ 1).
///
/// The step is `schedule[attempts_made - 1]` (the last step repeats), one step further when slowing down.
/// `jitter` in [-1, 1] spreads it by ±20% so that many deliveries failing together do not retry together.
/// A `Retry-After` is honoured but clamped to [step, 2 × step], so a receiver can neither hammer us into a
/// tight loop nor park a delivery for a day.
pub fn delay(
    schedule: &[Duration],
    attempts_made: u32,
    slow_down: bool,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let Some(last) = schedule.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let index = (attempts_made.saturating_sub(1) as usize + usize::from(slow_down)).min(last);
    let step = schedule[index];
    match retry_after {
        Some(wanted) => wanted.clamp(step, step * 2),
        None => step.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0)),
    }
}

/// Why a delivery that waited past its maximum age was not sent (kept as its last error; a linked Chatwoot's note
/// says it in the panel's language).
pub const TOO_OLD: &str = "not sent: it waited longer than CHATGOWA_MAX_AGE";

/// Whether a delivery received at `received_at_ms` is past its maximum age at `at_ms`: it is not sent (or
/// retried) any more. The one age rule, for a retry's time and for a head that waited without attempts.
pub fn too_old(at_ms: i64, received_at_ms: i64, max_age: Duration) -> bool {
    at_ms > received_at_ms.saturating_add(millis(max_age))
}

/// Schedules the retry, or gives up if it would fall after the delivery's maximum age.
pub fn next_state(
    now_ms: i64,
    received_at_ms: i64,
    max_age: Duration,
    delay: Duration,
) -> NextState {
    let at = now_ms.saturating_add(millis(delay));
    if too_old(at, received_at_ms, max_age) {
        NextState::Dead
    } else {
        NextState::RetryAt(at)
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn classification() {
        assert_eq!(classify(Some(200), false), Class::Success);
        assert_eq!(classify(Some(204), false), Class::Success);
        for code in [408, 425, 500, 502, 503, 504] {
            assert_eq!(
                classify(Some(code), false),
                Class::Retryable { slow_down: false },
                "{code}"
            );
        }
        assert_eq!(
            classify(Some(429), false),
            Class::Retryable { slow_down: true }
        );
        for code in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(classify(Some(code), false), Class::Permanent, "{code}");
        }
        assert_eq!(classify(None, false), Class::Retryable { slow_down: false });
        assert_eq!(classify(None, true), Class::Retryable { slow_down: true });
    }

    #[test]
    fn schedule_steps_jitter_and_repeat_the_last_step() {
        let schedule = [S(1), S(5), S(30)];
        assert_eq!(delay(&schedule, 1, false, None, 0.0), S(1));
        assert_eq!(delay(&schedule, 2, false, None, 0.0), S(5));
        assert_eq!(delay(&schedule, 3, false, None, 0.0), S(30));
        assert_eq!(delay(&schedule, 9, false, None, 0.0), S(30));
        assert_eq!(delay(&schedule, 2, false, None, 1.0), S(6));
        assert_eq!(delay(&schedule, 2, false, None, -1.0), S(4));
        assert_eq!(
            delay(&schedule, 2, false, None, 7.0),
            S(6),
            "jitter is bounded"
        );
        assert_eq!(delay(&[], 1, false, None, 0.0), Duration::ZERO);
    }

    #[test]
    fn slowing_down_skips_a_step() {
        let schedule = [S(1), S(5), S(30)];
        assert_eq!(delay(&schedule, 1, true, None, 0.0), S(5));
        assert_eq!(delay(&schedule, 3, true, None, 0.0), S(30));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let schedule = [S(10)];
        assert_eq!(delay(&schedule, 1, true, Some(S(15)), 0.9), S(15));
        assert_eq!(
            delay(&schedule, 1, true, Some(S(1)), 0.0),
            S(10),
            "not sooner than the step"
        );
        assert_eq!(
            delay(&schedule, 1, true, Some(S(86_400)), 0.0),
            S(20),
            "not later than twice the step"
        );
    }

    #[test]
    fn retry_after_header_forms() {
        let now = SystemTime::UNIX_EPOCH + S(1_000_000);
        assert_eq!(parse_retry_after(" 120 ", now), Some(S(120)));
        let date = httpdate::fmt_http_date(now + S(30));
        assert_eq!(parse_retry_after(&date, now), Some(S(30)));
        let past = httpdate::fmt_http_date(now - S(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn gives_up_past_the_maximum_age() {
        let max_age = S(60);
        assert_eq!(
            next_state(1_000, 0, max_age, S(10)),
            NextState::RetryAt(11_000)
        );
        assert_eq!(
            next_state(50_000, 0, max_age, S(10)),
            NextState::RetryAt(60_000)
        );
        assert_eq!(next_state(50_001, 0, max_age, S(10)), NextState::Dead);
    }
}
