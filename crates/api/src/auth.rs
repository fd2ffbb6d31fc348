//! Who is calling, and may they: the `authorize` middleware that enforces
//! the permission table (`permissions::RULES`) and the rate limits on
//! every routed request, and the `Caller` extractor handlers use for audit
//! entries and store scopes.
//!
//! One middleware rather than an extractor per handler: a handler that
//! forgot its extractor would be open, while a route missing from the
//! table is refused here. It runs after routing (`route_layer`), so it
//! knows the matched route, and before the per-route layers (load
//! shedding, body reads, timeouts), so a refused or rate-limited request
//! never takes an intake slot.
//!
//! Credentials, in order: `Authorization: Bearer <token>` (a session
//! token, a personal API key or the deprecated staff key), then the
//! session cookie. A cookie-authenticated unsafe request must also carry
//! the session's `X-CSRF-Token` and, when the browser sends `Origin`, come
//! from this host: `SameSite=Strict` already keeps the cookie off
//! cross-site requests, and the token covers browsers and proxies that do
//! not honour it. Customers carry no credential: an order's access token
//! (`X-Order-Token`, or `?token=` for `EventSource`) opens that order only.

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::OrderId;
use domain::identity::{Role, order_token_matches};
use domain::ports::{Quota, RateDecision};
use identity::{Credential, Principal};
use ipnet::IpNet;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use telemetry::names;

use crate::AppState;
use crate::error::ApiError;
use crate::permissions::{self, Access, Class, Rule};

/// The web UI's session cookie.
pub const SESSION_COOKIE: &str = "rh_session";
/// Header carrying an order's access token.
pub const ORDER_TOKEN_HEADER: &str = "x-order-token";
/// Query parameter carrying an order's access token (for `EventSource`).
pub const ORDER_TOKEN_QUERY: &str = "token";
/// Header a cookie-authenticated unsafe request echoes the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Rate-limit budgets by route class; a class without one is unlimited.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    pub quotas: HashMap<Class, Quota>,
    /// Client addresses never limited (loopback by default, where the load
    /// generator runs).
    pub exempt: Vec<IpNet>,
}

/// Who sent a request, as the middleware found it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The staff member or key, when a valid credential came with it.
    pub principal: Option<Principal>,
    /// The client address (after trusted proxies), for the audit log and
    /// the per-address limits.
    pub source: IpAddr,
    /// Whether a trusted proxy says the client used HTTPS.
    pub https: bool,
}

impl Caller {
    /// The audit actor for this caller.
    pub fn actor(&self) -> identity::Actor {
        match &self.principal {
            Some(p) => identity::Actor::of(p, self.source.to_string()),
            None => identity::Actor::anonymous(self.source.to_string()),
        }
    }

    /// Whether the caller is staff with at least `role`.
    pub fn is_staff(&self, role: Role) -> bool {
        self.principal.as_ref().is_some_and(|p| p.role.covers(role))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Infallible> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or(Caller {
            principal: None,
            source: IpAddr::from([0, 0, 0, 0]),
            https: false,
        }))
    }
}

/// Enforce the permission table and the rate limits on one request.
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        return next.run(req).await;
    };
    let Some(rule) = permissions::lookup(req.method(), &path) else {
        // Fail closed: a route without an entry is a bug, not an open door.
        tracing::error!(method = %req.method(), path, "route has no entry in the permission table; refused");
        return refuse("unlisted", ApiError::Forbidden);
    };
    let source = client_addr(&req, &state.trusted_proxies);
    let principal = match authenticate(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let viewer = principal.as_ref().map(|p| web::Viewer {
        name: p.0.actor.clone(),
        role: p.0.role,
    });
    if let Err(e) = admit(&state, rule, &req, &path, principal.as_ref()) {
        if rule.class == Class::Pages {
            return refuse_page(rule, &req, viewer.as_ref(), e);
        }
        return e.into_response();
    }
    if let Some(v) = viewer {
        req.extensions_mut().insert(v);
    }
    let exempt = state.limits.exempt.iter().any(|n| n.contains(&source));
    let decision = match rule.class {
        Class::Ops => None,
        _ if exempt => None,
        class => match state.limits.quotas.get(&class) {
            Some(quota) => {
                let who = match &principal {
                    Some(p) => p.0.limit_key(),
                    None => format!("addr:{source}"),
                };
                let key = format!("{}:{who}", class.as_str());
                let d = state.limiter.check(&key, *quota).await;
                if !d.allowed {
                    metrics::counter!(names::RATE_LIMITED, "class" => class.as_str()).increment(1);
                    let mut resp = ApiError::RateLimited(d.retry_after).into_response();
                    rate_headers(resp.headers_mut(), class, *quota, &d);
                    return resp;
                }
                Some((class, *quota, d))
            }
            None => None,
        },
    };
    let https = forwarded_https(req.headers(), peer(&req), &state.trusted_proxies);
    req.extensions_mut().insert(Caller {
        principal: principal.map(|p| p.0),
        source,
        https,
    });
    let mut resp = next.run(req).await;
    if let Some((class, quota, d)) = decision {
        rate_headers(resp.headers_mut(), class, quota, &d);
    }
    resp
}

