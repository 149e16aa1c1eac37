//! The deterministic simulator (`rolepax::harness::sim`) as a test suite: thousands of seeded
//! runs of 3- and 5-node clusters with crashes, partitions and a lossy network, every
//! safety invariant checked after every step; runs whose membership an operator changes
//! at random (nodes joining, removed, replaced) under the same faults, their client
//! histories checked for linearizability too; each planted bug caught within a seed
//! budget; and the same seeds passing without bugs.
//!
//! A failure prints its seed and the command that replays it:
//! `ROLEPAX_SIM_SEED=<seed> cargo test --test sim sim_replay -- --nocapture`.
//! A long soak: `ROLEPAX_SIM_RUNS=100000 cargo test --release --test sim sim_soak -- --ignored --nocapture`.

use rolepax::harness::check::linearizability::{KvModel, check, from_sim};
use rolepax::harness::sim::checker::Checker;
use rolepax::harness::sim::*;
use rolepax::messages::{Ballot, Configuration, NodeId, RequestId, StopSign, Value};
use rolepax::roles::bugs::PlantedBugs;
use std::collections::BTreeMap;

/// The seed budget within which every planted bug must be caught.
const BUG_SEEDS: u64 = 200;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Explores, prints the summary, and fails with the full story of the first failing seed.
fn assert_all_safe(what: &str, ex: &Exploration) {
    println!("{what}: {ex}");
    if let Some(failure) = &ex.failure {
        panic!("{what}:\n{}", failure.explain());
    }
}

/// Explores the bug's seed budget and returns the first failure, which must exist.
fn assert_caught(bugs: PlantedBugs) -> Failure {
    assert_caught_within(bugs, BUG_SEEDS)
}

/// Like [`assert_caught`], with a seed budget of its own (`ROLEPAX_SIM_BUG_SEEDS`
/// overrides every budget, to measure how soon a bug is caught).
fn assert_caught_within(bugs: PlantedBugs, seeds: u64) -> Failure {
    assert_caught_in(bugs, seeds, SimConfig::from_seed)
}

/// Like [`assert_caught_within`], for runs whose membership changes at random.
fn assert_caught_with_membership(bugs: PlantedBugs, seeds: u64) -> Failure {
    assert_caught_in(bugs, seeds, membership_run)
}

fn assert_caught_in(bugs: PlantedBugs, seeds: u64, config: fn(u64) -> SimConfig) -> Failure {
    let seeds = env_u64("ROLEPAX_SIM_BUG_SEEDS").unwrap_or(seeds);
    let ex = explore(0..seeds, |seed| config(seed).with_bugs(bugs));
    println!("{:?}: {ex}", bug_names(bugs));
    ex.failure
        .unwrap_or_else(|| panic!("planted bug {:?} went unnoticed in {seeds} seeds", bug_names(bugs)))
}

/// A seed's run with random membership changes (`ROLEPAX_SIM_MEMBERSHIP=1` replays it).
fn membership_run(seed: u64) -> SimConfig {
    SimConfig::from_seed(seed).with_membership()
}

#[test]
fn sim_three_nodes_with_crashes_and_partitions_stay_safe() {
    let ex = explore(10_000..11_500, |seed| SimConfig::from_seed(seed).with_nodes(3));
    assert_all_safe("3 nodes", &ex);
    assert!(
        ex.stats.crashes > 1000 && ex.stats.partitions > 500,
        "faults happened: {ex}"
    );
    assert!(
        ex.stats.ops_ok > ex.runs * 20,
        "clients got answers (the checks were not vacuous): {ex}"
    );
    assert!(
        ex.stats.snapshots > ex.runs,
        "state machines took snapshots (and restarts restored them): {ex}"
    );
    assert!(
        ex.stats.snapshots_installed > ex.runs / 10 && ex.stats.snapshot_chunks > 2 * ex.stats.snapshots_installed,
        "lagging nodes caught up by snapshots sent in several chunks: {ex}"
    );
    assert!(
        ex.stats.lock_grants > ex.runs && ex.stats.sessions_expired > ex.runs / 2,
        "locks were granted, and sessions of dead holders expired by log time: {ex}"
    );
}

