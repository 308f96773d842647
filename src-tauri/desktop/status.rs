//! What the desktop app shows at a glance — the tray's state, tooltip and menu words — and which changes
//! deserve a notification. Plain functions of the relay's state, in English or Bahasa Indonesia, tested
//! without a tray.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::admin::dto::{HealthState, Route};
use crate::ids::RouteId;

/// At most one notification per subject (a route, dead deliveries) in this time.
pub const NOTIFY_EVERY: Duration = Duration::from_secs(300);

/// What the tray icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    Relaying,
    Failing,
    Stopped,
}

/// The app's words in one language (the window's, chosen there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    pub open: &'static str,
    pub open_browser: &'static str,
    pub copy_url: &'static str,
    pub pause: &'static str,
    pub resume: &'static str,
    pub autostart: &'static str,
    pub quit: &'static str,
    relaying: &'static str,
    paused: &'static str,
    failing: &'static str,
    today: &'static str,
    route_failing: &'static str,
    route_recovered: &'static str,
    dead_title: &'static str,
    dead_body: &'static str,
    chatwoot_problem: &'static str,
    unsigned: &'static str,
}

impl Words {
    /// `id` (Bahasa Indonesia), or English for anything else.
    pub fn of(language: &str) -> Self {
        if language == "id" {
            Self {
                open: "Buka Chatgowa",
                open_browser: "Buka admin di browser",
                copy_url: "Salin URL webhook",
                pause: "Jeda pengiriman",
                resume: "Lanjutkan pengiriman",
                autostart: "Jalankan saat login",
                quit: "Keluar",
                relaying: "meneruskan pesan",
                paused: "pengiriman dijeda",
                failing: "{n} rute gagal",
                today: "Hari ini: {delivered} terkirim, {pending} menunggu",
                route_failing: "{name} gagal",
                route_recovered: "{name} pulih kembali",
                dead_title: "Pengiriman menyerah",
                dead_body: "{n} pengiriman mati; buka Chatgowa untuk mengirim ulang.",
                chatwoot_problem: "Tidak bisa sinkron dengan Chatwoot: {problem}",
                unsigned: "Webhook tidak ditandatangani: siapa pun yang bisa menjangkau port ini bisa mengirim \
                           pesan WhatsApp atas nama Anda. Hubungkan Chatwoot di Chatgowa.",
            }
        } else {
            Self {
                open: "Open Chatgowa",
                open_browser: "Open admin in browser",
                copy_url: "Copy webhook URL",
                pause: "Pause deliveries",
                resume: "Resume deliveries",
                autostart: "Start at login",
                quit: "Quit",
                relaying: "relaying",
                paused: "deliveries paused",
                failing: "{n} route(s) failing",
                today: "Today: {delivered} delivered, {pending} pending",
                route_failing: "{name} is failing",
                route_recovered: "{name} recovered",
                dead_title: "Deliveries gave up",
                dead_body: "{n} deliveries are dead; open Chatgowa to retry them.",
                chatwoot_problem: "Cannot catch up with Chatwoot: {problem}",
                unsigned: "Webhooks are not signed: anyone who can reach this port can send WhatsApp messages \
                           in your name. Connect Chatwoot in Chatgowa.",
            }
        }
    }
}

/// What the tray needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Why the relay is not listening (e.g. a busy port).
    pub listen_problem: Option<&'a str>,
    pub paused: bool,
    pub routes: &'a [Route],
    pub delivered_today: i64,
    pub pending: i64,
    /// Why catching up with a linked Chatwoot failed last (relaying goes on).
    pub chatwoot_problem: Option<&'a str>,
    /// Webhooks are taken unsigned: no Chatwoot secret is known.
    pub unsigned: bool,
}

/// The icon's state and the tooltip.
pub fn glance(facts: &Facts<'_>, words: &Words) -> (TrayState, String) {
    let failing = facts
        .routes
        .iter()
        .filter(|r| {
            r.health
                .as_ref()
                .is_some_and(|h| h.state != HealthState::Ok)
        })
        .count();
    let (state, headline) = if let Some(problem) = facts.listen_problem {
        (TrayState::Stopped, problem.to_owned())
    } else if facts.paused {
        (TrayState::Stopped, words.paused.to_owned())
    } else if failing > 0 {
        (
            TrayState::Failing,
            words.failing.replace("{n}", &failing.to_string()),
        )
    } else {
        (TrayState::Relaying, words.relaying.to_owned())
    };
    let today = words
        .today
        .replace("{delivered}", &facts.delivered_today.to_string())
        .replace("{pending}", &facts.pending.to_string());
    let chatwoot = facts
        .chatwoot_problem
        .map(|p| format!("\n{}", words.chatwoot_problem.replace("{problem}", p)))
        .unwrap_or_default();
    let unsigned = if facts.unsigned {
        format!("\n{}", words.unsigned)
    } else {
        String::new()
    };
    (
        state,
        format!("Chatgowa — {headline}\n{today}{chatwoot}{unsigned}"),
    )
}

