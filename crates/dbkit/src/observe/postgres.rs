//! The PostgreSQL half of statement counting: [`Observed`], an sqlx
//! executor that wraps a pool or a connection and counts and times every
//! statement run through it in the caller's [`Scope`](super::Scope).
//!
//! Why a wrapper rather than a hook: sqlx has no per-statement callback
//! (its statement log goes through `tracing`, filtered by the log level),
//! and the statements run in the caller's task anyway, so wrapping the
//! executor at each call (`observed(&pool)`) is enough.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo, Postgres};
use sqlx::{Either, Execute, Executor, SqlStr};

use super::{Backend, Carry, Kind, carry, enabled};

/// An executor (`&PgPool`, `&mut PgConnection`) whose statements are
/// counted and timed; made with [`observed`].
#[derive(Debug)]
pub struct Observed<E> {
    inner: E,
    carry: Carry,
}

/// Wrap `inner` so its statements count in the caller's scope; the call
/// site is the one the slow-query warning names.
#[track_caller]
pub fn observed<E>(inner: E) -> Observed<E> {
    Observed { inner, carry: carry() }
}

/// Records the statement when dropped: when its stream is finished or
/// abandoned, so a statement is counted once however it ends.
struct Pending {
    carry: Carry,
    kind: Arc<Mutex<Kind>>,
    started: Instant,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let kind = *self.kind.lock().unwrap_or_else(|p| p.into_inner());
        self.carry.record(Backend::Postgres, kind, self.started.elapsed());
    }
}

/// A query that notes its statement kind when sqlx asks for its SQL.
struct Peek<Q> {
    query: Q,
    kind: Arc<Mutex<Kind>>,
}

impl<'q, Q: Execute<'q, Postgres>> Execute<'q, Postgres> for Peek<Q> {
    fn sql(self) -> SqlStr {
        let sql = self.query.sql();
        *self.kind.lock().unwrap_or_else(|p| p.into_inner()) = Kind::of(sql.as_str());
        sql
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.query.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.query.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.query.persistent()
    }
}

impl<'c, E> Executor<'c> for Observed<E>
where
    E: Executor<'c, Database = Postgres>,
{
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, Q>(self, query: Q) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Postgres>,
    {
        if !enabled() {
            return self.inner.fetch_many(query);
        }
        let kind = Arc::new(Mutex::new(Kind::Other));
        let pending = Pending {
            carry: self.carry,
            kind: kind.clone(),
            started: Instant::now(),
        };
        self.inner
            .fetch_many(Peek { query, kind })
            .map(move |step| {
                let _ = &pending;
                step
            })
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, Q>(self, query: Q) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Postgres>,
    {
        if !enabled() {
            return self.inner.fetch_optional(query);
        }
        let kind = Arc::new(Mutex::new(Kind::Other));
        let pending = Pending {
            carry: self.carry,
            kind: kind.clone(),
            started: Instant::now(),
        };
        let fut = self.inner.fetch_optional(Peek { query, kind });
        Box::pin(async move {
            let out = fut.await;
            drop(pending);
            out
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }
}
