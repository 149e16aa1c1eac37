//! Scenario tests of the replicated lock service over in-process clusters.

use rolepax::Cluster;
use rolepax::actors::node::NodeHandle;
use rolepax::app::lock_service::SessionId;
use rolepax::app::service::Service;
use rolepax::engine::lock_client::{Acquired, Locks};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

async fn cluster(n: u64) -> Cluster<Service> {
    Cluster::start_with(n, |cfg| {
        cfg.request_timeout = Duration::from_secs(10);
        cfg.retry_interval = Duration::from_millis(300);
        cfg.clock_interval = Duration::from_millis(100);
        cfg.clock_margin = Duration::from_millis(200);
    })
    .await
    .expect("cluster starts")
}

/// Keeps a session alive every `every` until the returned flag is cleared.
fn keep_alive(locks: Locks, session: SessionId, every: Duration) -> Arc<Mutex<bool>> {
    let alive = Arc::new(Mutex::new(true));
    let flag = alive.clone();
    actix_rt::spawn(async move {
        while *flag.lock().expect("flag") {
            let _ = locks.keep_alive(session).await;
            tokio::time::sleep(every).await;
        }
    });
    alive
}

fn token(a: Acquired) -> u64 {
    match a {
        Acquired::Granted { token } => token,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[actix_rt::test]
async fn locks_mutual_exclusion_through_leader_crash() {
    let mut c = cluster(5).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let clients: Vec<NodeHandle<Service>> = c
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .take(3)
        .map(|id| c.node(id).clone())
        .collect();
    // Each client enters the critical section 6 times; we record [enter, exit] and the token.
    let sections = Arc::new(Mutex::new(Vec::<(Instant, Instant, u64)>::new()));
    let mut tasks = Vec::new();
    for node in clients {
        let sections = sections.clone();
        tasks.push(actix_rt::spawn(async move {
            let locks = Locks::new(node);
            let session = locks.open_session(Duration::from_secs(5)).await.expect("session");
            let alive = keep_alive(locks.clone(), session, Duration::from_millis(500));
            for _ in 0..6 {
                let t = token(locks.acquire("m", session, None).await.expect("acquire"));
                let enter = Instant::now();
                tokio::time::sleep(Duration::from_millis(15)).await;
                let exit = Instant::now();
                sections.lock().expect("sections").push((enter, exit, t));
                locks.release("m", session).await.expect("release");
            }
            *alive.lock().expect("flag") = false;
        }));
    }
    // Crash the leader while the clients contend.
    tokio::time::sleep(Duration::from_millis(200)).await; // let contention start (not an assertion)
    c.crash(leader);
    for t in tasks {
        t.await.expect("client");
    }
    let mut s = sections.lock().expect("sections").clone();
    assert_eq!(s.len(), 18, "every client got the lock every time");
    s.sort_by_key(|(enter, _, _)| *enter);
    for w in s.windows(2) {
        assert!(w[0].1 <= w[1].0, "two holders at once: {:?} overlaps {:?}", w[0], w[1]);
        assert!(
            w[0].2 < w[1].2,
            "fencing tokens must grow with every grant: {} then {}",
            w[0].2,
            w[1].2
        );
    }
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn locks_grants_follow_fifo_order() {
    let c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let locks = Locks::new(c.node(leader).clone());
    let holder = locks.open_session(Duration::from_secs(30)).await.expect("session");
    token(locks.acquire("q", holder, None).await.expect("acquire"));
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..3 {
        let s = locks.open_session(Duration::from_secs(30)).await.expect("session");
        let (l, order) = (locks.clone(), order.clone());
        waiters.push(actix_rt::spawn(async move {
            let t = token(l.acquire("q", s, None).await.expect("acquire"));
            order.lock().expect("order").push((i, t));
            l.release("q", s).await.expect("release");
        }));
        // Wait until this waiter is in the queue before the next one lines up.
        let deadline = Instant::now() + DEADLINE;
        while locks.list().await.expect("list").first().map_or(0, |l| l.queue.len()) < i + 1 {
            assert!(Instant::now() < deadline, "waiter {i} never queued");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    locks.release("q", holder).await.expect("release");
    for w in waiters {
        w.await.expect("waiter");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(
        order.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "granted in arrival order"
    );
    assert!(
        order.windows(2).all(|w| w[0].1 < w[1].1),
        "tokens strictly increase: {order:?}"
    );
}

#[actix_rt::test]
async fn locks_dead_holder_loses_lock_after_ttl() {
    let c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let locks = Locks::new(c.node(leader).clone());
    // The holder opens a short session and then "dies": no keep-alives.
    let dead = locks.open_session(Duration::from_millis(800)).await.expect("session");
    let first = token(locks.acquire("t", dead, None).await.expect("acquire"));
    let waiter = locks.open_session(Duration::from_secs(30)).await.expect("session");
    let started = Instant::now();
    let second = token(locks.acquire("t", waiter, Some(DEADLINE)).await.expect("acquire"));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the lock was not released before the TTL ran out"
    );
    assert!(second > first);
    let info = locks.list().await.expect("list");
    assert_eq!(info.first().and_then(|l| l.holder), Some(waiter));
    assert!(locks.keep_alive(dead).await.is_err(), "the dead session is gone");
}

#[actix_rt::test]
async fn locks_unlock_by_non_holder_refused_and_try_lock_times_out() {
    let c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let follower = c.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let (a_locks, b_locks) = (Locks::new(c.node(leader).clone()), Locks::new(c.node(follower).clone()));
    let a = a_locks.open_session(Duration::from_secs(30)).await.expect("session");
    let b = b_locks.open_session(Duration::from_secs(30)).await.expect("session");
    token(a_locks.acquire("u", a, None).await.expect("acquire"));
    let refused = b_locks.release("u", b).await;
    assert!(
        matches!(&refused, Err(rolepax::Error::Conflict(m)) if m.contains("does not hold")),
        "{refused:?}"
    );
    let tried = b_locks
        .acquire("u", b, Some(Duration::from_millis(300)))
        .await
        .expect("try-lock");
    assert_eq!(tried, Acquired::TimedOut);
    let list = a_locks.list().await.expect("list");
    assert_eq!(list[0].holder, Some(a));
    assert!(list[0].queue.is_empty(), "the timed-out waiter left the queue");
}

#[actix_rt::test]
async fn locks_wait_survives_losing_the_node_and_the_grant_is_seen_elsewhere() {
    let mut c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let others: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
    let (via_dying, via_other) = (others[0], others[1]);
    let holder_locks = Locks::new(c.node(leader).clone());
    let holder = holder_locks
        .open_session(Duration::from_secs(30))
        .await
        .expect("session");
    token(holder_locks.acquire("w", holder, None).await.expect("acquire"));
    // The waiter joins the line through a node that then dies with its connection.
    let dying = Locks::new(c.node(via_dying).clone());
    let waiter = dying.open_session(Duration::from_secs(30)).await.expect("session");
    let queued = dying
        .acquire_with(
            "w",
            waiter,
            Some(Duration::from_millis(100)),
            rolepax::engine::lock_client::OnTimeout::StayQueued,
        )
        .await;
    assert_eq!(queued.expect("queued"), Acquired::StillWaiting);
    c.crash(via_dying);
    holder_locks.release("w", holder).await.expect("release");
    // The wait was replicated state: asking another node with the same session finds the grant.
    let elsewhere = Locks::new(c.node(via_other).clone());
    let granted = elsewhere
        .acquire("w", waiter, Some(DEADLINE))
        .await
        .expect("acquire elsewhere");
    assert!(matches!(granted, Acquired::Granted { .. }), "{granted:?}");
    assert_eq!(elsewhere.get("w").await.expect("get").holder, Some(waiter));
}
