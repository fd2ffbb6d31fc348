//! The `Mailer` contract (`testkit::mail`) on both adapters: the outbox in
//! a temp directory, and SMTP against the in-process `SmtpSink`. One case
//! list, so neither adapter can skip a case.

use domain::Mailer;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use testkit::mail::{FROM, Fresh, SmtpSink};

fn smtp_mailer(sink: &SmtpSink) -> Arc<dyn Mailer> {
    Arc::new(
        mail::SmtpMailer::new(&mail::SmtpOptions {
            url: sink.url(),
            from: FROM.into(),
            timeout: Duration::from_secs(10),
            tls_ca_file: None,
        })
        .expect("an SMTP mailer"),
    )
}

macro_rules! outbox_contract {
    ($($case:ident),* $(,)?) => {
        mod outbox_contract {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let mailer = mail::OutboxMailer::new(dir.path().join("outbox"), FROM).unwrap();
                    let inbox = testkit::mail::outbox(mailer.dir());
                    testkit::mail::$case(Arc::new(mailer), inbox).await;
                }
            )*
        }
    };
}
testkit::mailer_contract_cases!(outbox_contract);

macro_rules! smtp_contract {
    ($($case:ident),* $(,)?) => {
        mod smtp_contract {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let sink = Arc::new(SmtpSink::start().await.unwrap());
                    testkit::mail::$case(smtp_mailer(&sink), sink).await;
                }
            )*
        }
    };
}
testkit::mailer_contract_cases!(smtp_contract);

#[tokio::test]
async fn run_all_runs_every_case_on_both_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let made = AtomicUsize::new(0);
    testkit::mail::run_all(|| {
        let n = made.fetch_add(1, Ordering::SeqCst);
        let path = dir.path().join(format!("outbox-{n}"));
        async move {
            let mailer = mail::OutboxMailer::new(&path, FROM).unwrap();
            Fresh {
                mailer: Arc::new(mailer),
                inbox: testkit::mail::outbox(&path),
            }
        }
    })
    .await;
    testkit::mail::run_all(|| {
        made.fetch_add(1, Ordering::SeqCst);
        async {
            let sink = Arc::new(SmtpSink::start().await.unwrap());
            Fresh {
                mailer: smtp_mailer(&sink),
                inbox: sink,
            }
        }
    })
    .await;
    assert_eq!(made.load(Ordering::SeqCst), 2 * testkit::mail::CASES.len());
}
