//! A campaign's schedule, derived from its seed alone: what agents and customers write, what they do to messages,
//! the faults, in order, and the pause before each. Timing varies from run to run; the schedule does not.

use std::time::Duration;

/// SplitMix64: small, and the same numbers from the same seed on every machine and every version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator of its own for `key` under `seed`: for decisions that must not depend on the order in which
    /// things happen to occur (which webhook the sender loses).
    pub fn keyed(seed: u64, key: &str) -> Self {
        let mut rng = Self(seed);
        for byte in key.bytes() {
            rng.0 ^= u64::from(byte);
            rng.next();
        }
        rng
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// What a GoWA device does for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// Sends, answers 200.
    Up,
    /// Unreachable: the proxy in front of it answers 502, nothing is sent.
    Down,
    /// Sends, but answers after the relay's attempt timeout.
    Slow,
    /// Sends, then a proxy in front answers 408.
    LateTimeout,
    /// The device's route is misconfigured: 401, nothing is sent (permanent for the relay).
    Refusing,
    /// Logged out of WhatsApp: 200, nothing sent, GoWA's own note in the conversation.
    SendFails,
}

/// How Chatwoot's REST API misbehaves for a while (its webhooks go on being posted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Every call refused: 401 (the token revoked), 429 (throttled), 502 or 503 (Rails restarting).
    Refusing(u16),
    /// Every call carried out, but answered this late (past the relay's 10 s timeout sometimes).
    Slow(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// An agent writes a public reply (with an image, sometimes).
    Reply { conversation: usize, image: bool },
    /// An agent writes a private note.
    Note { conversation: usize },
    /// The customer writes.
    Customer { conversation: usize },
    /// An agent deletes one of the replies written last (`back` replies back).
    Delete { back: usize },
    /// An agent edits one of the replies written last (`back` replies back): `message_updated`, nothing to send.
    Edit { back: usize },
    /// An agent presses Retry on the oldest reply Chatwoot shows failed, if any.
    Retry,
    /// A stranger posts a reply of their own to the relay.
    Forged { conversation: usize },
    /// GoWA's server is down for a while: every device behind it at once, as when its one process restarts.
    Server { lasts: Duration },
    /// A GoWA device behaves so for a while.
    Device {
        device: usize,
        state: Device,
        lasts: Duration,
    },
    /// Chatwoot's REST API misbehaves for a while.
    Api { fault: Api, lasts: Duration },
    /// Chatwoot cannot reach the relays for a while (its webhooks are lost).
    Blip { lasts: Duration },
    /// A relay is killed (SIGKILL) and started again.
    Kill { relay: usize },
    /// A relay is stopped (SIGSTOP) for a while, on PostgreSQL past its lanes' lease at times; the campaign goes
    /// on meanwhile (Chatwoot's webhooks to it time out).
    Freeze { relay: usize, lasts: Duration },
    /// The relay that sends the next reply GoWA sends is stopped (SIGSTOP) before GoWA answers it, past its lanes'
    /// lease (on PostgreSQL the other relay takes its lane), and continued after `lasts`.
    StopSender { lasts: Duration },
    /// The database server crashes and is started again after a while (PostgreSQL; nothing on SQLite).
    DatabaseRestart { down: Duration },
}

#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub pause: Duration,
    pub act: Act,
}

/// The shape of a campaign.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Agent replies to write.
    pub replies: usize,
    pub conversations: usize,
    pub devices: usize,
    /// Relays behind the load balancer (several only on PostgreSQL).
    pub relays: usize,
}

/// The schedule of `seed`: steps until `shape.replies` replies are written.
pub fn schedule(seed: u64, shape: Shape) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut steps = Vec::new();
    let mut replies = 0;
    while replies < shape.replies {
        let act = act(&mut rng, shape);
        if matches!(act, Act::Reply { .. }) {
            replies += 1;
        }
        steps.push(Step {
            pause: rng.millis(2, 40),
            act,
        });
    }
    with_stopped_sender(seed, with_server_outage(seed, steps))
}

/// The steps with a relay stopped as it sends, once, by a generator of its own (as for the server's outage).
fn with_stopped_sender(seed: u64, mut steps: Vec<Step>) -> Vec<Step> {
    let mut rng = Rng::keyed(seed, "stopped as it sent");
    let at = usize::try_from(rng.below(steps.len() as u64)).unwrap_or(0);
    let lasts = rng.millis(7_000, 9_000);
    let pause = rng.millis(2, 40);
    steps.insert(
        at,
        Step {
            pause,
            act: Act::StopSender { lasts },
        },
    );
    steps
}

