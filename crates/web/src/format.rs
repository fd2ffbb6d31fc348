//! Small formatting rules the pages share: money in a store's currency,
//! URL encoding of a `next` path.
//!
//! Written here rather than pulled in: the currencies a café uses are a
//! handful, and the scripts format the same numbers in the browser with
//! `Intl.NumberFormat`, so only the server-rendered menu needs this.

/// Digits after the point of an ISO 4217 currency (ISO 4217's minor
/// units; 2 for everything not listed).
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" | "XAF" | "XOF" | "PYG" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
        _ => 2,
    }
}

/// `amount` minor units of `currency` as a person reads it: `$4.50`,
/// `€3.20`, `¥450`, `CHF 5.00`.
pub fn money(amount: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let number = if digits == 0 {
        abs.to_string()
    } else {
        let scale = 10u64.pow(digits);
        format!("{}.{:0width$}", abs / scale, abs % scale, width = digits as usize)
    };
    match currency {
        "USD" | "CAD" | "AUD" | "NZD" => format!("{sign}${number}"),
        "EUR" => format!("{sign}€{number}"),
        "GBP" => format!("{sign}£{number}"),
        "JPY" => format!("{sign}¥{number}"),
        c => format!("{sign}{c} {number}"),
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_as_people_write_it() {
        assert_eq!(money(450, "USD"), "$4.50");
        assert_eq!(money(5, "EUR"), "€0.05");
        assert_eq!(money(450, "JPY"), "¥450");
        assert_eq!(money(-50, "GBP"), "-£0.50");
        assert_eq!(money(1234, "KWD"), "KWD 1.234");
        assert_eq!(money(500, "CHF"), "CHF 5.00");
    }

    #[test]
    fn next_paths_are_encoded() {
        assert_eq!(
            url_encode("/stores/a/board?station=barista"),
            "/stores/a/board%3Fstation%3Dbarista"
        );
    }
}
