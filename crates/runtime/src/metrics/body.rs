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

/// A request body that counts the messages the server reads from it.
pub(super) struct CountedRequest {
    pub(super) inner: tonic::body::Body,
    pub(super) messages: MessageCounter,
    pub(super) received: Counter,
}

impl http_body::Body for CountedRequest {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let completed = this.messages.feed(data);
            if completed > 0 {
                this.received.inc_by(completed);
            }
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

/// A response body that counts the messages sent and reports the status in its trailers when
/// it ends.
pub(super) struct ObservedBody {
    pub(super) inner: tonic::body::Body,
    pub(super) messages: MessageCounter,
    pub(super) sent: Counter,
    pub(super) call: Option<Call>,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let completed = this.messages.feed(data);
                    if completed > 0 {
                        this.sent.inc_by(completed);
                    }
                }
                frame
                    .trailers_ref()
                    .map(|trailers| status_in(trailers).unwrap_or(Code::Unknown))
            }
            Poll::Ready(Some(Err(status))) => Some(status.code()),
            // A gRPC response that ends without a status is a broken one.
            Poll::Ready(None) => Some(Code::Unknown),
            Poll::Pending => None,
        };
        if let Some(code) = code
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
