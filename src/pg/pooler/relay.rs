//! The bookkeeping between a client and its server connection, as a plain
//! state machine (no IO): for every message sent to the server, what reply
//! the client expects, so that replies to messages the pooler added (a
//! Parse injected before a Bind) are dropped, and replies to messages it
//! answered itself (a Parse of a statement already prepared on this server)
//! are made up in the right place. See LIFECYCLE.md beside this file.

use std::collections::VecDeque;

/// A message sent to the server (or answered locally), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// `statement`: the pooler statement it prepares, if named (forgotten
    /// again if the Parse fails). `to_client`: false when the pooler
    /// injected it.
    Parse {
        statement: Option<u64>,
        to_client: bool,
    },
    Bind,
    Describe,
    Execute,
    /// `to_client`: false for a Close the pooler sent to evict a statement.
    Close {
        to_client: bool,
    },
    Sync,
    /// A simple Query or FunctionCall: ends at ReadyForQuery.
    Query,
    /// A ParseComplete the pooler owes the client without asking the server.
    LocalParseComplete,
}

/// What to do with one server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Drop,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("server reply '{}' does not match the request it answers ({expected:?})", *tag as char)]
pub struct Desync {
    pub tag: u8,
    pub expected: Option<Pending>,
}

#[derive(Default)]
pub struct Relay {
    queue: VecDeque<Pending>,
    /// The server reported an error in an extended-protocol batch and now
    /// ignores everything up to the client's next Sync.
    skipping: bool,
}

/// What the relay asks the session to do besides forwarding.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// LocalParseComplete messages to write to the client now, in order.
    pub parse_completes: usize,
    /// Statements not prepared after all (their Parse failed or was skipped).
    pub unprepared: Vec<u64>,
}

