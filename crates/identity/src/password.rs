//! Password hashing: Argon2id with OWASP's current parameters (19 MiB,
//! two passes, one lane — the `argon2` crate's defaults, which follow the
//! OWASP Password Storage Cheat Sheet), run off the async threads.
//!
//! A hash costs tens of milliseconds of CPU and 19 MiB of memory, so it
//! runs on tokio's blocking pool and at most `max_parallel` at once: a
//! login flood queues here instead of taking every core and every megabyte
//! (the login rate limit keeps the queue short). Hashes store their
//! parameters, so a hash made with older ones still verifies, and
//! [`Passwords::verify`] says when it should be re-made with today's.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

use crate::IdentityError;

/// Shortest password accepted for a staff account (OWASP: at least 8 with
/// MFA, 15 without; staff accounts here have no MFA, and a till password is
/// typed rarely, so 12 is the floor with a passphrase in mind).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest: bounds the work an attacker can ask of one hash.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Right, but hashed with other parameters: store a fresh hash.
    YesRehash,
}

/// Hashes and verifies passwords with one set of parameters.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password with today's parameters, verified
    /// against when the user does not exist so that an unknown username
    /// costs the same time as a wrong password (no user enumeration).
    /// Made on first need, not at start-up: every CLI command builds a
    /// `Passwords`, and a hash is tens of milliseconds (the first unknown
    /// username after a start pays it once).
    dummy: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("m_cost", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .field("p_cost", &self.params.p_cost())
            .finish()
    }
}

impl Passwords {
    /// OWASP parameters (`Params::DEFAULT`: m = 19 MiB, t = 2, p = 1).
    pub fn owasp(max_parallel: usize) -> Self {
        Self::with_params(Params::DEFAULT, max_parallel)
    }

    /// Cheaper parameters for tests only (8 MiB, one pass).
    pub fn fast_for_tests() -> Self {
        Self::with_params(Params::new(8, 1, 1, None).expect("valid argon2 params"), 4)
    }

    pub fn with_params(params: Params, max_parallel: usize) -> Self {
        Passwords {
            params,
            permits: Arc::new(Semaphore::new(max_parallel.max(1))),
            dummy: Arc::new(OnceLock::new()),
        }
    }

    fn hasher(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string for `password`, after checking its length.
    pub async fn hash(&self, password: &str) -> Result<String, IdentityError> {
        check_policy(password)?;
        let hasher = self.hasher();
        let password = password.to_owned();
        self.blocking(move || {
            hasher
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| IdentityError::Internal(format!("hash a password: {e}")))
        })
        .await?
    }

    /// Check `password` against `hash`, or against the dummy hash when
    /// `hash` is `None` (an unknown user: same work, always `No`).
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<Verified, IdentityError> {
        let known = hash.is_some();
        let hash = hash.map(str::to_owned);
        let dummy = self.dummy.clone();
        // Over-long input is refused after the same work as a wrong
        // password would cost, not before (timing says nothing).
        let too_long = password.len() > MAX_PASSWORD_LEN;
        let password = if too_long { String::new() } else { password.to_owned() };
        let (hasher, wanted) = (self.hasher(), self.params.clone());
        self.blocking(move || {
            let hash = hash.unwrap_or_else(|| {
                dummy
                    .get_or_init(|| {
                        hasher
                            .hash_password(crate::keys::random_hex(16).as_bytes())
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            });
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return Verified::No;
            };
            let ok = hasher.verify_password(password.as_bytes(), &parsed).is_ok();
            if !ok || !known || too_long {
                return Verified::No;
            }
            let current = parsed.algorithm.as_str() == "argon2id"
                && Params::try_from(&parsed).is_ok_and(|p| {
                    p.m_cost() == wanted.m_cost() && p.t_cost() == wanted.t_cost() && p.p_cost() == wanted.p_cost()
                });
            if current { Verified::Yes } else { Verified::YesRehash }
        })
        .await
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, IdentityError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| IdentityError::Internal("password hasher closed".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| IdentityError::Internal(format!("password hashing task: {e}")))
    }
}

/// The password policy: length only (NIST SP 800-63B: no composition
/// rules), at least [`MIN_PASSWORD_LEN`] characters.
pub fn check_policy(password: &str) -> Result<(), IdentityError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(IdentityError::WeakPassword(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if chars > MAX_PASSWORD_LEN {
        return Err(IdentityError::WeakPassword(format!(
            "a password may have at most {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_old_parameters_ask_for_a_rehash() {
        let pw = Passwords::fast_for_tests();
        let h = pw.hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert_eq!(
            pw.verify(Some(&h), "correct horse battery").await.unwrap(),
            Verified::Yes
        );
        assert_eq!(pw.verify(Some(&h), "wrong horse battery").await.unwrap(), Verified::No);
        assert_eq!(pw.verify(None, "correct horse battery").await.unwrap(), Verified::No);
        assert_eq!(pw.verify(Some("not a hash"), "x").await.unwrap(), Verified::No);

        let stronger = Passwords::with_params(Params::new(16, 2, 1, None).unwrap(), 2);
        assert_eq!(
            stronger.verify(Some(&h), "correct horse battery").await.unwrap(),
            Verified::YesRehash
        );
    }

    #[test]
    fn the_default_parameters_are_owasps() {
        let p = Params::DEFAULT;
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (19 * 1024, 2, 1));
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        let pw = Passwords::fast_for_tests();
        assert!(matches!(pw.hash("short").await, Err(IdentityError::WeakPassword(_))));
        assert!(matches!(
            pw.hash(&"x".repeat(MAX_PASSWORD_LEN + 1)).await,
            Err(IdentityError::WeakPassword(_))
        ));
    }
}