#[test]
fn sim_five_nodes_with_crashes_and_partitions_stay_safe() {
    let ex = explore(20_000..21_000, |seed| SimConfig::from_seed(seed).with_nodes(5));
    assert_all_safe("5 nodes", &ex);
    assert!(
        ex.stats.crashes > 1000 && ex.stats.partitions > 300,
        "faults happened: {ex}"
    );
    assert!(ex.stats.ops_ok > ex.runs * 20, "clients got answers: {ex}");
}

#[test]
fn sim_calm_cluster_answers_every_client() {
    for nodes in [3, 5] {
        let ex = explore(0..10, |seed| {
            SimConfig::from_seed(seed).with_nodes(nodes).with_faults(Faults::none())
        });
        assert_all_safe("calm", &ex);
        assert_eq!(ex.stats.ops_unknown, 0, "no request is lost without faults: {ex}");
        assert!(ex.stats.ops_ok > ex.runs * 100, "{ex}");
        assert!(
            ex.stats.read_index_reads > ex.runs * 10,
            "about half the gets are served by read index: {ex}"
        );
        assert_eq!(ex.stats.elections, ex.runs, "one election per calm run: {ex}");
    }
}

#[test]
fn sim_same_seed_replays_identically() {
    for seed in [1, 2, 77, 1234] {
        let mut cfg = SimConfig::from_seed(seed);
        cfg.trace = true;
        let (a, b) = (run(&cfg), run(&cfg));
        assert!(a.steps > 1000, "seed {seed} ran {} steps", a.steps);
        assert_eq!(a.trace, b.trace, "seed {seed}: the traces differ");
        assert_eq!(a.digest, b.digest, "seed {seed}: the digests differ");
        assert_eq!(a.history, b.history, "seed {seed}: the client histories differ");
        assert_eq!(a.stats, b.stats);
        let other = run(&SimConfig::from_seed(seed + 2));
        assert_ne!(a.digest, other.digest, "another seed, another run");
    }
}

#[test]
fn sim_membership_same_seed_replays_identically() {
    for seed in [3, 8] {
        let mut cfg = membership_run(seed);
        cfg.trace = true;
        let (a, b) = (run(&cfg), run(&cfg));
        assert!(
            a.configurations.len() > 2,
            "seed {seed} changed its membership: {:?}",
            a.configurations
        );
        assert_eq!(a.trace, b.trace, "seed {seed}: the traces differ");
        assert_eq!(a.digest, b.digest, "seed {seed}: the digests differ");
        assert_eq!(a.configurations, b.configurations);
        assert_eq!(a.stats, b.stats);
    }
}

#[test]
fn sim_planted_acceptor_skips_persist_is_caught() {
    let f = assert_caught(PlantedBugs {
        acceptor_skips_persist: true,
        ..PlantedBugs::default()
    });
    println!("{f}");
}

#[test]
fn sim_planted_proposer_skips_phase_one_is_caught() {
    let f = assert_caught(PlantedBugs {
        proposer_skips_phase_one: true,
        ..PlantedBugs::default()
    });
    println!("{f}");
}

#[test]
fn sim_planted_proposer_decides_on_minority_is_caught() {
    let f = assert_caught(PlantedBugs {
        proposer_decides_on_minority: true,
        ..PlantedBugs::default()
    });
    println!("{f}");
}

#[test]
fn sim_planted_learner_applies_out_of_order_is_caught() {
    let f = assert_caught(PlantedBugs {
        learner_applies_out_of_order: true,
        ..PlantedBugs::default()
    });
    println!("{f}");
}

#[test]
fn sim_planted_acceptor_promise_skips_stored_is_caught() {
    let f = assert_caught(PlantedBugs {
        acceptor_promise_skips_stored: true,
        ..PlantedBugs::default()
    });
    println!("{f}");
}

#[test]
fn sim_planted_state_machine_compacts_early_is_caught() {
    let f = assert_caught(PlantedBugs {
        state_machine_compacts_early: true,
        ..PlantedBugs::default()
    });
    assert!(f.violation().message.contains("compacts its log"), "{f}");
}

