//! Who may do what, through the application as `rushhour` wires it:
//! rate limits shared by two API instances through Redis (and each on its
//! own when Redis is gone, without an error), the `users` command line
//! against the embedded files, and the first start's admin account.

use reqwest::StatusCode;
use rushhour::users_cli::{UsersArgs, UsersCommand, run};
use serde_json::{Value, json};

use crate::support::*;

/// Two instances, one budget: `limits.reads` = 4 per minute for every
/// client, loopback included, with the cache (and so the limiter) on the
/// same Redis namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_instances_share_one_rate_limit_budget_through_redis() {
    let Some(redis) = testkit::service_url(
        "RUSHHOUR_TEST_REDIS_URL",
        "two_api_instances_share_one_rate_limit_budget_through_redis",
    ) else {
        return;
    };
    let prefix = format!("rhtest:{}", uuid::Uuid::now_v7());
    let tweak = |c: &mut rushhour::config::Config| {
        c.cache.url = redis.clone();
        c.cache.key_prefix = prefix.clone();
        c.limits.exempt = vec![];
        c.limits.reads = 4;
    };
    let (a, b) = (spawn_app_with(tweak).await, spawn_app_with(tweak).await);
    let mut answers = Vec::new();
    for app in [&a, &b, &a, &b, &a, &b] {
        answers.push(app.get("/v1/stores").await.status());
    }
    assert_eq!(
        answers,
        [StatusCode::OK; 4]
            .into_iter()
            .chain([StatusCode::TOO_MANY_REQUESTS; 2])
            .collect::<Vec<_>>(),
        "four requests in all, whichever instance took them"
    );
    let refused = a.get("/v1/stores").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.headers()["ratelimit-policy"].to_str().unwrap().contains("q=4"));
    problem(refused, 429, "rate_limited").await;
}

/// Redis unreachable: every instance limits on its own and no request
/// fails because of the limiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_instance_limits_on_its_own_and_nothing_fails() {
    let tweak = |c: &mut rushhour::config::Config| {
        // A port nothing listens on: the limiter falls back at once.
        c.cache.url = "redis://127.0.0.1:1".into();
        c.limits.exempt = vec![];
        c.limits.reads = 3;
    };
    let (a, b) = (spawn_app_with(tweak).await, spawn_app_with(tweak).await);
    for app in [&a, &b] {
        for _ in 0..3 {
            let r = app.get("/v1/stores").await;
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        }
        assert_eq!(app.get("/v1/stores").await.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}

async fn users(app: &TestApp, command: UsersCommand, stdin: &str) -> anyhow::Result<String> {
    let mut out = Vec::new();
    run(
        &app.built.identity,
        &UsersArgs { command },
        "tester",
        &mut stdin.as_bytes(),
        &mut out,
    )
    .await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_users_command_makes_accounts_and_keys_that_the_api_honours() {
    let app = spawn_app().await;
    let out = users(
        &app,
        UsersCommand::Add {
            username: "Bea".into(),
            role: domain::identity::Role::Barista,
            password_stdin: true,
        },
        "a long enough passphrase\n",
    )
    .await
    .unwrap();
    assert!(out.contains("created bea (barista)"), "{out}");
    assert!(!out.contains("passphrase"), "a given password is never echoed");

    let login = |user: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/sessions"))
                .json(&json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        login("bea", "a long enough passphrase").await.status(),
        StatusCode::CREATED
    );

    // A generated password is printed once and works.
    let out = users(
        &app,
        UsersCommand::SetPassword {
            username: "bea".into(),
            password_stdin: false,
        },
        "",
    )
    .await
    .unwrap();
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned();
    let ok = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"username": "bea", "password": generated}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_eq!(
        login("bea", "a long enough passphrase").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A key issued on the command line opens the barista's routes only.
    let out = users(
        &app,
        UsersCommand::IssueKey {
            name: "bar tablet".into(),
            role: domain::identity::Role::Barista,
            store: Some(STORE.into()),
            user: Some("bea".into()),
        },
        "",
    )
    .await
    .unwrap();
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("key (shown once): "))
        .unwrap()
        .to_owned();
    let me: Value = app
        .client
        .get(app.url("/v1/sessions/current"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["role"].as_str(), me["store"].as_str()),
        (Some("barista"), Some(STORE))
    );
    let listed = app
        .client
        .get(app.url("/v1/orders"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    problem(listed, 403, "forbidden").await;

    // Disabled on the command line: the key stops (within its cache time)
    // and the list says so.
    users(&app, UsersCommand::Disable { username: "bea".into() }, "")
        .await
        .unwrap();
    let out = users(&app, UsersCommand::List, "").await.unwrap();
    assert!(
        out.lines().any(|l| l.starts_with("bea") && l.contains("disabled")),
        "{out}"
    );
    let err = users(
        &app,
        UsersCommand::Add {
            username: "bea".into(),
            role: domain::identity::Role::Admin,
            password_stdin: true,
        },
        "another long passphrase\n",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let prefix = key[..12].to_owned();
    let out = users(&app, UsersCommand::RevokeKey { prefix: prefix.clone() }, "")
        .await
        .unwrap();
    assert!(out.contains(&format!("revoked {prefix}")));
    let keys = users(&app, UsersCommand::Keys, "").await.unwrap();
    assert!(
        keys.lines().any(|l| l.starts_with(&prefix) && l.contains("revoked")),
        "{keys}"
    );

    // Every change is in the audit log under the command line's name.
    let audit: Value = app
        .staff_get("/v1/admin/audit?actor=cli:tester")
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["user_add", "user_password", "key_issue", "user_disable", "key_revoke"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn the_first_start_creates_an_admin_whose_password_is_a_private_file() {
    let app = spawn_app().await;
    let password = rushhour::wiring::bootstrap_admin(&app.config, &app.built)
        .await
        .unwrap()
        .expect("a generated password on the first start");
    let file = app.config.data_dir.join("admin.password");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        rushhour::wiring::bootstrap_admin(&app.config, &app.built)
            .await
            .unwrap(),
        None,
        "only once"
    );
    let ok = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
}
