//! GoWA as the facts page describes it (`tests/fixtures/gowa/README.md`), one device per path
//! (`/chatwoot/webhook/{device}`), each in a [`Device`] state the campaign sets. It decodes what GoWA decodes (an
//! integer where GoWA wants one, or 400), sends what GoWA would send (an agent's public `message_created`) and records
//! it: what reached WhatsApp is what the oracle reads.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::net::TcpListener;

use super::oracle::Conversation;
use super::schedule::Device;
use crate::chatwoot_api::{ChatwootApi, Message};

/// A reply held before GoWA answers it: the relay's port, and what lets GoWA answer.
pub struct Caught {
    pub port: u16,
    pub answer: tokio::sync::oneshot::Sender<()>,
}

/// A reply GoWA sent to WhatsApp.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: i64,
    pub conversation: Conversation,
    pub at: Instant,
    /// Whether the relay could not know it was sent: answered after its timeout, or with 408.
    pub unclear: bool,
    /// Answered 408 (by a proxy, after GoWA sent it).
    pub answered_408: bool,
}

#[derive(Default)]
struct Record {
    devices: Vec<Device>,
    /// The whole server unreachable, whatever each device's state.
    server_down: bool,
    /// Who wants to hear of the next reply GoWA sends, before GoWA answers it (see [`GowaModel::catch_next`]).
    catch: Option<tokio::sync::oneshot::Sender<Caught>>,
    sent: Vec<Sent>,
    /// Replies GoWA took back on WhatsApp (a deleted `message_updated`), and when.
    revoked: Vec<(i64, Instant)>,
    /// Requests GoWA refused as malformed (400): a relay that changed a body.
    malformed: usize,
    /// Messages of another inbox than the device's.
    misrouted: usize,
    /// The message id of every request that came, decoded or not.
    reached: Vec<i64>,
    /// The first few bodies refused as malformed or misrouted, to show.
    refused_bodies: Vec<String>,
}

impl Record {
    fn refuse(&mut self, body: &[u8]) {
        if self.refused_bodies.len() < 3 {
            let text = String::from_utf8_lossy(body);
            self.refused_bodies.push(text.chars().take(400).collect());
        }
    }
}

#[derive(Clone)]
pub struct GowaModel {
    pub base: String,
    record: Arc<Mutex<Record>>,
    chatwoot: ChatwootApi,
    /// The inbox each device serves: (account, inbox).
    inboxes: Arc<Vec<(i64, i64)>>,
    /// Longer than the relay's attempt timeout.
    slow: Duration,
}

impl GowaModel {
    /// A device per (account, inbox) in `inboxes`, all up; a failed send is noted in `chatwoot` as GoWA notes it.
    pub async fn start(inboxes: &[(i64, i64)], chatwoot: ChatwootApi, slow: Duration) -> Self {
        let devices = inboxes.len();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let model = Self {
            base: format!("http://{}", listener.local_addr().unwrap()),
            record: Arc::new(Mutex::new(Record {
                devices: vec![Device::Up; devices],
                ..Record::default()
            })),
            chatwoot,
            inboxes: Arc::new(inboxes.to_vec()),
            slow,
        };
        let app = Router::new()
            .route("/chatwoot/webhook/{device}", axum::routing::post(receive))
            .with_state(model.clone());
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        model
    }

    /// The port GoWA listens on (loopback).
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    pub fn url(&self, device: usize) -> String {
        format!("{}/chatwoot/webhook/{device}", self.base)
    }

    pub fn set(&self, device: usize, state: Device) {
        self.record.lock().unwrap().devices[device] = state;
    }

    /// The next reply GoWA sends is held before its answer: the port the relay sent it from comes back with a
    /// sender to let GoWA answer (200), so that the relay can be stopped first (it reads the answer when it is
    /// continued).
    pub fn catch_next(&self) -> tokio::sync::oneshot::Receiver<Caught> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.record.lock().unwrap().catch = Some(tx);
        rx
    }

    /// GoWA's server down (every device unreachable) or up again.
    pub fn server_down(&self, down: bool) {
        self.record.lock().unwrap().server_down = down;
    }

    pub fn heal(&self) {
        let mut record = self.record.lock().unwrap();
        record.devices.iter_mut().for_each(|d| *d = Device::Up);
        record.server_down = false;
        // Nothing is held once the campaign settles: its relays must all answer.
        record.catch = None;
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.record.lock().unwrap().sent.clone()
    }

    pub fn revoked(&self) -> Vec<(i64, Instant)> {
        self.record.lock().unwrap().revoked.clone()
    }

    /// The message ids of every request that came, whether GoWA could decode it or not.
    pub fn reached(&self) -> Vec<i64> {
        self.record.lock().unwrap().reached.clone()
    }

    /// Requests GoWA could not decode, and messages sent to another inbox's device, with the first few bodies.
    pub fn refused(&self) -> (usize, usize, Vec<String>) {
        let record = self.record.lock().unwrap();
        (
            record.malformed,
            record.misrouted,
            record.refused_bodies.clone(),
        )
    }
}

