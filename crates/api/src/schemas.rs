//! The input schemas the derive cannot say on its own, so that the
//! document states exactly what the server accepts (schemathesis fuzzes it
//! in CI and fails on any difference either way).
//!
//! Each names the parser whose rules it repeats. The contract run
//! (`scripts/schemathesis.sh`) holds them to the server both ways; the unit
//! tests below pin what a regex cannot be checked for here: the white and
//! control classes against `str::trim` and `char::is_control`, the
//! `Idempotency-Key` grammar, and every listed value against its parser.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

/// A type standing for a schema built at run time, where the derive wants
/// a type (tuple parameters, response bodies); `$name` is its component.
macro_rules! runtime_schema {
    ($(#[$doc:meta])* $ty:ident = $name:literal, $schema:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

/// A store's slug: 1 to 64 of `a-z`, `0-9` and `-` (`domain::StoreId`).
#[derive(ToSchema)]
#[schema(pattern = r"^[a-z0-9-]{1,64}$", example = "demo-downtown")]
pub struct StoreSlug(#[allow(dead_code)] String);

runtime_schema!(
    /// An `Idempotency-Key` (`crate::extract::parse_idempotency_key`): 1
    /// to 255 visible ASCII characters, not starting with the `payment:`
    /// prefix that payment callbacks claim in the same key space.
    IdempotencyKeyValue = "IdempotencyKey",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(idempotency_key_pattern()))
        .examples(["3f1c9a7e-2b4d-4c8e-9f10-5a6b7c8d9e0f"])
        .into()
);

/// "Visible ASCII, 1 to 255, not `payment:…`" without a look-ahead (not
/// every generator of test data supports one): a key either differs from
/// `payment:` at its `k`-th character, or is a proper prefix of it.
fn idempotency_key_pattern() -> String {
    const RESERVED: &str = crate::extract::RESERVED_KEY_PREFIX;
    let visible = r"[\x21-\x7e]";
    let mut alternatives = Vec::new();
    for (k, c) in RESERVED.char_indices() {
        let prefix = &RESERVED[..k];
        let (below, above) = (c as u32 - 1, c as u32 + 1);
        alternatives.push(format!(
            r"{prefix}[\x21-\x{below:02x}\x{above:02x}-\x7e]{visible}{{0,{rest}}}",
            rest = 254 - k
        ));
        if k > 0 {
            alternatives.push(prefix.to_owned());
        }
    }
    format!("^(?:{})$", alternatives.join("|"))
}

/// What `str::trim` removes: the characters with Unicode's `White_Space`.
const WHITE: &str = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Control characters (`char::is_control`, category Cc).
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// Text of 1 to `max` characters once trimmed (white space around it is
/// allowed, and trimmed), none of them in the class `forbidden` (empty:
/// any character); with `blank_ok`, nothing but white space too.
fn trimmed(max: usize, forbidden: &str, blank_ok: bool) -> String {
    // The first and last characters are neither white nor forbidden.
    let edge = format!(r"[^{forbidden}{WHITE}]");
    let inner = if forbidden.is_empty() {
        r"[\s\S]".to_owned()
    } else {
        format!("[^{forbidden}]")
    };
    let text = format!(r"{edge}(?:{inner}{{0,{n}}}{edge})?", n = max - 2);
    let text = if blank_ok { format!("(?:{text})?") } else { text };
    format!(r"^[{WHITE}]*{text}[{WHITE}]*$")
}

/// A first name for the pickup board (`domain::pickup::clean_name`).
pub fn first_name() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(string_or_null())
        .pattern(Some(trimmed(domain::pickup::MAX_NAME, CONTROL, false)))
        .examples(["Ada"])
        .description(Some(format!(
            "A first name for the pickup board: 1 to {} characters once trimmed, no control characters",
            domain::pickup::MAX_NAME
        )))
}

/// A cancel reason (`App::cancel`): at most 200 characters once trimmed;
/// blank is no reason.
pub fn cancel_reason() -> impl Into<RefOr<Schema>> {
    let max = domain::MAX_CANCEL_REASON;
    ObjectBuilder::new()
        .schema_type(string_or_null())
        .pattern(Some(trimmed(max, "", true)))
        .examples(["customer left"])
        .description(Some(format!(
            "Why (at most {max} characters once trimmed), kept with the order"
        )))
}

/// An API key's name (`identity::Identity::issue_key`): 1 to 100
/// characters once trimmed.
pub fn key_name() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed(identity::MAX_KEY_NAME, "", false)))
        .examples(["till 3"])
}

/// A username as `identity::valid_username` reads it: trimmed and
/// lower-cased, then 1 to 64 of `a-z 0-9 . _ - @`.
pub fn username() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(r"^[{WHITE}]*[A-Za-z0-9._@-]{{1,64}}[{WHITE}]*$")))
        .examples(["ada"])
}

