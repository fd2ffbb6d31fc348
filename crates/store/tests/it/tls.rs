//! TLS to PostgreSQL, against the real server: the pool `dbkit` opens for
//! every PostgreSQL adapter speaks TLS when the URL asks for it
//! (`sslmode=require`, `verify-ca`, `verify-full` with `sslrootcert=`), and
//! refuses a server whose certificate does not match when it must verify.
//!
//! The local server serves TLS with Debian's snakeoil certificate (`.ci/run`
//! switches `ssl` on when it is off); its certificate file, as the server
//! reports it, is the root the verifying modes are given. Needs
//! `RUSHHOUR_TEST_POSTGRES_URL`, like every PostgreSQL test here.

use std::time::Duration;

use dbkit::postgres::PoolSettings;
use domain::ports::{PortError, StoreBackend};
use store::{PgStore, PgStoreOptions};
use testkit::pg::URL_VAR;

fn settings() -> PoolSettings<'static> {
    PoolSettings {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        schema: None,
    }
}

/// `url` with `params` added to its query string.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// Whether this pool's own connection is encrypted, as the server sees it.
async fn encrypted(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("read pg_stat_ssl")
}

#[tokio::test]
async fn sslmode_require_connects_over_tls() {
    let Some(url) = testkit::service_url(URL_VAR, "tls::sslmode_require_connects_over_tls") else {
        return;
    };
    let pool = dbkit::postgres::pool(&with_params(&url, "sslmode=require"), &settings())
        .await
        .expect("connect with sslmode=require");
    assert!(encrypted(&pool).await, "sslmode=require must encrypt the connection");

    // The same through a whole adapter (its pool, migrations, health).
    let schema = testkit::pg::TestSchema::new("rh_tls", "tls::sslmode_require_connects_over_tls").expect("url set");
    let store = PgStore::connect(
        &with_params(&url, "sslmode=require"),
        PgStoreOptions {
            max_connections: 2,
            schema: Some(schema.name.clone()),
            ..PgStoreOptions::default()
        },
    )
    .await
    .expect("PgStore over TLS");
    store.migrate().await.expect("migrate over TLS");
    store.health().await.expect("healthy over TLS");
    schema.drop().await;
}

/// The certificate the server presents, read where the server says it is
/// (this machine's server is local), and the URL's host swapped for the
/// name that certificate carries (`localhost` for the snakeoil one).
async fn server_certificate(url: &str) -> String {
    let pool = dbkit::postgres::pool(url, &settings()).await.expect("connect");
    let path: String = sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = 'ssl_cert_file'")
        .fetch_one(&pool)
        .await
        .expect("read ssl_cert_file");
    let data_dir: String = sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
        .fetch_one(&pool)
        .await
        .expect("read data_directory");
    // A relative ssl_cert_file is relative to the data directory.
    let path = std::path::Path::new(&data_dir).join(path);
    assert!(
        path.exists(),
        "the server's certificate {} is not readable here",
        path.display()
    );
    path.display().to_string()
}

#[tokio::test]
async fn verifying_modes_check_the_chain_and_the_name() {
    let Some(url) = testkit::service_url(URL_VAR, "tls::verifying_modes_check_the_chain_and_the_name") else {
        return;
    };
    assert!(
        url.contains("@127.0.0.1"),
        "this test swaps the host 127.0.0.1 for localhost in {URL_VAR}"
    );
    let root = server_certificate(&url).await;

    // verify-ca: the chain is checked against the given root, not the name.
    let pool = dbkit::postgres::pool(
        &with_params(&url, &format!("sslmode=verify-ca&sslrootcert={root}")),
        &settings(),
    )
    .await
    .expect("connect with verify-ca");
    assert!(encrypted(&pool).await);

    // verify-full by the name on the certificate.
    let by_name = url.replacen("@127.0.0.1", "@localhost", 1);
    let pool = dbkit::postgres::pool(
        &with_params(&by_name, &format!("sslmode=verify-full&sslrootcert={root}")),
        &settings(),
    )
    .await
    .expect("connect with verify-full to localhost");
    assert!(encrypted(&pool).await);

    // verify-full by an address the certificate does not name: refused.
    let refused = dbkit::postgres::pool(
        &with_params(&url, &format!("sslmode=verify-full&sslrootcert={root}")),
        &settings(),
    )
    .await
    .expect_err("127.0.0.1 is not a name on the certificate");
    assert!(
        !matches!(refused, PortError::Invalid(ref m) if m.contains("invalid PostgreSQL URL")),
        "the URL parses; the handshake must be what fails: {refused}"
    );
}
