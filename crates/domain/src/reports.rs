//! What the screens show in aggregate: the customer's ready-time estimate,
//! the manager's day in figures, and the menu's "popular now" row.
//!
//! # How the ready-time estimate is computed
//!
//! For each station, the store's recent **prep times** are sampled: for
//! every line whose ticket was finished in the last [`PREP_WINDOW`] (two
//! hours), the time from its order's confirmation to the line's ticket
//! done, the newest [`PREP_SAMPLES`] (200) per station. A station's prep
//! time is the **median** of its samples when it has at least
//! [`MIN_SAMPLES`] (5), and otherwise a fixed default
//! ([`default_prep_ms`]: 3 minutes for drinks, 5 for food), so a quiet
//! morning gives a sensible answer rather than one built on two orders.
//! An order that is confirmed or in progress is estimated ready at its
//! confirmation time (or now, if it has none yet) plus the prep time of the
//! **slowest station it has lines for**: stations work in parallel, so the
//! order waits for the slowest. The estimate carries how many samples that
//! station had and whether it came from their median or the default.
//! Medians are computed per store at most once every [`ESTIMATE_TTL`]
//! (15 s; `TtlCache`), so a page polled by a hundred customers costs one
//! query per store every 15 seconds.
//!
//! # The day's figures
//!
//! A store's day is the local date in its time zone (`pickup::day_bounds`,
//! 23 or 25 hours around daylight-saving changes). Counts are of the orders
//! *placed* that day; time to ready is `ready_at − placed_at` of those that
//! got ready, as a mean and a nearest-rank 90th percentile, per local hour
//! of placing and over the day. The store aggregates (`ReportStore::day_rows`).
//!
//! # Popular items
//!
//! The `popular.refresh` job ([`refresh_popular`]) ranks each store's skus
//! by quantity sold in the last 24 hours (orders not rejected or
//! cancelled), keeps the top [`POPULAR_ITEMS`] in the store, and the API
//! reads them through a `TtlCache` of [`POPULAR_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ids::StoreId;
use crate::menu::Station;
use crate::order::{Order, OrderStatus, TicketStatus};
use crate::ports::{MenuStore, PopularItem, PortResult, PrepSample, ReportStore};

/// How far back prep times are sampled.
pub const PREP_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);
/// Newest samples kept per station.
pub const PREP_SAMPLES: u32 = 200;
/// Fewer samples than this and a station's default is used.
pub const MIN_SAMPLES: u32 = 5;
/// How long a store's medians are reused.
pub const ESTIMATE_TTL: Duration = Duration::from_secs(15);
/// Best sellers kept per store.
pub const POPULAR_ITEMS: u32 = 8;
/// How far back best sellers are counted.
pub const POPULAR_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// How long the API reuses a store's kept popular items (the job refreshes
/// them every five minutes).
pub const POPULAR_TTL: Duration = Duration::from_secs(60);

/// A station's prep time when it has too few recent samples (ms).
pub fn default_prep_ms(station: Station) -> i64 {
    match station {
        Station::Barista => 3 * 60_000,
        Station::Kitchen => 5 * 60_000,
    }
}

/// Where an estimate's prep time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Median,
    Default,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Median => "median",
            Basis::Default => "default",
        }
    }
}

/// A store's current prep time per station.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepTimes {
    /// Station → (median ms, samples) for stations with any sample.
    stations: HashMap<Station, (i64, u32)>,
}

impl PrepTimes {
    pub fn from_samples(samples: &[PrepSample]) -> Self {
        let mut by: HashMap<Station, Vec<i64>> = HashMap::new();
        for s in samples {
            by.entry(s.station).or_default().push(s.ms.max(0));
        }
        let stations = by
            .into_iter()
            .map(|(st, mut v)| {
                v.sort_unstable();
                let n = v.len();
                let median = if n % 2 == 1 {
                    v[n / 2]
                } else {
                    (v[n / 2 - 1] + v[n / 2]) / 2
                };
                (st, (median, u32::try_from(n).unwrap_or(u32::MAX)))
            })
            .collect();
        Self { stations }
    }

    /// `(prep ms, samples, basis)` of `station`.
    pub fn of(&self, station: Station) -> (i64, u32, Basis) {
        match self.stations.get(&station) {
            Some(&(median, n)) if n >= MIN_SAMPLES => (median, n, Basis::Median),
            Some(&(_, n)) => (default_prep_ms(station), n, Basis::Default),
            None => (default_prep_ms(station), 0, Basis::Default),
        }
    }
}

/// When an order should be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub ready_at: i64,
    /// Whole seconds from `now` to `ready_at`, never negative.
    pub seconds_left: i64,
    pub samples: u32,
    pub basis: Basis,
}

