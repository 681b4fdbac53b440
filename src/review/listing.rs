//! The listing context a lookup may carry: where the photo was seen.

use serde::{Deserialize, Serialize};

use super::ReviewError;

/// Where a photo was seen: the marketplace listing it came from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marketplace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// The longest context field, in characters (a URL may take 2048).
pub const MAX_CONTEXT_CHARS: usize = 500;

impl ListingContext {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == ListingContext::default()
    }

    /// Checks every field: printable text of bounded length, a finite non-negative price, a 3-letter currency.
    pub fn check(&self) -> Result<(), ReviewError> {
        let fields = [
            ("listing_id", &self.listing_id, MAX_CONTEXT_CHARS),
            ("seller_id", &self.seller_id, MAX_CONTEXT_CHARS),
            ("marketplace", &self.marketplace, MAX_CONTEXT_CHARS),
            ("listing_url", &self.listing_url, 2048),
            ("title", &self.title, MAX_CONTEXT_CHARS),
            ("currency", &self.currency, 3),
        ];
        for (field, value, max) in fields {
            let Some(v) = value else { continue };
            if v.chars().count() > max || v.chars().any(char::is_control) {
                let detail = format!("at most {max} printable characters");
                return Err(ReviewError::Invalid { field, detail });
            }
        }
        if let Some(p) = self.price {
            if !p.is_finite() || p < 0.0 {
                return Err(ReviewError::Invalid { field: "price", detail: "a number of at least 0".into() });
            }
        }
        if self.currency.as_deref().is_some_and(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_alphabetic())) {
            return Err(ReviewError::Invalid { field: "currency", detail: "a three-letter code such as EUR".into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_context_is_checked() {
        let ok = ListingContext { price: Some(12.5), currency: Some("EUR".into()), ..Default::default() };
        assert!(ok.check().is_ok());
        for bad in [
            ListingContext { price: Some(-1.0), ..Default::default() },
            ListingContext { currency: Some("EURO".into()), ..Default::default() },
            ListingContext { title: Some("a\nb".into()), ..Default::default() },
            ListingContext { seller_id: Some("x".repeat(501)), ..Default::default() },
        ] {
            assert!(matches!(bad.check(), Err(ReviewError::Invalid { .. })), "{bad:?}");
        }
    }
}
