//! Fault injection without fakes: `Faulty<T>` wraps a REAL adapter and
//! delegates every port method to it, after consulting a `Switch` that a
//! test can flip to make the backend unreachable, corrupt, hung, panicking
//! or held at a gate.
//!
//! A decorator rather than a hand-written fake so that every behaviour the
//! router tests see in the healthy case is the real adapter's (SQL, group
//! commit, single-flight cache), and only the failure itself is simulated.

use async_trait::async_trait;
use domain::identity::{ApiKey, AuditEntry, User};
use domain::menu::{Category, Item, Menu, StoreInfo};
use domain::ops::{LoyaltyAccount, PerfSnapshot, PruneStats, Retention, SyncRun};
use domain::ports::{
    AccountStore, AppendOutcome, AppendRequest, ApplyBatch, AuditLog, AuditQuery, BatchApplied, BoardSnapshot,
    DeadLetter, EventLog, EventScope, IdempotencyRecord, LogRecord, Membership, MenuCache, MenuLoad, MenuStore,
    OpsStore, OrderFilter, OrderStore, OrderSummary, PortResult, StoreBackend, UserStore,
};
use domain::webhooks as wh;
use domain::{Action, LiveEvent, MenuSnapshot, Order, OrderId, OrderStatus, PortError, StoreId, TransitionError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Text that an injected corruption or panic carries. Tests assert that it
/// never reaches a response body: 5xx bodies say nothing internal.
pub const SECRET: &str = "row 7 of secret_table";

/// How every call to a wrapped port behaves.
#[derive(Clone, Default)]
pub enum Fault {
    /// Delegate to the real adapter.
    #[default]
    None,
    /// Fail as an unreachable backend does (`PortError::Unavailable`).
    Unavailable,
    /// Fail as unreadable stored data does (`PortError::Invalid`).
    Corrupt,
    /// Never answer. Rather than a long `Slow(Duration)`: the deadline under
    /// test decides when the caller gives up, and no arbitrary number has to
    /// be "long enough".
    Hang,
    /// Panic inside the call.
    Panic,
    /// Announce the call on `arrived`, then wait for one permit of `release`
    /// (consumed) before delegating: holds a request in flight for exactly
    /// as long as the test wants.
    Hold {
        arrived: Arc<Notify>,
        release: Arc<Semaphore>,
    },
}

/// The test's handle on one port's fault; cheap to clone.
#[derive(Clone, Default)]
pub struct Switch(Arc<Mutex<Fault>>);

impl Switch {
    pub fn set(&self, fault: Fault) {
        *self.0.lock().unwrap() = fault;
    }

    /// Consulted before every delegated call.
    async fn check(&self) -> PortResult<()> {
        // Cloned out so the lock is never held across an await.
        let fault = self.0.lock().unwrap().clone();
        match fault {
            Fault::None => Ok(()),
            Fault::Unavailable => Err(PortError::Unavailable("injected outage: connection refused".into())),
            Fault::Corrupt => Err(PortError::Invalid(format!("{SECRET} is corrupt"))),
            Fault::Hang => std::future::pending().await,
            Fault::Panic => panic!("injected panic near {SECRET}"),
            Fault::Hold { arrived, release } => {
                arrived.notify_one();
                release.acquire().await.expect("the gate is never closed").forget();
                Ok(())
            }
        }
    }
}

/// A real adapter behind a fault switch.
pub struct Faulty<T> {
    inner: T,
    fault: Switch,
}

impl<T> Faulty<T> {
    pub fn new(inner: T, fault: Switch) -> Self {
        Self { inner, fault }
    }
}

#[async_trait]
impl<T: EventLog> EventLog for Faulty<T> {
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }

    async fn append(&self, req: AppendRequest) -> PortResult<AppendOutcome> {
        self.fault.check().await?;
        self.inner.append(req).await
    }

    async fn prune_idempotency(&self, before: i64) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.prune_idempotency(before).await
    }

    async fn idempotency(&self, key: &str) -> PortResult<Option<IdempotencyRecord>> {
        self.fault.check().await?;
        self.inner.idempotency(key).await
    }

    async fn find(&self, key: &str) -> PortResult<Option<LogRecord>> {
        self.fault.check().await?;
        self.inner.find(key).await
    }

    async fn read(&self, partition: u32, from: u64, max: usize, wait: Duration) -> PortResult<Vec<LogRecord>> {
        self.fault.check().await?;
        self.inner.read(partition, from, max, wait).await
    }

    async fn end_offset(&self, partition: u32) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.end_offset(partition).await
    }

    async fn commit(&self, group: &str, partition: u32, next: u64) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.commit(group, partition, next).await
    }

    async fn join(&self, group: &str) -> PortResult<Membership> {
        self.fault.check().await?;
        self.inner.join(group).await
    }

    async fn health(&self) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.health().await
    }
}

