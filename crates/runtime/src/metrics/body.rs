//! The request and response bodies of a measured call: they count the messages read and
//! written from the gRPC framing, and the response body reports the status once it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tonic::Code;

use super::codes::status_in;
use super::layer::Call;

/// Counts the messages of a gRPC body from its framing: each message is a compression flag, a
/// four-byte big-endian length and that many bytes, however the body's frames split them.
#[derive(Debug, Default)]
pub(super) struct MessageCounter {
    /// How many bytes of the current message's five-byte prefix were read.
    prefix_read: usize,
    /// The length bytes of the current message's prefix.
    length: [u8; 4],
    /// Bytes of the current message's payload still to come (after a complete prefix).
    payload_left: usize,
}

impl MessageCounter {
    /// Reads `data`, the next bytes of the body; returns how many messages it completed.
    pub(super) fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut completed = 0;
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skipped = self.payload_left.min(data.len());
                self.payload_left -= skipped;
                data = &data[skipped..];
                if self.payload_left == 0 {
                    completed += 1;
                }
                continue;
            }
            // The compression flag is byte 0 of the prefix; the length follows.
            if self.prefix_read > 0 {
                self.length[self.prefix_read - 1] = data[0];
            }
            self.prefix_read += 1;
            data = &data[1..];
            if self.prefix_read == 5 {
                self.prefix_read = 0;
                self.payload_left = u32::from_be_bytes(self.length) as usize;
                if self.payload_left == 0 {
                    completed += 1;
                }
            }
        }
        completed
    }
}

/// A body of a measured call: it counts the messages that pass through it, and a response body
/// also finishes the call with the status it ends with.
pub(super) struct ObservedBody {
    inner: tonic::body::Body,
    messages: MessageCounter,
    counted: Counter,
    /// The call a response body finishes; `None` for a request body.
    call: Option<Call>,
}

impl ObservedBody {
    /// A request body, its messages counted in `received`.
    pub(super) fn request(inner: tonic::body::Body, received: Counter) -> tonic::body::Body {
        Self::observe(inner, received, None)
    }

    /// A response body, its messages counted in `sent`; it finishes `call` when it ends.
    pub(super) fn response(
        inner: tonic::body::Body,
        sent: Counter,
        call: Call,
    ) -> tonic::body::Body {
        Self::observe(inner, sent, Some(call))
    }

    fn observe(
        inner: tonic::body::Body,
        counted: Counter,
        call: Option<Call>,
    ) -> tonic::body::Body {
        tonic::body::Body::new(Self {
            inner,
            messages: MessageCounter::default(),
            counted,
            call,
        })
    }
}

type Polled = Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>>;

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let completed = this.messages.feed(data);
            if completed > 0 {
                this.counted.inc_by(completed);
            }
        }
        if let Some(code) = end_status(&polled)
            && let Some(mut call) = this.call.take()
        {
            call.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The status a response ends with at this poll: the one in its trailers, or its error's;
/// `None` while it goes on.
fn end_status(polled: &Polled) -> Option<Code> {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame
            .trailers_ref()
            .map(|trailers| status_in(trailers).unwrap_or(Code::Unknown)),
        Poll::Ready(Some(Err(status))) => Some(status.code()),
        // A gRPC response that ends without a status is a broken one.
        Poll::Ready(None) => Some(Code::Unknown),
        Poll::Pending => None,
    }
}
