//! The simulator's data: a coffee-shop catalog and a loyalty-account
//! population, generated deterministically from a seed, plus the change
//! log that makes the accounts' change feed cheap to page through.
//!
//! The change log is append-only: every change gives an account a new,
//! strictly greater version and appends `(version, account)`; the entry of
//! its previous version becomes stale. A cursor is a position in the log
//! (found by binary search), so a page costs O(log n + page) however many
//! accounts there are, and a Fenwick tree over "is this entry live" counts
//! the changes left after any cursor in O(log n) for the `total` hint.

use domain::menu::{Category, Item, Modifier, Size, Station, demo_menu};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

use crate::wire::{CatalogCategory, CatalogItem, CatalogPage, ChangesPage, WireAccount};

/// The version (epoch ms) the generated accounts start from.
pub(crate) const BASE_VERSION: i64 = 1_700_000_000_000;
/// The most catalog items one page may hold.
pub const MAX_PER_PAGE: u32 = 100;
/// The most accounts one change-feed page may hold.
pub const MAX_CHANGES_LIMIT: u32 = 5000;

/// A small, fast, portable PRNG (SplitMix64): the same seed gives the same
/// data on every platform and every version of every dependency, which a
/// library RNG does not promise.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

// ------------------------------------------------------------------ catalog

pub(crate) struct Catalog {
    seed: u64,
    categories: Vec<Category>,
    items: Vec<Item>,
    /// Bumped by every mutation; the ETag is a hash of it.
    version: u64,
    etag: String,
    rng: SplitMix,
}

const FLAVOURS: &[(&str, &str, bool)] = &[
    ("vanilla", "Vanilla", false),
    ("caramel", "Caramel", false),
    ("hazelnut", "Hazelnut", false),
    ("salted-caramel", "Salted Caramel", false),
    ("toffee-nut", "Toffee Nut", false),
    ("gingerbread", "Gingerbread", true),
    ("pumpkin-spice", "Pumpkin Spice", true),
    ("peppermint", "Peppermint", true),
    ("maple", "Maple", false),
    ("cinnamon", "Cinnamon", false),
    ("honey", "Honey", false),
    ("lavender", "Lavender", false),
    ("coconut", "Coconut", false),
    ("white-chocolate", "White Chocolate", false),
    ("irish-cream", "Irish Cream", false),
    ("raspberry", "Raspberry", false),
];

/// (sku, name, base price, category)
const BASES: &[(&str, &str, i64, &str)] = &[
    ("latte", "Latte", 420, "coffee"),
    ("cappuccino", "Cappuccino", 420, "coffee"),
    ("mocha", "Mocha", 480, "coffee"),
    ("americano", "Americano", 300, "coffee"),
    ("flat-white", "Flat White", 440, "coffee"),
    ("cortado", "Cortado", 380, "coffee"),
    ("macchiato", "Macchiato", 360, "coffee"),
    ("cold-brew", "Cold Brew", 450, "cold"),
    ("iced-latte", "Iced Latte", 460, "cold"),
    ("frappe", "Frappé", 520, "cold"),
    ("chai-latte", "Chai Latte", 430, "tea"),
    ("matcha-latte", "Matcha Latte", 470, "tea"),
];

/// (sku, name, category, price)
const FOOD: &[(&str, &str, &str, i64)] = &[
    ("blueberry-muffin", "Blueberry Muffin", "bakery", 340),
    ("almond-croissant", "Almond Croissant", "bakery", 390),
    ("cinnamon-roll", "Cinnamon Roll", "bakery", 370),
    ("cheese-scone", "Cheese Scone", "bakery", 330),
    ("lemon-drizzle", "Lemon Drizzle Cake", "bakery", 360),
    ("chocolate-brownie", "Chocolate Brownie", "bakery", 320),
    ("oat-cookie", "Oat & Raisin Cookie", "bakery", 250),
    ("carrot-cake", "Carrot Cake", "bakery", 410),
    ("bagel-cream-cheese", "Bagel & Cream Cheese", "kitchen", 450),
    ("ham-cheese-toastie", "Ham & Cheese Toastie", "kitchen", 620),
    ("veggie-wrap", "Roasted Veggie Wrap", "kitchen", 640),
    ("soup-of-the-day", "Soup of the Day", "kitchen", 590),
    ("spinach-quiche", "Spinach & Feta Quiche", "kitchen", 610),
    ("bacon-roll", "Bacon Roll", "kitchen", 560),
    ("granola-bowl", "Granola & Yoghurt Bowl", "kitchen", 520),
    ("tomato-mozzarella-panini", "Tomato & Mozzarella Panini", "kitchen", 660),
];

