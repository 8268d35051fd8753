//! Answer bodies that misbehave on purpose: cut after the headers, or trickling one byte at a time.
//!
//! Both announce the full `Content-Length`, so the client has every reason to wait for the rest: a
//! cut body ends the connection mid-answer (the client sees a reset after the headers), a trickling
//! one outlasts any reasonable timeout. Every other answer is sent whole.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::server::Closed;

/// How long a cut body waits between its first half and the reset.
const FLUSH_PAUSE: Duration = Duration::from_millis(50);

/// How the body is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    #[default]
    Whole,
    /// The first half, then the connection is reset.
    Cut,
    /// One byte every so often.
    Trickle(Duration),
}

pub struct ShapedBody {
    data: Bytes,
    sent: usize,
    shape: Shape,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ShapedBody {
    pub fn new(data: Bytes, shape: Shape) -> Self {
        ShapedBody {
            data,
            sent: 0,
            shape,
            sleep: None,
        }
    }

    /// Half the body (nothing of an empty one: its headers still promise a byte).
    fn cut_at(&self) -> usize {
        self.data.len() / 2
    }
}

impl Body for ShapedBody {
    type Data = Bytes;
    type Error = Closed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Closed>>> {
        let this = self.get_mut();
        let len = this.data.len();
        let end = match this.shape {
            Shape::Whole => len,
            Shape::Cut if this.sent >= this.cut_at() => {
                // A moment for the half already written to leave before the reset.
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(FLUSH_PAUSE)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                return Poll::Ready(Some(Err(Closed)));
            }
            Shape::Cut => this.cut_at(),
            Shape::Trickle(every) => {
                if this.sent >= len {
                    return Poll::Ready(None);
                }
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
                this.sent + 1
            }
        };
        if this.sent >= end {
            return Poll::Ready(None);
        }
        let chunk = this.data.slice(this.sent..end);
        this.sent = end;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.shape == Shape::Whole && self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        let promised = match self.shape {
            Shape::Cut => self.data.len().max(1),
            _ => self.data.len(),
        };
        SizeHint::with_exact(promised as u64)
    }
}
