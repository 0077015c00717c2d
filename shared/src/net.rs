//! Network addresses as both binaries write them.

/// `host:port`, with brackets around an IPv6 address (`[fe80::1]:8000`);
/// a host already in brackets keeps its own.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_host_names_stay_as_they_are() {
        assert_eq!(host_port("10.0.0.2", 8000), "10.0.0.2:8000");
        assert_eq!(host_port("pi-door.local", 8554), "pi-door.local:8554");
    }

    #[test]
    fn ipv6_hosts_get_brackets_once() {
        assert_eq!(host_port("fe80::1", 8000), "[fe80::1]:8000");
        assert_eq!(host_port("[::1]", 8000), "[::1]:8000");
    }
}