#[async_trait]
impl<T: MenuStore> MenuStore for Faulty<T> {
    async fn list_stores(&self) -> PortResult<Vec<StoreInfo>> {
        self.fault.check().await?;
        self.inner.list_stores().await
    }

    async fn load_menu(&self, store: &StoreId) -> PortResult<Option<Menu>> {
        self.fault.check().await?;
        self.inner.load_menu(store).await
    }

    async fn upsert_menu(&self, menu: &Menu) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.upsert_menu(menu).await
    }

    async fn set_availability(&self, store: &StoreId, sku: &str, available: bool) -> PortResult<bool> {
        self.fault.check().await?;
        self.inner.set_availability(store, sku, available).await
    }

    async fn apply_menu_diff(
        &self,
        store: &StoreId,
        categories: &[Category],
        items: &[Item],
        removed: &[String],
    ) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.apply_menu_diff(store, categories, items, removed).await
    }
}

#[async_trait]
impl<T: OrderStore> OrderStore for Faulty<T> {
    async fn consumer_position(&self, group: &str, partition: u32) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.consumer_position(group, partition).await
    }

    async fn apply_batch(&self, batch: ApplyBatch<'_>) -> PortResult<BatchApplied> {
        self.fault.check().await?;
        self.inner.apply_batch(batch).await
    }

    async fn get_order(&self, id: OrderId) -> PortResult<Option<Order>> {
        self.fault.check().await?;
        self.inner.get_order(id).await
    }

    async fn order_trace(&self, id: OrderId) -> PortResult<Option<String>> {
        self.fault.check().await?;
        self.inner.order_trace(id).await
    }

    async fn list_orders(&self, filter: &OrderFilter) -> PortResult<Vec<OrderSummary>> {
        self.fault.check().await?;
        self.inner.list_orders(filter).await
    }

    async fn transition(
        &self,
        id: OrderId,
        action: Action,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError> {
        self.fault.check().await.map_err(TransitionError::Backend)?;
        self.inner.transition(id, action, now).await
    }

    async fn cancel(
        &self,
        id: OrderId,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError> {
        self.fault.check().await.map_err(TransitionError::Backend)?;
        self.inner.cancel(id, reason, now).await
    }

    async fn tickets(&self, query: &domain::ports::TicketsQuery) -> PortResult<domain::ports::TicketsSnapshot> {
        self.fault.check().await?;
        self.inner.tickets(query).await
    }

    async fn pickup_board(
        &self,
        store: &StoreId,
        placed_since: i64,
        limit: u32,
    ) -> PortResult<domain::ports::PickupSnapshot> {
        self.fault.check().await?;
        self.inner.pickup_board(store, placed_since, limit).await
    }

    async fn events_after(&self, scope: &EventScope, after: i64, limit: u32) -> PortResult<Vec<LiveEvent>> {
        self.fault.check().await?;
        self.inner.events_after(scope, after, limit).await
    }

    async fn open_board(&self, store: &StoreId, placed_since: i64, limit: u32) -> PortResult<BoardSnapshot> {
        self.fault.check().await?;
        self.inner.open_board(store, placed_since, limit).await
    }

    async fn dead_letters(&self, limit: u32) -> PortResult<Vec<DeadLetter>> {
        self.fault.check().await?;
        self.inner.dead_letters(limit).await
    }

    async fn remove_dead_letter(&self, group: &str, partition: u32, offset: u64) -> PortResult<bool> {
        self.fault.check().await?;
        self.inner.remove_dead_letter(group, partition, offset).await
    }

    async fn expire_ready(&self, ready_before: i64, limit: u32, now: i64) -> PortResult<Vec<LiveEvent>> {
        self.fault.check().await?;
        self.inner.expire_ready(ready_before, limit, now).await
    }

    async fn order_counts(&self) -> PortResult<Vec<(OrderStatus, u64)>> {
        self.fault.check().await?;
        self.inner.order_counts().await
    }
}

#[async_trait]
impl<T: AccountStore> AccountStore for Faulty<T> {
    async fn upsert_accounts(&self, accounts: &[LoyaltyAccount], cursor: Option<&str>) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.upsert_accounts(accounts, cursor).await
    }

    async fn loyalty_account(&self, id: &str) -> PortResult<Option<LoyaltyAccount>> {
        self.fault.check().await?;
        self.inner.loyalty_account(id).await
    }

    async fn count_accounts(&self) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.count_accounts().await
    }

    async fn sync_cursor(&self, kind: &str) -> PortResult<Option<String>> {
        self.fault.check().await?;
        self.inner.sync_cursor(kind).await
    }

    async fn set_sync_cursor(&self, kind: &str, cursor: Option<&str>) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.set_sync_cursor(kind, cursor).await
    }
}

