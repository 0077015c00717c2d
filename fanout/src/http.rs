//! HTTP multipart streams that see a slow browser.
//!
//! hyper queues a response body's chunks (several frames' worth) before it
//! writes them, so a body stream that hands out frames as soon as hyper
//! asks would fill that queue with old frames. [`MeteredListener`] counts
//! the bytes each connection writes to its socket; a stream handler gets
//! the count through [`Peer`] and, with [`Pacer`], takes its next frame
//! only once the previous one has left for the kernel, whose unsent data
//! is capped too ([`crate::socket`]). [`serve`] runs a router on such a
//! listener, plain or TLS.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::http::{header, HeaderMap};
use axum::serve::IncomingStream;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::AbortOnDropHandle;

use crate::socket::{self, UnsentCap};

/// Unacknowledged data older than this drops the connection
/// (`TCP_USER_TIMEOUT`), and a stream whose previous frame has not left
/// for this long ends: a browser that stopped reading cannot hold a viewer
/// slot for ever. The same limit as the TCP frame protocol's.
pub const STALL_LIMIT: Duration = crate::tcp::WRITE_STALL_LIMIT;

/// Accepts connections for `axum::serve` and meters what each writes;
/// with TLS, the handshakes run beside the accept loop (a client that
/// never finishes one holds up nobody else).
#[derive(Debug)]
pub struct MeteredListener {
    incoming: Incoming,
    local: io::Result<SocketAddr>,
}

#[derive(Debug)]
enum Incoming {
    Plain(TcpListener),
    Tls {
        handshaken: mpsc::Receiver<(HttpStream, SocketAddr)>,
        _accepting: AbortOnDropHandle<()>,
    },
}

/// TLS handshakes in progress at once; more connections wait in the
/// kernel's backlog.
const MAX_HANDSHAKES: usize = 64;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

impl MeteredListener {
    pub fn new(listener: TcpListener) -> Self {
        let local = listener.local_addr();
        MeteredListener {
            incoming: Incoming::Plain(listener),
            local,
        }
    }

    /// HTTPS: every connection goes through `acceptor` first.
    pub fn with_tls(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = listener.local_addr();
        let (tx, handshaken) = mpsc::channel(MAX_HANDSHAKES);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = crate::tcp::accept_retrying(&listener).await;
                let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
                    return;
                };
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let stream = meter(stream);
                    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((HttpStream::Tls(Box::new(tls)), peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(
                            "TLS handshake with {peer} failed: {e} (an http:// request to the https:// port?)"
                        ),
                        Err(_) => tracing::info!(
                            "TLS handshake with {peer}: not finished in {HANDSHAKE_LIMIT:?}; dropped"
                        ),
                    }
                });
            }
        });
        MeteredListener {
            incoming: Incoming::Tls {
                handshaken,
                _accepting: AbortOnDropHandle::new(accepting),
            },
            local,
        }
    }
}

/// A viewer's socket set up for streaming, its writes metered.
fn meter(stream: TcpStream) -> MeteredStream {
    let cap = socket::prepare_viewer(&stream);
    if let Err(e) = SockRef::from(&stream).set_tcp_user_timeout(Some(STALL_LIMIT)) {
        tracing::debug!("TCP_USER_TIMEOUT: {e}");
    }
    let socket = match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => Some(Arc::new(CappedSocket {
            fd,
            cap: std::sync::Mutex::new(cap),
        })),
        Err(e) => {
            tracing::debug!("no second handle on the socket: {e}");
            None
        }
    };
    MeteredStream {
        stream,
        meter: WriteMeter::default(),
        socket,
    }
}

