//! A master's role as a state machine: events in, commands out, no IO (sans-IO, as
//! openraft's engine). `master/node.rs` carries each command out and feeds back what
//! happened; the order of a take-over and of a step-down is decided here, where unit tests
//! assert it command by command.
//!
//! The life of a master: recover the journal → follow it as a standby (tail it, checkpoint
//! every period, campaign) → when elected: claim the epoch → final catch-up → start the
//! writer → settle pending under-storage intents → serve → announce → lead until stopped,
//! deposed or the journal fails → back to recovering.
//!
//! Architecture Invariant: nothing is served before the epoch is claimed, the journal caught
//! up, the writer started and pending intents settled; a deposed or failed leader aborts
//! its writer before it does anything else.

use std::time::Duration;

/// Longest pause between attempts after failures.
pub const MAX_RETRY_SLEEP: Duration = Duration::from_secs(5);

/// What happened, as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The process starts.
    Started,
    /// The journal was recovered up to `next_sequence`.
    Recovered { next_sequence: u64 },
    /// Recovery failed (and may work later).
    RecoveryFailed,
    /// A standby's tailing pass brought it to `next_sequence`.
    TailedTo { next_sequence: u64 },
    /// The campaign failed (and may work later).
    CampaignFailed,
    /// This master won the election with `epoch`.
    Elected { epoch: u64 },
    /// The epoch is claimed in the journal.
    EpochClaimed,
    /// The final catch-up is done: the namespace holds every entry of older epochs.
    CaughtUp,
    /// The journal writer of the new epoch is running.
    WriterStarted,
    /// Under-storage intents a previous leader left are settled (or handed to the
    /// background, where they are retried while serving).
    Settled,
    /// Clients and workers can find this leader.
    Announced,
    /// A take-over step (claim, catch-up, writer start, announce) failed.
    TakeOverFailed,
    /// Leadership is lost (session expired, deposed).
    Lost,
    /// A journal write or sync failed.
    JournalFailed,
    /// Asked to stop.
    Stop,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Rebuild the namespace from the newest checkpoint and the logs.
    Recover,
    /// Start (or restart) campaigning for leadership.
    Campaign,
    /// Write a checkpoint of the standby's namespace.
    WriteCheckpoint,
    /// Claim `epoch` in the journal: no older leader acknowledges anything after this.
    ClaimEpoch { epoch: u64 },
    /// Apply every entry journaled before the claim.
    CatchUp,
    /// Start appending as the leader of `epoch`.
    StartWriter { epoch: u64 },
    /// Settle pending under-storage intents.
    Settle,
    /// Answer requests as the leader.
    Serve,
    /// Publish this master as the leader.
    Announce,
    /// Stop answering as the leader.
    StopServing,
    /// Stop the writer without writing anything more.
    AbortWriter,
    /// Write what is queued, complete the open segment, stop the writer.
    CloseWriter,
    /// Give up the election (end the session).
    Resign,
    /// Wait this long before the next command.
    Backoff(Duration),
    /// The process is done.
    Exit,
}

/// Where the master is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Recovering the journal.
    Recovering,
    /// A standby: following the journal, campaigning.
    Following,
    /// Elected with `epoch`, taking over; `step` is what it waits for.
    TakingOver { epoch: u64, step: TakeOver },
    /// The serving leader of `epoch`.
    Leading { epoch: u64 },
    /// Done.
    Stopped,
}

/// The steps of a take-over, in order: each waits for the event that ends the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TakeOver {
    Claiming,
    CatchingUp,
    StartingWriter,
    Settling,
    Announcing,
}

impl TakeOver {
    /// The event that completes this step, and the step after it.
    fn completed_by(self) -> (Event, Option<TakeOver>) {
        match self {
            TakeOver::Claiming => (Event::EpochClaimed, Some(TakeOver::CatchingUp)),
            TakeOver::CatchingUp => (Event::CaughtUp, Some(TakeOver::StartingWriter)),
            TakeOver::StartingWriter => (Event::WriterStarted, Some(TakeOver::Settling)),
            TakeOver::Settling => (Event::Settled, Some(TakeOver::Announcing)),
            TakeOver::Announcing => (Event::Announced, None),
        }
    }

