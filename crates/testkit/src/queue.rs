//! Contract suite for the `JobQueue` port: the behaviour every backend
//! (SQLite embedded, PostgreSQL in scale mode) must show, as plain
//! `async fn`s taking a fresh, empty queue. Time is manual: every call gets
//! an explicit `now`, so leases expire and scheduled jobs come due exactly
//! when a case says, with no sleeping.
//!
//! A backend's `tests/it` runs the cases one test each by handing a macro
//! to `queue_contract_cases!` (as with the store suite), or all of them in
//! one test with `run_all`; both read the single list of cases there.
//!
//! Besides the port's module docs, the suite pins what the `queue` crate
//! decided where the port leaves room: a lease ends at `lease_until`
//! (claimable again from then on), `fail` with a `retry_at` on the last
//! attempt is dead anyway, `fire` answers `true` to whoever recorded the
//! slot even when its job was a duplicate, `retry` is a `Conflict` while a
//! live job holds the dead job's unique key, `prune` keeps each schedule's
//! newest slot, and `counts` lists the standard queues first.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use domain::jobs::{Enqueued, Job, JobFilter, JobId, JobInfo, JobQueue, JobState, NewJob, QUEUES, QueueCounts};
use domain::ports::PortError;
use serde_json::json;

pub type Queues = Arc<dyn JobQueue>;

/// Calls `$callback! { case, case, ... }` with every case of the suite.
#[macro_export]
macro_rules! queue_contract_cases {
    ($callback:ident) => {
        $callback! {
            fresh_queue_is_empty_and_healthy,
            claims_by_priority_then_run_at_then_id,
            future_jobs_wait_until_due,
            unique_keys_dedupe_while_live,
            expired_leases_are_reclaimed_then_dead,
            heartbeat_extends_and_reports_lost_leases,
            complete_only_by_the_holder,
            failed_jobs_retry_at_then_die,
            release_does_not_count_an_attempt,
            release_keeps_the_claim_order,
            fire_enqueues_once_per_slot,
            get_and_list_filter_and_page,
            counts_split_scheduled_from_queued,
            retry_and_discard_rules,
            bulk_retry_and_discard_by_filter,
            prune_deletes_old_done_jobs_and_fires,
            concurrent_claimers_never_share_a_job,
            a_job_carries_its_enqueuers_trace,
        }
    };
}

macro_rules! case_names {
    ($($case:ident),* $(,)?) => { &[$(stringify!($case)),*] };
}

/// The names of every case, in the order `run_all` runs them.
pub const CASES: &[&str] = queue_contract_cases!(case_names);

/// Run every case, each on a fresh queue from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Queues>,
{
    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            $case(make().await).await;
        )*};
    }
    queue_contract_cases!(run);
}

/// A fixed epoch-ms origin for every case.
const T0: i64 = 1_700_000_000_000;
const LEASE: Duration = Duration::from_secs(30);
const LEASE_MS: i64 = 30_000;

fn job(kind: &str, queue: &str) -> NewJob {
    NewJob::new(kind, queue, json!({ "kind": kind }), T0)
}

/// Enqueue jobs that must all be created; their ids, in order.
async fn created(q: &Queues, jobs: &[NewJob], now: i64) -> Vec<JobId> {
    q.enqueue(jobs, now)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| match e {
            Enqueued::Created(id) => id,
            other => panic!("expected Created, got {other:?}"),
        })
        .collect()
}

async fn one(q: &Queues, j: NewJob, now: i64) -> JobId {
    created(q, &[j], now).await[0]
}

async fn claim(q: &Queues, queue: &str, worker: &str, max: usize, now: i64) -> Vec<Job> {
    q.claim(queue, worker, max, LEASE, now).await.expect("claim")
}

fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

async fn info(q: &Queues, id: JobId) -> JobInfo {
    q.get(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("job {id} exists"))
}

async fn list(q: &Queues, f: JobFilter) -> Vec<JobId> {
    q.list(&f).await.expect("list").iter().map(|j| j.id).collect()
}

fn all(limit: u32) -> JobFilter {
    JobFilter {
        limit,
        ..JobFilter::default()
    }
}

fn zero(queue: &str) -> QueueCounts {
    QueueCounts {
        queue: queue.into(),
        ..QueueCounts::default()
    }
}

/// Healthy, no jobs, nothing to claim, the standard queues counted empty.
pub async fn fresh_queue_is_empty_and_healthy(q: Queues) {
    q.health().await.expect("healthy");
    assert!(claim(&q, "default", "w1", 10, T0).await.is_empty());
    assert!(q.list(&all(100)).await.unwrap().is_empty());
    assert_eq!(q.get(1).await.unwrap(), None);
    assert_eq!(q.last_fired("nightly").await.unwrap(), None);
    let counts = q.counts(T0).await.unwrap();
    assert_eq!(counts, QUEUES.iter().map(|n| zero(n)).collect::<Vec<_>>());
    assert_eq!(q.enqueue(&[], T0).await.unwrap(), Vec::<Enqueued>::new());
    assert!(claim(&q, "default", "w1", 0, T0).await.is_empty());
    assert_eq!(q.prune(T0).await.unwrap(), 0);
}

