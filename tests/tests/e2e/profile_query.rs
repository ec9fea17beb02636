//! Queries over an account's profiles (what a SCIM filter becomes), answered in SQL by
//! `Identity::find_profiles` on the database of a real identity server whose profiles were
//! made and changed over gRPC, on SQLite and PostgreSQL.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use roster_identity::app::{Identity as UseCases, RequestId};
use roster_identity::domain::error::IdentityError;
use roster_identity::domain::ids::{AccountId, ProfileId};
use roster_identity::domain::profile::ProfilePatch;
use roster_identity::domain::query::{Comparison, ProfileAttribute, ProfileQuery, QueryValue};
use roster_identity::store::Store;
use roster_proto::identity::v1 as pb;
use roster_runtime::auth::AccountAccess;
use roster_runtime::{Caller, KeyRing, Service};
use roster_tests::clients::Identity;
use roster_tests::{Backend, TestServer, both_backends};
use tonic::Code;
use uuid::Uuid;

use ProfileAttribute as A;

/// An identity server, its gRPC client, and its use cases on the same database.
struct Suite {
    _server: TestServer,
    grpc: Identity,
    app: UseCases,
    admin: Caller,
}

async fn suite(backend: Backend) -> Option<Suite> {
    let server = TestServer::spawn(Service::Identity, backend).await?;
    let grpc = Identity::connect(&server).await;
    let database = sea_orm::Database::connect(&server.database.url)
        .await
        .expect("identity's database");
    Some(Suite {
        app: UseCases::new(Store::new(database)),
        grpc,
        _server: server,
        admin: Caller::internal("profile-query-test"),
    })
}

/// A profile to create: names, email, username, job title, department.
struct Person<'a>(&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

impl Suite {
    async fn create(&self, account: &str, person: Person<'_>) -> pb::Profile {
        let Person(first_name, last_name, email, username, job_title, department) = person;
        self.grpc
            .create_profile(pb::CreateProfileRequest {
                account_id: account.into(),
                first_name: first_name.into(),
                last_name: last_name.into(),
                email: email.into(),
                username: username.into(),
                job_title: job_title.into(),
                department: department.into(),
                ..Default::default()
            })
            .await
            .expect("profile created")
            .profile
            .expect("profile")
    }

    /// The usernames of a page of what `query` matches in `account`, and the total.
    async fn page(
        &self,
        caller: &Caller,
        account: &str,
        query: &ProfileQuery,
        offset: u64,
        limit: u64,
    ) -> (Vec<String>, u64) {
        let (profiles, total) = self
            .app
            .find_profiles(caller, account_id(account), query, offset, limit)
            .await
            .unwrap_or_else(|error| panic!("{query:?}: {error:?}"));
        let usernames = profiles.into_iter().map(|p| p.username).collect();
        (usernames, total)
    }

    /// The usernames of every profile `query` matches in `account`, in creation order; the
    /// total agrees with them.
    async fn find(&self, account: &str, query: ProfileQuery) -> Vec<String> {
        let (usernames, total) = self.page(&self.admin, account, &query, 0, 1000).await;
        assert_eq!(total, usernames.len() as u64, "{query:?}");
        usernames
    }

    /// Sets a profile's external id the way SCIM will: through the use case.
    async fn link(&self, profile: &pb::Profile, external_id: &str) -> pb::Profile {
        let patch = ProfilePatch {
            fields: vec![("external_id".into(), external_id.into())],
            status: None,
        };
        let id = ProfileId(Uuid::parse_str(&profile.id).expect("a UUID"));
        self.app
            .update_profile(&self.admin, RequestId::NONE, id, None, patch)
            .await
            .expect("external id set");
        self.grpc.profile(&profile.id).await
    }

    /// The first change of `profile`'s external id in the audit log, once the log has
    /// numbered it.
    async fn external_id_change(&self, account: &str, profile: &str) -> pb::FieldChange {
        let change = |events: &[pb::Event]| {
            events
                .iter()
                .filter(|event| event.subject_id == profile)
                .flat_map(|event| &event.changes)
                .find(|change| change.field == "external_id")
                .cloned()
        };
        let events = self
            .grpc
            .events_once(
                account,
                &format!("a change of {profile}'s external id"),
                |events| change(events).is_some(),
            )
            .await;
        change(&events).expect("the change found")
    }

    async fn suspend(&self, profile: &pb::Profile) -> pb::Profile {
        self.grpc
            .update_profile(pb::UpdateProfileRequest {
                profile: Some(pb::Profile {
                    id: profile.id.clone(),
                    status: pb::ProfileStatus::Suspended as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["status".into()],
                }),
                request_id: String::new(),
            })
            .await
            .expect("profile suspended")
            .profile
            .expect("profile")
    }
}

