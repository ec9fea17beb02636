//! The mail transports, chosen by the `mail_url` setting, and the building of the MIME message.
//!
//! - `smtp://[user:pass@]host[:port]` — plain SMTP (port 25); add `?tls=required` for STARTTLS
//!   that must succeed (port 587 by default) or `?tls=opportunistic` for STARTTLS when offered.
//! - `smtps://[user:pass@]host[:port]` — SMTP over implicit TLS (port 465 by default).
//! - `file://DIR` — one `<notification id>.eml` per message in `DIR`, the embedded default.
//!
//! These are lettre's URL conventions. SMTP connections are pooled — for `smtp://` by Roster,
//! with `TCP_NODELAY` on each socket ([`super::pool`]), for `smtps://` by lettre; TLS is rustls with the
//! system's trust store, plus the CA certificate(s) of `mail_ca_file` when set (a private relay). A whole delivery is bounded by the SMTP timeout, which the settings keep
//! below the lease, so a stuck send is never handed to a second worker while it might still
//! complete.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use super::pool::{PoolError, SmtpPool, StartTls, Target};
use crate::domain::retry::Failure;
use crate::domain::templates::RenderedEmail;
use crate::settings::Settings;

/// A delivery attempt's failure, with the SMTP reply code when the server gave one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailure {
    pub failure: Failure,
    pub smtp_code: Option<u16>,
}

/// Where messages go.
#[derive(Clone)]
pub enum Mailer {
    /// `smtp://`: Roster's pool of connections with `TCP_NODELAY`.
    Pooled {
        pool: std::sync::Arc<SmtpPool>,
        timeout: Duration,
    },
    /// `smtps://`: lettre's pooled transport.
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        timeout: Duration,
    },
    Files(PathBuf),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Pooled { timeout, .. } | Mailer::Smtp { timeout, .. } => f
                .debug_struct("Smtp")
                .field("timeout", timeout)
                .finish_non_exhaustive(),
            Mailer::Files(dir) => f.debug_tuple("Files").field(dir).finish(),
        }
    }
}

impl Mailer {
    /// Builds the transport the settings name. Nothing connects yet: a mail server that is down
    /// at start only makes the first attempts retry.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let url = settings.mail_url.as_str();
        if let Some(dir) = url.strip_prefix("file://") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating the mail directory {}", dir.display()))?;
            return Ok(Mailer::Files(dir));
        }
        let credentials = match &settings.mail_password_file {
            Some(path) => {
                let password = std::fs::read_to_string(path)
                    .with_context(|| format!("reading mail_password_file {}", path.display()))?;
                let user = url::Url::parse(url)
                    .map(|url| url.username().to_owned())
                    .unwrap_or_default();
                anyhow::ensure!(
                    !user.is_empty(),
                    "mail_password_file is set but mail_url names no user"
                );
                Some(Credentials::new(user, password.trim_end().to_owned()))
            }
            None => None,
        };
        let tls = match &settings.mail_ca_file {
            Some(path) => Some(tls_trusting(url, path)?),
            None => None,
        };
        if url.starts_with("smtp://") {
            return Ok(Mailer::Pooled {
                pool: std::sync::Arc::new(SmtpPool::new(
                    smtp_target(url, tls, credentials, settings.smtp_timeout())
                        .with_context(|| format!("mail_url {}", settings.mail_url.redacted()))?,
                    settings.smtp_pool_size,
                )),
                timeout: settings.smtp_timeout(),
            });
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .with_context(|| format!("mail_url {}", settings.mail_url.redacted()))?
            .timeout(Some(settings.smtp_timeout()))
            .pool_config(PoolConfig::new().max_size(settings.smtp_pool_size));
        if let Some(tls) = tls {
            builder = builder.tls(tls);
        }
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(Mailer::Smtp {
            transport: builder.build(),
            timeout: settings.smtp_timeout(),
        })
    }

    /// Delivers `message`, the email of notification `id`.
    pub async fn send(&self, id: Uuid, message: Message) -> Result<(), SendFailure> {
        match self {
            Mailer::Pooled { pool, timeout } => {
                match tokio::time::timeout(*timeout, pool.send(&message)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(PoolError::Smtp(error))) => Err(classify(&error)),
                    Ok(Err(PoolError::Connect(text))) => Err(SendFailure {
                        failure: Failure::Temporary(text),
                        smtp_code: None,
                    }),
                    Err(_) => Err(no_answer(*timeout)),
                }
            }
            Mailer::Smtp { transport, timeout } => {
                match tokio::time::timeout(*timeout, transport.send(message)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(classify(&error)),
                    Err(_) => Err(no_answer(*timeout)),
                }
            }
            Mailer::Files(dir) => write_eml(dir, id, &message.formatted())
                .await
                .map_err(|error| SendFailure {
                    failure: Failure::Temporary(format!("writing to {}: {error}", dir.display())),
                    smtp_code: None,
                }),
        }
    }
}