/// A password (`identity::check_policy`): 12 to 1024 characters.
pub fn password() -> impl Into<RefOr<Schema>> {
    password_as(Type::String.into())
}

/// [`password`], or `null` (no change).
pub fn new_password() -> impl Into<RefOr<Schema>> {
    password_as(string_or_null())
}

fn password_as(ty: SchemaType) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(ty)
        .min_length(Some(identity::MIN_PASSWORD_LEN))
        .max_length(Some(identity::MAX_PASSWORD_LEN))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
}

/// A subscriber's URL (`domain::webhooks::validate`): `http(s)://` and a
/// host, no white space or control characters, at most 2048 characters.
pub fn subscriber_url() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(r"^https?://[^/?#{CONTROL}{WHITE}][^{CONTROL}{WHITE}]*$")))
        .max_length(Some(domain::webhooks::MAX_URL))
        .examples(["https://example.com/rushhour"])
}

/// The events a subscriber takes: at least one of the subscribable types.
pub fn subscriber_events() -> impl Into<RefOr<Schema>> {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(
            domain::webhooks::EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()),
        )))
        .min_items(Some(1))
        .examples([serde_json::json!(["confirmed", "ready"])])
}

/// An optional text field: a string, or `null` (the same as leaving it out).
fn string_or_null() -> SchemaType {
    SchemaType::from_iter([Type::String, Type::Null])
}

/// A filter that an empty value switches off (what an HTML form sends for
/// a field left blank).
fn or_empty(schema: impl Into<RefOr<Schema>>) -> RefOr<Schema> {
    OneOfBuilder::new().item(empty()).item(schema).into()
}

/// The empty string: a filter left blank.
fn empty() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).max_length(Some(0))
}

/// One of `values`, or empty.
fn one_of_or_empty<'a>(values: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    or_empty(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)))
}

/// `status=` of the order list: an order status, or empty.
pub fn status_filter() -> RefOr<Schema> {
    one_of_or_empty(domain::OrderStatus::ALL.iter().map(|s| s.as_str()))
}

/// What `domain::JobState::parse` reads.
const JOB_STATES: [&str; 4] = ["queued", "running", "done", "dead"];
/// What `domain::Station::parse` reads.
const STATIONS: [&str; 2] = ["barista", "kitchen"];
/// What `domain::webhooks::DeliveryState::parse` reads.
const DELIVERY_STATES: [&str; 3] = ["pending", "delivered", "dead"];
/// What `domain::jobs::BulkState::parse` reads.
const BULK_STATES: [&str; 3] = ["dead", "scheduled", "ready"];

/// `state=` of the job list: a job state, or empty.
pub fn job_state_filter() -> RefOr<Schema> {
    one_of_or_empty(JOB_STATES)
}

/// `station=` of a store's tickets: a station, or empty (both).
pub fn station_filter() -> RefOr<Schema> {
    one_of_or_empty(STATIONS)
}

/// A positive `i64` as `str::parse` reads it (an optional `+`, leading
/// zeros allowed), up to 18 digits.
const POSITIVE: &str = r"\+?0*[1-9][0-9]{0,17}";

/// `before=` of the job list: a job id, or empty.
pub fn job_cursor() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^({POSITIVE})?$")))
        .into()
}

runtime_schema!(
    /// A webhook event id as `domain::webhooks::parse_event_id` reads it:
    /// `evt_<n>` or `<n>`, `n` positive.
    EventIdValue = "EventId",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^(evt_)?{POSITIVE}$")))
        .examples(["evt_42"])
        .into()
);

runtime_schema!(
    /// A `Last-Event-ID` header (`crate::extract::parse_last_event_id`):
    /// an event id in decimal, or empty (from the start).
    LastEventIdValue = "LastEventId",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[ \t]*(\+?[0-9]{1,18})?[ \t]*$"))
        .examples(["42"])
        .into()
);

/// `before=` of the delivery log: an event id, or empty.
pub fn event_cursor() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^((evt_)?{POSITIVE})?$")))
        .into()
}

/// The `state` of a bulk job action: a state, empty or `null` (none).
pub fn bulk_state() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(string_or_null())
        .enum_values(Some(BULK_STATES.into_iter().chain([""]).map(Some).chain([None])))
        .into()
}

/// `state=` of the delivery log: a delivery state, or empty.
pub fn delivery_state_filter() -> RefOr<Schema> {
    one_of_or_empty(DELIVERY_STATES)
}

/// `cursor=` of the order list: an order id, or empty.
pub fn order_cursor() -> RefOr<Schema> {
    or_empty(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
    )
}

