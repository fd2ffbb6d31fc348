//! Upstream sync use-cases: mirror the external catalog into every store's
//! menu, and the external loyalty service's accounts into the store.
//!
//! Both are written against ports only (`CatalogSource`, `LoyaltySource`,
//! `Store`, `MenuCache`, `Clock`), so the HTTP client, the simulator and the
//! database are all swappable; the `upstream` crate implements the sources.
//!
//! The shape of both syncs comes from one lesson (seed 002): ask upstream
//! what changed *first*, and touch the database only for that. The catalog
//! is asked with `If-None-Match` (an unchanged catalog costs two store
//! calls); the loyalty service is asked for the changes since a cursor the
//! store keeps, and each page is written with one bulk upsert that moves
//! the cursor in the same transaction, so a crash resumes where it stopped.
//! The rejected alternative — fetch every account and look each one up in
//! the store before deciding whether to write it — costs one query per
//! account per run; [`naive_queries`] computes that figure for comparison.

use async_trait::async_trait;
use std::collections::HashMap;

use crate::menu::{Category, Item};
use crate::ops::{LoyaltyAccount, SyncRun};
use crate::ports::{AccountStore, Clock, MenuCache, OpsStore, PortError, PortResult, Store};

/// The `kind` (and sync-cursor key) of the catalog sync.
pub const MENU: &str = "menu";
/// The `kind` (and sync-cursor key) of the loyalty accounts sync.
pub const ACCOUNTS: &str = "accounts";

/// Rows per `upsert_accounts` call: one statement each, well under the
/// bind-parameter limits of both backends. A page larger than this is
/// written in several calls; only the last one moves the cursor.
pub const UPSERT_CHUNK: usize = 1000;

/// Where a long sync reports how far it got (a CLI progress bar, or
/// nothing).
pub trait SyncProgress: Send + Sync {
    /// The number of records expected, once known.
    fn set_total(&self, n: u64);
    /// `n` more records were handled.
    fn advance(&self, n: u64);
}

/// Progress reporting that goes nowhere (background jobs).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl SyncProgress for NoProgress {
    fn set_total(&self, _n: u64) {}
    fn advance(&self, _n: u64) {}
}

/// The answer to a conditional catalog fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogFetch {
    /// The catalog still has the ETag we sent.
    NotModified,
    /// The whole catalog (every page), with the ETag to send next time.
    Changed {
        categories: Vec<Category>,
        items: Vec<Item>,
        etag: Option<String>,
        /// HTTP requests made to fetch it (token requests excluded).
        requests: u64,
        /// Failed attempts along the way (retried successfully).
        errors: u64,
    },
}

/// The upstream catalog (menu master data shared by every store).
#[async_trait]
pub trait CatalogSource: Send + Sync {
    /// Fetch the whole catalog unless it still has `etag`. Items come back
    /// with `available: true`; availability is each store's own business.
    async fn fetch_catalog(&self, etag: Option<&str>, progress: &dyn SyncProgress) -> PortResult<CatalogFetch>;
}

/// One page of the loyalty service's change feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChanges {
    /// Accounts changed after the cursor asked with, oldest change first.
    pub accounts: Vec<LoyaltyAccount>,
    /// Where the next page starts (opaque to everyone but the service).
    pub next_cursor: String,
    pub has_more: bool,
    /// How many changes in total lie after the cursor asked with, if the
    /// service says.
    pub total_hint: Option<u64>,
    /// Failed attempts while fetching this page (retried successfully).
    /// A sync counts these, plus one for a call that failed outright.
    pub errors: u64,
}

/// The external loyalty service's change feed.
#[async_trait]
pub trait LoyaltySource: Send + Sync {
    /// Up to `limit` accounts changed after `cursor` (`None`: from the
    /// beginning, i.e. every account).
    async fn changes(&self, cursor: Option<&str>, limit: u32) -> PortResult<AccountChanges>;
}

/// The credentials upstream calls share (an OAuth2 token the client
/// caches). `rushhour cache clear --auth` makes every process drop it.
pub trait UpstreamAuth: Send + Sync {
    /// Forget the cached token; the next call fetches a new one.
    fn clear_auth(&self);
}

