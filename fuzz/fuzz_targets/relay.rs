//! The relay's bookkeeping (which reply answers which request) under any
//! sequence of requests sent and server replies received, in sync or not:
//! it must never panic, and what it reports must add up.

#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use piha::pg::pooler::relay::{Effects, Pending, Relay, Verdict};

#[derive(Arbitrary, Debug)]
enum Op {
    Parse {
        statement: Option<u8>,
        to_client: bool,
    },
    Bind,
    Describe,
    Execute,
    Close {
        to_client: bool,
    },
    Sync,
    Query,
    LocalParseComplete,
    /// One server message by its type byte.
    Server(u8),
    /// A server message from the set the relay knows, to get past the
    /// first desync more often than a random byte would.
    Known(Known),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Known {
    ParseComplete,
    BindComplete,
    CloseComplete,
    RowDescription,
    NoData,
    DataRow,
    CommandComplete,
    EmptyQuery,
    Suspended,
    Error,
    Notice,
    Ready,
    ParameterStatus,
    CopyIn,
    CopyOut,
    CopyData,
    CopyDone,
}

impl Known {
    fn tag(self) -> u8 {
        match self {
            Known::ParseComplete => b'1',
            Known::BindComplete => b'2',
            Known::CloseComplete => b'3',
            Known::RowDescription => b'T',
            Known::NoData => b'n',
            Known::DataRow => b'D',
            Known::CommandComplete => b'C',
            Known::EmptyQuery => b'I',
            Known::Suspended => b's',
            Known::Error => b'E',
            Known::Notice => b'N',
            Known::Ready => b'Z',
            Known::ParameterStatus => b'S',
            Known::CopyIn => b'G',
            Known::CopyOut => b'H',
            Known::CopyData => b'd',
            Known::CopyDone => b'c',
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut relay = Relay::default();
    let mut fx = Effects::default();
    let mut pushed = 0usize;
    let mut parses: HashMap<u64, usize> = HashMap::new();
    let mut locals = 0usize;
    let mut replies = 0usize;
    let mut forwarded = 0usize;
    for op in ops {
        let p = match op {
            Op::Parse {
                statement,
                to_client,
            } => {
                let statement = statement.map(u64::from);
                if let Some(id) = statement {
                    *parses.entry(id).or_default() += 1;
                }
                Pending::Parse {
                    statement,
                    to_client,
                }
            }
            Op::Bind => Pending::Bind,
            Op::Describe => Pending::Describe,
            Op::Execute => Pending::Execute,
            Op::Close { to_client } => Pending::Close { to_client },
            Op::Sync => Pending::Sync,
            Op::Query => Pending::Query,
            Op::LocalParseComplete => {
                locals += 1;
                Pending::LocalParseComplete
            }
            Op::Server(tag) => {
                server(&mut relay, tag, &mut fx, &mut replies, &mut forwarded);
                continue;
            }
            Op::Known(k) => {
                server(&mut relay, k.tag(), &mut fx, &mut replies, &mut forwarded);
                continue;
            }
        };
        pushed += 1;
        relay.push(p, &mut fx);
        assert!(relay.in_flight() <= pushed);
    }
    // Made-up ParseCompletes: never more than were owed.
    assert!(
        fx.parse_completes <= locals,
        "{} > {locals}",
        fx.parse_completes
    );
    // A statement is reported unprepared at most once per Parse of it.
    let mut unprepared: HashMap<u64, usize> = HashMap::new();
    for id in &fx.unprepared {
        *unprepared.entry(*id).or_default() += 1;
    }
    for (id, n) in unprepared {
        let sent = parses.get(&id).copied().unwrap_or(0);
        assert!(
            n <= sent,
            "statement {id} unprepared {n} times, parsed {sent}"
        );
    }
    assert!(forwarded <= replies);
    if relay.is_idle() {
        assert_eq!(relay.in_flight(), 0);
    }
});

fn server(relay: &mut Relay, tag: u8, fx: &mut Effects, replies: &mut usize, fwd: &mut usize) {
    *replies += 1;
    let before = relay.in_flight();
    match relay.on_server(tag, fx) {
        Ok(Verdict::Forward) => *fwd += 1,
        Ok(Verdict::Drop) => {
            // Only replies to the pooler's own Parse/Close are hidden, and
            // each takes its request off the queue.
            assert!(matches!(tag, b'1' | b'3'), "dropped '{}'", tag as char);
            assert!(relay.in_flight() < before);
        }
        Err(desync) => assert_eq!(desync.tag, tag),
    }
    // A reply never adds to what is outstanding.
    assert!(relay.in_flight() <= before);
}
