//! The notification queue's invariants, on both backends, through its store: one claim per
//! message, leases that expire, results recorded only by the lease holder, a request key held
//! once per caller. PostgreSQL and SQLite take different statements for each (one statement
//! with `FOR UPDATE SKIP LOCKED` or a data-modifying `WITH` on PostgreSQL, transactions on
//! SQLite); both are held to the same answers. One more is SQLite's own: a claim on connections
//! that read the schema before a migration.

use std::time::Duration;

use chrono::{DateTime, Utc};
use roster_notification::domain::attempt::{Finished, Outcome};
use roster_notification::domain::notification::{NewNotification, Notification};
use roster_notification::domain::state::DeliveryState;
use roster_notification::store::{Migrator, Store, entities, now, queue};
use roster_tests::{Backend, TestDatabase, both_backends};
use uuid::Uuid;

/// A store on a fresh, migrated database of `backend`, and the database (dropped with the
/// test); `None` when PostgreSQL is wanted but absent outside CI.
async fn store(backend: Backend) -> Option<(Store, TestDatabase)> {
    let database = TestDatabase::create(backend).await?;
    let db = roster_runtime::db::connect(&database.url, 4).await.unwrap();
    roster_runtime::db::migrate::<Migrator>(&db).await.unwrap();
    Some((Store::new(db), database))
}

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

async fn a_request_key_is_held_once_per_caller(backend: Backend) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    let first = enqueue(&store, "r-1").await;
    let twin = queued();
    assert!(!store.enqueue(&twin, "caller", "r-1").await.unwrap());
    assert_eq!(store.find(twin.id).await.unwrap(), None);
    let held = store.by_request("caller", "r-1").await.unwrap().unwrap();
    assert_eq!(held.id, first.id);
    // Another caller's identical request id is its own.
    let other = queued();
    assert!(store.enqueue(&other, "other-caller", "r-1").await.unwrap());
    assert_eq!(
        store
            .by_request("other-caller", "r-1")
            .await
            .unwrap()
            .unwrap()
            .id,
        other.id
    );
}

async fn a_message_is_claimed_once_until_its_lease_runs_out(backend: Backend) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    let queued = enqueue(&store, "r-1").await;
    let claimed = store.claim("a", now(), later(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, queued.id);
    assert_eq!(claimed[0].state, DeliveryState::Sending);
    assert_eq!(claimed[0].attempts, 1);
    assert!(
        store
            .claim("b", now(), later(60), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Worker "a" died: after its lease another worker takes the message, as attempt 2.
    let reclaimed = store.claim("b", later(61), later(120), 10).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].attempts, 2);
    assert_eq!(reclaimed[0].lease_owner.as_deref(), Some("b"));

    // The old owner can no longer record a result; the new one can.
    let finished = |owner| Finished {
        id: queued.id,
        owner,
        number: 2,
        outcome: Outcome::Sent,
        started_at: now(),
        finished_at: now(),
    };
    assert!(matches!(
        store.finish(finished("a")).await.unwrap(),
        queue::Recording::NotHeld(Some(ref held)) if held.lease_owner.as_deref() == Some("b")
    ));
    assert_eq!(
        store.finish(finished("b")).await.unwrap(),
        queue::Recording::Recorded
    );
    let sent = store.find(queued.id).await.unwrap().unwrap();
    assert_eq!(sent.state, DeliveryState::Sent);
    assert_eq!(sent.variables, "{}", "secrets are dropped once sent");
    assert!(sent.lease_owner.is_none());
    let history = store.attempts(queued.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].worker, "b");
}

