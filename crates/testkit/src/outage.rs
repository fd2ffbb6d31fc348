//! `Outage`: a TCP relay in front of a backend that a test can cut and
//! restore, so a process under test sees its backend go away and come back
//! (every open connection closed, every new one refused, then all well
//! again) while the real server, shared with every other test, stays up.
//!
//! Why not stop the server itself: CI runs one PostgreSQL for the whole
//! suite (tests run in parallel against it), and stopping it would fail the
//! others. A cut here is what an application sees when its database host
//! dies or a network partition starts: pooled connections fail on their
//! next use and reconnects fail at once.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Outage {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outage")
            .field("addr", &self.addr)
            .field("up", &*self.up.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.task.abort();
        // Closes every relayed connection too.
        self.up.send_replace(false);
    }
}

impl Outage {
    /// Relay a free local port to `target`; up until [`Outage::cut`].
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (up, watching) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if !*watching.borrow() {
                    // Refused: closed before a byte is read.
                    drop(stream);
                    continue;
                }
                tokio::spawn(relay(stream, target, watching.clone()));
            }
        });
        Ok(Self { addr, up, task })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The backend goes away: open connections are closed, new ones are
    /// closed as soon as they are accepted.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// The backend is back.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        // Either side hanging up ends the relay; its result is theirs.
        _ = copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(port: u16) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn relays_until_cut_and_again_once_restored() {
        let outage = Outage::start(echo().await).await.unwrap();
        assert_eq!(round_trip(outage.port()).await.unwrap(), b"ping");

        // An open connection is closed by the cut.
        let mut open = TcpStream::connect(("127.0.0.1", outage.port())).await.unwrap();
        open.write_all(b"ab").await.unwrap();
        let mut two = [0u8; 2];
        open.read_exact(&mut two).await.unwrap();
        outage.cut();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), open.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the open connection survived the cut: {read:?}"
        );
        assert!(
            round_trip(outage.port()).await.is_err(),
            "a new connection went through a cut"
        );

        outage.restore();
        assert_eq!(round_trip(outage.port()).await.unwrap(), b"ping");
    }
}
