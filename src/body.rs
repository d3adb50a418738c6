//! The one body type every phase passes around, and the idle-timeout wrapper that
//! gives streamed bodies nginx's "timeout between two reads" semantics.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Boxed error for bodies: hyper errors, I/O errors, timeouts.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body. Never collected whole by the proxy.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body with the whole content in hand (our own small answers).
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Box any body whose error converts into [`BoxError`].
pub fn boxed<B>(b: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

/// Error returned when a body sees no data for longer than its idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?} (read timeout)")]
pub struct IdleTimeout(pub Duration);

/// Wraps a body so that waiting longer than `timeout` for the next frame is an error,
/// like nginx's `proxy_read_timeout` / `client_body_timeout`: the timer runs between
/// two successive reads, not over the whole transfer, so a 10 GiB layer may take hours.
pub struct Idle<B> {
    inner: B,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<B> Idle<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Idle {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> HttpBody for Idle<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeout(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body passed through unchanged while someone watches it: `on_data` sees the size
/// of every data frame, `on_drop` runs once when the body is finished with (ended,
/// failed or abandoned by a client that went away). Byte counts, connection release
/// and the access log all hang on this one wrapper.
pub struct Watched<B> {
    inner: B,
    on_data: Option<Box<dyn FnMut(usize) + Send>>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl<B> Watched<B> {
    pub fn new(inner: B) -> Self {
        Watched {
            inner,
            on_data: None,
            on_drop: None,
        }
    }

    pub fn on_data(mut self, f: impl FnMut(usize) + Send + 'static) -> Self {
        self.on_data = Some(Box::new(f));
        self
    }

    pub fn on_drop(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_drop = Some(Box::new(f));
        self
    }
}

impl<B> Drop for Watched<B> {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

impl<B> HttpBody for Watched<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(f))), Some(cb)) = (&r, this.on_data.as_mut()) {
            if let Some(d) = f.data_ref() {
                cb(d.len());
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[tokio::test(start_paused = true)]
    async fn idle_body_times_out_between_frames() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut body = Idle::new(StreamBody::new(Box::pin(stream)), Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "a");
        tokio::time::sleep(Duration::from_secs(4)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"b"))))
            .await
            .unwrap();
        // 4 s + 4 s = 8 s total, but never 5 s between two frames: still fine.
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "b");
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<IdleTimeout>(), "{err}");
    }

    #[tokio::test]
    async fn watched_body_counts_and_reports_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let seen = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (s, d) = (seen.clone(), dropped.clone());
        let mut b = Watched::new(full("hello"))
            .on_data(move |n| {
                s.fetch_add(n, Ordering::SeqCst);
            })
            .on_drop(move || {
                d.fetch_add(1, Ordering::SeqCst);
            });
        while b.frame().await.is_some() {}
        assert_eq!(seen.load(Ordering::SeqCst), 5);
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        drop(b);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}