/// The estimate for `order` (module docs), or `None` unless it is
/// confirmed or in progress.
pub fn estimate(order: &Order, prep: &PrepTimes, now: i64) -> Option<Estimate> {
    if !matches!(order.status, OrderStatus::Confirmed | OrderStatus::InProgress) {
        return None;
    }
    let slowest = order
        .lines
        .iter()
        .filter(|l| l.ticket != Some(TicketStatus::Done))
        .map(|l| prep.of(l.station))
        .max_by_key(|(ms, _, _)| *ms)?;
    let (ms, samples, basis) = slowest;
    let ready_at = order.at.confirmed_at.unwrap_or(now) + ms;
    Some(Estimate {
        ready_at,
        seconds_left: ((ready_at - now).max(0) + 999) / 1000,
        samples,
        basis,
    })
}

/// Values per store, each reused for a fixed time: the estimate's medians
/// and the popular items. A mutex-guarded map rather than a cache crate:
/// one entry per store (a few dozen), looked up once per request; times
/// come from the caller (the injectable `Clock`), so tests move them.
pub struct TtlCache<V> {
    ttl_ms: i64,
    entries: Mutex<HashMap<StoreId, (i64, Arc<V>)>>,
}

impl<V> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl_ms: ttl.as_millis() as i64,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, store: &StoreId, now: i64) -> Option<Arc<V>> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(store)
            .filter(|(at, _)| now - at < self.ttl_ms)
            .map(|(_, v)| v.clone())
    }

    /// The entry of `store`, loaded by `load` when missing or older than
    /// the TTL. Two concurrent misses may both load; the later one wins,
    /// which costs a query and changes nothing.
    pub async fn get_or_load<F, Fut>(&self, store: &StoreId, now: i64, load: F) -> PortResult<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = PortResult<V>>,
    {
        if let Some(v) = self.fresh(store, now) {
            return Ok(v);
        }
        let v = Arc::new(load().await?);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(store.clone(), (now, v.clone()));
        Ok(v)
    }
}

/// The current prep times of `store`, from `cache` or the store.
pub async fn prep_times(
    reports: &dyn ReportStore,
    cache: &TtlCache<PrepTimes>,
    store: &StoreId,
    now: i64,
) -> PortResult<Arc<PrepTimes>> {
    cache
        .get_or_load(store, now, || async {
            let since = now - PREP_WINDOW.as_millis() as i64;
            let samples = reports.prep_samples(store, since, PREP_SAMPLES).await?;
            Ok(PrepTimes::from_samples(&samples))
        })
        .await
}

/// A store's kept popular items and when they were computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Popular {
    pub items: Vec<PopularItem>,
    pub computed_at: Option<i64>,
}

/// The `popular.refresh` job: rank every store's best sellers of the last
/// [`POPULAR_WINDOW`] and keep the top [`POPULAR_ITEMS`]. Returns how many
/// stores were refreshed.
pub async fn refresh_popular<S: MenuStore + ReportStore + ?Sized>(store: &S, now: i64) -> PortResult<usize> {
    let since = now - POPULAR_WINDOW.as_millis() as i64;
    let stores = store.list_stores().await?;
    for s in &stores {
        let items = store.top_items(&s.id, since, POPULAR_ITEMS).await?;
        store.save_popular(&s.id, &items, now).await?;
    }
    Ok(stores.len())
}

/// One local hour of a store's day.
#[derive(Debug, Clone, PartialEq)]
pub struct HourFigures {
    /// Local hour of placing, 0..=23.
    pub hour: u8,
    pub orders: u64,
    pub avg_ready_secs: Option<f64>,
    pub p90_ready_secs: Option<f64>,
}

/// A store's day in figures (module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct DayFigures {
    pub store: StoreId,
    /// `YYYY-MM-DD` in the store's time zone.
    pub date: String,
    pub orders: u64,
    pub ready: u64,
    pub picked_up: u64,
    pub cancelled: u64,
    pub rejected: u64,
    pub avg_ready_secs: Option<f64>,
    pub p90_ready_secs: Option<f64>,
    pub per_hour: Vec<HourFigures>,
}

