//! Addresses as sources write them: IPs with a prefix length or brackets,
//! MACs in any common notation. The same rules the host applies, so an
//! adapter can filter what the host would drop (and count as a warning)
//! before emitting it.

use std::net::IpAddr;

/// Parses one IP: trimmed, a prefix length (`10.0.0.5/24`) stripped, IPv6
/// brackets (`[2001:db8::1]`) removed. Zones (`fe80::1%eth0`) and anything
/// else that is not an address give `None`.
///
/// ```
/// use sr_adapter_sdk::addr::parse_ip;
/// assert_eq!(parse_ip(" 10.0.0.5/24 ").unwrap().to_string(), "10.0.0.5");
/// assert!(parse_ip("N/A").is_none());
/// ```
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let address = match text.split_once('/') {
        None => text,
        Some((address, prefix)) if prefix.parse::<u8>().is_ok() => address,
        Some(_) => return None,
    };
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    address.parse().ok()
}

/// Normalises a MAC to upper-case, colon-separated form. Accepts `:`, `-`,
/// `.` and whitespace separators and bare hex; refuses all-zero and
/// broadcast addresses, which identify nothing.
///
/// ```
/// use sr_adapter_sdk::addr::normalize_mac;
/// assert_eq!(normalize_mac("aabb.ccdd.eeff").as_deref(), Some("AA:BB:CC:DD:EE:FF"));
/// assert_eq!(normalize_mac("00:00:00:00:00:00"), None);
/// ```
pub fn normalize_mac(text: &str) -> Option<String> {
    // One pass into a fixed buffer: adapters call this for every MAC of
    // every device, so no intermediate strings.
    let mut hex = [0u8; 12];
    let mut count = 0;
    for byte in text.bytes() {
        match byte {
            b':' | b'-' | b'.' => {}
            b if b.is_ascii_whitespace() => {}
            b if b.is_ascii_hexdigit() => {
                if count == 12 {
                    return None;
                }
                hex[count] = b.to_ascii_uppercase();
                count += 1;
            }
            _ => return None,
        }
    }
    if count != 12 || hex == [b'0'; 12] || hex == [b'F'; 12] {
        return None;
    }
    let mut mac = String::with_capacity(17);
    for (i, pair) in hex.chunks(2).enumerate() {
        if i > 0 {
            mac.push(':');
        }
        mac.push(char::from(pair[0]));
        mac.push(char::from(pair[1]));
    }
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_lose_prefixes_and_brackets() {
        assert_eq!(parse_ip("10.0.0.5").unwrap().to_string(), "10.0.0.5");
        assert_eq!(
            parse_ip("2001:db8::1/64").unwrap().to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_ip("[2001:db8::1]").unwrap().to_string(),
            "2001:db8::1"
        );
        for bad in ["", "10.0.0.256", "10.0.0.5/abc", "fe80::1%eth0", "host"] {
            assert_eq!(parse_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn macs_in_every_notation() {
        for text in [
            "aa:bb:cc:dd:ee:ff",
            "AA-BB-CC-DD-EE-FF",
            "aabb.ccdd.eeff",
            "aabbccddeeff",
            " aa bb cc dd ee ff ",
        ] {
            assert_eq!(
                normalize_mac(text).as_deref(),
                Some("AA:BB:CC:DD:EE:FF"),
                "{text}"
            );
        }
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "zz:bb:cc:dd:ee:ff",
            "ff:ff:ff:ff:ff:ff",
            "000000000000",
        ] {
            assert_eq!(normalize_mac(bad), None, "{bad}");
        }
    }
}