/// A refused page request, answered for a person: an anonymous visitor
/// goes to the login page (which comes back here), a signed-in user
/// without the role gets an HTML 403 saying which role it needs.
fn refuse_page(rule: &Rule, req: &Request, viewer: Option<&web::Viewer>, e: ApiError) -> Response {
    let need = match rule.access {
        Access::Staff(role) | Access::OrderOrStaff(role) => role,
        Access::Public | Access::Signed => Role::Admin,
    };
    match e {
        ApiError::Unauthorized => {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            web::to_login(target)
        }
        ApiError::Forbidden => web::forbidden(viewer, need),
        other => other.into_response(),
    }
}

/// A principal and whether it came from the cookie.
struct Authenticated(Principal, bool);

/// The staff principal of the request's credential, if it has a valid
/// one. A credential that names nobody is ignored here (the route's rule
/// then decides); a backend that cannot answer is a 503.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Authenticated>, ApiError> {
    let (token, cookie) = match headers.get(header::AUTHORIZATION).and_then(bearer_token) {
        Some(t) => (t.to_owned(), false),
        None => match cookie_value(headers, SESSION_COOKIE) {
            Some(t) => (t.to_owned(), true),
            None => return Ok(None),
        },
    };
    let principal = state.identity.authenticate(&token).await?;
    Ok(principal.map(|p| Authenticated(p, cookie)))
}

/// Whether the rule lets this caller through.
fn admit(
    state: &AppState,
    rule: &Rule,
    req: &Request,
    path: &str,
    principal: Option<&Authenticated>,
) -> Result<(), ApiError> {
    if let Some(Authenticated(p, true)) = principal
        && !is_safe(req.method())
    {
        check_csrf(p, req.headers())?;
    }
    let staff_ok = |role: Role| -> Result<bool, ApiError> {
        let Some(Authenticated(p, _)) = principal else {
            return Ok(false);
        };
        if !p.role.covers(role) {
            return Err(refuse_err("forbidden", ApiError::Forbidden));
        }
        // A store-scoped key acts on its store's routes only.
        if let Some(store) = path_param(path, req.uri().path(), "{id}")
            .filter(|_| path.starts_with("/v1/stores/") || path.starts_with("/stores/"))
            && !p.may_act_on_store(store)
        {
            return Err(refuse_err("forbidden", ApiError::Forbidden));
        }
        Ok(true)
    };
    match rule.access {
        Access::Public | Access::Signed => Ok(()),
        Access::Staff(role) => {
            if staff_ok(role)? {
                Ok(())
            } else {
                Err(refuse_err("unauthenticated", ApiError::Unauthorized))
            }
        }
        Access::OrderOrStaff(role) => {
            // A malformed id is the handler's 400 for anyone: it names no
            // order, so it reveals nothing.
            let Some(id) = path_param(path, req.uri().path(), "{id}").and_then(OrderId::parse) else {
                return Ok(());
            };
            let token = order_token(req);
            // Staff first; a barista holding a customer's token may still
            // use the token for what the token allows.
            match staff_ok(role) {
                Ok(true) => return Ok(()),
                Err(e) if token.is_none() => return Err(e),
                _ => {}
            }
            let Some(token) = token else {
                return Err(refuse_err("unauthenticated", ApiError::Unauthorized));
            };
            // A wrong token is 403 whether or not the order exists (the
            // token is derived from the id, so checking it reveals nothing).
            if order_token_matches(&state.app.config.order_token_key, id, &token) {
                Ok(())
            } else {
                Err(refuse_err("order_token", ApiError::Forbidden))
            }
        }
    }
}

