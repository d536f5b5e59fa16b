//! Operation counters for `GET /v1/load`: how many queries, installs, updates, configures,
//! removes, purges and errors happened in the last 1, 5 and 15 minutes, pro-rated where an
//! operation straddles a window's edge (as the original agent reports them).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use masif_proto::Action;

/// The windows reported, in order.
pub(crate) const WINDOWS: [Duration; 3] = [
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
];

/// Most operations remembered (far more than 15 minutes of real work).
const MAX_OPS: usize = 100_000;

/// What kind of operation was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Query,
    Action(Action),
    Error,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Query => "query",
            OpKind::Action(a) => a.as_str(),
            OpKind::Error => "error",
        }
    }

    /// Every kind, in the order of the original's JSON.
    pub fn all() -> [OpKind; 7] {
        [
            OpKind::Query,
            OpKind::Action(Action::Install),
            OpKind::Action(Action::Update),
            OpKind::Action(Action::Configure),
            OpKind::Action(Action::Remove),
            OpKind::Action(Action::Purge),
            OpKind::Error,
        ]
    }
}

#[derive(Debug, Clone, Copy)]
struct Op {
    kind: OpKind,
    start: Instant,
    end: Instant,
}

/// The operations of the last 15 minutes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Load {
    ops: VecDeque<Op>,
}

impl Load {
    /// Records one operation that ran from `start` to `end` (equal for instant ones).
    pub(crate) fn record(&mut self, kind: OpKind, start: Instant, end: Instant) {
        let end = end.max(start);
        self.prune(end);
        if self.ops.len() >= MAX_OPS {
            self.ops.pop_front();
        }
        self.ops.push_back(Op { kind, start, end });
    }

    fn prune(&mut self, now: Instant) {
        let horizon = WINDOWS[2];
        while self
            .ops
            .front()
            .is_some_and(|op| now.saturating_duration_since(op.end) > horizon)
        {
            self.ops.pop_front();
        }
    }

    /// `{"query": [1m, 5m, 15m], "install": …, …, "error": …}` as of `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> BTreeMap<&'static str, [f64; 3]> {
        let mut out: BTreeMap<&'static str, [f64; 3]> =
            OpKind::all().iter().map(|k| (k.name(), [0.0; 3])).collect();
        for op in &self.ops {
            let counts = out.get_mut(op.kind.name()).expect("every kind is listed");
            for (i, window) in WINDOWS.iter().enumerate() {
                counts[i] += share(op, now, *window);
            }
        }
        out
    }
}

/// The part of `op` that lies within the `window` before `now` (1.0 = all of it).
fn share(op: &Op, now: Instant, window: Duration) -> f64 {
    let lo = now.checked_sub(window).unwrap_or(op.start.min(now));
    if op.end <= op.start {
        return if op.start >= lo && op.start <= now {
            1.0
        } else {
            0.0
        };
    }
    let from = op.start.max(lo);
    let to = op.end.min(now);
    if to <= from {
        return 0.0;
    }
    (to - from).as_secs_f64() / (op.end - op.start).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn every_kind_is_listed_even_when_idle() {
        let snap = Load::default().snapshot(Instant::now());
        let keys: Vec<_> = snap.keys().copied().collect();
        assert_eq!(
            keys,
            [
                "configure",
                "error",
                "install",
                "purge",
                "query",
                "remove",
                "update"
            ]
        );
        assert!(snap.values().all(|c| *c == [0.0; 3]));
    }

    #[test]
    fn operations_count_in_every_window_they_fall_in() {
        let t0 = Instant::now();
        let mut load = Load::default();
        load.record(OpKind::Query, t0, t0 + S);
        load.record(OpKind::Action(Action::Update), t0 + 2 * S, t0 + 4 * S);
        load.record(OpKind::Error, t0 + 4 * S, t0 + 4 * S);
        let snap = load.snapshot(t0 + 10 * S);
        assert_eq!(snap["query"], [1.0, 1.0, 1.0]);
        assert_eq!(snap["update"], [1.0, 1.0, 1.0]);
        assert_eq!(snap["error"], [1.0, 1.0, 1.0]);
        // Two minutes later only the 5- and 15-minute windows still hold them.
        let snap = load.snapshot(t0 + 130 * S);
        assert_eq!(snap["query"], [0.0, 1.0, 1.0]);
        let snap = load.snapshot(t0 + 1000 * S);
        assert_eq!(snap["query"], [0.0, 0.0, 0.0]);
    }

    #[test]
    fn an_operation_straddling_an_edge_is_pro_rated() {
        let t0 = Instant::now();
        let mut load = Load::default();
        // 40 s long; the 1-minute window ending at t0+90 s starts at t0+30 s: half of it.
        load.record(OpKind::Action(Action::Install), t0 + 10 * S, t0 + 50 * S);
        let snap = load.snapshot(t0 + 90 * S);
        assert!(
            (snap["install"][0] - 0.5).abs() < 1e-9,
            "{:?}",
            snap["install"]
        );
        assert_eq!(snap["install"][1], 1.0);
    }

    #[test]
    fn old_operations_are_forgotten() {
        let t0 = Instant::now();
        let mut load = Load::default();
        load.record(OpKind::Query, t0, t0);
        load.record(OpKind::Query, t0 + 2000 * S, t0 + 2000 * S);
        assert_eq!(load.ops.len(), 1);
    }
}