fn account_id(id: &str) -> AccountId {
    AccountId(Uuid::parse_str(id).expect("a UUID"))
}

fn text(attribute: ProfileAttribute, comparison: Comparison, value: &str) -> ProfileQuery {
    ProfileQuery::Compare {
        attribute,
        comparison,
        value: QueryValue::Text(value.into()),
    }
}

fn time(attribute: ProfileAttribute, comparison: Comparison, at: DateTime<Utc>) -> ProfileQuery {
    ProfileQuery::Compare {
        attribute,
        comparison,
        value: QueryValue::Time(at),
    }
}

fn active(comparison: Comparison, value: bool) -> ProfileQuery {
    ProfileQuery::Compare {
        attribute: A::Active,
        comparison,
        value: QueryValue::Bool(value),
    }
}

fn not(query: ProfileQuery) -> ProfileQuery {
    ProfileQuery::Not(Box::new(query))
}

fn timestamp(at: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let at = at.as_ref().expect("a timestamp");
    DateTime::from_timestamp(at.seconds, at.nanos as u32).expect("a time")
}

/// Ada (job title and department with a wildcard in each), Grace (look-alike values without
/// the wildcards) and Alan (neither set), created in this order.
async fn three(suite: &Suite, account: &str) -> [pb::Profile; 3] {
    let mut created = Vec::new();
    for person in [
        Person(
            "Ada",
            "Lovelace",
            "Ada.Lovelace@Example.com",
            "Ada.Lovelace",
            "50% Engineer",
            "R_D",
        ),
        Person(
            "Grace",
            "Hopper",
            "grace@example.com",
            "grace",
            "500 Engineer",
            "RXD",
        ),
        Person("Alan", "Turing", "alan@example.org", "alan", "", ""),
    ] {
        created.push(suite.create(account, person).await);
    }
    created.try_into().expect("three profiles")
}

async fn text_comparisons_ignore_case_and_match_wildcards_literally(backend: Backend) {
    let Some(suite) = suite(backend).await else {
        return;
    };
    let account = suite.grpc.account("Acme").await.id;
    three(&suite, &account).await;
    let find = |query| suite.find(&account, query);
    use Comparison::*;

    // A username is compared in its canonical form: any case, full-width or not.
    for spelling in ["ada.lovelace", "ADA.LOVELACE", "ａｄａ.ｌｏｖｅｌａｃｅ"] {
        assert_eq!(
            find(text(A::Username, Eq, spelling)).await,
            ["Ada.Lovelace"]
        );
    }
    assert_eq!(
        find(text(A::Username, Ne, "GRACE")).await,
        ["Ada.Lovelace", "alan"]
    );
    // A value that is no username equals none, and every profile differs from it.
    assert!(find(text(A::Username, Eq, "two words")).await.is_empty());
    assert_eq!(find(text(A::Username, Ne, "two words")).await.len(), 3);
    assert_eq!(find(text(A::Username, StartsWith, "ＡＬ")).await, ["alan"]);
    assert_eq!(
        find(text(A::Username, Lt, "B")).await,
        ["Ada.Lovelace", "alan"]
    );

    assert_eq!(
        find(text(A::Email, Eq, "ADA.LOVELACE@EXAMPLE.COM")).await,
        ["Ada.Lovelace"]
    );
    assert_eq!(
        find(text(A::Email, EndsWith, "@EXAMPLE.com")).await,
        ["Ada.Lovelace", "grace"]
    );
    assert_eq!(
        find(text(A::FirstName, StartsWith, "a")).await,
        ["Ada.Lovelace", "alan"]
    );
    assert_eq!(find(text(A::LastName, Contains, "OPP")).await, ["grace"]);
    assert_eq!(find(text(A::LastName, Gt, "LOVELACE")).await, ["alan"]);
    assert_eq!(
        find(text(A::LastName, Ge, "lovelace")).await,
        ["Ada.Lovelace", "alan"]
    );
    assert_eq!(find(text(A::LastName, Le, "hopper")).await, ["grace"]);

    // `%` and `_` are the characters themselves, not wildcards.
    assert_eq!(
        find(text(A::JobTitle, Contains, "50%")).await,
        ["Ada.Lovelace"]
    );
    assert_eq!(
        find(text(A::JobTitle, StartsWith, "50% e")).await,
        ["Ada.Lovelace"]
    );
    assert_eq!(
        find(text(A::Department, Contains, "r_d")).await,
        ["Ada.Lovelace"]
    );
    assert_eq!(
        find(text(A::Department, EndsWith, "_D")).await,
        ["Ada.Lovelace"]
    );
    assert_eq!(
        find(text(A::JobTitle, StartsWith, "5")).await,
        ["Ada.Lovelace", "grace"]
    );
    assert!(find(text(A::JobTitle, Contains, "%%")).await.is_empty());

    // Present: set and not empty.
    assert_eq!(
        find(ProfileQuery::Present(A::JobTitle)).await,
        ["Ada.Lovelace", "grace"]
    );
    assert_eq!(find(ProfileQuery::Present(A::LastName)).await.len(), 3);
    assert!(find(ProfileQuery::Present(A::ExternalId)).await.is_empty());

    // Beyond ASCII a name is found as it is written, and in the other cases that the
    // database's LOWER folds (SQLite's folds only ASCII letters).
    let elodie = Person("Élodie", "Müller", "elodie@example.net", "elodie", "", "");
    suite.create(&account, elodie).await;
    assert_eq!(find(text(A::FirstName, Eq, "Élodie")).await, ["elodie"]);
    assert_eq!(find(text(A::FirstName, Eq, "ÉLODIE")).await, ["elodie"]);
    assert_eq!(find(text(A::FirstName, Contains, "LODI")).await, ["elodie"]);
    assert_eq!(find(text(A::LastName, StartsWith, "Mü")).await, ["elodie"]);
    assert_eq!(find(text(A::LastName, Gt, "Müller")).await, ["alan"]);
}

