//! The request side of a push connection: RTSP requests over the
//! connection the push streams on, their replies read past any
//! interleaved data, and a 401 answered once with Basic or Digest (RFC
//! 2617; Digest preferred when offered) from the URL's user and password.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

use super::reply::{self, Framed, Reply, MAX_BODY, MAX_FRAMED, MAX_HEAD, MAX_HEADERS};
use super::{PushUrl, REQUEST_LIMIT};
use crate::auth::{digest_fields, md5_hex};

/// The request side of a push connection.
pub(super) struct Client<'a, R> {
    pub(super) read: BufReader<R>,
    pub(super) cseq: u32,
    pub(super) url: &'a PushUrl,
    /// The Authorization scheme the server asked for, once it did.
    pub(super) auth: Option<Challenge>,
}

#[derive(Debug, Clone)]
pub(super) enum Challenge {
    Basic,
    Digest { realm: String, nonce: String },
}

impl<R: AsyncRead + Unpin> Client<'_, R> {
    /// Sends a request and reads its reply; a 401 is answered once with
    /// the credentials of the URL.
    pub(super) async fn call(
        &mut self,
        write: &mut tokio::net::tcp::OwnedWriteHalf,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply> {
        for attempt in 0..2 {
            self.cseq += 1;
            let mut request = format!(
                "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: camfleet\r\n",
                self.cseq
            );
            for (k, v) in headers {
                request.push_str(&format!("{k}: {v}\r\n"));
            }
            if let Some(auth) = self.authorization(method, url) {
                request.push_str(&format!("Authorization: {auth}\r\n"));
            }
            if !body.is_empty() {
                request.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            request.push_str("\r\n");
            let mut bytes = request.into_bytes();
            bytes.extend_from_slice(body);
            tokio::time::timeout(REQUEST_LIMIT, write.write_all(&bytes))
                .await
                .map_err(|_| {
                    anyhow!(
                        "{method}: the server took no request for {} s",
                        REQUEST_LIMIT.as_secs()
                    )
                })??;
            let reply = tokio::time::timeout(REQUEST_LIMIT, self.reply())
                .await
                .map_err(|_| {
                    anyhow!("{method}: no reply within {} s", REQUEST_LIMIT.as_secs())
                })??;
            match reply.status {
                200..=299 => return Ok(reply),
                401 if attempt == 0 && self.url.credentials.is_some() => {
                    self.auth = Some(challenge(&reply).context("401 without a challenge we know")?);
                }
                401 if self.url.credentials.is_none() => {
                    bail!("{method}: the server wants a user name and password (401): put them in the push URL")
                }
                401 => bail!("{method}: the server refused the user name or password (401)"),
                status => bail!("{method}: the server answered {status} {}", reply.reason),
            }
        }
        unreachable!("the second attempt returns")
    }

    fn authorization(&self, method: &str, uri: &str) -> Option<String> {
        let (user, pass) = self.url.credentials.as_ref()?;
        match self.auth.as_ref()? {
            Challenge::Basic => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                Some(format!("Basic {token}"))
            }
            Challenge::Digest { realm, nonce } => {
                let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
                let ha2 = md5_hex(&format!("{method}:{uri}"));
                let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
                Some(format!(
                    "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\""
                ))
            }
        }
    }

    /// Reads one reply, skipping interleaved data that comes before it
    /// ([`reply::frame`]); what follows the reply stays in `self.read`.
    async fn reply(&mut self) -> Result<Reply> {
        // Bytes of the packet or reply at the front, taken from `self.read`.
        let mut held = Vec::new();
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                bail!("the server closed the connection");
            }
            let before = held.len();
            let take = available.len().min(MAX_FRAMED - before);
            held.extend_from_slice(&available[..take]);
            match reply::frame(&held) {
                Framed::Incomplete => self.read.consume(take),
                Framed::Skip(len) => {
                    // It ends in what was just added (it did not before).
                    self.read.consume(len.saturating_sub(before));
                    held.clear();
                }
                Framed::Reply(reply, len) => {
                    self.read.consume(len.saturating_sub(before));
                    return Ok(reply);
                }
                Framed::TooLarge => bail!(
                    "the server's reply is over {MAX_HEAD} bytes of head, {MAX_HEADERS} header lines or {MAX_BODY} bytes of body"
                ),
                Framed::Malformed => {
                    let first = held.split(|&b| b == b'\n').next().unwrap_or_default();
                    bail!(
                        "not an RTSP reply: {:.60}",
                        String::from_utf8_lossy(first).trim_end()
                    )
                }
            }
        }
    }
}

