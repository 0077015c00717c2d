//! Optional user names and passwords for HTTP (basic) and RTSP (basic and
//! digest, RFC 2617 without qop, which is what RTSP players speak). Off
//! when the config file lists no `[[user]]`.

use base64::Engine;
use md5::{Digest, Md5};

/// The realm in challenges.
pub const REALM: &str = "camfleet";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Default, Clone)]
pub struct Users(Vec<User>);

impl Users {
    pub fn new(users: Vec<User>) -> Self {
        Users(users)
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// No users: everything is open.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an `Authorization` header value names a user: `Basic` always,
    /// `Digest` for a request `method` when `nonce` is the one handed out.
    pub fn allows(&self, authorization: Option<&str>, method: &str, nonce: &str) -> bool {
        if self.is_open() {
            return true;
        }
        let Some((scheme, rest)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
            return false;
        };
        if scheme.eq_ignore_ascii_case("basic") {
            self.allows_basic(rest.trim())
        } else if scheme.eq_ignore_ascii_case("digest") {
            self.allows_digest(rest, method, nonce)
        } else {
            false
        }
    }

    fn allows_basic(&self, encoded: &str) -> bool {
        let Some((name, password)) = basic_pair(encoded) else {
            return false;
        };
        self.0
            .iter()
            .any(|u| u.name == name && same(u.password.as_bytes(), password.as_bytes()))
    }

    fn allows_digest(&self, params: &str, method: &str, nonce: &str) -> bool {
        let fields = digest_fields(params);
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some(uri), Some(response)) =
            (get("username"), get("uri"), get("response"))
        else {
            return false;
        };
        if get("nonce") != Some(nonce) || get("realm") != Some(REALM) {
            return false;
        }
        let Some(user) = self.0.iter().find(|u| u.name == name) else {
            return false;
        };
        let ha1 = md5_hex(&format!("{}:{REALM}:{}", user.name, user.password));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        same(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        )
    }
}

/// `key="value", key=value` pairs of a digest header.
/// A Basic credential's name and password.
fn basic_pair(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (name, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// The user name of an `Authorization` header (Basic, or Digest's
/// `username`), for the log; never the password.
pub fn basic_name(authorization: Option<&str>) -> Option<String> {
    let (scheme, rest) = authorization?.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        return basic_pair(rest).map(|(name, _)| name);
    }
    digest_fields(rest)
        .into_iter()
        .find_map(|(k, v)| (k == "username").then_some(v))
}

pub(crate) fn digest_fields(params: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key, value.trim().to_owned()));
        rest = next.trim_start().trim_start_matches(',');
    }
    out
}

pub(crate) fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares without stopping at the first difference.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        Users::new(vec![User {
            name: "alice".into(),
            password: "s3cret".into(),
        }])
    }

    #[test]
    fn no_users_means_open() {
        assert!(Users::default().allows(None, "DESCRIBE", "n"));
        assert!(!users().allows(None, "DESCRIBE", "n"));
    }

    #[test]
    fn basic_needs_the_right_password() {
        let ok = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let bad = base64::engine::general_purpose::STANDARD.encode("alice:guess");
        assert!(users().allows(Some(&format!("Basic {ok}")), "GET", ""));
        assert!(!users().allows(Some(&format!("Basic {bad}")), "GET", ""));
        assert!(!users().allows(Some("Basic !!!"), "GET", ""));
    }

    #[test]
    fn digest_matches_rfc_2617_without_qop() {
        let nonce = "0123abcd";
        let uri = "rtsp://127.0.0.1:8554/cam0";
        let ha1 = md5_hex("alice:camfleet:s3cret");
        let ha2 = md5_hex(&format!("DESCRIBE:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        let header = format!(
            "Digest username=\"alice\", realm=\"camfleet\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\""
        );
        assert!(users().allows(Some(&header), "DESCRIBE", nonce));
        assert!(
            !users().allows(Some(&header), "PLAY", nonce),
            "method is signed"
        );
        assert!(
            !users().allows(Some(&header), "DESCRIBE", "other"),
            "stale nonce"
        );
    }

    #[test]
    fn md5_is_md5() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
