//! The client's IP: the socket peer, unless the peer is a configured
//! trusted proxy, in which case the header those proxies write
//! (`server.forwarded_header`: `X-Forwarded-For` by default, or `Forwarded`,
//! RFC 7239) is read from the right, skipping trusted hops, and the first
//! untrusted hop is the client.
//!
//! Security: headers from untrusted peers are ignored entirely, so a client
//! cannot choose its own rate-limit key or audit IP. Only the configured
//! header is read: a proxy that appends to `X-Forwarded-For` passes a
//! client's own `Forwarded` through untouched, so reading "whichever is
//! present" would let the client pick its address. A hop that does not
//! parse ends the walk at the nearest hop already believed.

use std::{net::IpAddr, str::FromStr, sync::Arc};

use axum::http::{HeaderMap, header};
use ipnet::IpNet;

use crate::config::ForwardedHeader;

#[derive(Clone, Default)]
pub struct TrustedProxies {
    pub nets: Arc<Vec<IpNet>>,
    pub header: ForwardedHeader,
}

impl TrustedProxies {
    /// Proxies that write `X-Forwarded-For`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets: Arc::new(nets), header: ForwardedHeader::XForwardedFor }
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.trusts(peer) {
        return peer;
    }
    let hops = forwarded_hops(headers, trusted.header);
    let mut believed = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return believed;
        };
        let ip = canonical(ip);
        if !trusted.trusts(ip) {
            return ip;
        }
        believed = ip;
    }
    believed
}

/// The addresses a request came through, client first and the socket peer
/// last: the client `client_ip` resolves, the trusted proxies between, the
/// peer. What a client wrote itself (left of the client) is never part of
/// it, so an upstream told this chain cannot be fooled by the client.
pub fn forwarded_chain(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> Vec<IpAddr> {
    let peer = canonical(peer);
    if !trusted.trusts(peer) {
        return vec![peer];
    }
    let mut chain = vec![peer];
    for hop in forwarded_hops(headers, trusted.header).iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        let ip = canonical(ip);
        chain.push(ip);
        if !trusted.trusts(ip) {
            break;
        }
    }
    chain.reverse();
    chain
}

/// The hops of the configured header, left (client side) to right
/// (nearest proxy), across repeated headers.
fn forwarded_hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<String> {
    match header {
        ForwardedHeader::Forwarded => headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|text| text.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then(|| value.trim().to_owned())
                })
            })
            .collect(),
        ForwardedHeader::XForwardedFor => headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|text| text.split(','))
            .map(|hop| hop.trim().to_owned())
            .filter(|hop| !hop.is_empty())
            .collect(),
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`, quoted or
/// not. `unknown` and obfuscated identifiers are not addresses.
pub fn parse_hop(hop: &str) -> Option<IpAddr> {
    let text = hop.trim().trim_matches('"');
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return IpAddr::from_str(inside).ok().filter(IpAddr::is_ipv6);
    }
    if let Ok(ip) = IpAddr::from_str(text) {
        return Some(ip);
    }
    let (address, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    IpAddr::from_str(address).ok().filter(IpAddr::is_ipv4)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().expect("cidr")).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_ip() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &trusted(&[])), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &trusted(&["10.0.0.0/8"])), ip("203.0.113.9"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.2")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &proxies), ip("198.51.100.4"), "the spoofed 6.6.6.6 is ignored");
        let split = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.4")]);
        assert_eq!(client_ip(ip("10.1.1.1"), &split, &proxies), ip("198.51.100.4"));
        let all_trusted = headers(&[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]);
        assert_eq!(client_ip(ip("10.0.0.7"), &all_trusted, &proxies), ip("10.0.0.5"));
        assert_eq!(client_ip(ip("10.0.0.7"), &HeaderMap::new(), &proxies), ip("10.0.0.7"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let h = headers(&[
            ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\""),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        // The default: X-Forwarded-For; a client's own Forwarded is ignored.
        let proxies = trusted(&["127.0.0.0/8"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &proxies), ip("9.9.9.9"));
        let spoofed = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &spoofed, &proxies), ip("127.0.0.1"));
        // Proxies that write Forwarded: that one, with ports and brackets.
        let proxies = TrustedProxies { header: ForwardedHeader::Forwarded, ..trusted(&["127.0.0.0/8"]) };
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &proxies), ip("2001:db8:cafe::17"));
        let spoofed = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &spoofed, &proxies), ip("127.0.0.1"));
        assert_eq!(parse_hop("192.0.2.1:8080"), Some(ip("192.0.2.1")));
        assert_eq!(parse_hop("unknown"), None);
        assert_eq!(parse_hop("_hidden"), None);
        assert_eq!(parse_hop("[1.2.3.4]"), None);
    }

    #[test]
    fn a_garbage_hop_stops_at_the_nearest_believed_hop() {
        let proxies = trusted(&["127.0.0.1/32", "10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.4, garbage, 10.0.0.2")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &proxies), ip("10.0.0.2"));
    }
}
