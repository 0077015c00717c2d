//! Password hashes in mosquitto's password-file format, so one file serves
//! mosquitto, the embedded broker and the dashboard's users:
//!
//! `name:$7$<iterations>$<salt, base64>$<hash, base64>`
//!
//! `$7$` is PBKDF2-HMAC-SHA512 with a 12-byte salt and a 64-byte hash
//! (mosquitto 2's `mosquitto_passwd`); `$6$` (SHA-512 of the password and
//! the salt, mosquitto 1.x) is read too, never written.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SecureRandom;
use ring::{digest, pbkdf2, rand::SystemRandom};

/// PBKDF2 rounds for new hashes: a few milliseconds on a Raspberry Pi,
/// paid once a connection or login.
pub const ITERATIONS: u32 = 10_000;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// The `$7$...` hash of `password` with a fresh salt.
pub fn hash(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .expect("the system's random numbers");
    let mut out = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA512,
        NonZeroU32::new(ITERATIONS).unwrap(),
        &salt,
        password.as_bytes(),
        &mut out,
    );
    format!("$7${ITERATIONS}${}${}", B64.encode(salt), B64.encode(out))
}

/// Whether `password` matches `stored` (`$7$` or `$6$`); a malformed
/// hash matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    match parts.as_slice() {
        ["", "7", iterations, salt, hash] => {
            let (Ok(n), Ok(salt), Ok(hash)) = (
                iterations.parse::<u32>(),
                B64.decode(salt),
                B64.decode(hash),
            ) else {
                return false;
            };
            let Some(n) = NonZeroU32::new(n).filter(|n| n.get() <= 10_000_000) else {
                return false;
            };
            pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                n,
                &salt,
                password.as_bytes(),
                &hash,
            )
            .is_ok()
        }
        ["", "6", salt, hash] => {
            let (Ok(salt), Ok(hash)) = (B64.decode(salt), B64.decode(hash)) else {
                return false;
            };
            let mut ctx = digest::Context::new(&digest::SHA512);
            ctx.update(password.as_bytes());
            ctx.update(&salt);
            let got = ctx.finish();
            let got = got.as_ref();
            // Every byte compared, whatever differs first.
            got.len() == hash.len() && got.iter().zip(&hash).fold(0, |d, (a, b)| d | (a ^ b)) == 0
        }
        _ => false,
    }
}

/// A random password of `len` letters and digits (about 5.95 bits each).
pub fn random_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut byte = [0u8; 1];
        rng.fill(&mut byte).expect("the system's random numbers");
        // Rejection keeps every letter equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        if usize::from(byte[0]) < limit {
            out.push(ALPHABET[usize::from(byte[0]) % ALPHABET.len()] as char);
        }
    }
    out
}

/// A password file: `name:hash` lines; blank lines and `#` comments are
/// skipped, a malformed line is an error naming it.
pub fn parse_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((name, hash)) if !name.is_empty() && hash.starts_with('$') => {
                users.push((name.to_owned(), hash.to_owned()));
            }
            _ => return Err(format!("line {}: not name:$hash", n + 1)),
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse");
        assert!(h.starts_with("$7$10000$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("correct hors", &h));
        assert_ne!(hash("correct horse"), h, "a fresh salt each time");
        for bad in [
            "",
            "$7$",
            "$7$x$AAAA$AAAA",
            "$7$0$AAAA$AAAA",
            "$9$a$b",
            "plain",
        ] {
            assert!(!verify("", bad), "{bad}");
        }
    }

    #[test]
    fn mosquitto_1_sha512_hashes_are_read() {
        // sha512("secret" + salt) with the salt "0123456789ab".
        let salt = b"0123456789ab";
        let mut ctx = digest::Context::new(&digest::SHA512);
        ctx.update(b"secret");
        ctx.update(salt);
        let stored = format!(
            "$6${}${}",
            B64.encode(salt),
            B64.encode(ctx.finish().as_ref())
        );
        assert!(verify("secret", &stored));
        assert!(!verify("Secret", &stored));
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password(24);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_password(24));
    }

    #[test]
    fn password_files_parse_or_name_the_bad_line() {
        let users = parse_file("# fleet\n\npi-door:$7$1$AA$BB\n").unwrap();
        assert_eq!(users, vec![("pi-door".into(), "$7$1$AA$BB".into())]);
        assert_eq!(
            parse_file("ok:$7$1$A$B\nbroken\n").unwrap_err(),
            "line 2: not name:$hash"
        );
    }
}
