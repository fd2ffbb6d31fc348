//! The "raw PostgreSQL" ceiling for benchmarks: `COPY` of the rows a
//! processor writes for a set of orders (orders, lines with queued tickets,
//! one status event each), in one transaction, into a fresh schema with the
//! store's own tables and indexes. `rushhour bench drain --store-url
//! postgres://…` reports the processors' apply rate next to it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use domain::events::OrderPlacedV1;
use domain::ports::{PortError, system_now_ms};
use sqlx::{Connection, PgConnection};

use store::{PgStore, PgStoreOptions};

fn unavailable(e: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("postgres baseline: {e}"))
}

/// One field in COPY's text format: `\N` for NULL; backslash, tab and
/// newlines escaped.
fn field(out: &mut String, v: Option<&str>) {
    match v {
        None => out.push_str("\\N"),
        Some(s) => {
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

fn row(out: &mut String, fields: &[Option<&str>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        field(out, *f);
    }
    out.push('\n');
}

/// Create `schema` (which must not exist yet), migrate it, then time the
/// `COPY` of every row for `orders` in one transaction. Only the
/// transaction is timed.
pub async fn raw_copy(url: &str, schema: &str, orders: &[OrderPlacedV1]) -> Result<Duration, PortError> {
    let store = PgStore::connect(
        url,
        PgStoreOptions {
            schema: Some(schema.to_owned()),
            ..Default::default()
        },
    )
    .await?;
    store.migrate().await?;
    drop(store);

    let now = system_now_ms().to_string();
    let (mut o, mut l, mut e) = (String::new(), String::new(), String::new());
    for p in orders {
        let id = p.order_id.to_string();
        let (total, placed) = (p.total.to_string(), p.placed_at.to_string());
        row(
            &mut o,
            &[
                Some(&id),
                Some(&p.store.0),
                p.customer.as_deref(),
                Some("confirmed"),
                None,
                Some("unpaid"),
                Some(&p.currency),
                Some(&total),
                Some(&placed),
                Some(&now),
                None,
                None,
                None,
                None,
                None,
                None,
            ],
        );
        for line in &p.lines {
            let mods = serde_json::to_string(&line.modifiers).map_err(unavailable)?;
            let (n, qty, unit, sum) = (
                line.line.to_string(),
                line.qty.to_string(),
                line.unit_price.to_string(),
                line.line_total.to_string(),
            );
            row(
                &mut l,
                &[
                    Some(&id),
                    Some(&n),
                    Some(&line.sku),
                    Some(&line.name),
                    Some(line.station.as_str()),
                    Some(&line.size),
                    Some(&mods),
                    Some(&qty),
                    Some(&unit),
                    Some(&sum),
                    Some("queued"),
                ],
            );
        }
        row(
            &mut e,
            &[
                Some(&id),
                Some(&p.store.0),
                Some("status"),
                Some("confirmed"),
                None,
                None,
                None,
                Some(&now),
            ],
        );
    }

    let mut conn = PgConnection::connect(url).await.map_err(unavailable)?;
    let mut setup = String::new();
    let _ = write!(setup, "SET search_path TO \"{schema}\"");
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&mut conn)
        .await
        .map_err(unavailable)?;

    let started = Instant::now();
    let mut tx = conn.begin().await.map_err(unavailable)?;
    for (statement, data) in [
        ("COPY orders FROM STDIN", &o),
        ("COPY order_lines FROM STDIN", &l),
        (
            "COPY events (order_id, store_id, kind, status, line, station, ticket, at) FROM STDIN",
            &e,
        ),
    ] {
        let mut copy = tx.copy_in_raw(statement).await.map_err(unavailable)?;
        copy.send(data.as_bytes()).await.map_err(unavailable)?;
        copy.finish().await.map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(started.elapsed())
}

/// Drop a benchmark schema made by [`raw_copy`] or for a benchmark store.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), PortError> {
    dbkit::postgres::check_schema_name(schema)?;
    let mut conn = PgConnection::connect(url).await.map_err(unavailable)?;
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}
