//! `roster dev`: the embedded default. All three services in one process, on SQLite files and a
//! file mail drop under one directory, with an operator key and a demo account made on the
//! first start and ready-to-paste grpcurl commands printed.

use std::path::Path;

use anyhow::Context;
use roster_proto::identity::v1::CreateAccountRequest;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_runtime::auth::AccountAccess;
use roster_runtime::settings::{Loader, LogFormat};
use roster_runtime::{KeyRing, Service, Shutdown, telemetry};

use crate::output;

/// The request id that makes the demo account's creation idempotent across restarts.
const DEMO_ACCOUNT_REQUEST_ID: &str = "roster-dev-demo-account";

pub async fn run(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let _telemetry = telemetry::init("roster", LogFormat::Pretty);
    let key = operator_key(&dir)?;

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let mut servers = Vec::new();
    let mut identity_port = None;
    let mut scim_url = None;
    for service in Service::ALL {
        let mut keys = KeyRing::default();
        keys.insert_plaintext(&key, "operator", &["admin"], AccountAccess::All);
        let mut loader = Loader::new(service).default_value(
            "database_url",
            format!(
                "sqlite://{}/{}.db?mode=rwc",
                dir.display(),
                service.config_key()
            ),
        );
        if service == Service::Identity {
            // The outbox relay hands emails to the notification service of this same process;
            // reset links point at the reset page identity serves on port 8080.
            loader = loader
                .default_value(
                    "notification_url",
                    format!("http://127.0.0.1:{}", Service::Notification.default_port()),
                )
                .default_value("notification_key", key.clone())
                .default_value("reset_base_url", "http://localhost:8080/reset");
        }
        if service == Service::Notification {
            // No mail server needed: the delivery workers write one .eml per email here.
            loader =
                loader.default_value("mail_url", format!("file://{}", mail_dir(&dir).display()));
            // Deleted accounts are read from the identity server started before it.
            if let Some(port) = identity_port {
                loader = loader
                    .default_value("identity.url", format!("http://127.0.0.1:{port}"))
                    .default_value("identity.key", key.clone());
            }
        }
        if service == Service::BulkImport
            && let Some(port) = identity_port
        {
            // Bulk-import writes profiles through the identity server started just before it,
            // with the operator key.
            loader = loader
                .default_value("identity_url", format!("http://127.0.0.1:{port}"))
                .default_value("identity_key", key.clone());
        }
        let (common, settings) = crate::launch::load(service, loader)?;
        if let crate::launch::Settings::Identity(identity) = &settings
            && identity.scim_addr.is_some()
        {
            scim_url = Some(identity.scim_base_url.clone());
        }
        let server =
            crate::launch::start(service, &common, settings, keys, shutdown.clone()).await?;
        if service == Service::Identity {
            identity_port = Some(server.local_addr.port());
        }
        servers.push((service, server));
    }

    let identity_addr = servers[0].1.local_addr;
    let account_id = demo_account(identity_addr, &key).await?;
    print_welcome(&key, &account_id, &dir, &servers, scim_url.as_deref())?;

    for (service, server) in servers {
        server.stopped().await?;
        tracing::info!(service = service.name(), "stopped");
    }
    Ok(())
}

/// Where the embedded suite's emails land, one `<notification id>.eml` each.
fn mail_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("mail")
}

/// Reads the operator key from `<dir>/operator.key`, creating it (mode 0600) on first start.
fn operator_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("operator.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        let key = key.trim().to_owned();
        if !key.is_empty() {
            return Ok(key);
        }
    }
    let key = format!("rst_{}", hex::encode(rand::random::<[u8; 24]>()));
    write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

async fn demo_account(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<String> {
    let mut client = AccountServiceClient::connect(format!("http://{addr}")).await?;
    let mut request = tonic::Request::new(CreateAccountRequest {
        request_id: DEMO_ACCOUNT_REQUEST_ID.to_owned(),
        display_name: "Demo Company".to_owned(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse()?);
    let account = client
        .create_account(request)
        .await
        .context("creating the demo account")?
        .into_inner()
        .account
        .context("CreateAccount returned no account")?;
    Ok(account.id)
}

fn print_welcome(
    key: &str,
    account_id: &str,
    dir: &Path,
    servers: &[(Service, roster_runtime::server::RunningServer)],
    scim_url: Option<&str>,
) -> anyhow::Result<()> {
    let port = |service: Service| {
        servers
            .iter()
            .find(|(candidate, _)| *candidate == service)
            .map(|(_, server)| server.local_addr.port())
            .unwrap_or_else(|| service.default_port())
    };
    let identity = port(Service::Identity);
    let imports = port(Service::BulkImport);
    let notification = port(Service::Notification);
    let scim = match scim_url {
        Some(url) => format!(
            "\n  SCIM 2.0      {url}\n                (a token: roster accounts scim-token create {account_id} --name dev)\n"
        ),
        None => String::new(),
    };
    output::outln!(
        r#"
Roster is running (embedded default; data in {dir}).

  identity      localhost:{identity}
  bulk-import   localhost:{imports}
  notification  localhost:{notification}{scim}

Emails are written to {mail_dir} (one .eml per message).

Operator key (also in {dir}/operator.key):
  export ROSTER_KEY={key}
Demo account: {account_id}

Try:
  grpcurl -plaintext localhost:{identity} list
  grpcurl -plaintext -d '{{"service":""}}' localhost:{identity} grpc.health.v1.Health/Check
  grpcurl -plaintext -H "authorization: Bearer $ROSTER_KEY" -d '{{"account_id":"{account_id}","first_name":"Ada","last_name":"Lovelace","email":"ada@example.com"}}' localhost:{identity} roster.identity.v1.ProfileService/CreateProfile
  grpcurl -plaintext -H "authorization: Bearer $ROSTER_KEY" -d '{{"account_id":"{account_id}"}}' localhost:{identity} roster.identity.v1.ProfileService/ListProfiles
  grpcurl -plaintext -H "authorization: Bearer $ROSTER_KEY" -d '{{"username":"ada@example.com"}}' localhost:{identity} roster.identity.v1.ProfileService/CheckUsername
  grpcurl -plaintext -H "authorization: Bearer $ROSTER_KEY" -d '{{"request_id":"demo-welcome-1","account_id":"{account_id}","recipient":"ada@example.com","template":"welcome","locale":"fr","variables":{{"first_name":"Ada","username":"ada@example.com"}},"account_display_name":"Demo Company"}}' localhost:{notification} roster.notification.v1.NotificationService/SendEmail

Stop with Ctrl-C.
"#,
        dir = dir.display(),
        mail_dir = mail_dir(dir).display()
    )
}