#[test]
fn sim_planted_learner_takes_chunks_out_of_order_is_caught() {
    let f = assert_caught(PlantedBugs {
        learner_takes_chunks_out_of_order: true,
        ..PlantedBugs::default()
    });
    assert!(f.violation().message.contains("differs from"), "{f}");
}

#[test]
fn sim_planted_proposer_adopts_lower_ballot_part_is_caught() {
    // It needs a slot accepted at two ballots with two values by acceptors that have not
    // compacted it yet, then a leader change: rarer than the other bugs' conditions
    // (first caught at seed 336 when this budget was set).
    let bugs = PlantedBugs {
        proposer_adopts_lower_ballot_part: true,
        ..PlantedBugs::default()
    };
    let f = assert_caught_within(bugs, 1000);
    println!("{f}");
    assert!(
        f.violation().message.contains("phase 1 forced"),
        "caught as a proposal phase 1 did not force: {}",
        f.violation().message
    );
}

/// The seed budget within which every membership planted bug must be caught.
const MEMBERSHIP_SEEDS: u64 = 200;

/// Seeds of the random membership test: about 25 s in a debug build on 2 cores, its
/// histories' linearizability checks included (`ROLEPAX_SIM_MEMBERSHIP_SEEDS` and
/// `ROLEPAX_SIM_FIRST_SEED` move the window: 30,000 seeds passed in a release build).
const MEMBERSHIP_RANDOM_SEEDS: u64 = 400;

#[test]
fn sim_membership_random_seeds() {
    // Every invariant after every step (see `checker` and `snapshot_check`), and each
    // run's client history linearizable: no acknowledged write lost across StopSigns.
    let seeds = env_u64("ROLEPAX_SIM_MEMBERSHIP_SEEDS").unwrap_or(MEMBERSHIP_RANDOM_SEEDS);
    let first = env_u64("ROLEPAX_SIM_FIRST_SEED").unwrap_or(40_000);
    let mut not_linearizable = Vec::new();
    let ex = explore_each(first..first + seeds, membership_run, |report| {
        let verdict = check(&KvModel, &from_sim(&report.history), Default::default());
        if !verdict.is_linearizable() && report.violation.is_none() {
            not_linearizable.push(format!(
                "seed {}: the client history is not linearizable: {verdict}\n  replay: {}",
                report.config.seed,
                report.config.replay_command()
            ));
        }
    });
    assert_all_safe("membership", &ex);
    assert!(not_linearizable.is_empty(), "{}", not_linearizable.join("\n"));
    let s = &ex.stats;
    assert!(
        s.reconfigurations > ex.runs && s.stop_signs_applied > ex.runs,
        "configurations changed, several per run: {ex}"
    );
    assert!(
        s.stop_signs_refused > ex.runs / 10,
        "changes against a configuration gone were refused: {ex}"
    );
    assert!(s.migrations > ex.runs / 2, "joining nodes migrated: {ex}");
    assert!(s.ops_ok > ex.runs * 10, "clients got answers across the changes: {ex}");
}

#[test]
fn sim_planted_proposer_proposes_past_stop_sign_is_caught() {
    let f = assert_caught_with_membership(
        PlantedBugs {
            proposer_proposes_past_stop_sign: true,
            ..PlantedBugs::default()
        },
        MEMBERSHIP_SEEDS,
    );
    assert!(f.violation().message.contains("after the StopSign"), "{f}");
}

#[test]
fn sim_planted_proposer_starts_next_config_early_is_caught() {
    let f = assert_caught_with_membership(
        PlantedBugs {
            proposer_starts_next_config_early: true,
            ..PlantedBugs::default()
        },
        MEMBERSHIP_SEEDS,
    );
    // The slots after the StopSign are chosen by the old configuration (its acceptors
    // that stay are a majority of it), or learned though no majority of it accepted.
    let message = &f.violation().message;
    assert!(
        message.contains("after the StopSign") || message.contains("no majority accepted"),
        "{f}"
    );
}

