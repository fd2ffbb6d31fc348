//! Shared pieces of the upstream tests: a small simulator, a client tuned
//! for tests (short backoff) and a progress recorder. Time is
//! `testkit::clock::ManualClock`, started at the system's time.

use domain::sync::SyncProgress;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use testkit::clock::ManualClock;
use upstream::{SimOptions, Simulator, UpstreamClient, UpstreamOptions};

pub fn sim_config(accounts: usize) -> SimOptions {
    SimOptions {
        accounts,
        items: 200,
        seed: 7,
        ..SimOptions::default()
    }
}

pub async fn start(accounts: usize) -> (Simulator, UpstreamClient) {
    let (url, sim) = Simulator::start(sim_config(accounts)).await.expect("simulator starts");
    let client = UpstreamClient::new(client_config(&url), ManualClock::at_system_now()).expect("client builds");
    (sim, client)
}

/// Retries quickly so fault tests stay fast; otherwise the defaults.
pub fn client_config(base_url: &str) -> UpstreamOptions {
    let sim = SimOptions::default();
    UpstreamOptions {
        base_url: base_url.to_owned(),
        client_id: sim.client_id,
        client_secret: sim.client_secret,
        page_size: 100,
        timeout: Duration::from_secs(10),
        max_retries: 3,
        circuit_failures: 10,
        circuit_cooldown: Duration::from_secs(30),
        backoff: Duration::from_millis(5),
        tls_ca_file: None,
    }
}

/// Remembers what a sync reported.
#[derive(Default)]
pub struct Recorder {
    pub total: AtomicU64,
    pub done: AtomicU64,
}

impl SyncProgress for Recorder {
    fn set_total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }

    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

impl Recorder {
    pub fn get(&self) -> (u64, u64) {
        (self.total.load(Ordering::Relaxed), self.done.load(Ordering::Relaxed))
    }
}