/// A notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What it is about; notifications are rate-limited per key.
    pub key: String,
    pub title: String,
    pub body: String,
}

/// Remembers route health and the dead count between looks, and when each subject last notified.
#[derive(Debug, Default)]
pub struct Watch {
    health: HashMap<RouteId, HealthState>,
    dead: Option<i64>,
    notified: HashMap<String, Instant>,
}

impl Watch {
    /// Notes for what changed since the last look: a route starting to fail, a route recovering, more
    /// deliveries dead. The first look only takes note of how things are.
    pub fn changes(&mut self, routes: &[Route], dead: i64, words: &Words) -> Vec<Note> {
        let mut notes = Vec::new();
        for route in routes {
            let Some(health) = &route.health else {
                continue;
            };
            let name = route
                .name
                .clone()
                .unwrap_or_else(|| format!("inbox {}", route.inbox_id));
            let key = format!("route-{}", route.id);
            match (self.health.insert(route.id, health.state), health.state) {
                (Some(HealthState::Ok) | None, HealthState::Failing | HealthState::Dead) => {
                    notes.push(Note {
                        key,
                        title: words.route_failing.replace("{name}", &name),
                        body: health.error.clone().unwrap_or_default(),
                    });
                }
                (Some(HealthState::Failing | HealthState::Dead), HealthState::Ok) => {
                    notes.push(Note {
                        key,
                        title: words.route_recovered.replace("{name}", &name),
                        body: String::new(),
                    });
                }
                _ => {}
            }
        }
        if self.dead.is_some_and(|before| dead > before) {
            notes.push(Note {
                key: "dead".to_owned(),
                title: words.dead_title.to_owned(),
                body: words.dead_body.replace("{n}", &dead.to_string()),
            });
        }
        self.dead = Some(dead);
        notes
    }

    /// Whether `key` may notify at `now`, and if so remembers that it did.
    pub fn may_notify(&mut self, key: &str, now: Instant) -> bool {
        if self
            .notified
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < NOTIFY_EVERY)
        {
            return false;
        }
        self.notified.insert(key.to_owned(), now);
        true
    }
}

