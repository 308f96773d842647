//! A connection whose peer stops reading is closed: each write may wait at most [`WRITE_STALL`] for room in the
//! socket. Without it a client that pipelines requests and never reads its answers holds its connection (and the
//! relay's shutdown, which waits for connections to end) for ever.
//! Must not: know HTTP; it wraps any byte stream.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a write may wait for the peer to read. A real client reads its answer at once; the panel's largest
/// asset leaves the kernel's buffers in well under a second even on a slow phone line.
pub const WRITE_STALL: Duration = Duration::from_secs(20);

/// `T` whose writes fail with `TimedOut` after waiting [`WRITE_STALL`] without progress.
pub struct WriteLimit<T> {
    inner: T,
    stall: Duration,
    /// Running while a write waits; dropped at its progress.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteLimit<T> {
    pub fn new(inner: T) -> Self {
        Self::with_stall(inner, WRITE_STALL)
    }

    pub fn with_stall(inner: T, stall: Duration) -> Self {
        Self {
            inner,
            stall,
            waiting: None,
        }
    }

    /// What a write that is not ready yet comes to: still waiting, or given up.
    fn waited<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let stall = self.stall;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(waiting.as_mut().poll(cx));
        self.waiting = None;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading",
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteLimit<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteLimit<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.waited(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.waited(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.waited(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.waited(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn a_peer_that_stops_reading_ends_the_write_and_one_that_reads_does_not() {
        let stall = Duration::from_secs(2);
        let (near, mut far) = tokio::io::duplex(64);
        let mut limited = WriteLimit::with_stall(near, stall);
        // The peer reads in small bites but keeps reading: every write goes through, however long the whole takes.
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 4096];
            let mut total = 0;
            while total < got.len() {
                tokio::time::sleep(Duration::from_millis(5)).await;
                total += far.read(&mut got[total..]).await.unwrap();
            }
            far
        });
        limited.write_all(&[7; 4096]).await.unwrap();
        let far = reader.await.unwrap();
        // Now it stops reading: the write that finds no room fails after the stall, not before.
        let started = tokio::time::Instant::now();
        let err = limited.write_all(&[7; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= stall);
        drop(far);
    }
}
