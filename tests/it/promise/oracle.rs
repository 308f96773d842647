//! The promise, checked per reply once the campaign is quiet: every public reply an agent writes reaches GoWA
//! once, in message-id order among the replies of its conversation, or the agent is told in Chatwoot; a reply
//! that waits longer than `CHATGOWA_DELAYED_AFTER` gets its delayed note; nothing no agent wrote is sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::gowa::Sent;
use crate::chatwoot_api::Message;

/// A conversation as Chatwoot numbers it: its number (display id) counts within its account, so two accounts
/// each have a conversation 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conversation {
    pub account: i64,
    pub id: i64,
}

impl Conversation {
    pub fn of(m: &Message) -> Self {
        Self {
            account: m.account,
            id: m.conversation,
        }
    }
}

impl std::fmt::Display for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of account {}", self.id, self.account)
    }
}

/// What the campaign did, as the checker saw it.
#[derive(Debug, Default)]
pub struct Journal {
    /// Agents' public replies: message id → (conversation, when written).
    pub replies: BTreeMap<i64, (Conversation, Instant)>,
    pub deleted: HashMap<i64, Instant>,
    /// Replies an agent edited (Chatwoot posts `message_updated`; GoWA sends nothing for it).
    pub edited: usize,
    /// Retry presses per reply.
    pub retried: HashMap<i64, Vec<Instant>>,
    /// Ids of the replies strangers posted, and how many the relay took (answered 200).
    pub forged: Vec<i64>,
    pub forged_taken: usize,
    /// Replies agents wrote before the relays were linked: never theirs to send.
    pub history: HashSet<i64>,
    /// When the relay was killed (until it was up again) or stopped (until it was continued): a reply in flight
    /// then may be sent again.
    pub interruptions: Vec<(Instant, Instant)>,
    /// When a relay was killed (until it was up again) or the database was down: an attempt in flight then may
    /// leave no trace in the relays' log.
    pub untraced: Vec<(Instant, Instant)>,
    /// The faults met, by kind (and the relays' clocks), for the table.
    pub faults: BTreeMap<String, usize>,
}

/// The oracle's figures; `violations` must be empty.
#[derive(Debug, Default)]
pub struct Verdict {
    pub replies: usize,
    pub once: usize,
    pub repeated_unclear: usize,
    pub retried: usize,
    pub told_failed: usize,
    pub told_by_gowa: usize,
    /// Sent after later replies of its conversation, with a note saying so.
    pub told_late: usize,
    /// Sent after a later reply whose first send the relay could not know of (sent again after it, in order).
    pub reordered_unclear: usize,
    pub deleted: usize,
    pub edited: usize,
    pub delayed_due: usize,
    pub delayed_noted: usize,
    pub forged: usize,
    pub forged_sent: usize,
    pub faults: BTreeMap<String, usize>,
    pub violations: Vec<String>,
}

/// How long after an agent deletes a reply a send may still be on its way.
const DELETE_GRACE: Duration = Duration::from_secs(2);
/// How long after the relays answered a deletion's webhook a reply's send may still start: an attempt already
/// due as the deletion is stored (a relay thawed with both at once) may go first.
const DELETION_TAKEN_GRACE: Duration = Duration::from_secs(2);
/// How long a reply in flight at a kill or a stop may take to reach GoWA before the interruption.
const IN_FLIGHT: Duration = Duration::from_secs(3);
/// How long after a request was written GoWA's model may read it: a request a killed relay wrote can be read
/// once the relay is up again (the campaign's runtime is busy at times).
const READ_LAG: Duration = Duration::from_secs(1);

/// What Chatwoot shows and GoWA sent, checked against the journal.
pub struct Oracle<'a> {
    pub journal: &'a Journal,
    pub messages: &'a [Message],
    pub sent: &'a [Sent],
    /// The message id of every request GoWA got, decoded or not.
    pub reached: &'a [i64],
    /// Replies GoWA took back on WhatsApp, and when.
    pub revoked: &'a [(i64, Instant)],
    /// Replies whose deletion's webhook the relays took (answered 200), and when the answer came.
    pub deletions_taken: &'a HashMap<i64, Instant>,
    /// Replies the relays' log shows an ambiguous attempt of (one that may have sent it).
    pub flagged: &'a HashSet<i64>,
    pub delayed_after: Duration,
    /// How late a delayed note may come after it is due (the feedback looks this often).
    pub note_slack: Duration,
}

