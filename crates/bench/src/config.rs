//! What a load run is asked to do: operations, weighted mixes, presets,
//! durations, and the resolution of command-line flags on top of a preset
//! into one [`LoadConfig`].
//!
//! Everything here is pure (no IO, no clock) so the parsing rules and the
//! weighted choice can be unit-tested exactly; the engine in `load.rs` only
//! consumes a finished `LoadConfig`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::header::{HOST, HeaderName, HeaderValue};
use serde::Serialize;

/// One kind of request the generator can send. The discriminant is the index
/// into per-operation arrays (stats, weights), which keeps the hot path free
/// of maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `POST /v1/orders`: durable order intake, expects 202.
    Orders,
    /// `GET /v1/orders/{id}` for an order this run placed, expects 200.
    Status,
    /// `GET /v1/stores/{store}/menu`: the cached menu, expects 200.
    Menu,
    /// `GET /health/live`: the bare endpoint, i.e. the HTTP ceiling.
    Live,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Orders, Op::Status, Op::Menu, Op::Live];
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Orders => "orders",
            Op::Status => "status",
            Op::Menu => "menu",
            Op::Live => "live",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == s)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of the operations, e.g. `orders=20,status=30,menu=50`.
/// Weights are relative, not percentages, so `orders=1,menu=1` is a 50/50 mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; Op::COUNT],
}

impl Mix {
    /// A mix that only ever sends `op` (what `--scenario` means).
    pub fn single(op: Op) -> Self {
        let mut weights = [0; Op::COUNT];
        weights[op.index()] = 1;
        Self { weights }
    }

    pub fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }

    pub fn contains(&self, op: Op) -> bool {
        self.weight(op) > 0
    }

    /// Operations with a non-zero weight, in `Op::ALL` order.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        Op::ALL.into_iter().filter(|op| self.contains(*op))
    }

    pub fn picker(&self) -> Picker {
        Picker::new(self)
    }
}

impl FromStr for Mix {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut weights = [0u32; Op::COUNT];
        let mut seen = [false; Op::COUNT];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .with_context(|| format!("'{part}' is not op=weight"))?;
            let op = Op::parse(name.trim()).with_context(|| {
                format!(
                    "unknown operation '{}' (expected orders, status, menu or live)",
                    name.trim()
                )
            })?;
            if std::mem::replace(&mut seen[op.index()], true) {
                bail!("operation '{op}' appears twice");
            }
            weights[op.index()] = weight
                .trim()
                .parse()
                .with_context(|| format!("weight of '{op}' must be a whole number, got '{}'", weight.trim()))?;
        }
        // Summed as u64 so that absurd weights cannot overflow the check itself;
        // the picker then works in u32 because the total is known to fit.
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            bail!("a mix needs at least one operation with a weight above 0");
        }
        if total > u64::from(u32::MAX) {
            bail!("mix weights are relative; keep their sum below {}", u32::MAX);
        }
        Ok(Self { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for op in self.ops() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{op}={}", self.weight(op))?;
        }
        Ok(())
    }
}

impl Serialize for Mix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Weighted choice by cumulative weights. Built once per worker; `pick` is a
/// scan over at most four entries, cheaper than a binary search or the
/// allocation-carrying `rand::distr::weighted` types at this size.
#[derive(Debug, Clone)]
pub struct Picker {
    /// (operation, cumulative weight up to and including it), weights > 0 only.
    cumulative: Vec<(Op, u32)>,
    total: u32,
}

impl Picker {
    fn new(mix: &Mix) -> Self {
        let mut total = 0u32;
        let cumulative = mix
            .ops()
            .map(|op| {
                total += mix.weight(op);
                (op, total)
            })
            .collect();
        Self { cumulative, total }
    }