/// Highest priority first, then oldest `run_at`, then oldest id; `max` is
/// respected; other queues are untouched; the claimed job carries what
/// was enqueued.
pub async fn claims_by_priority_then_run_at_then_id(q: Queues) {
    let payload = json!({ "order": "o-1", "nested": { "list": [1, 2, 3], "ok": true }, "text": "héllo \"x\"" });
    let mut a = job("a", "default").at(T0);
    a.payload = payload.clone();
    let b = job("b", "default").priority(5).at(T0 + 10);
    let c = job("c", "default").priority(5).at(T0);
    let d = job("d", "default").at(T0 - 100);
    let e = job("e", "default").at(T0);
    let f = job("f", "mail").priority(10);
    let g = job("g", "default").priority(-3).at(T0 - 1_000).attempts(9);
    let got = created(&q, &[a, b, c, d, e, f, g], T0).await;
    let (a, b, c, d, e, f, g) = (got[0], got[1], got[2], got[3], got[4], got[5], got[6]);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "ids grow in enqueue order: {got:?}"
    );

    let now = T0 + 100;
    let first = claim(&q, "default", "w1", 3, now).await;
    assert_eq!(ids(&first), vec![c, b, d]);
    let rest = claim(&q, "default", "w1", 10, now).await;
    assert_eq!(ids(&rest), vec![a, e, g], "same priority and run_at: oldest id first");
    assert!(claim(&q, "default", "w2", 10, now).await.is_empty());

    let ja = &rest[0];
    assert_eq!(ja.kind, "a");
    assert_eq!(ja.queue, "default");
    assert_eq!(ja.payload, payload);
    assert_eq!((ja.priority, ja.attempt, ja.max_attempts), (0, 1, 5));
    assert_eq!(ja.run_at, T0);
    assert_eq!(ja.lease_until, now + LEASE_MS);
    assert_eq!((rest[2].priority, rest[2].max_attempts), (-3, 9));

    let mail = claim(&q, "mail", "w3", 10, now).await;
    assert_eq!(ids(&mail), vec![f]);
    assert_eq!(info(&q, f).await.worker.as_deref(), Some("w3"));
}

/// A job due later is not claimed before its `run_at`, and is from then on.
pub async fn future_jobs_wait_until_due(q: Queues) {
    let later = one(&q, job("later", "default").at(T0 + 60_000), T0).await;
    let now_job = one(&q, job("now", "default"), T0).await;
    assert_eq!(ids(&claim(&q, "default", "w1", 10, T0).await), vec![now_job]);
    q.complete(&[now_job], "w1", T0 + 1).await.unwrap();
    assert!(claim(&q, "default", "w1", 10, T0 + 59_999).await.is_empty());
    let got = claim(&q, "default", "w1", 10, T0 + 60_000).await;
    assert_eq!(ids(&got), vec![later]);
    let i = info(&q, later).await;
    assert_eq!(i.state, JobState::Running);
    assert_eq!(i.worker.as_deref(), Some("w1"));
    assert_eq!(i.lease_until, Some(T0 + 60_000 + LEASE_MS));
}

/// The enqueuer's W3C `traceparent` comes back with the claimed job (its
/// run span's parent), also through `fire`; a job enqueued untraced has none.
pub async fn a_job_carries_its_enqueuers_trace(q: Queues) {
    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = NewJob {
        trace: Some(TRACE.into()),
        ..job("traced", "default")
    };
    let traced = one(&q, traced, T0).await;
    let plain = one(&q, job("plain", "default").priority(-1), T0).await;
    let fired = NewJob {
        trace: Some(TRACE.into()),
        ..job("fired", "default").priority(-2)
    };
    assert!(q.fire("nightly", T0, &fired, T0).await.unwrap());
    let got = claim(&q, "default", "w1", 10, T0).await;
    assert_eq!(got.len(), 3);
    let by_id = |id: JobId| got.iter().find(|j| j.id == id).expect("claimed");
    assert_eq!(by_id(traced).trace.as_deref(), Some(TRACE));
    assert_eq!(by_id(plain).trace, None);
    let fired = got.iter().find(|j| j.kind == "fired").expect("fired job claimed");
    assert_eq!(fired.trace.as_deref(), Some(TRACE));
}