    /// What starts this step of taking `epoch` over.
    fn commands(self, epoch: u64) -> Vec<Command> {
        match self {
            TakeOver::Claiming => vec![Command::ClaimEpoch { epoch }],
            TakeOver::CatchingUp => vec![Command::CatchUp],
            TakeOver::StartingWriter => vec![Command::StartWriter { epoch }],
            TakeOver::Settling => vec![Command::Settle],
            TakeOver::Announcing => vec![Command::Serve, Command::Announce],
        }
    }

    /// True once the writer of the new epoch runs (it must be aborted on the way out).
    fn writer_started(self) -> bool {
        self >= TakeOver::Settling
    }

    /// True once requests are served (serving must stop on the way out).
    fn serving(self) -> bool {
        self == TakeOver::Announcing
    }
}

/// The role state machine of one master process.
#[derive(Clone, Debug)]
pub struct RoleEngine {
    phase: Phase,
    checkpoint_period_entries: u64,
    /// Pause before campaigning again after a failed campaign.
    campaign_retry: Duration,
    /// The sequence of the standby's last checkpoint (or of its recovery).
    checkpointed_at: u64,
    /// Failures since the last successful take-over: the backoff grows with them.
    failures: u32,
}

impl RoleEngine {
    /// A master that checkpoints as a standby every `checkpoint_period_entries` entries and
    /// campaigns again `campaign_retry` after a failed campaign (at most [`MAX_RETRY_SLEEP`]).
    pub fn new(checkpoint_period_entries: u64, campaign_retry: Duration) -> Self {
        RoleEngine {
            phase: Phase::Recovering,
            checkpoint_period_entries: checkpoint_period_entries.max(1),
            campaign_retry: campaign_retry.min(MAX_RETRY_SLEEP),
            checkpointed_at: 0,
            failures: 0,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn backoff(&self) -> Duration {
        (Duration::from_millis(100) * 2u32.saturating_pow(self.failures.min(6))).min(MAX_RETRY_SLEEP)
    }

    /// What leaving a take-over at `step` must undo first: the writer, then serving.
    fn undo(step: TakeOver) -> Vec<Command> {
        let mut commands = Vec::new();
        if step.writer_started() {
            commands.push(Command::AbortWriter);
        }
        if step.serving() {
            commands.push(Command::StopServing);
        }
        commands
    }

    /// After a failed or ended term: count the failure (if it was one) and start over.
    fn restart(&mut self, failed: bool) -> Vec<Command> {
        if failed {
            self.failures = self.failures.saturating_add(1);
        }
        self.phase = Phase::Recovering;
        let mut commands = vec![Command::Resign];
        if self.failures > 0 {
            commands.push(Command::Backoff(self.backoff()));
        }
        commands.push(Command::Recover);
        commands
    }

    /// Takes one event; returns the commands to carry out, in order. An event that does not
    /// fit the phase (a late report of a step already abandoned) changes nothing.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        use Command as C;
        match (self.phase, event) {
            (Phase::Stopped, _) => Vec::new(),
            (Phase::Recovering | Phase::Following, Event::Stop) => {
                self.phase = Phase::Stopped;
                vec![C::Exit]
            }
            (Phase::Recovering, Event::Started) => vec![C::Recover],
            (Phase::Recovering, Event::RecoveryFailed) => vec![C::Backoff(MAX_RETRY_SLEEP), C::Recover],
            (Phase::Recovering, Event::Recovered { next_sequence }) => {
                self.phase = Phase::Following;
                self.checkpointed_at = next_sequence;
                vec![C::Campaign]
            }
            (Phase::Following, Event::TailedTo { next_sequence }) => {
                if next_sequence.saturating_sub(self.checkpointed_at) >= self.checkpoint_period_entries {
                    self.checkpointed_at = next_sequence;
                    vec![C::WriteCheckpoint]
                } else {
                    Vec::new()
                }
            }
            (Phase::Following, Event::CampaignFailed) => vec![C::Backoff(self.campaign_retry), C::Campaign],
            (Phase::Following, Event::Elected { epoch }) => {
                self.phase = Phase::TakingOver { epoch, step: TakeOver::Claiming };
                TakeOver::Claiming.commands(epoch)
            }
            (Phase::TakingOver { step, .. }, Event::TakeOverFailed | Event::Lost | Event::JournalFailed) => [Self::undo(step), self.restart(true)].concat(),
            (Phase::TakingOver { step, .. }, Event::Stop) => {
                self.phase = Phase::Stopped;
                [Self::undo(step), vec![C::Resign, C::Exit]].concat()
            }
            (Phase::TakingOver { epoch, step }, event) => {
                let (completes, next) = step.completed_by();
                if event != completes {
                    return Vec::new();
                }
                match next {
                    Some(next) => {
                        self.phase = Phase::TakingOver { epoch, step: next };
                        next.commands(epoch)
                    }
                    None => {
                        self.phase = Phase::Leading { epoch };
                        self.failures = 0;
                        Vec::new()
                    }
                }
            }
            (Phase::Leading { .. }, Event::Lost) => [vec![C::AbortWriter, C::StopServing], self.restart(false)].concat(),
            (Phase::Leading { .. }, Event::JournalFailed) => [vec![C::AbortWriter, C::StopServing], self.restart(true)].concat(),
            (Phase::Leading { .. }, Event::Stop) => {
                self.phase = Phase::Stopped;
                vec![C::StopServing, C::CloseWriter, C::Resign, C::Exit]
            }
            _ => Vec::new(),
        }
    }
}

/// The leader's checkpoint policy, a fallback: standbys checkpoint every period (see
/// [`RoleEngine`]), so the leader never stops for one while they keep up. After twice the
/// period of entries it asks the journal whether a recent checkpoint exists; only if none
/// does is one wanted, and the next mutation snapshots (under the state lock, so the
/// snapshot is exact). One checkpoint write at a time.
#[derive(Clone, Debug)]
pub struct LeaderCheckpoints {
    period_entries: u64,
    entries_since: u64,
    wanted: bool,
    writing: bool,
}

/// What the leader does about checkpoints after applying an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointStep {
    Nothing,
    /// Snapshot the namespace now and write it in the background.
    Snapshot,
    /// Ask the journal for its newest checkpoint, then report it with [`LeaderCheckpoints::found`].
    LookForRecent,
}

