//! The permission table: who may call which route, and which rate-limit
//! budget it draws on. The single source of truth for access (§2, §7):
//! the `auth::authorize` middleware enforces it on every request, the
//! OpenAPI document's security requirements are written from it
//! ([`SecurityFromTable`]), and a test walks it with every role.
//!
//! A route the router serves but this table does not list is refused
//! (403, logged as a bug) rather than opened: a new route without an entry
//! fails closed, and the test that compares the table with the OpenAPI
//! document fails the build's tests.

use axum::http::Method;
use domain::identity::Role;
use std::collections::HashMap;
use std::sync::LazyLock;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: menus, stores, intake, login, health, metrics, docs.
    Public,
    /// The payment provider, proven by the `Rushhour-Signature` HMAC that
    /// the handler checks (no staff credential is involved).
    Signed,
    /// The order's access token (`X-Order-Token`, or `?token=` for
    /// `EventSource`), or staff with at least this role.
    OrderOrStaff(Role),
    /// Staff with at least this role.
    Staff(Role),
}

/// The rate-limit budget a route draws on (`limits.<class>` in
/// configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `POST /v1/orders` and the customer's cancel.
    Intake,
    /// Reads of orders, menus and stores.
    Reads,
    /// Server-Sent Event streams (opening one).
    Streams,
    /// `POST /v1/sessions`.
    Login,
    /// Payment callbacks.
    Webhooks,
    /// Staff actions on orders and the menu.
    Staff,
    /// Operator routes (`/v1/admin/…`).
    Admin,
    /// Health probes, metrics and docs: never limited, so an orchestrator
    /// and Prometheus always get through.
    Ops,
    /// The web UI's HTML pages and their assets (`crates/web`). Not
    /// limited: a page is a cached menu render or a static shell, and
    /// every API call it makes draws on that route's own budget. Refused
    /// page requests are answered for a person (a redirect to the login
    /// page, an HTML 403), not with problem+json.
    Pages,
}

impl Class {
    pub const LIMITED: [Class; 7] = [
        Class::Intake,
        Class::Reads,
        Class::Streams,
        Class::Login,
        Class::Webhooks,
        Class::Staff,
        Class::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Intake => "intake",
            Class::Reads => "reads",
            Class::Streams => "streams",
            Class::Login => "login",
            Class::Webhooks => "webhooks",
            Class::Staff => "staff",
            Class::Admin => "admin",
            Class::Ops => "ops",
            Class::Pages => "pages",
        }
    }
}

/// One route's entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Method,
    /// The route as the router declares it (`/v1/orders/{id}`).
    pub path: &'static str,
    pub access: Access,
    pub class: Class,
}

const fn rule(method: Method, path: &'static str, access: Access, class: Class) -> Rule {
    Rule {
        method,
        path,
        access,
        class,
    }
}

use Access::{OrderOrStaff, Public, Signed, Staff};
use Role::{Admin, Barista, Manager};