/// A unique key is held while its job is queued or running: duplicates
/// (in the same batch too) answer the holder's id; once the holder is done
/// or dead the key is free again. Jobs without a key never dedupe.
pub async fn unique_keys_dedupe_while_live(q: Queues) {
    let out = q
        .enqueue(
            &[
                job("sync.menu", "sync").unique("menu:downtown"),
                job("sync.menu", "sync").unique("menu:downtown"),
                job("sync.menu", "sync").unique("menu:uptown"),
            ],
            T0,
        )
        .await
        .unwrap();
    let a = match out[0] {
        Enqueued::Created(id) => id,
        other => panic!("first is created, got {other:?}"),
    };
    assert_eq!(out[1], Enqueued::Duplicate(a));
    assert!(matches!(out[2], Enqueued::Created(id) if id != a));
    assert_eq!(out[1].id(), a);

    let again = q
        .enqueue(&[job("sync.menu", "sync").unique("menu:downtown")], T0 + 1)
        .await
        .unwrap();
    assert_eq!(again, vec![Enqueued::Duplicate(a)]);

    let claimed = claim(&q, "sync", "w1", 10, T0 + 2).await;
    assert_eq!(claimed.len(), 2);
    let running = q
        .enqueue(&[job("sync.menu", "sync").unique("menu:downtown")], T0 + 3)
        .await
        .unwrap();
    assert_eq!(
        running,
        vec![Enqueued::Duplicate(a)],
        "a running job still holds its key"
    );

    q.complete(&[a], "w1", T0 + 4).await.unwrap();
    let b = one(&q, job("sync.menu", "sync").unique("menu:downtown"), T0 + 5).await;
    assert_ne!(b, a, "the key is free once its job is done");
    assert_eq!(info(&q, b).await.unique_key.as_deref(), Some("menu:downtown"));

    let got = claim(&q, "sync", "w1", 10, T0 + 6).await;
    assert_eq!(ids(&got), vec![b]);
    q.fail(b, "w1", "boom", None, T0 + 7).await.unwrap();
    assert_eq!(info(&q, b).await.state, JobState::Dead);
    let c = one(&q, job("sync.menu", "sync").unique("menu:downtown"), T0 + 8).await;
    assert!(c != a && c != b, "a dead job does not hold its key");

    let plain = created(&q, &[job("mail.receipt", "mail"), job("mail.receipt", "mail")], T0).await;
    assert_ne!(plain[0], plain[1]);
}

/// A lease that ran out makes the job claimable again (attempt + 1, by
/// another worker; the old one has lost it); on the last attempt it goes
/// dead with `lease expired` instead.
pub async fn expired_leases_are_reclaimed_then_dead(q: Queues) {
    let id = one(&q, job("slow", "default").attempts(2), T0).await;
    let first = claim(&q, "default", "w1", 10, T0).await;
    assert_eq!((first[0].id, first[0].attempt), (id, 1));

    assert!(
        claim(&q, "default", "w2", 10, T0 + LEASE_MS - 1).await.is_empty(),
        "lease still held"
    );
    let second = claim(&q, "default", "w2", 10, T0 + LEASE_MS + 1).await;
    assert_eq!(ids(&second), vec![id]);
    assert_eq!(second[0].attempt, 2);
    assert_eq!(second[0].lease_until, T0 + LEASE_MS + 1 + LEASE_MS);
    let i = info(&q, id).await;
    assert_eq!(
        (i.state, i.worker.as_deref(), i.attempts),
        (JobState::Running, Some("w2"), 2)
    );
    assert_eq!(i.last_error.as_deref(), Some("lease expired"));

    // The first worker wakes up: it holds nothing any more.
    assert!(
        q.heartbeat(&[id], "w1", LEASE, T0 + LEASE_MS + 2)
            .await
            .unwrap()
            .is_empty()
    );
    q.complete(&[id], "w1", T0 + LEASE_MS + 3).await.unwrap();
    assert_eq!(
        info(&q, id).await.state,
        JobState::Running,
        "a lost lease cannot complete"
    );

    // The second worker dies too, on the last attempt.
    let after = T0 + 3 * LEASE_MS;
    assert!(claim(&q, "default", "w3", 10, after).await.is_empty());
    let dead = info(&q, id).await;
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("lease expired"));
    assert_eq!(dead.attempts, 2);
    assert_eq!((dead.worker, dead.lease_until), (None, None));
    assert_eq!(dead.finished_at, Some(after));
}

/// `heartbeat` pushes the lease to `now + lease` for the ids the worker
/// still holds and reports exactly those.
pub async fn heartbeat_extends_and_reports_lost_leases(q: Queues) {
    let got = created(&q, &[job("a", "default"), job("b", "default"), job("c", "default")], T0).await;
    let (a, b, c) = (got[0], got[1], got[2]);
    assert_eq!(ids(&claim(&q, "default", "w1", 2, T0).await), vec![a, b]);

    let held = q
        .heartbeat(&[a, b, c, 999_999], "w1", LEASE, T0 + 20_000)
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![a, b],
        "only running jobs it holds; c is queued, 999999 unknown"
    );
    assert_eq!(info(&q, a).await.lease_until, Some(T0 + 20_000 + LEASE_MS));
    assert!(q.heartbeat(&[a], "w2", LEASE, T0 + 20_000).await.unwrap().is_empty());

    // Past the original lease but within the extended one: still held.
    assert_eq!(ids(&claim(&q, "default", "w2", 10, T0 + 40_000).await), vec![c]);
    assert_eq!(q.heartbeat(&[b], "w1", LEASE, T0 + 45_000).await.unwrap(), vec![b]);

    // `a` was not heartbeated again and expires; `b` was.
    let re = claim(&q, "default", "w2", 10, T0 + 50_001).await;
    assert_eq!(ids(&re), vec![a]);
    assert_eq!(re[0].attempt, 2);
    assert_eq!(q.heartbeat(&[a, b], "w1", LEASE, T0 + 50_002).await.unwrap(), vec![b]);
    assert_eq!(q.heartbeat(&[], "w1", LEASE, T0).await.unwrap(), Vec::<JobId>::new());
}