async fn not_and_or_keep_profiles_whose_attribute_is_unset(backend: Backend) {
    let Some(suite) = suite(backend).await else {
        return;
    };
    let account = suite.grpc.account("Acme").await.id;
    three(&suite, &account).await;
    let find = |query| suite.find(&account, query);
    use Comparison::*;

    // Alan has no job title: it is not "500 Engineer", and not anything.
    let grace_title = || text(A::JobTitle, Eq, "500 ENGINEER");
    assert_eq!(find(grace_title()).await, ["grace"]);
    assert_eq!(find(not(grace_title())).await, ["Ada.Lovelace", "alan"]);
    assert_eq!(
        find(text(A::JobTitle, Ne, "500 engineer")).await,
        ["Ada.Lovelace", "alan"]
    );
    assert_eq!(
        find(not(text(A::Department, Contains, "r"))).await,
        ["alan"]
    );
    assert_eq!(find(not(text(A::JobTitle, Gt, "4"))).await, ["alan"]);
    assert_eq!(
        find(not(not(ProfileQuery::Present(A::JobTitle)))).await,
        ["Ada.Lovelace", "grace"]
    );
    assert_eq!(
        find(not(ProfileQuery::Present(A::Department))).await,
        ["alan"]
    );
    assert_eq!(
        find(ProfileQuery::Or(vec![
            text(A::JobTitle, StartsWith, "50%"),
            not(ProfileQuery::Present(A::Department)),
        ]))
        .await,
        ["Ada.Lovelace", "alan"]
    );
    assert_eq!(
        find(ProfileQuery::And(vec![
            not(grace_title()),
            text(A::FirstName, StartsWith, "A"),
        ]))
        .await,
        ["Ada.Lovelace", "alan"]
    );
    assert_eq!(
        find(not(ProfileQuery::And(vec![
            text(A::JobTitle, Contains, "engineer"),
            text(A::Department, Eq, "rxd"),
        ])))
        .await,
        ["Ada.Lovelace", "alan"]
    );
    assert_eq!(find(ProfileQuery::And(Vec::new())).await.len(), 3);
    assert!(find(ProfileQuery::Or(Vec::new())).await.is_empty());
    assert_eq!(find(not(ProfileQuery::Or(Vec::new()))).await.len(), 3);
}

