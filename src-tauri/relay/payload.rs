//! Reads the few fields of a Chatwoot webhook that routing, ordering and dedupe need, and nothing else.
//!
//! The body is validated as JSON in full, but only `event`, the inbox, conversation, account and message ids
//! (and, for `message_updated`, a digest of what GoWA acts on) are kept.
//! Where Chatwoot puts the inbox id differs per event (see `tests/fixtures/chatwoot/README.md`): `inbox.id`,
//! else top-level `inbox_id`, else `conversation.inbox_id`. Ids elsewhere (user data such as
//! `custom_attributes.inbox_id`) are never taken.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use sha2::{Digest as _, Sha256};

use crate::ids::InboxId;

/// The routing view of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub event: String,
    pub inbox_id: Option<InboxId>,
    /// Orders deliveries: `conversation.id`, or the top-level `id` of a `conversation_*` event.
    pub conversation_id: Option<i64>,
    /// Chatwoot's message id (the top-level `id`) of a `message_created` or `message_updated`: orders the
    /// replies of a conversation.
    pub message_id: Option<i64>,
    /// What makes a message event the same one again, whatever its delivery id: `message_created` is
    /// (inbox, account, message); a `message_updated` is that plus what changed (the content, the deleted flag, the status),
    /// so that an exact repeat is recognised and a real later change is not. `None` for other events, or
    /// without an account or message id.
    pub identity: Option<String>,
    /// The Chatwoot account: `account.id`, or `conversation.account.id` (typing events have only that).
    pub account_id: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object")]
    NotObject,
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Deepest nesting accepted; Chatwoot's payloads stay under 10, and GoWA's decoder would refuse far less than
/// what serde skips over without a limit.
pub const MAX_DEPTH: usize = 64;

#[derive(Deserialize)]
struct Raw {
    event: Option<Text>,
    id: Option<Id>,
    inbox_id: Option<Id>,
    inbox: Option<Obj<InboxRef>>,
    conversation: Option<Obj<ConversationRef>>,
    account: Option<Obj<InboxRef>>,
}

/// An object of which only the id is read (`inbox`, `account`).
#[derive(Default, Deserialize)]
struct InboxRef {
    id: Option<Id>,
}

/// What GoWA acts on in a `message_updated`, read only for that event.
#[derive(Deserialize)]
struct Update {
    content: Option<Text>,
    content_attributes: Option<Obj<Attributes>>,
    status: Option<Text>,
}

#[derive(Default, Deserialize)]
struct Attributes {
    deleted: Option<Flag>,
}

#[derive(Default, Deserialize)]
struct ConversationRef {
    id: Option<Id>,
    inbox_id: Option<Id>,
    account: Option<Obj<InboxRef>>,
}

/// Longest `event` kept (Chatwoot's names have under 30 characters): the name is stored, logged and shown, so a
/// stranger's megabyte of it is cut here.
pub const MAX_EVENT: usize = 64;

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let end = (0..=max)
            .rev()
            .find(|&n| text.is_char_boundary(n))
            .unwrap_or(0);
        text.truncate(end);
    }
}