/// Only the worker holding a job can complete it; completing is batched
/// and ignores jobs that are not (or no longer) that worker's.
pub async fn complete_only_by_the_holder(q: Queues) {
    let got = created(
        &q,
        &[
            job("a", "default"),
            job("b", "default"),
            job("c", "default"),
            job("d", "default"),
        ],
        T0,
    )
    .await;
    let (a, b, c, d) = (got[0], got[1], got[2], got[3]);
    assert_eq!(claim(&q, "default", "w1", 3, T0).await.len(), 3);

    q.complete(&[a, b], "w2", T0 + 1).await.unwrap();
    assert_eq!(info(&q, a).await.state, JobState::Running, "not w2's job");

    q.complete(&[a, b], "w1", T0 + 2).await.unwrap();
    for id in [a, b] {
        let i = info(&q, id).await;
        assert_eq!(i.state, JobState::Done);
        assert_eq!((i.finished_at, i.updated_at), (Some(T0 + 2), T0 + 2));
        assert_eq!((i.worker, i.lease_until), (None, None));
        assert_eq!(i.attempts, 1);
    }
    // Again, with a job still held and one never claimed.
    q.complete(&[a, c, d], "w1", T0 + 3).await.unwrap();
    assert_eq!(info(&q, a).await.finished_at, Some(T0 + 2), "done stays done");
    assert_eq!(info(&q, c).await.state, JobState::Done);
    assert_eq!(
        info(&q, d).await.state,
        JobState::Queued,
        "a queued job is nobody's to complete"
    );
    q.complete(&[], "w1", T0 + 4).await.unwrap();
}

/// A failure queues the job again at `retry_at` with its error kept, until
/// the attempts are used up (or the caller passes `None`): then it is dead.
pub async fn failed_jobs_retry_at_then_die(q: Queues) {
    let id = one(&q, job("flaky", "default").attempts(3), T0).await;
    assert_eq!(claim(&q, "default", "w1", 1, T0).await[0].attempt, 1);
    q.fail(id, "w1", "boom 1", Some(T0 + 1_000), T0 + 10).await.unwrap();
    let i = info(&q, id).await;
    assert_eq!((i.state, i.run_at, i.attempts), (JobState::Queued, T0 + 1_000, 1));
    assert_eq!(i.last_error.as_deref(), Some("boom 1"));
    assert_eq!((i.worker, i.lease_until, i.finished_at), (None, None, None));

    assert!(claim(&q, "default", "w1", 1, T0 + 999).await.is_empty());
    let second = claim(&q, "default", "w2", 1, T0 + 1_000).await;
    assert_eq!((second[0].id, second[0].attempt), (id, 2));
    q.fail(id, "w1", "not mine", Some(T0 + 1_500), T0 + 1_001)
        .await
        .unwrap();
    assert_eq!(
        info(&q, id).await.state,
        JobState::Running,
        "only the holder can fail it"
    );
    q.fail(id, "w2", "boom 2", Some(T0 + 2_000), T0 + 1_010).await.unwrap();

    assert_eq!(claim(&q, "default", "w3", 1, T0 + 2_000).await[0].attempt, 3);
    q.fail(id, "w3", "boom 3", Some(T0 + 3_000), T0 + 2_010).await.unwrap();
    let dead = info(&q, id).await;
    assert_eq!(dead.state, JobState::Dead, "no attempts left, whatever retry_at says");
    assert_eq!(dead.last_error.as_deref(), Some("boom 3"));
    assert_eq!((dead.attempts, dead.finished_at), (3, Some(T0 + 2_010)));
    assert!(claim(&q, "default", "w1", 1, T0 + 10_000).await.is_empty());

    let other = one(&q, job("broken", "default"), T0).await;
    claim(&q, "default", "w1", 1, T0 + 10_000).await;
    q.fail(other, "w1", "permanent", None, T0 + 10_001).await.unwrap();
    let i = info(&q, other).await;
    assert_eq!((i.state, i.attempts), (JobState::Dead, 1), "None: dead at once");
    assert_eq!(i.last_error.as_deref(), Some("permanent"));
}

/// Released jobs are queued again, still due, and the attempt is not
/// counted: a one-attempt job survives a release.
pub async fn release_does_not_count_an_attempt(q: Queues) {
    let got = created(&q, &[job("a", "default").attempts(1), job("b", "default")], T0).await;
    let (a, b) = (got[0], got[1]);
    assert_eq!(claim(&q, "default", "w1", 2, T0).await.len(), 2);
    q.release(&[a], "w2", T0 + 5).await.unwrap();
    assert_eq!(info(&q, a).await.state, JobState::Running, "not w2's to release");

    q.release(&[a, b], "w1", T0 + 5).await.unwrap();
    for id in [a, b] {
        let i = info(&q, id).await;
        assert_eq!(
            (i.state, i.attempts, i.run_at),
            (JobState::Queued, 0, T0),
            "run_at kept"
        );
        assert_eq!((i.worker, i.lease_until), (None, None));
    }
    let again = claim(&q, "default", "w2", 2, T0 + 5).await;
    assert_eq!(ids(&again), vec![a, b]);
    assert!(again.iter().all(|j| j.attempt == 1));
    q.release(&[], "w2", T0 + 6).await.unwrap();
}

