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
    let id = crate::ids::parse_json;
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
    if error == Some(crate::delivery::retry::TOO_OLD) {
        return if indonesian {
            "menunggu lebih lama dari batas umur balasan (CHATGOWA_MAX_AGE), jadi tidak dikirim lagi".into()
        } else {
            "it waited longer than the maximum age (CHATGOWA_MAX_AGE), so it is no longer sent"
                .into()
        };
    }
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

/// What holds up a reply that was not tried yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holdup {
    /// An admin paused all deliveries.
    Paused,
    /// Its route is switched off.
    RouteOff,
    /// Messages ahead of it in its conversation are still being sent.
    Queued,
}

/// The words for a [`Holdup`].
pub fn holdup(indonesian: bool, holdup: Holdup) -> String {
    match (holdup, indonesian) {
        (Holdup::Paused, false) => "all deliveries are paused in Chatgowa".into(),
        (Holdup::Paused, true) => "semua pengiriman sedang dijeda di Chatgowa".into(),
        (Holdup::RouteOff, false) => "this inbox's route is switched off in Chatgowa".into(),
        (Holdup::RouteOff, true) => "rute kotak masuk ini dimatikan di Chatgowa".into(),
        (Holdup::Queued, false) => "messages ahead of them are still being sent".into(),
        (Holdup::Queued, true) => "pesan sebelumnya masih dalam pengiriman".into(),
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

/// The note under a reply that catching up found only after `CHATGOWA_DELAYED_AFTER` (its webhook never came),
/// and that went out in its turn: the customer got it late.
pub fn found_late_note(indonesian: bool) -> String {
    if indonesian {
        "Chatgowa: balasan ini sampai ke WhatsApp terlambat: webhook Chatwoot untuknya tidak pernah datang, dan \
         Chatgowa baru menemukannya saat menyusul. Pelanggan baru menerimanya sekarang."
            .into()
    } else {
        "Chatgowa: this reply reached WhatsApp late: Chatwoot's webhook for it never came, and Chatgowa found it \
         only when catching up. The customer got it just now."
            .into()
    }
}

/// The note under a reply that reached WhatsApp after later replies of its conversation: found by catching up
/// (`recovered`), or posted late by Chatwoot.
pub fn late_note(indonesian: bool, recovered: bool) -> String {
    match (indonesian, recovered) {
        (true, true) => "Chatgowa: balasan ini sampai ke WhatsApp terlambat, setelah balasan-balasan berikutnya di \
                         percakapan ini: webhook Chatwoot untuknya tidak pernah datang, dan Chatgowa menemukannya \
                         saat menyusul. Pelanggan melihatnya di bawah balasan-balasan itu."
            .into(),
        (true, false) => "Chatgowa: balasan ini sampai ke WhatsApp terlambat, setelah balasan-balasan berikutnya \
                          di percakapan ini: Chatwoot mengirim webhook-nya sesudah webhook balasan-balasan itu. \
                          Pelanggan melihatnya di bawah balasan-balasan itu."
            .into(),
        (false, true) => "Chatgowa: this reply reached WhatsApp late, after later replies of this conversation: \
                          Chatwoot's webhook for it never came, and Chatgowa found it when catching up. The \
                          customer sees it below those replies."
            .into(),
        (false, false) => "Chatgowa: this reply reached WhatsApp late, after later replies of this conversation: \
                           Chatwoot posted its webhook after theirs. The customer sees it below those replies."
            .into(),
    }
}

/// The note under a reply that went out and was deleted in Chatwoot, when GoWA never got the deletion (so it could
/// not take the message back on WhatsApp).
pub fn not_taken_back_note(indonesian: bool, reason: &str) -> String {
    if indonesian {
        format!(
            "Chatgowa: balasan ini dihapus di Chatwoot, tetapi TIDAK ditarik kembali di WhatsApp ({reason}); \
             pelanggan mungkin masih melihatnya."
        )
    } else {
        format!(
            "Chatgowa: this reply was deleted in Chatwoot, but it was NOT taken back on WhatsApp ({reason}); the \
             customer may still see it."
        )
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
        // An account id the relay's routing would not read is not read here either.
        let signed =
            br#"{"id":9,"message_type":"outgoing","account":{"id":"+1"},"conversation":{"id":5}}"#;
        assert_eq!(read(signed), None);
    }
}