/// What GoWA decodes of a forwarded webhook; `None` where its decoder fails (GoWA answers 400).
struct Payload {
    /// `message_created` or `message_updated`: what a per-device path checks against its device's config.
    message_event: bool,
    account: i64,
    inbox: i64,
    message: i64,
    conversation: i64,
    reply: bool,
    /// A `message_updated` of a deleted message: GoWA revokes the WhatsApp message it sent for it
    /// (`CHATWOOT_MESSAGE_DELETE=true`).
    deletion: bool,
}

impl Payload {
    fn conversation(&self) -> Conversation {
        Conversation {
            account: self.account,
            id: self.conversation,
        }
    }
}

fn decode(body: &[u8]) -> Option<Payload> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let int = |v: &Value| match v {
        Value::Null => Some(0),
        v => v.as_i64(),
    };
    fn text(v: &Value) -> Option<&str> {
        match v {
            Value::Null => Some(""),
            v => v.as_str(),
        }
    }
    let event = text(&v["event"])?;
    let message = int(&v["id"])?;
    let account = int(&v["account"]["id"])?;
    let conversation = int(&v["conversation"]["id"])?;
    let inbox = int(&v["conversation"]["inbox_id"])?;
    let private = match &v["private"] {
        Value::Null => false,
        p => p.as_bool()?,
    };
    let outgoing = text(&v["message_type"])? == "outgoing";
    let echo = text(&v["source_id"])?.starts_with("WAID:");
    let deleted = &v["content_attributes"]["deleted"];
    let deleted = deleted.as_bool() == Some(true) || deleted.as_str() == Some("true");
    Some(Payload {
        deletion: event == "message_updated" && deleted,
        reply: event == "message_created" && outgoing && !private && !echo,
        message_event: event == "message_created" || event == "message_updated",
        account,
        inbox,
        message,
        conversation,
    })
}

async fn receive(
    State(model): State<GowaModel>,
    Path(device): Path<usize>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if let Some(id) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_i64())
    {
        model.record.lock().unwrap().reached.push(id);
    }
    let Some(payload) = decode(&body).filter(|_| json) else {
        let mut record = model.record.lock().unwrap();
        record.malformed += 1;
        record.refuse(&body);
        let invalid = r#"{"code":"INVALID_REQUEST","message":"Invalid payload"}"#;
        return (StatusCode::BAD_REQUEST, invalid).into_response();
    };
    let state = model.record.lock().unwrap().devices.get(device).copied();
    let (Some(state), Some(&(account, inbox))) = (state, model.inboxes.get(device)) else {
        // An unknown device: 200, nothing done.
        return (StatusCode::OK, "OK").into_response();
    };
    if state == Device::Down || model.record.lock().unwrap().server_down {
        return (StatusCode::BAD_GATEWAY, "Bad Gateway").into_response();
    }
    if !payload.message_event {
        return (StatusCode::OK, "OK").into_response();
    }
    if payload.account != account || payload.inbox != inbox {
        // Another inbox's message on this device's path: GoWA refuses it (and a relay that routes it here is
        // wrong).
        let mut record = model.record.lock().unwrap();
        record.misrouted += 1;
        record.refuse(&body);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if state == Device::Refusing {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if payload.deletion {
        let mut record = model.record.lock().unwrap();
        record.revoked.push((payload.message, Instant::now()));
    }
    if !payload.reply {
        return (StatusCode::OK, "OK").into_response();
    }
    if state == Device::SendFails {
        gowa_note(&model.chatwoot, payload.conversation());
        return (StatusCode::OK, "OK").into_response();
    }
    let arrived = Instant::now();
    let catch = {
        let mut record = model.record.lock().unwrap();
        if state == Device::Up {
            record.catch.take()
        } else {
            None
        }
    };
    let (answer, when) = tokio::sync::oneshot::channel();
    let port = peer.port();
    let held = catch.is_some_and(|catch| catch.send(Caught { port, answer }).is_ok());
    // A reply held for a stop is answered once the stop came, maybe after the relay's timeout: as unclear to it
    // as a slow answer.
    let unclear = matches!(state, Device::Slow | Device::LateTimeout) || held;
    model.record.lock().unwrap().sent.push(Sent {
        message: payload.message,
        conversation: payload.conversation(),
        at: arrived,
        unclear,
        answered_408: state == Device::LateTimeout,
    });
    if held {
        let _ = tokio::time::timeout(Duration::from_secs(5), when).await;
    }
    match state {
        Device::Slow => {
            tokio::time::sleep(model.slow).await;
            (StatusCode::OK, "OK").into_response()
        }
        Device::LateTimeout => (StatusCode::REQUEST_TIMEOUT, "Request Timeout").into_response(),
        _ => (StatusCode::OK, "OK").into_response(),
    }
}

/// GoWA's own private note when WhatsApp refuses a send (it answers 200 all the same).
fn gowa_note(chatwoot: &ChatwootApi, conversation: Conversation) {
    chatwoot.with(|w| {
        let note = Message {
            private: true,
            account: conversation.account,
            ..Message::reply(
                conversation.id,
                "Message was not sent to WhatsApp.\n\nError: device is not logged in",
            )
        };
        w.add_message(note);
    });
}