/// A released job goes back to its place in the claim order (priority,
/// `run_at`, id), ahead of jobs enqueued after it, and its attempt is not
/// counted: the runner's prefetch buffer gives claimed-not-started jobs
/// back this way on shutdown, and they must not lose their turn.
pub async fn release_keeps_the_claim_order(q: Queues) {
    let first = created(
        &q,
        &[
            job("a", "default"),
            job("b", "default"),
            job("c", "default").priority(1),
        ],
        T0,
    )
    .await;
    let (a, b, c) = (first[0], first[1], first[2]);
    let claimed = claim(&q, "default", "w1", 3, T0).await;
    assert_eq!(ids(&claimed), vec![c, a, b]);
    // Enqueued while the first three are held, some at the same run_at.
    let later = created(&q, &[job("d", "default"), job("e", "default").at(T0 + 1)], T0 + 1).await;
    let (d, e) = (later[0], later[1]);
    q.release(&[b, c, a], "w1", T0 + 50).await.unwrap();
    for id in [a, b, c] {
        let i = info(&q, id).await;
        assert_eq!((i.state, i.attempts, i.run_at), (JobState::Queued, 0, T0));
    }
    let again = claim(&q, "default", "w2", 10, T0 + 60).await;
    assert_eq!(ids(&again), vec![c, a, b, d, e], "the given-back jobs keep their turn");
    assert!(again.iter().all(|j| j.attempt == 1), "no attempt was counted");
}

/// The first `fire` of a `(schedule, slot)` enqueues, every later one
/// (concurrent ones too) does not; `last_fired` follows the newest slot.
pub async fn fire_enqueues_once_per_slot(q: Queues) {
    let slot = T0 - T0 % 60_000;
    let tick = || job("maintenance.prune", "maintenance");
    assert!(q.fire("prune", slot, &tick(), T0).await.unwrap());
    assert!(!q.fire("prune", slot, &tick(), T0 + 1).await.unwrap());
    assert_eq!(q.last_fired("prune").await.unwrap(), Some(slot));
    assert_eq!(q.last_fired("other").await.unwrap(), None);
    let kind = |k: &str| JobFilter {
        kind: Some(k.into()),
        limit: 100,
        ..JobFilter::default()
    };
    assert_eq!(list(&q, kind("maintenance.prune")).await.len(), 1);

    let next = slot + 60_000;
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let q = q.clone();
            let j = tick();
            tokio::spawn(async move { q.fire("prune", next, &j, T0 + 60_000 + i).await })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        if r.await.expect("task").expect("fire") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one caller fires a slot");
    assert_eq!(list(&q, kind("maintenance.prune")).await.len(), 2);
    assert_eq!(q.last_fired("prune").await.unwrap(), Some(next));
    // An older slot fired late does not move `last_fired` back.
    assert!(q.fire("prune", slot - 60_000, &tick(), T0 + 60_010).await.unwrap());
    assert_eq!(q.last_fired("prune").await.unwrap(), Some(next));

    // The slot is won even when the job is a duplicate of a live one.
    let holder = one(&q, job("sync.menu", "sync").unique("menu"), T0).await;
    assert!(
        q.fire("menu", slot, &job("sync.menu", "sync").unique("menu"), T0)
            .await
            .unwrap()
    );
    assert_eq!(list(&q, kind("sync.menu")).await, vec![holder]);
    assert_eq!(q.last_fired("menu").await.unwrap(), Some(slot));
    // Every schedule's newest slot at once.
    let all = q.last_fired_all().await.unwrap();
    assert_eq!((all.len(), all["prune"], all["menu"]), (2, next, slot));
}

