//! The notification service's own settings (`[notification]` table, `ROSTER_NOTIFICATION__<KEY>`).
//!
//! Every key has a default, so `Settings::default()` is a working embedded configuration and tests
//! change only the fields they care about. [`Settings::validate`] refuses, at start, combinations
//! that would break a delivery guarantee (an SMTP timeout at or beyond the lease).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use roster_runtime::Service;
use roster_runtime::settings::SettingsError;
use serde::{Deserialize, Serialize};

/// Where emails go: `smtp://[user:pass@]host[:port][?tls=required|opportunistic]`,
/// `smtps://[user:pass@]host[:port]` (implicit TLS) or `file://DIR` (one `.eml` per message).
///
/// The URL may carry a password, so its `Debug` form hides it.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct MailUrl(String);

impl MailUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(_) => self.0.clone(),
            Err(_) => "<unparsable mail_url>".to_owned(),
        }
    }
}

impl fmt::Debug for MailUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<&str> for MailUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

/// Settings of the notification service (`ROSTER_NOTIFICATION__<KEY>`). (`Serialize` lists the
/// keys it reads, to tell unknown ones.)
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// The transport, by URL (see [`MailUrl`]). Default `file://var/mail`.
    pub mail_url: MailUrl,
    /// A file holding the SMTP password (a mounted secret); it replaces the URL's password.
    pub mail_password_file: Option<PathBuf>,
    /// A PEM file of CA certificate(s) to trust, in addition to the system roots, for the TLS of
    /// `smtps://` and `smtp://…?tls=required|opportunistic` (a private mail relay). Setting it
    /// with a `mail_url` without TLS is refused at start.
    pub mail_ca_file: Option<PathBuf>,
    /// The `From` mailbox, e.g. `Roster <no-reply@example.com>`.
    pub from_address: String,
    /// The right-hand side of every `Message-ID: <notification id@domain>`.
    pub message_id_domain: String,
    /// A directory whose templates override or extend the built-in ones (same layout:
    /// `layout.html`, `<locale>/<template>.subject.txt`, `.txt`, `.html`, `<locale>/footer.*`).
    pub template_dir: Option<PathBuf>,
    /// Delivery workers on this instance; 0 runs the API only.
    pub workers: usize,
    /// Messages one worker claims and sends at once.
    pub batch_size: u32,
    /// How often an idle worker looks for due messages.
    pub poll_interval_millis: u64,
    /// How long a claimed message belongs to its worker; after that another may take it.
    pub lease_seconds: u64,
    /// Upper bound of one SMTP delivery (connect, dialogue, data); must stay below the lease.
    pub smtp_timeout_seconds: u64,
    /// Pooled SMTP connections per instance.
    pub smtp_pool_size: u32,
    /// Delivery attempts before a temporarily failing message is FAILED.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with every further attempt.
    pub retry_base_millis: u64,
    /// Longest delay between two attempts.
    pub retry_max_millis: u64,
    /// How notification reaches identity to learn which accounts were deleted
    /// (`[notification.identity]`: `url`, `key`/`key_file` with the `accounts.read` scope,
    /// `timeout_seconds`, `tls.*`). Unset: keys limited to a deleted account are not refused
    /// here and its queued emails are sent (logged at start).
    pub identity: roster_runtime::peer::PeerSettings,
    /// How long a SENT or FAILED notification is kept after it finished, in days; then it is
    /// deleted with its attempts and request keys (GetNotification answers NOT_FOUND).
    pub notification_retention_days: u64,
    /// How often the retention job runs (on one replica at a time), in seconds.
    pub retention_interval_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mail_url: MailUrl::new("file://var/mail"),
            mail_password_file: None,
            mail_ca_file: None,
            from_address: "Roster <no-reply@roster.localhost>".to_owned(),
            message_id_domain: "roster".to_owned(),
            template_dir: None,
            workers: 4,
            batch_size: 8,
            poll_interval_millis: 1000,
            lease_seconds: 120,
            smtp_timeout_seconds: 30,
            smtp_pool_size: 8,
            max_attempts: 8,
            retry_base_millis: 30_000,
            retry_max_millis: 3_600_000,
            identity: roster_runtime::peer::PeerSettings::default(),
            notification_retention_days: 30,
            retention_interval_seconds: 60,
        }
    }
}

