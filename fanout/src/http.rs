//! HTTP multipart streams that see a slow browser.
//!
//! hyper queues a response body's chunks (several frames' worth) before it
//! writes them, so a body stream that hands out frames as soon as hyper
//! asks would fill that queue with old frames. [`MeteredListener`] counts
//! the bytes each connection writes to its socket; a stream handler gets
//! the count through [`Peer`] and, with [`Pacer`], takes its next frame
//! only once the previous one has left for the kernel, whose unsent data
//! is capped too ([`crate::socket`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::socket::{self, UnsentCap};

/// Unacknowledged data older than this drops the connection
/// (`TCP_USER_TIMEOUT`), and a stream whose previous frame has not left
/// for this long ends: a browser that stopped reading cannot hold a viewer
/// slot for ever. The same limit as the TCP frame protocol's.
pub const STALL_LIMIT: Duration = crate::tcp::WRITE_STALL_LIMIT;

/// Accepts connections for `axum::serve` and meters what each writes.
#[derive(Debug)]
pub struct MeteredListener {
    listener: TcpListener,
}

impl MeteredListener {
    pub fn new(listener: TcpListener) -> Self {
        MeteredListener { listener }
    }
}

impl axum::serve::Listener for MeteredListener {
    type Io = MeteredStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (MeteredStream, SocketAddr) {
        let (stream, peer) = crate::tcp::accept_retrying(&self.listener).await;
        socket::prepare_viewer(&stream);
        if let Err(e) = SockRef::from(&stream).set_tcp_user_timeout(Some(STALL_LIMIT)) {
            tracing::debug!("TCP_USER_TIMEOUT: {e}");
        }
        let socket = match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => Some(Arc::new(fd)),
            Err(e) => {
                tracing::debug!("no second handle on the socket: {e}");
                None
            }
        };
        let meter = WriteMeter::default();
        let stream = MeteredStream {
            stream,
            meter,
            socket,
        };
        (stream, peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Bytes a connection has written to its socket, and a wake-up per write.
#[derive(Debug, Clone, Default)]
pub struct WriteMeter(Arc<MeterInner>);

#[derive(Debug, Default)]
struct MeterInner {
    written: AtomicU64,
    wrote: Notify,
}

impl WriteMeter {
    fn add(&self, n: usize) {
        if n > 0 {
            self.0.written.fetch_add(n as u64, Ordering::Release);
            self.0.wrote.notify_waiters();
        }
    }

    pub fn written(&self) -> u64 {
        self.0.written.load(Ordering::Acquire)
    }

    /// Waits until at least `bytes` have been written.
    async fn reach(&self, bytes: u64) {
        loop {
            let wrote = self.0.wrote.notified();
            tokio::pin!(wrote);
            wrote.as_mut().enable();
            if self.written() >= bytes {
                return;
            }
            wrote.await;
        }
    }
}

/// The connection of a request, as `ConnectInfo<Peer>`.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub meter: WriteMeter,
    /// The connection's socket, for its unsent cap.
    socket: Option<Arc<OwnedFd>>,
}

impl Connected<IncomingStream<'_, MeteredListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, MeteredListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            meter: stream.io().meter.clone(),
            socket: stream.io().socket.clone(),
        }
    }
}

/// Paces one streaming body by what its connection has written.
#[derive(Debug)]
pub struct Pacer {
    /// `None` when served without a [`MeteredListener`] (tests through
    /// the router alone): then nothing waits.
    peer: Option<Peer>,
    cap: UnsentCap,
    /// Bytes written before the body started (the response head), plus
    /// what the body has handed to hyper since.
    target: u64,
}

impl Pacer {
    pub fn new(peer: Option<&Peer>) -> Self {
        Pacer {
            peer: peer.cloned(),
            cap: UnsentCap::default(),
            target: peer.map_or(0, |p| p.meter.written()),
        }
    }

    /// Sizes the socket's unsent cap for a frame of `len` bytes to a
    /// viewer that keeps up (or is `behind`).
    pub fn fit(&mut self, len: usize, behind: bool) {
        if let Some(socket) = self.peer.as_ref().and_then(|p| p.socket.as_ref()) {
            self.cap.fit(socket.as_ref(), len, behind);
        }
    }

    /// Counts bytes the body hands to hyper.
    pub fn count(&mut self, bytes: usize) {
        self.target += bytes as u64;
    }

    /// Waits until the connection has written what the body handed out
    /// (give or take hyper's few bytes of chunk framing); false when that
    /// took longer than [`STALL_LIMIT`].
    pub async fn wait_written(&self) -> bool {
        let Some(peer) = &self.peer else {
            return true;
        };
        tokio::time::timeout(STALL_LIMIT, peer.meter.reach(self.target))
            .await
            .is_ok()
    }
}

/// A connection's socket with its bytes written counted.
#[derive(Debug)]
pub struct MeteredStream {
    stream: TcpStream,
    meter: WriteMeter,
    socket: Option<Arc<OwnedFd>>,
}

impl AsyncRead for MeteredStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for MeteredStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.meter.add(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.meter.add(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
