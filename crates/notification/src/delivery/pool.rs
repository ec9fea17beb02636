//! A pool of SMTP connections with `TCP_NODELAY` on their sockets, for `smtp://` (plain and
//! STARTTLS).
//!
//! lettre's own pooled transport opens its sockets with Nagle's algorithm on and writes a
//! message's body and its closing `\r\n.\r\n` in two writes: the five bytes then wait for the
//! server to acknowledge the body, and a Linux server delays that ACK by ~40 ms, so each pooled
//! connection delivered at most ~25 messages a second to such a server (measured: 44 ms per
//! message with 0.03 cores busy). Here the socket is opened by Roster, with `TCP_NODELAY`, and
//! handed to lettre's SMTP client, which speaks the protocol (EHLO, STARTTLS, AUTH, the
//! message) exactly as its transport does.
//!
//! `smtps://` (implicit TLS) keeps lettre's transport: the TLS handshake would have to come
//! before lettre's client takes the stream, which its API does not allow.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::transport::smtp::Error;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::Semaphore;

/// A connection idle for longer than this is checked with `NOOP` before it carries a message:
/// a server may have closed it meanwhile.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);
/// A connection idle for longer than this is closed instead of used (lettre's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What STARTTLS the connections do.
#[derive(Clone)]
pub enum StartTls {
    /// Plain SMTP.
    No,
    /// STARTTLS when the server offers it.
    Opportunistic(TlsParameters),
    /// STARTTLS, or no delivery.
    Required(TlsParameters),
}

/// Where and how to connect.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub hello: ClientId,
    pub tls: StartTls,
    pub credentials: Option<Credentials>,
    /// Bound on connecting (TCP and the SMTP greeting each).
    pub timeout: Duration,
}

impl Target {
    /// `what` did not happen within the timeout: "no greeting from host:port within 5s".
    fn timed_out(&self, what: &str) -> PoolError {
        PoolError::Connect(format!(
            "{what} {}:{} within {}s",
            self.host,
            self.port,
            self.timeout.as_secs()
        ))
    }
}

/// Up to `max_size` connections to one server; each message takes one for its whole exchange.
pub struct SmtpPool {
    target: Target,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    slots: Semaphore,
}

impl SmtpPool {
    pub fn new(target: Target, max_size: u32) -> Self {
        Self {
            target,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(max_size.max(1) as usize),
        }
    }

    /// Delivers `message` over a pooled connection (a new one when none is idle). A connection
    /// that fails is closed, never put back.
    pub async fn send(&self, message: &Message) -> Result<(), PoolError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| PoolError::Connect("the SMTP pool is closed".into()))?;
        let mut connection = match self.idle_connection().await {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        match connection
            .send(message.envelope(), &message.formatted())
            .await
        {
            Ok(_) => {
                self.lock().push((connection, Instant::now()));
                Ok(())
            }
            Err(error) => {
                connection.abort().await;
                Err(PoolError::Smtp(error))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(AsyncSmtpConnection, Instant)>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used idle connection that still answers.
    async fn idle_connection(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut connection, since) = self.lock().pop()?;
            let idle = since.elapsed();
            if idle > IDLE_TIMEOUT {
                let _ = connection.quit().await;
                continue;
            }
            if idle <= CHECK_AFTER_IDLE || connection.test_connected().await {
                return Some(connection);
            }
            connection.abort().await;
        }
    }

    /// A new connection: TCP with `TCP_NODELAY`, the greeting and EHLO, STARTTLS and AUTH as
    /// configured.
    async fn connect(&self) -> Result<AsyncSmtpConnection, PoolError> {
        let target = &self.target;
        let stream = tokio::time::timeout(
            target.timeout,
            tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| target.timed_out("no connection to"))?
        .map_err(|error| {
            PoolError::Connect(format!(
                "connecting to {}:{}: {error}",
                target.host, target.port
            ))
        })?;
        stream
            .set_nodelay(true)
            .map_err(|error| PoolError::Connect(format!("setting TCP_NODELAY: {error}")))?;
        let mut connection = tokio::time::timeout(
            target.timeout,
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &target.hello),
        )
        .await
        .map_err(|_| target.timed_out("no greeting from"))??;
        match &target.tls {
            StartTls::No => {}
            StartTls::Opportunistic(parameters) => {
                if connection.can_starttls() {
                    connection
                        .starttls(parameters.clone(), &target.hello)
                        .await?;
                }
            }
            StartTls::Required(parameters) => {
                connection
                    .starttls(parameters.clone(), &target.hello)
                    .await?;
            }
        }
        if let Some(credentials) = &target.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await?;
        }
        Ok(connection)
    }
}

/// Why a message did not go.
#[derive(Debug)]
pub enum PoolError {
    /// The SMTP exchange failed (lettre's error, with the server's reply when there was one).
    Smtp(Error),
    /// The TCP connection could not be made.
    Connect(String),
}

impl From<Error> for PoolError {
    fn from(error: Error) -> Self {
        PoolError::Smtp(error)
    }
}