/// Parses a webhook body.
///
/// # Errors
/// The body is not JSON (including invalid UTF-8 and nesting deeper than 128), or not a JSON object.
pub fn parse(body: &[u8]) -> Result<Payload, PayloadError> {
    // serde would also read an array into a struct, field by position: only objects are webhooks.
    let not_json = |e: serde_json::Error| PayloadError::NotJson(e.to_string());
    // serde_json does not check the UTF-8 of strings it skips; JSON must be UTF-8 throughout.
    std::str::from_utf8(body).map_err(|e| PayloadError::NotJson(format!("not UTF-8: {e}")))?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<IgnoredAny>(body).map_err(not_json)?;
        return Err(PayloadError::NotObject);
    }
    let raw: Raw = serde_json::from_slice(body).map_err(not_json)?;
    if depth(body) > MAX_DEPTH {
        return Err(PayloadError::TooDeep);
    }
    let mut event = raw.event.and_then(|t| t.0).unwrap_or_default();
    cut(&mut event, MAX_EVENT);
    let mut conversation = raw.conversation.and_then(|c| c.0).unwrap_or_default();
    // The first place that has an id decides, even if its value is unusable.
    let inbox_id = raw
        .inbox
        .and_then(|i| i.0)
        .and_then(|i| i.id)
        .or(raw.inbox_id)
        .or(conversation.inbox_id)
        .and_then(|id| id.0)
        .map(InboxId);
    let is_message = matches!(event.as_str(), "message_created" | "message_updated");
    let conversation_id = conversation
        .id
        .or_else(|| raw.id.filter(|_| event.starts_with("conversation_")))
        .and_then(|id| id.0);
    let message_id = raw.id.and_then(|id| id.0).filter(|_| is_message);
    let account_id = raw.account.and_then(|a| a.0).and_then(|a| a.id?.0);
    let any_account = account_id.or_else(|| {
        conversation
            .account
            .take()
            .and_then(|a| a.0)
            .and_then(|a| a.id?.0)
    });
    // Of the inbox too: two Chatwoot servers relayed by one relay both have an account 1 and give out the same
    // message ids, but an inbox id has one route, so it names one server.
    let identity = match (inbox_id, account_id, message_id) {
        (Some(inbox), Some(account), Some(message)) if event == "message_created" => {
            Some(format!("message_created/{inbox}/{account}/{message}"))
        }
        // A deletion is one per message, and a reply whose webhook comes after it is not sent (the writer looks
        // for it by this identity).
        (Some(inbox), Some(account), Some(message)) => Some(match update_digest(body) {
            Ok((_, true)) => format!("message_deleted/{inbox}/{account}/{message}"),
            Ok((digest, false)) => format!("message_updated/{inbox}/{account}/{message}/{digest}"),
            Err(e) => return Err(not_json(e)),
        }),
        _ => None,
    };
    Ok(Payload {
        event,
        inbox_id,
        conversation_id,
        message_id,
        identity,
        account_id: any_account,
    })
}

/// A digest of what a `message_updated` changes that matters: the content and whether the message was deleted
/// (what GoWA acts on), and its status (Chatwoot's Retry sets a failed reply back to `sent`, which the relay acts
/// on); and whether it was deleted.
fn update_digest(body: &[u8]) -> Result<(String, bool), serde_json::Error> {
    let update: Update = serde_json::from_slice(body)?;
    let content = update.content.and_then(|t| t.0).unwrap_or_default();
    let deleted = update
        .content_attributes
        .and_then(|a| a.0)
        .and_then(|a| a.deleted?.0)
        .unwrap_or(false);
    let status = update.status.and_then(|t| t.0).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(content.as_bytes());
    hasher.update([0, u8::from(deleted)]);
    hasher.update(status.as_bytes());
    Ok((hex::encode(&hasher.finalize()[..8]), deleted))
}

/// Nesting depth of a document already known to be valid JSON: brackets outside strings.
fn depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    max
}

/// An id as Chatwoot sends it (a JSON integer) or as a numeric string; anything else reads as present but
/// unusable (`Id(None)`), and never fails the whole payload.
#[derive(Clone, Copy)]
struct Id(Option<i64>);

/// A string, or `None` for any other JSON value.
struct Text(Option<String>);

/// `true`/`false`, or the string `"true"` (as GoWA reads `deleted`); `None` for anything else.
struct Flag(Option<bool>);

/// `T` when the value is an object, `None` for any other JSON value (e.g. `"inbox": "x"`).
struct Obj<T>(Option<T>);

/// Visits any JSON value: the `on_*` hooks of `S` pick the shapes it takes, everything else is skipped.
struct Shape<S>(std::marker::PhantomData<S>);

trait Accepts<'de>: Sized {
    fn none() -> Self;
    fn on_i64(_: i64) -> Self {
        Self::none()
    }
    fn on_str(_: &str) -> Self {
        Self::none()
    }
    fn on_bool(_: bool) -> Self {
        Self::none()
    }
    fn on_map<A: de::MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::none())
    }
}

impl<'de> Accepts<'de> for Id {
    fn none() -> Self {
        Id(None)
    }
    fn on_i64(v: i64) -> Self {
        Id(Some(v).filter(|v| *v > 0))
    }
    fn on_str(v: &str) -> Self {
        Id(crate::ids::parse_text(v))
    }
}

