//! Properties of the rate-limit client key under trusted proxies
//! (`http::ratelimit::RateLimits::client_key`): an untrusted peer is always its own key; a
//! trusted address is the key only when every hop is trusted; entries a client prepends to
//! `X-Forwarded-For` cannot change the key; the key is never an address nobody sent; and no
//! header, however malformed, makes it panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use proptest::prelude::*;

use crate::config::{CommaList, Config};
use crate::http::ratelimit::RateLimits;

/// Addresses from a small pool (so trusted and untrusted ones meet often), and any address.
fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => (0u8..16).prop_map(|n| IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))),
        1 => (0u8..4).prop_map(|n| IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))),
        2 => (0u16..8).prop_map(|n| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n))),
        1 => any::<Ipv4Addr>().prop_map(IpAddr::V4),
        1 => any::<Ipv6Addr>().prop_map(IpAddr::V6),
    ]
}

/// An address no generated network holds (TEST-NET-3).
fn outside(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
}

/// Trusted networks as an operator writes them: CIDRs of the pool and bare addresses; at least
/// `min` of them.
fn trusted(min: usize) -> impl Strategy<Value = Vec<String>> {
    let net = prop_oneof![
        (0u8..16, 28u8..=32).prop_map(|(n, len)| format!("10.0.0.{n}/{len}")),
        (0u8..4).prop_map(|n| format!("192.0.2.{n}")),
        (0u16..8, 124u8..=128).prop_map(|(n, len)| format!("fd00::{n:x}/{len}")),
        Just("10.0.0.0/8".to_string()),
    ];
    prop::collection::vec(net, min..4)
}

/// One entry of the header: an address as proxies write it, or something that is not one.
#[derive(Debug, Clone)]
enum Hop {
    Addr(IpAddr),
    Text(String),
}

fn hop() -> impl Strategy<Value = Hop> {
    prop_oneof![
        6 => address().prop_map(Hop::Addr),
        1 => address().prop_map(|a| Hop::Text(match a {
            IpAddr::V4(v4) => format!("{v4}:443"),
            IpAddr::V6(v6) => format!("[{v6}]"),
        })),
        1 => prop::sample::select(vec!["unknown", "", " ", "_hidden", "1.2.3", "::ffff:1.2.3.4.5"])
            .prop_map(|s| Hop::Text(s.into())),
        1 => "[ -+--~]{0,12}".prop_map(Hop::Text),
    ]
}

/// Header lines of entries joined as proxies join them (with or without spaces).
fn lines() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        (prop::collection::vec(hop(), 0..5), prop_oneof![Just(","), Just(", "), Just(" , ")]).prop_map(
            |(hops, sep)| {
                hops.iter()
                    .map(|h| match h {
                        Hop::Addr(a) => a.to_string(),
                        Hop::Text(t) => t.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(sep)
            },
        ),
        0..4,
    )
}

fn limits(nets: &[String]) -> (RateLimits, Vec<IpNet>) {
    let mut config = Config::defaults();
    config.trusted_proxies = CommaList(nets.to_vec());
    config.validate().expect("the trusted networks are valid");
    (RateLimits::from_config(&config), config.trusted_proxy_nets())
}

fn headers(lines: &[Vec<u8>]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in lines {
        h.append("x-forwarded-for", HeaderValue::from_bytes(line).expect("a header value"));
    }
    h
}

/// The hops the server walks, left to right: the entries from the right up to (not including)
/// the first one that is not an address, which ends the walk (what lies left of it is the
/// client's own word). Lines are read lossily; a port after an address is dropped.
fn readable_hops(lines: &[Vec<u8>]) -> Vec<IpAddr> {
    let text: Vec<String> = lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let mut walked = Vec::new();
    for hop in text.iter().rev().flat_map(|l| l.rsplit(',')).map(str::trim).filter(|h| !h.is_empty()) {
        match crate::http::ratelimit::forwarded_hop(hop) {
            Some(ip) => walked.push(ip),
            None => break,
        }
    }
    walked.reverse();
    walked
}

fn as_bytes(lines: Vec<String>) -> Vec<Vec<u8>> {
    lines.into_iter().map(String::into_bytes).collect()
}

