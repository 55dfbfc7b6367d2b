//! One test per RFC clause (see the table in `machine.rs`), then whole
//! elections on a simulated network, all on a simulated clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn config(priority: u8, last: u8) -> Config {
    Config {
        version: Version::V3,
        vrid: 51,
        priority,
        interval: 100 * MS,
        preempt: true,
        preempt_delay: Duration::ZERO,
        address: addr(last),
        announce: AnnounceConfig {
            count: 1,
            gap: 10 * MS,
            refresh: None,
        },
    }
}

fn advert(priority: u8, interval_cs: u16) -> Advert {
    Advert {
        version: Version::V3,
        vrid: 51,
        priority,
        interval_cs,
        addresses: vec![addr(100)],
    }
}

fn drain(m: &mut Machine) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn transitions(actions: &[Action]) -> Vec<(State, State)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transition { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

/// Runs only the timers, up to `until`, collecting actions.
fn run_until(m: &mut Machine, until: Instant) -> Vec<Action> {
    let mut out = drain(m);
    while let Some(t) = m.poll_timeout().filter(|t| *t <= until) {
        m.handle_timeout(t);
        out.extend(drain(m));
    }
    out
}

fn started(priority: u8, t0: Instant) -> Machine {
    let mut m = Machine::new(config(priority, 1));
    m.start(t0);
    drain(&mut m);
    m
}

#[test]
fn rfc5798_6_4_1_owner_starts_as_master() {
    let t0 = Instant::now();
    let mut m = Machine::new(config(255, 1));
    m.start(t0);
    let a = drain(&mut m);
    assert_eq!(m.state(), State::Master);
    assert_eq!(
        a[0],
        Action::Transition {
            from: State::Initialize,
            to: State::Master,
            reason: Reason::Owner
        }
    );
    assert_eq!(
        &a[1..],
        [
            Action::SendAdvert { priority: 255 },
            Action::AddVips,
            Action::Announce
        ]
    );
    assert_eq!(m.poll_timeout(), Some(t0 + 100 * MS));
}

#[test]
fn rfc5798_6_4_1_non_owner_starts_as_backup() {
    let t0 = Instant::now();
    let mut m = Machine::new(config(100, 1));
    m.start(t0);
    let a = drain(&mut m);
    assert_eq!(transitions(&a), [(State::Initialize, State::Backup)]);
    assert!(!a.contains(&Action::AddVips));
    assert!(!a.iter().any(|a| matches!(a, Action::SendAdvert { .. })));
}

#[test]
fn rfc5798_6_1_master_down_interval_and_skew() {
    // Priority 100 at 100 ms: skew = 156 × 100 ms / 256 = 60.9375 ms,
    // MDI = 300 ms + skew.
    let t0 = Instant::now();
    let m = started(100, t0);
    let mdi = m.poll_timeout().map(|t| t - t0);
    assert_eq!(
        mdi,
        Some(Duration::from_micros(360_937) + Duration::from_nanos(500))
    );
    // Priority 254 waits least: the highest backup takes over first.
    let hi = started(254, t0).poll_timeout().map(|t| t - t0);
    assert!(hi < mdi);
}

#[test]
fn rfc3768_6_1_v2_skew_is_in_seconds() {
    let t0 = Instant::now();
    let mut c = config(100, 1);
    c.version = Version::V2;
    c.interval = Duration::from_secs(1);
    let mut m = Machine::new(c);
    m.start(t0);
    // 3 s + 156/256 s, whatever the interval.
    assert_eq!(
        m.poll_timeout().map(|t| t - t0),
        Some(Duration::from_secs(3) + Duration::from_secs(1) * 156 / 256)
    );
}

#[test]
fn rfc5798_6_4_2_master_down_timer_makes_master() {
    let t0 = Instant::now();
    let mut m = started(100, t0);
    let at = m.poll_timeout().unwrap();
    assert!(
        run_until(&mut m, at - MS).is_empty(),
        "nothing before the timer"
    );
    let a = run_until(&mut m, at);
    assert_eq!(m.state(), State::Master);
    assert_eq!(
        a[0],
        Action::Transition {
            from: State::Backup,
            to: State::Master,
            reason: Reason::MasterDown
        }
    );
    assert_eq!(
        &a[1..],
        [
            Action::SendAdvert { priority: 100 },
            Action::AddVips,
            Action::Announce
        ]
    );
}

#[test]
fn rfc5798_6_4_2_priority_zero_waits_only_skew() {
    let t0 = Instant::now();
    let mut m = started(100, t0);
    m.handle_advert(t0 + 50 * MS, addr(2), &advert(150, 10));
    m.handle_advert(t0 + 80 * MS, addr(2), &advert(0, 10));
    let skew = Duration::from_micros(60_937) + Duration::from_nanos(500);
    assert_eq!(m.poll_timeout(), Some(t0 + 80 * MS + skew));
    let a = run_until(&mut m, t0 + 80 * MS + skew);
    assert_eq!(m.state(), State::Master);
    assert!(a.contains(&Action::Transition {
        from: State::Backup,
        to: State::Master,
        reason: Reason::MasterLeft
    }));
}

#[test]
fn rfc5798_6_4_2_backup_learns_master_adver_interval() {
    let t0 = Instant::now();
    let mut m = started(100, t0);
    // The master adverts every 1 s; ours is 100 ms.
    m.handle_advert(t0, addr(2), &advert(150, 100));
    assert_eq!(m.master_interval(), Duration::from_secs(1));
    let mdi = Duration::from_secs(3) + Duration::from_secs(1) * 156 / 256;
    assert_eq!(m.poll_timeout(), Some(t0 + mdi));
    assert_eq!(m.master(), Some((addr(2), 150)));
}

#[test]
fn rfc3768_v2_does_not_learn_interval() {
    let t0 = Instant::now();
    let mut c = config(100, 1);
    c.version = Version::V2;
    c.interval = Duration::from_secs(1);
    let mut m = Machine::new(c);
    m.start(t0);
    let mut a = advert(150, 300);
    a.version = Version::V2;
    m.handle_advert(t0, addr(2), &a);
    assert_eq!(m.master_interval(), Duration::from_secs(1));
}

#[test]
fn rfc5798_6_4_2_preempt_off_never_takes_over() {
    let t0 = Instant::now();
    let mut c = config(200, 1);
    c.preempt = false;
    let mut m = Machine::new(c);
    m.start(t0);
    drain(&mut m);
    for i in 0..100 {
        let now = t0 + i * 100 * MS;
        run_until(&mut m, now);
        m.handle_advert(now, addr(2), &advert(100, 10));
    }
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn rfc5798_6_4_2_preempt_on_takes_over_from_lower_priority() {
    let t0 = Instant::now();
    let mut m = started(200, t0);
    let mut actions = Vec::new();
    for i in 0..10 {
        let now = t0 + i * 100 * MS;
        actions.extend(run_until(&mut m, now));
        m.handle_advert(now, addr(2), &advert(100, 10));
    }
    assert_eq!(m.state(), State::Master);
    assert!(actions.contains(&Action::Transition {
        from: State::Backup,
        to: State::Master,
        reason: Reason::Preempted
    }));
}

#[test]
fn preempt_delay_holds_off_then_preempts() {
    let t0 = Instant::now();
    let mut c = config(200, 1);
    c.preempt_delay = Duration::from_secs(2);
    let mut m = Machine::new(c);
    m.start(t0);
    let mut became_master = None;
    for i in 0..60 {
        let now = t0 + i * 100 * MS;
        run_until(&mut m, now);
        if m.state() == State::Master {
            became_master.get_or_insert(now);
            continue;
        }
        m.handle_advert(now, addr(2), &advert(100, 10));
    }
    let at = became_master.expect("preempted in the end") - t0;
    // Held for the 2 s delay, then one master-down interval (~0.32 s).
    assert!(at >= Duration::from_secs(2), "{at:?}");
    assert!(at <= Duration::from_millis(2500), "{at:?}");
}

#[test]
fn preemption_waits_until_ready() {
    let t0 = Instant::now();
    let mut m = Machine::new(config(200, 1));
    m.set_ready_to_preempt(false);
    m.start(t0);
    let mut became_master = None;
    for i in 0..60 {
        let now = t0 + i * 100 * MS;
        if i == 30 {
            m.set_ready_to_preempt(true);
        }
        run_until(&mut m, now);
        if m.state() == State::Master {
            became_master.get_or_insert(now);
            continue;
        }
        m.handle_advert(now, addr(2), &advert(100, 10));
    }
    let at = became_master.expect("preempted once ready") - t0;
    assert!(at >= Duration::from_secs(3), "{at:?}");
    assert!(at <= Duration::from_millis(3500), "{at:?}");
}

#[test]
fn not_ready_still_takes_over_from_a_master_that_is_gone() {
    let t0 = Instant::now();
    let mut m = Machine::new(config(200, 1));
    m.set_ready_to_preempt(false);
    m.start(t0);
    m.handle_advert(t0, addr(2), &advert(100, 10));
    run_until(&mut m, t0 + 2000 * MS);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn rfc5798_6_4_3_master_adverts_every_interval() {
    let t0 = Instant::now();
    let mut m = Machine::new(config(255, 1));
    m.start(t0);
    drain(&mut m);
    let a = run_until(&mut m, t0 + 1000 * MS);
    let adverts = a
        .iter()
        .filter(|a| **a == Action::SendAdvert { priority: 255 })
        .count();
    assert_eq!(adverts, 10);
}

#[test]
fn rfc5798_6_4_3_priority_zero_answered_at_once() {
    let t0 = Instant::now();
    let mut m = Machine::new(config(255, 1));
    m.start(t0);
    drain(&mut m);
    m.handle_advert(t0 + 30 * MS, addr(2), &advert(0, 10));
    assert_eq!(drain(&mut m), [Action::SendAdvert { priority: 255 }]);
    assert_eq!(m.poll_timeout(), Some(t0 + 130 * MS));
}

fn master_at(priority: u8, last: u8, t0: Instant) -> Machine {
    let mut m = Machine::new(config(priority, last));
    m.start(t0);
    let at = m.poll_timeout().unwrap();
    run_until(&mut m, at);
    assert_eq!(m.state(), State::Master);
    m
}

#[test]
fn rfc5798_6_4_3_higher_priority_wins() {
    let t0 = Instant::now();
    let mut m = master_at(100, 1, t0);
    let now = t0 + Duration::from_secs(1);
    m.handle_advert(now, addr(2), &advert(150, 10));
    let a = drain(&mut m);
    assert_eq!(
        a,
        [
            Action::RemoveVips,
            Action::Transition {
                from: State::Master,
                to: State::Backup,
                reason: Reason::HigherPriority {
                    from: addr(2),
                    priority: 150
                }
            }
        ]
    );
    assert_eq!(m.master(), Some((addr(2), 150)));
}

#[test]
fn rfc5798_6_4_3_equal_priority_tie_break_by_address() {
    let t0 = Instant::now();
    // The lower address gives way...
    let mut low = master_at(100, 1, t0);
    low.handle_advert(t0 + MS * 500, addr(2), &advert(100, 10));
    assert_eq!(low.state(), State::Backup);
    // ...the higher one stays and reasserts itself.
    let mut high = master_at(100, 2, t0);
    drain(&mut high);
    high.handle_advert(t0 + MS * 500, addr(1), &advert(100, 10));
    assert_eq!(high.state(), State::Master);
    assert!(drain(&mut high).contains(&Action::SendAdvert { priority: 100 }));
}

#[test]
fn rfc9568_6_4_3_lower_priority_heals_split_brain() {
    let t0 = Instant::now();
    let mut m = master_at(150, 1, t0);
    drain(&mut m);
    m.handle_advert(t0 + MS * 500, addr(2), &advert(100, 10));
    assert_eq!(
        drain(&mut m),
        [Action::SendAdvert { priority: 150 }, Action::Announce]
    );
    assert_eq!(m.state(), State::Master);
}

#[test]
fn rfc5798_shutdown_sends_priority_zero() {
    let t0 = Instant::now();
    let mut m = master_at(100, 1, t0);
    drain(&mut m);
    m.stop();
    let a = drain(&mut m);
    assert_eq!(
        &a[..2],
        [Action::SendAdvert { priority: 0 }, Action::RemoveVips]
    );
    assert_eq!(transitions(&a), [(State::Master, State::Initialize)]);
    assert_eq!(m.poll_timeout(), None);
    // A backup that stops says nothing.
    let mut b = started(100, t0);
    b.stop();
    assert!(
        !drain(&mut b)
            .iter()
            .any(|a| matches!(a, Action::SendAdvert { .. }))
    );
}

#[test]
fn announcements_repeat_then_refresh() {
    let t0 = Instant::now();
    let mut c = config(255, 1);
    c.announce = AnnounceConfig {
        count: 3,
        gap: 10 * MS,
        refresh: Some(Duration::from_secs(60)),
    };
    let mut m = Machine::new(c);
    m.start(t0);
    let count = |a: &[Action]| a.iter().filter(|a| **a == Action::Announce).count();
    assert_eq!(count(&run_until(&mut m, t0 + 50 * MS)), 3);
    assert_eq!(count(&run_until(&mut m, t0 + Duration::from_secs(60))), 0);
    assert_eq!(count(&run_until(&mut m, t0 + Duration::from_secs(61))), 1);
}

#[test]
fn tracking_lowers_priority_and_a_master_says_so_at_once() {
    let t0 = Instant::now();
    let mut m = master_at(150, 1, t0);
    drain(&mut m);
    m.set_priority(t0 + Duration::from_secs(1), 50);
    assert_eq!(drain(&mut m), [Action::SendAdvert { priority: 50 }]);
    // A backup of 100 now outranks it and the master steps down.
    m.handle_advert(t0 + Duration::from_secs(1), addr(2), &advert(100, 10));
    assert_eq!(m.state(), State::Backup);
    // Priority never reaches 0 by tracking: 0 means "leaving".
    m.set_priority(t0 + Duration::from_secs(2), 0);
    assert_eq!(m.effective_priority(), 1);
}

#[test]
fn fault_gives_up_the_vip_and_recovery_starts_as_backup() {
    let t0 = Instant::now();
    let mut m = master_at(150, 1, t0);
    drain(&mut m);
    m.fault("eth0 is down".into());
    let a = drain(&mut m);
    assert_eq!(a[0], Action::RemoveVips);
    assert_eq!(transitions(&a), [(State::Master, State::Fault)]);
    assert_eq!(m.poll_timeout(), None);
    // Silent while faulty.
    m.handle_advert(t0 + Duration::from_secs(1), addr(2), &advert(100, 10));
    assert!(drain(&mut m).is_empty());
    m.clear_fault(t0 + Duration::from_secs(2));
    assert_eq!(m.state(), State::Backup);
}

// ===== whole elections on a simulated network =====

/// Routers on one simulated LAN: adverts reach every other router that is
/// alive and connected after `latency`.
struct Lan {
    routers: Vec<Machine>,
    /// Whether each router's process runs (SIGSTOP / SIGKILL clear it).
    running: Vec<bool>,
    /// Whether each router's cable is in (partitions clear it).
    connected: Vec<bool>,
    /// Who holds the VIP in the kernel: a killed or stopped process keeps it.
    holds_vip: Vec<bool>,
    /// Adverts in flight: (arrival, to, from, advert).
    wire: Vec<(Instant, usize, usize, Advert)>,
    now: Instant,
    latency: Duration,
    /// Master/backup changes per router, to count flapping.
    transitions: Vec<u32>,
}

impl Lan {
    fn new(priorities: &[u8], t0: Instant) -> Lan {
        let mut routers: Vec<_> = priorities
            .iter()
            .enumerate()
            .map(|(i, p)| Machine::new(config(*p, i as u8 + 1)))
            .collect();
        for r in &mut routers {
            r.start(t0);
        }
        let n = routers.len();
        let mut lan = Lan {
            routers,
            running: vec![true; n],
            connected: vec![true; n],
            holds_vip: vec![false; n],
            wire: Vec::new(),
            now: t0,
            latency: Duration::from_micros(200),
            transitions: vec![0; n],
        };
        for i in 0..n {
            lan.apply(i);
        }
        lan
    }

    fn apply(&mut self, i: usize) {
        while let Some(a) = self.routers[i].poll_action() {
            match a {
                Action::SendAdvert { priority } if self.connected[i] => {
                    let ad = advert(priority, 10);
                    for to in 0..self.routers.len() {
                        if to != i {
                            self.wire.push((self.now + self.latency, to, i, ad.clone()));
                        }
                    }
                }
                Action::SendAdvert { .. } | Action::Announce => {}
                Action::AddVips => self.holds_vip[i] = true,
                Action::RemoveVips => self.holds_vip[i] = false,
                Action::Transition { .. } => self.transitions[i] += 1,
            }
        }
    }

    /// Advances time in 1 ms steps, delivering adverts and firing timers.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += MS;
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) =
                self.wire.drain(..).partition(|(at, ..)| *at <= now);
            self.wire = later;
            for (_, to, from, ad) in due {
                if self.running[to] && self.connected[to] && self.connected[from] {
                    let from_addr = addr(from as u8 + 1);
                    self.routers[to].handle_advert(now, from_addr, &ad);
                    self.apply(to);
                }
            }
            for i in 0..self.routers.len() {
                if self.running[i] && self.routers[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.routers[i].handle_timeout(now);
                    self.apply(i);
                }
            }
        }
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|i| self.running[*i] && self.routers[*i].state() == State::Master)
            .collect()
    }

    fn vip_holders(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|i| self.holds_vip[*i])
            .collect()
    }
}

