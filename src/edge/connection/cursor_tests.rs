//! The cursor's state machine, as tables: a log, a cursor, the limits; the step it returns, the
//! frames it delivered, where it ends and in which state.

use std::time::{Duration, Instant};

use super::*;
use crate::edge::log::entry::sample;

/// What a step put out: offsets of prices, and of conflated prices.
#[derive(Default, Debug, PartialEq, Eq)]
struct Got {
    prices: Vec<i64>,
    conflated: Vec<i64>,
}

impl Sink for Got {
    fn price(&mut self, e: &Entry) {
        self.prices.push(e.offset);
    }

    fn conflated(&mut self, e: &Entry) {
        self.conflated.push(e.offset);
    }
}

/// A partition holding offsets `[from, to)` in memory (symbol = offset % 3), `history` kept.
fn log(from: i64, to: i64, history: usize) -> PartitionLog {
    let log = PartitionLog::default();
    log.start_at(from, from - 1);
    log.append((from..to).map(|o| sample(o, (o % 3) as u32)), history);
    log
}

fn budget(frames: usize) -> Budget {
    Budget {
        frames,
        bytes: usize::MAX,
    }
}

struct Row {
    what: &'static str,
    /// Offsets in memory (`from..to`) and how many memory keeps.
    memory: (i64, i64, usize),
    cursor: Cursor,
    blocked: bool,
    max_lag: usize,
    policy: SlowClientPolicy,
    frames: usize,
    step: Step,
    got: Got,
    next: i64,
    mode: Mode,
}

fn run(rows: Vec<Row>, now: Instant) {
    for r in rows {
        let log = log(r.memory.0, r.memory.1, r.memory.2);
        let mut c = r.cursor.clone();
        let lim = Limits {
            max_lag: r.max_lag,
            blocked: r.blocked,
            now,
        };
        let mut got = Got::default();
        let step = c.pull(&log, None, r.policy, &lim, &mut budget(r.frames), &mut got);
        assert_eq!(step, r.step, "{}: step", r.what);
        assert_eq!(got, r.got, "{}: frames", r.what);
        assert_eq!(c.next(), r.next, "{}: next", r.what);
        assert_eq!(c.mode(), r.mode, "{}: mode", r.what);
    }
}

fn prices(o: impl IntoIterator<Item = i64>) -> Got {
    Got {
        prices: o.into_iter().collect(),
        conflated: Vec::new(),
    }
}

#[test]
fn live_and_catching_up_deliver_from_memory_within_the_budget() {
    let now = Instant::now();
    let base = |what, cursor, frames, step, got, next, mode| Row {
        what,
        memory: (10, 20, 100),
        cursor,
        blocked: false,
        max_lag: 100,
        policy: SlowClientPolicy::Conflate,
        frames,
        step,
        got,
        next,
        mode,
    };
    #[rustfmt::skip]
    let rows = vec![
        base("live at the end: nothing to do", Cursor::live(0, 20), 10, Step::Wait, Got::default(), 20, Mode::Live),
        base("live behind: everything up to the end", Cursor::live(0, 15), 10, Step::Wait, prices(15..20), 20, Mode::Live),
        base("live, budget short: stops where it ran out", Cursor::live(0, 12), 3, Step::Full, prices(12..15), 15, Mode::Live),
        base("catching up reaches its target and goes live", Cursor { partition: 0, next: 12, mode: Mode::CatchingUp { target: 18, retargets: 0, }, }, 100, Step::Wait, prices(12..20), 20, Mode::Live),
        base("catching up, budget short of the target", Cursor { partition: 0, next: 12, mode: Mode::CatchingUp { target: 18, retargets: 0, }, }, 2, Step::Full, prices(12..14), 14, Mode::CatchingUp { target: 18, retargets: 0, }),
        base("a resume inside memory catches up", Cursor::resume(0, 14, now + Duration::from_secs(2)), 100, Step::Wait, prices(15..20), 20, Mode::Live),
        base("a resume at the end is live at once", Cursor::resume(0, 19, now + Duration::from_secs(2)), 100, Step::Wait, Got::default(), 20, Mode::Live),
    ];
    run(rows, now);
}