async fn active_and_times_follow_changes_made_over_grpc(backend: Backend) {
    let Some(suite) = suite(backend).await else {
        return;
    };
    let account = suite.grpc.account("Acme").await.id;
    let [ada, grace, alan] = three(&suite, &account).await;
    let grace = suite.suspend(&grace).await;
    let find = |query| suite.find(&account, query);
    use Comparison::*;

    assert_eq!(find(active(Eq, true)).await, ["Ada.Lovelace", "alan"]);
    assert_eq!(find(active(Eq, false)).await, ["grace"]);
    assert_eq!(find(active(Ne, true)).await, ["grace"]);
    assert_eq!(find(not(active(Eq, false))).await, ["Ada.Lovelace", "alan"]);

    // Grace changed after Alan was created; nobody else did.
    let alan_created = timestamp(&alan.create_time);
    assert_eq!(
        find(time(A::LastModified, Gt, alan_created)).await,
        ["grace"]
    );
    let grace_changed = timestamp(&grace.update_time);
    assert_eq!(
        find(time(A::LastModified, Ge, grace_changed)).await,
        ["grace"]
    );
    assert_eq!(
        find(time(A::LastModified, Eq, grace_changed)).await,
        ["grace"]
    );
    assert_eq!(
        find(time(A::LastModified, Lt, grace_changed)).await,
        ["Ada.Lovelace", "alan"]
    );
    let ada_created = timestamp(&ada.create_time);
    assert_eq!(
        find(time(A::Created, Le, ada_created)).await,
        ["Ada.Lovelace"]
    );
    assert_eq!(
        find(time(A::Created, Ne, ada_created)).await,
        ["grace", "alan"]
    );
}