impl Settings {
    /// The client of identity, for the deleted accounts; `None` when no URL is set.
    pub fn identity_client(
        &self,
    ) -> Result<Option<roster_runtime::client::ClientConfig>, SettingsError> {
        let peer = self.identity.resolve(
            roster_runtime::peer::PeerKeys {
                service: Service::Notification,
                peer: "identity",
            },
            roster_runtime::peer::PeerSettings::default(),
        )?;
        Ok(peer.client("identity", Duration::from_secs(10)))
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    pub fn smtp_timeout(&self) -> Duration {
        Duration::from_secs(self.smtp_timeout_seconds)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_millis.max(10))
    }

    /// Refuses settings that would break a guarantee, naming the environment key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |name: &str, message: String| SettingsError::Key {
            key: format!(
                "{}{}",
                Service::Notification.env_prefix(),
                name.to_uppercase()
            ),
            message,
        };
        let scheme = self.mail_url.as_str().split("://").next().unwrap_or("");
        if !matches!(scheme, "smtp" | "smtps" | "file") || !self.mail_url.as_str().contains("://") {
            return Err(invalid(
                "mail_url",
                format!(
                    "{} must start with smtp://, smtps:// or file://",
                    self.mail_url.redacted()
                ),
            ));
        }
        if self
            .from_address
            .parse::<lettre::message::Mailbox>()
            .is_err()
        {
            return Err(invalid(
                "from_address",
                format!("{:?} is not a mailbox", self.from_address),
            ));
        }
        let domain = &self.message_id_domain;
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(invalid(
                "message_id_domain",
                "must be a non-empty domain-like name (letters, digits, '.', '-', '_')".to_owned(),
            ));
        }
        if self.smtp_timeout_seconds == 0 {
            return Err(invalid("smtp_timeout_seconds", "must be at least 1".into()));
        }
        // A send that could outlive its lease might be handed to a second worker and go out twice.
        if self.lease_seconds <= self.smtp_timeout_seconds {
            return Err(invalid(
                "lease_seconds",
                format!(
                    "must be greater than smtp_timeout_seconds ({})",
                    self.smtp_timeout_seconds
                ),
            ));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1".into()));
        }
        if self.smtp_pool_size == 0 {
            return Err(invalid("smtp_pool_size", "must be at least 1".into()));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1".into()));
        }
        if self.retry_base_millis == 0 {
            return Err(invalid("retry_base_millis", "must be at least 1".into()));
        }
        if self.notification_retention_days == 0 {
            return Err(invalid(
                "notification_retention_days",
                "must be at least 1".into(),
            ));
        }
        if self.retention_interval_seconds == 0 {
            return Err(invalid(
                "retention_interval_seconds",
                "must be at least 1".into(),
            ));
        }
        if self.retry_max_millis < self.retry_base_millis {
            return Err(invalid(
                "retry_max_millis",
                "must be at least retry_base_millis".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn a_timeout_at_the_lease_is_refused_by_key() {
        let settings = Settings {
            lease_seconds: 30,
            smtp_timeout_seconds: 30,
            ..Settings::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(
            error.contains("ROSTER_NOTIFICATION__LEASE_SECONDS"),
            "{error}"
        );
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let settings = Settings {
            mail_url: MailUrl::new("smtp://mailer:hunter2@smtp.example.com:587?tls=required"),
            ..Settings::default()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("mailer"), "{debug}");
    }

    #[test]
    fn unknown_transports_are_refused() {
        let settings = Settings {
            mail_url: MailUrl::new("sendmail:///usr/sbin/sendmail"),
            ..Settings::default()
        };
        assert!(settings.validate().is_err());
    }
}
