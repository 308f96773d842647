//! Who and what a delivery is about, read from its stored webhook: the customer's name and phone, a one-line
//! preview of the message. What the delivery log shows and what its search box matches.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Characters of a message shown in the log; the detail page shows the whole payload.
pub const PREVIEW_CHARS: usize = 120;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Glimpse {
    pub customer_name: Option<String>,
    pub customer_phone: Option<String>,
    /// The message's first line, shortened to [`PREVIEW_CHARS`].
    pub preview: Option<String>,
    /// `incoming` (the customer wrote), `outgoing` (an agent's reply), `activity`, `template`.
    pub message_type: Option<String>,
    /// A private note: agents only, never sent to the customer.
    #[serde(default)]
    pub private: bool,
    /// The first attachment's kind (`image`, `file`, `audio`, …) when the message has one.
    pub attachment: Option<String>,
}

/// The message's whole text, for search (the preview is cut short).
pub struct Read {
    pub glimpse: Glimpse,
    pub content: Option<String>,
}

/// Reads what it can; a body that is not JSON, or lacks the fields, gives an empty glimpse.
pub fn read(body: &[u8]) -> Read {
    let Ok(payload) = serde_json::from_slice::<Value>(body) else {
        return Read {
            glimpse: Glimpse::default(),
            content: None,
        };
    };
    // The contact: a message's conversation, a conversation event's own meta, or a contact event itself.
    let contact = ["/conversation/meta/sender", "/meta/sender"]
        .iter()
        .find_map(|p| payload.pointer(p))
        .or_else(|| {
            payload
                .get("event")
                .and_then(Value::as_str)
                .filter(|e| e.starts_with("contact_"))
                .map(|_| &payload)
        });
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let content = text(payload.get("content"));
    let message_type = match payload.get("message_type") {
        Some(Value::String(s)) => Some(s.clone()),
        // Chatwoot's REST answers (and messages found by catching up) carry the enum's integer.
        Some(Value::Number(n)) => ["incoming", "outgoing", "activity", "template"]
            .get(usize::try_from(n.as_u64().unwrap_or(u64::MAX)).unwrap_or(usize::MAX))
            .map(|s| (*s).to_owned()),
        _ => None,
    };
    Read {
        glimpse: Glimpse {
            customer_name: text(contact.and_then(|c| c.get("name"))),
            customer_phone: text(contact.and_then(|c| c.get("phone_number"))),
            preview: content.as_deref().map(preview),
            message_type,
            private: payload.get("private").and_then(Value::as_bool) == Some(true),
            attachment: text(payload.pointer("/attachments/0/file_type")),
        },
        content,
    }
}

/// The first non-empty line, at most [`PREVIEW_CHARS`] characters, with an ellipsis where it was cut.
fn preview(content: &str) -> String {
    let line = content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let more = content.trim().len() > line.len();
    match line.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None if more => format!("{line} …"),
        None => line.to_owned(),
    }
}

/// What the log's search box asked for: a phone number (its digits, without a leading trunk `0`, so that
/// `0812-3456-7890` finds `+6281234567890`; the number as typed is also looked for in the message, an order
/// number say) or words (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    Phone { digits: String, typed: String },
    Text(String),
}

impl Search {
    /// `None` for a blank query.
    pub fn parse(query: &str) -> Option<Self> {
        let query = query.trim();
        if query.is_empty() {
            return None;
        }
        let digits: String = query.chars().filter(char::is_ascii_digit).collect();
        let phone_like = query
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        Some(if phone_like && digits.len() >= 5 {
            Self::Phone {
                digits: digits.strip_prefix('0').unwrap_or(&digits).to_owned(),
                typed: query.to_owned(),
            }
        } else {
            Self::Text(query.to_lowercase())
        })
    }

