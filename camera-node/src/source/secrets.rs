//! Passwords in source and push URLs, and the shape of every source text.
//! A URL's password is never shown: [`redact`] is what logs, the API and
//! MQTT get, and [`scrub`] cleans a converter's log lines; [`check_text`]
//! keeps text that a program could misread (an option, a space) out.

/// Longest source text accepted.
pub const MAX_SOURCE_LEN: usize = 2048;

/// Checks what every source text must be, whatever its kind: at most
/// [`MAX_SOURCE_LEN`] bytes, no space or control character, no leading
/// `-` (which a program would read as an option).
pub fn check_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the source is empty".into());
    }
    if text.len() > MAX_SOURCE_LEN {
        return Err(format!(
            "the source is {} bytes long; at most {MAX_SOURCE_LEN}",
            text.len()
        ));
    }
    if text.starts_with('-') {
        return Err("a source may not start with '-'".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a source may not hold spaces or control characters".into());
    }
    Ok(())
}

/// Where the password of the first URL at or after `from` lies.
pub(super) fn password_span(text: &str, from: usize) -> Option<(usize, usize)> {
    let start = from + text[from..].find("://")? + 3;
    let authority_len = text[start..]
        .find(['/', '?', '#', ' ', '"', '\''])
        .unwrap_or(text.len() - start);
    let authority = &text[start..start + authority_len];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((start + colon + 1, start + at))
}

/// `text` with the password of every URL in it replaced by `***`
/// (`rtsp://user:***@host/...`); the rest as it was.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(scheme_end) = text[from..].find("://").map(|i| from + i + 3) {
        match password_span(text, from) {
            Some((start, end)) if start >= scheme_end => {
                out.push_str(&text[from..start]);
                out.push_str("***");
                from = end;
            }
            _ => {
                out.push_str(&text[from..scheme_end]);
                from = scheme_end;
            }
        }
    }
    out.push_str(&text[from..]);
    out
}

/// Scrubs a converter's log line: every URL's password, and the known
/// passwords wherever else they appear (ffmpeg may print them decoded).
pub fn scrub(line: &str, secrets: &[String]) -> String {
    let mut line = redact(line);
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        line = line.replace(secret.as_str(), "***");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed_from_log_lines() {
        let line = "[rtsp @ 0x1] method DESCRIBE failed on rtsp://admin:s3cret@10.0.0.9:554/stream1: 401 (and rtmp://u:p@h/x)";
        let clean = scrub(line, &["s3cret".into()]);
        assert!(
            !clean.contains("s3cret") && !clean.contains(":p@"),
            "{clean}"
        );
        assert!(clean.contains("rtsp://admin:***@10.0.0.9"), "{clean}");
        assert_eq!(redact("rtsp://cam/x"), "rtsp://cam/x");
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(
            scrub("password s3cret decoded", &["s3cret".into()]),
            "password *** decoded"
        );
    }
}