fn hot_sizes(base: i64) -> Vec<Size> {
    vec![
        Size {
            code: "small".into(),
            name: "Small 8oz".into(),
            price: base,
        },
        Size {
            code: "medium".into(),
            name: "Medium 12oz".into(),
            price: base + 50,
        },
        Size {
            code: "large".into(),
            name: "Large 16oz".into(),
            price: base + 90,
        },
    ]
}

fn cold_sizes(base: i64) -> Vec<Size> {
    vec![
        Size {
            code: "medium".into(),
            name: "Medium 16oz".into(),
            price: base,
        },
        Size {
            code: "large".into(),
            name: "Large 20oz".into(),
            price: base + 60,
        },
    ]
}

impl Catalog {
    /// `n` items: the demo menu's (so a demo store's first sync keeps its
    /// items), then bakery and kitchen items, then flavoured drinks, then
    /// numbered seasonal specials if more are asked for.
    pub(crate) fn generate(n: usize, seed: u64) -> Self {
        let demo = demo_menu();
        let mut rng = SplitMix::new(seed ^ 0xCA7A_1060);
        let drink_mods: Vec<Modifier> = demo
            .items
            .iter()
            .find(|i| i.station == Station::Barista)
            .map(|i| i.modifiers.clone())
            .unwrap_or_default();
        let food_mods: Vec<Modifier> = demo
            .items
            .iter()
            .find(|i| i.station == Station::Kitchen)
            .map(|i| i.modifiers.clone())
            .unwrap_or_default();

        let mut categories = demo.categories.clone();
        categories.push(Category {
            code: "cold".into(),
            name: "Cold drinks".into(),
            position: 5,
        });
        categories.push(Category {
            code: "seasonal".into(),
            name: "Seasonal".into(),
            position: 6,
        });

        let mut items: Vec<Item> = demo.items.iter().take(n).cloned().collect();
        let mut skus: HashSet<String> = items.iter().map(|i| i.sku.clone()).collect();
        let mut push = |items: &mut Vec<Item>, item: Item| {
            if items.len() < n && skus.insert(item.sku.clone()) {
                items.push(item);
            }
        };
        for &(sku, name, category, price) in FOOD {
            push(
                &mut items,
                Item {
                    sku: sku.into(),
                    name: name.into(),
                    category: category.into(),
                    station: Station::Kitchen,
                    sizes: vec![Size {
                        code: "regular".into(),
                        name: "Regular".into(),
                        price: price + 10 * rng.below(4) as i64,
                    }],
                    modifiers: food_mods.clone(),
                    available: true,
                },
            );
        }
        for &(fsku, fname, seasonal) in FLAVOURS {
            for &(bsku, bname, base, category) in BASES {
                let price = base + 30 + 10 * rng.below(5) as i64;
                let cold = category == "cold";
                push(
                    &mut items,
                    Item {
                        sku: format!("{fsku}-{bsku}"),
                        name: format!("{fname} {bname}"),
                        category: if seasonal { "seasonal".into() } else { category.into() },
                        station: Station::Barista,
                        sizes: if cold { cold_sizes(price) } else { hot_sizes(price) },
                        modifiers: drink_mods.clone(),
                        available: true,
                    },
                );
            }
        }
        let mut special = 0;
        while items.len() < n {
            special += 1;
            let &(bsku, bname, base, _) = rng.pick(BASES);
            push(
                &mut items,
                Item {
                    sku: format!("special-{special}-{bsku}"),
                    name: format!("Special No. {special} {bname}"),
                    category: "seasonal".into(),
                    station: Station::Barista,
                    sizes: hot_sizes(base + 60),
                    modifiers: drink_mods.clone(),
                    available: true,
                },
            );
        }
        let mut catalog = Self {
            seed,
            categories,
            items,
            version: 1,
            etag: String::new(),
            rng,
        };
        catalog.etag = catalog.compute_etag();
        catalog
    }