#[test]
fn a_cursor_before_memory_replays_from_kafka_unless_the_client_is_the_cause() {
    let now = Instant::now();
    let base = |what, cursor, blocked, policy, step, got, next, mode| Row {
        what,
        // Memory keeps the last 5 of 10..30: 25..30.
        memory: (10, 30, 5),
        cursor,
        blocked,
        max_lag: 3,
        policy,
        frames: 100,
        step,
        got,
        next,
        mode,
    };
    let conflated = Got {
        prices: Vec::new(),
        // The latest per symbol (offset % 3) at or after the cursor.
        conflated: vec![27, 28, 29],
    };
    #[rustfmt::skip]
    let rows = vec![
        base("a burst overran a live cursor: replay, skip nothing", Cursor::live(0, 12), false, SlowClientPolicy::Conflate, Step::Replay { from: 12 }, Got::default(), 12, Mode::Replaying { target: 30, retargets: 0, }),
        base("a slow client overran: conflated to the latest per symbol", Cursor::live(0, 12), true, SlowClientPolicy::Conflate, Step::Conflated, conflated, 30, Mode::Live),
        base("a slow client on a close channel", Cursor::live(0, 12), true, SlowClientPolicy::Close, Step::Close, Got::default(), 12, Mode::Closed),
        base("a slow client lagging inside memory on a close channel", Cursor::live(0, 25), true, SlowClientPolicy::Close, Step::Close, Got::default(), 25, Mode::Closed),
        base("lag is measured only when the socket pushes back", Cursor::live(0, 25), false, SlowClientPolicy::Close, Step::Wait, prices(25..30), 30, Mode::Live),
        base("a resume before memory replays from Kafka to the end it saw", Cursor::resume(0, 11, now + Duration::from_secs(2)), false, SlowClientPolicy::Conflate, Step::Replay { from: 12 }, Got::default(), 12, Mode::Replaying { target: 30, retargets: 0, }),
        base("catching up overtaken by memory: to Kafka, keeping its target", Cursor { partition: 0, next: 20, mode: Mode::CatchingUp { target: 28, retargets: 2, }, }, false, SlowClientPolicy::Conflate, Step::Replay { from: 20 }, Got::default(), 20, Mode::Replaying { target: 28, retargets: 2, }),
        base("a replaying cursor waits for its replay", Cursor { partition: 0, next: 20, mode: Mode::Replaying { target: 28, retargets: 0, }, }, false, SlowClientPolicy::Conflate, Step::AwaitReplay, Got::default(), 20, Mode::Replaying { target: 28, retargets: 0, }),
    ];
    run(rows, now);
}

#[test]
fn a_catch_up_chases_a_moving_end_a_bounded_number_of_times() {
    let now = Instant::now();
    let lim = Limits {
        max_lag: 2,
        blocked: false,
        now,
    };
    let log = log(0, 10, 100);
    let mut c = Cursor {
        partition: 0,
        next: 0,
        mode: Mode::CatchingUp {
            target: 4,
            retargets: 0,
        },
    };
    let mut got = Got::default();
    // Reaches 4 with the budget of 4: the end (10) is 6 away, more than max_lag: new target.
    let step = c.pull(
        &log,
        None,
        SlowClientPolicy::Conflate,
        &lim,
        &mut budget(4),
        &mut got,
    );
    assert_eq!(step, Step::Full);
    assert_eq!(
        c.mode(),
        Mode::CatchingUp {
            target: 10,
            retargets: 1
        }
    );
    // With retargets used up, reaching the target means live whatever the lag.
    let mut c = Cursor {
        partition: 0,
        next: 0,
        mode: Mode::CatchingUp {
            target: 4,
            retargets: MAX_RETARGETS,
        },
    };
    let step = c.pull(
        &log,
        None,
        SlowClientPolicy::Conflate,
        &lim,
        &mut budget(4),
        &mut got,
    );
    assert_eq!((step, c.mode(), c.next()), (Step::Full, Mode::Live, 4));
}