    /// The exclusive upper bound of the roll `pick` expects.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Map a uniform roll in `0..total()` to an operation.
    pub fn pick(&self, roll: u32) -> Op {
        self.cumulative
            .iter()
            .find(|(_, upto)| roll < *upto)
            .or(self.cumulative.last())
            .map(|(op, _)| *op)
            .expect("a mix has at least one operation")
    }
}

/// Closed loop: N workers send back-to-back, so the offered load adapts to
/// the server (measures capacity). Open loop: requests are due at a fixed
/// rate whatever the server does (measures latency at a given load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Closed,
    Open,
}

/// Named load shapes, from a quiet afternoon to the morning rush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Open loop, 50 req/s, browse-heavy.
    Quiet,
    /// Open loop, 500 req/s, the everyday mix.
    Steady,
    /// Closed loop, 64 connections.
    Busy,
    /// Closed loop, 256 connections, placement-heavy.
    Rush,
}

/// The settings a preset contributes; flags given explicitly override them.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub mode: Mode,
    pub connections: usize,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub mix: Mix,
}

impl Preset {
    pub fn shape(self) -> Shape {
        let mix = |s: &str| s.parse::<Mix>().expect("preset mixes are valid");
        let secs = Duration::from_secs;
        match self {
            Preset::Quiet => Shape {
                mode: Mode::Open,
                connections: 16,
                rate: Some(50.0),
                duration: secs(10),
                mix: mix("orders=10,status=20,menu=70"),
            },
            Preset::Steady => Shape {
                mode: Mode::Open,
                connections: 64,
                rate: Some(500.0),
                duration: secs(20),
                mix: mix("orders=20,status=30,menu=50"),
            },
            Preset::Busy => Shape {
                mode: Mode::Closed,
                connections: 64,
                rate: None,
                duration: secs(20),
                mix: mix("orders=30,status=30,menu=40"),
            },
            Preset::Rush => Shape {
                mode: Mode::Closed,
                connections: 256,
                rate: None,
                duration: secs(30),
                mix: mix("orders=60,status=25,menu=15"),
            },
        }
    }
}

/// Without a preset: a closed loop with the everyday mix.
pub fn default_shape() -> Shape {
    Shape {
        mode: Mode::Closed,
        connections: 64,
        rate: None,
        duration: Duration::from_secs(10),
        mix: "orders=20,status=30,menu=50".parse().expect("default mix is valid"),
    }
}

pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
pub const DEFAULT_STORE: &str = "demo-downtown";

/// A fully resolved run: what the engine executes and the report echoes.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub store: String,
    pub mode: Mode,
    /// Closed loop: number of workers. Open loop: most requests in flight.
    pub connections: usize,
    /// Open loop only: requests per second.
    pub rate: Option<f64>,
    /// Measured window, after the warm-up.
    pub duration: Duration,
    pub warmup: Duration,
    pub mix: Mix,
    pub timeout: Duration,
    /// Sent with every request on the clock, after `Host` and `User-Agent`
    /// (e.g. `Accept-Encoding: gzip, br`, as browsers send).
    pub headers: Vec<ExtraHeader>,
}

/// One `--header 'Name: value'`, checked when the flags are parsed so a
/// typo fails before any server is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl FromStr for ExtraHeader {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (name, value) = s
            .split_once(':')
            .with_context(|| format!("'{s}' is not a header like 'Accept-Encoding: gzip, br'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("'{}' is not a header name", name.trim()))?;
        // The generator sends the target's own; a second Host is a 400.
        if name == HOST {
            bail!("Host is set from --url");
        }
        let value = HeaderValue::from_str(value.trim()).with_context(|| format!("'{s}' has an invalid value"))?;
        Ok(Self { name, value })
    }
}

impl fmt::Display for ExtraHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, String::from_utf8_lossy(self.value.as_bytes()))
    }
}

impl Serialize for ExtraHeader {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The flags a user may give; `None` means "take the preset's (or the
/// default) value".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub preset: Option<Preset>,
    pub mode: Option<Mode>,
    pub connections: Option<usize>,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub warmup: Option<Duration>,
    pub mix: Option<Mix>,
    pub scenario: Option<Op>,
    pub headers: Vec<ExtraHeader>,
}

