//! MJPEG for browsers: a `multipart/x-mixed-replace` body, one part per
//! JPEG, paced by what the connection has written ([`crate::http`]): for
//! the node's camera streams and the viewer's dashboard tiles.
//!
//! Each part is its headers, the JPEG as it came (no copy) and then the
//! boundary. A browser shows a part once it sees the boundary that ends
//! it, so writing the boundary right after the JPEG, rather than before
//! the next one, shows each frame at once instead of one frame late.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_lite::stream::{self, Boxed, Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::http::{Pacer, Peer, STALL_LIMIT};
use crate::Reader;

/// The multipart boundary between JPEGs.
pub const BOUNDARY: &str = "camfleetframe";
/// The stream's `Content-Type`, naming [`BOUNDARY`].
pub const CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=camfleetframe";
/// The body's first line.
const FIRST_BOUNDARY: &[u8] = b"--camfleetframe\r\n";
/// What follows every JPEG: the end of its part.
const PART_END: &[u8] = b"\r\n--camfleetframe\r\n";

/// One JPEG for a multipart stream.
#[derive(Debug, Clone)]
pub struct Part {
    pub jpeg: Bytes,
    /// Capture time, microseconds since the Unix epoch: sent as
    /// `X-Timestamp` (seconds) when known.
    pub captured_at_us: Option<u64>,
    /// The viewer skipped frames to get this one: the socket's unsent cap
    /// is sized for catching up ([`crate::socket::UnsentCap`]).
    pub behind: bool,
}

impl Part {
    /// The part's headers, ending with the blank line before the JPEG.
    fn head(&self) -> String {
        let mut head = format!(
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\n",
            self.jpeg.len()
        );
        if let Some(us) = self.captured_at_us {
            head.push_str(&format!("X-Timestamp: {:.6}\r\n", us as f64 / 1e6));
        }
        head.push_str("\r\n");
        head
    }
}

/// An endless MJPEG response body: the next frame is taken only once the
/// previous one has left for the kernel, so a browser that keeps up gets
/// every frame and a slow one the newest. It ends when `closing` is
/// cancelled, when the frames end, or when a frame has not left within
/// [`STALL_LIMIT`] (a browser that stopped reading).
pub struct MjpegStream {
    frames: Boxed<Part>,
    pacer: Pacer,
    closing: CancellationToken,
    /// Bytes to hand out before the next frame is chosen.
    pending: VecDeque<Bytes>,
    /// Names the stream in the log (the camera).
    label: String,
}

impl std::fmt::Debug for MjpegStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MjpegStream")
            .field("label", &self.label)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl MjpegStream {
    /// A stream of the parts `frames` yields, to the connection `peer`
    /// (`None` without a [`crate::http::MeteredListener`]: then nothing
    /// waits). `frames` is polled only when the previous part has left, so
    /// it should give the newest frame it has, or wait for one.
    pub fn new(
        frames: impl Stream<Item = Part> + Send + 'static,
        peer: Option<&Peer>,
        closing: CancellationToken,
        label: impl Into<String>,
    ) -> Self {
        MjpegStream {
            frames: frames.boxed(),
            pacer: Pacer::new(peer),
            closing,
            pending: VecDeque::from([Bytes::from_static(FIRST_BOUNDARY)]),
            label: label.into(),
        }
    }

    /// A stream of a hub's frames through the viewer cursor `reader`, with
    /// their capture times.
    pub fn from_reader(reader: Reader, peer: Option<&Peer>, closing: CancellationToken) -> Self {
        let label = reader.hub().camera_id().to_owned();
        let frames = stream::unfold(reader, |mut reader| async move {
            let frame = reader.next().await;
            let part = Part {
                jpeg: frame.data,
                captured_at_us: Some(frame.captured_at_us),
                behind: reader.is_behind(),
            };
            Some((part, reader))
        });
        MjpegStream::new(frames, peer, closing, label)
    }

    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if let Some(bytes) = self.pending.pop_front() {
            self.pacer.count(bytes.len());
            return Some((Ok(bytes), self));
        }
        // The previous frame must have left before the next is chosen.
        let written = tokio::select! {
            _ = self.closing.cancelled() => return None,
            written = self.pacer.wait_written() => written,
        };
        if !written {
            tracing::info!(
                camera = %self.label,
                "HTTP viewer dropped: took over {} s to accept one frame",
                STALL_LIMIT.as_secs()
            );
            return None;
        }
        let part = tokio::select! {
            _ = self.closing.cancelled() => return None,
            part = self.frames.next() => part?,
        };
        let head = part.head();
        self.pacer
            .fit(head.len() + part.jpeg.len() + PART_END.len(), part.behind);
        self.pending.push_back(part.jpeg);
        self.pending.push_back(Bytes::from_static(PART_END));
        self.pacer.count(head.len());
        Some((Ok(Bytes::from(head)), self))
    }
}

impl IntoResponse for MjpegStream {
    /// The stream with its `Content-Type` and `Cache-Control: no-store`.
    fn into_response(self) -> Response {
        let body = Body::from_stream(stream::unfold(self, MjpegStream::next));
        (
            [
                (header::CONTENT_TYPE, CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_type_names_the_boundary() {
        assert_eq!(
            CONTENT_TYPE,
            format!("multipart/x-mixed-replace; boundary={BOUNDARY}")
        );
        assert_eq!(FIRST_BOUNDARY, format!("--{BOUNDARY}\r\n").as_bytes());
        assert_eq!(PART_END, format!("\r\n--{BOUNDARY}\r\n").as_bytes());
    }

    #[tokio::test]
    async fn each_jpeg_is_followed_by_the_boundary() {
        let jpegs: [&'static [u8]; 2] = [b"\xFF\xD8one\xFF\xD9", b"\xFF\xD8two\xFF\xD9"];
        let parts = jpegs.map(|jpeg| Part {
            jpeg: Bytes::from_static(jpeg),
            captured_at_us: Some(1_700_000_000_250_000),
            behind: false,
        });
        let mut body = Vec::new();
        let mut rest =
            MjpegStream::new(stream::iter(parts), None, CancellationToken::new(), "cam0");
        while let Some((Ok(bytes), more)) = rest.next().await {
            body.extend_from_slice(&bytes);
            rest = more;
        }
        let mut want = b"--camfleetframe\r\n".to_vec();
        for jpeg in jpegs {
            want.extend_from_slice(
                b"Content-Type: image/jpeg\r\nContent-Length: 7\r\nX-Timestamp: 1700000000.250000\r\n\r\n",
            );
            want.extend_from_slice(jpeg);
            want.extend_from_slice(b"\r\n--camfleetframe\r\n");
        }
        assert_eq!(body, want, "{}", String::from_utf8_lossy(&body));
    }

    #[tokio::test]
    async fn a_cancelled_stream_ends_before_its_next_frame() {
        let closing = CancellationToken::new();
        let frames = stream::pending::<Part>();
        let first = MjpegStream::new(frames, None, closing.clone(), "cam0");
        let (_, rest) = first.next().await.expect("the first boundary");
        closing.cancel();
        assert!(rest.next().await.is_none());
    }
}
