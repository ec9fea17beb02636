//! `roster notifications`: queue an email, read one's delivery state, list an account's, watch
//! one until it is sent or has failed, retry a failed one and cancel one that waits for delivery
//! (NotificationService on notification).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use roster_proto::identity::v1::GetAccountRequest;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_proto::notification::v1 as pb;
use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
use roster_runtime::Service;
use tonic::transport::Channel;

use crate::client::{Client, RequestIdArg, parse_duration};
use crate::output::{self, Paging};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Queue an email from a template; it is delivered in the background.
    Send {
        /// The account the email is sent on behalf of.
        #[arg(long)]
        account: String,
        /// The recipient's email address.
        #[arg(long)]
        to: String,
        /// Template: password_reset, password_changed, welcome, or any the server knows.
        #[arg(long)]
        template: String,
        /// BCP 47 locale to render in; default en.
        #[arg(long, default_value = "", hide_default_value = true)]
        locale: String,
        /// A template variable, NAME=VALUE; repeatable.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// The account's name as shown in the email; default: read from identity.
        #[arg(long)]
        account_name: Option<String>,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Show one notification's delivery state.
    Get {
        /// The notification's id.
        id: String,
    },
    /// List an account's notifications, newest first.
    List {
        /// The account whose notifications to list.
        #[arg(long)]
        account: String,
        /// Only notifications in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Deliver a FAILED notification again, with a new budget of attempts and the same
    /// Message-ID (a mail server that got an earlier attempt can drop the duplicate).
    Retry {
        /// The notification's id.
        id: String,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Cancel a notification that waits for delivery (QUEUED or RETRYING); it is never sent.
    /// One being sent (SENDING) can no longer be cancelled.
    Cancel {
        /// The notification's id.
        id: String,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Poll a notification until it is SENT (exit 0) or FAILED or CANCELLED (exit 1), with a
    /// spinner.
    Watch {
        /// The notification's id.
        id: String,
        /// Time between polls.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
    },
}

/// A notification's delivery state.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum State {
    Queued,
    Sending,
    Sent,
    Retrying,
    Failed,
    Cancelled,
}

impl State {
    fn proto(self) -> pb::NotificationState {
        match self {
            State::Queued => pb::NotificationState::Queued,
            State::Sending => pb::NotificationState::Sending,
            State::Sent => pb::NotificationState::Sent,
            State::Retrying => pb::NotificationState::Retrying,
            State::Failed => pb::NotificationState::Failed,
            State::Cancelled => pb::NotificationState::Cancelled,
        }
    }
}

fn parse_vars(vars: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut variables = HashMap::new();
    for var in vars {
        let (name, value) = var
            .split_once('=')
            .with_context(|| format!("--var {var:?}: expected NAME=VALUE"))?;
        if variables
            .insert(name.to_owned(), value.to_owned())
            .is_some()
        {
            anyhow::bail!("--var names {name} twice");
        }
    }
    Ok(variables)
}

pub async fn run(command: Command, client: &Client) -> anyhow::Result<()> {
    let channel = client.channel(Service::Notification).await?;
    let mut notifications = NotificationServiceClient::new(channel);
    match command {
        Command::Send {
            account,
            to,
            template,
            locale,
            vars,
            account_name,
            request_id,
        } => {
            let variables = parse_vars(&vars)?;
            let account_display_name = match account_name {
                Some(name) => name,
                None => account_display_name(client, &account).await?,
            };
            let response = client
                .call_idempotent(
                    "roster.notification.v1.NotificationService/SendEmail",
                    request_id.get(),
                    |request_id| pb::SendEmailRequest {
                        request_id,
                        account_id: account,
                        recipient: to,
                        template,
                        locale,
                        variables,
                        account_display_name,
                    },
                    async |request| notifications.send_email(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show(notification_of(response.notification.as_ref())?)
            })
        }
        Command::Retry { id, request_id } => {
            let response = client
                .call_idempotent(
                    "roster.notification.v1.NotificationService/RetryNotification",
                    request_id.get(),
                    |request_id| pb::RetryNotificationRequest {
                        notification_id: id,
                        request_id,
                    },
                    async |request| notifications.retry_notification(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show(notification_of(response.notification.as_ref())?)
            })
        }
        Command::Cancel { id, request_id } => {
            let response = client
                .call_idempotent(
                    "roster.notification.v1.NotificationService/CancelNotification",
                    request_id.get(),
                    |request_id| pb::CancelNotificationRequest {
                        notification_id: id,
                        request_id,
                    },
                    async |request| notifications.cancel_notification(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show(notification_of(response.notification.as_ref())?)
            })
        }
        Command::Get { id } => {
            let response = get(client, &mut notifications, &id).await?;
            output::show(client.json(), &response, |response| {
                show(notification_of(response.notification.as_ref())?)
            })
        }
        Command::List {
            account,
            state,
            paging,
        } => {
            let (items, next) = output::pages(&paging, "notifications", async |page_token| {
                let response = client
                    .call(
                        "roster.notification.v1.NotificationService/ListNotifications",
                        None,
                        pb::ListNotificationsRequest {
                            account_id: account.clone(),
                            page_size: paging.page_size,
                            page_token,
                            state: state.map_or(0, |state| state.proto() as i32),
                        },
                        async |request| notifications.clone().list_notifications(request).await,
                    )
                    .await?;
                Ok((response.notifications, response.next_page_token))
            })
            .await?;
            let response = pb::ListNotificationsResponse {
                notifications: items,
                next_page_token: next,
            };
            output::show(client.json(), &response, |response| {
                output::listing(
                    "No notifications.",
                    &[
                        "id",
                        "recipient",
                        "template",
                        "state",
                        "attempts",
                        "created",
                    ],
                    response.notifications.iter().map(|notification| {
                        [
                            notification.id.clone(),
                            notification.recipient.clone(),
                            notification.template.clone(),
                            state_name(notification.state),
                            notification.attempts.to_string(),
                            output::time(notification.create_time.as_ref()),
                        ]
                    }),
                    &response.next_page_token,
                )
            })
        }
        Command::Watch { id, interval } => {
            let progress = output::spinner(format!("notification {id}"));
            let response = loop {
                let response = get(client, &mut notifications, &id).await?;
                let notification = notification_of(response.notification.as_ref())?;
                let state = pb::NotificationState::try_from(notification.state).ok();
                if matches!(
                    state,
                    Some(
                        pb::NotificationState::Sent
                            | pb::NotificationState::Failed
                            | pb::NotificationState::Cancelled
                    )
                ) {
                    break response;
                }
                let mut message = format!(
                    "{}: {}, {} attempt(s)",
                    notification.recipient,
                    state_name(notification.state),
                    notification.attempts
                );
                if !notification.last_error.is_empty() {
                    message.push_str(&format!("; last error: {}", notification.last_error));
                }
                progress.set_message(message);
                tokio::time::sleep(interval).await;
            };
            progress.finish_and_clear();
            output::show(client.json(), &response, |response| {
                show(notification_of(response.notification.as_ref())?)
            })?;
            let notification = notification_of(response.notification.as_ref())?;
            if notification.state == pb::NotificationState::Failed as i32 {
                anyhow::bail!(
                    "notification {} failed after {} attempt(s): {}",
                    notification.id,
                    notification.attempts,
                    notification.last_error
                );
            }
            if notification.state == pb::NotificationState::Cancelled as i32 {
                anyhow::bail!("notification {} was cancelled", notification.id);
            }
            Ok(())
        }
    }
}

/// The account's display name, from identity, for emails sent without --account-name.
async fn account_display_name(client: &Client, account: &str) -> anyhow::Result<String> {
    let mut accounts = AccountServiceClient::new(client.channel(Service::Identity).await?);
    let response = client
        .call(
            "roster.identity.v1.AccountService/GetAccount",
            None,
            GetAccountRequest {
                id: account.to_owned(),
            },
            async |request| accounts.get_account(request).await,
        )
        .await
        .context("reading the account's display name (or pass --account-name)")?;
    Ok(output::returned(response.account, "account")?.display_name)
}

async fn get(
    client: &Client,
    notifications: &mut NotificationServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<pb::GetNotificationResponse> {
    client
        .call(
            "roster.notification.v1.NotificationService/GetNotification",
            None,
            pb::GetNotificationRequest {
                notification_id: id.to_owned(),
            },
            async |request| notifications.get_notification(request).await,
        )
        .await
}

fn notification_of(notification: Option<&pb::Notification>) -> anyhow::Result<&pb::Notification> {
    output::returned(notification, "notification")
}

fn state_name(state: i32) -> String {
    output::short_enum(
        state,
        "NOTIFICATION_STATE_",
        |state: pb::NotificationState| state.as_str_name(),
    )
}

fn show(notification: &pb::Notification) -> anyhow::Result<()> {
    output::outln!(
        "{}",
        output::details(&[
            ("id", notification.id.clone()),
            ("account", notification.account_id.clone()),
            ("recipient", notification.recipient.clone()),
            ("template", notification.template.clone()),
            ("locale", notification.locale.clone()),
            ("state", state_name(notification.state)),
            ("attempts", notification.attempts.to_string()),
            ("last error", notification.last_error.clone()),
            ("message id", notification.message_id.clone()),
            ("created", output::time(notification.create_time.as_ref())),
            ("updated", output::time(notification.update_time.as_ref())),
            (
                "next attempt",
                output::time(notification.next_attempt_time.as_ref())
            ),
            ("sent", output::time(notification.sent_time.as_ref())),
        ])
    )?;
    Ok(())
}
