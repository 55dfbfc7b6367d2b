//! The VRRP state machine of one virtual router, without IO (sans-IO, as in
//! quinn): the shell feeds it events with the time they happened and asks
//! when it next needs to be woken; it answers with [`Action`]s to carry out.
//! Nothing here reads a clock, so tests drive it with a simulated one.
//!
//! States are RFC 9568's Initialize, Backup and Master ("Active Router"),
//! plus keepalived's Fault: the interface is down or a fatal check failed,
//! so this router neither holds the VIP nor speaks.
//!
//! | RFC clause | Behaviour | Test |
//! |---|---|---|
//! | 5798 §6.4.1 (Initialize) | priority 255 (owner) starts as Master: advert, VIPs, announce | `rfc5798_6_4_1_owner_starts_as_master` |
//! | 5798 §6.4.1 | any other priority starts as Backup with Master_Down_Timer = MDI | `rfc5798_6_4_1_non_owner_starts_as_backup` |
//! | 5798 §6.1 | Skew_Time = (256 − Priority) × Master_Adver_Interval / 256; MDI = 3 × MAI + Skew | `rfc5798_6_1_master_down_interval_and_skew` |
//! | 3768 §6.1 | v2 Skew_Time = (256 − Priority) / 256 s | `rfc3768_6_1_v2_skew_is_in_seconds` |
//! | 5798 §6.4.2 | Backup: Master_Down_Timer fires → send advert, add VIPs, announce, Master | `rfc5798_6_4_2_master_down_timer_makes_master` |
//! | 5798 §6.4.2 | Backup: priority-0 advert → Master_Down_Timer = Skew_Time | `rfc5798_6_4_2_priority_zero_waits_only_skew` |
//! | 5798 §6.4.2 | Backup: higher/equal priority (or preempt off) resets the timer and learns the interval | `rfc5798_6_4_2_backup_learns_master_adver_interval`, `rfc5798_6_4_2_preempt_off_never_takes_over` |
//! | 5798 §6.4.2 | Backup, preempt on: lower priority adverts are discarded, so the timer fires | `rfc5798_6_4_2_preempt_on_takes_over_from_lower_priority` |
//! | (extension) | preempt delay: a lower priority master is tolerated for the delay first | `preempt_delay_holds_off_then_preempts` |
//! | (extension) | no preemption until this node can serve (balancer, pooler) | `preemption_waits_until_ready` |
//! | 5798 §6.4.3 | Master: Adver_Timer fires → advert | `rfc5798_6_4_3_master_adverts_every_interval` |
//! | 5798 §6.4.3 | Master: priority-0 advert → advert at once | `rfc5798_6_4_3_priority_zero_answered_at_once` |
//! | 5798 §6.4.3 | Master: higher priority, or equal with a higher primary address → Backup, VIPs removed | `rfc5798_6_4_3_higher_priority_wins`, `rfc5798_6_4_3_equal_priority_tie_break_by_address` |
//! | 9568 §6.4.3 | Master: lower priority advert → advert at once (and here: announce again, healing a split) | `rfc9568_6_4_3_lower_priority_heals_split_brain` |
//! | 5798 §6.4.2/§6.4.3 | Shutdown: Master sends priority 0 and removes VIPs | `rfc5798_shutdown_sends_priority_zero` |
//! | 3768 §5.3.7 | v2 never learns the interval (mismatches are dropped by the codec) | `rfc3768_v2_does_not_learn_interval` |
//!
//! Also tested: announcement repeats and refresh, tracking (effective
//! priority), Fault on link loss, and full two- and three-router runs on a
//! simulated network in `tests`.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::packet::{Advert, Version};

