//! The Armis v1 REST API's answers, as far as the adapter reads them.
//! Lenient where Armis is: ids as numbers or strings, `next` as null, 0 or
//! an offset, IP and MAC fields as text or lists, optional objects as null.
//!
//! Device fields borrow from the page body (`Cow`): a page of thousands of
//! devices is read without copying every string twice.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `POST /api/v1/access_token/` → `{"data": {...}, "success": true}`.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The token.
    pub data: TokenData,
}

/// The token and its expiry.
#[derive(Debug, Deserialize)]
pub struct TokenData {
    /// Sent as the raw `Authorization` header value.
    pub access_token: String,
    /// ISO 8601 with offset; absent or unreadable means "until a 401".
    #[serde(default)]
    pub expiration_utc: Option<String>,
}

/// `GET /api/v1/search/` → `{"data": {...}, "success": true}`.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub struct SearchResponse<T> {
    /// One page.
    pub data: SearchData<T>,
}

/// One page of a device search.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub struct SearchData<T> {
    /// Offset of the next page; `None` on the last page (Armis sends
    /// `null`; some emulators send 0, read as `None` too).
    #[serde(default, deserialize_with = "next_offset")]
    pub next: Option<u64>,
    /// The devices of this page: [`ArmisDevice`]s, or JSON values when
    /// the raw records are kept.
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub results: Vec<T>,
}

/// Text fields, borrowed from the page where possible.
pub type Text<'a> = Option<Cow<'a, str>>;

/// A device as Armis returns it (the fields the adapter maps).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmisDevice<'a> {
    /// Armis device id.
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    /// Device name (the host name).
    #[serde(default, borrow)]
    pub name: Text<'a>,
    /// IPv4 address(es), comma-separated.
    #[serde(default, borrow)]
    pub ip_address: Texts<'a>,
    /// IPv6 address(es).
    #[serde(default, borrow)]
    pub ipv6: Texts<'a>,
    /// MAC address(es), separated by `,` `;` space or newline.
    #[serde(default, borrow)]
    pub mac_address: Texts<'a>,
    /// Device type (`Switch`, `Laptop`, ...).
    #[serde(default, borrow, rename = "type")]
    pub device_type: Text<'a>,
    /// Category (`Network Equipment`, ...).
    #[serde(default, borrow)]
    pub category: Text<'a>,
    /// Manufacturer.
    #[serde(default, borrow)]
    pub manufacturer: Text<'a>,
    /// Model.
    #[serde(default, borrow)]
    pub model: Text<'a>,
    /// Operating system.
    #[serde(default, borrow)]
    pub operating_system: Text<'a>,
    /// Operating system version.
    #[serde(default, borrow)]
    pub operating_system_version: Text<'a>,
    /// Serial number.
    #[serde(default, borrow)]
    pub serial_number: Text<'a>,
    /// Risk level, a number (sometimes sent as text).
    #[serde(default, borrow)]
    pub risk_level: Texts<'a>,
    /// Network boundaries, text or a list.
    #[serde(default, borrow)]
    pub boundaries: Texts<'a>,
    /// Tags.
    #[serde(default, borrow)]
    pub tags: Texts<'a>,
    /// Site.
    #[serde(default, borrow)]
    pub site: Option<Site<'a>>,
    /// First seen, ISO 8601.
    #[serde(default, borrow)]
    pub first_seen: Text<'a>,
    /// Last seen, ISO 8601.
    #[serde(default, borrow)]
    pub last_seen: Text<'a>,
}

/// Null, a scalar, or a list of scalars (nulls skipped), as texts; numbers
/// and booleans in their JSON form. No allocation for the usual single
/// value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Texts<'a> {
    /// Null or absent.
    #[default]
    Empty,
    /// One value.
    One(Cow<'a, str>),
    /// A list.
    Many(Vec<Cow<'a, str>>),
}

impl<'a> Texts<'a> {
    /// The values, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&str>, &[Cow<'a, str>]) = match self {
            Texts::Empty => (None, &[]),
            Texts::One(v) => (Some(v.as_ref()), &[]),
            Texts::Many(list) => (None, list.as_slice()),
        };
        one.into_iter().chain(many.iter().map(AsRef::as_ref))
    }

    /// The first value, if any.
    pub fn first(&self) -> Option<&str> {
        self.iter().next()
    }
}

/// A device's site: an object (`{"name", "location"}`) or just a name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Site<'a> {
    /// Site name.
    pub name: Text<'a>,
    /// Site location.
    pub location: Text<'a>,
}