#[test]
fn two_and_three_routers_elect_the_highest_priority() {
    let t0 = Instant::now();
    for prios in [&[100, 150][..], &[150, 100, 120], &[90, 120, 200]] {
        let mut lan = Lan::new(prios, t0);
        lan.run(Duration::from_secs(2));
        let best = (0..prios.len()).max_by_key(|i| prios[*i]).unwrap();
        assert_eq!(lan.masters(), [best], "{prios:?}");
        assert_eq!(lan.vip_holders(), [best], "{prios:?}");
    }
}

#[test]
fn equal_priorities_elect_the_highest_address() {
    let mut lan = Lan::new(&[100, 100, 100], Instant::now());
    lan.run(Duration::from_secs(2));
    assert_eq!(lan.masters(), [2]);
}

#[test]
fn killed_master_is_replaced_within_the_master_down_interval() {
    let mut lan = Lan::new(&[150, 100, 120], Instant::now());
    lan.run(Duration::from_secs(1));
    lan.running[0] = false; // SIGKILL: silent, VIP left behind
    let mut waited = Duration::ZERO;
    while lan.masters().is_empty() && waited < Duration::from_secs(1) {
        lan.run(MS);
        waited += MS;
    }
    assert_eq!(lan.masters(), [2], "the next highest priority takes over");
    // 3 × 100 ms + skew(120) = 353 ms after the last advert, which was
    // sent up to one interval before the kill.
    assert!(waited >= Duration::from_millis(253), "{waited:?}");
    assert!(waited <= Duration::from_millis(355), "{waited:?}");
}

