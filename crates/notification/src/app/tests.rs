//! The use cases over a SQLite store: idempotent queueing per caller and request id.

use std::collections::HashMap;

use super::*;
use crate::store::Migrator;

async fn notifications() -> (Notifications, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/notification.db?mode=rwc", dir.path().display());
    let db = roster_runtime::db::connect(&url, 4).await.unwrap();
    roster_runtime::db::migrate::<Migrator>(&db).await.unwrap();
    let notifications = Notifications::new(
        Store::new(db),
        Arc::new(Templates::builtin().unwrap()),
        Arc::new(Notify::new()),
        "roster".into(),
        ActionCounters::default(),
    );
    (notifications, dir)
}

fn welcome_variables() -> HashMap<String, String> {
    HashMap::from([
        ("first_name".to_owned(), "Ada".to_owned()),
        ("username".to_owned(), "ada".to_owned()),
    ])
}

fn welcome<'a>(request_id: &'a str, variables: &'a HashMap<String, String>) -> RawEmailRequest<'a> {
    RawEmailRequest {
        request_id,
        account_id: "0b6f3f0e-6a52-4f7e-9a53-2b1c7f0d9e11",
        recipient: "ada@example.com",
        template: "welcome",
        locale: "en-GB",
        variables,
        account_display_name: "Acme",
    }
}

#[tokio::test]
async fn a_repeated_request_id_returns_the_first_notification() {
    let (notifications, _dir) = notifications().await;
    let variables = welcome_variables();
    let caller = Caller::internal("caller");
    let first = notifications
        .send_email(&caller, welcome("r-1", &variables))
        .await
        .unwrap();
    assert_eq!(first.state, DeliveryState::Queued);
    assert_eq!(first.locale, "en");
    assert_eq!(first.requested_locale, "en-GB");
    let again = notifications
        .send_email(&caller, welcome("r-1", &variables))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    // Another caller's identical request id is its own.
    let other = notifications
        .send_email(
            &Caller::internal("other-caller"),
            welcome("r-1", &variables),
        )
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
}

#[tokio::test]
async fn lists_page_through_an_account_newest_first() {
    let (notifications, _dir) = notifications().await;
    let variables = welcome_variables();
    let caller = Caller::internal("caller");
    let mut ids = Vec::new();
    for index in 0..3 {
        let request_id = format!("r-{index}");
        let queued = notifications
            .send_email(&caller, welcome(&request_id, &variables))
            .await
            .unwrap();
        ids.push(queued.id);
    }
    ids.reverse();
    let query = ListQuery {
        account_id: "0b6f3f0e-6a52-4f7e-9a53-2b1c7f0d9e11".parse().unwrap(),
        state: None,
        cursor: None,
        page_size: 2,
    };
    let first = notifications
        .list_notifications(&caller, query)
        .await
        .unwrap();
    assert_eq!(first.notifications.len(), 2);
    let next = first.next.expect("a second page");
    let second = notifications
        .list_notifications(
            &caller,
            ListQuery {
                cursor: Some(next),
                ..query
            },
        )
        .await
        .unwrap();
    assert!(second.next.is_none());
    let seen: Vec<Uuid> = first
        .notifications
        .iter()
        .chain(&second.notifications)
        .map(|notification| notification.id)
        .collect();
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn a_cancel_is_answered_the_same_on_a_repeat_and_refused_with_the_state_otherwise() {
    let (notifications, _dir) = notifications().await;
    let variables = welcome_variables();
    let caller = Caller::internal("caller");
    let first = notifications
        .send_email(&caller, welcome("r-1", &variables))
        .await
        .unwrap();
    let second = notifications
        .send_email(&caller, welcome("r-2", &variables))
        .await
        .unwrap();

    let retried = notifications
        .retry_notification(&caller, first.id, "retry-1")
        .await;
    assert!(
        matches!(
            retried,
            Err(NotificationError::NotFailed(DeliveryState::Queued))
        ),
        "{retried:?}"
    );
    let cancelled = notifications
        .cancel_notification(&caller, first.id, "cancel-1")
        .await
        .unwrap();
    assert_eq!(cancelled.state, DeliveryState::Cancelled);
    let again = notifications
        .cancel_notification(&caller, first.id, "cancel-1")
        .await
        .unwrap();
    assert_eq!(again, cancelled);
    assert_eq!(
        notifications.counters.cancelled.get(),
        1,
        "a repeat is not counted again"
    );
    let other_request = notifications
        .cancel_notification(&caller, first.id, "cancel-2")
        .await;
    assert!(
        matches!(
            other_request,
            Err(NotificationError::NotWaiting(DeliveryState::Cancelled))
        ),
        "{other_request:?}"
    );
    let reused = notifications
        .cancel_notification(&caller, second.id, "cancel-1")
        .await;
    assert!(
        matches!(reused, Err(NotificationError::RequestIdReused)),
        "{reused:?}"
    );
    let empty = notifications
        .cancel_notification(&caller, second.id, "")
        .await;
    assert!(
        matches!(empty, Err(NotificationError::Invalid(_))),
        "{empty:?}"
    );
}

#[tokio::test]
async fn an_action_is_tried_again_only_when_the_state_read_after_a_refusal_accepts_it() {
    let (notifications, _dir) = notifications().await;
    let variables = welcome_variables();
    let caller = Caller::internal("caller");
    let queued = notifications
        .send_email(&caller, welcome("r-1", &variables))
        .await
        .unwrap();
    let in_state = |state, variables: &str| Notification {
        state,
        variables: variables.to_owned(),
        ..queued.clone()
    };
    for state in DeliveryState::ALL {
        let notification = in_state(state, &queued.variables);
        assert_eq!(
            accepts(Action::Cancel, &notification),
            matches!(state, DeliveryState::Queued | DeliveryState::Retrying),
            "{state:?}"
        );
        assert_eq!(
            accepts(Action::Retry, &notification),
            state == DeliveryState::Failed,
            "{state:?}"
        );
    }
    let discarded = in_state(DeliveryState::Failed, "{}");
    assert!(!accepts(Action::Retry, &discarded));
    assert!(matches!(
        refused(Action::Retry, &discarded),
        NotificationError::VariablesDiscarded
    ));
    assert!(matches!(
        refused(Action::Cancel, &in_state(DeliveryState::Sending, "{}")),
        NotificationError::NotWaiting(DeliveryState::Sending)
    ));
}