impl Oracle<'_> {
    pub fn verdict(&self) -> Verdict {
        let mut v = Verdict {
            replies: self.journal.replies.len(),
            forged: self.journal.forged.len(),
            edited: self.journal.edited,
            faults: self.journal.faults.clone(),
            ..Verdict::default()
        };
        self.nothing_unwritten(&mut v);
        for (&id, &(conversation, written)) in &self.journal.replies {
            self.reply(id, conversation, written, &mut v);
        }
        self.order(&mut v);
        v
    }

    fn sends(&self, id: i64) -> Vec<&Sent> {
        self.sent.iter().filter(|s| s.message == id).collect()
    }

    fn message(&self, id: i64) -> Option<&Message> {
        self.messages.iter().find(|m| m.id == id)
    }

    /// Private notes in `conversation` written after message `after` containing `text`.
    fn notes(&self, conversation: Conversation, after: i64, text: &str) -> Vec<&Message> {
        self.messages
            .iter()
            .filter(|m| m.private && Conversation::of(m) == conversation && m.id > after)
            .filter(|m| m.content.contains(text))
            .collect()
    }

    fn nothing_unwritten(&self, v: &mut Verdict) {
        let forged: HashSet<i64> = self.journal.forged.iter().copied().collect();
        // A stranger's reply relayed at all is a violation, whether GoWA could decode it or not.
        let relayed: HashSet<i64> = self.reached.iter().copied().collect();
        for id in forged.intersection(&relayed) {
            v.forged_sent += 1;
            v.violations
                .push(format!("a stranger's reply {id} was relayed to GoWA"));
        }
        for s in self.sent.iter().filter(|s| !forged.contains(&s.message)) {
            if self.journal.history.contains(&s.message) {
                v.violations.push(format!(
                    "reply {} (conversation {}) was written before the relays were linked, and sent",
                    s.message, s.conversation
                ));
            } else if !self.journal.replies.contains_key(&s.message) {
                v.violations.push(format!(
                    "message {} of conversation {} was sent, but no agent wrote it as a reply",
                    s.message, s.conversation
                ));
            }
        }
    }

    fn reply(&self, id: i64, conversation: Conversation, written: Instant, v: &mut Verdict) {
        let sends = self.sends(id);
        let retries = self.journal.retried.get(&id).map_or(0, Vec::len);
        let failed_notes = self.notes(conversation, id, "NOT delivered to WhatsApp");
        let failed_notes = failed_notes
            .iter()
            .filter(|n| n.in_reply_to == Some(id))
            .count();
        let shown_failed = self.message(id).is_some_and(|m| m.status == "failed");
        let gowa_told = !self
            .notes(conversation, id, "Message was not sent to WhatsApp")
            .is_empty();
        let what = |problem: &str| format!("reply {id} (conversation {conversation}): {problem}");
        if let Some(deleted) = self.journal.deleted.get(&id) {
            v.deleted += 1;
            // Sent, then deleted (or the deletion's webhook lost): GoWA takes it back on WhatsApp.
            let taken_back = sends.last().is_none_or(|last| {
                self.revoked
                    .iter()
                    .any(|(m, at)| *m == id && *at >= last.at)
            });
            // Or its agent was told it stays on WhatsApp (GoWA refused the deletion).
            let taken_back = taken_back
                || self.messages.iter().any(|m| {
                    m.private
                        && m.in_reply_to == Some(id)
                        && m.content.contains("NOT taken back on WhatsApp")
                });
            // A reply still waiting when the relays took its deletion is not sent at all.
            if let Some(taken) = self.deletions_taken.get(&id)
                && let Some(late) = sends.iter().find(|s| {
                    s.at > *taken + DELETION_TAKEN_GRACE + self.stopped_between(*taken, s.at)
                })
            {
                v.violations.push(what(&format!(
                    "sent {:?} after the relays had taken its deletion (Chatwoot's webhook answered 200)",
                    late.at.duration_since(*taken)
                )));
                return;
            }
            if !taken_back {
                let when = if sends.iter().any(|s| s.at > *deleted + DELETE_GRACE) {
                    "after"
                } else {
                    "before"
                };
                v.violations.push(what(&format!(
                    "sent {when} the agent deleted it, and not taken back on WhatsApp"
                )));
            }
            return;
        }
        if retries > 0 {
            v.retried += 1;
        }
        match sends.len() {
            0 if shown_failed && failed_notes >= 1 => v.told_failed += 1,
            0 if gowa_told => v.told_by_gowa += 1,
            0 => v.violations.push(what(&format!(
                "neither sent nor told (Chatwoot shows it {}, {failed_notes} failure notes)",
                self.message(id).map_or("missing", |m| m.status.as_str())
            ))),
            1 => v.once += 1,
            n => {
                let excused = self.excused_repeats(&sends);
                if n - 1 > retries + excused {
                    v.violations.push(what(&format!(
                        "sent {n} times ({retries} Retry presses, {excused} sends whose outcome the relay could \
                         not know)"
                    )));
                } else if n - 1 > retries && !self.flagged.contains(&id) && self.traceable(&sends) {
                    v.violations.push(what(&format!(
                        "sent {n} times, and the relays' log shows no attempt that may have sent it (none \
                         ambiguous)"
                    )));
                } else {
                    v.repeated_unclear += usize::from(excused > 0);
                }
            }
        }
        if shown_failed && failed_notes > 1 + retries {
            v.violations.push(what(&format!(
                "{failed_notes} failure notes for one failure"
            )));
        }
        self.delayed(id, conversation, written, &sends, v);
    }

    /// Repeats the relay could not have avoided: each earlier send answered too late or 408, or in flight when
    /// the relay was killed or stopped.
    fn excused_repeats(&self, sends: &[&Sent]) -> usize {
        let earlier = &sends[..sends.len() - 1];
        earlier.iter().filter(|s| self.unclear(s)).count()
    }

    /// Whether the relays' log can show that a reply sent again may have gone before: no earlier send was answered
    /// 408 (to the relay a failure like any other) or in flight while a relay was killed or the database down
    /// (an attempt that leaves no trace). A relay that was only stopped reads GoWA's answer when it is continued,
    /// and keeps it even if its lane went to another relay meanwhile.
    fn traceable(&self, sends: &[&Sent]) -> bool {
        sends[..sends.len() - 1]
            .iter()
            .all(|s| !s.answered_408 && !self.left_no_trace(s))
    }

    /// A send in flight while a relay was killed or the database was down: no relay can know it was made.
    fn left_no_trace(&self, s: &Sent) -> bool {
        in_flight_during(s, &self.journal.untraced)
    }

    /// A send whose outcome the relay could not know: answered too late or 408, or in flight when the relay was
    /// killed or stopped.
    fn unclear(&self, s: &Sent) -> bool {
        s.unclear || in_flight_during(s, &self.journal.interruptions)
    }

    /// How long the relays were stopped or down between `from` and `to`: an attempt that had started before a
    /// deletion was taken reaches GoWA that much later (a relay stopped with the request half written).
    fn stopped_between(&self, from: Instant, to: Instant) -> Duration {
        self.journal
            .interruptions
            .iter()
            .map(|(a, b)| (*a.max(&from), *b.min(&to)))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| b - a)
            .sum()
    }

    /// The later reply's first send was one the relay could not know of, and it was sent again after `s` (in
    /// its place): the customer read it twice, the second time in order. Or that send left no trace (its relay
    /// killed with it in flight), the next attempt was refused, and the agent was told the later reply failed:
    /// what the agent sees (`s` sent, the later one not) is in order, and no relay could know otherwise.
    fn reordered_by_unclear(&self, s: &Sent, first_of_later: &Sent) -> bool {
        let resent = self
            .sent
            .iter()
            .any(|x| x.message == first_of_later.message && x.at > s.at);
        let told_failed =
            self.left_no_trace(first_of_later) && self.told_failed(first_of_later.message);
        self.unclear(first_of_later) && (resent || told_failed)
    }

    /// A reply first sent later than `CHATGOWA_DELAYED_AFTER` after it was written has a delayed note in its
    /// conversation.
    fn delayed(
        &self,
        id: i64,
        conversation: Conversation,
        written: Instant,
        sends: &[&Sent],
        v: &mut Verdict,
    ) {
        let Some(first) = sends.first() else {
            return;
        };
        if self.journal.retried.contains_key(&id) {
            return;
        }
        if first.at.duration_since(written) <= self.delayed_after + self.note_slack {
            return;
        }
        v.delayed_due += 1;
        // A reply whose webhook never came is noted, once it went, if it was found late.
        let noted_late = self.messages.iter().any(|m| {
            m.private && m.in_reply_to == Some(id) && m.content.contains("reached WhatsApp late")
        });
        if self.notes(conversation, id, "are delayed").is_empty()
            && self.notes(conversation, id, "NOT delivered").is_empty()
            && !noted_late
            && !self.outage_noted_before(conversation, id)
        {
            v.violations.push(format!(
                "reply {id} (conversation {conversation}): sent {:?} after it was written, with no delayed note",
                first.at.duration_since(written)
            ));
        } else {
            v.delayed_noted += 1;
        }
    }

    /// Whether reply `id` was written while its conversation's delayed note was in force: the relay notes an outage
    /// once per conversation ("replies in this conversation are delayed") until it says they went ("have now been
    /// delivered"), so a reply written between the two is covered by the note above it.
    fn outage_noted_before(&self, conversation: Conversation, id: i64) -> bool {
        self.messages
            .iter()
            .filter(|m| m.private && Conversation::of(m) == conversation && m.id < id)
            .filter(|m| {
                m.content.contains("are delayed") || m.content.contains("have now been delivered")
            })
            .max_by_key(|m| m.id)
            .is_some_and(|m| m.content.contains("are delayed"))
    }

    /// Chatwoot shows the reply failed, with the relay's note under it.
    fn told_failed(&self, id: i64) -> bool {
        self.message(id).is_some_and(|m| m.status == "failed")
            && self.messages.iter().any(|m| {
                m.private
                    && m.in_reply_to == Some(id)
                    && m.content.contains("NOT delivered to WhatsApp")
            })
    }

    /// The agent was told the reply reached WhatsApp after later ones (a reply caught up with).
    fn told_late(&self, id: i64) -> bool {
        self.messages.iter().any(|m| {
            m.private && m.in_reply_to == Some(id) && m.content.contains("after later replies")
        })
    }

    /// In each conversation, the replies reach GoWA for the first time in message-id order (a reply sent again
    /// at an agent's Retry is a new send, not a reorder).
    fn order(&self, v: &mut Verdict) {
        // Per conversation, the first send of the highest reply sent so far.
        let mut last: HashMap<Conversation, &Sent> = HashMap::new();
        let mut seen: HashSet<i64> = HashSet::new();
        for s in self.sent {
            // A deleted reply is judged by the deletion rule alone: taken back, it is out of the chat wherever it
            // stood, and a later reply does not follow it.
            if !seen.insert(s.message)
                || !self.journal.replies.contains_key(&s.message)
                || self.journal.deleted.contains_key(&s.message)
            {
                continue;
            }
            let retried_before = self
                .journal
                .retried
                .get(&s.message)
                .is_some_and(|presses| presses.iter().any(|p| *p <= s.at));
            let Some(&later) = last.get(&s.conversation).filter(|l| l.message > s.message) else {
                last.insert(s.conversation, s);
                continue;
            };
            if retried_before {
            } else if self.told_late(s.message) {
                v.told_late += 1;
            } else if self.told_failed(s.message) {
                // An attempt GoWA answered too late went out after all; the agent was told it failed.
            } else if self.reordered_by_unclear(s, later) {
                v.reordered_unclear += 1;
            } else {
                v.violations.push(format!(
                    "reply {} (conversation {}) reached GoWA after the later reply {}",
                    s.message, s.conversation, later.message
                ));
            }
        }
    }
}

