//! Money as integer minor units plus a currency code. Floats never appear in
//! prices: a latte is 450 cents, not 4.5 dollars, so sums are exact.

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
