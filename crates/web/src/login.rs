//! `/login?next=`: the staff sign-in form. `login.js` posts it to
//! `POST /v1/sessions` with `fetch` (the session cookie comes back with
//! the answer) and then goes to `next` — a same-origin path only
//! ([`crate::safe_next`], checked here and again in the script), so the
//! form cannot be used to send someone to another site.

use axum::Extension;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use crate::layout::{self, Page};
use crate::{Viewer, html, safe_next};

#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

pub(crate) async fn page(Query(q): Query<Next>, viewer: Option<Extension<Viewer>>) -> Response {
    let viewer = viewer.map(|Extension(v)| v);
    let next = safe_next(q.next.as_deref());
    let body = html! {
        div.login #login-page data-next=(next) {
            h1 { "Staff sign-in" }
            @if let Some(v) = &viewer {
                p data-testid="signed-in-as" { "You are signed in as " (v.name) ". " a href=(next) { "Continue" } }
            }
            form #login-form data-testid="login-form" method="post" action="/login" {
                label for="username" { "Username" }
                input #username name="username" type="text" autocomplete="username" required autofocus data-testid="username";
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required data-testid="password";
                button.primary type="submit" data-testid="login-submit" { "Sign in" }
                p #login-error .error role="alert" data-testid="login-error" {}
            }
        }
    };
    html(
        StatusCode::OK,
        layout::page(
            Page {
                title: "Sign in".into(),
                store: None,
                viewer: viewer.as_ref(),
                script: Some("login.js"),
                class: "customer",
            },
            body,
        ),
    )
}