/// The steps with GoWA's server down once, drawn by a generator of its own so that every seed kept the steps it
/// had before the server's outage was drawn (and the seeds that found a hole still find it). In half the seeds the
/// outage outlasts `CHATGOWA_DELAYED_AFTER` and the note's slack, so that every inbox's replies are delayed at once,
/// and the agents pause a while in it: the replies written after the pause fall due in a later round of the
/// relay's feedback than the ones before it.
fn with_server_outage(seed: u64, mut steps: Vec<Step>) -> Vec<Step> {
    let mut rng = Rng::keyed(seed, "GoWA server");
    let at = usize::try_from(rng.below(steps.len() as u64)).unwrap_or(0);
    let long = rng.chance(500);
    let lasts = if long {
        rng.millis(25_000, 40_000)
    } else {
        rng.millis(300, 4_000)
    };
    let pause = rng.millis(2, 40);
    if long {
        let lull = at + 1 + usize::try_from(rng.below(40)).unwrap_or(0);
        let longer = rng.millis(8_000, 14_000);
        if let Some(step) = steps.get_mut(lull) {
            step.pause += longer;
        }
    }
    steps.insert(
        at,
        Step {
            pause,
            act: Act::Server { lasts },
        },
    );
    steps
}

fn act(rng: &mut Rng, shape: Shape) -> Act {
    let conversation = usize::try_from(rng.below(shape.conversations as u64)).unwrap_or(0);
    let device = usize::try_from(rng.below(shape.devices as u64)).unwrap_or(0);
    let relay = usize::try_from(rng.below(shape.relays as u64)).unwrap_or(0);
    match rng.below(1000) {
        0..650 => Act::Reply {
            conversation,
            image: rng.chance(100),
        },
        650..710 => Act::Note { conversation },
        710..730 => Act::Edit {
            back: usize::try_from(rng.below(5)).unwrap_or(0),
        },
        730..820 => Act::Customer { conversation },
        820..850 => Act::Delete {
            back: usize::try_from(rng.below(5)).unwrap_or(0),
        },
        850..890 => Act::Retry,
        890..915 => Act::Forged { conversation },
        915..965 => {
            let state = match rng.below(5) {
                0 => Device::Down,
                1 => Device::Slow,
                2 => Device::LateTimeout,
                3 => Device::Refusing,
                _ => Device::SendFails,
            };
            // One outage in four is long: its replies wait past `CHATGOWA_DELAYED_AFTER` and the note's slack.
            let lasts = if state == Device::Down && rng.chance(250) {
                rng.millis(25_000, 40_000)
            } else {
                rng.millis(300, 4_000)
            };
            Act::Device {
                device,
                state,
                lasts,
            }
        }
        965..975 => Act::Api {
            fault: match rng.below(5) {
                0 => Api::Refusing(401),
                1 => Api::Refusing(429),
                2 => Api::Refusing(502),
                3 => Api::Refusing(503),
                _ => Api::Slow(rng.millis(500, 12_000)),
            },
            lasts: rng.millis(500, 6_000),
        },
        975..983 => Act::Blip {
            lasts: rng.millis(200, 2_000),
        },
        983..990 => Act::Kill { relay },
        990..996 => Act::Freeze {
            relay,
            lasts: rng.millis(300, 9_000),
        },
        _ => Act::DatabaseRestart {
            down: rng.millis(300, 3_000),
        },
    }
}

/// How many seconds relay `relay`'s clock is off in the campaign of `seed` (`libfaketime`): right in half the
/// campaigns, else up to 4 minutes either way.
pub fn clock(seed: u64, relay: usize) -> i64 {
    let mut rng = Rng::keyed(seed, &format!("clock of relay {relay}"));
    if rng.chance(500) {
        return 0;
    }
    i64::try_from(rng.below(481)).unwrap_or(0) - 240
}

/// Whether Chatwoot's API is down as the relays start, and for how long (about a third of the seeds, 2–5 s).
pub fn down_at_start(seed: u64) -> Option<Duration> {
    let mut rng = Rng::keyed(seed, "Chatwoot down at the start");
    rng.chance(333).then(|| rng.millis(2_000, 5_000))
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let shape = Shape {
        replies: 50,
        conversations: 8,
        devices: 2,
        relays: 2,
    };
    let a = format!("{:?}", schedule(7, shape));
    assert_eq!(a, format!("{:?}", schedule(7, shape)));
    assert_ne!(a, format!("{:?}", schedule(8, shape)));
}
