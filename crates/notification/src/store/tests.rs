//! The claim on SQLite connections that read the schema before a migration. The queue's other
//! invariants are tested on both backends in the end-to-end tests (`notification_store`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::domain::notification::{NewNotification, Notification};

fn queued() -> Notification {
    let id = Uuid::now_v7();
    let new = NewNotification {
        id,
        account_id: Uuid::new_v4(),
        recipient: "ada@example.com".into(),
        template: "welcome".into(),
        locale: "en".into(),
        requested_locale: "en-GB".into(),
        variables: r#"{"first_name":"Ada","username":"ada"}"#.into(),
        account_display_name: "Acme".into(),
        message_id: format!("<{id}@roster>"),
    };
    Notification::queued(new, now())
}

fn later(seconds: i64) -> DateTime<Utc> {
    now() + chrono::Duration::seconds(seconds)
}

/// Queues a notification as `SendEmail` does: the notification and its request key together.
async fn enqueue_new(store: &Store, request_id: &str, notification: Notification) -> Notification {
    assert!(
        store
            .enqueue(&notification, "caller", request_id)
            .await
            .unwrap()
    );
    notification
}

async fn enqueue(store: &Store, request_id: &str) -> Notification {
    enqueue_new(store, request_id, queued()).await
}

/// A SQLite connection that read the schema before a migration added a column describes the
/// claim's statement with the old schema (SQLite names the new column by its quoted text). The
/// claim must still hand every message over: what a worker claims is never left SENDING unsent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_on_connections_that_read_the_schema_before_a_migration_hand_over_every_message() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    use sea_orm_migration::MigratorTrait;
    const CONNECTIONS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/notification.db?mode=rwc", dir.path().display());
    let db = roster_runtime::db::connect(&url, CONNECTIONS as u32)
        .await
        .unwrap();
    Migrator::up(&db, Some(1)).await.unwrap();
    // Every connection of the pool reads the table as the first migration left it.
    let txns = futures::future::join_all((0..CONNECTIONS).map(|_| db.begin())).await;
    for txn in &txns {
        let txn = txn.as_ref().unwrap();
        txn.execute_unprepared("SELECT count(*) FROM notifications")
            .await
            .unwrap();
    }
    for txn in txns {
        txn.unwrap().commit().await.unwrap();
    }
    // The later migrations and the messages come through another pool, so that the first
    // pool's connections keep the schema they read.
    let other = roster_runtime::db::connect(&url, 1).await.unwrap();
    Migrator::up(&other, None).await.unwrap();
    let other = Store::new(other);
    let mut queued = Vec::new();
    for index in 0..CONNECTIONS * 2 {
        queued.push(enqueue(&other, &format!("r-{index}")).await.id);
    }

    let store = Store::new(db);
    let claims = futures::future::join_all((0..CONNECTIONS * 2).map(|index| {
        let store = store.clone();
        async move {
            store
                .claim(&format!("w-{index}"), now(), later(60), 1)
                .await
        }
    }))
    .await;
    let mut claimed = Vec::new();
    for claim in claims {
        let claim = claim.expect("a claim on any connection succeeds");
        assert_eq!(claim.len(), 1);
        assert_eq!(claim[0].attempts_before_retry, 0);
        claimed.push(claim[0].id);
    }
    claimed.sort();
    queued.sort();
    assert_eq!(claimed, queued, "each message claimed once");
}
