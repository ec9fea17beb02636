//! The lifecycle of a profile's sign-in and of a deleted profile, on SQLite and PostgreSQL: an
//! admin reads and clears a locked sign-in (GetSignInState, ClearSignInThrottle), and brings a
//! deleted profile back within the restore window (UndeleteProfile). A key limited to another
//! account reaches neither, exactly as for a profile that does not exist.

use std::sync::Arc;

use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::Identity;
use roster_tests::{
    Backend, TestDatabase, TestKey, TestServer, both_backends, identity_settings, test_settings,
};
use tonic::Code;

/// Failed sign-ins that lock a username here.
const MAX_FAILURES: u32 = 3;
const STRONG: &str = "Violet-Tundra-84-Lantern";
const WRONG: &str = "Wrong-Guess-0000";
/// A key limited to an account of its own.
const OTHER_KEY: &str = "key-for-another-account";

/// An identity server with a short sign-in limit, a long lock, and `restore_days` to undelete
/// in; it also accepts [`OTHER_KEY`], limited to a fresh account of its own.
struct Fixture {
    server: TestServer,
    admin: Identity,
    other: Identity,
    account: String,
}

async fn fixture(backend: Backend, restore_days: u64) -> Option<Fixture> {
    let database = Arc::new(TestDatabase::create(backend).await?);
    let settings = roster_identity::Settings {
        signin_max_failures: MAX_FAILURES,
        signin_lock_seconds: 600,
        profile_restore_days: restore_days,
        ..identity_settings()
    };
    let first = TestServer::start_with(
        Service::Identity,
        test_settings(Service::Identity, &database.url),
        settings,
        database,
        Vec::new(),
    )
    .await;
    let admin = Identity::connect(&first).await;
    let account = admin.account("Acme").await.id;
    let elsewhere = admin.account("Elsewhere").await.id;
    let limited = TestKey::limited(
        OTHER_KEY,
        &["profiles", "credentials"],
        &[elsewhere.parse().unwrap()],
    );
    let server = first.restart_with_keys(vec![limited]).await;
    let admin = Identity::connect(&server).await;
    let other = Identity::new(server.channel().await, OTHER_KEY);
    Some(Fixture {
        server,
        admin,
        other,
        account,
    })
}

impl Fixture {
    /// A new profile of the account, with the password [`STRONG`].
    async fn person_with_password(&self, email: &str) -> pb::Profile {
        let profile = self
            .admin
            .person(&self.account, "Ada", "Lovelace", email)
            .await;
        self.admin
            .set_password(&self.server, &profile, STRONG)
            .await;
        profile
    }

    async fn sign_in(
        &self,
        profile: &pb::Profile,
        password: &str,
    ) -> Result<pb::VerifyPasswordResponse, tonic::Status> {
        self.admin
            .verify_password(pb::VerifyPasswordRequest {
                username: profile.username.clone(),
                password: password.into(),
            })
            .await
    }

    async fn state(&self, profile: &pb::Profile) -> pb::GetSignInStateResponse {
        self.admin
            .get_sign_in_state(pb::GetSignInStateRequest {
                profile_id: profile.id.clone(),
            })
            .await
            .expect("GetSignInState")
    }

    /// `profile` locked out: [`MAX_FAILURES`] wrong passwords.
    async fn lock(&self, profile: &pb::Profile) {
        for _ in 0..MAX_FAILURES {
            let refused = self.sign_in(profile, WRONG).await.expect("an answer");
            assert!(!refused.verified);
        }
        let throttled = self.sign_in(profile, STRONG).await.unwrap_err();
        assert_eq!(throttled.code(), Code::ResourceExhausted, "{throttled:?}");
    }

    /// The events of `event_type` about `profile`, once the log has numbered at least one
    /// (the log numbers them in order, so every event written before the first one found is
    /// numbered too).
    async fn events_of(&self, profile: &pb::Profile, event_type: &str) -> Vec<pb::Event> {
        let about =
            |event: &pb::Event| event.subject_id == profile.id && event.r#type == event_type;
        self.admin
            .events_once(
                &self.account,
                &format!("a {event_type} event of {}", profile.id),
                |events| events.iter().any(about),
            )
            .await
            .into_iter()
            .filter(about)
            .collect()
    }

