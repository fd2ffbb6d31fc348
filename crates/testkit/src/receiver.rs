//! `Receiver`: an in-process HTTP server standing in for a webhook
//! subscriber. It records every request (headers, body, what it answered)
//! and answers as the test says: 200, another status, or never (the
//! connection is held open without a reply, as a dead receiver does).
//!
//! Hand-written HTTP/1.1 (request line, headers, `Content-Length` body,
//! keep-alive) rather than a server library, so testkit stays light; what
//! it parses is exactly what rushhour's sender writes. Signatures are
//! checked with an HMAC of its own ([`signature_valid`]), not with the code
//! under test.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with an empty body.
    Ok,
    /// This status with this body.
    Status(u16, String),
    /// No answer at all, for as long as the client waits.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status answered; `None` if it hung.
    pub answered: Option<u16>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

struct Shared {
    behaviour: Behaviour,
    requests: Vec<Request>,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Listen on a free local port, answering 200.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            behaviour: Behaviour::Ok,
            requests: Vec::new(),
        }));
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    // A client that hangs up is its business.
                    let _ = serve(stream, &state).await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.shared.lock().unwrap().behaviour = behaviour;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The requests answered with a 2xx.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }
}

/// Whether `header` (`t=<s>,v1=<hex>`) is `HMAC-SHA256(secret, "{t}.{body}")`.
pub fn signature_valid(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => v1.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let want = hex::encode(mac.finalize().into_bytes());
    v1.contains(&want.as_str())
}

async fn serve(stream: TcpStream, state: &Mutex<Shared>) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            stream.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await?;
        let behaviour = state.lock().unwrap().behaviour.clone();
        let (status, text) = match behaviour {
            Behaviour::Ok => (Some(200), String::new()),
            Behaviour::Status(s, b) => (Some(s), b),
            Behaviour::Hang => (None, String::new()),
        };
        state.lock().unwrap().requests.push(Request {
            path,
            headers,
            body,
            answered: status,
        });
        let Some(status) = status else {
            // Hold the connection open, unanswered, until the client gives
            // up and closes it.
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await?;
            return Ok(());
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.get_mut().write_all(resp.as_bytes()).await?;
    }
}