/// Every route of the API. Keep it in the router's order.
pub static RULES: &[Rule] = &[
    // Customers: place anonymously, then follow with the order's token.
    rule(Method::POST, "/v1/orders", Public, Class::Intake),
    rule(Method::GET, "/v1/orders", Staff(Manager), Class::Reads),
    rule(Method::GET, "/v1/orders/{id}", OrderOrStaff(Barista), Class::Reads),
    rule(
        Method::POST,
        "/v1/orders/{id}/cancel",
        OrderOrStaff(Manager),
        Class::Intake,
    ),
    rule(
        Method::GET,
        "/v1/orders/{id}/events",
        OrderOrStaff(Barista),
        Class::Streams,
    ),
    // The counter.
    rule(
        Method::POST,
        "/v1/orders/{id}/lines/{line}/start",
        Staff(Barista),
        Class::Staff,
    ),
    rule(
        Method::POST,
        "/v1/orders/{id}/lines/{line}/done",
        Staff(Barista),
        Class::Staff,
    ),
    rule(
        Method::POST,
        "/v1/orders/{id}/lines/{line}/undo",
        Staff(Barista),
        Class::Staff,
    ),
    rule(Method::POST, "/v1/orders/{id}/pickup", Staff(Barista), Class::Staff),
    rule(Method::GET, "/v1/stores/{id}/board", Staff(Barista), Class::Streams),
    rule(Method::GET, "/v1/stores/{id}/tickets", Staff(Barista), Class::Reads),
    // Menus are public; availability is the manager's.
    rule(Method::GET, "/v1/stores", Public, Class::Reads),
    rule(Method::GET, "/v1/stores/{id}/menu", Public, Class::Reads),
    // The pickup board (a TV): codes and first names only.
    rule(Method::GET, "/v1/stores/{id}/pickup", Public, Class::Reads),
    rule(Method::GET, "/v1/stores/{id}/pickup/events", Public, Class::Streams),
    rule(Method::GET, "/v1/stores/{id}/popular", Public, Class::Reads),
    rule(Method::GET, "/v1/stores/{id}/figures", Staff(Manager), Class::Reads),
    rule(
        Method::PUT,
        "/v1/stores/{id}/items/{sku}/availability",
        Staff(Manager),
        Class::Staff,
    ),
    rule(Method::POST, "/v1/webhooks/payments", Signed, Class::Webhooks),
    // Sessions.
    rule(Method::POST, "/v1/sessions", Public, Class::Login),
    rule(Method::GET, "/v1/sessions/current", Staff(Barista), Class::Reads),
    rule(Method::DELETE, "/v1/sessions/current", Staff(Barista), Class::Staff),
    // Operators.
    rule(Method::GET, "/v1/admin/figures", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/profile/cpu", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/profile/heap", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/snapshots", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/queues", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/jobs", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/jobs/retry", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/jobs/discard", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/jobs/{id}", Staff(Admin), Class::Admin),
    rule(Method::DELETE, "/v1/admin/jobs/{id}", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/jobs/{id}/retry", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/sync/{what}", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/cache/clear", Staff(Admin), Class::Admin),
    rule(
        Method::GET,
        "/v1/admin/loyalty/accounts/{id}",
        Staff(Admin),
        Class::Admin,
    ),
    rule(Method::GET, "/v1/admin/cache", Staff(Admin), Class::Admin),
    rule(
        Method::POST,
        "/v1/admin/cache/stores/{id}/invalidate",
        Staff(Admin),
        Class::Admin,
    ),
    rule(Method::GET, "/v1/admin/schedules", Staff(Admin), Class::Admin),
    rule(
        Method::POST,
        "/v1/admin/schedules/{name}/run",
        Staff(Admin),
        Class::Admin,
    ),
    rule(Method::GET, "/v1/admin/dead-letters", Staff(Admin), Class::Admin),
    rule(
        Method::DELETE,
        "/v1/admin/dead-letters/{group}/{partition}/{offset}",
        Staff(Admin),
        Class::Admin,
    ),
    rule(
        Method::POST,
        "/v1/admin/dead-letters/{group}/{partition}/{offset}/replay",
        Staff(Admin),
        Class::Admin,
    ),
    rule(Method::GET, "/v1/admin/users", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/users", Staff(Admin), Class::Admin),
    rule(Method::PATCH, "/v1/admin/users/{username}", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/keys", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/keys", Staff(Admin), Class::Admin),
    rule(Method::DELETE, "/v1/admin/keys/{prefix}", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/audit", Staff(Admin), Class::Admin),
    rule(Method::GET, "/v1/admin/webhooks", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/webhooks", Staff(Admin), Class::Admin),
    rule(Method::PATCH, "/v1/admin/webhooks/{id}", Staff(Admin), Class::Admin),
    rule(Method::DELETE, "/v1/admin/webhooks/{id}", Staff(Admin), Class::Admin),
    rule(Method::POST, "/v1/admin/webhooks/{id}/test", Staff(Admin), Class::Admin),
    rule(
        Method::GET,
        "/v1/admin/webhooks/{id}/deliveries",
        Staff(Admin),
        Class::Admin,
    ),
    rule(
        Method::POST,
        "/v1/admin/webhooks/{id}/deliveries/{delivery}/retry",
        Staff(Admin),
        Class::Admin,
    ),
    // Operations.
    rule(Method::GET, "/health/live", Public, Class::Ops),
    rule(Method::GET, "/health/ready", Public, Class::Ops),
    rule(Method::GET, "/metrics", Public, Class::Ops),
    rule(Method::GET, "/openapi.json", Public, Class::Ops),
    rule(Method::GET, "/docs", Public, Class::Ops),
    // The web UI (crates/web): the customer's pages and the pickup board
    // are public (an order page shows nothing without its token, which
    // the API checks); each staff screen needs its role.
    rule(Method::GET, "/", Public, Class::Pages),
    rule(Method::GET, "/stores/{id}", Public, Class::Pages),
    rule(Method::GET, "/orders/{id}", Public, Class::Pages),
    rule(Method::GET, "/login", Public, Class::Pages),
    rule(Method::GET, "/stores/{id}/board", Staff(Barista), Class::Pages),
    rule(Method::GET, "/stores/{id}/pickup", Public, Class::Pages),
    rule(Method::GET, "/stores/{id}/manage", Staff(Manager), Class::Pages),
    rule(Method::GET, "/ops", Staff(Admin), Class::Pages),
    rule(Method::GET, "/assets/{name}", Public, Class::Pages),
];

static INDEX: LazyLock<HashMap<(Method, &'static str), &'static Rule>> =
    LazyLock::new(|| RULES.iter().map(|r| ((r.method.clone(), r.path), r)).collect());

/// The entry of a matched route. Swagger UI's asset routes under `/docs/`
/// share `/docs`'s entry; `HEAD` shares `GET`'s (axum answers it with the
/// `GET` handler).
pub fn lookup(method: &Method, path: &str) -> Option<&'static Rule> {
    let path = if path.starts_with("/docs/") { "/docs" } else { path };
    let method = if method == Method::HEAD { &Method::GET } else { method };
    INDEX.get(&(method.clone(), path)).copied()
}

/// Writes each operation's security requirement and required role into
/// the OpenAPI document from [`RULES`], and registers the schemes, so the
/// document cannot disagree with what the middleware enforces.
pub struct SecurityFromTable;

/// The staff credential schemes: a bearer token (session token, personal
/// API key, or the deprecated staff key) or the session cookie.
const BEARER: &str = "bearer";
const COOKIE: &str = "session_cookie";
const ORDER_HEADER: &str = "order_token";
const ORDER_QUERY: &str = "order_token_query";
const SIGNATURE: &str = "webhook_signature";

impl utoipa::Modify for SecurityFromTable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token (`rhs_…`, from `POST /v1/sessions`), a personal API key (`rhk_…`), \
                         or the deprecated shared staff key (acts as admin)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "The web UI's session cookie; unsafe methods also need `X-CSRF-Token`",
            ))),
        );
        components.add_security_scheme(
            ORDER_HEADER,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::auth::ORDER_TOKEN_HEADER,
                "The order access token from the intake 202 (`access_token`)",
            ))),
        );
        components.add_security_scheme(
            ORDER_QUERY,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                crate::auth::ORDER_TOKEN_QUERY,
                "The order access token as a query parameter, for `EventSource`, which cannot set headers",
            ))),
        );
        components.add_security_scheme(
            SIGNATURE,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Rushhour-Signature",
                "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"{t}.{body}\"> under the shared webhook secret",
            ))),
        );

        let none: [&str; 0] = [];
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (Method::GET, item.get.as_mut()),
                (Method::POST, item.post.as_mut()),
                (Method::PUT, item.put.as_mut()),
                (Method::PATCH, item.patch.as_mut()),
                (Method::DELETE, item.delete.as_mut()),
            ];
            for (method, op) in ops {
                let (Some(op), Some(rule)) = (op, lookup(&method, path)) else {
                    continue;
                };
                // OpenAPI has no field for a role; it goes in the note.
                let staff = || {
                    vec![
                        SecurityRequirement::new(BEARER, none),
                        SecurityRequirement::new(COOKIE, none),
                    ]
                };
                let (security, who) = match rule.access {
                    Access::Public => (vec![], "anyone".to_owned()),
                    Access::Signed => (
                        vec![SecurityRequirement::new(SIGNATURE, none)],
                        "the payment provider (signed)".to_owned(),
                    ),
                    Access::Staff(role) => (staff(), format!("staff with role `{role}` or above")),
                    Access::OrderOrStaff(role) => {
                        let mut s = vec![
                            SecurityRequirement::new(ORDER_HEADER, none),
                            SecurityRequirement::new(ORDER_QUERY, none),
                        ];
                        s.extend(staff());
                        (
                            s,
                            format!("the order's access token, or staff with role `{role}` or above"),
                        )
                    }
                };
                op.security = Some(security);
                document_refusals(op, &method, rule);
                let note = format!("**Access:** {who}. **Rate-limit class:** `{}`.", rule.class.as_str());
                op.description = Some(match op.description.take() {
                    Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
                    _ => note,
                });
            }
        }
    }
}

