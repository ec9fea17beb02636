//! The local SMTP sink both notification measurements deliver to: it speaks just enough SMTP
//! for lettre (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), accepts every message
//! and only counts it, so what is measured is the sender, never the sink.
//!
//! (`tests/support/smtp_server.py` parses and stores each message as JSON in Python; on a 2-core
//! machine that would be the bottleneck of both measurements.)
//!
//! lettre writes a message's body and its closing `.` line in two writes on a socket without
//! `TCP_NODELAY`, so Nagle's algorithm holds the `.` until the body is acknowledged — and a
//! receiver that delays its ACKs, as Linux does by default, answers only after ~40 ms. The sink
//! runs either way: [`Acks::Delayed`] is what a stock mail server on Linux does to lettre;
//! [`Acks::Immediate`] (`TCP_QUICKACK` after every read) removes the stall, so what remains is
//! the senders' own work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the sink acknowledges what it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// The kernel's default: delayed ACKs.
    Delayed,
    /// `TCP_QUICKACK` after every read.
    Immediate,
}

/// A running sink; it stops accepting when dropped.
pub struct SmtpSink {
    pub addr: SocketAddr,
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start(acks: Acks) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(session(stream, acks, counter.clone()));
            }
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// Messages accepted so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, acks: Acks, received: Arc<AtomicU64>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(Acking {
        inner: reader,
        quick: acks == Acks::Immediate,
    });
    writer.write_all(b"220 roster-bench sink ESMTP\r\n").await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb: String = line
            .iter()
            .take(4)
            .map(|byte| byte.to_ascii_uppercase() as char)
            .collect();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-roster-bench\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
            "DATA" => {
                writer.write_all(b"354 go ahead\r\n").await?;
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                }
                received.fetch_add(1, Ordering::Relaxed);
                b"250 queued\r\n"
            }
            "QUIT" => {
                writer.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 not implemented\r\n",
        };
        writer.write_all(reply).await?;
    }
}

/// A socket's read half that turns `TCP_QUICKACK` back on after every read (the kernel clears
/// it by itself).
struct Acking {
    inner: tokio::net::tcp::OwnedReadHalf,
    quick: bool,
}

impl tokio::io::AsyncRead for Acking {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.quick {
            let _ = socket2::SockRef::from(self.inner.as_ref()).set_tcp_quickack(true);
        }
        poll
    }
}