/// The circuit breaker in front of the upstream calls, as the job bodies
/// see it: a sync job attempt runs as a half-open probe (`probe`), and a
/// failed one is retried no sooner than the circuit closes (`open_for`),
/// rather than burning its attempts on "circuit open".
pub trait UpstreamCircuit: Send + Sync {
    /// Let the next upstream call through even if the circuit is open.
    fn probe(&self);
    /// How long the circuit stays open from now; `None` when it is not.
    fn open_for(&self) -> Option<std::time::Duration>;
}

/// Everything the syncs need from upstream, as one object: the catalog,
/// the loyalty feed and points reports, their shared credentials and
/// circuit breaker.
pub trait Upstream:
    CatalogSource + LoyaltySource + crate::loyalty::PointsSink + UpstreamAuth + UpstreamCircuit
{
}

impl<T: CatalogSource + LoyaltySource + crate::loyalty::PointsSink + UpstreamAuth + UpstreamCircuit + ?Sized> Upstream
    for T
{
}

/// The sync-cursor key under which `cache clear --auth` bumps the upstream
/// auth epoch: every process drops its cached token before its next sync.
pub const AUTH_EPOCH: &str = "upstream.auth_epoch";

/// The auth epoch one process last saw. A process that sees a different
/// one drops its cached token ([`AuthEpoch::honour`]), so clearing the
/// token reaches every process through the store, which they all share.
#[derive(Debug, Default)]
pub struct AuthEpoch {
    seen: std::sync::Mutex<Option<String>>,
}

impl AuthEpoch {
    /// Drop `auth`'s cached token if `cache clear --auth` ran anywhere
    /// since this process last looked.
    pub async fn honour(&self, store: &dyn AccountStore, auth: &dyn UpstreamAuth) -> PortResult<()> {
        let epoch = store.sync_cursor(AUTH_EPOCH).await?;
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| PortError::Unavailable("auth epoch lock".into()))?;
        if *seen != epoch {
            if seen.is_some() || epoch.is_some() {
                auth.clear_auth();
            }
            *seen = epoch;
        }
        Ok(())
    }
}

/// `rushhour cache clear --auth`: drop this process's token and bump the
/// epoch, so every other process drops its own before its next sync.
pub async fn clear_auth_everywhere(
    store: &dyn AccountStore,
    auth: &dyn UpstreamAuth,
    clock: &dyn Clock,
) -> PortResult<()> {
    auth.clear_auth();
    let epoch = clock.now_ms().to_string();
    store.set_sync_cursor(AUTH_EPOCH, Some(&epoch)).await
}

/// What the rejected per-account approach would have cost for `run`: one
/// lookup per fetched account plus one write per changed one (seed 002's
/// "before"). Compare with `run.db_queries`.
pub fn naive_queries(run: &SyncRun) -> u64 {
    run.fetched + run.changed
}

/// The figures a sync gathers before it records its run.
#[derive(Debug, Default)]
struct Tally {
    fetched: u64,
    changed: u64,
    db_queries: u64,
    errors: u64,
}

impl Tally {
    fn run(&self, kind: &str, started_at: i64, finished_at: i64, outcome: String) -> SyncRun {
        SyncRun {
            kind: kind.to_owned(),
            started_at,
            finished_at,
            fetched: self.fetched,
            changed: self.changed,
            db_queries: self.db_queries,
            errors: self.errors,
            outcome,
        }
    }
}