/// One scalar as text, borrowed when the JSON string has no escapes.
struct Scalar<'a>(Cow<'a, str>);

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar(Cow::Owned(v.to_string())))
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Texts<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextsVisitor;
        impl<'de> Visitor<'de> for TextsVisitor {
            type Value = Texts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null, a scalar or a list of scalars")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Texts<'de>, E> {
                Ok(Texts::Empty)
            }
            fn visit_none<E: de::Error>(self) -> Result<Texts<'de>, E> {
                Ok(Texts::Empty)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Texts<'de>, D::Error> {
                d.deserialize_any(TextsVisitor)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Texts<'de>, E> {
                ScalarVisitor.visit_borrowed_str(v).map(|s| Texts::One(s.0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Texts<'de>, E> {
                ScalarVisitor.visit_str(v).map(|s| Texts::One(s.0))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Texts<'de>, E> {
                Ok(Texts::One(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Texts<'de>, E> {
                ScalarVisitor.visit_u64(v).map(|s| Texts::One(s.0))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Texts<'de>, E> {
                ScalarVisitor.visit_i64(v).map(|s| Texts::One(s.0))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Texts<'de>, E> {
                ScalarVisitor.visit_f64(v).map(|s| Texts::One(s.0))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Texts<'de>, E> {
                ScalarVisitor.visit_bool(v).map(|s| Texts::One(s.0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Option<Scalar<'de>>>()? {
                    out.extend(item.map(|s| s.0));
                }
                Ok(Texts::Many(out))
            }
        }
        deserializer.deserialize_any(TextsVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Site<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SiteVisitor;
        impl<'de> Visitor<'de> for SiteVisitor {
            type Value = Site<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a site object or name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Site<'de>, E> {
                Ok(Site {
                    name: Some(Cow::Borrowed(v)),
                    location: None,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Site<'de>, E> {
                Ok(Site {
                    name: Some(Cow::Owned(v.to_string())),
                    location: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Site<'de>, A::Error> {
                let mut site = Site::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "name" => site.name = map.next_value::<Option<Scalar<'de>>>()?.map(|s| s.0),
                        "location" => {
                            site.location = map.next_value::<Option<Scalar<'de>>>()?.map(|s| s.0)
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(site)
            }
        }
        deserializer.deserialize_any(SiteVisitor)
    }
}

fn id_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Scalar::deserialize(deserializer)?.0.into_owned())
}

fn next_offset<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let text = Option::<Scalar<'de>>::deserialize(deserializer)?;
    Ok(text
        .and_then(|t| t.0.trim().parse::<u64>().ok())
        .filter(|&n| n > 0))
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_none_for_null_zero_or_absent() {
        for (json, next) in [
            (r#"{"next": null, "results": []}"#, None),
            (r#"{"next": 0, "results": []}"#, None),
            (r#"{"results": []}"#, None),
            (r#"{"next": 2000, "results": []}"#, Some(2000)),
            (r#"{"next": "3000", "results": null}"#, Some(3000)),
        ] {
            let data: SearchData<ArmisDevice> = serde_json::from_str(json).unwrap();
            assert_eq!(data.next, next, "{json}");
        }
    }

    #[test]
    fn devices_read_leniently() {
        let json = serde_json::json!({
            "id": 17, "name": "sw-1", "ipAddress": "10.0.0.1, 10.0.0.2", "ipv6": null,
            "macAddress": ["aa:bb:cc:dd:ee:ff", null], "riskLevel": 45, "tags": null,
            "site": {"name": "Berlin", "location": "DE", "id": 3}, "boundaries": "Corporate",
            "type": "Switch", "unknownField": {"x": 1}
        })
        .to_string();
        let d: ArmisDevice = serde_json::from_str(&json).unwrap();
        assert_eq!(d.id, "17");
        assert_eq!(
            d.ip_address.iter().collect::<Vec<_>>(),
            ["10.0.0.1, 10.0.0.2"]
        );
        assert!(
            matches!(d.ip_address, Texts::One(Cow::Borrowed(_))),
            "borrowed"
        );
        assert_eq!(d.ipv6, Texts::Empty);
        assert_eq!(d.tags, Texts::Empty);
        assert_eq!(
            d.mac_address.iter().collect::<Vec<_>>(),
            ["aa:bb:cc:dd:ee:ff"]
        );
        assert_eq!(d.risk_level.first(), Some("45"));
        assert_eq!(d.site.unwrap().name.as_deref(), Some("Berlin"));
        assert_eq!(d.boundaries.first(), Some("Corporate"));
        assert_eq!(d.device_type.as_deref(), Some("Switch"));

        let json = r#"{"id": "abc", "site": "Lisbon", "name": "esc\"aped"}"#;
        let d: ArmisDevice = serde_json::from_str(json).unwrap();
        assert_eq!(d.id, "abc");
        assert_eq!(d.name.as_deref(), Some("esc\"aped"));
        assert_eq!(d.site.unwrap().name.as_deref(), Some("Lisbon"));
        assert!(serde_json::from_str::<ArmisDevice>(r#"{"name": "x"}"#).is_err());
        // A device read from a JSON value (raw records kept) borrows from it.
        let value: serde_json::Value =
            serde_json::from_str(r#"{"id": 5, "ipAddress": "10.0.0.5"}"#).unwrap();
        let d = ArmisDevice::deserialize(&value).unwrap();
        assert_eq!(d.ip_address.first(), Some("10.0.0.5"));
    }
}
