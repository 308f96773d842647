//! Typed identifiers, so an inbox id can never be passed where a route id is expected.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(value).map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A Chatwoot inbox id (positive).
    InboxId
);
id_type!(
    /// A row of `routes`.
    RouteId
);
id_type!(
    /// A row of `deliveries`; sent to GoWA as `X-Chatgowa-Delivery`.
    DeliveryId
);

/// Reads one of Chatwoot's ids written as text: ASCII digits only (no sign, no spaces), positive. The one
/// reading of an id everywhere, so that no two parts of the relay can disagree on which account or inbox a body
/// names ("+3" and " 3" are no ids).
pub fn parse_text(text: &str) -> Option<i64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    text.parse().ok().filter(|id| digits && *id > 0)
}

/// Reads one of Chatwoot's ids from JSON: a positive integer, or its digits as a string ([`parse_text`]).
pub fn parse_json(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().filter(|id| *id > 0),
        serde_json::Value::String(s) => parse_text(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_reading_of_an_id() {
        for good in [json!(3), json!("3"), json!("0042")] {
            assert!(parse_json(&good).is_some(), "{good}");
        }
        for bad in [
            json!("+3"),
            json!(" 3"),
            json!("3 "),
            json!("-3"),
            json!(-3),
            json!(0),
            json!("0"),
            json!(""),
            json!(3.5),
            json!("3.0"),
            json!(null),
            json!(true),
            json!({"id": 3}),
            json!("99999999999999999999"),
        ] {
            assert_eq!(parse_json(&bad), None, "{bad}");
        }
    }
}
