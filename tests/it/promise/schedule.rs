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
    /// An agent presses Retry on the oldest reply Chatwoot shows failed, if any.
    Retry,
    /// A stranger posts a reply of their own to the relay.
    Forged { conversation: usize },
    /// A GoWA device behaves so for a while.
    Device {
        device: usize,
        state: Device,
        lasts: Duration,
    },
    /// Chatwoot cannot reach the relay for a while (its webhooks are lost).
    Blip { lasts: Duration },
    /// The relay is killed (SIGKILL) and started again.
    Kill,
    /// The relay is stopped (SIGSTOP) for a while.
    Freeze { lasts: Duration },
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
    steps
}

fn act(rng: &mut Rng, shape: Shape) -> Act {
    let conversation = usize::try_from(rng.below(shape.conversations as u64)).unwrap_or(0);
    let device = usize::try_from(rng.below(shape.devices as u64)).unwrap_or(0);
    match rng.below(1000) {
        0..650 => Act::Reply {
            conversation,
            image: rng.chance(100),
        },
        650..730 => Act::Note { conversation },
        730..820 => Act::Customer { conversation },
        820..850 => Act::Delete {
            back: usize::try_from(rng.below(5)).unwrap_or(0),
        },
        850..890 => Act::Retry,
        890..915 => Act::Forged { conversation },
        915..975 => {
            let state = match rng.below(5) {
                0 => Device::Down,
                1 => Device::Slow,
                2 => Device::LateTimeout,
                3 => Device::Refusing,
                _ => Device::SendFails,
            };
            Act::Device {
                device,
                state,
                lasts: rng.millis(300, 4_000),
            }
        }
        975..985 => Act::Blip {
            lasts: rng.millis(200, 2_000),
        },
        985..993 => Act::Kill,
        _ => Act::Freeze {
            lasts: rng.millis(300, 3_000),
        },
    }
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let shape = Shape {
        replies: 50,
        conversations: 8,
        devices: 2,
    };
    let a = format!("{:?}", schedule(7, shape));
    assert_eq!(a, format!("{:?}", schedule(7, shape)));
    assert_ne!(a, format!("{:?}", schedule(8, shape)));
}