/// Milliseconds since the epoch at the start of today, local time (the tooltip counts from there).
pub fn start_of_today_ms() -> i64 {
    chrono::Local::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(chrono::Local).earliest())
        .map_or(0, |midnight| midnight.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::dto::RouteHealth;
    use crate::ids::InboxId;

    fn route(id: i64, state: Option<HealthState>) -> Route {
        Route {
            id: RouteId(id),
            inbox_id: InboxId(id * 10),
            inbox_name: None,
            webhook_url: "http://gowa:3000/chatwoot/webhook".into(),
            name: (id != 2).then(|| format!("Sales {id}")),
            enabled: true,
            has_secret: false,
            has_chatwoot_secret: false,
            created_at: String::new(),
            updated_at: String::new(),
            pending: 0,
            dead: 0,
            health: state.map(|state| RouteHealth {
                state,
                at: String::new(),
                status_code: Some(502),
                error: (state != HealthState::Ok).then(|| "HTTP 502".to_owned()),
                problem: (state != HealthState::Ok).then(|| "server".to_owned()),
            }),
            last_delivered_at: None,
        }
    }

    fn facts<'a>(routes: &'a [Route], problem: Option<&'a str>, paused: bool) -> Facts<'a> {
        Facts {
            listen_problem: problem,
            paused,
            routes,
            delivered_today: 12,
            pending: 3,
            chatwoot_problem: None,
            unsigned: false,
        }
    }

    #[test]
    fn unsigned_webhooks_are_in_the_tooltip() {
        let routes = [route(1, Some(HealthState::Ok))];
        for (language, words) in [("en", "anyone who can reach"), ("id", "siapa pun")] {
            let open = Facts {
                unsigned: true,
                ..facts(&routes, None, false)
            };
            let (_, tooltip) = glance(&open, &Words::of(language));
            assert!(tooltip.contains(words), "{tooltip}");
            let (_, tooltip) = glance(&facts(&routes, None, false), &Words::of(language));
            assert!(!tooltip.contains(words), "{tooltip}");
        }
    }

    #[test]
    fn a_chatwoot_that_cannot_be_caught_up_with_is_in_the_tooltip() {
        let en = Words::of("en");
        let routes = [route(1, Some(HealthState::Ok))];
        let facts = Facts {
            chatwoot_problem: Some("Chatwoot answered 500; try again later"),
            ..facts(&routes, None, false)
        };
        let (state, tooltip) = glance(&facts, &en);
        assert_eq!(state, TrayState::Relaying, "relaying goes on");
        assert!(
            tooltip.ends_with(
                "\nCannot catch up with Chatwoot: Chatwoot answered 500; try again later"
            ),
            "{tooltip}"
        );
    }

    #[test]
    fn the_tray_shows_the_worst_state_first() {
        let en = Words::of("en");
        let ok = [route(1, Some(HealthState::Ok)), route(2, None)];
        let failing = [
            route(1, Some(HealthState::Failing)),
            route(2, Some(HealthState::Dead)),
        ];
        assert_eq!(
            glance(&facts(&ok, None, false), &en),
            (
                TrayState::Relaying,
                "Chatgowa — relaying\nToday: 12 delivered, 3 pending".to_owned()
            )
        );
        let (state, tooltip) = glance(&facts(&failing, None, false), &en);
        assert_eq!(state, TrayState::Failing);
        assert!(tooltip.contains("2 route(s) failing"), "{tooltip}");
        let (state, tooltip) = glance(&facts(&failing, None, true), &en);
        assert_eq!(state, TrayState::Stopped);
        assert!(tooltip.contains("deliveries paused"), "{tooltip}");
        let busy = "cannot listen on 0.0.0.0:3000: address in use";
        let (state, tooltip) = glance(&facts(&ok, Some(busy), true), &en);
        assert_eq!(state, TrayState::Stopped);
        assert!(tooltip.contains(busy), "{tooltip}");
    }

    #[test]
    fn the_tray_speaks_both_languages() {
        let id = Words::of("id");
        assert_eq!(Words::of("en").quit, "Quit");
        assert_eq!(id.quit, "Keluar");
        assert_eq!(Words::of("fr"), Words::of("en"));
        assert_ne!(id.pause, id.resume);
        let (_, tooltip) = glance(&facts(&[], None, false), &id);
        assert!(
            tooltip.contains("Hari ini: 12 terkirim, 3 menunggu"),
            "{tooltip}"
        );
    }

    #[test]
    fn notes_are_for_changes_only() {
        let en = Words::of("en");
        let mut watch = Watch::default();
        let first = watch.changes(&[route(1, Some(HealthState::Ok))], 0, &en);
        assert!(first.is_empty(), "the first look only takes note");

        let notes = watch.changes(&[route(1, Some(HealthState::Failing))], 0, &en);
        assert_eq!(
            notes,
            [Note {
                key: "route-1".into(),
                title: "Sales 1 is failing".into(),
                body: "HTTP 502".into()
            }]
        );
        assert!(
            watch
                .changes(&[route(1, Some(HealthState::Dead))], 0, &en)
                .is_empty(),
            "still failing is not news"
        );
        let notes = watch.changes(&[route(1, Some(HealthState::Ok))], 2, &en);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[0].title, "Sales 1 recovered");
        assert_eq!(notes[1].key, "dead");
        assert!(notes[1].body.starts_with("2 deliveries are dead"));
        assert!(watch.changes(&[], 2, &en).is_empty(), "same dead count");

        let unnamed = watch.changes(&[route(2, Some(HealthState::Failing))], 2, &en);
        assert_eq!(unnamed[0].title, "inbox 20 is failing");
    }

    #[test]
    fn notifications_are_rate_limited_per_subject() {
        let mut watch = Watch::default();
        let start = Instant::now();
        assert!(watch.may_notify("route-1", start));
        assert!(!watch.may_notify("route-1", start + Duration::from_secs(10)));
        assert!(watch.may_notify("route-2", start + Duration::from_secs(10)));
        assert!(watch.may_notify("route-1", start + NOTIFY_EVERY));
    }
}