/// One event of a Server-Sent Events stream, as OpenAPI 3.1 describes a
/// `text/event-stream` body: the `data:` is JSON of `data` (a component),
/// `event:` one of `events`, `id:` the event id to resume after. An event
/// may carry only an `id:` (a board's "you are here").
fn sse_event(events: &[&str], data: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(events.iter().copied())),
        )
        .property(
            "id",
            ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]+$")),
        )
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .content_schema(Some(utoipa::openapi::Ref::from_schema_name(data))),
        )
        .into()
}

runtime_schema!(
    /// An event of an order's or a board's stream.
    LiveEventStream = "LiveEventStreamEvent",
    sse_event(&["status", "ticket"], "LiveEventDto")
);

runtime_schema!(
    /// An event of the pickup board's stream.
    PickupEventStream = "PickupStreamEvent",
    sse_event(&["pickup"], "PickupEntry")
);

/// `date=` of a store's figures: a calendar date, or empty (today).
pub fn date_filter() -> RefOr<Schema> {
    or_empty(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))),
    )
}

/// `since=` of the order list: RFC 3339 (`crate::orders::parse_instant`)
/// or epoch milliseconds, or empty.
pub fn instant_filter() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(empty())
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[+-]?[0-9]{1,18}$"))
                .description(Some("Epoch milliseconds")),
        )
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_value_parses_and_nothing_near_it_does() {
        use domain::jobs::BulkState;
        use domain::webhooks::DeliveryState;
        assert!(JOB_STATES.iter().all(|s| domain::JobState::parse(s).is_some()));
        assert!(STATIONS.iter().all(|s| domain::Station::parse(s).is_some()));
        assert!(DELIVERY_STATES.iter().all(|s| DeliveryState::parse(s).is_some()));
        assert!(BULK_STATES.iter().all(|s| BulkState::parse(s).is_some()));
        for s in ["Queued", "queue", "", "Barista", "deleted"] {
            assert!(domain::JobState::parse(s).is_none(), "{s}");
            assert!(domain::Station::parse(s).is_none(), "{s}");
            assert!(DeliveryState::parse(s).is_none(), "{s}");
            assert!(BulkState::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn the_idempotency_key_pattern_spells_out_the_reserved_prefix() {
        let p = idempotency_key_pattern();
        // `p` is 0x70: any first character but `p`, or `p` and then any but `a`, …
        assert!(
            p.starts_with(r"^(?:[\x21-\x6f\x71-\x7e][\x21-\x7e]{0,254}|p[\x21-\x60\x62-\x7e]"),
            "{p}"
        );
        assert!(
            p.contains("|p|") && p.ends_with("|payment)$"),
            "the reserved prefix cut short is a key: {p}"
        );
        assert!(p.contains(r"payment[\x21-\x39\x3b-\x7e][\x21-\x7e]{0,247}"), "{p}");
        assert!(!p.contains("|payment:"), "{p}");
    }

    /// The name pattern accepts exactly what `clean_name` accepts, on the
    /// edges a fuzzer finds first. The pattern is checked by hand-written
    /// cases, not a regex engine: the crate has none, and this test must
    /// not need one to say what the pattern means.
    #[test]
    fn the_name_pattern_states_clean_names_rules() {
        let p = trimmed(24, CONTROL, false);
        assert!(p.starts_with('^') && p.ends_with('$'));
        assert!(p.contains("{0,22}"), "{p}");
        // Every character `str::trim` removes is in the white class.
        for c in (0..=0x3000u32).filter_map(char::from_u32).filter(|c| c.is_whitespace()) {
            let trimmed = format!("{c}a{c}").trim().to_owned();
            assert_eq!(trimmed, "a", "{c:?} is white space to trim");
            assert!(in_class(WHITE, c), "{c:?} must be in the white class");
        }
        for c in (0..=0x3000u32)
            .filter_map(char::from_u32)
            .filter(|c| !c.is_whitespace())
        {
            assert!(!in_class(WHITE, c), "{c:?} is not white space");
        }
        for c in (0..=0x3000u32).filter_map(char::from_u32) {
            assert_eq!(in_class(CONTROL, c), c.is_control(), "{c:?}");
        }
    }

    /// Whether `c` is in a class written as this module writes them:
    /// `\xNN`, `\uNNNN`, `\t`-style escapes, literal characters and ranges.
    fn in_class(class: &str, c: char) -> bool {
        let mut chars = Vec::new();
        let mut it = class.chars().peekable();
        while let Some(ch) = it.next() {
            let one = if ch == '\\' {
                match it.next() {
                    Some('t') => '\t',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some(k @ ('x' | 'u')) => {
                        let n = if k == 'x' { 2 } else { 4 };
                        let hex: String = (0..n).filter_map(|_| it.next()).collect();
                        char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap()
                    }
                    other => panic!("unexpected escape {other:?}"),
                }
            } else {
                ch
            };
            chars.push(one);
        }
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                if (chars[i]..=chars[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if chars[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    }
}
