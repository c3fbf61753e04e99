//! Egress policy: which hosts a run may reach and which resolved addresses
//! are off limits. Pure decisions, no I/O.
//!
//! A request is allowed when its host matches an allowed pattern AND every
//! address it connects to passes the address check. The address check runs
//! on the resolved addresses (and the host connects to exactly the address it
//! checked), so a hostname that resolves to a loopback, link-local or cloud
//! metadata address is refused even when the name itself is allowed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};

/// A host pattern: an exact name or IP literal, or `*.example.com` for any
/// sub-domain of `example.com` (not `example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// Builds a pattern from text; case-insensitive, a trailing dot ignored.
    pub fn new(text: &str) -> Self {
        Self(normalize_host(text))
    }

    /// Whether `host` (a normalised host name or IP literal) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self.0.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => self.0 == host,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-cases a host, strips a trailing dot and IPv6 brackets.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.to_ascii_lowercase()
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Cloud instance-metadata endpoints (169.254.169.254, fd00:ec2::254,
    /// 100.100.100.200, ...).
    Metadata,
    /// 0.0.0.0/8, ::, multicast, broadcast: never a valid destination.
    Unroutable,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
            Self::Metadata => "cloud metadata",
            Self::Unroutable => "unroutable",
        })
    }
}

/// Cloud metadata endpoints, denied unless explicitly allowed.
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, ...
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)];

/// Classifies an address that needs explicit permission, or `None` for an
/// ordinary destination (public or private-network unicast).
pub fn classify_address(ip: IpAddr) -> Option<AddressClass> {
    // IPv4-mapped and IPv4-compatible IPv6 forms are judged as IPv4, so
    // `::ffff:127.0.0.1` cannot slip past the loopback check.
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            if METADATA_V4.contains(&v4) {
                Some(AddressClass::Metadata)
            } else if v4.is_loopback() {
                Some(AddressClass::Loopback)
            } else if v4.is_link_local() {
                Some(AddressClass::LinkLocal)
            } else if v4.is_unspecified()
                || v4.octets()[0] == 0
                || v4.is_multicast()
                || v4.is_broadcast()
            {
                Some(AddressClass::Unroutable)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let link_local: Ipv6Net = "fe80::/10".parse().ok()?;
            if METADATA_V6.contains(&v6) {
                Some(AddressClass::Metadata)
            } else if v6.is_loopback() {
                Some(AddressClass::Loopback)
            } else if link_local.contains(&v6) {
                Some(AddressClass::LinkLocal)
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some(AddressClass::Unroutable)
            } else {
                None
            }
        }
    }
}

/// What the operator permits beyond ordinary destinations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPermissions {
    /// Allow loopback destinations (local development, mock servers).
    pub allow_loopback: bool,
    /// Allow link-local destinations (never metadata ones: see below).
    pub allow_link_local: bool,
    /// Allow cloud metadata endpoints. Almost never what you want.
    pub allow_metadata: bool,
    /// Networks refused even though they are ordinary (operator blocklist).
    pub deny_networks: Vec<IpNet>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The scheme is not http or https.
    Scheme(String),
    /// The host is not in the run's allowlist.
    HostNotAllowed {
        /// The requested host.
        host: String,
    },
    /// The host resolved only to addresses the policy refuses.
    Address {
        /// The requested host.
        host: String,
        /// The refused address.
        ip: IpAddr,
        /// Why it is refused.
        reason: String,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(s) => write!(f, "scheme {s:?} is not allowed (only http and https)"),
            Self::HostNotAllowed { host } => write!(
                f,
                "host {host} is not allowed for this run (allowed: the integration endpoint and operator-approved adapter hosts)"
            ),
            Self::Address { host, ip, reason } => {
                write!(f, "host {host} resolves to {ip}, which is {reason}")
            }
        }
    }
}

/// The egress policy of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed: Vec<HostPattern>,
    permissions: AddressPermissions,
}

impl EgressPolicy {
    /// A policy that refuses everything (describe, generators).
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// A policy allowing `hosts`, with the given address permissions.
    pub fn new(
        hosts: impl IntoIterator<Item = HostPattern>,
        permissions: AddressPermissions,
    ) -> Self {
        let mut allowed: Vec<HostPattern> = hosts.into_iter().collect();
        allowed.dedup();
        Self {
            allowed,
            permissions,
        }
    }

    /// The allowed host patterns.
    pub fn allowed_hosts(&self) -> &[HostPattern] {
        &self.allowed
    }

    /// The address permissions.
    pub fn permissions(&self) -> &AddressPermissions {
        &self.permissions
    }

    /// Checks the scheme and host of a request before any resolution.
    pub fn check_host(&self, scheme: &str, host: &str) -> Result<(), Denial> {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(Denial::Scheme(scheme.to_string()));
        }
        let host = normalize_host(host);
        if self.allowed.iter().any(|p| p.matches(&host)) {
            Ok(())
        } else {
            Err(Denial::HostNotAllowed { host })
        }
    }

    /// Checks one resolved address of an allowed host.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), Denial> {
        let deny = |reason: String| Denial::Address {
            host: normalize_host(host),
            ip,
            reason,
        };
        if let Some(net) = self
            .permissions
            .deny_networks
            .iter()
            .find(|n| n.contains(&ip))
        {
            return Err(deny(format!("inside the operator's denied network {net}")));
        }
        let permitted = match classify_address(ip) {
            None => true,
            Some(AddressClass::Loopback) => self.permissions.allow_loopback,
            Some(AddressClass::LinkLocal) => self.permissions.allow_link_local,
            Some(AddressClass::Metadata) => self.permissions.allow_metadata,
            Some(AddressClass::Unroutable) => false,
        };
        match (permitted, classify_address(ip)) {
            (true, _) | (false, None) => Ok(()),
            (false, Some(class)) => Err(deny(format!(
                "a {class} address; refused unless the operator allows {class} egress"
            ))),
        }
    }
}

