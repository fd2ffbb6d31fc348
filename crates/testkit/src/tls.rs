//! `TlsProxy`: a TLS-terminating TCP proxy with a throwaway certificate
//! authority, for testing that a client really speaks TLS to its backend.
//!
//! Why a proxy rather than a TLS-enabled server per engine: the Redis, SMTP
//! and upstream servers the tests run (the real Redis, `mail::SmtpSink`,
//! the upstream simulator) all speak plain TCP; putting this in front of
//! one turns it into `rediss://`, `smtps://` or `https://` without a second
//! implementation of any protocol, and the proxy counts completed
//! handshakes, so a test can prove that its bytes went through TLS. The CA
//! and the server certificate are made fresh by rcgen for each proxy
//! (names `localhost` and `127.0.0.1`), and the CA is handed to the client
//! under test as a PEM file, the way an operator configures a private CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub struct TlsProxy {
    addr: SocketAddr,
    ca_pem: String,
    handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TlsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    /// Listen on a free local port; every TLS connection is decrypted and
    /// relayed to `target` over plain TCP.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let (ca_pem, acceptor) = acceptor().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    // A client that fails the handshake (the point of some
                    // tests) or hangs up is its business.
                    let _ = relay(stream, acceptor, target, &counted).await;
                });
            }
        });
        Ok(Self {
            addr,
            ca_pem,
            handshakes,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The certificate authority that signed the proxy's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Write the CA to `dir/ca.pem` and return the path.
    pub fn write_ca(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem)?;
        Ok(path)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

/// A fresh CA (PEM) and an acceptor whose certificate it signed.
fn acceptor() -> Result<(String, TlsAcceptor), Box<dyn std::error::Error + Send + Sync>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rushhour testkit CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    Ok((ca.as_ref().pem(), TlsAcceptor::from(Arc::new(config))))
}

async fn relay(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    target: SocketAddr,
    handshakes: &AtomicUsize,
) -> std::io::Result<()> {
    let mut tls = acceptor.accept(stream).await?;
    handshakes.fetch_add(1, Ordering::SeqCst);
    let mut plain = TcpStream::connect(target).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut plain).await?;
    Ok(())
}