impl Verdict {
    /// The table the checker prints.
    pub fn table(&self, title: &str) -> String {
        let mut out = format!("promise: {title}\n");
        let rows = [
            ("replies written", self.replies),
            ("delivered once", self.once),
            ("sent again after an unclear answer", self.repeated_unclear),
            ("retried by an agent", self.retried),
            ("told failed in Chatwoot", self.told_failed),
            ("told by GoWA's note", self.told_by_gowa),
            ("told it went after later replies", self.told_late),
            ("after a later reply's unclear send", self.reordered_unclear),
            ("deleted by the agent", self.deleted),
            ("edits by the agent", self.edited),
            ("delayed notes due", self.delayed_due),
            ("delayed notes written", self.delayed_noted),
            ("forged replies posted", self.forged),
            ("forged replies relayed", self.forged_sent),
            ("violations", self.violations.len()),
        ];
        let faults = self.faults.iter().map(|(what, n)| (what.as_str(), *n));
        for (what, n) in rows.into_iter().chain(faults) {
            let _ = writeln!(out, "  {what:<36} {n:>7}");
        }
        for violation in &self.violations {
            let _ = writeln!(out, "  VIOLATION {violation}");
        }
        out
    }
}

/// Whether send `s` was in flight during one of `windows` (GoWA reading a request up to `READ_LAG` after).
fn in_flight_during(s: &Sent, windows: &[(Instant, Instant)]) -> bool {
    windows
        .iter()
        .any(|(from, to)| s.at <= *to + READ_LAG && s.at + IN_FLIGHT >= *from)
}