/// The refusals every operation of its kind can answer, added to its
/// documented responses so the document lists every status the server
/// sends (schemathesis checks that): 401 and 403 on staff and order-token
/// routes (their pages answer HTML and document their own), the Path and
/// Query extractors' 400 on routes with such parameters, and the JSON
/// extractor's 400/413/415/422 on routes that take a JSON body (a signed
/// callback reads its body itself and documents its own). A status already
/// documented keeps its entry and gains the code in its description.
fn document_refusals(op: &mut utoipa::openapi::path::Operation, method: &Method, rule: &Rule) {
    let mut refusals: Vec<(&str, &str)> = Vec::new();
    if matches!(rule.access, Access::Staff(_) | Access::OrderOrStaff(_)) && rule.class != Class::Pages {
        refusals.push(("401", "unauthorized"));
        refusals.push(("403", "forbidden"));
        if !matches!(*method, Method::GET | Method::HEAD) {
            refusals.push(("403", "csrf_failed"));
        }
    }
    // The Path and Query extractors answer a value that does not parse
    // (`extract.rs`); pages render their own 404 page instead.
    if rule.class != Class::Pages {
        let takes = |at: ParameterIn| {
            op.parameters
                .iter()
                .flatten()
                .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == at))
        };
        if takes(ParameterIn::Path) {
            refusals.push(("400", "invalid_path"));
        }
        if takes(ParameterIn::Query) {
            refusals.push(("400", "invalid_query"));
        }
    }
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| matches!(b, RefOr::T(b) if b.content.contains_key("application/json")));
    if json_body && rule.access != Access::Signed {
        refusals.extend([
            ("400", "malformed_json"),
            ("413", "payload_too_large"),
            ("415", "unsupported_media_type"),
            ("422", "invalid_body"),
        ]);
    }
    for (status, code) in refusals {
        let entry = op.responses.responses.entry(status.to_owned()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .content(
                        "application/problem+json",
                        Content::new(Some(Ref::from_schema_name("Problem"))),
                    )
                    .build(),
            )
        });
        if let RefOr::T(response) = entry
            && !response.description.split(", ").any(|c| c == code)
        {
            response.description = if response.description.is_empty() {
                code.to_owned()
            } else {
                format!("{}, {code}", response.description)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_unique() {
        assert_eq!(INDEX.len(), RULES.len(), "a route is listed twice");
    }

    #[test]
    fn every_page_route_is_listed_as_a_page() {
        for path in web::PAGE_ROUTES {
            let rule = lookup(&Method::GET, path).unwrap_or_else(|| panic!("{path} is not in the table"));
            assert_eq!(rule.class, Class::Pages, "{path}");
        }
        let pages = RULES.iter().filter(|r| r.class == Class::Pages).count();
        assert_eq!(pages, web::PAGE_ROUTES.len(), "a page rule names no page route");
    }

    #[test]
    fn lookups_follow_head_and_docs_assets() {
        assert_eq!(lookup(&Method::HEAD, "/v1/stores").unwrap().path, "/v1/stores");
        assert_eq!(lookup(&Method::GET, "/docs/swagger-ui.css").unwrap().path, "/docs");
        assert!(lookup(&Method::DELETE, "/v1/stores").is_none());
    }
}
