//! Whole TLS records for HTTP/2. The h2 codec writes each DATA frame as its 9-byte
//! head and its payload (16,384 bytes by default): rustls seals every write on its own,
//! so a download went out as a 31-byte record plus a 16,406-byte record per frame, one
//! `writev` each (strace of a 250 MiB download: 14,121 × [31, 16406]). Here frames
//! are gathered into runs of up to [`RUN`] bytes before they reach TLS, which then seals
//! full 16 KiB records and writes a run with one `writev`. The codec flushes after
//! every DATA frame (its encoder holds one at a time), so a flush alone cannot mean
//! "nothing more for now": the first flush after new bytes yields once (the task is
//! woken at once and polled again, and meanwhile the codec or a body may queue the next
//! frame); a flush with nothing new since that yield writes the run out, so nothing
//! waits for a later frame.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

/// Bytes gathered before they go to TLS: four full records at most, one at least
/// (the run follows the connection's share of the TLS send budget).
pub const RUN: usize = 64 << 10;
const RECORD: usize = 16 << 10;

/// A writer that hands `inner` runs of up to [`RUN`] bytes (when `on`; otherwise it
/// passes every call through).
pub struct Coalesce<T> {
    inner: T,
    on: bool,
    /// The run's size: [`RECORD`]..=[`RUN`].
    run: usize,
    buf: Vec<u8>,
    /// How much of `buf` has gone to `inner`.
    sent: usize,
    /// A run filled up since the last flush: the buffer is kept for the next one (a
    /// download in progress); otherwise it is released at the flush, so an idle or
    /// small-answer connection holds none.
    filled: bool,
    /// A flush yielded with these bytes gathered and nothing was written since.
    yielded: bool,
}

impl<T> Coalesce<T> {
    pub fn new(inner: T, on: bool) -> Coalesce<T> {
        Coalesce {
            inner,
            on,
            run: RUN,
            buf: Vec::new(),
            sent: 0,
            filled: false,
            yielded: false,
        }
    }

    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Gather up to `bytes` (within [`RECORD`]..=[`RUN`]) before writing.
    pub fn set_run(&mut self, bytes: usize) {
        self.run = bytes.clamp(RECORD, RUN);
    }

    #[cfg(test)]
    fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Write out the gathered bytes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Room for more: drains a full run first.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.len() >= self.run {
            self.filled = true;
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(self.run.saturating_sub(self.buf.len())))
    }

    /// Append, growing the buffer no further than a run.
    fn gather(&mut self, data: &[u8]) {
        let need = self.buf.len() + data.len();
        if need > self.buf.capacity() {
            let to = (self.buf.capacity() * 2).max(need).min(self.run);
            self.buf.reserve_exact(to - self.buf.len());
        }
        self.buf.extend_from_slice(data);
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if !this.on {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        let room = ready!(this.poll_room(cx))?;
        let n = room.min(data.len());
        this.gather(&data[..n]);
        this.yielded = false;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if !this.on {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        let mut room = ready!(this.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            let take = room.min(b.len());
            this.gather(&b[..take]);
            n += take;
            room -= take;
            if room == 0 {
                break;
            }
        }
        this.yielded = false;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        // Both parts of a frame in one call: they are copied into the run anyway.
        self.on || self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.on
            && this.sent == 0
            && !this.buf.is_empty()
            && this.buf.len() < this.run
            && !this.yielded
        {
            // More may come before this task is polled again; see the module's comment.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.yielded = false;
        if !std::mem::take(&mut this.filled) {
            this.buf = Vec::new();
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records what reaches it, one entry per write.
    #[derive(Default)]
    struct Writes(Vec<usize>, Vec<u8>);

    impl AsyncWrite for Writes {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            this.0.push(data.len());
            this.1.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_reach_tls_in_full_runs_and_a_flush_sends_the_rest() {
        let mut w = Coalesce::new(Writes::default(), true);
        let mut sent = Vec::new();
        for i in 0..20u8 {
            let head = [i; 9];
            let payload = vec![i; 16_384];
            let parts = [IoSlice::new(&head), IoSlice::new(&payload)];
            let mut done = 0;
            while done < head.len() + payload.len() {
                let rest: Vec<IoSlice<'_>> = if done < head.len() {
                    vec![IoSlice::new(&head[done..]), IoSlice::new(&payload)]
                } else {
                    vec![IoSlice::new(&payload[done - head.len()..])]
                };
                done += w.write_vectored(&rest).await.unwrap();
            }
            // The codec flushes after every frame: that alone writes nothing out
            // unless a run is full (the flush yields; the next frame comes first).
            let _ = futures_util::FutureExt::now_or_never(w.flush());
            let _ = parts;
            sent.extend_from_slice(&head);
            sent.extend_from_slice(&payload);
        }
        w.flush().await.unwrap();
        let writes = &w.get_ref().0;
        assert_eq!(w.get_ref().1, sent, "bytes changed or reordered");
        let (last, full) = writes.split_last().unwrap();
        assert!(full.iter().all(|&n| n == RUN), "{writes:?}");
        assert_eq!(full.len() * RUN + last, sent.len());
        // A small answer is written at its flush, and leaves no buffer behind.
        let mut w = Coalesce::new(Writes::default(), true);
        w.write_all(b"small").await.unwrap();
        assert!(w.get_ref().0.is_empty());
        w.flush().await.unwrap();
        assert_eq!(w.get_ref().0, vec![5]);
        assert_eq!(w.buf.capacity(), 0);
    }
}