impl axum::serve::Listener for MeteredListener {
    type Io = HttpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (HttpStream, SocketAddr) {
        match &mut self.incoming {
            Incoming::Plain(listener) => {
                let (stream, peer) = crate::tcp::accept_retrying(listener).await;
                (HttpStream::Plain(meter(stream)), peer)
            }
            Incoming::Tls { handshaken, .. } => match handshaken.recv().await {
                Some(pair) => pair,
                // The accepting task is gone (only when aborted): no more.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.local {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// A connection to the HTTP server: plain or TLS, metered below the TLS
/// (what is counted is what left for the kernel: with TLS a little more
/// than the body, so a pacer never waits too long).
#[derive(Debug)]
pub enum HttpStream {
    Plain(MeteredStream),
    Tls(Box<TlsStream<MeteredStream>>),
}

impl HttpStream {
    fn metered(&self) -> &MeteredStream {
        match self {
            HttpStream::Plain(s) => s,
            HttpStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for HttpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            HttpStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for HttpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HttpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            HttpStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            HttpStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            HttpStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
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
    socket: Option<Arc<CappedSocket>>,
}

/// A second handle on a connection's socket, with its unsent cap (one per
/// connection, whichever request streams on it).
#[derive(Debug)]
struct CappedSocket {
    fd: OwnedFd,
    cap: std::sync::Mutex<UnsentCap>,
}

impl Connected<IncomingStream<'_, MeteredListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, MeteredListener>) -> Self {
        let metered = stream.io().metered();
        Peer {
            addr: *stream.remote_addr(),
            meter: metered.meter.clone(),
            socket: metered.socket.clone(),
        }
    }
}

/// Paces one streaming body by what its connection has written.
#[derive(Debug)]
pub struct Pacer {
    /// `None` when served without a [`MeteredListener`] (tests through
    /// the router alone): then nothing waits.
    peer: Option<Peer>,
    /// Bytes written before the body started (the response head), plus
    /// what the body has handed to hyper since.
    target: u64,
}

impl Pacer {
    pub fn new(peer: Option<&Peer>) -> Self {
        Pacer {
            peer: peer.cloned(),
            target: peer.map_or(0, |p| p.meter.written()),
        }
    }

    /// Sizes the socket's unsent cap for a frame of `len` bytes to a
    /// viewer that keeps up (or is `behind`).
    pub fn fit(&mut self, len: usize, behind: bool) {
        if let Some(socket) = self.peer.as_ref().and_then(|p| p.socket.as_ref()) {
            let mut cap = socket.cap.lock().expect("unsent cap");
            cap.fit(&socket.fd, len, behind);
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
    socket: Option<Arc<CappedSocket>>,
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

/// Whether a request comes from the server's own pages (or from no page
/// at all: curl sends no `Origin`): writes and WebSocket upgrades from
/// another site's page are refused (cross-site request forgery and
/// WebSocket hijacking). `tls`: the server's scheme is https.
pub fn same_origin(headers: &HeaderMap, tls: bool) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let scheme = if tls { "https" } else { "http" };
        return match (origin.to_str().ok(), host) {
            (Some(origin), Some(host)) => origin == format!("{scheme}://{host}"),
            _ => false,
        };
    }
    // Browsers that send no Origin on a write still say where it came from.
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

/// Serves `router` on `listener` (over TLS with `tls`), every connection
/// metered, each request given its [`Peer`] as `ConnectInfo`, until
/// `shutdown` completes; then stops accepting and waits for the open
/// requests to end (endless bodies end on their own closing signal).
/// The node's HTTP server and the viewer's dashboard both run on it.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router.into_make_service_with_connect_info::<Peer>();
    let listener = match tls {
        Some(acceptor) => MeteredListener::with_tls(listener, acceptor),
        None => MeteredListener::new(listener),
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn requests_from_other_sites_are_told_apart() {
        let host = ("host", "cams.lan:8090");
        assert!(same_origin(&headers(&[host]), false), "curl");
        assert!(same_origin(
            &headers(&[host, ("origin", "http://cams.lan:8090")]),
            false
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "http://cams.lan:8090")]),
            true
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "https://evil.example")]),
            false
        ));
        assert!(!same_origin(&headers(&[host, ("origin", "null")]), false));
        assert!(!same_origin(
            &headers(&[host, ("sec-fetch-site", "cross-site")]),
            false
        ));
        assert!(same_origin(
            &headers(&[host, ("sec-fetch-site", "same-origin")]),
            false
        ));
    }
}
