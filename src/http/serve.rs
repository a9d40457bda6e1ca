//! Serving the routes: on plain TCP or TLS, with the socket options every connection gets.

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The HTTP listener: plain TCP, or TLS with this server config.
pub struct HttpListener {
    pub tcp: TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Socket options for every accepted connection: no Nagle delay (prices are small writes that
/// must go out at once), a bounded send buffer, and a limit on how long sent data may stay
/// unacknowledged.
#[derive(Clone, Copy, Debug)]
pub struct SocketOptions {
    pub send_buffer_bytes: usize,
    /// `TCP_USER_TIMEOUT` (0: the kernel's default): the kernel drops a connection whose peer has
    /// not taken data for this long, a full receive window included. A client that stops reading
    /// an event stream otherwise keeps its connection, and the server's buffered bytes, for as
    /// long as it answers the kernel's zero-window probes: after the session has given up on it
    /// (write timeout), only the kernel can close that socket under the HTTP server.
    pub user_timeout_ms: u64,
}

impl SocketOptions {
    pub fn apply(&self, tcp: &tokio::net::TcpStream) {
        let _ = tcp.set_nodelay(true);
        if self.send_buffer_bytes > 0 {
            let _ = socket2::SockRef::from(tcp).set_send_buffer_size(self.send_buffer_bytes);
        }
        #[cfg(target_os = "linux")]
        if self.user_timeout_ms > 0 {
            use std::os::fd::AsRawFd;
            let ms = self.user_timeout_ms.min(u32::MAX as u64) as libc::c_uint;
            // SAFETY: setsockopt on a socket this process owns, with a pointer to a c_uint that
            // lives across the call; a failure leaves the kernel's default.
            unsafe {
                libc::setsockopt(
                    tcp.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_USER_TIMEOUT,
                    (&ms as *const libc::c_uint).cast(),
                    std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
                );
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
