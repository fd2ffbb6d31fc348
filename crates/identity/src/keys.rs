//! Token formats: personal API keys (`rhk_<prefix>_<secret>`), session
//! tokens (`rhs_<secret>`) and one-time passwords, all from the OS random
//! generator.
//!
//! A key carries its own lookup prefix, so finding it is one indexed read
//! by a value that is safe to show and log (`rhk_3f9a1c2b`), and only the
//! SHA-256 of the whole key is stored. The scheme prefixes let the HTTP
//! edge tell a key from a session from the legacy staff key without a
//! lookup, and let secret scanners recognise a leaked rushhour key.

use rand::RngCore;

/// Start of every personal API key.
pub const API_KEY_SCHEME: &str = "rhk_";
/// Start of every session token.
pub const SESSION_SCHEME: &str = "rhs_";

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A new API key and its prefix: 32 bits of prefix (lookup only) and 128
/// bits of secret.
pub fn new_api_key() -> (String, String) {
    let prefix = format!("{API_KEY_SCHEME}{}", random_hex(4));
    let key = format!("{prefix}_{}", random_hex(16));
    (key, prefix)
}

/// The prefix of a well-formed API key, else `None`.
pub fn api_key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(API_KEY_SCHEME)?;
    let (p, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(p, 8) && hex(secret, 32)).then(|| &key[..API_KEY_SCHEME.len() + 8])
}

/// A new session token (256 bits).
pub fn new_session_token() -> String {
    format!("{SESSION_SCHEME}{}", random_hex(32))
}

/// A generated password: 20 characters from an alphabet without look-alikes
/// (about 115 bits), easy to read off a terminal and type once.
pub fn generated_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_prefix() {
        let (key, prefix) = new_api_key();
        assert_eq!(api_key_prefix(&key), Some(prefix.as_str()));
        assert_eq!(prefix.len(), 12);
        assert_eq!(key.len(), 12 + 1 + 32);
        assert_ne!(new_api_key().0, key);
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        for bad in [
            "",
            "rhk_",
            "rhk_3f9a1c2b",
            "rhk_3f9a1c2b_",
            "rhk_3f9a1c2g_00000000000000000000000000000000",
            "rhs_3f9a1c2b_00000000000000000000000000000000",
            "rhk_3f9a1c2b_0000000000000000000000000000000",
        ] {
            assert_eq!(api_key_prefix(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn generated_passwords_meet_the_policy() {
        let p = generated_password();
        assert!(crate::password::check_policy(&p).is_ok());
        assert_ne!(p, generated_password());
    }
}