impl LeaderCheckpoints {
    /// A policy for a checkpoint period of `period_entries`.
    pub fn new(period_entries: u64) -> Self {
        LeaderCheckpoints { period_entries: period_entries.max(1), entries_since: 0, wanted: false, writing: false }
    }

    /// An operation of `entries` entries was applied.
    pub fn applied(&mut self, entries: u64) -> CheckpointStep {
        self.entries_since = self.entries_since.saturating_add(entries);
        if self.writing {
            return CheckpointStep::Nothing;
        }
        if self.wanted {
            (self.wanted, self.writing, self.entries_since) = (false, true, 0);
            return CheckpointStep::Snapshot;
        }
        if self.entries_since >= self.period_entries.saturating_mul(2) {
            self.entries_since = 0;
            return CheckpointStep::LookForRecent;
        }
        CheckpointStep::Nothing
    }

    /// The journal's newest checkpoint is at `newest` (none: `None`), looked up when the
    /// journal was at `position`. Returns true if that is too old and the leader will write
    /// one at its next mutation.
    pub fn found(&mut self, newest: Option<u64>, position: u64) -> bool {
        let recent = newest.is_some_and(|n| n.saturating_add(self.period_entries) >= position);
        self.wanted |= !recent;
        !recent
    }

    /// The checkpoint write ended (written or failed: a failed one is tried again after
    /// more entries).
    pub fn written(&mut self) {
        self.writing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command as C;

    const CAMPAIGN_RETRY: Duration = Duration::from_millis(500);

    #[test]
    fn a_failed_campaign_is_retried_after_the_configured_pause() {
        let mut r = RoleEngine::new(10, CAMPAIGN_RETRY);
        r.handle(Event::Recovered { next_sequence: 0 });
        assert_eq!(r.handle(Event::CampaignFailed), vec![C::Backoff(CAMPAIGN_RETRY), C::Campaign]);
        assert_eq!(r.phase(), Phase::Following);
    }

    /// An engine elected with epoch 7 after recovering to 100.
    fn elected() -> RoleEngine {
        let mut r = RoleEngine::new(1000, CAMPAIGN_RETRY);
        assert_eq!(r.handle(Event::Started), vec![C::Recover]);
        assert_eq!(r.handle(Event::Recovered { next_sequence: 100 }), vec![C::Campaign]);
        assert_eq!(r.handle(Event::Elected { epoch: 7 }), vec![C::ClaimEpoch { epoch: 7 }]);
        r
    }

    /// Drives an elected engine to a serving leader.
    fn leading() -> RoleEngine {
        let mut r = elected();
        assert_eq!(r.handle(Event::EpochClaimed), vec![C::CatchUp]);
        assert_eq!(r.handle(Event::CaughtUp), vec![C::StartWriter { epoch: 7 }]);
        assert_eq!(r.handle(Event::WriterStarted), vec![C::Settle]);
        assert_eq!(r.handle(Event::Settled), vec![C::Serve, C::Announce]);
        assert_eq!(r.handle(Event::Announced), vec![]);
        assert_eq!(r.phase(), Phase::Leading { epoch: 7 });
        r
    }

    #[test]
    fn a_take_over_claims_catches_up_starts_the_writer_settles_then_serves_and_announces() {
        leading();
    }

    #[test]
    fn nothing_is_served_before_the_intents_are_settled() {
        // Every event that could come early, in every take-over phase, yields no Serve.
        let early = [Event::EpochClaimed, Event::CaughtUp, Event::WriterStarted, Event::Announced, Event::TailedTo { next_sequence: 5000 }];
        let mut r = elected();
        for step in [Event::EpochClaimed, Event::CaughtUp, Event::WriterStarted] {
            for e in &early {
                let mut probe = r.clone();
                assert!(!probe.handle(e.clone()).contains(&C::Serve), "{e:?} before settling served in {:?}", r.phase());
            }
            r.handle(step);
        }
        assert!(r.handle(Event::Settled).starts_with(&[C::Serve]));
        // Steps out of order are ignored: no writer before the catch-up, no catch-up before
        // the claim, no serving before the writer.
        let mut r = elected();
        assert_eq!(r.handle(Event::Settled), vec![]);
        assert_eq!(r.handle(Event::CaughtUp), vec![]);
        assert_eq!(r.handle(Event::WriterStarted), vec![]);
        assert_eq!(r.phase(), Phase::TakingOver { epoch: 7, step: TakeOver::Claiming });
    }

    #[test]
    fn a_lost_leader_aborts_its_writer_before_anything_else_and_starts_over() {
        let mut r = leading();
        assert_eq!(r.handle(Event::Lost), vec![C::AbortWriter, C::StopServing, C::Resign, C::Recover]);
        assert_eq!(r.phase(), Phase::Recovering);
        // A journal failure does the same, and backs off before recovering.
        let mut r = leading();
        assert_eq!(r.handle(Event::JournalFailed), vec![C::AbortWriter, C::StopServing, C::Resign, C::Backoff(Duration::from_millis(200)), C::Recover]);
    }

    #[test]
    fn a_failed_take_over_undoes_what_it_started_and_backs_off_more_each_time() {
        // Before the writer: only resign.
        let mut r = elected();
        assert_eq!(r.handle(Event::TakeOverFailed), vec![C::Resign, C::Backoff(Duration::from_millis(200)), C::Recover]);
        // Announce failed: the writer is aborted and serving stops.
        r.handle(Event::Recovered { next_sequence: 100 });
        r.handle(Event::Elected { epoch: 8 });
        for e in [Event::EpochClaimed, Event::CaughtUp, Event::WriterStarted, Event::Settled] {
            r.handle(e);
        }
        assert_eq!(r.handle(Event::TakeOverFailed), vec![C::AbortWriter, C::StopServing, C::Resign, C::Backoff(Duration::from_millis(400)), C::Recover]);
        // Lost during the take-over, after the writer started.
        r.handle(Event::Recovered { next_sequence: 100 });
        r.handle(Event::Elected { epoch: 9 });
        r.handle(Event::EpochClaimed);
        r.handle(Event::CaughtUp);
        r.handle(Event::WriterStarted);
        assert_eq!(r.handle(Event::Lost), vec![C::AbortWriter, C::Resign, C::Backoff(Duration::from_millis(800)), C::Recover]);
        // A term that got to serve resets the count.
        r.handle(Event::Recovered { next_sequence: 100 });
        r.handle(Event::Elected { epoch: 10 });
        for e in [Event::EpochClaimed, Event::CaughtUp, Event::WriterStarted, Event::Settled, Event::Announced] {
            r.handle(e);
        }
        assert_eq!(r.handle(Event::Lost), vec![C::AbortWriter, C::StopServing, C::Resign, C::Recover]);
    }

    #[test]
    fn backoff_is_bounded() {
        let mut r = RoleEngine::new(10, CAMPAIGN_RETRY);
        r.handle(Event::Recovered { next_sequence: 0 });
        for epoch in 1..20 {
            r.handle(Event::Elected { epoch });
            let commands = r.handle(Event::TakeOverFailed);
            let sleep = commands.iter().find_map(|c| if let C::Backoff(d) = c { Some(*d) } else { None }).unwrap();
            assert!(sleep <= MAX_RETRY_SLEEP);
            r.handle(Event::Recovered { next_sequence: 0 });
        }
    }

    #[test]
    fn a_standby_checkpoints_once_per_period_of_entries() {
        let mut r = RoleEngine::new(50, CAMPAIGN_RETRY);
        r.handle(Event::Recovered { next_sequence: 100 });
        assert_eq!(r.handle(Event::TailedTo { next_sequence: 149 }), vec![]);
        assert_eq!(r.handle(Event::TailedTo { next_sequence: 150 }), vec![C::WriteCheckpoint]);
        assert_eq!(r.handle(Event::TailedTo { next_sequence: 190 }), vec![]);
        assert_eq!(r.handle(Event::TailedTo { next_sequence: 260 }), vec![C::WriteCheckpoint]);
        // A leader does not (its own policy lives with the writer).
        let mut l = leading();
        assert_eq!(l.handle(Event::TailedTo { next_sequence: 1_000_000 }), vec![]);
    }

    #[test]
    fn the_leader_checkpoints_only_when_no_standby_did_lately_and_one_at_a_time() {
        let mut c = LeaderCheckpoints::new(100);
        assert_eq!(c.applied(150), CheckpointStep::Nothing);
        assert_eq!(c.applied(50), CheckpointStep::LookForRecent);
        // A standby's checkpoint within a period of the position: nothing to do.
        assert!(!c.found(Some(150), 200));
        assert_eq!(c.applied(1), CheckpointStep::Nothing);
        assert_eq!(c.applied(199), CheckpointStep::LookForRecent);
        // None recent: the next mutation snapshots, and no other starts while it is written.
        assert!(c.found(Some(50), 400));
        assert_eq!(c.applied(1), CheckpointStep::Snapshot);
        assert_eq!(c.applied(500), CheckpointStep::Nothing);
        c.written();
        assert_eq!(c.applied(1), CheckpointStep::LookForRecent, "501 entries since the snapshot");
        assert!(c.found(None, 1000));
        assert_eq!(c.applied(1), CheckpointStep::Snapshot);
    }

    #[test]
    fn stopping_closes_what_each_phase_opened() {
        let mut r = leading();
        assert_eq!(r.handle(Event::Stop), vec![C::StopServing, C::CloseWriter, C::Resign, C::Exit]);
        assert_eq!(r.handle(Event::Lost), vec![], "a stopped master does nothing more");
        let mut r = elected();
        r.handle(Event::EpochClaimed);
        r.handle(Event::CaughtUp);
        r.handle(Event::WriterStarted);
        assert_eq!(r.handle(Event::Stop), vec![C::AbortWriter, C::Resign, C::Exit]);
        let mut r = RoleEngine::new(10, CAMPAIGN_RETRY);
        r.handle(Event::Recovered { next_sequence: 0 });
        assert_eq!(r.handle(Event::Stop), vec![C::Exit]);
    }
}