pub fn resolve(url: &str, store: &str, timeout: Duration, o: &Overrides) -> anyhow::Result<LoadConfig> {
    let shape = o.preset.map_or_else(default_shape, Preset::shape);
    // `--rate` alone is a request for an open loop; asking for a rate and a
    // closed loop at once is contradictory and refused below.
    let mode = o.mode.unwrap_or(if o.rate.is_some() { Mode::Open } else { shape.mode });
    let rate = match mode {
        Mode::Closed if o.rate.is_some() => bail!("--rate applies to --mode open only"),
        Mode::Closed => None,
        Mode::Open => {
            let rate = o
                .rate
                .or(shape.rate)
                .context("an open loop needs --rate R (requests per second)")?;
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of requests per second");
            }
            Some(rate)
        }
    };
    let connections = o.connections.unwrap_or(shape.connections);
    if connections == 0 {
        bail!("--connections must be at least 1");
    }
    let duration = o.duration.unwrap_or(shape.duration);
    if duration.is_zero() {
        bail!("--duration must be longer than 0");
    }
    let mix = match (&o.scenario, &o.mix) {
        (Some(op), _) => Mix::single(*op),
        (None, Some(mix)) => mix.clone(),
        (None, None) => shape.mix,
    };
    Ok(LoadConfig {
        url: url.trim_end_matches('/').to_owned(),
        store: store.to_owned(),
        mode,
        connections,
        rate,
        duration,
        warmup: o.warmup.unwrap_or(DEFAULT_WARMUP),
        mix,
        timeout,
        headers: o.headers.clone(),
    })
}