#[test]
fn sim_planted_migration_skips_a_chunk_is_caught() {
    let f = assert_caught_with_membership(
        PlantedBugs {
            migration_skips_a_chunk: true,
            ..PlantedBugs::default()
        },
        MEMBERSHIP_SEEDS,
    );
    assert!(f.violation().message.contains("differs from"), "{f}");
}

/// How often each membership bug is caught, over the budget's seeds (a measurement, not
/// a check): `cargo test --test sim sim_membership_bug_detection_rates -- --ignored --nocapture`.
#[test]
#[ignore]
fn sim_membership_bug_detection_rates() {
    let seeds = env_u64("ROLEPAX_SIM_BUG_SEEDS").unwrap_or(MEMBERSHIP_SEEDS);
    for name in [
        "proposer_proposes_past_stop_sign",
        "proposer_starts_next_config_early",
        "migration_skips_a_chunk",
    ] {
        let bugs = parse_bugs(name).expect("a known bug");
        let mut by_check: BTreeMap<String, u64> = BTreeMap::new();
        for seed in 0..seeds {
            if let Some(v) = run(&membership_run(seed).with_bugs(bugs)).violation {
                // The check's words, without the numbers and values that vary.
                let words: String = v
                    .message
                    .split_whitespace()
                    .filter(|w| w.chars().all(char::is_alphabetic))
                    .take(8)
                    .collect::<Vec<_>>()
                    .join(" ");
                *by_check.entry(words).or_default() += 1;
            }
        }
        let caught: u64 = by_check.values().sum();
        println!("{name}: caught in {caught} of {seeds} seeds");
        for (check, n) in by_check {
            println!("  {n:4}  {check}");
        }
    }
}

#[test]
fn sim_unplanted_build_passes_the_planted_bugs_seeds() {
    let ex = explore(0..BUG_SEEDS, SimConfig::from_seed);
    assert_all_safe("no bugs, the bug seeds", &ex);
    assert_eq!(ex.runs, BUG_SEEDS);
}

#[test]
fn sim_failure_report_names_seed_replay_command_and_shortest_prefix() {
    let f = assert_caught(PlantedBugs {
        proposer_decides_on_minority: true,
        ..PlantedBugs::default()
    });
    let story = f.explain();
    println!("{story}");
    let seed = f.seed();
    assert!(story.contains(&format!(
        "ROLEPAX_SIM_SEED={seed} ROLEPAX_SIM_BUGS=proposer_decides_on_minority cargo test --test sim sim_replay -- --nocapture"
    )));
    assert!(story.contains("shortest failing prefix"));
    // The prefix is tight: one step fewer passes.
    let prefix = shortest_failing_prefix(&f.report.config, f.violation().step);
    let with_budget = |steps| {
        let mut cfg = f.report.config.clone();
        cfg.max_steps = Some(steps);
        run(&cfg).violation.is_some()
    };
    assert!(with_budget(prefix) && !with_budget(prefix - 1));
}

#[test]
fn sim_checker_flags_two_values_chosen_in_one_slot() {
    let value = |n: u8| {
        Value::Command(rolepax::messages::Command {
            id: rolepax::messages::RequestId {
                client: 1,
                seq: n.into(),
            },
            ack_below: 0,
            payload: vec![n],
        })
    };
    // What each acceptor wrote, and what its disk holds, when it answers Accepted.
    let (b1, b2) = (Ballot::new(1, 1), Ballot::new(2, 2));
    let written = |ballot: Ballot, v: Value| BTreeMap::from([((0, ballot), v)]);
    let disk = |ballot: Ballot, v: Value| BTreeMap::from([(0, (ballot, v))]);
    let mut checker = Checker::new(3);
    // Acceptors 1 and 2 choose value 1 at ballot 1.1 ...
    for node in [1, 2] {
        checker
            .accepted_revealed(node, &written(b1, value(1)), &disk(b1, value(1)), 0, 1, b1)
            .expect("one chosen value is fine");
    }
    // ... then acceptors 2 and 3 (as if 2 had forgotten) choose value 2 at ballot 2.2.
    checker
        .accepted_revealed(2, &written(b2, value(2)), &disk(b2, value(2)), 0, 1, b2)
        .expect("not yet a majority");
    let err = checker
        .accepted_revealed(3, &written(b2, value(2)), &disk(b2, value(2)), 0, 1, b2)
        .expect_err("two values chosen in slot 0");
    assert!(err.contains("two values chosen"), "{err}");
}

