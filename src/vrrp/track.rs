//! Tracking (keepalived's `track_script`, done in-process): each tracked
//! thing is healthy or failing, with rise/fall hysteresis so one slow probe
//! does not move the VIP; failing ones lower the priority by their weight,
//! and a failing one of weight 0 puts the instance in Fault. Sans-IO: the
//! probes in `probes.rs` report results here.

use std::collections::BTreeMap;

use super::status::TrackInfo;

#[derive(Debug, Clone)]
struct Tracked {
    weight: u8,
    fall: u32,
    rise: u32,
    healthy: bool,
    /// Results in a row that disagree with `healthy`.
    streak: u32,
    detail: String,
}

/// What tracking asks of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub priority: u8,
    /// Set when a weight-0 item fails: give up the VIP whatever the
    /// priorities say.
    pub fault: Option<String>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    items: BTreeMap<String, Tracked>,
}

impl Tracker {
    /// Starts healthy: a node must not refuse the VIP only because its
    /// first probe has not run yet.
    pub fn add(&mut self, name: &str, weight: u8, fall: u32, rise: u32) {
        self.items.insert(
            name.to_owned(),
            Tracked {
                weight,
                fall: fall.max(1),
                rise: rise.max(1),
                healthy: true,
                streak: 0,
                detail: "not checked yet".into(),
            },
        );
    }

    /// One probe result. Returns whether the item changed state.
    pub fn report(&mut self, name: &str, ok: bool, detail: String) -> bool {
        let Some(t) = self.items.get_mut(name) else {
            return false;
        };
        t.detail = detail;
        if ok == t.healthy {
            t.streak = 0;
            return false;
        }
        t.streak += 1;
        let needed = if t.healthy { t.fall } else { t.rise };
        if t.streak < needed {
            return false;
        }
        t.healthy = ok;
        t.streak = 0;
        true
    }

    /// The effective priority for `configured`. The owner (255) is never
    /// lowered: its address is its own, as in keepalived.
    pub fn verdict(&self, configured: u8) -> Verdict {
        let failing = || self.items.iter().filter(|(_, t)| !t.healthy);
        let fault = failing()
            .find(|(_, t)| t.weight == 0)
            .map(|(name, t)| format!("{name}: {}", t.detail));
        let lost: u32 = failing().map(|(_, t)| u32::from(t.weight)).sum();
        let priority = if configured == 255 {
            255
        } else {
            // Never 0 by tracking: 0 on the wire means "I am leaving".
            u32::from(configured).saturating_sub(lost).max(1) as u8
        };
        Verdict { priority, fault }
    }

    pub fn snapshot(&self) -> BTreeMap<String, TrackInfo> {
        self.items
            .iter()
            .map(|(name, t)| {
                let info = TrackInfo {
                    healthy: t.healthy,
                    weight: t.weight,
                    detail: t.detail.clone(),
                };
                (name.clone(), info)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut t = Tracker::default();
        t.add("http", 60, 2, 3);
        assert!(!t.report("http", false, "refused".into()));
        assert_eq!(t.verdict(150).priority, 150, "one failure is not enough");
        assert!(t.report("http", false, "refused".into()));
        assert_eq!(t.verdict(150).priority, 90);
        assert!(!t.report("http", true, "ok".into()));
        assert!(!t.report("http", true, "ok".into()));
        assert_eq!(t.verdict(150).priority, 90);
        assert!(t.report("http", true, "ok".into()));
        assert_eq!(t.verdict(150).priority, 150);
    }

    #[test]
    fn a_success_in_between_restarts_the_count() {
        let mut t = Tracker::default();
        t.add("http", 60, 2, 2);
        t.report("http", false, String::new());
        t.report("http", true, String::new());
        t.report("http", false, String::new());
        assert_eq!(t.verdict(150).priority, 150);
    }

    #[test]
    fn weights_add_up_but_never_reach_zero_and_spare_the_owner() {
        let mut t = Tracker::default();
        t.add("http", 100, 1, 1);
        t.add("pooler", 100, 1, 1);
        t.report("http", false, String::new());
        t.report("pooler", false, String::new());
        assert_eq!(t.verdict(150).priority, 1);
        assert_eq!(t.verdict(255).priority, 255);
    }

    #[test]
    fn weight_zero_means_fault() {
        let mut t = Tracker::default();
        t.add("disk", 0, 1, 1);
        t.report("disk", false, "exit 1".into());
        assert_eq!(t.verdict(150).fault.as_deref(), Some("disk: exit 1"));
        t.report("disk", true, "exit 0".into());
        assert_eq!(t.verdict(150).fault, None);
    }
}
