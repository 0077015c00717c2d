//! A viewer reading TCP frame protocol v1 the way a third-party client would.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use shared::frame::{FrameHeader, HEADER_LEN, HELLO};

use super::wait_for;

/// A viewer reading TCP frame protocol v1 the way a third-party client would.
pub struct FrameClient {
    stream: TcpStream,
}

#[derive(Debug)]
pub struct Received {
    pub seq: u64,
    pub captured_at_us: u64,
    pub jpeg: Vec<u8>,
}

impl FrameClient {
    pub fn connect(port: u16) -> Self {
        let stream = wait_for("the TCP frame port", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut client = FrameClient { stream };
        let mut hello = [0u8; 11];
        client
            .stream
            .read_exact(&mut hello)
            .expect("read the hello");
        assert_eq!(&hello, HELLO, "the node must greet with CAMFLEET/1");
        client
    }

    /// The next frame; the test fails when none comes ([`Self::try_next`]
    /// is the iterator-like one).
    // Exported from a library now, where clippy asks for `Iterator`; a
    // client that fails the test instead of ending is not one.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Received {
        self.try_next().expect("read a frame")
    }

    /// The next frame, or `None` once the read times out or the stream ends.
    pub fn try_next(&mut self) -> Option<Received> {
        let mut head = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut head).ok()?;
        let h = FrameHeader::decode(&head);
        let mut jpeg = vec![0u8; h.len as usize];
        self.stream.read_exact(&mut jpeg).ok()?;
        Some(Received {
            seq: h.seq,
            captured_at_us: h.captured_at_us,
            jpeg,
        })
    }

    /// Waits longer for each frame (a node under emulation).
    pub fn patient(self, limit: Duration) -> Self {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        self
    }

    /// A client that connects and then never reads.
    pub fn stalled(port: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nonblocking(false).unwrap();
        s
    }

    pub fn raw(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// A socket with a small receive buffer that reads at most `rate` bytes a
/// second: a viewer on a slow link.
pub struct SlowLink {
    pub stream: TcpStream,
    rate: f64,
    started: Instant,
    taken: u64,
}

impl SlowLink {
    /// The receive buffer of the viewer in the issue: 32 KiB.
    pub const RECEIVE_BUFFER: usize = 32 * 1024;
    pub const CHUNK: usize = 4096;

    pub fn connect(addr: SocketAddr, rate: f64) -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        socket
            .set_recv_buffer_size(Self::RECEIVE_BUFFER)
            .expect("SO_RCVBUF");
        socket.connect(&addr.into()).expect("connect");
        let stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        SlowLink {
            stream,
            rate,
            started: Instant::now(),
            taken: 0,
        }
    }
}

impl Read for SlowLink {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Pacing a reader's byte rate, not waiting for anything.
        let due = self.started + Duration::from_secs_f64(self.taken as f64 / self.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let len = buf.len().min(Self::CHUNK);
        let n = self.stream.read(&mut buf[..len])?;
        self.taken += n as u64;
        Ok(n)
    }
}
