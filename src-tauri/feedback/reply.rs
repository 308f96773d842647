//! What a stored webhook says about a reply, and the words agents read about it (English or Bahasa Indonesia,
//! the panel's language).

use serde_json::Value;

/// The fields of a `message_created` / `message_updated` body the feedback needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub account: i64,
    pub conversation: i64,
    pub message: i64,
    /// An API-channel inbox: Chatwoot lets its messages be marked failed.
    pub api_channel: bool,
    /// An agent's reply to the customer: outgoing, not private, not a WhatsApp message GoWA mirrored.
    pub to_customer: bool,
    /// `sent`, `failed`, … (of a `message_updated`).
    pub status: Option<String>,
    pub deleted: bool,
}

/// Reads a stored body; `None` when it has no account, conversation or message id.
pub fn read(body: &[u8]) -> Option<Reply> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let id = |v: &Value| v.as_i64().or_else(|| v.as_str()?.parse().ok());
    let account = id(&v["account"]["id"]).or_else(|| id(&v["conversation"]["account"]["id"]))?;
    let conversation = id(&v["conversation"]["id"])?;
    let message = id(&v["id"])?;
    let outgoing =
        v["message_type"].as_str() == Some("outgoing") || v["message_type"].as_i64() == Some(1);
    let private = v["private"].as_bool().unwrap_or(false);
    let mirrored = v["source_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("WAID:"));
    let deleted = v["content_attributes"]["deleted"]
        .as_bool()
        .unwrap_or(false)
        || v["content_attributes"]["deleted"].as_str() == Some("true");
    Some(Reply {
        account,
        conversation,
        message,
        api_channel: v["conversation"]["channel"].as_str() == Some("Channel::Api"),
        to_customer: outgoing && !private && !mirrored,
        status: v["status"].as_str().map(str::to_owned),
        deleted,
    })
}

/// Why a reply was not delivered, in a few words, from the delivery's last attempt.
pub fn reason(indonesian: bool, status: Option<i64>, error: Option<&str>) -> String {
    let error: String = error.unwrap_or_default().chars().take(160).collect();
    match (status, indonesian) {
        (Some(code), false) => format!("GoWA answered {code}"),
        (Some(code), true) => format!("GoWA menjawab {code}"),
        (None, false) if error.is_empty() => "GoWA did not answer".into(),
        (None, true) if error.is_empty() => "GoWA tidak menjawab".into(),
        (None, false) => format!("GoWA could not be reached ({error})"),
        (None, true) => format!("GoWA tidak bisa dihubungi ({error})"),
    }
}

/// The reason shown on a reply marked failed (Chatwoot's `external_error`).
pub fn failed_mark(indonesian: bool, reason: &str) -> String {
    if indonesian {
        format!("Tidak terkirim ke WhatsApp: {reason}")
    } else {
        format!("Not sent to WhatsApp: {reason}")
    }
}

/// The private note under a reply that was given up on.
pub fn dead_note(indonesian: bool, reason: &str, api_channel: bool) -> String {
    match (indonesian, api_channel) {
        (false, true) => format!(
            "Chatgowa: this reply was NOT delivered to WhatsApp ({reason}); the customer has not received it. \
             Once WhatsApp works again, press Retry on the message, or send it again."
        ),
        (false, false) => format!(
            "Chatgowa: this reply was NOT delivered to WhatsApp ({reason}); the customer has not received it. \
             Once WhatsApp works again, send it again, or retry it in Chatgowa's message log."
        ),
        (true, true) => format!(
            "Chatgowa: balasan ini TIDAK terkirim ke WhatsApp ({reason}); pelanggan belum menerimanya. Setelah \
             WhatsApp berfungsi lagi, tekan Coba lagi (Retry) pada pesan ini, atau kirim ulang."
        ),
        (true, false) => format!(
            "Chatgowa: balasan ini TIDAK terkirim ke WhatsApp ({reason}); pelanggan belum menerimanya. Setelah \
             WhatsApp berfungsi lagi, kirim ulang, atau coba lagi dari log pesan Chatgowa."
        ),
    }
}

/// The one note of a conversation whose replies are delayed.
pub fn delayed_note(indonesian: bool, reason: &str) -> String {
    if indonesian {
        format!(
            "Chatgowa: balasan di percakapan ini tertunda ({reason}). Chatgowa terus mencoba mengirimnya dan akan \
             memberi tahu di sini setelah terkirim; tidak perlu mengirim ulang."
        )
    } else {
        format!(
            "Chatgowa: replies in this conversation are delayed ({reason}). Chatgowa keeps trying and will say \
             here when they are delivered; there is no need to send them again."
        )
    }
}

/// The note under a reply found late and held for a decision.
pub fn held_note(indonesian: bool) -> String {
    if indonesian {
        "Chatgowa: balasan ini ditulis saat Chatgowa tidak bisa dijangkau dan BELUM terkirim ke WhatsApp. Karena \
         sudah lama, balasan ini menunggu keputusan admin di panel Chatgowa (halaman Chatwoot): kirim sekarang atau \
         buang."
            .into()
    } else {
        "Chatgowa: this reply was written while Chatgowa could not be reached and has NOT been sent to WhatsApp. \
         As it is old by now, it waits for an admin's decision in Chatgowa's panel (Chatwoot page): send now, or \
         discard."
            .into()
    }
}

/// The note that ends a delay.
pub fn delivered_note(indonesian: bool) -> String {
    if indonesian {
        "Chatgowa: balasan yang tertunda di percakapan ini sekarang sudah terkirim ke WhatsApp."
            .into()
    } else {
        "Chatgowa: the delayed replies in this conversation have now been delivered to WhatsApp."
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_to_customers_are_told_apart() {
        let reply =
            br#"{"event":"message_created","id":9,"message_type":"outgoing","private":false,
            "account":{"id":1},"conversation":{"id":5,"channel":"Channel::Api"}}"#;
        let r = read(reply).unwrap();
        assert_eq!((r.account, r.conversation, r.message), (1, 5, 9));
        assert!(r.to_customer && r.api_channel);
        let note = br#"{"id":9,"message_type":"outgoing","private":true,"account":{"id":1},"conversation":{"id":5}}"#;
        assert!(!read(note).unwrap().to_customer);
        let echo = br#"{"id":9,"message_type":"outgoing","source_id":"WAID:ABC","account":{"id":1},
            "conversation":{"id":5,"channel":"Channel::Whatsapp"}}"#;
        let echo = read(echo).unwrap();
        assert!(!echo.to_customer && !echo.api_channel);
        let incoming =
            br#"{"id":9,"message_type":"incoming","account":{"id":1},"conversation":{"id":5}}"#;
        assert!(!read(incoming).unwrap().to_customer);
        assert_eq!(read(br#"{"id":9}"#), None);
    }
}