#[async_trait]
impl<T: OpsStore> OpsStore for Faulty<T> {
    async fn record_sync_run(&self, run: &SyncRun) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.record_sync_run(run).await
    }

    async fn sync_runs(&self, kind: Option<&str>, limit: u32) -> PortResult<Vec<SyncRun>> {
        self.fault.check().await?;
        self.inner.sync_runs(kind, limit).await
    }

    async fn record_snapshot(&self, snapshot: &PerfSnapshot) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.record_snapshot(snapshot).await
    }

    async fn snapshots(&self, limit: u32) -> PortResult<Vec<PerfSnapshot>> {
        self.fault.check().await?;
        self.inner.snapshots(limit).await
    }

    async fn prune(&self, retention: &Retention) -> PortResult<PruneStats> {
        self.fault.check().await?;
        self.inner.prune(retention).await
    }

    async fn maintain(&self) -> PortResult<String> {
        self.fault.check().await?;
        self.inner.maintain().await
    }
}

#[async_trait]
impl<T: UserStore> UserStore for Faulty<T> {
    async fn create_user(&self, user: &User) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.create_user(user).await
    }

    async fn user_by_name(&self, username: &str) -> PortResult<Option<User>> {
        self.fault.check().await?;
        self.inner.user_by_name(username).await
    }

    async fn user(&self, id: uuid::Uuid) -> PortResult<Option<User>> {
        self.fault.check().await?;
        self.inner.user(id).await
    }

    async fn list_users(&self) -> PortResult<Vec<User>> {
        self.fault.check().await?;
        self.inner.list_users().await
    }

    async fn update_user(&self, user: &User) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.update_user(user).await
    }

    async fn create_api_key(&self, key: &ApiKey) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.create_api_key(key).await
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> PortResult<Option<ApiKey>> {
        self.fault.check().await?;
        self.inner.api_key_by_prefix(prefix).await
    }

    async fn list_api_keys(&self) -> PortResult<Vec<ApiKey>> {
        self.fault.check().await?;
        self.inner.list_api_keys().await
    }

    async fn revoke_api_key(&self, prefix: &str, at: i64) -> PortResult<bool> {
        self.fault.check().await?;
        self.inner.revoke_api_key(prefix, at).await
    }

    async fn touch_api_key(&self, prefix: &str, at: i64) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.touch_api_key(prefix, at).await
    }
}

#[async_trait]
impl<T: AuditLog> AuditLog for Faulty<T> {
    async fn append_audit(&self, entry: &AuditEntry) -> PortResult<i64> {
        self.fault.check().await?;
        self.inner.append_audit(entry).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> PortResult<Vec<AuditEntry>> {
        self.fault.check().await?;
        self.inner.list_audit(query).await
    }

    async fn purge_audit(&self, before: i64) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.purge_audit(before).await
    }
}

#[async_trait]
impl<T: domain::ports::ReportStore> domain::ports::ReportStore for Faulty<T> {
    async fn prep_samples(
        &self,
        store: &StoreId,
        since: i64,
        per_station: u32,
    ) -> PortResult<Vec<domain::ports::PrepSample>> {
        self.fault.check().await?;
        self.inner.prep_samples(store, since, per_station).await
    }

    async fn day_rows(&self, store: &StoreId, start: i64, end: i64) -> PortResult<domain::ports::DayRows> {
        self.fault.check().await?;
        self.inner.day_rows(store, start, end).await
    }

    async fn top_items(&self, store: &StoreId, since: i64, limit: u32) -> PortResult<Vec<domain::ports::PopularItem>> {
        self.fault.check().await?;
        self.inner.top_items(store, since, limit).await
    }

    async fn save_popular(
        &self,
        store: &StoreId,
        items: &[domain::ports::PopularItem],
        computed_at: i64,
    ) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.save_popular(store, items, computed_at).await
    }

    async fn popular(&self, store: &StoreId) -> PortResult<(Vec<domain::ports::PopularItem>, Option<i64>)> {
        self.fault.check().await?;
        self.inner.popular(store).await
    }
}

#[async_trait]
impl<T: domain::ports::WebhookStore> domain::ports::WebhookStore for Faulty<T> {
    async fn create_subscriber(&self, new: &wh::NewSubscriber) -> PortResult<wh::Subscriber> {
        self.fault.check().await?;
        self.inner.create_subscriber(new).await
    }

    async fn subscribers(&self) -> PortResult<Vec<wh::Subscriber>> {
        self.fault.check().await?;
        self.inner.subscribers().await
    }

