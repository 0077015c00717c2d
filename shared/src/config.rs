//! The settings both binaries have, merged and checked one way: the broker
//! (and its CA), the id in topics, the topic prefix and a TLS pair. A flag
//! wins over the config file, which wins over the default. One rule for
//! ids and one for the prefix, so a name one binary takes the other does.

use std::path::PathBuf;

use crate::broker::{BrokerUrl, DEFAULT_BROKER};
use crate::error::BadSetting;
use crate::topics::DEFAULT_PREFIX;

/// Longest id (node, viewer, camera): it goes into topics and file names.
pub const MAX_ID_LEN: usize = 64;

/// The shared keys as one source (the flags, or the file) gives them.
#[derive(Debug, Default, Clone)]
pub struct CommonKeys {
    pub broker: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub id: Option<String>,
    pub topic_prefix: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// The shared settings in effect.
#[derive(Debug, Clone)]
pub struct Common {
    pub broker: BrokerUrl,
    pub ca_file: Option<PathBuf>,
    pub id: String,
    pub topic_prefix: String,
    /// Certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Common {
    /// `flags` over `file` over the defaults. The id is called `id_key`
    /// (`node_id`, `viewer_id`) in messages and defaults to the host name,
    /// else `fallback_id`.
    pub fn merge(
        flags: CommonKeys,
        file: CommonKeys,
        id_key: &str,
        fallback_id: &str,
    ) -> Result<Common, BadSetting> {
        let id = flags
            .id
            .or(file.id)
            .or_else(host_name)
            .unwrap_or_else(|| fallback_id.to_owned());
        check_id(id_key, &id)?;
        let broker = flags
            .broker
            .or(file.broker)
            .unwrap_or_else(|| DEFAULT_BROKER.to_owned());
        let broker = broker
            .parse()
            .map_err(|e| BadSetting::new("broker", format!("{e}")))?;
        let topic_prefix = flags
            .topic_prefix
            .or(file.topic_prefix)
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        check_prefix("topic_prefix", &topic_prefix)?;
        let tls = match (
            flags.tls_cert.or(file.tls_cert),
            flags.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(BadSetting::new(
                    "tls_cert",
                    "tls_cert and tls_key go together",
                ))
            }
        };
        Ok(Common {
            broker,
            ca_file: flags.ca_file.or(file.ca_file),
            id,
            topic_prefix,
            tls,
        })
    }
}

/// The id rule: 1 to [`MAX_ID_LEN`] letters, digits, `-`, `_` or `.` (safe
/// in a topic level, a file name and a URL path).
pub fn check_id(key: &str, id: &str) -> Result<(), BadSetting> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(BadSetting::new(
            key,
            format!("{id:?} must be 1 to {MAX_ID_LEN} letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// The prefix rule: one or more topic levels, no MQTT wildcard, no empty
/// level at either end.
pub fn check_prefix(key: &str, prefix: &str) -> Result<(), BadSetting> {
    if prefix.is_empty()
        || prefix.contains(['+', '#'])
        || prefix.starts_with('/')
        || prefix.ends_with('/')
    {
        return Err(BadSetting::new(
            key,
            format!(
                "{prefix:?} must be non-empty, hold no MQTT wildcard and not start or end with '/'"
            ),
        ));
    }
    Ok(())
}

/// This machine's host name, as the kernel has it.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(broker: &str, id: &str, prefix: &str) -> CommonKeys {
        CommonKeys {
            broker: Some(broker.into()),
            id: Some(id.into()),
            topic_prefix: Some(prefix.into()),
            ..CommonKeys::default()
        }
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file = keys("mqtt://file:1883", "from-file", "site/a");
        let flags = CommonKeys {
            id: Some("pi-door".into()),
            ..CommonKeys::default()
        };
        let c = Common::merge(flags, file, "node_id", "node").unwrap();
        assert_eq!(c.id, "pi-door");
        assert_eq!(c.broker.host, "file");
        assert_eq!(c.topic_prefix, "site/a");
        let d = Common::merge(
            CommonKeys::default(),
            CommonKeys::default(),
            "node_id",
            "node",
        )
        .unwrap();
        assert_eq!(d.topic_prefix, DEFAULT_PREFIX);
        assert_eq!(d.broker.port, 1883);
        assert!(!d.id.is_empty());
    }

    #[test]
    fn one_id_rule_and_one_prefix_rule_name_their_key() {
        for bad in ["", "a/b", "a+b", "sp ace", &"x".repeat(65)] {
            let e = check_id("viewer_id", bad).unwrap_err().to_string();
            assert!(e.starts_with("viewer_id: "), "{e}");
        }
        for good in ["pi-door", "v1", "cam_0", "ws.local"] {
            check_id("node_id", good).unwrap();
        }
        for bad in ["", "a/#", "+", "/camfleet", "camfleet/"] {
            let e = check_prefix("topic_prefix", bad).unwrap_err().to_string();
            assert!(e.starts_with("topic_prefix: "), "{e}");
        }
        check_prefix("topic_prefix", "site/camfleet").unwrap();
        let half = CommonKeys {
            tls_cert: Some("c.pem".into()),
            ..CommonKeys::default()
        };
        let e = Common::merge(half, CommonKeys::default(), "node_id", "n").unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
    }
}
