//! Broker URLs: `mqtt://[user:pass@]host[:port]` and `mqtts://...`.

use std::fmt;
use std::str::FromStr;

use crate::error::BrokerUrlError;

/// The broker a fresh install talks to.
pub const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";

#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(url: &str) -> Result<Self, BrokerUrlError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(BrokerUrlError::Scheme(url.to_owned()));
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(percent_decode(user)), Some(percent_decode(pass))),
                None => (Some(percent_decode(u)), None),
            },
        };
        // "[v6]:port", "host:port", "[v6]" or "host".
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| BrokerUrlError::NoHost(url.into()))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(BrokerUrlError::NoHost(url.to_owned()));
        }
        let port =
            match port {
                None => {
                    if tls {
                        8883
                    } else {
                        1883
                    }
                }
                Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    BrokerUrlError::Port {
                        url: url.to_owned(),
                        reason: format!("{p:?} is not a number from 1 to 65535"),
                    }
                })?,
            };
        Ok(BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
            username,
            password,
        })
    }
}

/// Shows the URL without the password, for logs.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.username {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

/// `%XX` escapes of a URL's user name or password, decoded (a `%` not
/// followed by two hex digits stays as it is).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_of_the_contract() {
        let b: BrokerUrl = "mqtt://192.168.1.10:1883".parse().unwrap();
        assert_eq!(
            (b.tls, b.host.as_str(), b.port),
            (false, "192.168.1.10", 1883)
        );
        let b: BrokerUrl = "mqtts://cam:p%40ss@broker.lan".parse().unwrap();
        assert_eq!((b.tls, b.port), (true, 8883));
        assert_eq!(
            (b.username.as_deref(), b.password.as_deref()),
            (Some("cam"), Some("p@ss"))
        );
        let b: BrokerUrl = "mqtt://[::1]:1884/".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 1884));
        assert_eq!(b.to_string(), "mqtt://[::1]:1884");
    }

    #[test]
    fn display_hides_the_password() {
        let b: BrokerUrl = "mqtt://u:secret@h".parse().unwrap();
        assert_eq!(b.to_string(), "mqtt://u@h:1883");
        assert!(!format!("{b:?}").contains("secret"));
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(matches!(
            "tcp://h".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Scheme(_))
        ));
        assert!(matches!(
            "mqtt://:1883".parse::<BrokerUrl>(),
            Err(BrokerUrlError::NoHost(_))
        ));
        assert!(matches!(
            "mqtt://h:99999".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Port { .. })
        ));
        assert!(matches!(
            "mqtt://h:0".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Port { .. })
        ));
    }
}
