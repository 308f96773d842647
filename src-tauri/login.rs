//! The admin login, without HTTP: credentials checked in constant time (over SHA-256 digests, so that not even
//! the length leaks) or against an Argon2 hash, password hashing, and the [`Throttle`] of failed logins per
//! address. The axum guard that uses them is [`crate::admin::auth`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AdminCredentials;

/// Failed logins per address. An address gets [`Throttle::FREE_FAILURES`] guesses per
/// [`Throttle::WINDOW`]; after that it is refused with 429 for a pause that doubles with each further failure
/// (from [`Throttle::FIRST_PAUSE`] up to the window), correct password or not. Other addresses are not
/// affected, so an attacker cannot lock the admin out. IPv6 addresses count per /64, which one host usually
/// holds entirely; when too many addresses are tracked, the one that failed longest ago is forgotten.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Option<IpAddr>, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
    /// Checks of this address still running: each counts as a failure until it ends, so that guesses sent all
    /// at once cannot pass before the first failure counts.
    checking: u32,
}

impl Throttle {
    pub const FREE_FAILURES: u32 = 5;
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);
    pub const FIRST_PAUSE: Duration = Duration::from_secs(30);
    const MAX_TRACKED: usize = 10_000;
    /// Checks one address may have running at once: as many requests as a browser sends in parallel.
    pub const CHECKS_AT_ONCE: u32 = 6;

    /// How long `peer` must still wait, if it is blocked.
    pub fn blocked(&self, peer: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let failures = self.lock();
        let until = failures.get(&Self::key(peer))?.blocked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Starts checking a password of `peer`: refused (with how long to wait) while it is blocked, while it has
    /// [`Throttle::CHECKS_AT_ONCE`] checks running, or, once it has failed, while its failures and running checks
    /// reach [`Throttle::FREE_FAILURES`]: guesses sent all at once cannot pass before the first failure counts.
    pub fn begin(&self, peer: Option<IpAddr>, now: Instant) -> Result<Checking<'_>, Duration> {
        if let Some(wait) = self.blocked(peer, now) {
            return Err(wait);
        }
        let mut failures = self.lock();
        let key = Self::key(peer);
        if let Some(entry) = failures.get_mut(&key) {
            let count = if now.duration_since(entry.last) >= Self::WINDOW {
                0
            } else {
                entry.count
            };
            let after_failures = count > 0 && count + entry.checking >= Self::FREE_FAILURES;
            if entry.checking >= Self::CHECKS_AT_ONCE || after_failures {
                return Err(Duration::from_secs(1));
            }
            entry.checking += 1;
        } else if failures.len() < Self::MAX_TRACKED {
            failures.insert(key, Failures::checking(now));
        }
        Ok(Checking {
            throttle: self,
            key,
        })
    }

    pub fn failed(&self, peer: Option<IpAddr>, now: Instant) {
        let mut failures = self.lock();
        let key = Self::key(peer);
        if failures.len() >= Self::MAX_TRACKED && !failures.contains_key(&key) {
            failures.retain(|_, f| now.duration_since(f.last) < Self::WINDOW);
            Self::evict_oldest(&mut failures);
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
            checking: 0,
        });
        if now.duration_since(entry.last) >= Self::WINDOW {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if let Some(over) = entry.count.checked_sub(Self::FREE_FAILURES) {
            let pause = Self::FIRST_PAUSE
                .saturating_mul(1 << over.min(16))
                .min(Self::WINDOW);
            entry.blocked_until = Some(now + pause);
        }
    }

    pub fn succeeded(&self, peer: Option<IpAddr>) {
        let mut failures = self.lock();
        let key = Self::key(peer);
        // Checks of this address still running keep the entry until they end.
        if let Some(entry) = failures.get_mut(&key) {
            entry.count = 0;
            entry.blocked_until = None;
            if entry.checking == 0 {
                failures.remove(&key);
            }
        }
    }

    /// The bucket of `peer` (see [`client_key`]).
    fn key(peer: Option<IpAddr>) -> Option<IpAddr> {
        peer.map(client_key)
    }

    /// Makes room in a full table by forgetting the address that failed longest ago. Never a shared bucket:
    /// a flood of addresses can only make the table forget some of its own, not block one that never failed.
    fn evict_oldest(failures: &mut HashMap<Option<IpAddr>, Failures>) {
        if failures.len() < Self::MAX_TRACKED {
            return;
        }
        let oldest = failures
            .iter()
            .min_by_key(|(_, f)| f.last)
            .map(|(key, _)| *key);
        if let Some(oldest) = oldest {
            failures.remove(&oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<IpAddr>, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Failures {
    /// No failure yet, one check running.
    fn checking(now: Instant) -> Self {
        Self {
            count: 0,
            last: now,
            blocked_until: None,
            checking: 1,
        }
    }
}

/// A password check of one address in progress (see [`Throttle::begin`]).
#[derive(Debug)]
pub struct Checking<'a> {
    throttle: &'a Throttle,
    key: Option<IpAddr>,
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        let mut failures = self.throttle.lock();
        if let Some(entry) = failures.get_mut(&self.key) {
            entry.checking = entry.checking.saturating_sub(1);
            if entry.checking == 0 && entry.count == 0 && entry.blocked_until.is_none() {
                failures.remove(&self.key);
            }
        }
    }
}

/// Whether two texts are equal, compared in constant time (over their digests, so not even the length leaks).
pub fn same_text(a: &str, b: &str) -> bool {
    digest(a.as_bytes()).ct_eq(&digest(b.as_bytes())).into()
}

/// Checks an `Authorization` header value against the credentials.
pub fn check(admin: &AdminCredentials, header_value: &str) -> bool {
    let Some((scheme, encoded)) = header_value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let user_ok: bool = digest(user).ct_eq(&digest(admin.user.as_bytes())).into();
    let password_ok = if admin.is_hashed() {
        verify_hash(admin, password)
    } else {
        digest(password)
            .ct_eq(&digest(admin.password.expose().as_bytes()))
            .into()
    };
    user_ok & password_ok
}

/// Verifies against the Argon2 hash once; afterwards compares with the remembered digest in constant time.
fn verify_hash(admin: &AdminCredentials, password: &[u8]) -> bool {
    use argon2::PasswordVerifier as _;
    let given = digest(password);
    if let Some(known) = admin.verified.get() {
        return given.ct_eq(known).into();
    }
    let Ok(hash) = argon2::PasswordHash::new(admin.password.expose()) else {
        return false;
    };
    let ok = argon2::Argon2::default()
        .verify_password(password, &hash)
        .is_ok();
    if ok {
        let _ = admin.verified.set(given);
    }
    ok
}

/// An Argon2id hash of `password` in PHC form, with a random salt (`chatgowa hash-password`).
pub fn hash_password(password: &str) -> String {
    use argon2::PasswordHasher as _;
    use argon2::password_hash::{SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing with default parameters and a generated salt has no failure case.
        .unwrap_or_else(|e| unreachable!("argon2: {e}"))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A client as limits count it: IPv4 as it is, IPv6 by its /64 (which one host usually holds entirely).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_sent_all_at_once_pass_no_faster_than_one_by_one() {
        let throttle = Throttle::default();
        let now = Instant::now();
        let guesser = Some(IpAddr::from([198, 51, 100, 7]));
        // 128 guesses at once: a browser's worth run, the others wait.
        let running: Vec<_> = (0..128)
            .filter_map(|_| throttle.begin(guesser, now).ok())
            .collect();
        assert_eq!(running.len(), Throttle::CHECKS_AT_ONCE as usize);
        for check in running {
            throttle.failed(guesser, now);
            drop(check);
        }
        assert!(
            throttle.begin(guesser, now).is_err(),
            "paused after the wave"
        );
        // The admin elsewhere, whose panel sends its requests in parallel, is let through.
        let admin = Some(IpAddr::from([203, 0, 113, 1]));
        let panel: Vec<_> = (0..Throttle::CHECKS_AT_ONCE)
            .map(|_| throttle.begin(admin, now).expect("the admin's requests"))
            .collect();
        throttle.succeeded(admin);
        drop(panel);
        assert!(
            throttle.lock().get(&admin).is_none(),
            "nothing kept of the admin"
        );
        // After a failure, failures and running checks together stay within the free ones.
        let typo = Some(IpAddr::from([203, 0, 113, 2]));
        drop(throttle.begin(typo, now).unwrap());
        throttle.failed(typo, now);
        let running: Vec<_> = (0..10)
            .filter_map(|_| throttle.begin(typo, now).ok())
            .collect();
        assert_eq!(running.len(), (Throttle::FREE_FAILURES - 1) as usize);
    }

    #[test]
    fn a_guessing_address_is_paused_and_others_are_not() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let attacker = Some(IpAddr::from([203, 0, 113, 9]));
        let admin = Some(IpAddr::from([198, 51, 100, 7]));
        for _ in 1..Throttle::FREE_FAILURES {
            throttle.failed(attacker, t0);
            assert_eq!(throttle.blocked(attacker, t0), None);
        }
        throttle.failed(attacker, t0);
        assert_eq!(
            throttle.blocked(attacker, t0),
            Some(Throttle::FIRST_PAUSE),
            "5 wrong passwords, then a pause"
        );
        assert_eq!(throttle.blocked(admin, t0), None);
        let later = t0 + Throttle::FIRST_PAUSE;
        assert_eq!(throttle.blocked(attacker, later), None, "the pause ends");
        throttle.failed(attacker, later);
        assert_eq!(
            throttle.blocked(attacker, later),
            Some(Throttle::FIRST_PAUSE * 2),
            "and doubles"
        );
        for _ in 0..40 {
            throttle.failed(attacker, later);
        }
        assert_eq!(throttle.blocked(attacker, later), Some(Throttle::WINDOW));
        throttle.succeeded(attacker);
        assert_eq!(throttle.blocked(attacker, later), None);
    }

    #[test]
    fn ipv6_counts_per_64_and_a_full_table_forgets_the_oldest() {
        let throttle = Throttle::default();
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for _ in 0..Throttle::FREE_FAILURES {
            throttle.failed(Some(a), now);
        }
        assert!(throttle.blocked(Some(b), now).is_some());
        assert!(throttle.blocked(Some(other), now).is_none());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        for _ in 0..Throttle::FREE_FAILURES {
            throttle.failed(Some(mapped), now);
        }
        assert!(
            throttle
                .blocked(Some(IpAddr::from([192, 0, 2, 1])), now)
                .is_some()
        );

        // One wrong password from each of more addresses than are tracked: nobody who never failed is
        // blocked, and the guessers are still counted one by one.
        let full = Throttle::default();
        let guesser = Some(IpAddr::from([10, 9, 8, 7]));
        for _ in 1..Throttle::FREE_FAILURES {
            full.failed(guesser, now);
        }
        for i in 0..Throttle::MAX_TRACKED + 50 {
            let at = now + Duration::from_millis(1 + i as u64);
            full.failed(Some(IpAddr::from((i as u32).to_be_bytes())), at);
        }
        let end = now + Duration::from_secs(60);
        assert_eq!(
            full.blocked(Some(IpAddr::from([198, 51, 100, 7])), end),
            None
        );
        assert!(full.lock().len() <= Throttle::MAX_TRACKED);
        let last = Some(IpAddr::from(
            ((Throttle::MAX_TRACKED + 49) as u32).to_be_bytes(),
        ));
        for _ in 1..Throttle::FREE_FAILURES {
            full.failed(last, end);
        }
        assert!(
            full.blocked(last, end).is_some(),
            "a newcomer still has its own count"
        );
    }

    fn basic(raw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn argon2_hashes_verify_and_stay_strict_once_cached() {
        let admin = AdminCredentials::new("admin", hash_password("p:ss word"));
        assert!(admin.is_hashed());
        for _ in 0..2 {
            assert!(check(&admin, &basic("admin:p:ss word")));
            assert!(!check(&admin, &basic("admin:p:ss wor")));
            assert!(!check(&admin, &basic("root:p:ss word")));
        }
        assert_ne!(hash_password("x"), hash_password("x"), "salted");
    }

    #[test]
    fn only_the_exact_credentials_pass() {
        let admin = AdminCredentials::new("admin", "p:ss word");
        assert!(check(&admin, &basic("admin:p:ss word")));
        assert!(check(
            &admin,
            &format!(
                "basic  {}",
                base64::engine::general_purpose::STANDARD.encode("admin:p:ss word")
            )
        ));
        for bad in [
            basic("admin:p:ss wor"),
            basic("Admin:p:ss word"),
            basic("admin"),
            basic(":"),
            basic(""),
            "Basic !!!not-base64".into(),
            "Bearer abc".into(),
            "Basic".into(),
            String::new(),
        ] {
            assert!(!check(&admin, &bad), "{bad}");
        }
    }
}