/// A deleted account's messages are never claimed, whatever their state: one queued just
/// before the deletion was known, one that went back to RETRYING from an attempt under way
/// while the account's waiting messages were cancelled, and one whose worker died. They wait
/// for the pass that cancels them; other accounts' messages go on.
async fn a_deleted_accounts_messages_are_not_claimed(backend: Backend) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    let gone = enqueue(&store, "r-1").await;
    let retrying = enqueue_new(
        &store,
        "r-2",
        Notification {
            account_id: gone.account_id,
            ..queued()
        },
    )
    .await;
    let kept = enqueue(&store, "r-3").await;
    let deleted = std::collections::HashSet::from([gone.account_id]);
    let claimed = store
        .claim_except("a", now(), later(60), 10, &deleted)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|message| message.id).collect::<Vec<_>>(),
        [kept.id]
    );
    // Before the deletion was known, one of its messages was claimed; its attempt ends in a
    // retry, due at once, and another whose worker died is due again.
    let before = store.claim("b", now(), later(1), 10).await.unwrap();
    assert_eq!(before.len(), 2);
    store
        .finish(Finished {
            id: retrying.id,
            owner: "b",
            number: 1,
            outcome: Outcome::Retry {
                next_attempt_at: now(),
                error: "421 4.3.0 try later".into(),
                smtp_code: Some(421),
            },
            started_at: now(),
            finished_at: now(),
        })
        .await
        .unwrap();
    // Later, every message is due: the other account's (its worker died) alone is claimed.
    let due = store
        .claim_except("a", later(120), later(180), 10, &deleted)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|message| message.id).collect::<Vec<_>>(),
        [kept.id],
        "a deleted account's message was claimed"
    );
    assert_eq!(
        store
            .claim_except("a", later(120), later(180), 10, &Default::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn a_retrying_message_waits_for_its_time(backend: Backend) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    let queued = enqueue(&store, "r-1").await;
    store.claim("a", now(), later(60), 10).await.unwrap();
    let recorded = store
        .finish(Finished {
            id: queued.id,
            owner: "a",
            number: 1,
            outcome: Outcome::Retry {
                next_attempt_at: later(30),
                error: "421 4.3.0 try later".into(),
                smtp_code: Some(421),
            },
            started_at: now(),
            finished_at: now(),
        })
        .await
        .unwrap();
    assert_eq!(recorded, queue::Recording::Recorded);
    let retrying = store.find(queued.id).await.unwrap().unwrap();
    assert_eq!(retrying.state, DeliveryState::Retrying);
    assert_eq!(retrying.last_error.as_deref(), Some("421 4.3.0 try later"));
    assert!(
        store
            .claim("a", now(), later(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .claim("a", later(31), later(90), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.attempts(queued.id).await.unwrap()[0].smtp_code,
        Some(421)
    );
}

async fn concurrent_workers_never_share_a_message(backend: Backend) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    for index in 0..60 {
        enqueue(&store, &format!("r-{index}")).await;
    }
    let workers = (0..6).map(|worker| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim(&format!("w{worker}"), now(), later(60), 4)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|notification| notification.id));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    });
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 60);
    assert_eq!(distinct.len(), 60);
}

