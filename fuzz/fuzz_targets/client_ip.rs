//! The client-IP resolver: `client_ip` (trusted proxies, `Forwarded` and
//! `X-Forwarded-For`), `parse_hop` and `canonical`.
//!
//! Input is text: line 1 the socket peer's IP, line 2 the trusted proxy
//! networks separated by spaces, then header lines `name: value`. After the
//! text, a NUL byte may start raw bytes used to build addresses for the
//! round-trip checks.
//!
//! Properties checked, beyond "never panics":
//! - the result is canonical (never an IPv4-mapped IPv6 address);
//! - a peer that is not a trusted proxy is the client, whatever it sends;
//! - a trusted peer with no forwarding headers is the client;
//! - otherwise the result is the peer or an address read from one of the
//!   forwarding headers;
//! - `parse_hop` reads back every address in each form a proxy writes
//!   (`1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`, quoted);
//! - `canonical` is idempotent and maps `::ffff:a.b.c.d` to `a.b.c.d`.
#![no_main]

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use rampart::{
    config::ForwardedHeader,
    layers::client_ip::{TrustedProxies, canonical, client_ip, parse_hop},
};

fuzz_target!(|data: &[u8]| {
    let (text, raw) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    round_trips(raw);
    let Ok(text) = std::str::from_utf8(text) else { return };
    let mut lines = text.split('\n');
    let peer = lines.next().and_then(|l| l.trim().parse::<IpAddr>().ok()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let nets: Vec<IpNet> =
        lines.next().unwrap_or_default().split_whitespace().filter_map(|net| net.parse().ok()).collect();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.trim_end_matches('\r').split_once(':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim_start()))
        else {
            continue;
        };
        headers.append(name, value);
    }

    for forwarded_header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        let trusted = TrustedProxies { nets: Arc::new(nets.clone()), header: forwarded_header };
        check(peer, &headers, &nets, &trusted);
    }
});

fn check(peer: IpAddr, headers: &HeaderMap, nets: &[IpNet], trusted: &TrustedProxies) {
    let trusts = |ip: IpAddr| nets.iter().any(|net| net.contains(&canonical(ip)));
    let result = client_ip(peer, headers, trusted);
    let peer = canonical(peer);
    assert_eq!(canonical(result), result, "not canonical: {result}");
    if !trusts(peer) {
        assert_eq!(result, peer, "an untrusted peer chose its address");
        return;
    }
    // Only the configured header may supply the address.
    let name = match trusted.header {
        ForwardedHeader::Forwarded => header::FORWARDED,
        ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
    };
    let forwarding: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    if forwarding.is_empty() {
        assert_eq!(result, peer, "a trusted peer without forwarding headers");
        return;
    }
    if result == peer {
        return;
    }
    // Every piece a hop can be cut from, a superset of the resolver's hops.
    let candidates: Vec<IpAddr> = forwarding
        .iter()
        .flat_map(|text| text.split([',', ';']))
        .flat_map(|piece| std::iter::once(piece).chain(piece.split_once('=').map(|(_, value)| value)))
        .filter_map(parse_hop)
        .map(canonical)
        .collect();
    assert!(candidates.contains(&result), "{result} was not sent in {forwarding:?}");
}

fn round_trips(raw: &[u8]) {
    let mut input = Unstructured::new(raw);
    let (Ok(v4), Ok(v6), Ok(port)) =
        (<[u8; 4]>::arbitrary(&mut input), <[u8; 16]>::arbitrary(&mut input), u16::arbitrary(&mut input))
    else {
        return;
    };
    let v4 = Ipv4Addr::from(v4);
    let v6 = Ipv6Addr::from(v6);
    for (text, expected) in [
        (v4.to_string(), IpAddr::V4(v4)),
        (format!("{v4}:{port}"), IpAddr::V4(v4)),
        (format!("\"{v4}:{port}\""), IpAddr::V4(v4)),
        (v6.to_string(), IpAddr::V6(v6)),
        (format!("[{v6}]"), IpAddr::V6(v6)),
        (format!("[{v6}]:{port}"), IpAddr::V6(v6)),
        (format!("\"[{v6}]:{port}\""), IpAddr::V6(v6)),
    ] {
        assert_eq!(parse_hop(&text), Some(expected), "{text:?}");
    }
    let mapped = IpAddr::V6(v4.to_ipv6_mapped());
    assert_eq!(canonical(mapped), IpAddr::V4(v4));
    for ip in [IpAddr::V4(v4), IpAddr::V6(v6), mapped] {
        assert_eq!(canonical(canonical(ip)), canonical(ip));
    }
}
