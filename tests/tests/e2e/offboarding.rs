//! Offboarding, on SQLite and PostgreSQL: DeleteAccount closes an account everywhere — its
//! profiles deleted with their usernames retired, keys limited to it refused by every RPC,
//! its SCIM tokens refused, nothing in it changeable — and UndeleteAccount brings it back as
//! it was; after `account_retention_days` the purge removes its personal data and keeps what
//! never-reuse needs (checked in the database). Racing creations never leave a profile active
//! in a deleted account, and two purges racing purge each profile once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use roster_proto::identity::v1 as pb;
use roster_proto::imports::v1 as im;
use roster_proto::notification::v1 as nt;
use roster_runtime::Service;
use roster_tests::clients::{Identity, Imports, Notifications, rename_account};
use roster_tests::imports::people_csv;
use roster_tests::scim::Scim;
use roster_tests::{
    ADMIN_KEY, Backend, ImportSuite, TestDatabase, TestKey, TestServer, both_backends, count,
    identity_settings, notification_settings, raw, reason, test_settings,
};
use sea_orm::{Database, DatabaseConnection, Value};
use tonic::Code;

const STRONG: &str = "Violet-Tundra-84-Lantern";
/// A key limited to the account that is deleted, with every scope identity has.
const KEY_A: &str = "key-for-account-a";

both_backends!(
    a_deleted_account_is_closed_and_undelete_brings_it_back_as_it_was,
    bulk_import_refuses_the_key_and_cancels_then_purges_the_imports,
    notification_refuses_the_key_and_cancels_then_purges_the_emails,
    the_purge_removes_personal_data_and_keeps_usernames_retired,
    profiles_created_while_the_account_is_deleted_are_never_left_active,
    only_a_key_of_every_account_deletes_or_undeletes_one,
);

struct Fixture {
    server: TestServer,
    admin: Identity,
    as_a: Identity,
    /// The account that is deleted.
    a: String,
    /// Another account, never deleted.
    b: String,
    scim: Scim,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let database = Arc::new(TestDatabase::create(backend).await?);
    let first = TestServer::start_with(
        Service::Identity,
        test_settings(Service::Identity, &database.url),
        identity_settings(),
        database,
        Vec::new(),
    )
    .await;
    let admin = Identity::connect(&first).await;
    let a = admin.account("Acme").await.id;
    let b = admin.account("Bolt").await.id;
    let limited = TestKey::limited(
        KEY_A,
        &["accounts", "profiles", "credentials", "signin", "events"],
        &[a.parse().unwrap()],
    );
    let server = first.restart_with_keys(vec![limited]).await;
    let admin = Identity::connect(&server).await;
    let as_a = Identity::new(server.channel().await, KEY_A);
    let secret = admin.scim_token(&a, "Entra ID").await.1;
    let scim = Scim::new(server.scim_addr.expect("SCIM is on"), &secret);
    Some(Fixture {
        server,
        admin,
        as_a,
        a,
        b,
        scim,
    })
}

impl Fixture {
    /// A new profile of `account` with the password [`STRONG`].
    async fn person_with_password(&self, account: &str, email: &str) -> pb::Profile {
        let profile = self.admin.person(account, "Ada", "Lovelace", email).await;
        self.admin
            .set_password(&self.server, &profile, STRONG)
            .await;
        profile
    }

    async fn get(&self, id: &str) -> pb::Profile {
        self.admin
            .get_profile(pb::GetProfileRequest { id: id.into() })
            .await
            .expect("GetProfile")
            .profile
            .expect("profile")
    }

    async fn delete_account(&self, request_id: &str) -> Result<pb::Account, tonic::Status> {
        self.admin
            .delete_account(pb::DeleteAccountRequest {
                id: self.a.clone(),
                request_id: request_id.into(),
                ..Default::default()
            })
            .await
            .map(|response| response.account.expect("account"))
    }

    async fn undelete_account(&self, request_id: &str) -> Result<pb::Account, tonic::Status> {
        self.admin
            .undelete_account(pb::UndeleteAccountRequest {
                id: self.a.clone(),
                request_id: request_id.into(),
                ..Default::default()
            })
            .await
            .map(|response| response.account.expect("account"))
    }

