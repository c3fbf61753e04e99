//! The smallest exact CIDR set covering a set of addresses.
//!
//! Every address of the input is covered, no other address is, and no two
//! prefixes of the output could be merged or contain one another: the output
//! is the set of maximal aligned blocks inside the input, which is the unique
//! minimal exact cover. IPv4 and IPv6 are handled separately (IPv4 first),
//! each in ascending numeric order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Aggregates addresses into the smallest exact set of CIDRs covering them.
/// Duplicates are fine; input order does not matter.
pub fn aggregate<I>(addresses: I) -> Vec<IpNet>
where
    I: IntoIterator<Item = IpAddr>,
{
    let mut v4: Vec<u32> = Vec::new();
    let mut v6: Vec<u128> = Vec::new();
    for address in addresses {
        match address {
            IpAddr::V4(a) => v4.push(u32::from(a)),
            IpAddr::V6(a) => v6.push(u128::from(a)),
        }
    }
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();

    let mut blocks = Vec::new();
    let mut out = Vec::new();
    for (start, end) in runs(v4.iter().map(|&a| u128::from(a))) {
        blocks.clear();
        cover_range(start, end, 32, &mut blocks);
        out.extend(blocks.iter().map(|&(base, prefix)| {
            // Values come from u32 addresses, so they fit; prefix ≤ 32.
            let address = Ipv4Addr::from(base as u32);
            IpNet::V4(Ipv4Net::new_assert(address, prefix))
        }));
    }
    for (start, end) in runs(v6.iter().copied()) {
        blocks.clear();
        cover_range(start, end, 128, &mut blocks);
        out.extend(
            blocks.iter().map(|&(base, prefix)| {
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(base), prefix))
            }),
        );
    }
    out
}

/// Maximal runs of consecutive values of a sorted, deduplicated sequence.
fn runs(sorted: impl Iterator<Item = u128>) -> Vec<(u128, u128)> {
    let mut runs: Vec<(u128, u128)> = Vec::new();
    for value in sorted {
        match runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(value) => *end = value,
            _ => runs.push((value, value)),
        }
    }
    runs
}

