//! Money as integer minor units plus a currency code. Floats never appear in
//! prices: a latte is 450 cents, not 4.5 dollars, so sums are exact.
//!
//! Prices come from outside (the upstream catalog, a seed file), so sums
//! of them are checked rather than trusted: `MAX_PRICE` bounds what a menu
//! may hold (checked at sync, `check_price`/`check_delta`), and `Total`
//! adds up an order in a type wide enough that its bounded lines cannot
//! overflow it, refusing a result below zero or above `MAX_TOTAL` instead
//! of wrapping (release builds) or panicking (debug builds).

use serde::{Deserialize, Serialize};

/// An amount in minor units (cents, pence) of `currency` (ISO 4217 code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    pub fn new(amount: i64, currency: impl Into<String>) -> Self {
        Self {
            amount,
            currency: currency.into(),
        }
    }
}

/// The largest price a menu may hold, and the largest modifier delta either
/// way, in minor units: 1,000,000.00 in a two-decimal currency. Far above
/// anything a café sells; a value beyond it is an upstream fault (a price
/// in the wrong unit, a corrupt record), not a menu.
pub const MAX_PRICE: i64 = 100_000_000;

/// The largest total (and line, and unit price) an order may have: the
/// largest integer every JSON client reads exactly (2^53 - 1), so a total
/// means the same in a browser as here.
pub const MAX_TOTAL: i64 = (1 << 53) - 1;

/// Why a price from outside is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPrice {
    #[error("price {0} is negative")]
    Negative(i64),
    #[error("{0} is beyond the largest accepted ({max} minor units either way)", max = MAX_PRICE)]
    Absurd(i64),
}

/// A size's price: `0..=MAX_PRICE` (free items exist; negative ones do not).
pub fn check_price(price: i64) -> Result<(), InvalidPrice> {
    match price {
        p if p < 0 => Err(InvalidPrice::Negative(p)),
        p if p > MAX_PRICE => Err(InvalidPrice::Absurd(p)),
        _ => Ok(()),
    }
}

/// A modifier's delta: `-MAX_PRICE..=MAX_PRICE` (a discount is a modifier
/// too; whether a unit price ends up negative is `Total`'s to refuse).
pub fn check_delta(delta: i64) -> Result<(), InvalidPrice> {
    if delta.unsigned_abs() > MAX_PRICE.unsigned_abs() {
        Err(InvalidPrice::Absurd(delta))
    } else {
        Ok(())
    }
}

/// Why an order's amounts cannot be charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotalError {
    #[error("would be negative")]
    Negative,
    #[error("would exceed {max} minor units", max = MAX_TOTAL)]
    TooLarge,
}

/// An amount being added up exactly: `i128`, which sums and products of
/// `i64` prices by the bounded counts of an order (lines, modifiers,
/// quantity) cannot overflow; every step is checked all the same, so a
/// caller that forgot a bound gets an error, never a wrapped number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Total(i128);

impl Total {
    pub fn of(amount: i64) -> Self {
        Self(amount.into())
    }

    pub fn plus(self, amount: i64) -> Result<Self, TotalError> {
        self.0.checked_add(amount.into()).map(Self).ok_or(TotalError::TooLarge)
    }

    pub fn times(self, n: i64) -> Result<Self, TotalError> {
        self.0.checked_mul(n.into()).map(Self).ok_or(TotalError::TooLarge)
    }

    /// The amount, if it is one an order may carry: `0..=MAX_TOTAL`.
    pub fn amount(self) -> Result<i64, TotalError> {
        if self.0 < 0 {
            Err(TotalError::Negative)
        } else if self.0 > i128::from(MAX_TOTAL) {
            Err(TotalError::TooLarge)
        } else {
            Ok(self.0 as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_deltas_are_bounded() {
        assert_eq!(check_price(0), Ok(()));
        assert_eq!(check_price(MAX_PRICE), Ok(()));
        assert_eq!(check_price(-1), Err(InvalidPrice::Negative(-1)));
        assert_eq!(check_price(MAX_PRICE + 1), Err(InvalidPrice::Absurd(MAX_PRICE + 1)));
        assert_eq!(check_price(i64::MAX), Err(InvalidPrice::Absurd(i64::MAX)));
        assert_eq!(check_delta(-MAX_PRICE), Ok(()));
        assert_eq!(check_delta(-60), Ok(()));
        assert_eq!(check_delta(i64::MIN), Err(InvalidPrice::Absurd(i64::MIN)));
        assert_eq!(check_delta(MAX_PRICE + 1), Err(InvalidPrice::Absurd(MAX_PRICE + 1)));
    }

    #[test]
    fn totals_never_wrap() {
        let t = Total::of(i64::MAX).plus(i64::MAX).unwrap().times(20).unwrap();
        assert_eq!(t.amount(), Err(TotalError::TooLarge));
        assert_eq!(Total::of(100).plus(-101).unwrap().amount(), Err(TotalError::Negative));
        assert_eq!(Total::of(MAX_TOTAL).amount(), Ok(MAX_TOTAL));
        assert_eq!(
            Total::of(MAX_TOTAL).plus(1).unwrap().amount(),
            Err(TotalError::TooLarge)
        );
        assert_eq!(Total::of(420).plus(90).unwrap().times(2).unwrap().amount(), Ok(1020));
        assert_eq!(
            Total::of(i64::MIN).times(i64::MIN).unwrap().amount(),
            Err(TotalError::TooLarge)
        );
    }
}
