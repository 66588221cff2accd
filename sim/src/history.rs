//! What clients did and saw, file by file, and which end states that allows.
//!
//! Each workload file `n` is touched by one client only, in sequence: written as `/w/f<n>`,
//! then perhaps renamed to `/w/r<n>` or deleted. An acknowledged operation has happened; a
//! failed one may or may not have (its answer was lost, a failover came between). So each
//! file's history allows a set of end [`Place`]s, and since no two clients share a file,
//! the history is linearizable exactly when every file ends in an allowed place.

use std::collections::{BTreeMap, BTreeSet};

use madsim::time::Instant;

/// Where a workload file can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// `/w/f<n>`.
    Original,
    /// `/w/r<n>`.
    Renamed,
    /// Neither.
    Gone,
}

impl Place {
    /// The path of file `n` in this place (`None` for `Gone`).
    pub fn path(self, n: u64) -> Option<String> {
        match self {
            Place::Original => Some(format!("/w/f{n}")),
            Place::Renamed => Some(format!("/w/r{n}")),
            Place::Gone => None,
        }
    }

    /// Which file a workload path names, and in which place.
    pub fn parse(path: &str) -> Option<(u64, Place)> {
        if let Some(n) = path.strip_prefix("/w/f") {
            return n.parse().ok().map(|n| (n, Place::Original));
        }
        path.strip_prefix("/w/r")?.parse().ok().map(|n| (n, Place::Renamed))
    }
}

/// One file's history.
#[derive(Clone, Debug)]
pub struct FileHistory {
    /// End places the history allows.
    pub allowed: BTreeSet<Place>,
    /// When its write was acknowledged, if it was.
    pub write_acked_at: Option<Instant>,
}

impl FileHistory {
    /// True when exactly one end place is allowed.
    pub fn certain(&self) -> Option<Place> {
        (self.allowed.len() == 1).then(|| *self.allowed.iter().next().expect("one place"))
    }
}

/// What a read of marker `/v/m<k>` saw: the marker was acknowledged at `acked_at` (by
/// another client, through whichever master led), the read started at `started_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerRead {
    pub marker: u64,
    pub acked_at: Instant,
    pub started_at: Instant,
    /// `Some(true)` found, `Some(false)` "no such file", `None` the read failed.
    pub found: Option<bool>,
}

/// Every file's history, and the marker reads.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub files: BTreeMap<u64, FileHistory>,
    pub reads: Vec<MarkerRead>,
}

impl History {
    /// The write of file `n` finished, acknowledged or not.
    pub fn write(&mut self, n: u64, acked: bool, at: Instant) {
        let allowed = if acked { [Place::Original].into() } else { [Place::Original, Place::Gone].into() };
        self.files.insert(n, FileHistory { allowed, write_acked_at: acked.then_some(at) });
    }

    /// File `n` was moved to `to` (rename or delete), acknowledged or not.
    pub fn move_to(&mut self, n: u64, to: Place, acked: bool) {
        if let Some(f) = self.files.get_mut(&n) {
            if acked {
                f.allowed = [to].into();
            } else {
                f.allowed.insert(to);
            }
        }
    }

    /// Acknowledged writes, in order of acknowledgement.
    pub fn acked_writes(&self) -> Vec<(u64, Instant)> {
        let mut v: Vec<(u64, Instant)> = self.files.iter().filter_map(|(n, f)| f.write_acked_at.map(|at| (*n, at))).collect();
        v.sort_by_key(|(n, at)| (*at, *n));
        v
    }

    /// Merges another client's history (disjoint file numbers).
    pub fn merge(&mut self, other: History) {
        self.files.extend(other.files);
        self.reads.extend(other.reads);
    }
}
