//! One exchange with a node's HTTP server: a request written whole, its
//! reply read through [`super::response`], taking from the connection's
//! buffer exactly the reply's bytes.

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::response::{self, Chunked, Decoded, Framing, Head, ResponseHead};
use super::response::{MAX_BODY, MAX_HEAD, MAX_HEADERS};

/// Interim (1xx) replies skipped before the final one; a node sends none.
const MAX_INTERIM: usize = 4;

/// A node's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Sends `request` (a whole HTTP/1.1 request, head and body) on `io` and
/// reads the reply, whose body may be at most `max_body` bytes (and never
/// over [`MAX_BODY`]). Nothing after the reply is taken from `io`'s
/// buffer, so a kept-alive connection carries the next exchange.
pub async fn request<S>(io: &mut S, request: &[u8], max_body: usize) -> Result<Reply>
where
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    io.write_all(request).await?;
    io.flush().await?;
    read_reply(io, max_body).await
}

/// Reads one reply from `io`, past any interim (1xx) ones: its head, then
/// its body by length, chunks or until the connection closes.
pub async fn read_reply<S>(io: &mut S, max_body: usize) -> Result<Reply>
where
    S: AsyncBufRead + Unpin,
{
    let max_body = max_body.min(MAX_BODY);
    let mut head = read_head(io).await?;
    for _ in 0..MAX_INTERIM {
        if !head.is_interim() {
            break;
        }
        head = read_head(io).await?;
    }
    if head.is_interim() {
        bail!(
            "more than {MAX_INTERIM} interim replies (status {})",
            head.status
        );
    }
    let body = match head.framing() {
        Framing::Empty => Vec::new(),
        Framing::Length(len) => {
            if len > max_body as u64 {
                bail!("a reply body of {len} bytes (at most {max_body})");
            }
            let mut body = vec![0; len as usize];
            io.read_exact(&mut body)
                .await
                .context("the node closed the connection within a reply body")?;
            body
        }
        Framing::UntilClose => {
            let mut body = Vec::new();
            (&mut *io)
                .take(max_body as u64 + 1)
                .read_to_end(&mut body)
                .await?;
            if body.len() > max_body {
                bail!("a reply body over {max_body} bytes");
            }
            body
        }
        Framing::Chunked => read_chunked(io, max_body).await?,
    };
    Ok(Reply {
        status: head.status,
        content_type: head.content_type,
        body,
    })
}

/// Reads one response head, taking exactly its bytes from `io`.
async fn read_head<S: AsyncBufRead + Unpin>(io: &mut S) -> Result<ResponseHead> {
    // Bytes of this head taken so far, never more than MAX_HEAD.
    let mut held = Vec::new();
    loop {
        let available = io.fill_buf().await?;
        if available.is_empty() {
            bail!(if held.is_empty() {
                "the node closed the connection"
            } else {
                "the node closed the connection within a reply head"
            });
        }
        let before = held.len();
        let take = available.len().min(MAX_HEAD - before);
        held.extend_from_slice(&available[..take]);
        match response::parse_head(&held) {
            Head::Incomplete => io.consume(take),
            Head::Complete(head) => {
                // The head ends in what was just added (it did not before).
                io.consume(head.len.saturating_sub(before));
                return Ok(head);
            }
            Head::TooLarge => {
                bail!("a reply head over {MAX_HEAD} bytes or {MAX_HEADERS} lines")
            }
            Head::Malformed => {
                let first = held.split(|&b| b == b'\n').next().unwrap_or_default();
                bail!(
                    "not an HTTP/1.1 reply: {:.60}",
                    String::from_utf8_lossy(first).trim_end()
                )
            }
        }
    }
}