async fn the_external_id_is_compared_exactly_and_kept_by_other_writers(backend: Backend) {
    let Some(suite) = suite(backend).await else {
        return;
    };
    let account = suite.grpc.account("Acme").await.id;
    let [ada, grace, _alan] = three(&suite, &account).await;
    let ada = suite.link(&ada, " 00uAbC_1 ").await;
    assert_eq!(ada.external_id, "00uAbC_1");
    suite.link(&grace, "00uabc%1").await;
    let find = |query| suite.find(&account, query);
    use Comparison::*;

    assert_eq!(
        find(text(A::ExternalId, Eq, "00uAbC_1")).await,
        ["Ada.Lovelace"]
    );
    assert!(find(text(A::ExternalId, Eq, "00UABC_1")).await.is_empty());
    // Case counts in co, sw and ew too (SQLite's LIKE would ignore it).
    assert_eq!(
        find(text(A::ExternalId, Contains, "AbC")).await,
        ["Ada.Lovelace"]
    );
    assert_eq!(find(text(A::ExternalId, Contains, "abc")).await, ["grace"]);
    assert_eq!(
        find(text(A::ExternalId, EndsWith, "C_1")).await,
        ["Ada.Lovelace"]
    );
    assert_eq!(find(text(A::ExternalId, EndsWith, "c%1")).await, ["grace"]);
    assert_eq!(
        find(text(A::ExternalId, StartsWith, "00u")).await,
        ["Ada.Lovelace", "grace"]
    );
    assert_eq!(
        find(text(A::ExternalId, Ne, "00uAbC_1")).await,
        ["grace", "alan"]
    );
    assert_eq!(
        find(ProfileQuery::Present(A::ExternalId)).await,
        ["Ada.Lovelace", "grace"]
    );

    // Read-only over gRPC: UpdateProfile may not name it, and the batch keeps it.
    let refused = suite
        .grpc
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: ada.id.clone(),
                external_id: "other".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["external_id".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect_err("external_id is not updatable over gRPC");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let renamed = suite
        .grpc
        .batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
            account_id: account.clone(),
            items: vec![pb::ProfileUpsert {
                idempotency_key: "rename-ada".into(),
                id: ada.id.clone(),
                first_name: "Augusta".into(),
                last_name: ada.last_name.clone(),
                email: ada.email.clone(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("batch upsert")
        .results;
    let renamed = renamed[0].profile.as_ref().expect("the updated profile");
    assert_eq!(renamed.first_name, "Augusta");
    assert_eq!(renamed.external_id, "00uAbC_1");
    assert_eq!(suite.grpc.profile(&ada.id).await.external_id, "00uAbC_1");

    // The audit log says when it was set.
    let linked = suite.external_id_change(&account, &ada.id).await;
    let new_value = linked.new_value.and_then(|value| value.kind);
    assert_eq!(
        new_value,
        Some(prost_types::value::Kind::StringValue("00uAbC_1".into()))
    );
}

async fn pages_are_stable_and_counted(backend: Backend) {
    let Some(suite) = suite(backend).await else {
        return;
    };
    let account = suite.grpc.account("Acme").await.id;
    let names = ["p1", "p2", "p3", "p4", "p5"];
    for name in names {
        let email = format!("{name}@example.com");
        suite
            .create(&account, Person("Pat", name, &email, name, "", ""))
            .await;
    }
    let all = ProfileQuery::All;
    let page = |offset, limit| suite.page(&suite.admin, &account, &all, offset, limit);
    let expected = |range: std::ops::Range<usize>| -> (Vec<String>, u64) {
        (names[range].iter().map(|n| n.to_string()).collect(), 5)
    };
    assert_eq!(page(0, 2).await, expected(0..2));
    assert_eq!(page(2, 2).await, expected(2..4));
    assert_eq!(page(4, 2).await, expected(4..5));
    assert_eq!(page(5, 2).await, expected(5..5));
    assert_eq!(page(1, 0).await, expected(1..1));
    assert_eq!(page(u64::MAX, u64::MAX).await, expected(5..5));
    assert_eq!(page(3, u64::MAX).await, expected(3..5));

    let odd = ProfileQuery::Or(vec![
        text(A::Username, Comparison::EndsWith, "1"),
        text(A::Username, Comparison::EndsWith, "3"),
        text(A::Username, Comparison::EndsWith, "5"),
    ]);
    let filtered = suite.page(&suite.admin, &account, &odd, 1, 1).await;
    assert_eq!(filtered, (vec!["p3".to_owned()], 3));
}

async fn deleted_and_other_accounts_profiles_never_match(backend: Backend) {
    let Some(suite) = suite(backend).await else {
        return;
    };
    let account = suite.grpc.account("Acme").await.id;
    let other = suite.grpc.account("Other").await.id;
    let [ada, grace, _alan] = three(&suite, &account).await;
    suite
        .create(
            &other,
            Person("Ada", "Byron", "ada@other.example", "ada.byron", "", ""),
        )
        .await;
    suite
        .grpc
        .delete_profile(pb::DeleteProfileRequest {
            id: grace.id.clone(),
            etag: grace.etag.clone(),
            request_id: String::new(),
        })
        .await
        .expect("profile deleted");
    let find = |query| suite.find(&account, query);
    use Comparison::*;

    for query in [
        ProfileQuery::All,
        text(A::Username, Eq, "grace"),
        text(A::Id, Eq, &grace.id),
        not(text(A::Username, Eq, "ada.lovelace")),
        text(A::Username, Ne, "ada.lovelace"),
        active(Eq, false),
        not(active(Eq, true)),
    ] {
        let found = find(query.clone()).await;
        assert!(!found.contains(&"grace".to_owned()), "{query:?}: {found:?}");
        assert!(
            !found.contains(&"ada.byron".to_owned()),
            "{query:?}: {found:?}"
        );
    }
    assert_eq!(find(ProfileQuery::All).await, ["Ada.Lovelace", "alan"]);
    assert_eq!(find(text(A::FirstName, Eq, "ada")).await, ["Ada.Lovelace"]);

    // The id respects case; a value that is no id matches nothing and fails nothing.
    assert_eq!(find(text(A::Id, Eq, &ada.id)).await, ["Ada.Lovelace"]);
    assert!(
        find(text(A::Id, Eq, &ada.id.to_uppercase()))
            .await
            .is_empty()
    );
    assert!(find(text(A::Id, Eq, "not-an-id")).await.is_empty());
    assert_eq!(find(text(A::Id, Ne, "not-an-id")).await.len(), 2);
    assert_eq!(
        find(text(A::Id, StartsWith, &ada.id[..13])).await,
        ["Ada.Lovelace"]
    );

    // A caller limited to the other account reads this one as empty.
    let mut keys = KeyRing::default();
    keys.insert_plaintext(
        "other-only",
        "other-only",
        &["admin"],
        AccountAccess::Only(HashSet::from([account_id(&other).0])),
    );
    let limited = keys.authenticate("other-only").expect("a key").clone();
    let seen = suite
        .page(&limited, &account, &ProfileQuery::All, 0, 100)
        .await;
    assert_eq!(seen, (Vec::new(), 0));
    let own = suite
        .page(&limited, &other, &ProfileQuery::All, 0, 100)
        .await;
    assert_eq!(own, (vec!["ada.byron".to_owned()], 1));

    // A query that fails its check is refused, not run.
    let refused = suite
        .app
        .find_profiles(&suite.admin, account_id(&account), &active(Gt, true), 0, 10)
        .await
        .expect_err("active takes only eq and ne");
    assert!(
        matches!(refused, IdentityError::InvalidFilter(_)),
        "{refused:?}"
    );
}

both_backends!(
    text_comparisons_ignore_case_and_match_wildcards_literally,
    not_and_or_keep_profiles_whose_attribute_is_unset,
    active_and_times_follow_changes_made_over_grpc,
    the_external_id_is_compared_exactly_and_kept_by_other_writers,
    pages_are_stable_and_counted,
    deleted_and_other_accounts_profiles_never_match,
);