    fn compute_etag(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.seed.to_be_bytes());
        h.update(self.version.to_be_bytes());
        format!("\"cat-{}\"", hex::encode(&h.finalize()[..8]))
    }

    pub(crate) fn etag(&self) -> &str {
        &self.etag
    }

    pub(crate) fn item(&self, sku: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.sku == sku)
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Change the prices of `n` distinct items (as a price review would)
    /// and bump the catalog version. Returns their skus.
    pub(crate) fn mutate(&mut self, n: usize) -> Vec<String> {
        let n = n.min(self.items.len());
        if n == 0 {
            return Vec::new();
        }
        let picked = distinct(&mut self.rng, self.items.len(), n);
        let mut skus = Vec::with_capacity(n);
        for i in picked {
            let rise = 10 * (1 + self.rng.below(5) as i64);
            let item = &mut self.items[i];
            for size in &mut item.sizes {
                size.price += rise;
            }
            skus.push(item.sku.clone());
        }
        self.version += 1;
        self.etag = self.compute_etag();
        skus
    }

    /// Set every size of `sku` to `price` (a bad record, as a broken
    /// upstream would serve it) and bump the catalog version. False when
    /// there is no such item.
    pub(crate) fn set_price(&mut self, sku: &str, price: i64) -> bool {
        let Some(item) = self.items.iter_mut().find(|i| i.sku == sku) else {
            return false;
        };
        for size in &mut item.sizes {
            size.price = price;
        }
        self.version += 1;
        self.etag = self.compute_etag();
        true
    }

    /// Page `page` (from 1) of `per_page` items (clamped to 1..=100).
    pub(crate) fn page(&self, page: u32, per_page: u32) -> CatalogPage {
        let page = page.max(1);
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let start = ((page - 1) as usize).saturating_mul(per_page as usize);
        let end = start.saturating_add(per_page as usize).min(self.items.len());
        let items = if start < end {
            self.items[start..end].iter().map(CatalogItem::from).collect()
        } else {
            Vec::new()
        };
        CatalogPage {
            categories: if page == 1 {
                self.categories.iter().map(CatalogCategory::from).collect()
            } else {
                Vec::new()
            },
            items,
            page,
            per_page,
            total_items: self.items.len() as u64,
            next_page: (end < self.items.len()).then_some(page + 1),
        }
    }
}

/// `n` distinct indexes below `len` (n ≤ len), in random order.
fn distinct(rng: &mut SplitMix, len: usize, n: usize) -> Vec<usize> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    if n * 2 > len {
        // Dense: shuffle the whole range (Fisher–Yates) and take a prefix.
        let mut all: Vec<usize> = (0..len).collect();
        for i in (1..len).rev() {
            all.swap(i, rng.below(i as u64 + 1) as usize);
        }
        all.truncate(n);
        return all;
    }
    while out.len() < n {
        let i = rng.below(len as u64) as usize;
        if seen.insert(i) {
            out.push(i);
        }
    }
    out
}

// ----------------------------------------------------------------- accounts

const FIRST: &[&str] = &[
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amelia",
    "Oliver",
    "Ava",
    "Elijah",
    "Sophia",
    "Mateo",
    "Isabella",
    "Lucas",
    "Mia",
    "Levi",
    "Charlotte",
    "Leo",
    "Harper",
    "Ezra",
    "Luna",
    "Aiden",
    "Aria",
    "Kai",
    "Chloe",
    "Yusuf",
    "Priya",
    "Hiro",
    "Ines",
    "Tomás",
    "Freya",
    "Arjun",
    "Zara",
    "Mohammed",
    "Sakura",
    "Nikolai",
    "Amara",
    "Jonas",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Nguyen",
    "Kim",
    "Patel",
    "Khan",
    "Novak",
    "Silva",
    "Rossi",
    "Müller",
    "Tanaka",
    "O'Brien",
    "Dubois",
    "Kowalski",
];