/// Reads a chunked body, taking exactly its bytes from `io`.
async fn read_chunked<S: AsyncBufRead + Unpin>(io: &mut S, max_body: usize) -> Result<Vec<u8>> {
    let mut chunked = Chunked::new(max_body);
    // Part of a line the decoder needs again with more after it.
    let mut held = Vec::new();
    loop {
        let available = io.fill_buf().await?;
        if available.is_empty() {
            bail!("the node closed the connection within a chunked body");
        }
        let before = held.len();
        let take = available.len();
        held.extend_from_slice(available);
        match chunked.feed(&held) {
            Decoded::More(used) => {
                io.consume(take);
                held.drain(..used);
            }
            Decoded::Done(used) => {
                io.consume(used.saturating_sub(before));
                return Ok(chunked.into_body());
            }
            Decoded::TooLarge => {
                bail!("a chunked reply body over {max_body} bytes, or a chunk line over its cap")
            }
            Decoded::Malformed => bail!("a chunked reply body that does not parse"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    /// Reads replies from `bytes` through a buffer of `capacity` bytes.
    async fn replies(bytes: &[u8], capacity: usize, n: usize) -> Vec<Result<Reply>> {
        let mut io = BufReader::with_capacity(capacity, bytes);
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(read_reply(&mut io, 1000).await);
        }
        out
    }

    fn reply(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            content_type: None,
            body: body.to_vec(),
        }
    }

    #[tokio::test]
    async fn replies_read_plain_chunked_and_back_to_back() {
        let wire = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}\
            HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
            HTTP/1.1 204 No Content\r\nContent-Type: text/plain\r\n\r\n\
            HTTP/1.1 404 Not Found\r\n\r\ngone";
        for capacity in [1, 3, 8192] {
            let got = replies(wire, capacity, 5).await;
            let got: Vec<_> = got.into_iter().map(|r| r.ok()).collect();
            let mut no_content = reply(204, b"");
            no_content.content_type = Some("text/plain".into());
            assert_eq!(
                got,
                [
                    Some(reply(201, b"{}")),
                    Some(reply(200, b"abcde")),
                    Some(no_content),
                    Some(reply(404, b"gone")),
                    None,
                ],
                "buffer of {capacity}"
            );
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let long = b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n";
        let err = replies(long, 64, 1).await.remove(0).unwrap_err();
        assert!(err.to_string().contains("1001 bytes"), "{err:#}");
        let mut endless = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        endless.extend_from_slice(&[b'x'; 1001]);
        assert!(replies(&endless, 64, 1).await.remove(0).is_err());
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3E9\r\n".to_vec();
        chunked.extend_from_slice(&[b'x'; 1001]);
        assert!(replies(&chunked, 64, 1).await.remove(0).is_err());
        // MAX_BODY holds whatever a caller asks for.
        let over = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let err = read_reply(&mut BufReader::new(over.as_bytes()), usize::MAX)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at most 4194304"), "{err:#}");
        // At the limit, a body until close still reads.
        let mut fits = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        fits.extend_from_slice(&[b'x'; 1000]);
        assert_eq!(
            replies(&fits, 64, 1).await.remove(0).unwrap().body.len(),
            1000
        );
    }

    #[tokio::test]
    async fn heads_over_the_cap_garbage_and_cut_replies_are_errors() {
        let mut big = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        let err = replies(&big, 8192, 1).await.remove(0).unwrap_err();
        assert!(err.to_string().contains("over"), "{err:#}");
        let err = replies(b"SSH-2.0-OpenSSH\r\n", 8192, 1)
            .await
            .remove(0)
            .unwrap_err();
        assert!(err.to_string().contains("SSH-2.0"), "{err:#}");
        for cut in [
            &b""[..],
            b"HTTP/1.1 200",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
        ] {
            assert!(replies(cut, 8192, 1).await.remove(0).is_err());
        }
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert!(replies(&interim, 8192, 1).await.remove(0).is_err());
    }

    #[tokio::test]
    async fn a_request_is_sent_whole_and_its_reply_read() {
        let (client, mut server) = tokio::io::duplex(4096);
        let node = tokio::spawn(async move {
            let mut request = vec![0; 38];
            server.read_exact(&mut request).await.unwrap();
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                .await
                .unwrap();
            request
        });
        let mut io = BufReader::new(client);
        let request_bytes = b"GET /api/v1/time HTTP/1.1\r\nHost: n\r\n\r\n";
        let got = request(&mut io, request_bytes, 100).await.unwrap();
        assert_eq!(node.await.unwrap(), request_bytes);
        assert_eq!(got.status, 200);
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        assert_eq!(got.body, b"{}");
    }
}