#[test]
fn graceful_stop_hands_over_within_the_skew() {
    let mut lan = Lan::new(&[150, 100], Instant::now());
    lan.run(Duration::from_secs(1));
    lan.routers[0].stop();
    lan.apply(0);
    lan.running[0] = false;
    // Skew of priority 100 is 61 ms.
    lan.run(Duration::from_millis(65));
    assert_eq!(lan.masters(), [1]);
    assert_eq!(lan.vip_holders(), [1]);
}

#[test]
fn split_brain_heals_to_one_master_with_the_vip() {
    let mut lan = Lan::new(&[150, 100], Instant::now());
    lan.run(Duration::from_secs(1));
    lan.connected = vec![false, false];
    lan.run(Duration::from_secs(1));
    assert_eq!(lan.masters(), [0, 1], "both masters while split");
    lan.connected = vec![true, true];
    lan.run(Duration::from_millis(250));
    assert_eq!(lan.masters(), [0]);
    assert_eq!(lan.vip_holders(), [0]);
}

#[test]
fn stopped_and_continued_master_ends_as_the_only_holder() {
    // SIGSTOP: the process sleeps holding the VIP; the backup takes over;
    // SIGCONT: the old master's late timers fire, it meets the new master.
    let mut lan = Lan::new(&[150, 100], Instant::now());
    lan.run(Duration::from_secs(1));
    lan.running[0] = false;
    lan.run(Duration::from_secs(2));
    assert_eq!(lan.vip_holders(), [0, 1]);
    lan.running[0] = true;
    lan.run(Duration::from_millis(300));
    assert_eq!(lan.masters(), [0]);
    assert_eq!(lan.vip_holders(), [0]);
}

#[test]
fn no_flapping_over_a_long_steady_run() {
    let mut lan = Lan::new(&[150, 100, 120], Instant::now());
    lan.run(Duration::from_secs(1));
    let before = lan.transitions.clone();
    lan.run(Duration::from_secs(60));
    assert_eq!(lan.transitions, before);
}