fn no_answer(timeout: Duration) -> SendFailure {
    SendFailure {
        failure: Failure::Temporary(format!(
            "no answer from the mail server within {}s",
            timeout.as_secs()
        )),
        smtp_code: None,
    }
}

/// Where an `smtp://` URL points, read as lettre's `from_url` reads it: port 25, or 587 with
/// `tls=required|opportunistic`; the URL's path as the EHLO name; `user:password` as the
/// credentials unless `mail_password_file` gave them. `tls` replaces the URL's TLS mode's
/// parameters when `mail_ca_file` is set.
fn smtp_target(
    url: &str,
    tls: Option<Tls>,
    credentials: Option<Credentials>,
    timeout: Duration,
) -> anyhow::Result<Target> {
    let parsed = url::Url::parse(url).context("not a URL")?;
    let host = parsed.host_str().context("no host")?.to_owned();
    let mode = tls_mode(&parsed);
    let parameters = |tls: Option<Tls>| -> anyhow::Result<TlsParameters> {
        match tls {
            Some(Tls::Required(parameters) | Tls::Opportunistic(parameters)) => Ok(parameters),
            _ => TlsParameters::new(host.clone()).context("building the TLS parameters"),
        }
    };
    let (tls, default_port) = match mode.as_deref() {
        None => (StartTls::No, 25),
        Some("required") => (StartTls::Required(parameters(tls)?), 587),
        Some("opportunistic") => (StartTls::Opportunistic(parameters(tls)?), 587),
        Some(other) => anyhow::bail!("tls={other} is not one of required, opportunistic"),
    };
    let hello = match parsed.path().trim_matches('/') {
        "" => ClientId::default(),
        name => ClientId::Domain(name.to_owned()),
    };
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|text| text.into_owned())
            .context("the user or password is not UTF-8")
    };
    let credentials = match (credentials, parsed.password()) {
        (Some(credentials), _) => Some(credentials),
        (None, Some(password)) => Some(Credentials::new(
            decode(parsed.username())?,
            decode(password)?,
        )),
        (None, None) => None,
    };
    Ok(Target {
        host,
        port: parsed.port().unwrap_or(default_port),
        hello,
        tls,
        credentials,
        timeout,
    })
}

/// The URL's `tls=` parameter (`required`, `opportunistic`), as lettre's `from_url` reads it.
fn tls_mode(url: &url::Url) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == "tls")
        .map(|(_, value)| value.into_owned())
}