impl Relay {
    /// Nothing sent is still unanswered.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.skipping
    }

    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Records a message sent to the server (or a local answer owed).
    pub fn push(&mut self, p: Pending, fx: &mut Effects) {
        if self.skipping {
            match p {
                Pending::Sync => self.skipping = false,
                // The server discards it: no reply will come.
                Pending::Parse {
                    statement: Some(id),
                    ..
                } => {
                    fx.unprepared.push(id);
                    return;
                }
                _ => return,
            }
        }
        self.queue.push_back(p);
        self.emit_local(fx);
    }

    /// Handles one server message by its type byte.
    pub fn on_server(&mut self, tag: u8, fx: &mut Effects) -> Result<Verdict, Desync> {
        let front = self.queue.front().copied();
        let verdict = match (tag, front) {
            (b'1', Some(Pending::Parse { to_client, .. })) => {
                self.queue.pop_front();
                if to_client {
                    Verdict::Forward
                } else {
                    Verdict::Drop
                }
            }
            (b'2', Some(Pending::Bind)) => {
                self.queue.pop_front();
                Verdict::Forward
            }
            (b'3', Some(Pending::Close { to_client })) => {
                self.queue.pop_front();
                if to_client {
                    Verdict::Forward
                } else {
                    Verdict::Drop
                }
            }
            (b'T' | b'n', Some(Pending::Describe)) => {
                self.queue.pop_front();
                Verdict::Forward
            }
            (b'C' | b'I' | b's', Some(Pending::Execute)) => {
                self.queue.pop_front();
                Verdict::Forward
            }
            (b'E', Some(Pending::Query)) => Verdict::Forward,
            (b'E', _) => {
                // Everything up to the next Sync is skipped by the server.
                while let Some(p) = self.queue.front().copied() {
                    if matches!(p, Pending::Sync | Pending::Query) {
                        break;
                    }
                    self.queue.pop_front();
                    if let Pending::Parse {
                        statement: Some(id),
                        ..
                    } = p
                    {
                        fx.unprepared.push(id);
                    }
                }
                if self.queue.is_empty() {
                    self.skipping = true;
                }
                Verdict::Forward
            }
            (b'Z', Some(Pending::Sync | Pending::Query)) => {
                self.queue.pop_front();
                Verdict::Forward
            }
            // Within a simple query, or not tied to a request: rows,
            // descriptions, command tags, COPY, notices, notifications,
            // parameter changes, function results.
            (
                b'T' | b'D' | b'C' | b'I' | b'G' | b'H' | b'W' | b'd' | b'c' | b'V',
                Some(Pending::Query),
            ) => Verdict::Forward,
            (b't' | b'D' | b'G' | b'H' | b'W' | b'd' | b'c', Some(_)) => Verdict::Forward,
            (b'N' | b'A' | b'S', _) => Verdict::Forward,
            (tag, expected) => return Err(Desync { tag, expected }),
        };
        self.emit_local(fx);
        Ok(verdict)
    }

    fn emit_local(&mut self, fx: &mut Effects) {
        while self.queue.front() == Some(&Pending::LocalParseComplete) {
            self.queue.pop_front();
            fx.parse_completes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(relay: &mut Relay, replies: &[u8]) -> (Vec<Verdict>, Effects) {
        let mut fx = Effects::default();
        let v = replies
            .iter()
            .map(|t| relay.on_server(*t, &mut fx).expect("in sync"))
            .collect();
        (v, fx)
    }

    #[test]
    fn an_injected_parse_is_hidden_from_the_client() {
        let mut r = Relay::default();
        let mut fx = Effects::default();
        r.push(
            Pending::Parse {
                statement: Some(7),
                to_client: false,
            },
            &mut fx,
        );
        r.push(Pending::Bind, &mut fx);
        r.push(Pending::Execute, &mut fx);
        r.push(Pending::Sync, &mut fx);
        let (v, _) = run(&mut r, b"12DCZ");
        assert_eq!(
            v,
            [
                Verdict::Drop,
                Verdict::Forward,
                Verdict::Forward,
                Verdict::Forward,
                Verdict::Forward
            ]
        );
        assert!(r.is_idle());
    }

    #[test]
    fn a_local_parse_complete_comes_out_in_order() {
        let mut r = Relay::default();
        let mut fx = Effects::default();
        r.push(Pending::Bind, &mut fx);
        r.push(Pending::LocalParseComplete, &mut fx);
        assert_eq!(fx.parse_completes, 0, "must wait for the Bind's reply");
        r.push(Pending::Sync, &mut fx);
        let mut fx = Effects::default();
        r.on_server(b'2', &mut fx).expect("bind");
        assert_eq!(fx.parse_completes, 1);
        // At the front of an empty queue it is owed at once.
        let mut r = Relay::default();
        let mut fx = Effects::default();
        r.push(Pending::LocalParseComplete, &mut fx);
        assert_eq!(fx.parse_completes, 1);
    }

    #[test]
    fn an_error_skips_to_sync_and_forgets_failed_parses() {
        let mut r = Relay::default();
        let mut fx = Effects::default();
        r.push(
            Pending::Parse {
                statement: Some(1),
                to_client: true,
            },
            &mut fx,
        );
        r.push(Pending::Bind, &mut fx);
        r.push(
            Pending::Parse {
                statement: Some(2),
                to_client: false,
            },
            &mut fx,
        );
        r.push(Pending::Sync, &mut fx);
        let (v, fx) = run(&mut r, b"EZ");
        assert_eq!(v, [Verdict::Forward, Verdict::Forward]);
        assert_eq!(fx.unprepared, vec![1, 2]);
        assert!(r.is_idle());
    }

    #[test]
    fn messages_after_an_error_but_before_sync_get_no_reply() {
        let mut r = Relay::default();
        let mut fx = Effects::default();
        r.push(Pending::Bind, &mut fx);
        run(&mut r, b"E");
        assert!(!r.is_idle());
        let mut fx = Effects::default();
        r.push(
            Pending::Parse {
                statement: Some(9),
                to_client: true,
            },
            &mut fx,
        );
        r.push(Pending::LocalParseComplete, &mut fx);
        r.push(Pending::Execute, &mut fx);
        assert_eq!(fx.unprepared, vec![9]);
        assert_eq!(fx.parse_completes, 0);
        r.push(Pending::Sync, &mut fx);
        run(&mut r, b"Z");
        assert!(r.is_idle());
    }

    #[test]
    fn simple_queries_end_at_ready_for_query() {
        let mut r = Relay::default();
        let mut fx = Effects::default();
        r.push(Pending::Query, &mut fx);
        let (v, _) = run(&mut r, b"TDDCTCNSEZ");
        assert!(v.iter().all(|x| *x == Verdict::Forward));
        assert!(r.is_idle());
    }

    #[test]
    fn a_placeholder_parse_before_a_query_is_hidden() {
        // A client's "DEALLOCATE s1" as a Query: Parse piha_dealloc<N>,
        // then the Query deallocating it.
        let mut r = Relay::default();
        let mut fx = Effects::default();
        let hidden = Pending::Parse {
            statement: None,
            to_client: false,
        };
        r.push(hidden, &mut fx);
        r.push(Pending::Query, &mut fx);
        let (v, fx) = run(&mut r, b"1CZ");
        assert_eq!(v, [Verdict::Drop, Verdict::Forward, Verdict::Forward]);
        assert!(fx.unprepared.is_empty());
        assert!(r.is_idle());
        // Its Parse failing (a failed transaction) would leave the Query
        // unanswered; the session never sends it then, and the relay says
        // it still waits.
        let mut r = Relay::default();
        let mut fx = Effects::default();
        r.push(hidden, &mut fx);
        r.push(Pending::Query, &mut fx);
        run(&mut r, b"E");
        assert!(!r.is_idle());
    }

    #[test]
    fn a_reply_nobody_asked_for_is_a_desync() {
        let mut r = Relay::default();
        let mut fx = Effects::default();
        assert!(r.on_server(b'2', &mut fx).is_err());
        assert!(r.on_server(b'Z', &mut fx).is_err());
    }
}