impl<'de> Accepts<'de> for Text {
    fn none() -> Self {
        Text(None)
    }
    fn on_str(v: &str) -> Self {
        Text(Some(v.to_owned()))
    }
}

impl<'de> Accepts<'de> for Flag {
    fn none() -> Self {
        Flag(None)
    }
    fn on_bool(v: bool) -> Self {
        Flag(Some(v))
    }
    fn on_str(v: &str) -> Self {
        Flag((v == "true").then_some(true))
    }
}

impl<'de, T: Deserialize<'de>> Accepts<'de> for Obj<T> {
    fn none() -> Self {
        Obj(None)
    }
    fn on_map<A: de::MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
    }
}

impl<'de, S: Accepts<'de>> Visitor<'de> for Shape<S> {
    type Value = S;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_u64<E>(self, v: u64) -> Result<S, E> {
        Ok(i64::try_from(v).map_or_else(|_| S::none(), S::on_i64))
    }
    fn visit_i64<E>(self, v: i64) -> Result<S, E> {
        Ok(S::on_i64(v))
    }
    fn visit_f64<E>(self, _: f64) -> Result<S, E> {
        Ok(S::none())
    }
    fn visit_bool<E>(self, v: bool) -> Result<S, E> {
        Ok(S::on_bool(v))
    }
    fn visit_unit<E>(self) -> Result<S, E> {
        Ok(S::none())
    }
    fn visit_str<E>(self, v: &str) -> Result<S, E> {
        Ok(S::on_str(v))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<S, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(S::none())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<S, A::Error> {
        S::on_map(map)
    }
}

macro_rules! deserialize_by_shape {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(Shape(std::marker::PhantomData))
            }
        }
    )*};
}
deserialize_by_shape!(Id, Text, Flag);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Shape(std::marker::PhantomData))
    }
}