/// The figures of `store`'s local `date` (`YYYY-MM-DD`; `None` for today
/// at `now`) in `time_zone`. `None` if `date` is not a date.
pub async fn day_figures(
    reports: &dyn ReportStore,
    store: &StoreId,
    time_zone: &str,
    date: Option<&str>,
    now: i64,
) -> PortResult<Option<DayFigures>> {
    let date = match date {
        Some(d) => d.to_owned(),
        None => crate::pickup::local_day(time_zone, now),
    };
    let Some((start, end)) = crate::pickup::day_bounds(time_zone, &date) else {
        return Ok(None);
    };
    let rows = reports.day_rows(store, start, end).await?;
    let secs = |ms: Option<f64>| ms.map(|v| v / 1000.0);
    let mut per_hour: Vec<HourFigures> = Vec::with_capacity(rows.hours.len());
    for h in &rows.hours {
        let hour = crate::pickup::local_hour(time_zone, start + i64::from(h.hour) * 3_600_000);
        // The repeated hour of a day that falls back (25 hours) folds into
        // its first occurrence for the count; its times stay the first's.
        match per_hour.iter_mut().find(|x| x.hour == hour) {
            Some(x) => x.orders += h.orders,
            None => per_hour.push(HourFigures {
                hour,
                orders: h.orders,
                avg_ready_secs: secs(h.avg_ready_ms),
                p90_ready_secs: secs(h.p90_ready_ms),
            }),
        }
    }
    let sum = |f: fn(&crate::ports::HourRow) -> u64| rows.hours.iter().map(f).sum::<u64>();
    Ok(Some(DayFigures {
        store: store.clone(),
        date,
        orders: sum(|h| h.orders),
        ready: sum(|h| h.ready),
        picked_up: sum(|h| h.picked_up),
        cancelled: sum(|h| h.cancelled),
        rejected: sum(|h| h.rejected),
        avg_ready_secs: secs(rows.avg_ready_ms),
        p90_ready_secs: secs(rows.p90_ready_ms),
        per_hour,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrderId;
    use crate::order::{OrderLine, Timestamps};

    fn sample(station: Station, secs: i64) -> PrepSample {
        PrepSample {
            station,
            ms: secs * 1000,
        }
    }

    fn order(status: OrderStatus, lines: &[(Station, TicketStatus)], confirmed_at: Option<i64>) -> Order {
        Order {
            id: OrderId::new(),
            store: StoreId("s".into()),
            customer: None,
            status,
            reject_reason: None,
            payment_status: "unpaid".into(),
            currency: "USD".into(),
            total: 0,
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, (st, t))| OrderLine {
                    line: i as u32 + 1,
                    sku: "x".into(),
                    name: "x".into(),
                    station: *st,
                    size: "s".into(),
                    modifiers: vec![],
                    qty: 1,
                    unit_price: 0,
                    line_total: 0,
                    ticket: Some(*t),
                })
                .collect(),
            at: Timestamps {
                confirmed_at,
                ..Timestamps::default()
            },
            name: None,
            pickup_code: None,
            cancel_reason: None,
        }
    }

    #[test]
    fn medians_need_five_samples_else_the_default() {
        let mut samples: Vec<_> = [100, 60, 80, 90, 70].map(|s| sample(Station::Barista, s)).to_vec();
        samples.push(sample(Station::Kitchen, 30));
        let p = PrepTimes::from_samples(&samples);
        assert_eq!(p.of(Station::Barista), (80_000, 5, Basis::Median));
        assert_eq!(p.of(Station::Kitchen), (300_000, 1, Basis::Default));
        samples.push(sample(Station::Barista, 110));
        assert_eq!(
            PrepTimes::from_samples(&samples).of(Station::Barista).0,
            85_000,
            "even count: mean of the middle two"
        );
        assert_eq!(PrepTimes::default().of(Station::Barista), (180_000, 0, Basis::Default));
    }

    #[test]
    fn the_slowest_station_with_work_left_decides() {
        use Station::*;
        use TicketStatus::*;
        let p = PrepTimes::from_samples(&[10, 20, 30, 40, 50].map(|s| sample(Barista, s)));
        // Drinks (30 s median) and food (default 5 min): food decides.
        let o = order(
            OrderStatus::Confirmed,
            &[(Barista, Queued), (Kitchen, Queued)],
            Some(1_000),
        );
        let e = estimate(&o, &p, 61_000).unwrap();
        assert_eq!(
            (e.ready_at, e.seconds_left, e.samples, e.basis),
            (301_000, 240, 0, Basis::Default)
        );
        // Food done: the drink decides, from its median; never negative.
        let o = order(
            OrderStatus::InProgress,
            &[(Barista, Started), (Kitchen, Done)],
            Some(1_000),
        );
        let e = estimate(&o, &p, 100_000).unwrap();
        assert_eq!(
            (e.ready_at, e.seconds_left, e.samples, e.basis),
            (31_000, 0, 5, Basis::Median)
        );
        // Not yet confirmed: from now. Ready or finished: none.
        let o = order(OrderStatus::Confirmed, &[(Barista, Queued)], None);
        assert_eq!(estimate(&o, &p, 5_000).unwrap().ready_at, 35_000);
        for s in [
            OrderStatus::Placed,
            OrderStatus::Ready,
            OrderStatus::PickedUp,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(estimate(&order(s, &[(Barista, Queued)], Some(1)), &p, 5), None);
        }
    }

    #[test]
    fn ttl_cache_reuses_an_entry_until_it_is_stale() {
        let cache = TtlCache::<u32>::new(Duration::from_secs(15));
        let store = StoreId("s".into());
        let loads = std::cell::Cell::new(0);
        let get = |now| {
            futures::executor::block_on(cache.get_or_load(&store, now, || async {
                loads.set(loads.get() + 1);
                Ok(loads.get())
            }))
            .unwrap()
        };
        assert_eq!(*get(0), 1);
        assert_eq!(*get(14_999), 1, "fresh: no load");
        assert_eq!(*get(15_000), 2, "stale: loaded again");
        assert_eq!(loads.get(), 2);
    }
}
