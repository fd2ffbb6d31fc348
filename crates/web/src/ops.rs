//! `/ops`: the operator's dashboard (screen 5), for admins. A frame of
//! sections that `ops.js` fills from the admin API: live charts of
//! `GET /v1/admin/figures` every second (paused while the tab is hidden),
//! the 5-minute snapshot history, jobs with filters and bulk actions,
//! schedules with "run now", dead letters, the menu cache, users, API
//! keys and the audit log. Each section says "not available" on its own
//! when its route does not answer, so one missing part never blanks the
//! page.

use axum::Extension;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::layout::{self, Page};
use crate::{Viewer, html};

/// The live charts: (id, title, unit).
const CHARTS: &[(&str, &str, &str)] = &[
    ("intake", "Intake and confirmed per second", "/s"),
    ("latency", "Intake p99 and 202→confirmed p99", "ms"),
    ("lag", "Processor lag (total)", "records"),
    ("batch", "Average batch size", "records"),
    ("cache", "Menu cache hit ratio", "%"),
    ("dead", "Dead letters", ""),
];

fn section(id: &str, title: &str, inner: Markup) -> Markup {
    html! {
        section.ops-section id=(id) aria-labelledby={ (id) "-title" } data-testid={ "ops-" (id) } {
            h2 id={ (id) "-title" } { (title) }
            p.state id={ (id) "-state" } data-testid={ (id) "-state" } aria-live="polite" {}
            (inner)
        }
    }
}

pub(crate) async fn page(viewer: Option<Extension<Viewer>>) -> Response {
    let viewer = viewer.map(|Extension(v)| v);
    let body = html! {
        div.ops #ops data-testid="ops" {
            h1 { "Operations" }
            nav.tabs aria-label="Sections" {
                a href="#live" { "Live" } " · " a href="#history" { "History" } " · "
                a href="#jobs" { "Jobs" } " · " a href="#schedules" { "Schedules" } " · "
                a href="#dead-letters" { "Dead letters" } " · " a href="#cache" { "Cache" } " · "
                a href="#users" { "Users" } " · " a href="#keys" { "API keys" } " · " a href="#audit" { "Audit" }
            }
            p #ops-error .error role="alert" data-testid="ops-error" {}
            (section("live", "Live", html! {
                p.meta { span #live-instance data-testid="live-instance" {} " " span.badge #ops-badge data-testid="ops-badge" data-state="stale" { "CONNECTING" } }
                dl.figures #now data-testid="now" {}
                div.charts {
                    @for (id, title, unit) in CHARTS {
                        figure.chart data-testid={ "chart-" (id) } {
                            figcaption { (title) @if !unit.is_empty() { " (" (unit) ")" } }
                            div.plot id={ "chart-" (id) } {}
                        }
                    }
                }
                h3 { "Lag per partition" }
                table.data data-testid="partitions" { thead { tr { th { "Partition" } th { "Lag" } th { "Next offset" } th { "End offset" } } } tbody #partitions-body {} }
                h3 { "Jobs by queue" }
                table.data data-testid="queues" { thead { tr { th { "Queue" } th { "Ready" } th { "Scheduled" } th { "Running" } th { "Done" } th { "Dead" } } } tbody #queues-body {} }
                h3 { "Sync runs" }
                table.data data-testid="sync-runs" { thead { tr { th { "Kind" } th { "Started" } th { "Fetched" } th { "Changed" } th { "Errors" } th { "Outcome" } } } tbody #sync-body {} }
            }))
            (section("history", "History (5-minute snapshots)", html! {
                label { "Hours " select #history-hours data-testid="history-hours" { option value="6" { "6" } option value="24" { "24" } option value="48" selected { "48" } } }
                div.plot #chart-history data-testid="chart-history" {}
            }))
            (section("jobs", "Jobs", html! {
                form.filters #job-filter data-testid="job-filter" {
                    label { "Queue " input #job-queue name="queue" type="text" data-testid="job-queue"; }
                    label { "State " select #job-state name="state" data-testid="job-state" {
                        option value="" { "any" }
                        @for s in ["queued", "running", "done", "dead"] { option value=(s) { (s) } }
                    } }
                    label { "Kind " input #job-kind name="kind" type="text" data-testid="job-kind"; }
                    button type="submit" { "Filter" }
                    button #jobs-retry type="button" data-testid="jobs-retry" { "Retry all matching" }
                    button.danger #jobs-discard type="button" data-testid="jobs-discard" { "Discard all matching" }
                }
                table.data data-testid="jobs-table" { thead { tr { th { "Id" } th { "Kind" } th { "Queue" } th { "State" } th { "Attempts" } th { "Run at" } th { span.sr-only { "Actions" } } } } tbody #jobs-body {} }
                section.detail #job-detail data-testid="job-detail" hidden aria-labelledby="job-detail-title" {
                    h3 #job-detail-title { "Job" }
                    pre #job-detail-body {}
                    button #job-detail-close type="button" { "Close" }
                }
            }))
            (section("schedules", "Schedules", html! {
                table.data data-testid="schedules-table" { thead { tr { th { "Name" } th { "Cron" } th { "Job" } th { "Next" } th { "Last run" } th { span.sr-only { "Actions" } } } } tbody #schedules-body {} }
            }))
            (section("dead-letters", "Dead letters", html! {
                table.data data-testid="dlq-table" { thead { tr { th { "Group" } th { "Partition" } th { "Offset" } th { "Error" } th { "At" } th { span.sr-only { "Actions" } } } } tbody #dlq-body {} }
                section.detail #dlq-detail data-testid="dlq-detail" hidden aria-label="Dead letter payload" { pre #dlq-detail-body {} button #dlq-detail-close type="button" { "Close" } }
            }))
            (section("cache", "Menu cache", html! {
                p #cache-total data-testid="cache-total" {}
                table.data data-testid="cache-table" { thead { tr { th { "Store" } th { "Hits" } th { "Misses" } th { "Hit ratio" } th { span.sr-only { "Actions" } } } } tbody #cache-body {} }
            }))
            (section("users", "Users", html! {
                table.data data-testid="users-table" { thead { tr { th { "Username" } th { "Role" } th { "Active" } th { "Created" } } } tbody #users-body {} }
            }))
            (section("keys", "API keys", html! {
                table.data data-testid="keys-table" { thead { tr { th { "Prefix" } th { "Name" } th { "Role" } th { "Store" } th { "Last used" } th { span.sr-only { "Actions" } } } } tbody #keys-body {} }
            }))
            (section("audit", "Audit log", html! {
                table.data data-testid="audit-table" { thead { tr { th { "At" } th { "Actor" } th { "Action" } th { "Target" } th { "Source" } } } tbody #audit-body {} }
            }))
        }
    };
    html(
        StatusCode::OK,
        layout::page(
            Page {
                title: "Operations".into(),
                store: None,
                viewer: viewer.as_ref(),
                script: Some("ops.js"),
                class: "staff",
            },
            body,
        ),
    )
}
