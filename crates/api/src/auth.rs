//! Staff authentication: the `Staff` extractor that guards staff routes with
//! `Authorization: Bearer <staff key>`.
//!
//! One shared key is what the product ships with today; per-user API keys
//! and sessions (§2, §3) will replace the comparison below without changing
//! the handlers, which only ask for a `Staff` argument.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};

use crate::AppState;
use crate::error::ApiError;

/// Proof that the request carried the staff key. Put it first among a
/// handler's arguments so an anonymous caller learns nothing else (not even
/// whether a path parameter was valid).
pub struct Staff;

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts.headers.get(header::AUTHORIZATION).and_then(bearer_token);
        match token {
            // An empty configured key locks staff routes rather than
            // opening them.
            Some(t) if !state.staff_key.is_empty() && constant_time_eq(t.as_bytes(), state.staff_key.as_bytes()) => {
                Ok(Staff)
            }
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// The token of a `Bearer` credential. The scheme is case-insensitive
/// (RFC 9110 §11.1); the token is not.
pub fn bearer_token(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?.trim();
    let (scheme, token) = s.split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Compare in constant time (`subtle`), so the time taken says nothing
/// about how many leading bytes of a guess were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Option<String> {
        bearer_token(&HeaderValue::from_str(s).unwrap()).map(str::to_owned)
    }

    #[test]
    fn bearer_credentials_are_parsed() {
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("BEARER   abc  ").as_deref(), Some("abc"));
        assert_eq!(token("Bearer"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(token("Bearer a b"), None);
        assert_eq!(token("abc"), None);
    }

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