/// The TLS mode `url` asks for (as lettre's `from_url` reads it), trusting the PEM CA
/// certificate(s) in `ca_file` besides the system roots. A URL without TLS is refused: the CA
/// file would silently go unused.
fn tls_trusting(url: &str, ca_file: &std::path::Path) -> anyhow::Result<Tls> {
    let parsed = url::Url::parse(url).context("mail_url is not a URL")?;
    let host = parsed
        .host_str()
        .context("mail_url names no host")?
        .to_owned();
    let tls = tls_mode(&parsed);
    let mode: fn(TlsParameters) -> Tls = match (parsed.scheme(), tls.as_deref()) {
        ("smtps", _) => Tls::Wrapper,
        ("smtp", Some("required")) => Tls::Required,
        ("smtp", Some("opportunistic")) => Tls::Opportunistic,
        _ => anyhow::bail!(
            "mail_ca_file is set but mail_url uses no TLS (use smtps:// or smtp://…?tls=required)"
        ),
    };
    let pem = std::fs::read(ca_file)
        .with_context(|| format!("reading mail_ca_file {}", ca_file.display()))?;
    anyhow::ensure!(
        String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----"),
        "mail_ca_file {} holds no PEM certificate",
        ca_file.display()
    );
    let certificate = Certificate::from_pem(&pem)
        .with_context(|| format!("mail_ca_file {}", ca_file.display()))?;
    let parameters = TlsParameters::builder(host)
        .add_root_certificate(certificate)
        .build()
        .context("building the TLS parameters")?;
    Ok(mode(parameters))
}

/// SMTP 5xx is permanent; 4xx, connection, TLS and protocol errors may pass on a later try.
fn classify(error: &lettre::transport::smtp::Error) -> SendFailure {
    let code = error.status().map(u16::from);
    // The server's reply text travels as the error's source; lettre's own text only names the
    // kind of error.
    let reply = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default();
    let text = match code {
        Some(code) if !reply.is_empty() => format!("{code} {reply}"),
        _ => error.to_string(),
    };
    let failure = if error.is_permanent() {
        Failure::Permanent(text)
    } else {
        Failure::Temporary(text)
    };
    SendFailure {
        failure,
        smtp_code: code,
    }
}

/// Writes `<dir>/<id>.eml` through a temporary file, so a reader never sees half a message and a
/// repeated attempt replaces the file instead of adding a second one.
async fn write_eml(dir: &std::path::Path, id: Uuid, bytes: &[u8]) -> std::io::Result<()> {
    let partial = dir.join(format!(".{id}.eml.partial"));
    tokio::fs::write(&partial, bytes).await?;
    tokio::fs::rename(&partial, dir.join(format!("{id}.eml"))).await
}