/// Record the run (itself one more store call) and hand back the result.
async fn finish(
    store: &dyn OpsStore,
    clock: &dyn Clock,
    kind: &str,
    started_at: i64,
    mut tally: Tally,
    result: PortResult<&'static str>,
) -> PortResult<SyncRun> {
    tally.db_queries += 1;
    match result {
        Ok(outcome) => {
            let run = tally.run(kind, started_at, clock.now_ms(), outcome.to_owned());
            store.record_sync_run(&run).await?;
            tracing::info!(
                kind,
                outcome,
                fetched = run.fetched,
                changed = run.changed,
                db_queries = run.db_queries,
                errors = run.errors,
                ms = run.finished_at - run.started_at,
                "sync finished"
            );
            Ok(run)
        }
        Err(e) => {
            let run = tally.run(kind, started_at, clock.now_ms(), format!("failed: {e}"));
            // The failure itself is what the caller must see; a store that
            // cannot even record it is most likely the cause anyway.
            if let Err(record) = store.record_sync_run(&run).await {
                tracing::warn!(kind, error = %record, "could not record the failed sync run");
            }
            tracing::warn!(kind, error = %e, fetched = run.fetched, changed = run.changed, "sync failed");
            Err(e)
        }
    }
}

/// Mirror the upstream catalog into every store's menu.
///
/// Sends the ETag of the last sync; an unchanged catalog is recorded as
/// `not_modified` after two store calls. Otherwise each store's menu is
/// diffed against the catalog (availability ignored: an 86'd item stays
/// 86'd), only a store whose menu differs is written (one transaction) and
/// its cache entry dropped, and the new ETag is saved last, so a failure
/// part-way makes the next run fetch again.
///
/// An empty catalog is refused (`Invalid`) rather than emptying every
/// menu. A store added after the last change of the catalog gets it with
/// the next change (or after `set_sync_cursor("menu", None)`).
#[tracing::instrument(skip_all)]
pub async fn sync_menu(
    store: &dyn Store,
    menus: &dyn MenuCache,
    source: &dyn CatalogSource,
    clock: &dyn Clock,
    progress: &dyn SyncProgress,
) -> PortResult<SyncRun> {
    let started_at = clock.now_ms();
    let mut tally = Tally::default();
    let result = menu_steps(store, menus, source, progress, &mut tally).await;
    finish(store, clock, MENU, started_at, tally, result).await
}

async fn menu_steps(
    store: &dyn Store,
    menus: &dyn MenuCache,
    source: &dyn CatalogSource,
    progress: &dyn SyncProgress,
    tally: &mut Tally,
) -> PortResult<&'static str> {
    tally.db_queries += 1;
    let etag = store.sync_cursor(MENU).await?;
    let fetched = source
        .fetch_catalog(etag.as_deref(), progress)
        .await
        .inspect_err(|_| tally.errors += 1)?;
    let (categories, items, etag) = match fetched {
        CatalogFetch::NotModified => return Ok("not_modified"),
        CatalogFetch::Changed {
            categories,
            items,
            etag,
            requests: _,
            errors,
        } => {
            tally.errors += errors;
            (categories, items, etag)
        }
    };
    tally.fetched = items.len() as u64;
    if items.is_empty() {
        // Far more likely an upstream fault than a shop with nothing to
        // sell: refuse rather than empty every store's menu.
        return Err(PortError::Invalid(
            "the upstream catalog is empty; refusing to remove every item".into(),
        ));
    }
    // Prices are trusted nowhere downstream of here without a check, but a
    // catalog with a negative or absurd price is refused whole: selling at
    // the wrong price is worse than selling at yesterday's.
    let bad: Vec<String> = items.iter().filter_map(|i| i.check_prices().err()).collect();
    if !bad.is_empty() {
        return Err(PortError::Invalid(invalid_prices(&bad)));
    }

    tally.db_queries += 1;
    let stores = store.list_stores().await?;
    for info in stores {
        tally.db_queries += 1;
        let Some(menu) = store.load_menu(&info.id).await? else {
            // Deleted between the listing and now: nothing to update.
            continue;
        };
        let diff = MenuDiff::between(&menu.categories, &menu.items, &categories, &items);
        if diff.is_empty() {
            continue;
        }
        tally.changed += (diff.upserts.len() + diff.removed.len()) as u64;
        tally.db_queries += 1;
        store
            .apply_menu_diff(&info.id, &categories, &diff.upserts, &diff.removed)
            .await?;
        menus.invalidate(&info.id).await?;
    }

    tally.db_queries += 1;
    store.set_sync_cursor(MENU, etag.as_deref()).await?;
    Ok("ok")
}