/// `get` returns everything known about a job; `list` filters by queue,
/// state and kind, newest first, with a keyset cursor and a limit.
pub async fn get_and_list_filter_and_page(q: Queues) {
    let mut zero_attempts = job("a", "default");
    zero_attempts.max_attempts = 0;
    let got = created(
        &q,
        &[
            zero_attempts,
            job("b", "mail"),
            job("b", "default"),
            job("a", "default"),
            job("a", "sync"),
            job("a", "default").priority(3).attempts(7).unique("u-1").at(T0 - 5),
        ],
        T0,
    )
    .await;
    let (j1, j2, j3, j4, j5, j6) = (got[0], got[1], got[2], got[3], got[4], got[5]);
    assert_eq!(info(&q, j1).await.max_attempts, 1, "at least one attempt");
    assert_eq!(ids(&claim(&q, "default", "w1", 1, T0 + 7).await), vec![j6]);

    let expected = JobInfo {
        id: j6,
        kind: "a".into(),
        queue: "default".into(),
        state: JobState::Running,
        payload: json!({ "kind": "a" }),
        priority: 3,
        attempts: 1,
        max_attempts: 7,
        run_at: T0 - 5,
        unique_key: Some("u-1".into()),
        last_error: None,
        worker: Some("w1".into()),
        lease_until: Some(T0 + 7 + LEASE_MS),
        created_at: T0,
        updated_at: T0 + 7,
        finished_at: None,
    };
    assert_eq!(info(&q, j6).await, expected);
    assert_eq!(q.get(j6 + 1_000).await.unwrap(), None);

    assert_eq!(list(&q, all(100)).await, vec![j6, j5, j4, j3, j2, j1]);
    let f =
        |queue: Option<&str>, state: Option<JobState>, kind: Option<&str>, before: Option<JobId>, limit| JobFilter {
            queue: queue.map(str::to_owned),
            state,
            kind: kind.map(str::to_owned),
            before,
            limit,
        };
    assert_eq!(
        list(&q, f(Some("default"), None, None, None, 100)).await,
        vec![j6, j4, j3, j1]
    );
    assert_eq!(
        list(&q, f(None, Some(JobState::Queued), None, None, 100)).await,
        vec![j5, j4, j3, j2, j1]
    );
    assert_eq!(
        list(&q, f(None, Some(JobState::Running), None, None, 100)).await,
        vec![j6]
    );
    assert_eq!(
        list(&q, f(None, Some(JobState::Dead), None, None, 100)).await,
        Vec::<JobId>::new()
    );
    assert_eq!(
        list(&q, f(Some("default"), None, Some("a"), None, 100)).await,
        vec![j6, j4, j1]
    );
    assert_eq!(
        list(&q, f(Some("default"), Some(JobState::Queued), Some("a"), None, 100)).await,
        vec![j4, j1]
    );
    assert_eq!(list(&q, f(None, None, None, Some(j4), 100)).await, vec![j3, j2, j1]);
    assert_eq!(list(&q, f(None, None, None, None, 2)).await, vec![j6, j5]);
    assert_eq!(list(&q, f(None, None, None, Some(j5), 2)).await, vec![j4, j3]);
    assert_eq!(
        list(&q, f(Some("nowhere"), None, None, None, 100)).await,
        Vec::<JobId>::new()
    );
    let full = q.list(&f(None, Some(JobState::Running), None, None, 10)).await.unwrap();
    assert_eq!(full, vec![expected]);
}

/// Counts per queue and state; `scheduled` is the part of `queued` not
/// due yet at `now`; the standard queues are always there, others follow.
pub async fn counts_split_scheduled_from_queued(q: Queues) {
    created(
        &q,
        &[
            job("a", "default"),
            job("a", "default"),
            job("a", "default"),
            job("a", "default"),
            job("later", "default").at(T0 + 60_000),
            job("m", "mail"),
            job("m", "mail"),
            job("r", "reports"),
        ],
        T0,
    )
    .await;
    let got = claim(&q, "default", "w1", 2, T0).await;
    q.complete(&[got[0].id], "w1", T0 + 1).await.unwrap();
    q.fail(got[1].id, "w1", "boom", None, T0 + 1).await.unwrap();
    claim(&q, "default", "w1", 1, T0 + 2).await;
    claim(&q, "mail", "w2", 1, T0 + 2).await;

    let counts = q.counts(T0 + 10).await.unwrap();
    let want = vec![
        QueueCounts {
            queued: 2,
            scheduled: 1,
            running: 1,
            done: 1,
            dead: 1,
            ..zero("default")
        },
        QueueCounts {
            queued: 1,
            running: 1,
            ..zero("mail")
        },
        zero("sync"),
        zero("maintenance"),
        QueueCounts {
            queued: 1,
            ..zero("reports")
        },
    ];
    assert_eq!(counts, want);
    let later = q.counts(T0 + 60_000).await.unwrap();
    assert_eq!(
        (later[0].queued, later[0].scheduled),
        (2, 0),
        "due now: no longer scheduled"
    );
}