/// What the operator configured for this virtual router.
#[derive(Debug, Clone)]
pub struct Config {
    pub version: Version,
    pub vrid: u8,
    /// Configured priority, 1..=255. Tracking lowers the effective one.
    pub priority: u8,
    /// Our own advert interval. v2 only carries whole seconds.
    pub interval: Duration,
    /// Whether a backup with a higher priority takes over from a master.
    pub preempt: bool,
    /// How long a lower priority master is tolerated before preempting
    /// (keepalived's `preempt_delay`, the YANG model's hold-time): lets a
    /// node that just came back warm up before traffic moves to it.
    pub preempt_delay: Duration,
    /// Our primary address on the interface: breaks priority ties.
    pub address: IpAddr,
    /// How to announce the VIPs (gratuitous ARP / unsolicited NA).
    pub announce: AnnounceConfig,
}

/// Announcements tell switches and clients where the VIP now lives.
#[derive(Debug, Clone, Copy)]
pub struct AnnounceConfig {
    /// How many announcements on becoming master; more than one because a
    /// single frame can be lost while a switch port is still learning.
    pub count: u32,
    /// Time between those repeats.
    pub gap: Duration,
    /// While master, announce again this often (switch and ARP caches
    /// expire); `None` = never.
    pub refresh: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

/// Why a transition happened: shown on the status page and in events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    Started,
    /// We own the address (priority 255).
    Owner,
    /// No advert from a master for the master-down interval.
    MasterDown,
    /// The master said it is leaving (priority 0) and our skew ran out.
    MasterLeft,
    /// A lower priority master was preempted.
    Preempted,
    /// Another router's advert beat ours.
    HigherPriority {
        from: IpAddr,
        priority: u8,
    },
    /// Same priority, higher primary address.
    TieBreak {
        from: IpAddr,
    },
    Stopped,
    Fault {
        why: String,
    },
    Recovered,
}

/// What the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority and our interval.
    SendAdvert {
        priority: u8,
    },
    AddVips,
    RemoveVips,
    /// Gratuitous ARP / unsolicited NA for every VIP.
    Announce,
    /// A state change, for notify commands, events and the status page.
    Transition {
        from: State,
        to: State,
        reason: Reason,
    },
}

/// One virtual router.
#[derive(Debug)]
pub struct Machine {
    config: Config,
    state: State,
    /// The priority we advertise: configured, lowered by tracking.
    effective: u8,
    /// The master's interval as learned from its adverts (v3), or ours.
    master_interval: Duration,
    /// Backup: when the master is declared down.
    master_down_at: Option<Instant>,
    /// Master: when the next advert is due.
    advert_at: Option<Instant>,
    /// Master: next announcement, and how many of the burst are left.
    announce_at: Option<Instant>,
    announce_left: u32,
    /// Backup with preempt delay: since when a lower priority master has
    /// been seen without a break.
    lower_master_since: Option<Instant>,
    /// The router we believe is master (its address and priority).
    master: Option<(IpAddr, u8)>,
    /// Whether this node can serve what the VIP brings (its balancer has a
    /// backend up, its pooler knows a primary). Until it can, a backup
    /// tolerates a lower priority master instead of preempting it: taking
    /// the VIP only to answer 503 is worse than leaving it where it works.
    /// It never stops this node from taking over a master that is gone.
    ready_to_preempt: bool,
    actions: VecDeque<Action>,
}

