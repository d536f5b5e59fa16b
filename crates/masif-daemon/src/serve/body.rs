//! A request body with a deadline: it must be complete within the body timeout after the
//! request's head arrived, or reading it fails (hyper has no body timeout of its own).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// The body of every request the core hands to a service.
pub struct Body {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    finished: bool,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("limit", &self.limit)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Body {
    /// `inner`, which must be complete within `limit` from now.
    pub(crate) fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            finished: false,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.finished = frame.is_none();
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.finished = true;
            let late = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "request body not complete within {} s",
                    this.limit.as_secs_f64()
                ),
            );
            return Poll::Ready(Some(Err(late.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