/// The error of a catalog refused for its prices: how many items, and the
/// first few of them.
fn invalid_prices(bad: &[String]) -> String {
    const SHOWN: usize = 3;
    let more = bad.len().saturating_sub(SHOWN);
    format!(
        "the upstream catalog has invalid prices in {} item(s) ({}{}); refusing it, menus unchanged",
        bad.len(),
        bad[..bad.len().min(SHOWN)].join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

/// What must be written to bring one store's menu in line with the catalog.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MenuDiff {
    /// Whether any catalog category is missing from the store or differs.
    pub categories_changed: bool,
    /// New items and items whose catalog data changed (availability ignored).
    pub upserts: Vec<Item>,
    /// Skus the store has that the catalog no longer does.
    pub removed: Vec<String>,
}

impl MenuDiff {
    pub fn between(
        stored_categories: &[Category],
        stored_items: &[Item],
        categories: &[Category],
        items: &[Item],
    ) -> Self {
        let stored_cats: HashMap<&str, &Category> = stored_categories.iter().map(|c| (c.code.as_str(), c)).collect();
        let categories_changed = categories.iter().any(|c| stored_cats.get(c.code.as_str()) != Some(&c));

        let stored: HashMap<&str, &Item> = stored_items.iter().map(|i| (i.sku.as_str(), i)).collect();
        let upserts = items
            .iter()
            .filter(|it| {
                !stored
                    .get(it.sku.as_str())
                    .is_some_and(|old| same_catalog_data(old, it))
            })
            .cloned()
            .collect();
        let upstream: std::collections::HashSet<&str> = items.iter().map(|i| i.sku.as_str()).collect();
        let removed = stored_items
            .iter()
            .filter(|i| !upstream.contains(i.sku.as_str()))
            .map(|i| i.sku.clone())
            .collect();
        Self {
            categories_changed,
            upserts,
            removed,
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.categories_changed && self.upserts.is_empty() && self.removed.is_empty()
    }
}

/// Equal in everything the catalog owns; `available` is the store's.
fn same_catalog_data(a: &Item, b: &Item) -> bool {
    a.sku == b.sku
        && a.name == b.name
        && a.category == b.category
        && a.station == b.station
        && a.sizes == b.sizes
        && a.modifiers == b.modifiers
}

/// Mirror the loyalty service's account changes into the store.
///
/// Starts from the cursor the last run left (none: every account), pages
/// through the change feed `page` accounts at a time, and writes each page
/// with bulk upserts (chunks of [`UPSERT_CHUNK`]) whose last one moves the
/// cursor in the same transaction — so the database sees only changed
/// accounts, one statement per chunk, and a run that fails part-way
/// resumes after the last written page. Nothing is looked up per account.
#[tracing::instrument(skip_all, fields(page = page))]
pub async fn sync_accounts(
    store: &dyn Store,
    source: &dyn LoyaltySource,
    clock: &dyn Clock,
    page: u32,
    progress: &dyn SyncProgress,
) -> PortResult<SyncRun> {
    let started_at = clock.now_ms();
    let mut tally = Tally::default();
    let result = accounts_steps(store, source, page.max(1), progress, &mut tally).await;
    finish(store, clock, ACCOUNTS, started_at, tally, result).await
}

async fn accounts_steps(
    store: &dyn AccountStore,
    source: &dyn LoyaltySource,
    page: u32,
    progress: &dyn SyncProgress,
    tally: &mut Tally,
) -> PortResult<&'static str> {
    tally.db_queries += 1;
    let mut cursor = store.sync_cursor(ACCOUNTS).await?;
    let mut first = true;
    loop {
        let changes = source
            .changes(cursor.as_deref(), page)
            .await
            .inspect_err(|_| tally.errors += 1)?;
        tally.errors += changes.errors;
        if first {
            if let Some(total) = changes.total_hint {
                progress.set_total(total);
            }
            first = false;
        }
        let fetched = changes.accounts.len() as u64;
        tally.fetched += fetched;
        let moved = cursor.as_deref() != Some(changes.next_cursor.as_str());
        if changes.accounts.is_empty() {
            if moved {
                tally.db_queries += 1;
                store.set_sync_cursor(ACCOUNTS, Some(&changes.next_cursor)).await?;
            } else if changes.has_more {
                return Err(PortError::Invalid(
                    "loyalty service reported more changes but returned none and kept the cursor".into(),
                ));
            }
        } else {
            let chunks = changes.accounts.chunks(UPSERT_CHUNK);
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.enumerate() {
                let move_cursor = (i == last).then_some(changes.next_cursor.as_str());
                tally.db_queries += 1;
                tally.changed += store.upsert_accounts(chunk, move_cursor).await?;
            }
        }
        progress.advance(fetched);
        cursor = Some(changes.next_cursor);
        if !changes.has_more {
            return Ok("ok");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::demo_menu;

    #[test]
    fn diff_ignores_availability_and_finds_changes_and_removals() {
        let menu = demo_menu();
        let mut stored = menu.items.clone();
        stored[0].available = false;
        assert!(MenuDiff::between(&menu.categories, &stored, &menu.categories, &menu.items).is_empty());

        let mut upstream = menu.items.clone();
        upstream[1].sizes[0].price += 10;
        upstream.pop();
        let mut extra = upstream[2].clone();
        extra.sku = "new-thing".into();
        upstream.push(extra);
        let diff = MenuDiff::between(&menu.categories, &stored, &menu.categories, &upstream);
        let skus: Vec<&str> = diff.upserts.iter().map(|i| i.sku.as_str()).collect();
        assert_eq!(skus, [menu.items[1].sku.as_str(), "new-thing"]);
        assert_eq!(diff.removed, [menu.items.last().unwrap().sku.clone()]);
        assert!(!diff.categories_changed);
    }

    #[test]
    fn catalog_prices_are_checked_and_named() {
        let menu = demo_menu();
        assert!(
            menu.items.iter().all(|i| i.check_prices().is_ok()),
            "the demo menu is valid"
        );
        let mut bad = menu.items[0].clone();
        bad.sizes[1].price = -5;
        let why = bad.check_prices().unwrap_err();
        assert_eq!(
            why,
            format!("item '{}' size '{}': price -5 is negative", bad.sku, bad.sizes[1].code)
        );
        bad.sizes[1].price = 5;
        bad.modifiers[0].price_delta = i64::MAX;
        assert!(bad.check_prices().unwrap_err().contains("beyond the largest accepted"));
        let five: Vec<String> = (0..5).map(|i| format!("item '{i}'")).collect();
        assert_eq!(
            invalid_prices(&five),
            "the upstream catalog has invalid prices in 5 item(s) (item '0'; item '1'; item '2'; and 2 more); \
             refusing it, menus unchanged"
        );
    }

    #[test]
    fn diff_sees_a_renamed_or_new_category() {
        let menu = demo_menu();
        let mut cats = menu.categories.clone();
        cats[0].name = "Espresso bar".into();
        let diff = MenuDiff::between(&menu.categories, &menu.items, &cats, &menu.items);
        assert!(diff.categories_changed && !diff.is_empty());
        assert!(diff.upserts.is_empty() && diff.removed.is_empty());
    }

    /// Job runners spawn the syncs on a multi-threaded runtime: their
    /// futures must be `Send` (checked at compile time).
    #[allow(dead_code)]
    fn sync_futures_are_send(
        store: &dyn Store,
        menus: &dyn MenuCache,
        catalog: &dyn CatalogSource,
        loyalty: &dyn LoyaltySource,
        clock: &dyn Clock,
        progress: &dyn SyncProgress,
    ) {
        fn send<T: Send>(_: T) {}
        send(sync_menu(store, menus, catalog, clock, progress));
        send(sync_accounts(store, loyalty, clock, 1000, progress));
    }

    #[test]
    fn naive_count_is_a_lookup_per_fetch_plus_a_write_per_change() {
        let run = Tally {
            fetched: 1000,
            changed: 990,
            db_queries: 3,
            errors: 0,
        }
        .run(ACCOUNTS, 0, 1, "ok".into());
        assert_eq!(naive_queries(&run), 1990);
    }
}