    /// A substring every match has in its raw body, in any ASCII case: lets the database skip most rows before
    /// [`Self::matches`] decides. For words, the longest run of ASCII letters, digits and spaces (JSON may escape
    /// the rest, and the database folds the case of ASCII letters only); `None` when that run is too short to
    /// narrow anything. (A number typed with separators, looked for in the message, may be missed; its digits
    /// are not.)
    pub fn prefilter(&self) -> Option<String> {
        match self {
            Self::Phone { digits, .. } => Some(digits.clone()),
            Self::Text(text) => text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == ' '))
                .map(str::trim)
                .max_by_key(|run| run.len())
                .filter(|run| run.len() >= 3)
                .map(str::to_owned),
        }
    }

    pub fn matches(&self, read: &Read) -> bool {
        let g = &read.glimpse;
        match self {
            Self::Phone { digits, typed } => {
                g.customer_phone.as_deref().is_some_and(|phone| {
                    let phone: String = phone.chars().filter(char::is_ascii_digit).collect();
                    phone.contains(digits.as_str())
                }) || read
                    .content
                    .as_deref()
                    .is_some_and(|c| c.contains(typed.as_str()))
            }
            Self::Text(text) => [&g.customer_name, &g.customer_phone, &read.content]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(text.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::payload::fixture;

    #[test]
    fn a_reply_names_its_customer_and_its_first_line() {
        let read = read(&fixture("message_created.outgoing_text.json"));
        let g = read.glimpse;
        assert_eq!(g.customer_name.as_deref(), Some("Maria Souza"));
        assert_eq!(g.customer_phone.as_deref(), Some("+5511987654321"));
        assert_eq!(
            g.preview.as_deref(),
            Some("Oi Maria! Entregamos sim, o prazo para Campinas é de 2 dias úteis. …")
        );
        assert_eq!(g.message_type.as_deref(), Some("outgoing"));
        assert!(!g.private);
    }

    #[test]
    fn other_events_give_what_they_have() {
        let typing = read(&fixture("conversation_typing_on.agent.json")).glimpse;
        assert_eq!(typing.customer_name.as_deref(), Some("Maria Souza"));
        assert_eq!(typing.preview, None);
        let note = read(&fixture("message_created.private_note.json")).glimpse;
        assert!(note.private);
        let image = read(&fixture("message_created.outgoing_image.json")).glimpse;
        assert_eq!(image.attachment.as_deref(), Some("image"));
        let contact = read(&fixture("contact_created.json")).glimpse;
        assert!(contact.customer_name.is_some());
        assert_eq!(read(b"not json").glimpse, Glimpse::default());
    }

    #[test]
    fn long_lines_are_cut_on_a_character() {
        let long = "é".repeat(PREVIEW_CHARS + 5);
        let cut = preview(&long);
        assert_eq!(cut.chars().count(), PREVIEW_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(preview("\n\n  halo  \n"), "halo");
    }

    #[test]
    fn search_knows_phone_numbers_from_words() {
        let phone = |digits: &str, typed: &str| {
            Some(Search::Phone {
                digits: digits.into(),
                typed: typed.into(),
            })
        };
        assert_eq!(
            Search::parse(" 0812-3456 7890 "),
            phone("81234567890", "0812-3456 7890")
        );
        assert_eq!(Search::parse("+62 812"), phone("62812", "+62 812"));
        assert_eq!(Search::parse("Maria"), Some(Search::Text("maria".into())));
        assert_eq!(Search::parse("123"), Some(Search::Text("123".into())));
        assert_eq!(Search::parse("  "), None);
        let prefilter = |q: &str| Search::parse(q).unwrap().prefilter();
        assert_eq!(prefilter("Q&A pesanan").as_deref(), Some("a pesanan"));
        assert_eq!(prefilter("ágata").as_deref(), Some("gata"));
        assert_eq!(prefilter("é&ñ"), None);
        assert_eq!(prefilter("0812-3456").as_deref(), Some("8123456"));

        let order = read(br#"{"content": "Pesanan 0551234 sudah dikirim"}"#);
        assert!(
            Search::parse("0551234").unwrap().matches(&order),
            "a number in the message"
        );
        let read = read(&fixture("message_created.outgoing_text.json"));
        for (query, found) in [
            ("11 98765-4321", true),
            ("011987654321", true),
            ("6281234", false),
            ("maria souza", true),
            ("CAMPINAS", true),
            ("Ana Lima", false),
        ] {
            assert_eq!(
                Search::parse(query).unwrap().matches(&read),
                found,
                "{query}"
            );
        }
    }
}
