//! The command line's connection and output options, shared by every operator command: where
//! the services are, the caller key, the deadline, TLS, and `--request-id`.

use std::path::PathBuf;
use std::time::Duration;

use roster_runtime::client::ClientTls;

/// The flags every operator command takes. They are global: they may come before or after the
/// subcommand. No `Debug`: it would print the key.
#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Connection and output")]
pub struct ClientArgs {
    /// Address of the identity service: host:port, http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "ROSTER_IDENTITY_ADDR",
        default_value = "localhost:50051",
        value_name = "ADDR"
    )]
    pub identity_addr: String,
    /// Address of the bulk-import service: host:port, http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "ROSTER_BULK_IMPORT_ADDR",
        default_value = "localhost:50052",
        value_name = "ADDR"
    )]
    pub bulk_import_addr: String,
    /// Address of the notification service: host:port, http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "ROSTER_NOTIFICATION_ADDR",
        default_value = "localhost:50053",
        value_name = "ADDR"
    )]
    pub notification_addr: String,
    /// Caller key, sent as `authorization: Bearer <key>`. Prefer the environment variable: a
    /// flag shows in the process list and the shell history.
    // A plain string, checked when a call needs it: an empty ROSTER_KEY counts as none, and
    // `roster keys` works whatever the variable holds.
    #[arg(
        long,
        global = true,
        env = "ROSTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<String>,
    /// Print one JSON document on stdout; failures as one JSON document on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Deadline of each call, e.g. 30s, 500ms, 2m (a plain number is seconds).
    #[arg(
        long,
        global = true,
        env = "ROSTER_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub timeout: Duration,
    /// Print each call's method, request id and trace id on stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS towards the services. Any of these options turns TLS on for every service (an address
/// without scheme then means `https://`); an `https://` address turns it on for its service.
/// An empty value counts as unset, like an empty `ROSTER_KEY`.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// PEM file of the CA certificates the servers' certificates must chain to (default: the
    /// system's roots).
    #[arg(
        long,
        global = true,
        env = "ROSTER_TLS_CA_FILE",
        value_name = "FILE",
        value_parser = any_path()
    )]
    tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; goes with --tls-key-file.
    #[arg(
        long,
        global = true,
        env = "ROSTER_TLS_CERT_FILE",
        value_name = "FILE",
        value_parser = any_path()
    )]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(
        long,
        global = true,
        env = "ROSTER_TLS_KEY_FILE",
        value_name = "FILE",
        value_parser = any_path()
    )]
    tls_key_file: Option<PathBuf>,
    /// Name the server's certificate must carry when it differs from the address's host, e.g.
    /// `identity.roster.svc` when port-forwarding to localhost.
    #[arg(long, global = true, env = "ROSTER_TLS_DOMAIN", value_name = "NAME")]
    tls_domain: Option<String>,
}

/// Any path, the empty one included (clap's own path parser refuses it), so that an empty
/// variable reaches [`TlsArgs`] and counts as unset.
fn any_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser as _;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

impl TlsArgs {
    /// The options as the runtime's TLS client settings, an empty value counting as unset.
    pub fn settings(&self) -> ClientTls {
        let non_empty =
            |path: &Option<PathBuf>| path.clone().filter(|path| !path.as_os_str().is_empty());
        ClientTls {
            ca_file: non_empty(&self.tls_ca_file),
            cert_file: non_empty(&self.tls_cert_file),
            key_file: non_empty(&self.tls_key_file),
            domain: self.tls_domain.clone().filter(|domain| !domain.is_empty()),
        }
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `--request-id` on every command with side effects.
#[derive(clap::Args, Clone, Debug)]
pub struct RequestIdArg {
    /// Idempotency key (AIP-155): repeating the command with the same id returns the first
    /// result and does nothing twice. Default: a new UUID, printed when the outcome is unknown.
    #[arg(long, value_parser = parse_request_id, value_name = "ID")]
    pub request_id: Option<String>,
}

impl RequestIdArg {
    /// The given request id, or a new one.
    pub fn get(&self) -> String {
        self.request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    }
}

fn parse_request_id(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 128 || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err("a request id is 1 to 128 printable ASCII characters".into());
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