async fn lists_are_newest_first_and_page_without_gaps(backend: Backend) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    let account = Uuid::new_v4();
    let mut ids = Vec::new();
    for index in 0..5 {
        let mut new = queued();
        new.account_id = account;
        let queued = enqueue_new(&store, &format!("r-{index}"), new).await;
        ids.push(queued.id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(account, None, cursor, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(Notification::cursor);
        seen.extend(page.into_iter().map(|notification| notification.id));
    }
    assert_eq!(seen, ids);
    assert!(
        store
            .list(account, Some(DeliveryState::Sent), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_cancelled_message_is_never_claimed_and_one_being_sent_cannot_be_cancelled(
    backend: Backend,
) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    let cancelled = enqueue(&store, "r-1").await;
    let sending = enqueue(&store, "r-2").await;

    let txn = store.begin().await.unwrap();
    assert!(txn.cancel_waiting(cancelled.id, now()).await.unwrap());
    txn.commit().await.unwrap();
    let claimed = store.claim("a", now(), later(60), 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|message| message.id).collect::<Vec<_>>(),
        [sending.id]
    );

    let txn = store.begin().await.unwrap();
    assert!(!txn.cancel_waiting(sending.id, now()).await.unwrap());
    assert!(!txn.cancel_waiting(cancelled.id, now()).await.unwrap());
    txn.rollback().await.unwrap();
    assert_eq!(
        store.find(sending.id).await.unwrap().unwrap().state,
        DeliveryState::Sending
    );

    // Long after any lease, no worker takes the cancelled message.
    let reclaimed = store
        .claim("b", later(3600), later(3660), 10)
        .await
        .unwrap();
    assert_eq!(
        reclaimed
            .iter()
            .map(|message| message.id)
            .collect::<Vec<_>>(),
        [sending.id]
    );
    let cancelled = store.find(cancelled.id).await.unwrap().unwrap();
    assert_eq!(cancelled.state, DeliveryState::Cancelled);
    assert_eq!(cancelled.attempts, 0);
    assert_eq!(
        cancelled.variables, "{}",
        "secrets are dropped once cancelled"
    );
}

async fn a_failed_message_is_queued_again_with_a_new_budget_and_the_same_message_id(
    backend: Backend,
) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    let queued = enqueue(&store, "r-1").await;
    store.claim("a", now(), later(60), 10).await.unwrap();
    assert!(
        store
            .finish(Finished {
                id: queued.id,
                owner: "a",
                number: 1,
                outcome: Outcome::Failed {
                    error: "550 5.1.1 mailbox unavailable".into(),
                    smtp_code: Some(550),
                },
                started_at: now(),
                finished_at: now(),
            })
            .await
            .unwrap()
            == queue::Recording::Recorded
    );
    let failed = store.find(queued.id).await.unwrap().unwrap();
    assert_eq!(failed.variables, queued.variables, "kept for a retry");

    let txn = store.begin().await.unwrap();
    assert!(txn.requeue_failed(queued.id, now()).await.unwrap());
    assert!(
        !txn.requeue_failed(queued.id, now()).await.unwrap(),
        "only a FAILED message is queued again"
    );
    txn.commit().await.unwrap();
    let requeued = store.find(queued.id).await.unwrap().unwrap();
    assert_eq!(requeued.state, DeliveryState::Queued);
    assert_eq!(requeued.message_id, queued.message_id);
    assert_eq!(requeued.attempts_before_retry, 1);

    let claimed = store.claim("b", now(), later(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 2, "the history keeps counting");
    assert_eq!(claimed[0].attempt_in_budget(), 1, "the budget starts again");
}

async fn a_failed_message_whose_variables_were_discarded_is_not_queued_again(backend: Backend) {
    let Some((store, _database)) = store(backend).await else {
        return;
    };
    let discarded = enqueue_new(
        &store,
        "r-1",
        Notification {
            variables: "{}".into(),
            ..queued()
        },
    )
    .await;
    store.claim("a", now(), later(60), 10).await.unwrap();
    assert!(
        store
            .finish(Finished {
                id: discarded.id,
                owner: "a",
                number: 1,
                outcome: Outcome::Failed {
                    error: "template: missing first_name".into(),
                    smtp_code: None,
                },
                started_at: now(),
                finished_at: now(),
            })
            .await
            .unwrap()
            == queue::Recording::Recorded
    );
    let txn = store.begin().await.unwrap();
    assert!(!txn.requeue_failed(discarded.id, now()).await.unwrap());
    txn.rollback().await.unwrap();
    assert_eq!(
        store.find(discarded.id).await.unwrap().unwrap().state,
        DeliveryState::Failed
    );
}

async fn a_batch_of_attempts_is_recorded_in_one_transaction_each_on_its_own_lease(
    backend: Backend,
) {
    let Some((store, database)) = store(backend).await else {
        return;
    };
    let sent = enqueue(&store, "batch-1").await;
    let retried = enqueue(&store, "batch-2").await;
    let taken_over = enqueue(&store, "batch-3").await;
    assert_eq!(
        store.claim("a", now(), later(60), 10).await.unwrap().len(),
        3
    );
    // The third message's lease ran out and worker "b" took it over.
    {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let updated = entities::notification::Entity::update_many()
            .col_expr(
                entities::notification::Column::LeaseOwner,
                Expr::value(Some("b".to_owned())),
            )
            .filter(entities::notification::Column::Id.eq(taken_over.id))
            .exec(&roster_runtime::db::connect(&database.url, 1).await.unwrap())
            .await
            .unwrap();
        assert_eq!(updated.rows_affected, 1);
    }

    let finished = |id, outcome| Finished {
        id,
        owner: "a",
        number: 1,
        outcome,
        started_at: now(),
        finished_at: now(),
    };
    let recordings = store
        .finish_all(&[
            finished(sent.id, Outcome::Sent),
            finished(
                retried.id,
                Outcome::Retry {
                    next_attempt_at: later(30),
                    error: "421 4.3.0 try later".into(),
                    smtp_code: Some(421),
                },
            ),
            finished(taken_over.id, Outcome::Sent),
        ])
        .await
        .unwrap();
    assert_eq!(recordings[0], queue::Recording::Recorded);
    assert_eq!(recordings[1], queue::Recording::Recorded);
    assert!(matches!(
        &recordings[2],
        queue::Recording::NotHeld(Some(held)) if held.lease_owner.as_deref() == Some("b")
    ));
    let state = |id| {
        let store = store.clone();
        async move { store.find(id).await.unwrap().unwrap().state }
    };
    assert_eq!(state(sent.id).await, DeliveryState::Sent);
    assert_eq!(state(retried.id).await, DeliveryState::Retrying);
    assert_eq!(state(taken_over.id).await, DeliveryState::Sending);
    assert_eq!(store.attempts(sent.id).await.unwrap().len(), 1);
    assert_eq!(store.attempts(retried.id).await.unwrap().len(), 1);
    assert!(store.attempts(taken_over.id).await.unwrap().is_empty());
}

/// A SQLite connection that read the schema before a migration added a column describes the
/// claim's statement with the old schema (SQLite names the new column by its quoted text). The
/// claim must still hand every message over: what a worker claims is never left SENDING unsent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_on_sqlite_connections_that_read_the_schema_before_a_migration_hand_over_every_message()
 {
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

/// On PostgreSQL the record of a batch's attempts reaches each message by its primary key at any
/// size of the table, also in the generic plan a connection keeps for a prepared statement after
/// its fifth run. The store's one connection here takes the generic plan from the first run
/// (`plan_cache_mode = force_generic_plan`) on a table of eight rows, where one sequential scan
/// costs less than eight index probes: recording the batch must start no sequential scan of
/// `notifications` (`pg_stat_user_tables`). One UPDATE joined to the attempts' `VALUES` list
/// was planned there as a hash join over a scan of the whole table, and a connection that
/// prepared it while the queue was small kept that plan while the queue grew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_attempts_scans_no_table_whatever_its_size_on_postgres() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let mut url = url::Url::parse(&database.url).unwrap();
    url.query_pairs_mut()
        .append_pair("options", "-c plan_cache_mode=force_generic_plan");
    let db = roster_runtime::db::connect(url.as_str(), 1).await.unwrap();
    roster_runtime::db::migrate::<Migrator>(&db).await.unwrap();
    {
        use sea_orm::ConnectionTrait;
        let mode = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SHOW plan_cache_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        let mode: String = mode.try_get_by_index(0).unwrap();
        assert_eq!(mode, "force_generic_plan");
    }
    let store = Store::new(db.clone());
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(enqueue(&store, &format!("plan-{n}")).await.id);
    }
    assert_eq!(
        store.claim("a", now(), later(60), 8).await.unwrap().len(),
        8
    );
    // The claim's eight updates are counted once its backend has reported them.
    let before = table_counts(&db, &database.url, 8).await;

    let finished: Vec<Finished<'_>> = ids
        .iter()
        .map(|&id| Finished {
            id,
            owner: "a",
            number: 1,
            outcome: Outcome::Sent,
            started_at: now(),
            finished_at: now(),
        })
        .collect();
    let recordings = store.finish_all(&finished).await.unwrap();
    assert!(
        recordings
            .iter()
            .all(|recording| *recording == queue::Recording::Recorded)
    );
    let after = table_counts(&db, &database.url, 16).await;
    assert_eq!(
        after.seq_scans, before.seq_scans,
        "recording the attempts scanned the queue table"
    );
    assert!(after.index_scans >= before.index_scans + 8);
}

/// What PostgreSQL counted on `notifications` in one test's database.
struct TableCounts {
    seq_scans: i64,
    index_scans: i64,
}

/// `notifications`' scans, once the statistics show at least `updates` row updates. A backend
/// reports its counts when it goes idle, at most once a second unless told to at once: `store`
/// (the store's one connection) is told so first.
async fn table_counts(store: &sea_orm::DatabaseConnection, url: &str, updates: i64) -> TableCounts {
    use sea_orm::ConnectionTrait;
    store
        .execute_unprepared("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // A connection of its own: each statement outside a transaction reads fresh statistics.
    let db = roster_runtime::db::connect(url, 1).await.unwrap();
    loop {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT seq_scan, COALESCE(idx_scan, 0), n_tup_upd FROM pg_stat_user_tables \
                 WHERE relname = 'notifications'",
            ))
            .await
            .unwrap()
            .unwrap();
        let counts = TableCounts {
            seq_scans: row.try_get_by_index(0).unwrap(),
            index_scans: row.try_get_by_index(1).unwrap(),
        };
        let updated: i64 = row.try_get_by_index(2).unwrap();
        if updated >= updates {
            let _ = db.close().await;
            return counts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PostgreSQL reported {updated} updates of notifications, not {updates}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

both_backends!(
    a_deleted_accounts_messages_are_not_claimed,
    a_request_key_is_held_once_per_caller,
    a_message_is_claimed_once_until_its_lease_runs_out,
    a_retrying_message_waits_for_its_time,
    concurrent_workers_never_share_a_message,
    lists_are_newest_first_and_page_without_gaps,
    a_cancelled_message_is_never_claimed_and_one_being_sent_cannot_be_cancelled,
    a_failed_message_is_queued_again_with_a_new_budget_and_the_same_message_id,
    a_failed_message_whose_variables_were_discarded_is_not_queued_again,
    a_batch_of_attempts_is_recorded_in_one_transaction_each_on_its_own_lease,
);