    async fn extension(&self, profile: &pb::Profile, number: &str) -> pb::Profile {
        self.admin
            .give_extension(&profile.id, number, pb::ExtensionKind::Physical)
            .await
    }

    async fn get(&self, id: &str) -> pb::Profile {
        self.admin
            .get_profile(pb::GetProfileRequest { id: id.into() })
            .await
            .expect("GetProfile")
            .profile
            .expect("profile")
    }
}

/// Everything a caller can observe of a refusal.
fn observable(status: &tonic::Status) -> (Code, String, Vec<u8>) {
    (
        status.code(),
        status.message().to_owned(),
        status.details().to_vec(),
    )
}

fn numbers(profile: &pb::Profile) -> Vec<&str> {
    profile
        .extensions
        .iter()
        .map(|extension| extension.number.as_str())
        .collect()
}

async fn unlocking_lets_the_right_password_in_at_once(backend: Backend) {
    let Some(f) = fixture(backend, 30).await else {
        return;
    };
    let profile = f.person_with_password("ada@example.com").await;
    let fresh = f.state(&profile).await;
    assert_eq!(fresh.failures, 0);
    assert_eq!(fresh.locked_until, None);

    f.lock(&profile).await;
    let locked = f.state(&profile).await;
    // The refused right password is not counted.
    assert_eq!(locked.failures, MAX_FAILURES as i32);
    assert!(locked.last_failure_time.is_some());
    let until = locked.locked_until.expect("locked until a time");
    let left = until.seconds - chrono::Utc::now().timestamp();
    assert!((590..=601).contains(&left), "locked for {left} s more");

    let request = pb::ClearSignInThrottleRequest {
        request_id: "unlock-ada".into(),
        profile_id: profile.id.clone(),
    };
    let cleared = f
        .admin
        .clear_sign_in_throttle(request.clone())
        .await
        .unwrap();
    assert_eq!(
        cleared,
        pb::ClearSignInThrottleResponse {
            unlocked: true,
            failures_cleared: MAX_FAILURES as i32,
        }
    );
    let replayed = f.admin.clear_sign_in_throttle(request).await.unwrap();
    assert_eq!(replayed, cleared);
    let after = f.state(&profile).await;
    assert_eq!(
        after,
        pb::GetSignInStateResponse {
            failures: 0,
            last_failure_time: None,
            locked_until: None,
        }
    );

    let signed_in = f.sign_in(&profile, STRONG).await.unwrap();
    assert!(signed_in.verified);
    assert_eq!(signed_in.profile_id, profile.id);

    // Clearing a sign-in that is not locked forgets nothing and records nothing.
    let nothing = f
        .admin
        .clear_sign_in_throttle(pb::ClearSignInThrottleRequest {
            request_id: "unlock-ada-again".into(),
            profile_id: profile.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(nothing, pb::ClearSignInThrottleResponse::default());
    let unlocked = f.events_of(&profile, "roster.signin.unlocked").await;
    assert_eq!(unlocked.len(), 1, "{unlocked:?}");
    assert_eq!(unlocked[0].request_id, "unlock-ada");
}

/// A right password forgets the failures before it: below the limit without an event, and
/// after a lock that ran out with `roster.signin.unlocked`; each attempt that reaches a lock
/// records `roster.signin.locked`.
async fn a_right_password_clears_failures_and_says_when_it_ends_a_lock(backend: Backend) {
    let Some(f) = fixture(backend, 30).await else {
        return;
    };
    let profile = f.person_with_password("ada@example.com").await;
    // Wrong passwords, and a right one that is not the attempt reaching the limit (that one
    // sets the lock before its password is checked, and the right password then ends it).
    for _ in 0..MAX_FAILURES - 2 {
        assert!(!f.sign_in(&profile, WRONG).await.unwrap().verified);
    }
    assert_eq!(f.state(&profile).await.failures, MAX_FAILURES as i32 - 2);
    assert!(f.sign_in(&profile, STRONG).await.unwrap().verified);
    assert_eq!(
        f.state(&profile).await,
        pb::GetSignInStateResponse::default()
    );

    f.lock(&profile).await;
    let locked = f.events_of(&profile, "roster.signin.locked").await;
    assert_eq!(locked.len(), 1, "{locked:?}");
    // The lock runs out (its end moved into the past), and the right password gets in.
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(&f.server.database.url)
        .await
        .expect("database");
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    db.execute_raw(roster_runtime::db::statement(
        &db,
        "UPDATE signin_throttle SET locked_until = $1",
        vec![past.into()],
    ))
    .await
    .expect("lock ended");
    assert!(f.sign_in(&profile, STRONG).await.unwrap().verified);
    assert_eq!(
        f.state(&profile).await,
        pb::GetSignInStateResponse::default()
    );
    let unlocked = f.events_of(&profile, "roster.signin.unlocked").await;
    assert_eq!(unlocked.len(), 1, "{unlocked:?}");
    // That attempt, past the limit, set the next (longer) lock before its password was checked,
    // so that guesses racing it were refused: a second lock, which its right password ended.
    // The failures forgotten below the limit at first recorded nothing.
    let locked = f.events_of(&profile, "roster.signin.locked").await;
    assert_eq!(locked.len(), 2, "{locked:?}");
    let counts: Vec<_> = locked
        .iter()
        .map(|event| {
            let failures = event
                .changes
                .iter()
                .find(|change| change.field == "failures");
            failures.and_then(|change| change.new_value.clone())
        })
        .collect();
    assert_eq!(
        counts,
        [MAX_FAILURES, MAX_FAILURES + 1].map(|n| Some(prost_types::Value {
            kind: Some(prost_types::value::Kind::NumberValue(f64::from(n)))
        }))
    );
}

async fn a_key_of_another_account_can_neither_read_nor_clear_a_sign_in(backend: Backend) {
    let Some(f) = fixture(backend, 30).await else {
        return;
    };
    let profile = f.person_with_password("bea@example.com").await;
    f.lock(&profile).await;
    let nobody = uuid::Uuid::now_v7().to_string();

    let read = |id: &str| {
        f.other.get_sign_in_state(pb::GetSignInStateRequest {
            profile_id: id.to_owned(),
        })
    };
    let theirs = read(&profile.id).await.unwrap_err();
    let unknown = read(&nobody).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!(observable(&theirs), observable(&unknown));

    let clear = |id: &str| {
        f.other
            .clear_sign_in_throttle(pb::ClearSignInThrottleRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                profile_id: id.to_owned(),
            })
    };
    let theirs = clear(&profile.id).await.unwrap_err();
    let unknown = clear(&nobody).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!(observable(&theirs), observable(&unknown));

    // Still locked; the admin's clearing is the only unlock the log records.
    assert!(f.state(&profile).await.locked_until.is_some());
    let throttled = f.sign_in(&profile, STRONG).await.unwrap_err();
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    f.admin
        .clear_sign_in_throttle(pb::ClearSignInThrottleRequest {
            request_id: "admin-unlock".into(),
            profile_id: profile.id.clone(),
        })
        .await
        .unwrap();
    let unlocked = f.events_of(&profile, "roster.signin.unlocked").await;
    assert_eq!(unlocked.len(), 1, "{unlocked:?}");
    assert_eq!(unlocked[0].request_id, "admin-unlock");
}

async fn an_undeleted_profile_comes_back_with_its_username_roles_and_free_extensions(
    backend: Backend,
) {
    let Some(f) = fixture(backend, 30).await else {
        return;
    };
    let profile = f.person_with_password("cleo@example.com").await;
    f.admin
        .assign_roles(pb::AssignRolesRequest {
            profile_id: profile.id.clone(),
            roles: vec![pb::Role::ContactCenterSupervisor as i32],
            ..Default::default()
        })
        .await
        .expect("role given");
    f.extension(&profile, "401").await;
    let profile = f.extension(&profile, "402").await;
    let deleted = f
        .admin
        .delete_profile(pb::DeleteProfileRequest {
            id: profile.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .profile
        .unwrap();
    assert!(deleted.extensions.is_empty());
    // Deleting freed 402, and another profile took it.
    let taker = f
        .admin
        .person(&f.account, "Dan", "Taker", "dan@example.com")
        .await;
    let taker = f.extension(&taker, "402").await;

    // Another account's key: NOT_FOUND, as for an id nothing holds; the profile stays deleted.
    let undelete_as_other = |id: &str| {
        f.other.undelete_profile(pb::UndeleteProfileRequest {
            id: id.to_owned(),
            ..Default::default()
        })
    };
    let theirs = undelete_as_other(&profile.id).await.unwrap_err();
    let unknown = undelete_as_other(&uuid::Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!(observable(&theirs), observable(&unknown));
    assert_eq!(
        f.get(&profile.id).await.status,
        pb::ProfileStatus::Deleted as i32
    );

    let request = pb::UndeleteProfileRequest {
        id: profile.id.clone(),
        etag: deleted.etag.clone(),
        request_id: "undelete-cleo".into(),
    };
    let undeleted = f.admin.undelete_profile(request.clone()).await.unwrap();
    let back = undeleted.profile.clone().unwrap();
    assert_eq!(back.id, profile.id);
    assert_eq!(back.username, profile.username);
    assert_eq!(back.status, pb::ProfileStatus::Active as i32);
    assert_eq!(back.roles, vec![pb::Role::ContactCenterSupervisor as i32]);
    assert_eq!(numbers(&back), ["401"]);
    assert_eq!(undeleted.unrestored_extensions, ["402"]);
    assert_eq!(f.get(&profile.id).await, back);
    assert_eq!(numbers(&f.get(&taker.id).await), ["402"]);
    // The same request again answers the same and does nothing twice.
    assert_eq!(f.admin.undelete_profile(request).await.unwrap(), undeleted);
    assert_eq!(
        f.events_of(&profile, "roster.profile.restored").await.len(),
        1
    );

    // Its password works again, with the same username.
    assert!(f.sign_in(&back, STRONG).await.unwrap().verified);

    // A profile that is not deleted cannot be undeleted.
    let not_deleted = f
        .admin
        .undelete_profile(pb::UndeleteProfileRequest {
            id: profile.id.clone(),
            request_id: "undelete-cleo-again".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(not_deleted.code(), Code::FailedPrecondition);
    assert!(
        not_deleted.message().contains("not deleted"),
        "{not_deleted:?}"
    );
}

async fn a_profile_deleted_before_the_restore_window_stays_deleted(backend: Backend) {
    // A window of no days has passed for every deleted profile.
    let Some(f) = fixture(backend, 0).await else {
        return;
    };
    let profile = f
        .admin
        .person(&f.account, "Eve", "Late", "eve@example.com")
        .await;
    f.admin
        .delete_profile(pb::DeleteProfileRequest {
            id: profile.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = f
        .admin
        .undelete_profile(pb::UndeleteProfileRequest {
            id: profile.id.clone(),
            request_id: "undelete-eve".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("restore window has passed"),
        "{refused:?}"
    );
    assert_eq!(
        f.get(&profile.id).await.status,
        pb::ProfileStatus::Deleted as i32
    );
}

both_backends!(
    unlocking_lets_the_right_password_in_at_once,
    a_right_password_clears_failures_and_says_when_it_ends_a_lock,
    a_key_of_another_account_can_neither_read_nor_clear_a_sign_in,
    an_undeleted_profile_comes_back_with_its_username_roles_and_free_extensions,
    a_profile_deleted_before_the_restore_window_stays_deleted,
);