/// A header as trusted proxies pass it on: whatever the client sent (`lines`), then a line with
/// the client they saw and up to `proxies` trusted hops after it.
fn proxied(lines: Vec<String>, nets: &[IpNet], client: IpAddr, proxies: usize) -> Vec<Vec<u8>> {
    let seen = std::iter::once(client).chain(nets.iter().take(proxies).map(IpNet::network));
    let mut lines = as_bytes(lines);
    lines.push(seen.map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ").into_bytes());
    lines
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn an_untrusted_peer_is_always_its_own_key(
        nets in trusted(0),
        peer in address(),
        n in any::<u8>(),
        lines in lines(),
    ) {
        let (limits, nets) = limits(&nets);
        let peer = if nets.iter().any(|net| net.contains(&peer)) { outside(n) } else { peer };
        prop_assert_eq!(limits.client_key(peer, &headers(&as_bytes(lines))), peer);
    }

    #[test]
    fn the_key_is_a_trusted_address_only_when_every_hop_is_trusted_and_is_never_invented(
        nets in trusted(0),
        peer in address(),
        lines in lines(),
    ) {
        let (limits, nets) = limits(&nets);
        let lines = as_bytes(lines);
        let key = limits.client_key(peer, &headers(&lines));
        let trusted = |ip: &IpAddr| nets.iter().any(|n| n.contains(ip));
        let hops = readable_hops(&lines);
        if trusted(&key) {
            prop_assert_eq!(key, peer);
            prop_assert!(hops.iter().all(trusted), "{:?} trusted while {:?} is not", key, hops);
        }
        if key != peer {
            // The nearest untrusted hop from the right: everything after it is trusted.
            let at = hops.iter().rposition(|h| *h == key).expect("the key was sent");
            prop_assert!(!trusted(&key) && hops[at + 1..].iter().all(trusted));
        }
    }

    #[test]
    fn entries_a_client_prepends_cannot_change_the_key(
        nets in trusted(0),
        peer in address(),
        lines in lines(),
        extra in lines(),
        text in "[ -~]{0,20}",
        same_line in any::<bool>(),
        (client, proxies, via_proxy) in (any::<u8>(), 0usize..3, any::<bool>()),
    ) {
        // Text only: a byte that is not visible ASCII hides the whole line (see the ignored
        // property below).
        let (limits, nets) = limits(&nets);
        // The proxies' own entries name an untrusted client: nothing to their left counts.
        let lines = proxied(lines, &nets, outside(client), proxies);
        let peer = match nets.first() {
            Some(net) if via_proxy => net.network(),
            _ => peer,
        };
        let before = limits.client_key(peer, &headers(&lines));
        let mut longer = as_bytes(extra);
        if same_line {
            // Into the first line, as a proxy that joins lines would pass it on.
            let mut first = format!("{text},").into_bytes();
            first.extend_from_slice(&lines[0]);
            longer.push(first);
            longer.extend(lines[1..].iter().cloned());
        } else {
            longer.push(text.into_bytes());
            longer.extend(lines.iter().cloned());
        }
        prop_assert_eq!(limits.client_key(peer, &headers(&longer)), before);
    }

    #[test]
    fn any_header_bytes_give_a_key_without_panicking(
        nets in trusted(0),
        peer in address(),
        lines in prop::collection::vec(
            prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t'), Just(b',')], 0..40),
            0..4,
        ),
    ) {
        let (limits, nets) = limits(&nets);
        let key = limits.client_key(peer, &headers(&lines));
        prop_assert!(key == peer || readable_hops(&lines).contains(&key));
        prop_assert!(key == peer || !nets.iter().any(|n| n.contains(&key)));
    }

    /// A client that sends `X-Forwarded-For: \x80` through a proxy that appends to the
    /// client's line (`\x80, <client>`) is still keyed by the address the proxy appended
    /// (`client_key` reads lines lossily; found by this property).
    #[test]
    fn bytes_a_client_prepends_to_its_line_cannot_change_the_key(
        nets in trusted(1),
        lines in lines(),
        junk in prop::collection::vec(0x80u8..=0xff, 1..4),
        (client, proxies) in (any::<u8>(), 0usize..3),
    ) {
        let (limits, nets) = limits(&nets);
        let lines = proxied(lines, &nets, outside(client), proxies);
        let peer = nets[0].network();
        let before = limits.client_key(peer, &headers(&lines));
        let mut longer = lines.clone();
        longer[0] = [junk, b",".to_vec(), lines[0].clone()].concat();
        prop_assert_eq!(limits.client_key(peer, &headers(&longer)), before);
    }
}
