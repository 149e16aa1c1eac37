//! Deliberately planted bugs, to show that the safety checks can fail.
//!
//! Behind the cargo feature `planted-bugs`, which only the tests turn on (a
//! dev-dependency of the crate on itself): without it every switch below reads `false`
//! whatever its field says, so the buggy branches compile to nothing in the node's
//! binaries.

/// Deliberately planted bugs, one per role, to show that the safety checks can fail.
/// **Test-only**: every field is false in any real configuration, and the node's config
/// file cannot set them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// The acceptor answers without asking for its state to be persisted first.
    pub acceptor_skips_persist: bool,
    /// The proposer skips phase 1 when it becomes leader (proposes into slots blindly).
    pub proposer_skips_phase_one: bool,
    /// The proposer declares a batch decided on the first `Accepted` (a minority).
    pub proposer_decides_on_minority: bool,
    /// The learner hands values to the state machine as they come, gaps or not, and the
    /// state machine applies whatever slot it is given.
    pub learner_applies_out_of_order: bool,
    /// The proposer answers a `ReadIndex` at once with its next slot, without waiting
    /// for a quorum of the next Accept batch to confirm it still leads (a deposed leader
    /// then serves stale reads).
    pub proposer_reads_without_quorum: bool,
    /// The acceptor forgets accepted values evicted from memory: its `Promise` reports
    /// only the slots whose values are in memory.
    pub acceptor_promise_skips_stored: bool,
    /// The state machine tells the acceptor and learner to compact below a snapshot as
    /// soon as it asks for it, before the snapshot is durable.
    pub state_machine_compacts_early: bool,
    /// The learner takes a snapshot chunk wherever it comes from in the stream, and
    /// hands the snapshot over without checking the whole-snapshot checksum.
    pub learner_takes_chunks_out_of_order: bool,
    /// The proposer pulls a part of phase 1's suffix from an acceptor that holds it at a
    /// lower ballot than the highest one its quorum reported, and adopts it.
    pub proposer_adopts_lower_ballot_part: bool,
    /// The proposer keeps assigning slots after a StopSign it proposed, and its
    /// recovery keeps the values reported after a StopSign: the old configuration
    /// decides slots the next one also decides.
    pub proposer_proposes_past_stop_sign: bool,
    /// The proposer starts the next configuration as soon as it proposes a StopSign:
    /// the slots after it go to the next configuration's members (and count their
    /// quorum) before the StopSign is decided.
    pub proposer_starts_next_config_early: bool,
    /// A joining node's learner, pulling the snapshot at the StopSign from several
    /// members, skips one chunk and hands the snapshot over without the whole-snapshot
    /// checksum.
    pub migration_skips_a_chunk: bool,
    /// The Raft engine's log store (src/raft/log_store.rs) acknowledges appended entries
    /// as soon as they are buffered, and writes them to its WAL only every 200 ms.
    pub raft_acks_before_durable: bool,
}

impl PlantedBugs {
    /// Whether [`PlantedBugs::acceptor_skips_persist`] is planted (never without the feature).
    #[inline(always)]
    pub fn acceptor_skips_persist(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.acceptor_skips_persist
    }

    /// Whether [`PlantedBugs::proposer_skips_phase_one`] is planted (never without the feature).
    #[inline(always)]
    pub fn proposer_skips_phase_one(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.proposer_skips_phase_one
    }

    /// Whether [`PlantedBugs::proposer_decides_on_minority`] is planted (never without the feature).
    #[inline(always)]
    pub fn proposer_decides_on_minority(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.proposer_decides_on_minority
    }

    /// Whether [`PlantedBugs::learner_applies_out_of_order`] is planted (never without the feature).
    #[inline(always)]
    pub fn learner_applies_out_of_order(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.learner_applies_out_of_order
    }

    /// Whether [`PlantedBugs::proposer_reads_without_quorum`] is planted (never without the feature).
    #[inline(always)]
    pub fn proposer_reads_without_quorum(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.proposer_reads_without_quorum
    }

    /// Whether [`PlantedBugs::acceptor_promise_skips_stored`] is planted (never without the feature).
    #[inline(always)]
    pub fn acceptor_promise_skips_stored(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.acceptor_promise_skips_stored
    }

    /// Whether [`PlantedBugs::state_machine_compacts_early`] is planted (never without the feature).
    #[inline(always)]
    pub fn state_machine_compacts_early(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.state_machine_compacts_early
    }

    /// Whether [`PlantedBugs::learner_takes_chunks_out_of_order`] is planted (never without the feature).
    #[inline(always)]
    pub fn learner_takes_chunks_out_of_order(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.learner_takes_chunks_out_of_order
    }

    /// Whether [`PlantedBugs::proposer_adopts_lower_ballot_part`] is planted (never without the feature).
    #[inline(always)]
    pub fn proposer_adopts_lower_ballot_part(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.proposer_adopts_lower_ballot_part
    }

    /// Whether [`PlantedBugs::proposer_proposes_past_stop_sign`] is planted (never without the feature).
    #[inline(always)]
    pub fn proposer_proposes_past_stop_sign(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.proposer_proposes_past_stop_sign
    }

    /// Whether [`PlantedBugs::proposer_starts_next_config_early`] is planted (never without the feature).
    #[inline(always)]
    pub fn proposer_starts_next_config_early(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.proposer_starts_next_config_early
    }

    /// Whether [`PlantedBugs::migration_skips_a_chunk`] is planted (never without the feature).
    #[inline(always)]
    pub fn migration_skips_a_chunk(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.migration_skips_a_chunk
    }

    /// Whether [`PlantedBugs::raft_acks_before_durable`] is planted (never without the feature).
    #[inline(always)]
    pub fn raft_acks_before_durable(&self) -> bool {
        cfg!(feature = "planted-bugs") && self.raft_acks_before_durable
    }

    /// Plants the bugs named in `names` (comma-separated field names), for a node
    /// process started by a test ([`crate::config::PLANTED_BUGS_ENV`]). An unknown name
    /// is an error; in a build without the feature the switches stay off anyway.
    pub fn from_names(names: &str) -> Result<PlantedBugs, String> {
        let mut bugs = PlantedBugs::default();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let switch = match name {
                "acceptor_skips_persist" => &mut bugs.acceptor_skips_persist,
                "proposer_skips_phase_one" => &mut bugs.proposer_skips_phase_one,
                "proposer_decides_on_minority" => &mut bugs.proposer_decides_on_minority,
                "learner_applies_out_of_order" => &mut bugs.learner_applies_out_of_order,
                "proposer_reads_without_quorum" => &mut bugs.proposer_reads_without_quorum,
                "acceptor_promise_skips_stored" => &mut bugs.acceptor_promise_skips_stored,
                "state_machine_compacts_early" => &mut bugs.state_machine_compacts_early,
                "learner_takes_chunks_out_of_order" => &mut bugs.learner_takes_chunks_out_of_order,
                "proposer_adopts_lower_ballot_part" => &mut bugs.proposer_adopts_lower_ballot_part,
                "proposer_proposes_past_stop_sign" => &mut bugs.proposer_proposes_past_stop_sign,
                "proposer_starts_next_config_early" => &mut bugs.proposer_starts_next_config_early,
                "migration_skips_a_chunk" => &mut bugs.migration_skips_a_chunk,
                "raft_acks_before_durable" => &mut bugs.raft_acks_before_durable,
                other => return Err(format!("{other:?} is not a planted bug")),
            };
            *switch = true;
        }
        Ok(bugs)
    }
}
