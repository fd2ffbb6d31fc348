//! The identity use-cases over the real embedded adapters (`SqliteStore`
//! for users, keys and audit; `SqliteSessions` for sessions and failed
//! logins) with a manual clock: session expiry (sliding and absolute),
//! lockout and its doubling backoff, hash upgrades, the last admin, the
//! bootstrap admin, and that an unknown user costs what a wrong password
//! costs.

use domain::identity::Role;
use domain::ports::UserStore;
use identity::{Actor, Identity, IdentityError, IdentityPorts, IdentitySettings, KeyRequest, Passwords};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use testkit::clock::ManualClock;

const PW: &str = "correct horse battery staple";

struct Fixture {
    id: Identity,
    clock: Arc<ManualClock>,
    store: Arc<store::SqliteStore>,
    _dir: TempDir,
}

fn fixture_with(passwords: Passwords, settings: IdentitySettings) -> Fixture {
    let dir = TempDir::new().unwrap();
    let store =
        Arc::new(store::SqliteStore::open(&dir.path().join("store.db"), store::SqliteStoreOptions::default()).unwrap());
    let sessions = Arc::new(sessions::SqliteSessions::open(&dir.path().join("sessions.db")).unwrap());
    let clock = ManualClock::new(1_700_000_000_000);
    let id = Identity::new(
        IdentityPorts {
            users: store.clone(),
            audit: store.clone(),
            sessions: sessions.clone(),
            attempts: sessions,
            clock: clock.clone(),
        },
        passwords,
        settings,
    );
    Fixture {
        id,
        clock,
        store,
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(Passwords::fast_for_tests(), IdentitySettings::default())
}

fn cli() -> Actor {
    Actor::cli("test")
}

#[tokio::test]
async fn sessions_slide_with_use_and_end_at_their_absolute_lifetime() {
    let f = fixture_with(
        Passwords::fast_for_tests(),
        IdentitySettings {
            session_idle: Duration::from_secs(600),
            session_lifetime: Duration::from_secs(1800),
            ..IdentitySettings::default()
        },
    );
    f.id.add_user(&cli(), "ada", Role::Barista, PW).await.unwrap();
    let s = f.id.login("ada", PW, "10.0.0.1").await.unwrap();
    assert!(f.id.authenticate(&s.token).await.unwrap().is_some());

    // Used every 9 minutes (and the touch is at most once a minute), it
    // lives on past its first idle deadline ...
    for _ in 0..3 {
        f.clock.advance(Duration::from_secs(540));
        let p = f.id.authenticate(&s.token).await.unwrap();
        assert_eq!(p.map(|p| p.actor).as_deref(), Some("ada"));
    }
    // ... but not past its absolute lifetime (30 min after login).
    f.clock.advance(Duration::from_secs(240));
    assert!(f.id.authenticate(&s.token).await.unwrap().is_none());

    // Idle for longer than the idle time ends it too, and the nightly
    // purge drops what expired.
    let idle = f.id.login("ada", PW, "10.0.0.1").await.unwrap();
    let unread = f.id.login("ada", PW, "10.0.0.1").await.unwrap();
    f.clock.advance(Duration::from_secs(601));
    assert!(f.id.authenticate(&idle.token).await.unwrap().is_none());
    assert!(f.id.purge_sessions().await.unwrap() >= 1);
    assert!(f.id.authenticate(&unread.token).await.unwrap().is_none());
}

#[tokio::test]
async fn failures_lock_a_username_with_doubling_waits_and_success_clears_them() {
    let f = fixture();
    f.id.add_user(&cli(), "ada", Role::Manager, PW).await.unwrap();
    for _ in 0..4 {
        assert_eq!(
            f.id.login("ada", "nope nope nope", "10.0.0.1").await.unwrap_err(),
            IdentityError::InvalidCredentials
        );
    }
    // Below the threshold a right password still works and clears the count.
    assert!(f.id.login("ada", PW, "10.0.0.1").await.is_ok());
    for _ in 0..5 {
        let _ = f.id.login("ada", "nope nope nope", "10.0.0.2").await;
    }
    let locked = |e: IdentityError| match e {
        IdentityError::Locked { retry_after } => retry_after,
        other => panic!("expected a lock, got {other:?}"),
    };
    let first = locked(f.id.login("ada", PW, "10.0.0.3").await.unwrap_err());
    assert_eq!(first, Duration::from_secs(30));
    f.clock.advance(Duration::from_secs(31));
    // One more failure after the lock: the wait doubles.
    let _ = f.id.login("ada", "nope nope nope", "10.0.0.2").await;
    let second = locked(f.id.login("ada", PW, "10.0.0.3").await.unwrap_err());
    assert_eq!(second, Duration::from_secs(60));
    f.clock.advance(Duration::from_secs(61));
    assert!(f.id.login("ada", PW, "10.0.0.3").await.is_ok());
}

#[tokio::test]
async fn a_source_address_is_slowed_across_usernames() {
    let f = fixture_with(
        Passwords::fast_for_tests(),
        IdentitySettings {
            address_threshold: 3,
            ..IdentitySettings::default()
        },
    );
    f.id.add_user(&cli(), "ada", Role::Manager, PW).await.unwrap();
    for name in ["u1", "u2", "u3"] {
        let _ = f.id.login(name, "whatever whatever", "203.0.113.7").await;
    }
    assert!(matches!(
        f.id.login("ada", PW, "203.0.113.7").await,
        Err(IdentityError::Locked { .. })
    ));
    assert!(
        f.id.login("ada", PW, "198.51.100.1").await.is_ok(),
        "other addresses are not slowed"
    );
}

/// The median of the wall time of `n` runs of `f`.
async fn median<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn an_unknown_user_costs_what_a_wrong_password_costs() {
    // Real parameters: the point is the hash's cost, which dwarfs a lookup.
    let f = fixture_with(
        Passwords::owasp(2),
        IdentitySettings {
            lockout_threshold: 10_000,
            address_threshold: 10_000,
            ..IdentitySettings::default()
        },
    );
    f.id.add_user(&cli(), "ada", Role::Barista, PW).await.unwrap();
    // Interleaved, so machine noise hits both sides alike.
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..11 {
        wrong.push(
            median(1, || async {
                f.id.login("ada", "wrong wrong wrong", "10.0.0.1").await.unwrap_err();
            })
            .await,
        );
        unknown.push(
            median(1, || async {
                f.id.login(&format!("ghost{i}"), "wrong wrong wrong", "10.0.0.1")
                    .await
                    .unwrap_err();
            })
            .await,
        );
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[5].as_secs_f64(), unknown[5].as_secs_f64());
    // A statistical check of the same work, not a speed target: without the
    // dummy hash the unknown user would be ~1000x faster.
    let ratio = u / w;
    assert!((0.5..2.0).contains(&ratio), "median unknown {u:.4}s vs wrong {w:.4}s");
}

#[tokio::test]
async fn old_hashes_are_upgraded_on_login() {
    let f = fixture_with(
        Passwords::with_params(argon2_params(16, 2), 1),
        IdentitySettings::default(),
    );
    let user = f.id.add_user(&cli(), "ada", Role::Barista, PW).await.unwrap();
    // A hash made with yesterday's (weaker) parameters.
    let old = Passwords::with_params(argon2_params(8, 1), 1).hash(PW).await.unwrap();
    let aged = domain::identity::User {
        password_hash: old.clone(),
        ..user
    };
    f.store.update_user(&aged).await.unwrap();
    f.id.login("ada", PW, "10.0.0.1").await.unwrap();
    let stored = f.store.user_by_name("ada").await.unwrap().unwrap().password_hash;
    assert_ne!(stored, old);
    assert!(stored.starts_with("$argon2id$v=19$m=16,t=2,p=1$"), "{stored}");
    assert!(f.id.login("ada", PW, "10.0.0.1").await.is_ok());
}

fn argon2_params(m: u32, t: u32) -> identity::Argon2Params {
    identity::Argon2Params::new(m, t, 1, None).unwrap()
}

#[tokio::test]
async fn the_last_admin_stays_and_a_first_admin_is_bootstrapped() {
    let f = fixture();
    let pw = f.id.ensure_admin(None).await.unwrap().expect("a generated password");
    assert!(identity::check_policy(&pw).is_ok());
    assert_eq!(f.id.ensure_admin(None).await.unwrap(), None, "only once");
    assert!(f.id.login("admin", &pw, "10.0.0.1").await.is_ok());
    assert_eq!(
        f.id.set_role(&cli(), "admin", Role::Manager).await.unwrap_err(),
        IdentityError::LastAdmin
    );
    assert_eq!(
        f.id.set_disabled(&cli(), "admin", true).await.unwrap_err(),
        IdentityError::LastAdmin
    );
    f.id.add_user(&cli(), "root2", Role::Admin, PW).await.unwrap();
    f.id.set_disabled(&cli(), "admin", true).await.unwrap();
    // Replicas starting together: whoever loses the race to create the
    // account starts anyway.
    let racing = fixture();
    let (a, b) = tokio::join!(
        racing.id.ensure_admin(Some("configured admin pw")),
        racing.id.ensure_admin(Some("configured admin pw"))
    );
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    // A configured password is used as given.
    let g = fixture();
    assert_eq!(g.id.ensure_admin(Some("configured admin pw")).await.unwrap(), None);
    assert!(g.id.login("admin", "configured admin pw", "10.0.0.1").await.is_ok());
}

#[tokio::test]
async fn keys_authenticate_until_revoked_and_follow_their_user() {
    let f = fixture();
    f.id.add_user(&cli(), "ada", Role::Manager, PW).await.unwrap();
    assert!(
        matches!(
            f.id.issue_key(
                &cli(),
                KeyRequest {
                    name: "x".into(),
                    role: Role::Admin,
                    store: None,
                    user: Some("ada".into())
                }
            )
            .await,
            Err(IdentityError::InvalidInput(_))
        ),
        "a key cannot outrank its user"
    );
    let k =
        f.id.issue_key(
            &cli(),
            KeyRequest {
                name: "till".into(),
                role: Role::Barista,
                store: Some("demo-downtown".into()),
                user: Some("ada".into()),
            },
        )
        .await
        .unwrap();
    let p = f.id.authenticate(&k.key).await.unwrap().unwrap();
    assert_eq!((p.role, p.store.as_deref()), (Role::Barista, Some("demo-downtown")));
    assert!(p.may_act_on_store("demo-downtown") && !p.may_act_on_store("uptown"));
    // A wrong secret with a right prefix is nobody.
    let forged = format!("{}_{}", k.record.prefix, "0".repeat(32));
    assert!(f.id.authenticate(&forged).await.unwrap().is_none());
    f.id.set_disabled(&cli(), "ada", true).await.unwrap();
    assert!(
        f.id.authenticate(&k.key).await.unwrap().is_none(),
        "the user is disabled"
    );
    f.id.set_disabled(&cli(), "ada", false).await.unwrap();
    assert!(f.id.authenticate(&k.key).await.unwrap().is_some());
    f.id.revoke_key(&cli(), &k.record.prefix).await.unwrap();
    assert!(f.id.authenticate(&k.key).await.unwrap().is_none());
    let audit =
        f.id.audit_log(&domain::ports::AuditQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for a in ["user_add", "key_issue", "user_disable", "user_enable", "key_revoke"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}