/// The scheme a 401 asks for: Digest when offered, else Basic.
fn challenge(reply: &Reply) -> Option<Challenge> {
    let offered: Vec<&str> = reply
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    for value in &offered {
        if let Some(params) = value
            .strip_prefix("Digest ")
            .or_else(|| value.strip_prefix("digest "))
        {
            let fields = digest_fields(params);
            let get = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v.clone())
            };
            return Some(Challenge::Digest {
                realm: get("realm")?,
                nonce: get("nonce")?,
            });
        }
    }
    offered
        .iter()
        .any(|v| v.to_ascii_lowercase().starts_with("basic"))
        .then_some(Challenge::Basic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn replies_are_read_past_interleaved_data_and_no_further() {
        let url = PushUrl::parse("rtsp://h/dir").unwrap();
        let wire = b"$\x01\x00\x03abc\r\n\
            RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 2\r\n\r\nhi\
            RTSP/1.0 200 OK\r\nCSeq: 2\r\nSession: 42\r\n\r\n\
            $\x00\x00\x01z";
        for capacity in [1, 5, 8192] {
            let mut client: Client<'_, &[u8]> = Client {
                read: BufReader::with_capacity(capacity, &wire[..]),
                cseq: 0,
                url: &url,
                auth: None,
            };
            let first = client.reply().await.unwrap();
            assert_eq!((first.status, first.header("cseq")), (200, Some("1")));
            let second = client.reply().await.unwrap();
            assert_eq!(second.header("session"), Some("42"));
            // What comes after the last reply is left for the stream's reader.
            let mut rest = Vec::new();
            client.read.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"$\x00\x00\x01z", "buffer of {capacity}");
            let err = client.reply().await.unwrap_err();
            assert!(err.to_string().contains("closed"), "{err:#}");
        }
        let mut client: Client<'_, &[u8]> = Client {
            read: BufReader::new(&b"GET_PARAMETER rtsp://h/dir RTSP/1.0\r\n\r\n"[..]),
            cseq: 0,
            url: &url,
            auth: None,
        };
        let err = client.reply().await.unwrap_err();
        assert!(
            err.to_string().contains("not an RTSP reply: GET_PARAMETER"),
            "{err:#}"
        );
    }

    #[test]
    fn digest_is_preferred_and_answered_as_rfc_2617_says() {
        let reply = Reply {
            status: 401,
            reason: "Unauthorized".into(),
            headers: vec![
                ("WWW-Authenticate".into(), "Basic realm=\"x\"".into()),
                (
                    "WWW-Authenticate".into(),
                    "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"".into(),
                ),
            ],
        };
        let Some(Challenge::Digest { realm, nonce }) = challenge(&reply) else {
            panic!("digest expected");
        };
        assert_eq!(realm, "testrealm@host.com");
        let url = PushUrl::parse("rtsp://Mufasa:Circle%20Of%20Life@h/dir").unwrap();
        let client: Client<'_, &[u8]> = Client {
            read: BufReader::new(&[][..]),
            cseq: 0,
            url: &url,
            auth: Some(Challenge::Digest { realm, nonce }),
        };
        let auth = client.authorization("GET", "/dir/index.html").unwrap();
        assert!(auth.starts_with("Digest username=\"Mufasa\""), "{auth}");
        // RFC 2617 3.5's example (without qop): the password decoded.
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = md5_hex("GET:/dir/index.html");
        let want = md5_hex(&format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}"));
        assert!(auth.contains(&format!("response=\"{want}\"")), "{auth}");
    }
}