fn check_csrf(p: &Principal, headers: &HeaderMap) -> Result<(), ApiError> {
    let Credential::Session { csrf, .. } = &p.credential else {
        return Ok(());
    };
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let same_origin = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(_, o)| Some(o) == host.to_str().ok()),
        // No Origin (same-origin GET-style or a non-browser client).
        (None, _) => true,
        (Some(_), None) => false,
    };
    if identity::constant_time_eq(sent.as_bytes(), csrf.as_bytes()) && same_origin {
        Ok(())
    } else {
        Err(refuse_err("csrf", ApiError::CsrfFailed))
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn refuse_err(reason: &'static str, e: ApiError) -> ApiError {
    metrics::counter!(names::AUTH_REFUSED, "reason" => reason).increment(1);
    e
}

fn refuse(reason: &'static str, e: ApiError) -> Response {
    refuse_err(reason, e).into_response()
}

/// The order access token from the header or the query string.
fn order_token(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(ORDER_TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == ORDER_TOKEN_QUERY).then(|| v.to_owned())
    })
}

/// The segment of `actual` where `route` has `param`.
fn path_param<'a>(route: &str, actual: &'a str, param: &str) -> Option<&'a str> {
    route
        .split('/')
        .zip(actual.split('/'))
        .find_map(|(r, a)| (r == param).then_some(a))
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers,
/// structured-field form): the class's quota and what is left of it.
fn rate_headers(headers: &mut HeaderMap, class: Class, quota: Quota, d: &RateDecision) {
    let name = class.as_str();
    let policy = format!("\"{name}\";q={};w={}", quota.burst, quota.period.as_secs().max(1));
    let reset = if d.reset_after.is_zero() {
        0
    } else {
        crate::error::retry_secs(d.reset_after)
    };
    let now = format!("\"{name}\";r={};t={reset}", d.remaining);
    if let (Ok(p), Ok(n)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&now)) {
        headers.insert("ratelimit-policy", p);
        headers.insert("ratelimit", n);
    }
}

/// The client's address: the peer, or — only when the peer is a trusted
/// proxy — the nearest untrusted address in `X-Forwarded-For` (or
/// `Forwarded: for=`). Trusting the header from anyone would let every
/// client pick its own rate-limit key.
fn client_addr(req: &Request, trusted: &[IpNet]) -> IpAddr {
    let peer = peer(req).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !is_trusted(Some(peer), trusted) {
        return peer;
    }
    let hops = forwarded_for(req.headers());
    // Right to left: the last hop our proxy saw first.
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(ip)))
        .unwrap_or(peer)
}

/// Whether `peer` is one of the trusted proxies.
fn is_trusted(peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    peer.is_some_and(|p| trusted.iter().any(|n| n.contains(&p)))
}

/// The TCP peer's address (set per connection by `serve`).
fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// The addresses of `X-Forwarded-For`, or else `Forwarded`'s `for=`, in
/// order.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let xff: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            if !k.eq_ignore_ascii_case("for") {
                return None;
            }
            let v = v.trim_matches('"');
            // `for="[2001:db8::1]:4711"` or `for=192.0.2.1:4711`.
            let host = match v.strip_prefix('[') {
                Some(rest) => rest.split(']').next()?,
                None => v.split(':').next()?,
            };
            host.parse().ok()
        })
        .collect()
}

/// Whether the client reached us over HTTPS, as far as we can tell: a
/// trusted proxy's `X-Forwarded-Proto: https` (rushhour itself serves
/// plain HTTP behind a TLS-terminating proxy).
fn forwarded_https(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    is_trusted(peer, trusted)
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The value of cookie `name`.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
}

/// The token of a `Bearer` credential. The scheme is case-insensitive
/// (RFC 9110 §11.1); the token is not.
pub fn bearer_token(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?.trim();
    let (scheme, token) = s.split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
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
    fn path_params_are_found_by_route_position() {
        assert_eq!(
            path_param("/v1/orders/{id}/cancel", "/v1/orders/abc/cancel", "{id}"),
            Some("abc")
        );
        assert_eq!(path_param("/v1/stores", "/v1/stores", "{id}"), None);
    }

    fn req_with(peer: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut r = b.body(axum::body::Body::empty()).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        r
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = [("x-forwarded-for", "203.0.113.9, 10.1.2.3")];
        // From a trusted proxy: the nearest untrusted hop.
        assert_eq!(
            client_addr(&req_with("10.0.0.1:5000", &xff), &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // From anyone else: the peer, whatever the header claims.
        assert_eq!(
            client_addr(&req_with("198.51.100.7:5000", &xff), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Trust off (the default): the peer.
        assert_eq!(
            client_addr(&req_with("10.0.0.1:5000", &xff), &[]),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        let fwd = [("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")];
        assert_eq!(
            client_addr(&req_with("10.0.0.1:5000", &fwd), &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; rh_session=rhs_x; b=2"));
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("rhs_x"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
