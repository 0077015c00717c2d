//! The addresses the node tells viewers to use.

use std::net::IpAddr;

use crate::config::NodeConfig;

/// The addresses viewers should use: `--advertise-host`, else the bind
/// address when it is a specific one, else this host's non-loopback IPv4
/// addresses (loopback when there is none).
pub fn advertised_addresses(config: &NodeConfig) -> Vec<String> {
    if let Some(host) = &config.advertise_host {
        return vec![host.clone()];
    }
    if !config.bind.is_unspecified() {
        return vec![config.bind.to_string()];
    }
    let mut found: Vec<String> = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let Some(ip) = ifa
                .address
                .as_ref()
                .and_then(|a| a.as_sockaddr_in())
                .map(|s| IpAddr::V4(s.ip()))
            else {
                continue;
            };
            if !ip.is_loopback() && !found.contains(&ip.to_string()) {
                found.push(ip.to_string());
            }
        }
    }
    if found.is_empty() {
        tracing::warn!("no network address found; advertising 127.0.0.1 (set --advertise-host)");
        found.push("127.0.0.1".into());
    }
    found
}
