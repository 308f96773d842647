//! Chatwoot's webhook signature: `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`
//! with `X-Chatwoot-Timestamp: <unix seconds>`.
//!
//! A webhook is accepted when the timestamp is within [`MAX_SKEW`] of now and the signature matches any one
//! of the secrets (several during a rotation). The comparison is the MAC library's constant-time one.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// How far the signed timestamp may be from the relay's clock, either way (replays of older requests fail).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why a webhook's signature was refused; the message is safe to send back (it holds no secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Chatwoot-Signature and X-Chatwoot-Timestamp are required")]
    Missing,
    #[error("X-Chatwoot-Timestamp must be unix seconds")]
    BadTimestamp,
    /// The signature matched, its time did not.
    #[error("X-Chatwoot-Timestamp is more than 5 minutes away from the relay's clock")]
    Stale,
    #[error("X-Chatwoot-Signature does not match")]
    Mismatch,
}

/// Checks a webhook against `secrets`; `now` is unix seconds. Which secret matched (its index).
///
/// # Errors
/// A header is missing or malformed, the timestamp is stale, or no secret produces the signature.
pub fn verify(
    secrets: &[Secret<String>],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<usize, SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let given = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(SignatureError::Mismatch)?;
    // Every secret is tried, so the time taken does not tell which one matched.
    let matched = secrets
        .iter()
        .enumerate()
        .fold(None, |matched, (n, secret)| {
            let ok = mac(secret.expose(), timestamp.trim(), body)
                .verify_slice(&given)
                .is_ok();
            matched.or(ok.then_some(n))
        });
    let matched = matched.ok_or(SignatureError::Mismatch)?;
    // Only then the time: a stale webhook was signed by Chatwoot, and its timestamp says how far the clocks are.
    if ts.abs_diff(now) > MAX_SKEW.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(matched)
}

/// `sha256=<hex>` for `body` signed at `timestamp`, as Chatwoot sends it.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "test-webhook-secret";
    const VECTOR_TS: &str = "1781964310";
    const VECTOR_SIGNATURE: &str =
        "sha256=7b522d6052446175fc3076b9f47236002d6dd7beef4af12d98622a1332b49737";

    fn body() -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/chatwoot/message_created.unicode_emoji.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn secrets(list: &[&str]) -> Vec<Secret<String>> {
        list.iter().map(|s| Secret::new((*s).to_owned())).collect()
    }

    #[test]
    fn the_chatwoot_test_vector_verifies() {
        let body = body();
        assert_eq!(body.len(), 3981);
        assert_eq!(sign(VECTOR_SECRET, VECTOR_TS, &body), VECTOR_SIGNATURE);
        let now = 1_781_964_310;
        let ok = |secrets: &[Secret<String>], sig: &str, now: i64| {
            verify(secrets, Some(VECTOR_TS), Some(sig), &body, now)
        };
        assert_eq!(ok(&secrets(&[VECTOR_SECRET]), VECTOR_SIGNATURE, now), Ok(0));
        // Any one secret of a rotation list will do.
        assert_eq!(
            ok(
                &secrets(&["old", VECTOR_SECRET]),
                VECTOR_SIGNATURE,
                now + 300
            ),
            Ok(1)
        );
        assert_eq!(
            ok(&secrets(&[VECTOR_SECRET]), VECTOR_SIGNATURE, now - 300),
            Ok(0)
        );
        assert_eq!(
            ok(&secrets(&[VECTOR_SECRET]), VECTOR_SIGNATURE, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            ok(&secrets(&["other"]), VECTOR_SIGNATURE, now),
            Err(SignatureError::Mismatch)
        );
        // A stale time is only told of a signature that matched.
        assert_eq!(
            ok(&secrets(&["other"]), VECTOR_SIGNATURE, now + 301),
            Err(SignatureError::Mismatch)
        );
        let upper = VECTOR_SIGNATURE
            .to_uppercase()
            .replace("SHA256=", "sha256=");
        assert_eq!(ok(&secrets(&[VECTOR_SECRET]), &upper, now), Ok(0));
        for bad in [
            "7b522d6052446175fc3076b9f47236002d6dd7beef4af12d98622a1332b49737",
            "sha256=",
            "sha256=zz",
            "sha256=7b52",
            "sha1=7b522d6052446175fc3076b9f47236002d6dd7beef4af12d98622a1332b49737",
        ] {
            assert_eq!(
                ok(&secrets(&[VECTOR_SECRET]), bad, now),
                Err(SignatureError::Mismatch),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_body_and_the_timestamp_are_both_signed() {
        let body = body();
        let secrets = secrets(&[VECTOR_SECRET]);
        let now = 1_781_964_310;
        let mut changed = body.clone();
        changed[100] ^= 1;
        assert_eq!(
            verify(
                &secrets,
                Some(VECTOR_TS),
                Some(VECTOR_SIGNATURE),
                &changed,
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                &secrets,
                Some("1781964311"),
                Some(VECTOR_SIGNATURE),
                &body,
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secrets, None, Some(VECTOR_SIGNATURE), &body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(&secrets, Some(VECTOR_TS), None, &body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(&secrets, Some("soon"), Some(VECTOR_SIGNATURE), &body, now),
            Err(SignatureError::BadTimestamp)
        );
    }
}