fn tier_for(points: i64) -> &'static str {
    match points {
        ..1_000 => "bronze",
        1_000..5_000 => "silver",
        5_000..15_000 => "gold",
        _ => "platinum",
    }
}

/// A Fenwick (binary indexed) tree of 0/1 "live" flags that can grow.
#[derive(Debug, Default)]
struct Fenwick {
    flags: Vec<u8>,
    tree: Vec<i64>,
}

impl Fenwick {
    fn push(&mut self, live: bool) {
        self.flags.push(u8::from(live));
        let i = self.flags.len(); // 1-based index of the new entry
        // tree[i] covers (i - lowbit(i), i]: its own flag plus the sums of
        // the nodes it spans, which are all already in place.
        let low = i & i.wrapping_neg();
        let mut sum = i64::from(live);
        let mut j = i - 1;
        while j > i - low {
            sum += self.tree[j - 1];
            j -= j & j.wrapping_neg();
        }
        self.tree.push(sum);
    }

    fn clear(&mut self, pos: usize) {
        if self.flags[pos] == 0 {
            return;
        }
        self.flags[pos] = 0;
        let mut i = pos + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] -= 1;
            i += i & i.wrapping_neg();
        }
    }

    /// Live entries in `0..end`.
    fn prefix(&self, end: usize) -> i64 {
        let mut i = end.min(self.tree.len());
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i - 1];
            i -= i & i.wrapping_neg();
        }
        sum
    }

    /// Live entries in `from..`.
    fn suffix(&self, from: usize) -> i64 {
        self.prefix(self.tree.len()) - self.prefix(from)
    }
}

pub(crate) struct Accounts {
    accounts: Vec<WireAccount>,
    /// Each account's entry in `log`.
    entry: Vec<u32>,
    /// `(version, account index)`, strictly increasing in version.
    log: Vec<(i64, u32)>,
    live: Fenwick,
    rng: SplitMix,
}

/// `L000123` → index 122 (ids count from 1).
fn index_of(id: &str) -> Option<u32> {
    id.strip_prefix('L')?.parse::<u32>().ok()?.checked_sub(1)
}

fn id_of(index: u32) -> String {
    format!("L{:06}", index + 1)
}