#[test]
fn a_resume_past_the_end_waits_for_this_edge_then_gives_up_at_its_deadline() {
    let now = Instant::now();
    let until = now + Duration::from_secs(2);
    let log = log(10, 20, 100);
    let mut c = Cursor::resume(1, 24, until);
    let mut got = Got::default();
    let lim = |now| Limits {
        max_lag: 100,
        blocked: false,
        now,
    };
    let pull = |c: &mut Cursor, got: &mut Got, at| {
        c.pull(
            &log,
            None,
            SlowClientPolicy::Conflate,
            &lim(at),
            &mut budget(100),
            got,
        )
    };
    assert_eq!(pull(&mut c, &mut got, now), Step::WaitUntil(until));
    assert!(c.is_waiting());
    // This edge reads on: 20..26 arrive; the cursor settles and delivers from 25.
    log.append((20..26).map(|o| sample(o, 0)), 100);
    assert_eq!(pull(&mut c, &mut got, now), Step::Wait);
    assert_eq!((got.prices, c.mode()), (vec![25], Mode::Live));
    // Another that this edge never reaches: a gap at the deadline, naming the partition.
    let mut c = Cursor::resume(1, 5_000, until);
    let mut got = Got::default();
    assert_eq!(pull(&mut c, &mut got, now), Step::WaitUntil(until));
    assert_eq!(
        pull(&mut c, &mut got, until),
        Step::Gap("partition 1: seqNo 5000 is past the end of the log (25)".into())
    );
    assert_eq!(c.mode(), Mode::Closed);
    assert_eq!(
        pull(&mut c, &mut got, until),
        Step::Wait,
        "closed stays closed"
    );
}

#[test]
fn replay_items_move_the_cursor_and_hand_over_to_memory() {
    let log = log(100, 110, 100);
    let mut c = Cursor::live(2, 50);
    let mut got = Got::default();
    let mut b = budget(100);
    let now = Instant::now();
    let lim = Limits {
        max_lag: 100,
        blocked: false,
        now,
    };
    assert_eq!(
        c.pull(
            &log,
            None,
            SlowClientPolicy::Conflate,
            &lim,
            &mut b,
            &mut got
        ),
        Step::Replay { from: 50 }
    );
    let mut filter = SymbolSet::default();
    filter.insert(1);
    for o in [50, 51, 52, 49] {
        // 49 is older than the cursor (a re-fetch): skipped.
        c.replayed(
            Some(ReplayItem::Record(sample(o, (o % 3) as u32))),
            Some(&filter),
            &mut b,
            &mut got,
        )
        .unwrap();
    }
    // Only symbol 1 passes the filter, but the cursor moves past every record.
    assert_eq!((got.prices.clone(), c.next()), (vec![52], 53));
    c.replayed(Some(ReplayItem::Reached(100)), None, &mut b, &mut got)
        .unwrap();
    assert_eq!(
        c.mode(),
        Mode::CatchingUp {
            target: 110,
            retargets: 0
        }
    );
    assert_eq!(
        c.pull(
            &log,
            None,
            SlowClientPolicy::Conflate,
            &lim,
            &mut b,
            &mut got
        ),
        Step::Wait
    );
    assert_eq!((c.next(), c.mode()), (110, Mode::Live));
    assert_eq!(got.prices.len(), 1 + 10);
}

#[test]
fn a_replay_that_fails_closes_the_cursor_with_the_reason() {
    let cases: Vec<(Option<ReplayItem>, &str)> = vec![
        (
            Some(ReplayItem::Gap { wanted: 8, low: 40 }),
            "partition 0: seqNo 7 is no longer in Kafka (the log starts at 40)",
        ),
        (
            Some(ReplayItem::Failed("broker down".into())),
            "partition 0: replay from Kafka failed: broker down",
        ),
        (None, "partition 0: replay from Kafka stopped"),
    ];
    for (item, why) in cases {
        let mut c = Cursor {
            partition: 0,
            next: 8,
            mode: Mode::Replaying {
                target: 50,
                retargets: 0,
            },
        };
        let r = c.replayed(item, None, &mut budget(10), &mut Got::default());
        assert_eq!(r, Err(why.to_string()));
        assert_eq!(c.mode(), Mode::Closed);
    }
}