    async fn subscriber(&self, id: i64) -> PortResult<Option<wh::Subscriber>> {
        self.fault.check().await?;
        self.inner.subscriber(id).await
    }

    async fn update_subscriber(&self, id: i64, patch: &wh::SubscriberPatch) -> PortResult<wh::Subscriber> {
        self.fault.check().await?;
        self.inner.update_subscriber(id, patch).await
    }

    async fn delete_subscriber(&self, id: i64) -> PortResult<bool> {
        self.fault.check().await?;
        self.inner.delete_subscriber(id).await
    }

    async fn add_ping(&self, id: i64, now: i64) -> PortResult<i64> {
        self.fault.check().await?;
        self.inner.add_ping(id, now).await
    }

    async fn dispatch(&self, limit: u32, now: i64) -> PortResult<usize> {
        self.fault.check().await?;
        self.inner.dispatch(limit, now).await
    }

    async fn due_subscribers(&self, now: i64) -> PortResult<Vec<i64>> {
        self.fault.check().await?;
        self.inner.due_subscribers(now).await
    }

    async fn due_deliveries(&self, subscriber: i64, now: i64, limit: u32) -> PortResult<Vec<wh::Delivery>> {
        self.fault.check().await?;
        self.inner.due_deliveries(subscriber, now, limit).await
    }

    async fn record_attempts(&self, attempts: &[wh::Attempt]) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.record_attempts(attempts).await
    }

    async fn deliveries(
        &self,
        subscriber: i64,
        state: Option<wh::DeliveryState>,
        before: Option<i64>,
        limit: u32,
    ) -> PortResult<Vec<wh::Delivery>> {
        self.fault.check().await?;
        self.inner.deliveries(subscriber, state, before, limit).await
    }

    async fn retry_deliveries(&self, subscriber: i64, event: Option<i64>, now: i64) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.retry_deliveries(subscriber, event, now).await
    }

    async fn prune_deliveries(&self, delivered_before: i64, dead_before: i64, limit: u32) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.prune_deliveries(delivered_before, dead_before, limit).await
    }

    async fn pending_deliveries(&self) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.pending_deliveries().await
    }

    async fn outbox_len(&self) -> PortResult<u64> {
        self.fault.check().await?;
        self.inner.outbox_len().await
    }
}

#[async_trait]
impl<T: domain::ports::Fleet> domain::ports::Fleet for Faulty<T> {
    async fn beat(&self, instance: &domain::ports::Instance) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.beat(instance).await
    }

    async fn leave(&self, id: &str) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.leave(id).await
    }

    async fn instances(&self, since: i64) -> PortResult<Vec<domain::ports::Instance>> {
        self.fault.check().await?;
        self.inner.instances(since).await
    }

    async fn broadcast(&self, commands: &str, now: i64) -> PortResult<i64> {
        self.fault.check().await?;
        self.inner.broadcast(commands, now).await
    }

    async fn broadcasts_after(&self, seq: i64) -> PortResult<Vec<domain::ports::Broadcast>> {
        self.fault.check().await?;
        self.inner.broadcasts_after(seq).await
    }

    async fn last_broadcast(&self) -> PortResult<i64> {
        self.fault.check().await?;
        self.inner.last_broadcast().await
    }
}

#[async_trait]
impl<T: domain::ports::PointsLedger> domain::ports::PointsLedger for Faulty<T> {
    async fn award_points(&self, award: &domain::ports::PointsAward) -> PortResult<bool> {
        self.fault.check().await?;
        self.inner.award_points(award).await
    }

    async fn order_award(&self, order: OrderId) -> PortResult<Option<domain::ports::PointsAward>> {
        self.fault.check().await?;
        self.inner.order_award(order).await
    }

    async fn account_awards(&self, account: &str, limit: u32) -> PortResult<Vec<domain::ports::PointsAward>> {
        self.fault.check().await?;
        self.inner.account_awards(account, limit).await
    }

    async fn mark_reported(&self, order: OrderId, at: i64) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.mark_reported(order, at).await
    }
}

#[async_trait]
impl<T: StoreBackend> StoreBackend for Faulty<T> {
    async fn health(&self) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.health().await
    }
}

#[async_trait]
impl<T: MenuCache> MenuCache for Faulty<T> {
    async fn get_or_load(&self, store: &StoreId, load: MenuLoad<'_>) -> PortResult<Arc<MenuSnapshot>> {
        self.fault.check().await?;
        self.inner.get_or_load(store, load).await
    }

    async fn invalidate(&self, store: &StoreId) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.invalidate(store).await
    }

    async fn clear(&self) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.clear().await
    }

    async fn health(&self) -> PortResult<()> {
        self.fault.check().await?;
        self.inner.health().await
    }
}