impl Accounts {
    pub(crate) fn generate(n: usize, seed: u64) -> Self {
        let mut rng = SplitMix::new(seed ^ 0x10_7A17);
        let mut accounts = Vec::with_capacity(n);
        let mut log = Vec::with_capacity(n + n / 8);
        let mut live = Fenwick::default();
        for i in 0..n as u32 {
            let first = *rng.pick(FIRST);
            let last = *rng.pick(LAST);
            // Most members have a few hundred points, a few have many.
            let r = rng.below(20_000) as i64;
            let points = r * r / 20_000;
            let email = (rng.below(13) != 0).then(|| {
                let local: String = format!("{first}.{last}")
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
                    .collect::<String>()
                    .to_ascii_lowercase();
                format!("{local}{}@example.com", i + 1)
            });
            let version = BASE_VERSION + i64::from(i);
            accounts.push(WireAccount {
                id: id_of(i),
                email,
                name: format!("{first} {last}"),
                tier: tier_for(points).into(),
                points,
                version,
            });
            log.push((version, i));
            live.push(true);
        }
        Self {
            entry: (0..n as u32).collect(),
            accounts,
            log,
            live,
            rng,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.accounts.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&WireAccount> {
        self.accounts.get(index_of(id)? as usize)
    }

    /// `n` distinct accounts earn or redeem points (their tier follows) and
    /// get a new version, no earlier than `now_ms` and after every version
    /// handed out so far. Returns their ids.
    pub(crate) fn mutate(&mut self, n: usize, now_ms: i64) -> Vec<String> {
        let n = n.min(self.accounts.len());
        let picked = distinct(&mut self.rng, self.accounts.len(), n);
        let mut version = self.log.last().map_or(BASE_VERSION, |e| e.0).max(now_ms - 1);
        let mut ids = Vec::with_capacity(n);
        for i in picked {
            version += 1;
            let earned = 10 + self.rng.below(490) as i64;
            let redeem = self.rng.below(10) == 0;
            let a = &mut self.accounts[i];
            a.points = if redeem {
                (a.points - earned * 4).max(0)
            } else {
                a.points + earned
            };
            a.tier = tier_for(a.points).into();
            a.version = version;
            ids.push(a.id.clone());
            self.live.clear(self.entry[i] as usize);
            self.entry[i] = self.log.len() as u32;
            self.log.push((version, i as u32));
            self.live.push(true);
        }
        ids
    }

    /// Up to `limit` accounts changed after `since` (`None`: all), oldest
    /// change first.
    pub(crate) fn changes(&self, since: Option<(i64, u32)>, limit: u32) -> ChangesPage {
        let limit = limit.clamp(1, MAX_CHANGES_LIMIT) as usize;
        let from = since.map_or(0, |c| self.log.partition_point(|&e| e <= c));
        let total = self.live.suffix(from).max(0) as u64;
        let mut accounts = Vec::with_capacity(limit.min(total as usize));
        let mut last: Option<(usize, i64, u32)> = None;
        for (pos, &(version, i)) in self.log.iter().enumerate().skip(from) {
            if accounts.len() == limit {
                break;
            }
            if self.entry[i as usize] as usize != pos {
                continue; // superseded by a later change of the same account
            }
            accounts.push(self.accounts[i as usize].clone());
            last = Some((pos, version, i));
        }
        let (next_cursor, has_more) = match last {
            Some((pos, version, i)) => (encode_cursor(version, i), self.live.suffix(pos + 1) > 0),
            None => (since.map_or_else(String::new, |(v, i)| encode_cursor(v, i)), false),
        };
        ChangesPage {
            accounts,
            next_cursor,
            has_more,
            total: Some(total),
        }
    }
}

/// The JSON of a change-feed page, written by hand rather than by serde:
/// this is the simulator's hot path (19 MB for a first sync of 150k
/// accounts), and serde's generic serializer is instantiated in this crate,
/// so in unoptimised test builds it ran several times slower than the
/// client that reads it. A unit test holds it to `ChangesPage`'s format.
pub(crate) fn render_changes(page: &ChangesPage) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 + page.accounts.len() * 140);
    out.push_str("{\"accounts\":[");
    for (i, a) in page.accounts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        json_str(&mut out, &a.id);
        out.push_str(",\"email\":");
        match &a.email {
            Some(e) => json_str(&mut out, e),
            None => out.push_str("null"),
        }
        out.push_str(",\"name\":");
        json_str(&mut out, &a.name);
        out.push_str(",\"tier\":");
        json_str(&mut out, &a.tier);
        let _ = write!(out, ",\"points\":{},\"version\":{}}}", a.points, a.version);
    }
    out.push_str("],\"next_cursor\":");
    json_str(&mut out, &page.next_cursor);
    let _ = write!(out, ",\"has_more\":{},\"total\":", page.has_more);
    match page.total {
        Some(t) => {
            let _ = write!(out, "{t}");
        }
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// A JSON string literal (RFC 8259 §7): quotes, backslashes and control
/// characters escaped, everything else as UTF-8.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Cursors say "after this version of this account": `<version>.<id>`.
pub(crate) fn encode_cursor(version: i64, index: u32) -> String {
    format!("{version}.{}", id_of(index))
}

pub(crate) fn decode_cursor(s: &str) -> Option<(i64, u32)> {
    let (version, id) = s.split_once('.')?;
    Some((version.parse().ok()?, index_of(id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_rendered_pages_read_back_as_the_wire_type() {
        let mut a = Accounts::generate(50, 9);
        a.accounts[3].name = "Tricky \"Q\" \\ O'Brien\n\u{1}Müller".into();
        a.accounts[4].email = None;
        for page in [
            a.changes(None, 20),
            a.changes(None, 5000),
            a.changes(Some((i64::MAX, 0)), 10),
        ] {
            let text = render_changes(&page);
            let back: ChangesPage = serde_json::from_str(&text).unwrap();
            assert_eq!(back.accounts, page.accounts);
            assert_eq!(
                (back.next_cursor, back.has_more, back.total),
                (page.next_cursor.clone(), page.has_more, page.total)
            );
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                serde_json::to_value(&page).unwrap(),
                "same document as serde writes"
            );
        }
    }

    #[test]
    fn fenwick_counts_live_entries_while_growing() {
        let mut f = Fenwick::default();
        for _ in 0..37 {
            f.push(true);
        }
        f.clear(3);
        f.clear(20);
        f.clear(20);
        for _ in 0..5 {
            f.push(true);
        }
        let flags = |from: usize| (from..42).filter(|&i| i != 3 && i != 20).count() as i64;
        for from in 0..=42 {
            assert_eq!(f.suffix(from), flags(from), "from {from}");
        }
    }

    #[test]
    fn generation_is_deterministic_and_realistic() {
        let a = Catalog::generate(200, 7);
        let b = Catalog::generate(200, 7);
        assert_eq!(a.items, b.items);
        assert_eq!(a.etag(), b.etag());
        assert_eq!(a.len(), 200);
        assert!(a.item("latte").is_some(), "keeps the demo items");
        assert!(a.items.iter().any(|i| i.station == Station::Kitchen));
        let skus: HashSet<_> = a.items.iter().map(|i| &i.sku).collect();
        assert_eq!(skus.len(), 200, "skus are unique");
        assert!(
            a.items
                .iter()
                .all(|i| a.categories.iter().any(|c| c.code == i.category))
        );
        assert_eq!(Catalog::generate(300, 7).len(), 300, "specials fill larger catalogs");

        let x = Accounts::generate(1000, 7);
        let y = Accounts::generate(1000, 7);
        assert_eq!(x.accounts, y.accounts);
        assert_eq!(x.get("L000001").unwrap().id, "L000001");
        assert!(x.get("L001001").is_none());
    }

    #[test]
    fn catalog_pages_and_mutations() {
        let mut c = Catalog::generate(250, 1);
        let p1 = c.page(1, 100);
        assert_eq!(
            (p1.items.len(), p1.next_page, p1.categories.is_empty()),
            (100, Some(2), false)
        );
        let p3 = c.page(3, 100);
        assert_eq!(
            (p3.items.len(), p3.next_page, p3.categories.is_empty()),
            (50, None, true)
        );
        assert!(c.page(4, 100).items.is_empty());
        let before = c.etag().to_owned();
        let skus = c.mutate(5);
        assert_eq!(skus.len(), 5);
        assert_ne!(c.etag(), before);
    }

    #[test]
    fn change_feed_pages_in_order_and_sees_mutations_once() {
        let mut a = Accounts::generate(2500, 3);
        let mut cursor = None;
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let page = a.changes(cursor, 1000);
            if pages == 0 {
                assert_eq!(page.total, Some(2500));
            }
            seen += page.accounts.len();
            pages += 1;
            cursor = decode_cursor(&page.next_cursor);
            if !page.has_more {
                break;
            }
        }
        assert_eq!((seen, pages), (2500, 3));
        let idle = a.changes(cursor, 1000);
        assert!(idle.accounts.is_empty() && !idle.has_more);
        assert_eq!(
            decode_cursor(&idle.next_cursor),
            cursor,
            "an empty page keeps the cursor"
        );

        let ids = a.mutate(30, 0);
        // Change some accounts twice: the feed must return each once, newest.
        let again = a.mutate(2000, 0);
        let page = a.changes(cursor, 5000);
        let expect: HashSet<&String> = ids.iter().chain(again.iter()).collect();
        let got: HashSet<&String> = page.accounts.iter().map(|x| &x.id).collect();
        assert_eq!(got, expect);
        assert_eq!(page.accounts.len(), expect.len(), "each changed account once");
        assert_eq!(page.total, Some(expect.len() as u64));
        assert!(page.accounts.windows(2).all(|w| w[0].version < w[1].version));
        assert!(!page.has_more);
    }
}
