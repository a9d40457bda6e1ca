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
/// must go out at once) and a bounded send buffer.
#[derive(Clone, Copy, Debug)]
pub struct SocketOptions {
    pub send_buffer_bytes: usize,
}

impl SocketOptions {
    pub fn apply(&self, tcp: &tokio::net::TcpStream) {
        let _ = tcp.set_nodelay(true);
        if self.send_buffer_bytes > 0 {
            let _ = socket2::SockRef::from(tcp).set_send_buffer_size(self.send_buffer_bytes);
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