    async fn signs_in(&self, profile: &pb::Profile) -> bool {
        self.admin
            .verify_password(pb::VerifyPasswordRequest {
                username: profile.username.clone(),
                password: STRONG.into(),
            })
            .await
            .is_ok_and(|response| response.verified)
    }

    /// Whether `username` could be given to a new profile.
    async fn username_is_free(&self, username: &str) -> bool {
        self.admin
            .check_username(pb::CheckUsernameRequest {
                username: username.into(),
                ..Default::default()
            })
            .await
            .expect("CheckUsername")
            .available
    }

    async fn database(&self) -> DatabaseConnection {
        Database::connect(&self.server.database.url)
            .await
            .expect("identity's database")
    }

    /// The use cases over the server's database, as another replica has them.
    async fn replica(&self) -> roster_identity::app::Identity {
        roster_identity::app::Identity::new(roster_identity::store::Store::new(
            self.database().await,
        ))
    }
}

/// GetAccount as `client`.
async fn account_of(client: &Identity, id: &str) -> Result<pb::Account, tonic::Status> {
    client
        .get_account(pb::GetAccountRequest { id: id.into() })
        .await
        .map(|response| response.account.expect("account"))
}

/// The number a field change's value holds.
fn number(value: Option<&prost_types::Value>) -> Option<f64> {
    match value?.kind.as_ref()? {
        prost_types::value::Kind::NumberValue(number) => Some(*number),
        _ => None,
    }
}

fn uuid(id: &str) -> Value {
    uuid::Uuid::parse_str(id).expect("a UUID").into()
}

/// Polls `check` every 50 ms for 5 s; panics with `what` when it never holds.
async fn within_5_s<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 5 s");
}