/// A command of client 1 (`n` its payload and sequence number).
fn command(n: u8) -> Value {
    Value::Command(rolepax::messages::Command {
        id: RequestId {
            client: 1,
            seq: n.into(),
        },
        ack_below: 0,
        payload: vec![n],
    })
}

/// A StopSign ending configuration `prev`, naming `members`.
fn stop_sign(prev: u64, members: &[NodeId]) -> Value {
    Value::StopSign(StopSign {
        id: RequestId {
            client: 9,
            seq: prev + 1,
        },
        prev,
        members: Configuration::of_ids(members).members,
        sources: Vec::new(),
    })
}

/// Acceptor `node` reveals `Accepted` for `value` in `slot` at `ballot`, as written and
/// durable.
fn accept(checker: &mut Checker, node: NodeId, slot: u64, ballot: Ballot, value: &Value) -> Result<(), String> {
    let written = BTreeMap::from([((slot, ballot), value.clone())]);
    let disk = BTreeMap::from([(slot, (ballot, value.clone()))]);
    checker.accepted_revealed(node, &written, &disk, slot, 1, ballot)
}

#[test]
fn sim_checker_flags_a_value_chosen_after_the_stop_sign() {
    let mut checker = Checker::new(3);
    let b = Ballot::new(1, 1);
    // Configuration 0 chooses a StopSign in slot 5 ...
    for node in [1, 2] {
        accept(&mut checker, node, 5, b, &stop_sign(0, &[1, 2, 4])).expect("a StopSign");
    }
    // ... a StopSign naming an older configuration stops nothing ...
    let stale = Ballot::in_config(1, 1, 1);
    checker
        .configuration_applied(
            1,
            &Configuration {
                id: 1,
                start: 6,
                members: Configuration::of_ids(&[1, 2, 4]).members,
            },
        )
        .expect("configuration 1");
    for node in [1, 2] {
        accept(&mut checker, node, 6, stale, &stop_sign(0, &[1, 2])).expect("a refused StopSign");
        accept(&mut checker, node, 7, stale, &command(7)).expect("configuration 1 goes on");
    }
    // ... but configuration 0 may choose nothing after its own.
    accept(&mut checker, 1, 8, b, &command(8)).expect("one acceptance chooses nothing");
    let err = accept(&mut checker, 3, 8, b, &command(8)).expect_err("chosen after the StopSign");
    assert!(err.contains("configuration 0 chose a value in slot 8"), "{err}");
    assert!(err.contains("after the StopSign it chose in slot 5"), "{err}");
}

#[test]
fn sim_checker_counts_only_the_members_of_the_ballots_configuration() {
    let mut checker = Checker::new(3);
    let c1 = Configuration {
        id: 1,
        start: 0,
        members: Configuration::of_ids(&[1, 4, 5]).members,
    };
    // No node put configuration 1 in force yet: nobody may accept at its ballots.
    let b = Ballot::in_config(1, 1, 1);
    let err = accept(&mut checker, 1, 0, b, &command(1)).expect_err("an unknown configuration");
    assert!(err.contains("which no node has put in force"), "{err}");
    checker.configuration_applied(4, &c1).expect("configuration 1");
    // Nodes 2 and 3 are no members: with node 1 they are no majority of [1, 4, 5].
    for node in [1, 2, 3] {
        accept(&mut checker, node, 1, b, &command(1)).expect("not chosen, not wrong");
    }
    let err = checker.learned(2, &[(1, command(1))]).expect_err("not chosen");
    assert!(err.contains("which no majority accepted"), "{err}");
    accept(&mut checker, 4, 1, b, &command(1)).expect("chosen by 1 and 4");
    checker.learned(2, &[(1, command(1))]).expect("chosen now");
}

