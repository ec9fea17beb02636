//! The accounts identity deleted, as bulk-import and notification learn them: a task reads
//! identity's ListAccounts (`show_deleted` with the filter `delete_time:*`: the deleted ones
//! only, every page) every few seconds, puts the
//! deleted ones in force in the key ring (a key limited to them acts on nothing, as on
//! identity itself), and tells the service's own workers, which cancel what the accounts had
//! in progress and purge their data once identity has.
//!
//! The key the service calls identity with needs the `accounts.read` scope (or `accounts`).
//! While identity cannot be read, the accounts last read stay in force, and the failure is
//! logged once per outage.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use tokio::sync::watch;
use uuid::Uuid;

use super::SharedKeyRing;
use crate::Shutdown;
use crate::client::{Client, ClientConfig, idempotent};

/// An account identity deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedAccount {
    pub id: Uuid,
    /// When identity purges (or purged) its personal data; the services purge theirs then.
    pub purge_time: Option<SystemTime>,
}

impl DeletedAccount {
    /// True once its purge time has come.
    pub fn is_purged(&self, now: SystemTime) -> bool {
        self.purge_time.is_some_and(|time| time <= now)
    }
}

/// Every deleted account, as last read.
pub type DeletedAccounts = Arc<Vec<DeletedAccount>>;

/// Starts the task; the receiver holds the deleted accounts last read (none until the first
/// read succeeds) and changes when they do.
pub fn watch(
    config: ClientConfig,
    keys: SharedKeyRing,
    every: Duration,
    shutdown: Shutdown,
) -> Result<watch::Receiver<DeletedAccounts>, crate::client::ClientError> {
    let client = AccountServiceClient::new(Client::new(config)?);
    let (sender, receiver) = watch::channel(DeletedAccounts::default());
    tokio::spawn(follow(client, keys, sender, every, shutdown));
    Ok(receiver)
}

async fn follow(
    client: AccountServiceClient<Client>,
    keys: SharedKeyRing,
    sender: watch::Sender<DeletedAccounts>,
    every: Duration,
    shutdown: Shutdown,
) {
    let mut failing = false;
    loop {
        match read(&client).await {
            Ok(deleted) => {
                if failing {
                    tracing::info!("identity's deleted accounts are read again");
                }
                failing = false;
                let ids: HashSet<Uuid> = deleted.iter().map(|account| account.id).collect();
                let count = ids.len();
                if keys.close_accounts(ids) {
                    tracing::info!(deleted = count, "deleted accounts put in force");
                }
                sender.send_if_modified(|known| {
                    let changed = **known != deleted;
                    if changed {
                        *known = Arc::new(deleted);
                    }
                    changed
                });
            }
            Err(status) => {
                if !failing {
                    tracing::warn!(
                        code = ?status.code(),
                        message = status.message(),
                        "identity's deleted accounts not read; the last ones read stay in force"
                    );
                }
                failing = true;
            }
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Every deleted account, through every page of ListAccounts.
async fn read(client: &AccountServiceClient<Client>) -> Result<Vec<DeletedAccount>, tonic::Status> {
    let mut deleted = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .clone()
            .list_accounts(idempotent(tonic::Request::new(pb::ListAccountsRequest {
                page_size: 1000,
                page_token,
                show_deleted: true,
                filter: "delete_time:*".to_owned(),
            })))
            .await?
            .into_inner();
        for account in page.accounts {
            if account.delete_time.is_none() {
                continue;
            }
            let id = Uuid::parse_str(&account.id)
                .map_err(|_| tonic::Status::internal(format!("account id {:?}", account.id)))?;
            deleted.push(DeletedAccount {
                id,
                purge_time: account.purge_time.and_then(|time| time.try_into().ok()),
            });
        }
        if page.next_page_token.is_empty() {
            return Ok(deleted);
        }
        page_token = page.next_page_token;
    }
}

/// Runs `pass` over the deleted accounts whenever they change, and every `pause` besides
/// (purge times come due, and work a pass could not finish is retried), until `shutdown`:
/// what bulk-import and notification do with a deleted account's imports and emails.
pub fn follow_changes<F, Fut>(
    mut deleted: watch::Receiver<DeletedAccounts>,
    pause: Duration,
    shutdown: Shutdown,
    mut pass: F,
) where
    F: FnMut(DeletedAccounts) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            let accounts = deleted.borrow_and_update().clone();
            if !accounts.is_empty() {
                pass(accounts).await;
            }
            tokio::select! {
                () = shutdown.wait() => return,
                changed = deleted.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(pause) => {}
            }
        }
    });
}