/// `KEY=VALUE` (the value may contain `=`), for flags that pass settings on.
pub fn parse_key_value(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s.split_once('=').context("expected KEY=VALUE")?;
    if k.is_empty() {
        bail!("expected KEY=VALUE");
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Parse `10s`, `500ms`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
/// Hand-rolled rather than pulling in `humantime` for four units.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("'{s}' is not a duration like 10s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1_000.0,
        "us" | "µs" => value / 1_000_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3_600.0,
        other => bail!("unknown duration unit '{other}' in '{s}' (use ms, s, m or h)"),
    };
    Duration::try_from_secs_f64(secs).with_context(|| format!("'{s}' is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn mix_parses_weights_and_round_trips() {
        let mix: Mix = "orders=20, status=30,menu=50".parse().unwrap();
        assert_eq!(mix.weight(Op::Orders), 20);
        assert_eq!(mix.weight(Op::Status), 30);
        assert_eq!(mix.weight(Op::Menu), 50);
        assert_eq!(mix.weight(Op::Live), 0);
        assert_eq!(mix.ops().collect::<Vec<_>>(), [Op::Orders, Op::Status, Op::Menu]);
        assert_eq!(mix.to_string(), "orders=20,status=30,menu=50");
        assert_eq!(mix.to_string().parse::<Mix>().unwrap(), mix);
    }

    #[test]
    fn mix_rejects_nonsense() {
        for bad in [
            "",
            "orders",
            "orders=x",
            "coffee=1",
            "orders=1,orders=2",
            "orders=0,menu=0",
            "menu=-1",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} should be rejected");
        }
        // A zero weight next to a positive one is fine: the op is just absent.
        let mix: Mix = "orders=0,live=1".parse().unwrap();
        assert_eq!(mix.ops().collect::<Vec<_>>(), [Op::Live]);
    }

    #[test]
    fn picker_maps_rolls_to_weight_ranges() {
        let picker = "orders=2,menu=3,live=1".parse::<Mix>().unwrap().picker();
        assert_eq!(picker.total(), 6);
        let picks: Vec<Op> = (0..6).map(|r| picker.pick(r)).collect();
        assert_eq!(picks, [Op::Orders, Op::Orders, Op::Menu, Op::Menu, Op::Menu, Op::Live]);
        // Every roll in range lands on an op with a share equal to its weight.
        let single = Mix::single(Op::Status).picker();
        assert_eq!(single.total(), 1);
        assert_eq!(single.pick(0), Op::Status);
    }

    #[test]
    fn presets_are_what_their_names_promise() {
        let quiet = Preset::Quiet.shape();
        assert_eq!((quiet.mode, quiet.rate), (Mode::Open, Some(50.0)));
        let rush = Preset::Rush.shape();
        assert_eq!((rush.mode, rush.connections), (Mode::Closed, 256));
        // Rush is placement-heavy: orders carry the largest weight.
        let heaviest = Op::ALL.into_iter().max_by_key(|op| rush.mix.weight(*op)).unwrap();
        assert_eq!(heaviest, Op::Orders);
    }

    #[test]
    fn flags_override_the_preset() {
        let o = Overrides {
            preset: Some(Preset::Quiet),
            rate: Some(200.0),
            scenario: Some(Op::Menu),
            duration: Some(Duration::from_secs(3)),
            ..Overrides::default()
        };
        let cfg = resolve("http://x:1/", DEFAULT_STORE, DEFAULT_TIMEOUT, &o).unwrap();
        assert_eq!(cfg.url, "http://x:1");
        assert_eq!(cfg.mode, Mode::Open);
        assert_eq!(cfg.rate, Some(200.0));
        assert_eq!(cfg.connections, 16, "from the preset");
        assert_eq!(cfg.duration, Duration::from_secs(3));
        assert_eq!(cfg.warmup, DEFAULT_WARMUP);
        assert_eq!(cfg.mix, Mix::single(Op::Menu));
    }

    #[test]
    fn rate_implies_open_loop_and_conflicts_with_closed() {
        let o = Overrides {
            rate: Some(10.0),
            ..Overrides::default()
        };
        assert_eq!(resolve("http://x", "s", DEFAULT_TIMEOUT, &o).unwrap().mode, Mode::Open);
        let o = Overrides {
            rate: Some(10.0),
            mode: Some(Mode::Closed),
            ..Overrides::default()
        };
        assert!(resolve("http://x", "s", DEFAULT_TIMEOUT, &o).is_err());
        let o = Overrides {
            mode: Some(Mode::Open),
            ..Overrides::default()
        };
        assert!(
            resolve("http://x", "s", DEFAULT_TIMEOUT, &o).is_err(),
            "open loop without a rate"
        );
        let o = Overrides {
            preset: Some(Preset::Rush),
            ..Overrides::default()
        };
        let cfg = resolve("http://x", "s", DEFAULT_TIMEOUT, &o).unwrap();
        assert_eq!((cfg.mode, cfg.rate, cfg.connections), (Mode::Closed, None, 256));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "s", "10x", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extra_headers_parse_and_print_back() {
        let h: ExtraHeader = "Accept-Encoding: gzip, br".parse().unwrap();
        assert_eq!(h.name, hyper::header::ACCEPT_ENCODING);
        assert_eq!(h.value, "gzip, br");
        assert_eq!(h.to_string(), "accept-encoding: gzip, br");
        assert_eq!(serde_json::to_value(&h).unwrap(), "accept-encoding: gzip, br");
        let h: ExtraHeader = "x-empty:".parse().unwrap();
        assert_eq!(h.value, "");
        for bad in ["no colon", ": value", "bad name: v", "Host: elsewhere", "x: a\nb"] {
            assert!(bad.parse::<ExtraHeader>().is_err(), "{bad:?}");
        }
        let o = Overrides {
            headers: vec![h.clone()],
            ..Overrides::default()
        };
        assert_eq!(resolve("http://x", "s", DEFAULT_TIMEOUT, &o).unwrap().headers, [h]);
    }
}