async fn a_deleted_account_is_closed_and_undelete_brings_it_back_as_it_was(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let ada = f.person_with_password(&f.a, "ada@acme.example").await;
    f.admin
        .assign_roles(pb::AssignRolesRequest {
            profile_id: ada.id.clone(),
            roles: vec![pb::Role::ContactCenterSupervisor as i32],
            ..Default::default()
        })
        .await
        .expect("role given");
    let ada = f
        .admin
        .give_extension(&ada.id, "201", pb::ExtensionKind::Physical)
        .await;
    let ben = f
        .admin
        .person(&f.a, "Ben", "Suspended", "ben@acme.example")
        .await;
    let ben = f
        .admin
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: ben.id.clone(),
                status: pb::ProfileStatus::Suspended as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
            ..Default::default()
        })
        .await
        .expect("suspended")
        .profile
        .unwrap();
    let gone = f
        .admin
        .person(&f.a, "Gus", "Gone", "gus@acme.example")
        .await;
    f.admin
        .delete_profile(pb::DeleteProfileRequest {
            id: gone.id.clone(),
            ..Default::default()
        })
        .await
        .expect("deleted on its own");
    let bolt = f
        .admin
        .person(&f.b, "Bea", "Bolt", "bea@bolt.example")
        .await;
    assert!(account_of(&f.as_a, &f.a).await.is_ok());
    assert_eq!(f.scim.get("/Users").await.status, 200);

    let deleted = f.delete_account("delete-a").await.expect("DeleteAccount");
    let delete_time = deleted.delete_time.expect("delete_time");
    let purge_time = deleted.purge_time.expect("purge_time");
    assert_eq!(purge_time.seconds - delete_time.seconds, 30 * 24 * 3600);
    // A repeat answers the first answer; a second deletion answers the account as it is.
    assert_eq!(f.delete_account("delete-a").await.unwrap(), deleted);
    assert_eq!(f.delete_account("delete-a-again").await.unwrap(), deleted);

    // Its profiles are deleted, usernames retired; the one deleted before stays as it was.
    for profile in [&ada, &ben] {
        let now = f.get(&profile.id).await;
        assert_eq!(now.status, pb::ProfileStatus::Deleted as i32, "{now:?}");
        assert_eq!(now.username, profile.username);
        assert!(!f.username_is_free(&profile.username).await);
    }
    assert!(!f.signs_in(&ada).await);
    assert_eq!(
        f.get(&bolt.id).await.status,
        pb::ProfileStatus::Active as i32,
        "another account is untouched"
    );
    // Nothing in it changes, through any key.
    let refused = f
        .admin
        .create_profile(pb::CreateProfileRequest {
            account_id: f.a.clone(),
            first_name: "New".into(),
            last_name: "Hire".into(),
            email: "new@acme.example".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("deleted"), "{refused:?}");
    let refused = f
        .admin
        .update_account(rename_account(&f.a, "Renamed"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let refused = f
        .admin
        .batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
            account_id: f.a.clone(),
            items: vec![pb::ProfileUpsert {
                idempotency_key: "k1".into(),
                first_name: "Bulk".into(),
                last_name: "Hire".into(),
                email: "bulk@acme.example".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let undelete = f
        .admin
        .undelete_profile(pb::UndeleteProfileRequest {
            id: gone.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(undelete.code(), Code::FailedPrecondition, "{undelete:?}");
    let token = f
        .admin
        .create_scim_token(pb::CreateScimTokenRequest {
            account_id: f.a.clone(),
            display_name: "Okta".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(token.code(), Code::FailedPrecondition, "{token:?}");

    // The key limited to it: every RPC of identity refused, as soon as every replica knows.
    let channel = f.server.channel().await;
    within_5_s("the deleted account's key refused", || async {
        account_of(&f.as_a, &f.a).await.is_err()
    })
    .await;
    for (service, path) in raw::every_method() {
        if service != Service::Identity {
            continue;
        }
        let status = raw::call(&channel, &path, Some(KEY_A), Vec::new())
            .await
            .expect_err(&path);
        assert_eq!(status.code(), Code::PermissionDenied, "{path}: {status:?}");
        assert_eq!(
            reason(&status).as_deref(),
            Some("ACCOUNT_DELETED"),
            "{path}"
        );
    }
    // Its SCIM token too.
    assert_eq!(f.scim.get("/Users").await.status, 401);

    // Listed only when asked for; `delete_time:*` lists the deleted ones only.
    let admin = &f.admin;
    let list = |show_deleted, filter: &str| {
        admin.list_accounts(pb::ListAccountsRequest {
            show_deleted,
            filter: filter.to_owned(),
            ..Default::default()
        })
    };
    let listed = |show_deleted, filter: &'static str| async move {
        list(show_deleted, filter)
            .await
            .unwrap()
            .accounts
            .into_iter()
            .map(|account| account.id)
            .collect::<Vec<_>>()
    };
    assert!(!listed(false, "").await.contains(&f.a));
    assert!(listed(true, "").await.contains(&f.a));
    assert!(listed(false, "").await.contains(&f.b));
    assert_eq!(listed(true, "delete_time:*").await, vec![f.a.clone()]);
    for (show_deleted, filter) in [(false, "delete_time:*"), (true, "display_name = \"x\"")] {
        let refused = list(show_deleted, filter).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("filter"), "{refused:?}");
    }

    // UndeleteAccount: exactly what the deletion took comes back, as it was.
    let restored = f.undelete_account("undelete-a").await.expect("Undelete");
    assert_eq!(restored.delete_time, None);
    assert_eq!(restored.purge_time, None);
    assert_eq!(f.undelete_account("undelete-a").await.unwrap(), restored);
    let again = f.undelete_account("undelete-a-again").await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    let back = f.get(&ada.id).await;
    assert_eq!(back.status, pb::ProfileStatus::Active as i32);
    assert_eq!(
        (
            back.username.as_str(),
            back.roles.clone(),
            back.extensions.clone()
        ),
        (
            ada.username.as_str(),
            ada.roles.clone(),
            ada.extensions.clone()
        )
    );
    assert_eq!(
        f.get(&ben.id).await.status,
        pb::ProfileStatus::Suspended as i32,
        "back with the status it had: {ben:?}"
    );
    assert_eq!(
        f.get(&gone.id).await.status,
        pb::ProfileStatus::Deleted as i32,
        "deleted before the account, it stays deleted"
    );
    assert!(f.signs_in(&ada).await);
    within_5_s("the key works again", || async {
        account_of(&f.as_a, &f.a).await.is_ok()
    })
    .await;
    assert_eq!(f.scim.get("/Users").await.status, 200);

    // The log: one event each way, with how many profiles went and came back.
    let events = f
        .admin
        .events_through(&f.a, "roster.account.restored")
        .await;
    let change = |event_type: &str, field: &str| {
        let event = events
            .iter()
            .find(|event| event.r#type == event_type)
            .unwrap_or_else(|| panic!("no {event_type} in {events:?}"));
        let change = event
            .changes
            .iter()
            .find(|change| change.field == field)
            .unwrap_or_else(|| panic!("no {field} in {event:?}"));
        (event.actor.clone(), number(change.new_value.as_ref()))
    };
    let (actor, deleted_profiles) = change("roster.account.deleted", "profiles_deleted");
    assert_eq!(actor, roster_tests::ADMIN_KEY_NAME);
    assert_eq!(deleted_profiles, Some(2.0));
    assert_eq!(
        change("roster.account.restored", "profiles_restored").1,
        Some(2.0)
    );
}

async fn the_purge_removes_personal_data_and_keeps_usernames_retired(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let ada = f.person_with_password(&f.a, "ada@acme.example").await;
    let ben = f
        .admin
        .person(&f.a, "Ben", "Second", "ben@acme.example")
        .await;
    // In account B: one deleted on its own, one that stays.
    let bea = f
        .admin
        .person(&f.b, "Bea", "Gone", "bea@bolt.example")
        .await;
    f.admin
        .delete_profile(pb::DeleteProfileRequest {
            id: bea.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let bob = f.person_with_password(&f.b, "bob@bolt.example").await;
    f.delete_account("delete-a").await.unwrap();

    let now = chrono::Utc::now();
    let (first, second) = (f.replica().await, f.replica().await);
    // Within both windows nothing is purged, and the account can still come back.
    assert_eq!(first.purge(now).await.unwrap().profiles, Vec::new());
    // After them, two replicas racing purge each account and profile once.
    let later = now + chrono::Duration::days(31);
    let (one, two) = tokio::join!(first.purge(later), second.purge(later));
    let (one, two) = (one.unwrap(), two.unwrap());
    let mut accounts: Vec<String> = one
        .accounts
        .iter()
        .chain(&two.accounts)
        .map(|id| id.to_string())
        .collect();
    accounts.sort();
    assert_eq!(accounts, vec![f.a.clone()]);
    let profiles: Vec<String> = one
        .profiles
        .iter()
        .chain(&two.profiles)
        .map(|(_, id)| id.to_string())
        .collect();
    let unique: HashSet<&String> = profiles.iter().collect();
    assert_eq!(unique.len(), profiles.len(), "purged twice: {profiles:?}");
    let expected: HashSet<String> = [&ada.id, &ben.id, &bea.id].into_iter().cloned().collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<HashSet<_>>(),
        expected
    );
    // A later run has nothing left to do.
    let rerun = first.purge(later).await.unwrap();
    assert!(rerun.accounts.is_empty() && rerun.profiles.is_empty());

    // In the database: names, emails and credentials gone; the registry keeps every username.
    let db = f.database().await;
    for profile in [&ada, &ben, &bea] {
        let id = uuid(&profile.id);
        let personal = count(
            &db,
            "SELECT COUNT(*) AS n FROM profiles WHERE id = $1 AND first_name = '' AND \
             last_name = '' AND email = '' AND purged_at IS NOT NULL",
            vec![id.clone()],
        )
        .await;
        assert_eq!(personal, 1, "{} purged", profile.email);
        for table in [
            "credentials",
            "password_history",
            "reset_tokens",
            "extensions",
        ] {
            let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE profile_id = $1");
            assert_eq!(count(&db, &sql, vec![id.clone()]).await, 0, "{table}");
        }
        let registered = count(
            &db,
            "SELECT COUNT(*) AS n FROM username_registry WHERE profile_id = $1",
            vec![id],
        )
        .await;
        assert_eq!(registered, 1, "{} keeps its username", profile.username);
        assert!(!f.username_is_free(&profile.username).await);
        let purged = f.get(&profile.id).await;
        assert_eq!(
            (purged.first_name.as_str(), purged.email.as_str()),
            ("", "")
        );
    }
    // What was not due is untouched.
    let kept = count(
        &db,
        "SELECT COUNT(*) AS n FROM profiles WHERE id = $1 AND purged_at IS NULL \
         AND email = 'bob@bolt.example'",
        vec![uuid(&bob.id)],
    )
    .await;
    assert_eq!(kept, 1);
    assert!(f.signs_in(&bob).await);
    // A purged account cannot come back; its username still refuses a new profile.
    let refused = f.undelete_account("undelete-a").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("purged"), "{refused:?}");
    let taken = f
        .admin
        .create_profile(pb::CreateProfileRequest {
            account_id: f.b.clone(),
            first_name: "Ada".into(),
            last_name: "Again".into(),
            email: "ada@bolt.example".into(),
            username: ada.username.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");

    // The log says what the purge did, as `system` (once the log has numbered it).
    let is_purge = |event: &pb::Event| event.r#type.ends_with(".purged");
    let purged: Vec<pb::Event> = f
        .admin
        .events_once(&f.a, "the purge's three events", |events| {
            events.iter().filter(|event| is_purge(event)).count() >= 3
        })
        .await
        .into_iter()
        .filter(is_purge)
        .collect();
    assert_eq!(purged.len(), 3, "{purged:?}");
    assert!(purged.iter().all(|event| event.actor == "system"));
    assert_eq!(
        purged
            .iter()
            .filter(|event| event.r#type == "roster.account.purged")
            .count(),
        1
    );
}

async fn profiles_created_while_the_account_is_deleted_are_never_left_active(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    for round in 0..3 {
        let creations = (0..16).map(|n| {
            f.admin.create_profile(pb::CreateProfileRequest {
                account_id: f.a.clone(),
                first_name: "Race".into(),
                last_name: format!("R{round}"),
                email: format!("race{round}-{n}@acme.example"),
                ..Default::default()
            })
        });
        let request_id = format!("delete-{round}");
        let (created, deleted) = tokio::join!(
            futures::future::join_all(creations),
            f.delete_account(&request_id)
        );
        deleted.expect("DeleteAccount");
        for outcome in created {
            if let Err(status) = outcome {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            }
        }
        let db = f.database().await;
        let active = count(
            &db,
            "SELECT COUNT(*) AS n FROM profiles WHERE account_id = $1 AND status <> 'deleted'",
            vec![uuid(&f.a)],
        )
        .await;
        assert_eq!(
            active, 0,
            "round {round}: a profile active in a deleted account"
        );
        f.undelete_account(&format!("undelete-{round}"))
            .await
            .expect("UndeleteAccount");
    }
}

async fn only_a_key_of_every_account_deletes_or_undeletes_one(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    // Refused before anything is read, even its own account, even a malformed id.
    for id in [f.a.clone(), "not-a-uuid".to_owned()] {
        let refused = f
            .as_a
            .delete_account(pb::DeleteAccountRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        let refused = f
            .as_a
            .undelete_account(pb::UndeleteAccountRequest {
                id,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
    assert!(account_of(&f.as_a, &f.a).await.is_ok());
    // A stale etag is ABORTED; an unknown account NOT_FOUND.
    let account = account_of(&f.as_a, &f.a).await.unwrap();
    f.admin
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                id: f.a.clone(),
                display_name: "Acme 2".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let stale = f
        .admin
        .delete_account(pb::DeleteAccountRequest {
            id: f.a.clone(),
            etag: account.etag,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let unknown = f
        .admin
        .delete_account(pb::DeleteAccountRequest {
            id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
}

/// Every RPC of `service` called with `key` is PERMISSION_DENIED (ACCOUNT_DELETED).
async fn every_rpc_refuses(server: &TestServer, service: Service, key: &str) {
    let channel = server.channel().await;
    for (of, path) in raw::every_method() {
        if of != service {
            continue;
        }
        let status = raw::call(&channel, &path, Some(key), Vec::new())
            .await
            .expect_err(&path);
        assert_eq!(status.code(), Code::PermissionDenied, "{path}: {status:?}");
        assert_eq!(
            reason(&status).as_deref(),
            Some("ACCOUNT_DELETED"),
            "{path}"
        );
    }
}

async fn bulk_import_refuses_the_key_and_cancels_then_purges_the_imports(backend: Backend) {
    for retention_days in [30, 0] {
        let settings = roster_identity::Settings {
            account_retention_days: retention_days,
            ..identity_settings()
        };
        let Some(suite) =
            ImportSuite::start_with_identity(backend, settings, |_| {}, Vec::new()).await
        else {
            return;
        };
        let identity = suite.identity_client().await;
        let a = suite.account("Leaving").await;
        let key = TestKey::limited(KEY_A, &["imports"], &[a.parse().unwrap()]);
        let imports = suite.import_replica(vec![key]).await;
        let admin = Imports::new(imports.channel().await, ADMIN_KEY);
        let as_a = Imports::new(imports.channel().await, KEY_A);
        let waiting = as_a
            .import_csv(&a, people_csv("leaving", 3))
            .await
            .expect("an import");
        let waiting = admin
            .wait_for_state(
                &waiting.id,
                &[im::ImportState::Validated],
                Duration::from_secs(60),
            )
            .await;

        identity
            .delete_account(pb::DeleteAccountRequest {
                id: a.clone(),
                ..Default::default()
            })
            .await
            .expect("DeleteAccount");
        within_5_s("bulk-import refuses the deleted account's key", || async {
            as_a.get_import(im::GetImportRequest {
                import_id: waiting.id.clone(),
            })
            .await
            .is_err_and(|status| status.code() == Code::PermissionDenied)
        })
        .await;
        every_rpc_refuses(&imports, Service::BulkImport, KEY_A).await;
        let refused = admin
            .import_csv(&a, people_csv("late", 1))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert_eq!(reason(&refused).as_deref(), Some("ACCOUNT_DELETED"));
        if retention_days > 0 {
            // Within the retention: cancelled, kept, and the key works again after undelete.
            let cancelled = admin
                .wait_for_state(
                    &waiting.id,
                    &[im::ImportState::Cancelled],
                    Duration::from_secs(5),
                )
                .await;
            assert_eq!(cancelled.id, waiting.id);
            identity
                .undelete_account(pb::UndeleteAccountRequest {
                    id: a.clone(),
                    ..Default::default()
                })
                .await
                .expect("UndeleteAccount");
            within_5_s("the key works again", || async {
                as_a.get_import(im::GetImportRequest {
                    import_id: waiting.id.clone(),
                })
                .await
                .is_ok()
            })
            .await;
        } else {
            // Purged at once: the import, its rows and report are gone.
            within_5_s("the import purged", || async {
                admin
                    .get_import(im::GetImportRequest {
                        import_id: waiting.id.clone(),
                    })
                    .await
                    .is_err_and(|status| status.code() == Code::NotFound)
            })
            .await;
            let report = admin.report(&waiting.id).await.unwrap_err();
            assert_eq!(report.code(), Code::NotFound, "{report:?}");
        }
    }
}

/// The key notification reads identity's deleted accounts with.
const NOTIFICATION_IDENTITY_KEY: &str = "notification-reads-accounts";

fn email(account: &str, request_id: &str) -> nt::SendEmailRequest {
    roster_tests::clients::welcome_email(request_id, account, "ada@acme.example")
}

/// Queues `request` with `client`: the notification.
async fn send(client: &Notifications, request: nt::SendEmailRequest) -> nt::Notification {
    client
        .send_email(request)
        .await
        .expect("queued")
        .notification
        .expect("notification")
}

async fn notification_refuses_the_key_and_cancels_then_purges_the_emails(backend: Backend) {
    for retention_days in [30, 0] {
        let Some(identity_db) = TestDatabase::create(backend).await else {
            return;
        };
        let reader = TestKey {
            key: NOTIFICATION_IDENTITY_KEY.to_owned(),
            scopes: vec!["accounts.read"],
            accounts: roster_runtime::auth::AccountAccess::All,
        };
        let identity = TestServer::start_with(
            Service::Identity,
            test_settings(Service::Identity, &identity_db.url),
            roster_identity::Settings {
                account_retention_days: retention_days,
                ..identity_settings()
            },
            Arc::new(identity_db),
            vec![reader],
        )
        .await;
        let admin = Identity::connect(&identity).await;
        let a = admin.account("Leaving").await.id;
        let b = admin.account("Staying").await.id;
        let Some(database) = TestDatabase::create(backend).await else {
            return;
        };
        let mail = tempfile::tempdir().expect("mail directory");
        let settings = roster_notification::Settings {
            // No delivery workers: the emails stay queued until something else moves them.
            workers: 0,
            identity: roster_runtime::peer::PeerSettings {
                url: Some(format!("http://{}", identity.addr)),
                key: Some(NOTIFICATION_IDENTITY_KEY.to_owned()),
                ..Default::default()
            },
            ..notification_settings(&format!("file://{}", mail.path().display()))
        };
        let key = TestKey::limited(KEY_A, &["notifications"], &[a.parse().unwrap()]);
        let notification_db = Database::connect(&database.url)
            .await
            .expect("notification's database");
        let notification = TestServer::start_notification(
            test_settings(Service::Notification, &database.url),
            settings,
            Arc::new(database),
            vec![key],
        )
        .await;
        let as_a = Notifications::new(notification.channel().await, KEY_A);
        let operator = Notifications::new(notification.channel().await, ADMIN_KEY);
        let queued = send(&as_a, email(&a, "welcome-a")).await;
        let other = send(&operator, email(&b, "welcome-b")).await;
        // One email of each account failed (as one the mail server refused does), keeping its
        // variables for a retry.
        let failed = send(&operator, email(&a, "failed-a")).await;
        let other_failed = send(&operator, email(&b, "failed-b")).await;
        for id in [&failed.id, &other_failed.id] {
            use roster_notification::store::entities::notification::{Column, Entity};
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
            Entity::update_many()
                .col_expr(Column::State, Expr::value("FAILED"))
                .col_expr(Column::Attempts, Expr::value(1))
                .filter(Column::Id.eq(id.parse::<uuid::Uuid>().unwrap()))
                .exec(&notification_db)
                .await
                .expect("the email marked FAILED");
        }
        let variables = |id: String| {
            let connection = &notification_db;
            async move {
                use roster_notification::store::entities::notification::Entity;
                use sea_orm::EntityTrait;
                Entity::find_by_id(id.parse::<uuid::Uuid>().unwrap())
                    .one(connection)
                    .await
                    .expect("read")
                    .map(|row| row.variables)
            }
        };
        let state = |id: String| {
            let operator = &operator;
            async move {
                operator
                    .get_notification(nt::GetNotificationRequest {
                        notification_id: id,
                    })
                    .await
                    .map(|response| response.notification.expect("notification").state)
            }
        };

        admin
            .delete_account(pb::DeleteAccountRequest {
                id: a.clone(),
                ..Default::default()
            })
            .await
            .expect("DeleteAccount");
        within_5_s("notification refuses the deleted account's key", || async {
            as_a.get_notification(nt::GetNotificationRequest {
                notification_id: queued.id.clone(),
            })
            .await
            .is_err_and(|status| status.code() == Code::PermissionDenied)
        })
        .await;
        every_rpc_refuses(&notification, Service::Notification, KEY_A).await;
        let refused = operator
            .send_email(email(&a, "welcome-a-late"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert_eq!(reason(&refused).as_deref(), Some("ACCOUNT_DELETED"));
        if retention_days > 0 {
            // Its failed email is not queued again, even by a key of every account.
            let refused = operator
                .retry_notification(nt::RetryNotificationRequest {
                    notification_id: failed.id.clone(),
                    request_id: "retry-a".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
            assert_eq!(reason(&refused).as_deref(), Some("ACCOUNT_DELETED"));
            within_5_s("the failed email's variables dropped", || async {
                variables(failed.id.clone()).await.as_deref() == Some("{}")
            })
            .await;
            within_5_s("the queued email cancelled", || async {
                state(queued.id.clone()).await.ok() == Some(nt::NotificationState::Cancelled as i32)
            })
            .await;
        } else {
            within_5_s("the email purged with its account", || async {
                state(queued.id.clone())
                    .await
                    .is_err_and(|status| status.code() == Code::NotFound)
            })
            .await;
        }
        // Another account's emails are untouched.
        assert_eq!(
            state(other.id.clone()).await.unwrap(),
            nt::NotificationState::Queued as i32
        );
        assert_eq!(
            state(other_failed.id.clone()).await.unwrap(),
            nt::NotificationState::Failed as i32
        );
        assert_ne!(
            variables(other_failed.id.clone()).await.as_deref(),
            Some("{}")
        );
    }
}
