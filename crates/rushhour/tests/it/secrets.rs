//! Secrets, against the real binary: scale mode refuses to start without
//! the secrets every instance must share (naming the setting), and the
//! embedded mode's generated secrets stay out of its output when that is
//! not a terminal (a container's log), live in files only the owner can
//! read, and tighten a data directory that was left looser.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

fn rushhour(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rushhour"));
    cmd.args(args)
        .env_remove("RUSHHOUR_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Nothing is listening there: the refusal must come before any connection.
const UNREACHABLE_PG: &str = "postgres://rushhour:pgpass@127.0.0.1:1/rushhour?sslmode=require";

#[tokio::test]
async fn scale_mode_refuses_to_start_without_shared_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &'static [(&'static str, &'static str)]| {
        let mut cmd = rushhour(&["api", "--data-dir", dir.path().to_str().unwrap()]);
        cmd.env("RUSHHOUR__STORE__URL", UNREACHABLE_PG)
            .envs(extra.iter().copied());
        async move {
            tokio::time::timeout(Duration::from_secs(30), cmd.output())
                .await
                .expect("refuses at once")
                .expect("run rushhour")
        }
    };

    let out = run(&[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("scale mode needs webhooks.secret (RUSHHOUR__WEBHOOKS__SECRET)"),
        "{stderr}"
    );
    assert!(!stderr.contains("pgpass"), "no password in the message: {stderr}");

    let out = run(&[("RUSHHOUR__WEBHOOKS__SECRET", "whsec_shared")]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("scale mode needs auth.session_key (RUSHHOUR__AUTH__SESSION_KEY)"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("webhook.secret").exists(),
        "nothing is generated in scale mode"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_secrets_stay_out_of_piped_output_and_are_private() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // A data dir and a secret left world-readable (a restored backup).
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("webhook.secret"), "whsec_restored_from_backup\n").unwrap();
    std::fs::set_permissions(data.join("webhook.secret"), std::fs::Permissions::from_mode(0o644)).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = rushhour(&[
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "debug")
    .spawn()
    .expect("start rushhour");
    // Drain both pipes while it runs, so a chatty log never blocks it.
    let mut child = child;
    let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut text).await;
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));

    // Bounded start-up wait (not a wait for work).
    let client = crate::support::http_client(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "rushhour did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode = |name: &str| std::fs::metadata(data.join(name)).unwrap().permissions().mode() & 0o777;
    let admin_password = std::fs::read_to_string(data.join("admin.password")).unwrap();
    let session_key = std::fs::read_to_string(data.join("session.key")).unwrap();
    let (admin_password, session_key) = (admin_password.trim(), session_key.trim());
    assert!(admin_password.len() >= 12 && session_key.len() >= 32);
    // The generated admin password is the one in force: log in with it, and
    // use the session (its token is a secret too).
    let login = client
        .post(format!("{base}/v1/sessions"))
        .json(&serde_json::json!({"username": "admin", "password": admin_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201, "the stored admin password is the one in force");
    let session: serde_json::Value = login.json().await.unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    let jobs = client
        .get(format!("{base}/v1/admin/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(jobs.status().is_success(), "an admin session: {}", jobs.status());

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let (stdout, stderr) = (stdout.await.unwrap(), stderr.await.unwrap());
    for secret in [admin_password, session_key, &token, "whsec_restored_from_backup"] {
        assert!(!stdout.contains(secret), "a secret reached stdout: {stdout}");
        assert!(!stderr.contains(secret), "a secret reached the log: {stderr}");
    }
    assert!(!stderr.is_empty(), "the log was captured (debug level)");

    let dir_mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "the data dir is tightened");
    for name in ["admin.password", "webhook.secret", "session.key"] {
        assert_eq!(mode(name), 0o600, "{name}");
    }
}