impl Machine {
    pub fn new(config: Config) -> Machine {
        Machine {
            effective: config.priority,
            master_interval: config.interval,
            config,
            state: State::Initialize,
            master_down_at: None,
            advert_at: None,
            announce_at: None,
            announce_left: 0,
            lower_master_since: None,
            ready_to_preempt: true,
            master: None,
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn effective_priority(&self) -> u8 {
        self.effective
    }
    /// The master's advert interval as we know it (learned in v3).
    pub fn master_interval(&self) -> Duration {
        self.master_interval
    }
    /// The current master: ourselves when master, else the last router
    /// whose advert we accepted.
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        match self.state {
            State::Master => Some((self.config.address, self.effective)),
            State::Backup => self.master,
            _ => None,
        }
    }

    /// The next action to carry out, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.master_down_at, self.advert_at, self.announce_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Startup event (RFC 5798 §6.4.1).
    pub fn start(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        if self.effective == 255 {
            self.become_master(now, Reason::Owner);
        } else {
            self.become_backup(now, Reason::Started);
        }
    }

    /// Shutdown event: a master hands over at once with a priority-0
    /// advert instead of making the backups wait out the master-down time.
    pub fn stop(&mut self) {
        if self.state == State::Master {
            self.push(Action::SendAdvert { priority: 0 });
            self.push(Action::RemoveVips);
        }
        self.enter(State::Initialize, Reason::Stopped);
    }

    /// The interface went down, or a check with no weight failed: give up
    /// the VIP and stay silent until `clear_fault`.
    pub fn fault(&mut self, why: String) {
        if self.state == State::Fault {
            return;
        }
        if self.state == State::Master {
            self.push(Action::RemoveVips);
        }
        self.enter(State::Fault, Reason::Fault { why });
    }

    pub fn clear_fault(&mut self, now: Instant) {
        if self.state != State::Fault {
            return;
        }
        if self.effective == 255 {
            self.become_master(now, Reason::Recovered);
        } else {
            self.become_backup(now, Reason::Recovered);
        }
    }

    /// Whether this node may preempt a lower priority master now (see the
    /// field). Becoming ready needs no event of its own: the next advert of
    /// the lower master is then discarded and the master-down timer runs.
    pub fn set_ready_to_preempt(&mut self, ready: bool) {
        self.ready_to_preempt = ready;
    }

    /// Tracking changed the effective priority. A master tells the others
    /// at once, so a backup that now outranks it starts preempting a whole
    /// interval sooner.
    pub fn set_priority(&mut self, now: Instant, priority: u8) {
        let priority = priority.max(1);
        if priority == self.effective {
            return;
        }
        self.effective = priority;
        match self.state {
            State::Master => self.send_advert(now),
            // The skew depends on our priority.
            State::Backup => {
                if self.master_down_at.is_some() {
                    self.master_down_at = Some(now + self.master_down_interval());
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    /// Timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.master_down_at.is_some_and(|t| t <= now) {
            self.master_down_at = None;
            let reason = if self.master.is_some_and(|(_, p)| p == 0) {
                Reason::MasterLeft
            } else if self
                .master
                .is_some_and(|(_, p)| p < self.effective && self.config.preempt)
            {
                Reason::Preempted
            } else {
                Reason::MasterDown
            };
            self.become_master(now, reason);
        }
        if self.advert_at.is_some_and(|t| t <= now) {
            self.send_advert(now);
        }
        if self.announce_at.is_some_and(|t| t <= now) {
            self.push(Action::Announce);
            self.schedule_next_announce(now);
        }
    }

    /// An advert that passed the codec's checks (TTL, checksum, VRID...).
    pub fn handle_advert(&mut self, now: Instant, from: IpAddr, advert: &Advert) {
        match self.state {
            State::Backup => self.backup_receives(now, from, advert),
            State::Master => self.master_receives(now, from, advert),
            State::Initialize | State::Fault => {}
        }
    }

    // ===== RFC 5798 §6.4.2: Backup =====

    fn backup_receives(&mut self, now: Instant, from: IpAddr, advert: &Advert) {
        if advert.priority == 0 {
            self.master = Some((from, 0));
            self.master_down_at = Some(now + self.skew());
            return;
        }
        let outranks_us = advert.priority >= self.effective;
        if !self.config.preempt
            || outranks_us
            || !self.ready_to_preempt
            || self.preempt_held(now, outranks_us)
        {
            self.learn_interval(advert);
            self.master = Some((from, advert.priority));
            self.master_down_at = Some(now + self.master_down_interval());
            return;
        }
        // Lower priority and preempting: discard, so the timer runs out.
        self.master = Some((from, advert.priority));
    }

    /// With a preempt delay, a lower priority master is accepted until it
    /// has been seen for the whole delay.
    fn preempt_held(&mut self, now: Instant, outranks_us: bool) -> bool {
        if outranks_us || self.config.preempt_delay.is_zero() {
            self.lower_master_since = None;
            return false;
        }
        let since = *self.lower_master_since.get_or_insert(now);
        now.duration_since(since) < self.config.preempt_delay
    }

    fn learn_interval(&mut self, advert: &Advert) {
        // v2 adverts with another interval never get here (RFC 3768 §7.1
        // drops them), so only v3 learns.
        if self.config.version == Version::V3 && advert.interval_cs > 0 {
            self.master_interval = Duration::from_millis(u64::from(advert.interval_cs) * 10);
        }
    }

    // ===== RFC 5798 §6.4.3: Master =====

    fn master_receives(&mut self, now: Instant, from: IpAddr, advert: &Advert) {
        if advert.priority == 0 {
            self.send_advert(now);
            return;
        }
        let higher = advert.priority > self.effective;
        let tie_lost = advert.priority == self.effective && from > self.config.address;
        if higher || tie_lost {
            self.learn_interval(advert);
            self.master = Some((from, advert.priority));
            let reason = if higher {
                Reason::HigherPriority {
                    from,
                    priority: advert.priority,
                }
            } else {
                Reason::TieBreak { from }
            };
            self.push(Action::RemoveVips);
            self.enter(State::Backup, reason);
            self.master_down_at = Some(now + self.master_down_interval());
            return;
        }
        // Another master with a lower priority: the two were split (or it
        // just started). RFC 9568 answers with an advert so it steps down
        // now; announcing again moves clients that followed it back here.
        self.send_advert(now);
        self.start_announcing(now);
    }

    // ===== transitions and timers =====

    fn become_master(&mut self, now: Instant, reason: Reason) {
        self.enter(State::Master, reason);
        self.send_advert(now);
        self.push(Action::AddVips);
        self.start_announcing(now);
    }

    fn become_backup(&mut self, now: Instant, reason: Reason) {
        self.enter(State::Backup, reason);
        self.master_interval = self.config.interval;
        self.master_down_at = Some(now + self.master_down_interval());
    }

    /// Sets the state, clears the timers of the old one and reports it.
    fn enter(&mut self, to: State, reason: Reason) {
        let from = self.state;
        self.state = to;
        self.master_down_at = None;
        self.advert_at = None;
        self.announce_at = None;
        self.announce_left = 0;
        self.lower_master_since = None;
        if to != State::Backup {
            self.master = None;
        }
        if from != to {
            self.push(Action::Transition { from, to, reason });
        }
    }

    fn send_advert(&mut self, now: Instant) {
        self.push(Action::SendAdvert {
            priority: self.effective,
        });
        self.advert_at = Some(now + self.config.interval);
    }

    fn start_announcing(&mut self, now: Instant) {
        self.push(Action::Announce);
        self.announce_left = self.config.announce.count.saturating_sub(1);
        self.schedule_next_announce(now);
    }

    fn schedule_next_announce(&mut self, now: Instant) {
        if self.announce_left > 0 {
            self.announce_left -= 1;
            self.announce_at = Some(now + self.config.announce.gap);
        } else {
            self.announce_at = self.config.announce.refresh.map(|r| now + r);
        }
    }

    /// RFC 5798 §6.1 (v3) and RFC 3768 §6.1 (v2).
    fn skew(&self) -> Duration {
        let weight = 256 - u32::from(self.effective);
        match self.config.version {
            Version::V3 => self.master_interval * weight / 256,
            Version::V2 => Duration::from_secs(1) * weight / 256,
        }
    }

    fn master_down_interval(&self) -> Duration {
        self.master_interval * 3 + self.skew()
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }
}

#[cfg(test)]
mod tests;
