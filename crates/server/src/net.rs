//! Which local addresses media can use, and the URLs to print.

use std::net::IpAddr;

/// Every usable IPv4 address of this machine, loopback first.
pub fn local_ipv4_addresses() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4())
        .collect();
    if !ips.iter().any(|ip| ip.is_loopback()) {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    ips.sort_by_key(|ip| (!ip.is_loopback(), *ip));
    ips.dedup();
    ips
}

/// Addresses other devices can reach this one on (not loopback).
pub fn lan_addresses() -> Vec<IpAddr> {
    local_ipv4_addresses()
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .collect()
}
