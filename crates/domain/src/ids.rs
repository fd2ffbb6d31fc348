//! Identifiers. Orders get UUIDv7 ids (time-ordered, so the primary-key
//! index stays append-mostly); stores have short human slugs because staff
//! type them into tills and dashboards.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// An order id: a UUIDv7 minted at intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub Uuid);

impl OrderId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(Self)
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A store's slug, e.g. `demo-downtown`: 1 to 64 of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreId(pub String);

impl StoreId {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The log partition for a key: FNV-1a, so every backend (SQLite log, Kafka
/// with an explicit partition) routes an order the same way and a store's
/// records for one order always stay in order.
///
/// Only the part before the first `/` is hashed: a record about an order
/// that is not the order itself (a payment, keyed `{order}/payment/{event}`)
/// lands in the order's partition, after it, while `EventLog::find(order)`
/// (exact key) still finds the order.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    let key = key.split(|b| *b == b'/').next().unwrap_or(key);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_about_an_order_share_its_partition() {
        let order = "0190f0d2-5b1c-7cc3-a1b2-000000000001";
        let payment = format!("{order}/payment/evt_1");
        assert_eq!(partition_for(order.as_bytes(), 8), partition_for(payment.as_bytes(), 8));
    }

    #[test]
    fn store_slugs_are_validated() {
        assert!(StoreId::parse("demo-downtown").is_some());
        assert!(StoreId::parse("").is_none());
        assert!(StoreId::parse("Demo").is_none());
        assert!(StoreId::parse(&"a".repeat(65)).is_none());
    }

    #[test]
    fn partitioning_is_stable_and_in_range() {
        let k = b"0190f0d2-0000-7000-8000-000000000000";
        assert_eq!(partition_for(k, 8), partition_for(k, 8));
        for i in 0..1000u32 {
            assert!(partition_for(&i.to_le_bytes(), 8) < 8);
        }
    }
}
