//! `file://` mail URLs: every message becomes one complete, parseable
//! `.eml` file in the outbox, and nothing else is left in the directory.

use domain::Mailer;
use domain::ports::{Email, PortError};
use mailparse::MailHeaderMap;
use std::path::Path;

use crate::{FROM, picked_up_order};

fn eml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The text of a message: the `text/plain` part of a multipart one.
fn plain_text(mail: &mailparse::ParsedMail<'_>) -> String {
    if mail.subparts.is_empty() {
        return mail.get_body().unwrap();
    }
    let part = mail
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/plain")
        .expect("a text/plain part");
    part.get_body().unwrap()
}

#[tokio::test]
async fn the_default_outbox_gets_one_parseable_eml_per_receipt() {
    let data = tempfile::tempdir().unwrap();
    let mailer = mail::open("file://", FROM, data.path()).unwrap();
    let order = picked_up_order();
    let receipt = domain::receipt::render(&order, "Demo Downtown", "Ada Lovelace <ada@example.com>");
    mailer.send(&receipt).await.unwrap();
    mailer.send(&receipt).await.unwrap();

    let outbox = data.path().join("outbox");
    let files = eml_files(&outbox);
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let (ms, rest) = name.split_once('-').expect("<epoch ms>-<random>.eml");
        assert!(ms.parse::<u64>().unwrap() > 1_700_000_000_000, "{name}");
        let random = rest.strip_suffix(".eml").expect("ends in .eml");
        assert!(
            random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
    }
    assert_ne!(files[0], files[1]);

    let raw = std::fs::read(&files[0]).unwrap();
    let parsed = mailparse::parse_mail(&raw).unwrap();
    let headers = parsed.get_headers();
    assert_eq!(
        headers.get_first_value("To").unwrap(),
        "\"Ada Lovelace\" <ada@example.com>"
    );
    assert_eq!(
        headers.get_first_value("From").unwrap(),
        "\"Rushhour Receipts\" <receipts@rushhour.test>"
    );
    assert_eq!(headers.get_first_value("Subject").unwrap(), receipt.subject);
    assert!(headers.get_first_value("Date").is_some());
    assert!(headers.get_first_value("Message-ID").is_some());
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let text = plain_text(&parsed);
    assert!(text.contains(&order.id.to_string()), "{text}");
    assert!(text.contains("2 × Latte (large, oat-milk)  $11.40"), "{text}");
    assert!(text.contains("$14.60"), "{text}");
    let html = parsed
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/html")
        .expect("an HTML part")
        .get_body()
        .unwrap();
    assert!(html.contains("<table>"), "{html}");
}

#[tokio::test]
async fn an_absolute_file_url_names_the_outbox_and_plain_messages_stay_plain() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = elsewhere.path().join("nested/outbox");
    let mailer = mail::open(&format!("file://{}", dir.display()), FROM, data.path()).unwrap();
    let email = Email {
        to: "bob@example.com".into(),
        subject: "Plain".into(),
        text: "just text\n".into(),
        html: None,
    };
    mailer.send(&email).await.unwrap();

    assert!(!data.path().join("outbox").exists(), "the data dir stays untouched");
    let files = eml_files(&dir);
    assert_eq!(files.len(), 1, "no temporary files are left: {files:?}");
    let raw = std::fs::read(&files[0]).unwrap();
    let parsed = mailparse::parse_mail(&raw).unwrap();
    assert_eq!(parsed.ctype.mimetype, "text/plain");
    assert_eq!(parsed.get_headers().get_first_value("To").unwrap(), "bob@example.com");
    assert_eq!(plain_text(&parsed).trim_end(), "just text");
}

#[tokio::test]
async fn a_malformed_recipient_is_invalid_and_writes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mailer = mail::OutboxMailer::new(data.path().join("out"), FROM).unwrap();
    let email = Email {
        to: "not-an-address".into(),
        subject: "x".into(),
        text: "x".into(),
        html: None,
    };
    let err = mailer.send(&email).await.unwrap_err();
    assert!(matches!(err, PortError::Invalid(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(eml_files(mailer.dir()).is_empty());
}