/// The MIME message of a rendered email: `multipart/alternative` with the plain-text part first
/// and the HTML part second, the stable `Message-ID`, and `Auto-Submitted: auto-generated` so
/// that vacation responders stay quiet (RFC 3834).
pub fn build_message(
    from: &Mailbox,
    to: lettre::Address,
    message_id: &str,
    email: RenderedEmail,
) -> Result<Message, lettre::error::Error> {
    Message::builder()
        .message_id(Some(message_id.to_owned()))
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(email.subject)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_owned(),
        ))
        .multipart(MultiPart::alternative_plain_html(email.text, email.html))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short email of notification `id`, from the address `settings` give.
    fn hello(settings: &Settings, id: Uuid) -> Message {
        build_message(
            &settings.from_address.parse().unwrap(),
            "ada@example.com".parse().unwrap(),
            &format!("<{id}@roster>"),
            RenderedEmail {
                subject: "Hi".into(),
                text: "Hello".into(),
                html: "<p>Hello</p>".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn a_ca_file_needs_a_tls_url_and_a_pem_certificate() {
        let missing = std::path::Path::new("/nonexistent/roster-ca.pem");
        let error = tls_trusting("smtp://mail.example.com:25", missing).unwrap_err();
        assert!(error.to_string().contains("uses no TLS"), "{error:#}");
        let error = tls_trusting("smtps://mail.example.com", missing).unwrap_err();
        assert!(
            error.to_string().contains("reading mail_ca_file"),
            "{error:#}"
        );
        let not_pem = std::env::temp_dir().join(format!("roster-not-a-ca-{}.pem", Uuid::new_v4()));
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let error = tls_trusting("smtp://mail.example.com?tls=required", &not_pem).unwrap_err();
        let _ = std::fs::remove_file(&not_pem);
        assert!(
            error.to_string().contains("holds no PEM certificate"),
            "{error:#}"
        );
    }

    #[test]
    fn messages_carry_both_parts_and_the_stable_message_id() {
        let message = build_message(
            &"Roster <no-reply@example.com>".parse().unwrap(),
            "ada@example.com".parse().unwrap(),
            "<0b6f3f0e-6a52-4f7e-9a53-2b1c7f0d9e11@roster>",
            RenderedEmail {
                subject: "Réinitialisez votre mot de passe".into(),
                text: "Bonjour Ada".into(),
                html: "<p>Bonjour Ada</p>".into(),
            },
        )
        .unwrap();
        let formatted = String::from_utf8(message.formatted()).unwrap();
        assert!(formatted.contains("Message-ID: <0b6f3f0e-6a52-4f7e-9a53-2b1c7f0d9e11@roster>"));
        assert!(formatted.contains("multipart/alternative"));
        assert!(formatted.contains("text/plain"));
        assert!(formatted.contains("text/html"));
        assert!(formatted.contains("Auto-Submitted: auto-generated"));
    }

    #[tokio::test]
    async fn the_file_transport_writes_one_eml_per_notification() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            mail_url: format!("file://{}", dir.path().display()).as_str().into(),
            ..Settings::default()
        };
        let mailer = Mailer::from_settings(&settings).unwrap();
        let id = Uuid::new_v4();
        mailer.send(id, hello(&settings, id)).await.unwrap();
        mailer.send(id, hello(&settings, id)).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, vec![format!("{id}.eml")]);
    }

    #[test]
    fn smtp_urls_are_read_as_lettre_reads_them() {
        let timeout = Duration::from_secs(5);
        let plain = smtp_target("smtp://relay.example", None, None, timeout).unwrap();
        assert_eq!((plain.host.as_str(), plain.port), ("relay.example", 25));
        assert!(matches!(plain.tls, StartTls::No));
        assert!(plain.credentials.is_none());

        let required = smtp_target(
            "smtp://ada:p%40ss%20w@relay.example/mail.acme.test?tls=required",
            None,
            None,
            timeout,
        )
        .unwrap();
        assert_eq!(required.port, 587);
        assert!(matches!(required.tls, StartTls::Required(_)));
        assert_eq!(
            required.credentials,
            Some(Credentials::new("ada".into(), "p@ss w".into())),
            "user and password are percent-decoded"
        );
        assert_eq!(
            required.hello,
            ClientId::Domain("mail.acme.test".into()),
            "the path names the EHLO domain"
        );

        let opportunistic = smtp_target(
            "smtp://relay.example:2525?tls=opportunistic",
            None,
            Some(Credentials::new("bob".into(), "from-file".into())),
            timeout,
        )
        .unwrap();
        assert_eq!(opportunistic.port, 2525);
        assert!(matches!(opportunistic.tls, StartTls::Opportunistic(_)));
        assert_eq!(
            opportunistic.credentials,
            Some(Credentials::new("bob".into(), "from-file".into())),
            "mail_password_file's credentials win over the URL's"
        );

        let error = smtp_target("smtp://relay.example?tls=always", None, None, timeout)
            .err()
            .unwrap();
        assert!(error.to_string().contains("tls=always"), "{error:#}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_temporary_failure() {
        // Nothing listens on a port that was just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = Settings {
            mail_url: format!("smtp://127.0.0.1:{port}").as_str().into(),
            smtp_timeout_seconds: 5,
            ..Settings::default()
        };
        let mailer = Mailer::from_settings(&settings).unwrap();
        let id = Uuid::new_v4();
        let failure = mailer.send(id, hello(&settings, id)).await.unwrap_err();
        assert!(
            matches!(failure.failure, Failure::Temporary(_)),
            "{failure:?}"
        );
        assert_eq!(failure.smtp_code, None);
    }
}
