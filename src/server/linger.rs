//! A connection that, when closed, reads and discards what the client still sends
//! (up to a bound) before it lets go of the socket.
//!
//! HTTP/1.1 has no way to refuse the rest of a body but closing the connection:
//! hyper answers (413, 404…) without reading an unwanted body, then closes. Closing
//! a TCP socket with unread data in it makes the kernel send a reset, and a reset
//! can throw away the answer before the client has read it: the client sees a
//! broken pipe or EOF instead of the error. Go's net/http server has the same
//! problem and waits after closing its write side (`closeWriteAndWait`); this also
//! reads meanwhile, so a client that finishes sending is never reset at all.
//!
//! Hand-written: neither hyper nor tokio has this, and SO_LINGER does the opposite
//! (it waits for *our* unsent data, not for the client's).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a closing connection keeps reading: the client has its answer and our
/// end of the stream by then.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// The most a closing connection reads and throws away.
pub const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// `inner`, whose shutdown (after the answer is flushed) first ends our half of the
/// stream, then reads until the client ends its half, [`LINGER_TIME`] passes or
/// [`LINGER_BYTES`] have been read.
pub struct Lingering<S> {
    inner: S,
    state: State,
}

enum State {
    Open,
    Draining { until: Pin<Box<Sleep>>, left: usize },
    Closed,
}

impl<S> Lingering<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Open,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    // TLS close_notify, then FIN: the client learns the answer is all.
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.state = State::Draining {
                        until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        left: LINGER_BYTES,
                    };
                }
                State::Draining { until, left } => {
                    if until.as_mut().poll(cx).is_ready() {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 16 * 1024];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len());
                            if *left == 0 {
                                this.state = State::Closed;
                            }
                        }
                        // The client closed its half (or the connection broke): done.
                        Ok(()) | Err(_) => this.state = State::Closed,
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn shutdown_reads_what_the_client_still_sends_until_it_closes() {
        let (client, server) = tokio::io::duplex(1024);
        let mut server = Lingering::new(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        server.write_all(b"413").await.unwrap();
        // The client is still sending, far more than the pipe holds…
        let sender = tokio::spawn(async move {
            for _ in 0..64 {
                client_write.write_all(&[b'x'; 1024]).await.unwrap();
            }
            client_write.shutdown().await.unwrap();
        });
        // …and the shutdown drains it, so the sender never blocks for good.
        server.shutdown().await.unwrap();
        sender.await.unwrap();
        let mut answer = Vec::new();
        client_read.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"413", "the answer, then the end of the stream");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_up_after_the_linger_time() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut server = Lingering::new(server);
        // The client neither sends nor closes: the bound ends the wait.
        server.shutdown().await.unwrap();
    }
}