/// A Chatwoot webhook from `tests/fixtures/chatwoot/`, for the unit tests that read one.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/chatwoot/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_fixture_resolves_to_its_documented_inbox() {
        let expected = [
            ("message_created.incoming_text.json", Some(7), Some(42)),
            ("message_created.outgoing_text.json", Some(7), Some(42)),
            ("message_created.outgoing_image.json", Some(7), Some(42)),
            ("message_created.private_note.json", Some(7), Some(42)),
            (
                "message_created.outgoing_echo_from_gowa.json",
                Some(7),
                Some(42),
            ),
            ("message_updated.deleted.json", Some(7), Some(42)),
            ("conversation_created.json", Some(7), Some(42)),
            (
                "conversation_status_changed.resolved.json",
                Some(7),
                Some(42),
            ),
            (
                "conversation_updated.assignee_changed.json",
                Some(7),
                Some(42),
            ),
            ("conversation_typing_on.agent.json", Some(7), Some(42)),
            ("conversation_typing_off.agent.json", Some(7), Some(42)),
            ("contact_created.json", None, None),
            ("contact_updated.json", None, None),
            ("webwidget_triggered.json", Some(3), None),
            ("message_created.unicode_emoji.json", Some(9), Some(57)),
            ("message_created.large_text.json", Some(7), Some(42)),
        ];
        let dir = std::fs::read_dir(format!(
            "{}/tests/fixtures/chatwoot",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let on_disk = dir
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count();
        assert_eq!(on_disk, expected.len(), "every fixture is covered");
        for (name, inbox, conversation) in expected {
            let p = parse(&fixture(name)).unwrap();
            assert_eq!(p.inbox_id, inbox.map(InboxId), "{name}");
            assert_eq!(p.conversation_id, conversation, "{name}");
            assert!(name.starts_with(&p.event), "{name}: event {}", p.event);
        }
    }

    #[test]
    fn lookup_order_and_id_forms() {
        let p = |s: &str| parse(s.as_bytes()).unwrap();
        assert_eq!(
            p(r#"{"inbox":{"id":3},"inbox_id":4,"conversation":{"inbox_id":5}}"#).inbox_id,
            Some(InboxId(3))
        );
        assert_eq!(
            p(r#"{"inbox_id":4,"conversation":{"inbox_id":5}}"#).inbox_id,
            Some(InboxId(4))
        );
        assert_eq!(
            p(r#"{"inbox":null,"conversation":{"inbox_id":5}}"#).inbox_id,
            Some(InboxId(5))
        );
        assert_eq!(p(r#"{"inbox_id":"12"}"#).inbox_id, Some(InboxId(12)));
        for unusable in [
            "-1",
            "0",
            "1.5",
            "true",
            "null",
            "\"12a\"",
            "\"\"",
            "\"+3\"",
            "[1]",
            "{}",
            "99999999999999999999",
        ] {
            let body = format!(r#"{{"inbox_id":{unusable},"conversation":{{"inbox_id":5}}}}"#);
            let expected = if unusable == "null" {
                Some(InboxId(5))
            } else {
                None
            };
            assert_eq!(p(&body).inbox_id, expected, "{unusable}");
        }
    }

    #[test]
    fn message_events_carry_their_identity() {
        let created = parse(&fixture("message_created.outgoing_text.json")).unwrap();
        let id = created.message_id.expect("a message id");
        let inbox = created.inbox_id.expect("an inbox");
        assert_eq!(
            created.identity.as_deref(),
            Some(format!("message_created/{inbox}/1/{id}").as_str())
        );
        // Another Chatwoot server's account 1 gives out the same message id, in an inbox of its own.
        let mut elsewhere: serde_json::Value =
            serde_json::from_slice(&fixture("message_created.outgoing_text.json")).unwrap();
        elsewhere["inbox"]["id"] = 9_999.into();
        elsewhere["conversation"]["inbox_id"] = 9_999.into();
        let elsewhere = parse(&serde_json::to_vec(&elsewhere).unwrap()).unwrap();
        assert_eq!(elsewhere.message_id, created.message_id);
        assert_ne!(elsewhere.identity, created.identity);
        let status = parse(&fixture("conversation_status_changed.resolved.json")).unwrap();
        assert_eq!((status.message_id, status.identity), (None, None));

        let deleted = fixture("message_updated.deleted.json");
        let update = parse(&deleted).unwrap();
        assert!(
            update.identity.as_deref().unwrap()
                == format!(
                    "message_deleted/{}/1/{}",
                    update.inbox_id.unwrap(),
                    update.message_id.unwrap()
                )
        );
        let mut edited: serde_json::Value = serde_json::from_slice(&deleted).unwrap();
        edited["content"] = "Edited text".into();
        edited["content_attributes"]["deleted"] = false.into();
        let edited_bytes = serde_json::to_vec(&edited).unwrap();
        let edit = parse(&edited_bytes).unwrap();
        assert_eq!(edit.message_id, update.message_id);
        assert_ne!(
            edit.identity, update.identity,
            "a deletion after an edit is new"
        );
        assert_eq!(
            parse(&edited_bytes).unwrap().identity,
            edit.identity,
            "a repeat is the same"
        );
        // Pretty-printed or compact, the same update is the same.
        let compact =
            serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&deleted).unwrap())
                .unwrap();
        assert_eq!(parse(&compact).unwrap().identity, update.identity);
        edited["content_attributes"]["deleted"] = "true".into();
        let as_text = parse(&serde_json::to_vec(&edited).unwrap()).unwrap();
        assert_ne!(
            as_text.identity, edit.identity,
            "\"true\" is deleted, as GoWA reads it"
        );

        let without_account = parse(br#"{"event":"message_created","id":5}"#).unwrap();
        assert_eq!(
            (without_account.message_id, without_account.identity),
            (Some(5), None)
        );
    }

    #[test]
    fn user_data_is_never_taken_for_the_inbox() {
        let body = r#"{"event":"contact_updated","custom_attributes":{"inbox_id":7},"contact_inbox":{"inbox_id":7},
                      "additional_attributes":{"inbox":{"id":7}}}"#;
        assert_eq!(parse(body.as_bytes()).unwrap().inbox_id, None);
    }

    #[test]
    fn odd_shapes_are_tolerated_but_not_json_is_rejected() {
        let p = parse(br#"{"event":5,"inbox":"seven","conversation":[1]}"#).unwrap();
        assert_eq!(
            p,
            Payload {
                event: String::new(),
                inbox_id: None,
                conversation_id: None,
                message_id: None,
                identity: None,
                account_id: None,
            }
        );
        assert_eq!(parse(b"[1,2]"), Err(PayloadError::NotObject));
        assert_eq!(parse(b" 42"), Err(PayloadError::NotObject));
        for bad in [&b""[..], b"{", b"{\"a\":1}x", b"{\"a\":\"\xff\"}", b"nope"] {
            assert!(
                matches!(parse(bad), Err(PayloadError::NotJson(_))),
                "{bad:?}"
            );
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            parse(format!("{{\"a\":{deep}}}").as_bytes()),
            Err(PayloadError::TooDeep)
        );
        let ok = format!(
            "{{\"a\":{}1{},\"s\":\"[[[\\\"{{\"}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(
            parse(ok.as_bytes()).is_ok(),
            "brackets in strings do not count: {ok}"
        );
        let over = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(parse(over.as_bytes()), Err(PayloadError::TooDeep));
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        use super::*;

        /// The lookup rule, written again over `serde_json::Value`: the first of `inbox.id`, `inbox_id`,
        /// `conversation.inbox_id` that is present and not null decides; it must be a positive integer or a
        /// string of digits.
        fn model(v: &Map<String, Value>) -> Option<i64> {
            let inside = |key: &str, field: &str| match v.get(key) {
                Some(Value::Object(o)) => o.get(field).cloned(),
                _ => None,
            };
            let first = [
                inside("inbox", "id"),
                v.get("inbox_id").cloned(),
                inside("conversation", "inbox_id"),
            ]
            .into_iter()
            .flatten()
            .find(|x| !x.is_null())?;
            match first {
                Value::Number(n) => n.as_i64(),
                Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    s.parse().ok()
                }
                _ => None,
            }
            .filter(|id| *id > 0)
        }

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                (-1e6f64..1e6).prop_map(Value::from),
                "[0-9]{0,20}".prop_map(Value::from),
                "[ -~]{0,8}".prop_map(Value::from),
                "\\PC{0,6}".prop_map(Value::from),
            ]
        }

        fn json() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Something at `key`: absent, any value, or an object that may hold `field`.
        fn slot(field: &'static str) -> impl Strategy<Value = Option<Value>> {
            prop_oneof![
                Just(None),
                json().prop_map(Some),
                (
                    prop::option::of(leaf()),
                    prop::collection::btree_map("[a-z]{1,4}", leaf(), 0..3)
                )
                    .prop_map(move |(id, extra)| {
                        let mut o: Map<String, Value> = extra.into_iter().collect();
                        if let Some(id) = id {
                            o.insert(field.to_owned(), id);
                        }
                        Some(Value::Object(o))
                    }),
            ]
        }

        fn webhook() -> impl Strategy<Value = Map<String, Value>> {
            (
                slot("id"),
                prop::option::of(leaf()),
                slot("inbox_id"),
                prop::collection::btree_map("[a-z]{1,6}", json(), 0..4),
            )
                .prop_map(|(inbox, inbox_id, conversation, extra)| {
                    let mut o: Map<String, Value> = extra.into_iter().collect();
                    for (key, value) in [
                        ("inbox", inbox),
                        ("inbox_id", inbox_id),
                        ("conversation", conversation),
                    ] {
                        match value {
                            Some(v) => o.insert(key.to_owned(), v),
                            None => o.remove(key),
                        };
                    }
                    o
                })
        }

        proptest! {
            #[test]
            fn the_inbox_is_found_where_the_rule_says(webhook in webhook()) {
                let body = serde_json::to_vec(&webhook).unwrap();
                let parsed = parse(&body).unwrap();
                prop_assert_eq!(parsed.inbox_id.map(|i| i.0), model(&webhook));
            }

            #[test]
            fn any_bytes_are_answered_without_panicking(body in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse(&body);
            }

            #[test]
            fn damaged_webhooks_are_answered_without_panicking(
                cut in 0usize..4000,
                flips in prop::collection::vec((0usize..4000, any::<u8>()), 0..8),
            ) {
                let mut body = fixture("message_created.unicode_emoji.json");
                for (at, byte) in flips {
                    let at = at % body.len();
                    body[at] = byte;
                }
                body.truncate(cut.min(body.len()));
                if let Ok(p) = parse(&body) {
                    prop_assert!(p.inbox_id.is_none_or(|i| i.0 > 0));
                }
            }
        }
    }
}