#[test]
fn sim_checker_flags_two_configurations_under_one_id_and_leaders_outside_theirs() {
    let mut checker = Checker::new(3);
    let of = |ids: &[NodeId]| Configuration {
        id: 1,
        start: 9,
        members: Configuration::of_ids(ids).members,
    };
    checker.configuration_applied(1, &of(&[1, 2, 4])).expect("the first");
    checker.configuration_applied(2, &of(&[1, 2, 4])).expect("the same one");
    let err = checker
        .configuration_applied(3, &of(&[1, 2, 5]))
        .expect_err("another one");
    assert!(err.contains("under the same id"), "{err}");
    // One leader per ballot, its own, and a member of the ballot's configuration.
    checker
        .elected(4, Ballot::in_config(1, 1, 4))
        .expect("node 4 leads c1:1.4");
    let err = checker
        .elected(1, Ballot::in_config(1, 1, 4))
        .expect_err("another node's ballot");
    assert!(err.contains("another node's"), "{err}");
    let err = checker.elected(3, Ballot::in_config(1, 2, 3)).expect_err("no member");
    assert!(err.contains("not a member"), "{err}");
    let err = checker
        .elected(3, Ballot::in_config(2, 1, 3))
        .expect_err("no such configuration");
    assert!(err.contains("which no node has put in force"), "{err}");
}

/// Replays one seed: `ROLEPAX_SIM_SEED=1234 cargo test --test sim sim_replay -- --nocapture`,
/// with `ROLEPAX_SIM_MEMBERSHIP=1`, `ROLEPAX_SIM_NODES=3|5`,
/// `ROLEPAX_SIM_PROFILE=split_brain` and `ROLEPAX_SIM_BUGS=a,b` if the failure named them.
/// Without a seed it replays seed 1 (and passes).
#[test]
fn sim_replay() {
    let seed = env_u64("ROLEPAX_SIM_SEED").unwrap_or(1);
    let mut cfg = SimConfig::from_seed(seed);
    if env_u64("ROLEPAX_SIM_MEMBERSHIP") == Some(1) {
        cfg = cfg.with_membership();
    }
    if let Some(nodes) = env_u64("ROLEPAX_SIM_NODES") {
        cfg = cfg.with_nodes(nodes as usize);
    }
    match std::env::var("ROLEPAX_SIM_PROFILE").as_deref() {
        Ok("split_brain") => cfg = cfg.with_split_brain_bias(),
        Ok(other) => panic!("ROLEPAX_SIM_PROFILE: unknown profile {other:?} (known: split_brain)"),
        Err(_) => {}
    }
    if let Ok(list) = std::env::var("ROLEPAX_SIM_BUGS") {
        cfg = cfg.with_bugs(parse_bugs(&list).unwrap_or_else(|e| panic!("ROLEPAX_SIM_BUGS: {e}")));
    }
    let report = run(&cfg);
    println!(
        "seed {seed}: {} nodes, {} steps, {}us simulated, digest {:016x}, {:?}",
        cfg.nodes, report.steps, report.sim_time_us, report.digest, report.stats
    );
    for config in &report.configurations {
        println!("  {config}");
    }
    for op in report.history.iter().take(40) {
        println!("  {op:?}");
    }
    if report.violation.is_some() {
        panic!("{}", Failure { report }.explain());
    }
}

/// The long soak: `ROLEPAX_SIM_RUNS=100000 cargo test --release --test sim sim_soak -- --ignored --nocapture`
/// (`ROLEPAX_SIM_FIRST_SEED` moves the window of seeds).
#[test]
#[ignore]
fn sim_soak() {
    let runs = env_u64("ROLEPAX_SIM_RUNS").unwrap_or(100_000);
    let first = env_u64("ROLEPAX_SIM_FIRST_SEED").unwrap_or(1_000_000);
    let ex = explore(first..first + runs, SimConfig::from_seed);
    assert_all_safe("soak", &ex);
}
