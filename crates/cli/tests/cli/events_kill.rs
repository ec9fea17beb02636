//! The audit log under fire, on PostgreSQL with the real NATS JetStream: two identity replicas
//! as real `roster serve identity` processes share one database and publish to one stream.
//! A burst of mixed changes runs against both while each replica is SIGKILLed and restarted,
//! and NATS is away for a while in the middle. Afterwards every committed change is in the log
//! once, on the stream once (by Nats-Msg-Id, in sequence order) and in WatchEvents from
//! cursor 0 once; no refused call left an event.

use std::collections::HashSet;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use roster_proto::identity::v1 as pb;
use roster_tests::clients::Identity;
use roster_tests::{ADMIN_KEY, Backend, TestDatabase, connect};
use tokio::sync::Mutex;
use tokio_stream::StreamExt;

use crate::common;

/// One identity replica: its port, its environment and its process.
struct Replica {
    port: u16,
    env: Vec<(&'static str, String)>,
    child: Child,
}

impl Replica {
    fn start(port: u16, env: Vec<(&'static str, String)>) -> Replica {
        let child = common::serve("identity", &env);
        Replica { port, env, child }
    }

    async fn client(&self) -> Identity {
        Identity::new(
            connect(format!("127.0.0.1:{}", self.port).parse().unwrap()).await,
            ADMIN_KEY,
        )
    }

    /// SIGKILL, then the same replica again on the same port.
    async fn kill_and_restart(&mut self) {
        common::signal(&self.child, "KILL");
        let _ = self.child.wait();
        self.child = common::serve("identity", &self.env);
        self.client().await;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a call of the burst must leave in the log once acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// An event (a create, a rename).
    Event,
    /// An event or none (a role held already, a profile deleted already).
    Maybe,
    /// None: the call must be refused.
    Refused,
}

/// One change through `identity`, number `n` of the burst: creates, renames, role changes and
/// deletes of the account's profiles, and now and then a call that must be refused (a taken
/// username). Answers its request id, its outcome and what it must leave in the log.
async fn change(
    identity: &Identity,
    account: &str,
    n: usize,
    profiles: &Mutex<Vec<String>>,
) -> (String, Result<(), tonic::Status>, Expect) {
    let request_id = format!("burst-{n}");
    let known = profiles.lock().await.clone();
    let target = known.get(n % known.len().max(1)).cloned();
    let outcome = match (n % 6, target) {
        (5, _) => {
            // Refused: the first profile's username is taken for good.
            let taken = identity
                .create_profile(pb::CreateProfileRequest {
                    account_id: account.to_owned(),
                    first_name: "Taken".into(),
                    last_name: "Again".into(),
                    email: "p0@acme.example".into(),
                    request_id: request_id.clone(),
                    ..Default::default()
                })
                .await;
            return (request_id, taken.map(|_| ()), Expect::Refused);
        }
        (1, Some(id)) => (
            identity
                .update_profile(pb::UpdateProfileRequest {
                    profile: Some(pb::Profile {
                        id,
                        first_name: format!("Renamed{n}"),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["first_name".into()],
                    }),
                    request_id: request_id.clone(),
                })
                .await
                .map(|_| ()),
            Expect::Event,
        ),
        (2, Some(id)) => (
            identity
                .assign_roles(pb::AssignRolesRequest {
                    profile_id: id,
                    roles: vec![pb::Role::StandardUser as i32],
                    request_id: request_id.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Expect::Maybe,
        ),
        (4, Some(id)) if n % 12 == 4 => (
            identity
                .delete_profile(pb::DeleteProfileRequest {
                    id,
                    request_id: request_id.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Expect::Maybe,
        ),
        _ => {
            let created = identity
                .create_profile(pb::CreateProfileRequest {
                    account_id: account.to_owned(),
                    first_name: "P".into(),
                    last_name: format!("{n}"),
                    email: format!("p{n}@acme.example"),
                    request_id: request_id.clone(),
                    ..Default::default()
                })
                .await;
            if let Ok(response) = &created {
                let id = response.profile.clone().expect("profile").id;
                profiles.lock().await.push(id);
            }
            (created.map(|_| ()), Expect::Event)
        }
    };
    (request_id, outcome.0, outcome.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_change_reaches_log_stream_and_watch_once_through_kills_and_an_outage() {
    let Some(nats) = roster_tests::nats::connect().await else {
        return;
    };
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let keys_file = dir.path().join("keys.toml");
    common::write_admin_keys_file(&keys_file, ADMIN_KEY);
    let upstream = roster_tests::nats::url()
        .trim_start_matches("nats://")
        .to_owned();
    let proxy = roster_tests::proxy::Proxy::start(upstream).await;
    let env = |port: u16| {
        vec![
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", database.url.clone()),
            ("KEYS_FILE", keys_file.display().to_string()),
            ("RESET_HTTP_ADDR", "off".to_owned()),
            ("SCIM_ADDR", "off".to_owned()),
            ("EVENTS_NATS_URL", format!("nats://{}", proxy.addr)),
        ]
    };
    let (port_a, port_b) = (common::free_port(), common::free_port());
    let mut a = Replica::start(port_a, env(port_a));
    let mut b = Replica::start(port_b, env(port_b));
    let account = a.client().await.account("Acme").await.id;
    b.client().await;

    // The burst: two writers, one per replica, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let profiles = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for (writer, port) in [(0usize, port_a), (1, port_b)] {
        let (stop, profiles, account) = (stop.clone(), profiles.clone(), account.clone());
        writers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = writer;
            while !stop.load(Ordering::Relaxed) {
                let identity = Identity::new(
                    connect(format!("127.0.0.1:{port}").parse().unwrap()).await,
                    ADMIN_KEY,
                );
                let outcome = change(&identity, &account, n, &profiles).await;
                if outcome.1.is_err() && outcome.2 != Expect::Refused {
                    // The replica is down or restarting: try the next change a moment later.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                outcomes.push(outcome);
                n += 2;
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill_and_restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.set(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.kill_and_restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.set(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill_and_restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.extend(writer.await.unwrap());
    }

    // The log: every acknowledged change once, no refused call at all.
    let identity = b.client().await;
    let acknowledged: Vec<&str> = outcomes
        .iter()
        .filter(|(_, outcome, expect)| outcome.is_ok() && *expect == Expect::Event)
        .map(|(request_id, _, _)| request_id.as_str())
        .collect();
    assert!(
        acknowledged.len() > 20,
        "the burst made too few changes: {}",
        acknowledged.len()
    );
    // The last changes are numbered a moment after they committed (a change whose answer
    // the kill lost may have committed too): read the log until it stops growing.
    let mut log = identity.all_events(&account).await;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let again = identity.all_events(&account).await;
        let logged: HashSet<&str> = again
            .iter()
            .map(|event| event.request_id.as_str())
            .collect();
        let complete = acknowledged
            .iter()
            .all(|request_id| logged.contains(request_id));
        if complete && again == log {
            break;
        }
        log = again;
    }
    for request_id in &acknowledged {
        assert!(
            log.iter().any(|event| event.request_id == *request_id),
            "{request_id} was acknowledged but left no event"
        );
    }
    let refused: HashSet<&str> = outcomes
        .iter()
        .filter(|(_, _, expect)| *expect == Expect::Refused)
        .map(|(request_id, outcome, _)| {
            assert!(outcome.is_err(), "{request_id} should have been refused");
            request_id.as_str()
        })
        .collect();
    assert!(!refused.is_empty());
    assert!(
        log.iter()
            .all(|event| !refused.contains(event.request_id.as_str())),
        "a refused call left an event"
    );
    let ids: HashSet<&str> = log.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids.len(), log.len(), "an event twice in the log");
    for pair in log.windows(2) {
        assert!(pair[0].sequence < pair[1].sequence);
    }

    // The stream: the same events, each once, in the same order.
    let published =
        roster_tests::nats::published(&nats, &account, log.len(), Duration::from_secs(120)).await;
    let published_ids: Vec<&str> = published
        .iter()
        .map(|message| message.message_id.as_str())
        .collect();
    let logged_ids: Vec<&str> = log.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(published_ids, logged_ids);
    let later =
        roster_tests::nats::published(&nats, &account, log.len() + 1, Duration::from_secs(2)).await;
    let later_ids: Vec<&str> = later
        .iter()
        .map(|message| message.message_id.as_str())
        .collect();
    assert_eq!(
        later_ids, logged_ids,
        "nothing published twice, nothing more"
    );

    // WatchEvents from 0: the same again.
    let mut watch = identity
        .watch_events(pb::WatchEventsRequest {
            account_id: account.clone(),
            cursor: "0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watched = Vec::new();
    while watched.len() < log.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch goes on")
            .unwrap()
            .unwrap();
        if let Some(pb::watch_events_response::Kind::Event(event)) = message.kind {
            watched.push(event.id);
        }
    }
    assert_eq!(watched, logged_ids);
}