/// Splits the inclusive range `start..=end` of a `width`-bit address space
/// into the fewest aligned blocks, appended as `(base, prefix_len)`.
///
/// Greedy from the left: at each step take the largest block that starts at
/// the cursor (alignment) and does not pass `end` (size). This is optimal for
/// a contiguous range.
fn cover_range(start: u128, end: u128, width: u32, out: &mut Vec<(u128, u8)>) {
    let mut cursor = start;
    loop {
        let alignment = if cursor == 0 {
            width
        } else {
            cursor.trailing_zeros().min(width)
        };
        let span = end - cursor; // addresses left, minus one
        // Largest k with 2^k - 1 <= span, i.e. floor(log2(span + 1)).
        let fit = match span.checked_add(1) {
            Some(count) => 127 - count.leading_zeros(),
            None => 128,
        };
        let bits = alignment.min(fit);
        // `width - bits` is at most 128, so it fits a u8.
        out.push((cursor, (width - bits) as u8));
        let last = if bits == 128 {
            u128::MAX
        } else {
            cursor | ((1u128 << bits) - 1)
        };
        if last >= end {
            return;
        }
        cursor = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn v4(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(text: &[&str]) -> Vec<IpNet> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn host_range_v4(first: &str, count: u32) -> Vec<IpAddr> {
        let base = u32::from(first.parse::<Ipv4Addr>().unwrap());
        (0..count)
            .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
            .collect()
    }

    #[test]
    fn complete_aligned_block_collapses() {
        let got = aggregate(host_range_v4("10.0.0.0", 256));
        assert_eq!(got, nets(&["10.0.0.0/24"]));
        let got = aggregate(host_range_v4("10.0.0.4", 4));
        assert_eq!(got, nets(&["10.0.0.4/30"]));
    }

    #[test]
    fn unaligned_run_adds_nothing_outside() {
        // 10.0.0.1 .. 10.0.0.6: a /30 cannot start at .1.
        let got = aggregate(host_range_v4("10.0.0.1", 6));
        assert_eq!(
            got,
            nets(&["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"])
        );
        // Adjacent but not mergeable: .1 and .2 are not one aligned /31.
        let got = aggregate([v4("10.0.0.1"), v4("10.0.0.2")]);
        assert_eq!(got, nets(&["10.0.0.1/32", "10.0.0.2/32"]));
    }

    #[test]
    fn empty_and_single_and_duplicates() {
        assert!(aggregate(Vec::<IpAddr>::new()).is_empty());
        let got = aggregate([v4("192.0.2.7"), v4("192.0.2.7"), v4("192.0.2.7")]);
        assert_eq!(got, nets(&["192.0.2.7/32"]));
    }

    #[test]
    fn ipv6_and_ipv4_are_separate_and_v4_first() {
        let got = aggregate([
            "2001:db8::1".parse().unwrap(),
            "2001:db8::".parse().unwrap(),
            v4("10.0.0.1"),
            "2001:db8::3".parse().unwrap(),
        ]);
        assert_eq!(
            got,
            nets(&["10.0.0.1/32", "2001:db8::/127", "2001:db8::3/128"])
        );
    }

    #[test]
    fn edges_of_the_address_spaces() {
        let got = aggregate(host_range_v4("255.255.255.252", 4));
        assert_eq!(got, nets(&["255.255.255.252/30"]));
        let got = aggregate(host_range_v4("0.0.0.0", 3));
        assert_eq!(got, nets(&["0.0.0.0/31", "0.0.0.2/32"]));
        let top: Vec<IpAddr> = (0..4u128)
            .map(|i| IpAddr::V6(Ipv6Addr::from(u128::MAX - i)))
            .collect();
        assert_eq!(
            aggregate(top),
            nets(&["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126"])
        );
        let bottom: Vec<IpAddr> = (0..2u128).map(|i| IpAddr::V6(Ipv6Addr::from(i))).collect();
        assert_eq!(aggregate(bottom), nets(&["::/127"]));
    }

    #[test]
    fn whole_space_ranges_do_not_overflow() {
        let mut blocks = Vec::new();
        cover_range(0, u128::MAX, 128, &mut blocks);
        assert_eq!(blocks, vec![(0, 0)]);
        blocks.clear();
        cover_range(0, u128::from(u32::MAX), 32, &mut blocks);
        assert_eq!(blocks, vec![(0, 0)]);
        blocks.clear();
        cover_range(1, u128::MAX, 128, &mut blocks);
        assert_eq!(blocks.len(), 128);
        assert_eq!(blocks.last(), Some(&(1u128 << 127, 1)));
    }

    // ---- property tests (deterministic pseudo-random inputs) ----

    /// Addresses clustered in a small window so that runs and complete
    /// blocks occur often; `window` addresses from `base`.
    fn random_set(rng: &mut StdRng, base: u128, window: u128, v6: bool) -> Vec<IpAddr> {
        let density = rng.random_range(0.05..1.0);
        let mut out = Vec::new();
        for offset in 0..window {
            if rng.random_bool(density) {
                let value = base + offset;
                out.push(if v6 {
                    IpAddr::V6(Ipv6Addr::from(value))
                } else {
                    IpAddr::V4(Ipv4Addr::from(value as u32))
                });
            }
        }
        // Some duplicates.
        let extra: Vec<IpAddr> = out.iter().step_by(7).copied().collect();
        out.extend(extra);
        out
    }

    fn value(address: IpAddr) -> (bool, u128) {
        match address {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        }
    }

    fn bounds(net: &IpNet) -> (bool, u128, u128) {
        match net {
            IpNet::V4(n) => (
                false,
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())),
            ),
            IpNet::V6(n) => (true, u128::from(n.network()), u128::from(n.broadcast())),
        }
    }

    fn check_properties(input: &[IpAddr], got: &[IpNet]) {
        let wanted: BTreeSet<(bool, u128)> = input.iter().map(|&a| value(a)).collect();

        // Exact coverage: expanding the output gives exactly the input set,
        // and the address counts agree (no overlap double counts).
        let mut covered = BTreeSet::new();
        let mut count: u128 = 0;
        for net in got {
            let (v6, first, last) = bounds(net);
            count += last - first + 1;
            for a in first..=last {
                covered.insert((v6, a));
            }
        }
        assert_eq!(covered, wanted, "coverage differs for {got:?}");
        assert_eq!(count, wanted.len() as u128, "overlapping output {got:?}");

        // Minimality: no prefix's parent block lies wholly inside the input
        // (else two siblings, or a prefix and a run, would merge), and no
        // prefix contains another.
        for net in got {
            if net.prefix_len() == 0 {
                continue;
            }
            let parent = net.supernet().unwrap();
            let (v6, first, last) = bounds(&parent);
            let inside = wanted.range((v6, first)..=(v6, last)).count() as u128;
            assert!(
                inside < last - first + 1,
                "{net} could merge into {parent}: output {got:?}"
            );
        }
        for (i, a) in got.iter().enumerate() {
            for (j, b) in got.iter().enumerate() {
                assert!(i == j || !a.contains(b), "{a} contains {b}");
            }
        }

        // Stable order: v4 before v6, ascending.
        let keys: Vec<(bool, u128)> = got
            .iter()
            .map(|n| {
                let (v6, first, _) = bounds(n);
                (v6, first)
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn property_exact_minimal_and_order_independent() {
        let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
        for case in 0..400 {
            let v6 = case % 3 == 2;
            let window: u128 = rng.random_range(1..=300);
            let base: u128 = match case % 5 {
                // Near the bottom and top of the spaces, to hit the edges.
                0 => 0,
                1 if v6 => u128::MAX - window + 1,
                1 => u128::from(u32::MAX) - window + 1,
                _ if v6 => rng.random::<u128>() & !0xffff,
                _ => u128::from(rng.random::<u32>() & !0xffff),
            };
            let mut input = random_set(&mut rng, base, window, v6);
            if case % 4 == 0 {
                // Mix both families.
                input.extend(random_set(&mut rng, 0x0a00_0000, 64, false));
                input.extend(random_set(&mut rng, 0x2001_0db8 << 96, 64, true));
            }
            let got = aggregate(input.iter().copied());
            check_properties(&input, &got);

            input.shuffle(&mut rng);
            assert_eq!(
                aggregate(input.iter().copied()),
                got,
                "order changed output"
            );

            // ipnet's own aggregation of host prefixes agrees.
            let hosts: Vec<IpNet> = input.iter().map(|&a| IpNet::from(a)).collect();
            let mut theirs = IpNet::aggregate(&hosts);
            theirs.sort_by_key(bounds);
            assert_eq!(theirs, got);
        }
    }
}