/// `retry` revives dead jobs only (attempts reset, due now), and not while
/// a live job holds its unique key; `discard` deletes queued or dead jobs
/// only.
pub async fn retry_and_discard_rules(q: Queues) {
    let got = created(
        &q,
        &[
            job("a", "default"),
            job("b", "default"),
            job("c", "default"),
            job("d", "default"),
        ],
        T0,
    )
    .await;
    let (a, b, c, d) = (got[0], got[1], got[2], got[3]);
    assert_eq!(claim(&q, "default", "w1", 3, T0).await.len(), 3);
    q.fail(a, "w1", "boom", None, T0 + 1).await.unwrap();
    q.complete(&[b], "w1", T0 + 1).await.unwrap();
    // a dead, b done, c running, d queued.

    for id in [b, c, d, 999_999] {
        assert!(!q.retry(id, T0 + 2).await.unwrap(), "job {id} is not dead");
    }
    assert_eq!(info(&q, b).await.state, JobState::Done);
    assert!(q.retry(a, T0 + 5).await.unwrap());
    let i = info(&q, a).await;
    assert_eq!((i.state, i.attempts, i.run_at), (JobState::Queued, 0, T0 + 5));
    assert_eq!((i.worker, i.lease_until, i.finished_at), (None, None, None));
    assert_eq!(i.last_error.as_deref(), Some("boom"), "the error stays for the record");
    let again = claim(&q, "default", "w2", 10, T0 + 5).await;
    assert_eq!(ids(&again), vec![d, a], "d was due first");
    assert!(again.iter().all(|j| j.attempt == 1));
    q.fail(a, "w2", "boom again", None, T0 + 6).await.unwrap();

    assert!(!q.discard(b).await.unwrap(), "done jobs are pruned, not discarded");
    assert!(!q.discard(c).await.unwrap(), "running jobs cannot be discarded");
    assert!(!q.discard(999_999).await.unwrap());
    assert!(q.discard(a).await.unwrap(), "dead");
    assert_eq!(q.get(a).await.unwrap(), None);
    let e = one(&q, job("e", "default").at(T0 + 100_000), T0).await;
    assert!(q.discard(e).await.unwrap(), "queued");
    assert_eq!(q.get(e).await.unwrap(), None);
    assert!(!q.discard(e).await.unwrap(), "already gone");
    assert!(q.get(c).await.unwrap().is_some());

    // Reviving a dead job whose unique key a live job holds meanwhile would
    // make two live holders: refused as a conflict, and nothing changes.
    let old = one(&q, job("sync.menu", "sync").unique("menu"), T0).await;
    claim(&q, "sync", "w1", 1, T0).await;
    q.fail(old, "w1", "boom", None, T0 + 1).await.unwrap();
    let live = one(&q, job("sync.menu", "sync").unique("menu"), T0 + 2).await;
    assert!(matches!(q.retry(old, T0 + 3).await, Err(PortError::Conflict(_))));
    assert_eq!(info(&q, old).await.state, JobState::Dead);
    assert!(q.discard(live).await.unwrap());
    assert!(q.retry(old, T0 + 4).await.unwrap(), "the key is free again");
}

/// Bulk actions select by queue, kind and state (dead, scheduled, ready)
/// and never touch running or done jobs; a bulk retry revives one dead job
/// per unique key, and none whose key a live job holds.
pub async fn bulk_retry_and_discard_by_filter(q: Queues) {
    use domain::jobs::{BulkFilter, BulkState};
    let filter = |queue: Option<&str>, state: Option<BulkState>, kind: Option<&str>| BulkFilter {
        queue: queue.map(str::to_owned),
        state,
        kind: kind.map(str::to_owned),
    };
    // Four dead mail jobs (two of them share a unique key), one dead
    // default job, a running one, a done one, a ready and a scheduled one.
    let dead_mail = created(
        &q,
        &[
            job("mail.receipt", "mail").attempts(1),
            job("mail.receipt", "mail").attempts(1),
            job("mail.other", "mail").attempts(1).unique("k"),
        ],
        T0,
    )
    .await;
    let claimed = claim(&q, "mail", "w1", 10, T0).await;
    assert_eq!(claimed.len(), 3);
    for id in &dead_mail {
        q.fail(*id, "w1", "smtp down", None, T0 + 1).await.unwrap();
    }
    let twin = one(&q, job("mail.other", "mail").attempts(1).unique("k"), T0 + 2).await;
    claim(&q, "mail", "w1", 10, T0 + 2).await;
    q.fail(twin, "w1", "smtp down", None, T0 + 3).await.unwrap();
    let dead_default = one(&q, job("x", "default").attempts(1), T0).await;
    let running_done = created(&q, &[job("y", "default"), job("z", "default")], T0).await;
    let got = claim(&q, "default", "w1", 10, T0 + 4).await;
    assert_eq!(got.len(), 3);
    q.fail(dead_default, "w1", "boom", None, T0 + 5).await.unwrap();
    q.complete(&[running_done[1]], "w1", T0 + 5).await.unwrap();
    let running = running_done[0];
    let ready = one(&q, job("r", "default"), T0 + 6).await;
    let scheduled = one(&q, job("s", "default").at(T0 + 1_000_000), T0 + 6).await;
    let now = T0 + 10;

    // Ready jobs are due already: retrying them changes nothing.
    let ready_only = filter(None, Some(BulkState::Ready), None);
    assert_eq!(q.retry_matching(&ready_only, now).await.unwrap(), 0);
    // By kind within a queue: the two dead receipts only.
    let receipts = filter(Some("mail"), Some(BulkState::Dead), Some("mail.receipt"));
    assert_eq!(q.retry_matching(&receipts, now).await.unwrap(), 2);
    for id in &dead_mail[..2] {
        let i = info(&q, *id).await;
        assert_eq!((i.state, i.attempts, i.run_at), (JobState::Queued, 0, now));
    }
    // Without a state a retry means the dead: of the two sharing key `k`
    // only the newest comes back, and `x` in another queue is untouched.
    assert_eq!(
        q.retry_matching(&filter(Some("mail"), None, None), now).await.unwrap(),
        1
    );
    assert_eq!(info(&q, twin).await.state, JobState::Queued);
    assert_eq!(info(&q, dead_mail[2]).await.state, JobState::Dead, "its key is held");
    assert_eq!(info(&q, dead_default).await.state, JobState::Dead);
    // Scheduled jobs are made due now.
    let sched = filter(Some("default"), Some(BulkState::Scheduled), None);
    assert_eq!(q.retry_matching(&sched, now).await.unwrap(), 1);
    assert_eq!(info(&q, scheduled).await.run_at, now);

    // Discard: the dead of a queue, then everything queued or dead left,
    // never the running or the done job.
    let dead_default_only = filter(Some("default"), Some(BulkState::Dead), None);
    assert_eq!(q.discard_matching(&dead_default_only, now).await.unwrap(), 1);
    assert_eq!(q.get(dead_default).await.unwrap(), None);
    let ready_default = filter(Some("default"), Some(BulkState::Ready), None);
    assert_eq!(q.discard_matching(&ready_default, now).await.unwrap(), 2, "r and s");
    assert_eq!(
        (q.get(ready).await.unwrap(), q.get(scheduled).await.unwrap()),
        (None, None)
    );
    assert_eq!(
        q.discard_matching(&BulkFilter::default(), now).await.unwrap(),
        4,
        "3 queued mail + 1 dead"
    );
    assert_eq!(info(&q, running).await.state, JobState::Running);
    assert_eq!(info(&q, running_done[1]).await.state, JobState::Done);
    assert_eq!(q.discard_matching(&BulkFilter::default(), now).await.unwrap(), 0);
}

