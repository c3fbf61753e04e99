//! Ports and sweep modes as they appear in source data and settings: a JSON
//! array (`[22, "80"]`), a JSON array in a string (`"[22,80]"`), a
//! comma-, semicolon- or space-separated string (`"22, 80 443"`) or a
//! single number. Items that are not valid are returned separately so the
//! caller can count or report them.

use serde_json::Value;

use super::document::SweepMode;

/// Values that parsed, and the text of the items that did not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed<T> {
    /// Valid values, in input order (duplicates kept).
    pub values: Vec<T>,
    /// Items that were not valid, as text.
    pub rejected: Vec<String>,
}

/// TCP ports (1–65535).
pub fn ports(value: &Value) -> Parsed<u16> {
    parse_items(value, |item| match item {
        Item::Number(n) => n.as_u64().and_then(valid_port),
        Item::Text(t) => t.parse::<u64>().ok().and_then(valid_port),
    })
}

/// Sweep modes; unknown names are rejected.
pub fn modes(value: &Value) -> Parsed<SweepMode> {
    parse_items(value, |item| match item {
        Item::Number(_) => None,
        Item::Text(t) => SweepMode::parse(t),
    })
}

fn valid_port(n: u64) -> Option<u16> {
    u16::try_from(n).ok().filter(|&p| p != 0)
}

enum Item<'a> {
    Number(&'a serde_json::Number),
    Text(&'a str),
}

fn parse_items<T>(value: &Value, parse: impl Fn(Item<'_>) -> Option<T>) -> Parsed<T> {
    let mut parsed = Parsed {
        values: Vec::new(),
        rejected: Vec::new(),
    };
    let mut one = |item: Item<'_>, text: String| match parse(item) {
        Some(v) => parsed.values.push(v),
        None => parsed.rejected.push(text),
    };
    match value {
        Value::Null => {}
        Value::Number(n) => one(Item::Number(n), n.to_string()),
        Value::String(s) => {
            let trimmed = s.trim();
            if trimmed.starts_with('[') {
                match serde_json::from_str::<Value>(trimmed) {
                    Ok(Value::Array(items)) => {
                        for item in &items {
                            array_item(item, &mut one);
                        }
                    }
                    _ => one(Item::Text(""), trimmed.to_string()),
                }
            } else {
                for part in trimmed
                    .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
                    .filter(|p| !p.is_empty())
                {
                    one(Item::Text(part), part.to_string());
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                array_item(item, &mut one);
            }
        }
        other => one(Item::Text(""), other.to_string()),
    }
    parsed
}

fn array_item(item: &Value, one: &mut impl FnMut(Item<'_>, String)) {
    match item {
        Value::Number(n) => one(Item::Number(n), n.to_string()),
        Value::String(s) => one(Item::Text(s.trim()), s.clone()),
        other => one(Item::Text(""), other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ports_in_every_form() {
        assert_eq!(ports(&json!("22,80, 443")).values, vec![22, 80, 443]);
        assert_eq!(ports(&json!("22 80;443")).values, vec![22, 80, 443]);
        assert_eq!(ports(&json!("[22, \"80\"]")).values, vec![22, 80]);
        assert_eq!(ports(&json!([22, "443"])).values, vec![22, 443]);
        assert_eq!(ports(&json!(8080)).values, vec![8080]);
        assert_eq!(ports(&json!(null)), Parsed::default());
        assert_eq!(ports(&json!("")), Parsed::default());
    }

    #[test]
    fn bad_ports_are_rejected_individually() {
        let parsed = ports(&json!("0,22,65536,http,-1,65535"));
        assert_eq!(parsed.values, vec![22, 65535]);
        assert_eq!(parsed.rejected, vec!["0", "65536", "http", "-1"]);
        let parsed = ports(&json!([1.5, 70000, true, 443]));
        assert_eq!(parsed.values, vec![443]);
        assert_eq!(parsed.rejected.len(), 3);
        let parsed = ports(&json!("[22,"));
        assert!(parsed.values.is_empty());
        assert_eq!(parsed.rejected, vec!["[22,"]);
        assert_eq!(ports(&json!({"a": 1})).rejected.len(), 1);
    }

    #[test]
    fn modes_known_and_unknown() {
        let parsed = modes(&json!("icmp, TCP,udp"));
        assert_eq!(parsed.values, vec![SweepMode::Icmp, SweepMode::Tcp]);
        assert_eq!(parsed.rejected, vec!["udp"]);
        let parsed = modes(&json!(["tcp_connect", 3]));
        assert_eq!(parsed.values, vec![SweepMode::TcpConnect]);
        assert_eq!(parsed.rejected, vec!["3"]);
    }
}