/// The host part of an endpoint URL (`https://x.armis.com:443/api` →
/// `x.armis.com`), or `None` when the text is not an absolute http(s) URL.
pub fn endpoint_host(endpoint: &str) -> Option<String> {
    let uri: http::Uri = endpoint.trim().parse().ok()?;
    match uri.scheme_str() {
        Some("http") | Some("https") => uri.host().map(normalize_host),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_match_exact_and_subdomains_only() {
        let exact = HostPattern::new("Acme.Armis.com.");
        assert!(exact.matches("acme.armis.com"));
        assert!(!exact.matches("evil-acme.armis.com"));
        let wild = HostPattern::new("*.armis.com");
        assert!(wild.matches("acme.armis.com"));
        assert!(wild.matches("a.b.armis.com"));
        assert!(!wild.matches("armis.com"));
        assert!(!wild.matches("evilarmis.com"));
    }

    #[test]
    fn classifies_dangerous_addresses() {
        assert_eq!(
            classify_address(ip("127.0.0.1")),
            Some(AddressClass::Loopback)
        );
        assert_eq!(classify_address(ip("::1")), Some(AddressClass::Loopback));
        assert_eq!(
            classify_address(ip("::ffff:127.0.0.1")),
            Some(AddressClass::Loopback)
        );
        assert_eq!(
            classify_address(ip("169.254.169.254")),
            Some(AddressClass::Metadata)
        );
        assert_eq!(
            classify_address(ip("::ffff:169.254.169.254")),
            Some(AddressClass::Metadata)
        );
        assert_eq!(
            classify_address(ip("fd00:ec2::254")),
            Some(AddressClass::Metadata)
        );
        assert_eq!(
            classify_address(ip("100.100.100.200")),
            Some(AddressClass::Metadata)
        );
        assert_eq!(
            classify_address(ip("169.254.1.1")),
            Some(AddressClass::LinkLocal)
        );
        assert_eq!(
            classify_address(ip("fe80::1")),
            Some(AddressClass::LinkLocal)
        );
        assert_eq!(
            classify_address(ip("0.0.0.0")),
            Some(AddressClass::Unroutable)
        );
        assert_eq!(
            classify_address(ip("224.0.0.1")),
            Some(AddressClass::Unroutable)
        );
        assert_eq!(classify_address(ip("10.1.2.3")), None);
        assert_eq!(classify_address(ip("192.168.1.1")), None);
        assert_eq!(classify_address(ip("8.8.8.8")), None);
        assert_eq!(classify_address(ip("2001:db8::1")), None);
    }

    #[test]
    fn host_check_refuses_unlisted_hosts_and_bad_schemes() {
        let policy = EgressPolicy::new(
            [HostPattern::new("acme.armis.com")],
            AddressPermissions::default(),
        );
        assert!(policy.check_host("https", "ACME.armis.com").is_ok());
        assert_eq!(
            policy.check_host("https", "evil.com"),
            Err(Denial::HostNotAllowed {
                host: "evil.com".into()
            })
        );
        assert!(matches!(
            policy.check_host("ftp", "acme.armis.com"),
            Err(Denial::Scheme(_))
        ));
        assert!(
            EgressPolicy::deny_all()
                .check_host("https", "acme.armis.com")
                .is_err()
        );
    }

    #[test]
    fn address_check_needs_explicit_permission() {
        let strict = EgressPolicy::new([], AddressPermissions::default());
        assert!(strict.check_address("x", ip("127.0.0.1")).is_err());
        assert!(strict.check_address("x", ip("169.254.169.254")).is_err());
        assert!(strict.check_address("x", ip("10.0.0.5")).is_ok());

        let loopback = EgressPolicy::new(
            [],
            AddressPermissions {
                allow_loopback: true,
                ..Default::default()
            },
        );
        assert!(loopback.check_address("x", ip("127.0.0.1")).is_ok());
        // Loopback permission does not open metadata endpoints.
        assert!(loopback.check_address("x", ip("169.254.169.254")).is_err());

        let blocked = EgressPolicy::new(
            [],
            AddressPermissions {
                deny_networks: vec!["10.0.0.0/8".parse().unwrap()],
                ..Default::default()
            },
        );
        let err = blocked
            .check_address("nb.local", ip("10.9.9.9"))
            .unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    }

    #[test]
    fn endpoint_host_extracts_the_host() {
        assert_eq!(
            endpoint_host("https://Acme.armis.com/api/v1").as_deref(),
            Some("acme.armis.com")
        );
        assert_eq!(
            endpoint_host("http://127.0.0.1:8080").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(endpoint_host("http://[::1]:8080/").as_deref(), Some("::1"));
        assert_eq!(endpoint_host("acme.armis.com"), None);
        assert_eq!(endpoint_host("ftp://x"), None);
    }
}