/// `prune` deletes done jobs finished before the cut-off (nothing else)
/// and fired slots older than it, but each schedule's newest slot.
pub async fn prune_deletes_old_done_jobs_and_fires(q: Queues) {
    let got = created(
        &q,
        &[
            job("a", "default"),
            job("b", "default"),
            job("c", "default"),
            job("d", "default"),
        ],
        T0,
    )
    .await;
    let (a, b, c, d) = (got[0], got[1], got[2], got[3]);
    claim(&q, "default", "w1", 3, T0).await;
    q.complete(&[a], "w1", T0 + 10).await.unwrap();
    q.complete(&[b], "w1", T0 + 20).await.unwrap();
    q.fail(c, "w1", "boom", None, T0 + 10).await.unwrap();

    for (schedule, slot) in [("hourly", T0), ("hourly", T0 + 5), ("hourly", T0 + 30), ("daily", T0)] {
        assert!(q.fire(schedule, slot, &job(schedule, "maintenance"), T0).await.unwrap());
    }

    assert_eq!(q.prune(T0 + 15).await.unwrap(), 1);
    assert_eq!(q.get(a).await.unwrap(), None);
    assert_eq!(info(&q, b).await.state, JobState::Done, "finished after the cut-off");
    assert_eq!(
        info(&q, c).await.state,
        JobState::Dead,
        "dead jobs wait for an operator"
    );
    assert_eq!(info(&q, d).await.state, JobState::Queued);

    assert_eq!(q.last_fired("hourly").await.unwrap(), Some(T0 + 30));
    assert_eq!(
        q.last_fired("daily").await.unwrap(),
        Some(T0),
        "the newest slot is kept"
    );
    assert!(
        !q.fire("hourly", T0 + 30, &job("hourly", "maintenance"), T0)
            .await
            .unwrap()
    );
    assert!(!q.fire("daily", T0, &job("daily", "maintenance"), T0).await.unwrap());
    // The pruned slots are gone: firing one again records it anew.
    assert!(
        q.fire("hourly", T0 + 5, &job("hourly", "maintenance"), T0)
            .await
            .unwrap()
    );

    assert_eq!(q.prune(T0 + 15).await.unwrap(), 0, "nothing left to prune");
}

/// Four claimers racing over 2,000 jobs: no job is handed out twice and
/// together they get every job.
pub async fn concurrent_claimers_never_share_a_job(q: Queues) {
    const JOBS: usize = 2_000;
    let mut all_ids = Vec::with_capacity(JOBS);
    for chunk in 0..4 {
        let jobs: Vec<NewJob> = (0..JOBS / 4)
            .map(|i| NewJob::new("noop", "default", json!({ "n": chunk * 1_000 + i }), T0))
            .collect();
        all_ids.extend(created(&q, &jobs, T0).await);
    }
    let claimers: Vec<_> = (0..4)
        .map(|w| {
            let q = q.clone();
            tokio::spawn(async move {
                let worker = format!("w{w}");
                let mut mine = Vec::new();
                loop {
                    let got = q.claim("default", &worker, 50, LEASE, T0 + 1).await.expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    assert!(got.iter().all(|j| j.attempt == 1));
                    let ids: Vec<JobId> = got.iter().map(|j| j.id).collect();
                    q.complete(&ids, &worker, T0 + 2).await.expect("complete");
                    mine.extend(ids);
                }
                mine
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in claimers {
        let mine = c.await.expect("claimer");
        total += mine.len();
        seen.extend(mine);
    }
    assert_eq!(total, JOBS, "no job claimed twice");
    assert_eq!(seen, all_ids.into_iter().collect::<HashSet<_>>(), "every job claimed");
    let counts = q.counts(T0 + 3).await.unwrap();
    assert_eq!(
        counts[0],
        QueueCounts {
            done: JOBS as u64,
            ..zero("default")
        }
    );
}
