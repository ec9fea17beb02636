//! The audit log, RPC by RPC, on SQLite and PostgreSQL: for every RPC of identity's descriptor
//! set, the events table says what one call writes. A mutating RPC has cases: one call writes
//! exactly the events listed (type, subject, actor, caller, source, request id, and every
//! changed field old → new); the same call again writes nothing; a refused call writes nothing.
//! Every other RPC says why it writes no event. An RPC added to the descriptor set without an
//! entry fails the table, and so does an entry whose RPC is gone.
//!
//! "Nothing" is measured, not waited for: each look at the log makes a marker change (a new
//! display name of an account of its own) and reads until the marker is numbered. The log
//! numbers an event only after every event written before it, so by then every event of a
//! call answered before the marker change is numbered too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::{Identity, rename_account};
use roster_tests::{
    ADMIN_KEY_NAME, Backend, TestDatabase, TestServer, both_backends, identity_settings,
    newest_reset_token, raw, test_settings,
};
use tonic::Code;

/// Failed sign-ins that lock a username here: few, since each costs an argon2 verification.
const MAX_FAILURES: u32 = 3;

/// How long the first sign-in lock lasts: long enough for the locked case's replay and
/// refusal to meet the lock (with the log's looks between them, each waiting for numbering,
/// which other tests' transactions can hold up for seconds on PostgreSQL), short enough for
/// the unlocked case to wait it out.
const LOCK_SECONDS: u64 = 12;

const STRONG: &str = "Violet-Tundra-84-Lantern";

/// What the events table says of one RPC.
enum Entry {
    /// The RPC changes nothing, so it writes no event; why.
    ReadsOnly(&'static str),
    /// The RPC changes something: what one call writes, case by case.
    Writes(Vec<Case>),
}

/// One way of calling a mutating RPC, and what that call writes.
struct Case {
    /// What one call writes, and why when it is more than one event or not the obvious one.
    what: &'static str,
    /// Makes what the call needs, and the call, its replay and its refusal.
    prepare: Prepare,
}

type Prepare = for<'a> fn(&'a World) -> LocalBoxFuture<'a, Prepared>;

fn case(what: &'static str, prepare: Prepare) -> Case {
    Case { what, prepare }
}

/// A case made ready on the test server: its set-up is done (and logged before the call).
struct Prepared {
    call: Call,
    /// What the call must be answered.
    answered: Expect,
    /// Every event the call must write, in order.
    events: Vec<Expected>,
    /// What the same call, made again, must be answered; it writes nothing.
    replay: Expect,
    /// A call of the same RPC that is refused, and how; it writes nothing.
    refusal: (Call, Expect),
}

/// A request of a mutating RPC.
// A few per case, each sent once or twice: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Call {
    CreateAccount(pb::CreateAccountRequest),
    UpdateAccount(pb::UpdateAccountRequest),
    DeleteAccount(pb::DeleteAccountRequest),
    UndeleteAccount(pb::UndeleteAccountRequest),
    UpdatePasswordPolicy(pb::UpdatePasswordPolicyRequest),
    CreateScimToken(pb::CreateScimTokenRequest),
    RevokeScimToken(pb::RevokeScimTokenRequest),
    CreateProfile(pb::CreateProfileRequest),
    UpdateProfile(pb::UpdateProfileRequest),
    DeleteProfile(pb::DeleteProfileRequest),
    UndeleteProfile(pb::UndeleteProfileRequest),
    BatchUpsertProfiles(pb::BatchUpsertProfilesRequest),
    AssignRoles(pb::AssignRolesRequest),
    UnassignRoles(pb::UnassignRolesRequest),
    AssignExtension(pb::AssignExtensionRequest),
    UnassignExtension(pb::UnassignExtensionRequest),
    SendPasswordReset(pb::SendPasswordResetRequest),
    CompletePasswordReset(pb::CompletePasswordResetRequest),
    VerifyPassword(pb::VerifyPasswordRequest),
    ClearSignInThrottle(pb::ClearSignInThrottleRequest),
}

/// What a call was answered.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// The response, as its debug text (which holds every id and value it carries).
    Answered(String),
    /// A refusal: its code and message.
    Refused(Code, String),
    /// VerifyPassword answered `verified: false`: a sign-in refused, in an OK response.
    SignInRefused,
    /// BatchUpsertProfiles answered an item FAILED: its code and message.
    ItemFailed(Code, String),
}

fn answered<M: std::fmt::Debug>(result: Result<M, tonic::Status>) -> Outcome {
    match result {
        Ok(response) => Outcome::Answered(format!("{response:?}")),
        Err(status) => Outcome::Refused(status.code(), status.message().to_owned()),
    }
}

impl Call {
    /// The RPC this request is for.
    fn path(&self) -> &'static str {
        match self {
            Call::CreateAccount(_) => "/roster.identity.v1.AccountService/CreateAccount",
            Call::UpdateAccount(_) => "/roster.identity.v1.AccountService/UpdateAccount",
            Call::DeleteAccount(_) => "/roster.identity.v1.AccountService/DeleteAccount",
            Call::UndeleteAccount(_) => "/roster.identity.v1.AccountService/UndeleteAccount",
            Call::UpdatePasswordPolicy(_) => {
                "/roster.identity.v1.AccountService/UpdatePasswordPolicy"
            }
            Call::CreateScimToken(_) => "/roster.identity.v1.AccountService/CreateScimToken",
            Call::RevokeScimToken(_) => "/roster.identity.v1.AccountService/RevokeScimToken",
            Call::CreateProfile(_) => "/roster.identity.v1.ProfileService/CreateProfile",
            Call::UpdateProfile(_) => "/roster.identity.v1.ProfileService/UpdateProfile",
            Call::DeleteProfile(_) => "/roster.identity.v1.ProfileService/DeleteProfile",
            Call::UndeleteProfile(_) => "/roster.identity.v1.ProfileService/UndeleteProfile",
            Call::BatchUpsertProfiles(_) => {
                "/roster.identity.v1.ProfileService/BatchUpsertProfiles"
            }
            Call::AssignRoles(_) => "/roster.identity.v1.ProfileService/AssignRoles",
            Call::UnassignRoles(_) => "/roster.identity.v1.ProfileService/UnassignRoles",
            Call::AssignExtension(_) => "/roster.identity.v1.ProfileService/AssignExtension",
            Call::UnassignExtension(_) => "/roster.identity.v1.ProfileService/UnassignExtension",
            Call::SendPasswordReset(_) => "/roster.identity.v1.CredentialService/SendPasswordReset",
            Call::CompletePasswordReset(_) => {
                "/roster.identity.v1.CredentialService/CompletePasswordReset"
            }
            Call::VerifyPassword(_) => "/roster.identity.v1.CredentialService/VerifyPassword",
            Call::ClearSignInThrottle(_) => {
                "/roster.identity.v1.CredentialService/ClearSignInThrottle"
            }
        }
    }

    async fn send(&self, identity: &Identity) -> Outcome {
        match self.clone() {
            Call::CreateAccount(request) => answered(identity.create_account(request).await),
            Call::UpdateAccount(request) => answered(identity.update_account(request).await),
            Call::DeleteAccount(request) => answered(identity.delete_account(request).await),
            Call::UndeleteAccount(request) => answered(identity.undelete_account(request).await),
            Call::UpdatePasswordPolicy(request) => {
                answered(identity.update_password_policy(request).await)
            }
            Call::CreateScimToken(request) => answered(identity.create_scim_token(request).await),
            Call::RevokeScimToken(request) => answered(identity.revoke_scim_token(request).await),
            Call::CreateProfile(request) => answered(identity.create_profile(request).await),
            Call::UpdateProfile(request) => answered(identity.update_profile(request).await),
            Call::DeleteProfile(request) => answered(identity.delete_profile(request).await),
            Call::UndeleteProfile(request) => answered(identity.undelete_profile(request).await),
            Call::BatchUpsertProfiles(request) => {
                match identity.batch_upsert_profiles(request).await {
                    Ok(response) => match response
                        .results
                        .iter()
                        .find(|result| result.outcome == pb::UpsertOutcome::Failed as i32)
                    {
                        Some(failed) => Outcome::ItemFailed(
                            Code::from(failed.error_code),
                            failed.error_message.clone(),
                        ),
                        None => answered(Ok::<_, tonic::Status>(response)),
                    },
                    refused => answered(refused),
                }
            }
            Call::AssignRoles(request) => answered(identity.assign_roles(request).await),
            Call::UnassignRoles(request) => answered(identity.unassign_roles(request).await),
            Call::AssignExtension(request) => answered(identity.assign_extension(request).await),
            Call::UnassignExtension(request) => {
                answered(identity.unassign_extension(request).await)
            }
            Call::SendPasswordReset(request) => {
                answered(identity.send_password_reset(request).await)
            }
            Call::CompletePasswordReset(request) => {
                answered(identity.complete_password_reset(request).await)
            }
            Call::VerifyPassword(request) => match identity.verify_password(request).await {
                Ok(response) if !response.verified => Outcome::SignInRefused,
                other => answered(other),
            },
            Call::ClearSignInThrottle(request) => {
                answered(identity.clear_sign_in_throttle(request).await)
            }
        }
    }
}

/// What a call must be answered.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A response.
    Answered,
    /// The response the first call had: the answer kept for its request id (AIP-155).
    FirstAnswer,
    /// A refusal with this code.
    Refused(Code),
    /// `verified: false`.
    SignInRefused,
    /// Its item FAILED with this code.
    ItemFailed(Code),
}

impl Expect {
    fn admits(self, outcome: &Outcome, first: &Outcome) -> bool {
        match (self, outcome) {
            (Expect::Answered, Outcome::Answered(_)) => true,
            (Expect::FirstAnswer, Outcome::Answered(_)) => outcome == first,
            (Expect::Refused(code), Outcome::Refused(got, _)) => code == *got,
            (Expect::SignInRefused, Outcome::SignInRefused) => true,
            (Expect::ItemFailed(code), Outcome::ItemFailed(got, _)) => code == *got,
            _ => false,
        }
    }
}

/// A value an event must hold.
#[derive(Clone, Debug)]
enum Want {
    /// Exactly this (numbers, booleans and lists as [`shown`] writes them).
    Is(String),
    /// A value the call's answer holds: an id or a prefix that the call made.
    FromAnswer,
    /// An RFC 3339 time.
    Time,
}

impl From<&str> for Want {
    fn from(value: &str) -> Self {
        Want::Is(value.to_owned())
    }
}

impl From<String> for Want {
    fn from(value: String) -> Self {
        Want::Is(value)
    }
}

impl From<&String> for Want {
    fn from(value: &String) -> Self {
        Want::Is(value.clone())
    }
}

impl Want {
    fn admits(&self, value: &str, answer: &Outcome) -> bool {
        match (self, answer) {
            (Want::Is(wanted), _) => wanted == value,
            (Want::FromAnswer, Outcome::Answered(text)) => {
                !value.is_empty() && text.contains(value)
            }
            (Want::FromAnswer, _) => false,
            (Want::Time, _) => chrono::DateTime::parse_from_rfc3339(value).is_ok(),
        }
    }
}

/// One changed field an event must hold: absent `old` for a field that had no value, absent
/// `new` for one the change cleared.
#[derive(Clone, Debug)]
struct Change {
    field: &'static str,
    old: Option<Want>,
    new: Option<Want>,
}

fn set(field: &'static str, new: impl Into<Want>) -> Change {
    Change {
        field,
        old: None,
        new: Some(new.into()),
    }
}

fn changed(field: &'static str, old: impl Into<Want>, new: impl Into<Want>) -> Change {
    Change {
        field,
        old: Some(old.into()),
        new: Some(new.into()),
    }
}

fn cleared(field: &'static str, old: impl Into<Want>) -> Change {
    Change {
        field,
        old: Some(old.into()),
        new: None,
    }
}

impl Change {
    fn admits(&self, (field, old, new): &Shown, answer: &Outcome) -> bool {
        let side = |want: &Option<Want>, got: &Option<String>| match (want, got) {
            (None, None) => true,
            (Some(want), Some(got)) => want.admits(got, answer),
            _ => false,
        };
        self.field == field && side(&self.old, old) && side(&self.new, new)
    }
}

/// An event a call must write. Its caller is always the administrator's key and its source
/// `grpc`; its subject type follows from its type.
#[derive(Clone, Debug)]
struct Expected {
    event_type: &'static str,
    account: Want,
    subject: Want,
    actor: String,
    request_id: String,
    changes: Vec<Change>,
}

impl Expected {
    /// An event of `account` about the account itself.
    fn of_account(
        event_type: &'static str,
        account: impl Into<Want>,
        request_id: &str,
        changes: Vec<Change>,
    ) -> Self {
        let account = account.into();
        Self {
            event_type,
            subject: account.clone(),
            account,
            actor: ADMIN_KEY_NAME.to_owned(),
            request_id: request_id.to_owned(),
            changes,
        }
    }

    /// An event of `account` about the profile `profile`.
    fn of_profile(
        event_type: &'static str,
        account: &str,
        profile: impl Into<Want>,
        request_id: &str,
        changes: Vec<Change>,
    ) -> Self {
        Self {
            event_type,
            account: account.into(),
            subject: profile.into(),
            actor: ADMIN_KEY_NAME.to_owned(),
            request_id: request_id.to_owned(),
            changes,
        }
    }

    /// This event, attributed to `actor` rather than to the calling key.
    fn by(self, actor: String) -> Self {
        Self { actor, ..self }
    }
}

/// A changed field as an event holds it: field, old, new.
type Shown = (String, Option<String>, Option<String>);

/// A value of an event's diff as text: strings as they are, numbers without a fraction,
/// lists as `[a, b]`.
fn shown(value: &prost_types::Value) -> String {
    use prost_types::value::Kind;
    match &value.kind {
        Some(Kind::StringValue(text)) => text.clone(),
        Some(Kind::NumberValue(number)) => number.to_string(),
        Some(Kind::BoolValue(flag)) => flag.to_string(),
        Some(Kind::ListValue(list)) => format!(
            "[{}]",
            list.values.iter().map(shown).collect::<Vec<_>>().join(", ")
        ),
        other => format!("{other:?}"),
    }
}

fn diff(event: &pb::Event) -> Vec<Shown> {
    event
        .changes
        .iter()
        .map(|change| {
            (
                change.field.clone(),
                change.old_value.as_ref().map(shown),
                change.new_value.as_ref().map(shown),
            )
        })
        .collect()
}

fn types(events: &[pb::Event]) -> Vec<&str> {
    events.iter().map(|event| event.r#type.as_str()).collect()
}

/// Checks that `written` is exactly `expected`, field by field.
fn assert_written(context: &str, answer: &Outcome, expected: &[Expected], written: &[pb::Event]) {
    let wanted: Vec<&str> = expected.iter().map(|event| event.event_type).collect();
    assert_eq!(
        types(written),
        wanted,
        "{context}: the events one call wrote"
    );
    for (event, want) in written.iter().zip(expected) {
        let context = format!("{context}: {}", event.r#type);
        let subject_type = if want.event_type.starts_with("roster.account.") {
            "account"
        } else {
            "profile"
        };
        assert_eq!(event.subject_type, subject_type, "{context}: subject type");
        assert!(
            want.subject.admits(&event.subject_id, answer),
            "{context}: subject {} is not {:?} (answer: {answer:?})",
            event.subject_id,
            want.subject
        );
        assert!(
            want.account.admits(&event.account_id, answer),
            "{context}: account {} is not {:?} (answer: {answer:?})",
            event.account_id,
            want.account
        );
        assert_eq!(event.actor, want.actor, "{context}: actor");
        assert_eq!(event.caller, ADMIN_KEY_NAME, "{context}: caller");
        assert_eq!(event.source, "grpc", "{context}: source");
        assert_eq!(event.request_id, want.request_id, "{context}: request id");
        let changes = diff(event);
        assert!(
            changes.len() == want.changes.len()
                && changes
                    .iter()
                    .zip(&want.changes)
                    .all(|(got, want)| want.admits(got, answer)),
            "{context}: the diff (field, old, new) is {changes:?}; expected {:?}",
            want.changes
        );
    }
}

/// The test server, its administrator's client, and the account the profile cases work in.
struct World {
    server: TestServer,
    identity: Identity,
    account: String,
}

impl World {
    async fn start(backend: Backend) -> Option<World> {
        let database = Arc::new(TestDatabase::create(backend).await?);
        let settings = roster_identity::Settings {
            signin_max_failures: MAX_FAILURES,
            signin_lock_seconds: LOCK_SECONDS,
            ..identity_settings()
        };
        let server = TestServer::start_with(
            Service::Identity,
            test_settings(Service::Identity, &database.url),
            settings,
            database,
            Vec::new(),
        )
        .await;
        let identity = Identity::connect(&server).await;
        let account = identity.account("Table").await.id;
        Some(World {
            server,
            identity,
            account,
        })
    }

    /// A new profile, Ada Lovelace, with username and email `<name>@table.example`.
    async fn profile(&self, name: &str) -> pb::Profile {
        self.identity
            .person(
                &self.account,
                "Ada",
                "Lovelace",
                &format!("{name}@table.example"),
            )
            .await
    }

    /// A new account of its own, for a case that changes an account.
    async fn own_account(&self, name: &str) -> pb::Account {
        self.identity.account(name).await
    }

    /// Issues a reset link for `profile` and answers its token.
    async fn reset_token(&self, profile: &pb::Profile) -> String {
        self.identity
            .send_password_reset(pb::SendPasswordResetRequest {
                profile_id: profile.id.clone(),
                email: profile.email.clone(),
                ..Default::default()
            })
            .await
            .expect("reset sent");
        newest_reset_token(&self.server).await
    }

    /// A new profile whose password is [`STRONG`].
    async fn profile_with_password(&self, name: &str) -> pb::Profile {
        let profile = self.profile(name).await;
        let token = self.reset_token(&profile).await;
        self.identity
            .complete_password_reset(pb::CompletePasswordResetRequest {
                token,
                new_password: STRONG.into(),
                request_id: String::new(),
            })
            .await
            .expect("password set");
        profile
    }

    /// `profile` after being given `roles`.
    async fn with_roles(&self, profile: &pb::Profile, roles: &[pb::Role]) -> pb::Profile {
        self.identity
            .assign_roles(pb::AssignRolesRequest {
                profile_id: profile.id.clone(),
                roles: roles.iter().map(|role| *role as i32).collect(),
                ..Default::default()
            })
            .await
            .expect("roles given")
            .profile
            .expect("profile")
    }

    /// `profile` after being given the physical extension `number`.
    async fn with_extension(&self, profile: &pb::Profile, number: &str) -> pb::Profile {
        self.identity
            .give_extension(&profile.id, number, pb::ExtensionKind::Physical)
            .await
    }

    /// `tries` sign-ins of `profile` with a wrong password.
    async fn wrong_passwords(&self, profile: &pb::Profile, tries: u32) {
        for _ in 0..tries {
            let outcome = Call::VerifyPassword(sign_in(profile, "Wrong-Guess-0000"))
                .send(&self.identity)
                .await;
            assert_eq!(outcome, Outcome::SignInRefused);
        }
    }

    /// Waits until the last sign-in lock the log recorded for `profile` has ended.
    async fn lock_ended(&self, profile: &pb::Profile) {
        for _ in 0..400 {
            let locks = self
                .identity
                .list_events(pb::ListEventsRequest {
                    subject_id: profile.id.clone(),
                    r#type: "roster.signin.locked".into(),
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .expect("ListEvents");
            if let Some(lock) = locks.events.first() {
                let until = diff(lock)
                    .into_iter()
                    .find(|(field, ..)| field == "locked_until")
                    .and_then(|(_, _, new)| new)
                    .expect("a lock says until when");
                let until = chrono::DateTime::parse_from_rfc3339(&until).expect("a time");
                let left = (until.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default();
                tokio::time::sleep(left + Duration::from_millis(200)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no sign-in lock of {} in the log after 10 s", profile.id);
    }
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

fn physical(number: &str) -> pb::Extension {
    pb::Extension {
        number: number.into(),
        kind: pb::ExtensionKind::Physical as i32,
    }
}

fn sign_in(profile: &pb::Profile, password: &str) -> pb::VerifyPasswordRequest {
    pb::VerifyPasswordRequest {
        username: profile.username.clone(),
        password: password.into(),
    }
}

/// A profile UpdateProfile changes: only the fields its mask names are read.
fn profile_patch(profile: &pb::Profile) -> pb::Profile {
    pb::Profile {
        id: profile.id.clone(),
        etag: profile.etag.clone(),
        ..Default::default()
    }
}

/// Every event of every account numbered after `after`, oldest first.
async fn events_after(identity: &Identity, after: i64) -> Vec<pb::Event> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = identity
            .list_events(pb::ListEventsRequest {
                page_size: 100,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListEvents");
        let done = page.next_page_token.is_empty()
            || page
                .events
                .last()
                .is_some_and(|event| event.sequence <= after);
        events.extend(
            page.events
                .into_iter()
                .filter(|event| event.sequence > after),
        );
        if done {
            events.reverse();
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// The whole log, every account's events, read look by look.
struct Log {
    identity: Identity,
    /// The account whose display name marks each look.
    marker: String,
    looks: u32,
    /// The last sequence seen.
    seen: i64,
}

impl Log {
    async fn start(identity: &Identity) -> Log {
        let marker = identity.account("Marker").await.id;
        let mut log = Log {
            identity: identity.clone(),
            marker,
            looks: 0,
            seen: 0,
        };
        log.look().await;
        log
    }

    /// Every event committed since the last look, oldest first, the marker's aside: makes a
    /// marker change and reads the log until it is numbered, which it is only after every
    /// event committed before it.
    async fn look(&mut self) -> Vec<pb::Event> {
        self.looks += 1;
        let mark = format!("Marker {}", self.looks);
        self.identity
            .update_account(rename_account(&self.marker, &mark))
            .await
            .expect("marker change");
        for _ in 0..400 {
            let mut events = events_after(&self.identity, self.seen).await;
            let marked = events.iter().position(|event| {
                event.subject_id == self.marker
                    && event.r#type == "roster.account.updated"
                    && diff(event).iter().any(|(field, _, new)| {
                        field == "display_name" && new.as_deref() == Some(mark.as_str())
                    })
            });
            if let Some(at) = marked {
                self.seen = events[at].sequence;
                events.truncate(at);
                return events;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the marker change {mark:?} was not numbered within 10 s");
    }
}

/// The events table: every RPC of identity, by full method path.
fn table() -> Vec<(&'static str, Entry)> {
    use Entry::*;
    vec![
        // AccountService.
        (
            "/roster.identity.v1.AccountService/CreateAccount",
            Writes(vec![case(
                "one `roster.account.created` about the new account: its fields and its \
                 password policy's rules, each from nothing",
                |world| Box::pin(create_account(world)),
            )]),
        ),
        (
            "/roster.identity.v1.AccountService/GetAccount",
            ReadsOnly("reads one account"),
        ),
        (
            "/roster.identity.v1.AccountService/UpdateAccount",
            Writes(vec![case(
                "one `roster.account.updated` with the display name old → new",
                |world| Box::pin(update_account(world)),
            )]),
        ),
        (
            "/roster.identity.v1.AccountService/ListAccounts",
            ReadsOnly("lists accounts"),
        ),
        (
            "/roster.identity.v1.AccountService/DeleteAccount",
            Writes(vec![case(
                "one `roster.account.deleted` about the account: its deletion time and how many \
                 profiles the deletion took, not one event per profile",
                |world| Box::pin(delete_account(world)),
            )]),
        ),
        (
            "/roster.identity.v1.AccountService/UndeleteAccount",
            Writes(vec![case(
                "one `roster.account.restored` about the account: its deletion time to nothing \
                 and how many profiles came back",
                |world| Box::pin(undelete_account(world)),
            )]),
        ),
        (
            "/roster.identity.v1.AccountService/GetPasswordPolicy",
            ReadsOnly("reads an account's policy"),
        ),
        (
            "/roster.identity.v1.AccountService/UpdatePasswordPolicy",
            Writes(vec![case(
                "one `roster.account.password_policy_changed`: the rule named and the preset, \
                 which becomes `custom` once a rule is changed on its own",
                |world| Box::pin(update_password_policy(world)),
            )]),
        ),
        (
            "/roster.identity.v1.AccountService/CreateScimToken",
            Writes(vec![case(
                "one `roster.account.scim_token_created` about the account: the token's id, \
                 name, welcome setting and shown prefix, never its secret; the replay answers \
                 the same token without its secret, so not the first answer byte for byte",
                |world| Box::pin(create_scim_token(world)),
            )]),
        ),
        (
            "/roster.identity.v1.AccountService/ListScimTokens",
            ReadsOnly("lists an account's tokens, never their secrets"),
        ),
        (
            "/roster.identity.v1.AccountService/RevokeScimToken",
            Writes(vec![case(
                "one `roster.account.scim_token_revoked` about the account: the token's fields \
                 to nothing, as an unassigned extension's",
                |world| Box::pin(revoke_scim_token(world)),
            )]),
        ),
        // ProfileService.
        (
            "/roster.identity.v1.ProfileService/CreateProfile",
            Writes(vec![case(
                "one `roster.profile.created`: every field given, the username (defaulted to \
                 the email) and the status, each from nothing",
                |world| Box::pin(create_profile(world)),
            )]),
        ),
        (
            "/roster.identity.v1.ProfileService/GetProfile",
            ReadsOnly("reads one profile"),
        ),
        (
            "/roster.identity.v1.ProfileService/ListProfiles",
            ReadsOnly("lists an account's profiles"),
        ),
        (
            "/roster.identity.v1.ProfileService/UpdateProfile",
            Writes(vec![
                case(
                    "a name changed: one `roster.profile.updated` with the field old → new",
                    |world| Box::pin(update_profile_name(world)),
                ),
                case(
                    "a username changed: one `roster.profile.username_changed` alone (not \
                     `updated`), with the username old → new",
                    |world| Box::pin(update_profile_username(world)),
                ),
                case(
                    "a name, the username and the status changed at once: an event per kind \
                     of change, in this order — `updated` (the name), `username_changed`, \
                     `suspended` (the status)",
                    |world| Box::pin(update_profile_all_at_once(world)),
                ),
            ]),
        ),
        (
            "/roster.identity.v1.ProfileService/DeleteProfile",
            Writes(vec![case(
                "a profile holding a role and an extension: `roster.profile.deleted` (status \
                 active → deleted), then `roster.profile.extension_unassigned`, since deleting \
                 frees its extensions; its roles are kept, so no roles event",
                |world| Box::pin(delete_profile(world)),
            )]),
        ),
        (
            "/roster.identity.v1.ProfileService/UndeleteProfile",
            Writes(vec![case(
                "a deleted profile that held a role and two extensions, one of them taken by \
                 another profile since: `roster.profile.restored` (status deleted → active), \
                 then `roster.profile.extension_assigned` for the number given back; its roles \
                 were kept, so no roles event, and the taken number is not touched",
                |world| Box::pin(undelete_profile(world)),
            )]),
        ),
        (
            "/roster.identity.v1.ProfileService/CheckUsername",
            ReadsOnly("tells whether a username is free; reserves nothing"),
        ),
        (
            "/roster.identity.v1.ProfileService/BatchCheckUsernames",
            ReadsOnly("tells whether usernames are free; reserves nothing"),
        ),
        (
            "/roster.identity.v1.ProfileService/BatchGetProfiles",
            ReadsOnly("reads profiles by id"),
        ),
        (
            "/roster.identity.v1.ProfileService/BatchUpsertProfiles",
            Writes(vec![case(
                "one item creating a profile: one `roster.profile.created`, whose request id is \
                 the item's idempotency key (the request has none of its own); a refused item \
                 is the refusal",
                |world| Box::pin(batch_upsert_profiles(world)),
            )]),
        ),
        (
            "/roster.identity.v1.ProfileService/AssignRoles",
            Writes(vec![case(
                "two roles given: one `roster.profile.roles_assigned` with the whole role list \
                 old → new",
                |world| Box::pin(assign_roles(world)),
            )]),
        ),
        (
            "/roster.identity.v1.ProfileService/UnassignRoles",
            Writes(vec![case(
                "one of two roles taken: one `roster.profile.roles_unassigned` with the whole \
                 role list old → new",
                |world| Box::pin(unassign_roles(world)),
            )]),
        ),
        (
            "/roster.identity.v1.ProfileService/AssignExtension",
            Writes(vec![
                case(
                    "a new number: one `roster.profile.extension_assigned`, number (kind) from \
                     nothing",
                    |world| Box::pin(assign_extension(world)),
                ),
                case(
                    "a number the profile holds, given another kind: two events, \
                     `extension_assigned` (the number with its new kind) then \
                     `extension_unassigned` (with its old kind), since the diff compares \
                     number and kind together",
                    |world| Box::pin(assign_extension_kind(world)),
                ),
            ]),
        ),
        (
            "/roster.identity.v1.ProfileService/UnassignExtension",
            Writes(vec![case(
                "one `roster.profile.extension_unassigned`, number (kind) to nothing",
                |world| Box::pin(unassign_extension(world)),
            )]),
        ),
        // CredentialService.
        (
            "/roster.identity.v1.CredentialService/GetPasswordRequirements",
            ReadsOnly("reads the policy as sentences"),
        ),
        (
            "/roster.identity.v1.CredentialService/CheckPassword",
            ReadsOnly("checks a candidate against the policy; stores nothing"),
        ),
        (
            "/roster.identity.v1.CredentialService/SendPasswordReset",
            Writes(vec![case(
                "one `roster.credential.password_reset_requested` with no diff: the link and \
                 its token are secrets",
                |world| Box::pin(send_password_reset(world)),
            )]),
        ),
        (
            "/roster.identity.v1.CredentialService/CompletePasswordReset",
            Writes(vec![case(
                "one `roster.credential.password_changed` with no diff, attributed to the \
                 user (`profile <id>`) beside the calling key, without a request id (the RPC \
                 has none); its replay is the used token, refused",
                |world| Box::pin(complete_password_reset(world)),
            )]),
        ),
        (
            "/roster.identity.v1.CredentialService/VerifyPassword",
            // Most sign-ins write nothing: only crossing the lock's threshold does, so the
            // cases are the two calls that do.
            Writes(vec![
                case(
                    "the failed sign-in that reaches the limit: one `roster.signin.locked` with \
                     the count and the lock's end (the failures before it write nothing); \
                     while locked, the replay and the right password are throttled and write \
                     nothing",
                    |world| Box::pin(verify_password_locks(world)),
                ),
                case(
                    "the right password once the lock has ended: two events, \
                     `roster.signin.locked` again (every attempt is counted before its \
                     password is checked, and a count past the limit sets the next, longer \
                     lock) then `roster.signin.unlocked` as the right password clears the \
                     count",
                    |world| Box::pin(verify_password_unlocks(world)),
                ),
            ]),
        ),
        (
            "/roster.identity.v1.CredentialService/ClearSignInThrottle",
            Writes(vec![case(
                "a locked sign-in: one `roster.signin.unlocked` with no diff, with the call's \
                 request id; clearing a sign-in that is not locked writes nothing",
                |world| Box::pin(clear_sign_in_throttle(world)),
            )]),
        ),
        (
            "/roster.identity.v1.CredentialService/GetSignInState",
            ReadsOnly("reads a profile's failed sign-ins and lock"),
        ),
        // EventService.
        (
            "/roster.identity.v1.EventService/ListEvents",
            ReadsOnly("reads the log itself"),
        ),
        (
            "/roster.identity.v1.EventService/WatchEvents",
            ReadsOnly("follows the log itself"),
        ),
    ]
}

/// The table by method path; each RPC at most once, each mutating one with a case.
fn table_by_path() -> BTreeMap<&'static str, Entry> {
    let mut by_path = BTreeMap::new();
    for (path, entry) in table() {
        match &entry {
            Entry::ReadsOnly(why) => assert!(
                !why.trim().is_empty() && !why.contains('\n'),
                "{path}: a reads-only entry says in one line why it writes no event"
            ),
            Entry::Writes(cases) => {
                assert!(
                    !cases.is_empty(),
                    "{path}: an entry that writes, without a case"
                )
            }
        }
        assert!(
            by_path.insert(path, entry).is_none(),
            "{path} appears twice in the events table"
        );
    }
    by_path
}

async fn create_account(_world: &World) -> Prepared {
    let request = pb::CreateAccountRequest {
        request_id: "create-account".into(),
        display_name: "Created Co".into(),
        ..Default::default()
    };
    let created = [
        set("display_name", "Created Co"),
        set("extension_min_length", "2"),
        set("extension_max_length", "8"),
        set("preset", "default"),
        set("min_length", "12"),
        set("max_length", "128"),
        set("min_uppercase", "1"),
        set("min_lowercase", "1"),
        set("min_digits", "1"),
        set("min_symbols", "1"),
        set("forbid_personal_info", "true"),
        set("history_count", "5"),
        set("forbid_common", "true"),
        set("min_strength_score", "0"),
    ];
    Prepared {
        call: Call::CreateAccount(request.clone()),
        answered: Expect::Answered,
        events: vec![Expected::of_account(
            "roster.account.created",
            Want::FromAnswer,
            "create-account",
            created.to_vec(),
        )],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::CreateAccount(pb::CreateAccountRequest {
                request_id: "create-account-refused".into(),
                display_name: String::new(),
                ..request
            }),
            Expect::Refused(Code::InvalidArgument),
        ),
    }
}

async fn update_account(world: &World) -> Prepared {
    let account = world.own_account("Before Co").await;
    let request = |request_id: &str, name: &str| pb::UpdateAccountRequest {
        account: Some(pb::Account {
            id: account.id.clone(),
            display_name: name.into(),
            etag: account.etag.clone(),
            ..Default::default()
        }),
        update_mask: mask(&["display_name"]),
        request_id: request_id.into(),
    };
    Prepared {
        call: Call::UpdateAccount(request("update-account", "After Co")),
        answered: Expect::Answered,
        events: vec![Expected::of_account(
            "roster.account.updated",
            &account.id,
            "update-account",
            vec![changed("display_name", "Before Co", "After Co")],
        )],
        replay: Expect::FirstAnswer,
        // The etag of the account before the call.
        refusal: (
            Call::UpdateAccount(request("update-account-stale", "Stale Co")),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn delete_account(world: &World) -> Prepared {
    let account = world.own_account("Leaving Co").await;
    world
        .identity
        .person(&account.id, "Lea", "Leaving", "lea@leaving.example")
        .await;
    let request = |request_id: &str| pb::DeleteAccountRequest {
        id: account.id.clone(),
        etag: account.etag.clone(),
        request_id: request_id.into(),
    };
    Prepared {
        call: Call::DeleteAccount(request("delete-account")),
        answered: Expect::Answered,
        events: vec![Expected::of_account(
            "roster.account.deleted",
            &account.id,
            "delete-account",
            vec![set("delete_time", Want::Time), set("profiles_deleted", "1")],
        )],
        replay: Expect::FirstAnswer,
        // The etag of the account before the call.
        refusal: (
            Call::DeleteAccount(request("delete-account-stale")),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn undelete_account(world: &World) -> Prepared {
    let account = world.own_account("Returning Co").await;
    let deleted = world
        .identity
        .delete_account(pb::DeleteAccountRequest {
            id: account.id.clone(),
            ..Default::default()
        })
        .await
        .expect("deleted")
        .account
        .expect("account");
    let request = |request_id: &str| pb::UndeleteAccountRequest {
        id: account.id.clone(),
        etag: deleted.etag.clone(),
        request_id: request_id.into(),
    };
    Prepared {
        call: Call::UndeleteAccount(request("undelete-account")),
        answered: Expect::Answered,
        events: vec![Expected::of_account(
            "roster.account.restored",
            &account.id,
            "undelete-account",
            vec![
                cleared("delete_time", Want::Time),
                set("profiles_restored", "0"),
            ],
        )],
        replay: Expect::FirstAnswer,
        // An open account is not undeleted.
        refusal: (
            Call::UndeleteAccount(pb::UndeleteAccountRequest {
                id: account.id.clone(),
                etag: String::new(),
                request_id: "undelete-account-open".into(),
            }),
            Expect::Refused(Code::FailedPrecondition),
        ),
    }
}

async fn update_password_policy(world: &World) -> Prepared {
    let account = world.own_account("Policy Co").await;
    let policy = world
        .identity
        .get_password_policy(pb::GetPasswordPolicyRequest {
            account_id: account.id.clone(),
        })
        .await
        .expect("policy read")
        .policy
        .expect("policy");
    let request = |request_id: &str, min_length: u32| pb::UpdatePasswordPolicyRequest {
        policy: Some(pb::PasswordPolicy {
            account_id: account.id.clone(),
            min_length,
            etag: policy.etag.clone(),
            ..Default::default()
        }),
        update_mask: mask(&["min_length"]),
        request_id: request_id.into(),
    };
    Prepared {
        call: Call::UpdatePasswordPolicy(request("update-policy", 14)),
        answered: Expect::Answered,
        events: vec![Expected::of_account(
            "roster.account.password_policy_changed",
            &account.id,
            "update-policy",
            vec![
                changed("preset", "default", "custom"),
                changed("min_length", "12", "14"),
            ],
        )],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::UpdatePasswordPolicy(request("update-policy-stale", 16)),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn create_scim_token(world: &World) -> Prepared {
    let account = world.own_account("Token Co").await;
    let request = pb::CreateScimTokenRequest {
        account_id: account.id.clone(),
        display_name: "Okta".into(),
        send_welcome_emails: false,
        request_id: "create-token".into(),
    };
    Prepared {
        call: Call::CreateScimToken(request.clone()),
        answered: Expect::Answered,
        events: vec![Expected::of_account(
            "roster.account.scim_token_created",
            &account.id,
            "create-token",
            vec![
                set("scim_token_id", Want::FromAnswer),
                set("display_name", "Okta"),
                set("send_welcome_emails", "false"),
                set("secret_prefix", Want::FromAnswer),
            ],
        )],
        replay: Expect::Answered,
        refusal: (
            Call::CreateScimToken(pb::CreateScimTokenRequest {
                display_name: String::new(),
                request_id: "create-token-refused".into(),
                ..request
            }),
            Expect::Refused(Code::InvalidArgument),
        ),
    }
}

async fn revoke_scim_token(world: &World) -> Prepared {
    let account = world.own_account("Revoke Co").await;
    let (token, _) = world.identity.scim_token(&account.id, "Entra ID").await;
    let request = pb::RevokeScimTokenRequest {
        account_id: account.id.clone(),
        token_id: token.id.clone(),
        request_id: "revoke-token".into(),
    };
    Prepared {
        call: Call::RevokeScimToken(request.clone()),
        answered: Expect::Answered,
        events: vec![Expected::of_account(
            "roster.account.scim_token_revoked",
            &account.id,
            "revoke-token",
            vec![
                cleared("scim_token_id", &token.id),
                cleared("display_name", "Entra ID"),
                cleared("send_welcome_emails", "false"),
                cleared("secret_prefix", &token.secret_prefix),
            ],
        )],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::RevokeScimToken(pb::RevokeScimTokenRequest {
                token_id: uuid::Uuid::now_v7().to_string(),
                request_id: "revoke-token-refused".into(),
                ..request
            }),
            Expect::Refused(Code::NotFound),
        ),
    }
}

async fn create_profile(world: &World) -> Prepared {
    let request = pb::CreateProfileRequest {
        request_id: "create-profile".into(),
        account_id: world.account.clone(),
        first_name: "Grace".into(),
        last_name: "Hopper".into(),
        email: "grace@table.example".into(),
        job_title: "Rear admiral".into(),
        ..Default::default()
    };
    Prepared {
        call: Call::CreateProfile(request.clone()),
        answered: Expect::Answered,
        events: vec![Expected::of_profile(
            "roster.profile.created",
            &world.account,
            Want::FromAnswer,
            "create-profile",
            vec![
                set("first_name", "Grace"),
                set("last_name", "Hopper"),
                set("email", "grace@table.example"),
                set("job_title", "Rear admiral"),
                set("username", "grace@table.example"),
                set("status", "active"),
            ],
        )],
        replay: Expect::FirstAnswer,
        // The username (the same email) is the first call's now.
        refusal: (
            Call::CreateProfile(pb::CreateProfileRequest {
                request_id: "create-profile-taken".into(),
                ..request
            }),
            Expect::Refused(Code::AlreadyExists),
        ),
    }
}

/// A case of UpdateProfile on a new profile `name`: `patch` sets the new values of `paths`,
/// which make `events`; the refusal is the same change with the etag the call made stale.
async fn update_profile(
    world: &World,
    name: &str,
    paths: &[&str],
    patch: impl FnOnce(&mut pb::Profile),
    events: impl FnOnce(&pb::Profile) -> Vec<Expected>,
) -> Prepared {
    let profile = world.profile(name).await;
    let mut changes = profile_patch(&profile);
    patch(&mut changes);
    let request = |request_id: &str| pb::UpdateProfileRequest {
        profile: Some(changes.clone()),
        update_mask: mask(paths),
        request_id: request_id.into(),
    };
    Prepared {
        call: Call::UpdateProfile(request(&format!("update-{name}"))),
        answered: Expect::Answered,
        events: events(&profile),
        replay: Expect::FirstAnswer,
        refusal: (
            Call::UpdateProfile(request(&format!("update-{name}-stale"))),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn update_profile_name(world: &World) -> Prepared {
    update_profile(
        world,
        "renamed",
        &["first_name"],
        |profile| profile.first_name = "Augusta".into(),
        |profile| {
            vec![Expected::of_profile(
                "roster.profile.updated",
                &world.account,
                &profile.id,
                "update-renamed",
                vec![changed("first_name", "Ada", "Augusta")],
            )]
        },
    )
    .await
}

async fn update_profile_username(world: &World) -> Prepared {
    update_profile(
        world,
        "username",
        &["username"],
        |profile| profile.username = "augusta.ada".into(),
        |profile| {
            vec![Expected::of_profile(
                "roster.profile.username_changed",
                &world.account,
                &profile.id,
                "update-username",
                vec![changed("username", "username@table.example", "augusta.ada")],
            )]
        },
    )
    .await
}

async fn update_profile_all_at_once(world: &World) -> Prepared {
    update_profile(
        world,
        "everything",
        &["first_name", "username", "status"],
        |profile| {
            profile.first_name = "Augusta".into();
            profile.username = "augusta.king".into();
            profile.status = pb::ProfileStatus::Suspended as i32;
        },
        |profile| {
            let event = |event_type, change| {
                Expected::of_profile(
                    event_type,
                    &world.account,
                    &profile.id,
                    "update-everything",
                    vec![change],
                )
            };
            vec![
                event(
                    "roster.profile.updated",
                    changed("first_name", "Ada", "Augusta"),
                ),
                event(
                    "roster.profile.username_changed",
                    changed("username", "everything@table.example", "augusta.king"),
                ),
                event(
                    "roster.profile.suspended",
                    changed("status", "active", "suspended"),
                ),
            ]
        },
    )
    .await
}

async fn delete_profile(world: &World) -> Prepared {
    let profile = world.profile("deleted").await;
    let profile = world.with_roles(&profile, &[pb::Role::StandardUser]).await;
    let profile = world.with_extension(&profile, "301").await;
    let request = |request_id: &str| pb::DeleteProfileRequest {
        id: profile.id.clone(),
        etag: profile.etag.clone(),
        request_id: request_id.into(),
    };
    let event = |event_type, change| {
        Expected::of_profile(
            event_type,
            &world.account,
            &profile.id,
            "delete-profile",
            vec![change],
        )
    };
    Prepared {
        call: Call::DeleteProfile(request("delete-profile")),
        answered: Expect::Answered,
        events: vec![
            event(
                "roster.profile.deleted",
                changed("status", "active", "deleted"),
            ),
            event(
                "roster.profile.extension_unassigned",
                cleared("extensions", "301 (physical)"),
            ),
        ],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::DeleteProfile(request("delete-profile-stale")),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn undelete_profile(world: &World) -> Prepared {
    let profile = world.profile("undeleted").await;
    let profile = world.with_roles(&profile, &[pb::Role::StandardUser]).await;
    let profile = world.with_extension(&profile, "311").await;
    let profile = world.with_extension(&profile, "312").await;
    let deleted = world
        .identity
        .delete_profile(pb::DeleteProfileRequest {
            id: profile.id.clone(),
            ..Default::default()
        })
        .await
        .expect("deleted")
        .profile
        .expect("profile");
    let other = world.profile("took-312").await;
    world.with_extension(&other, "312").await;
    let request = |request_id: &str| pb::UndeleteProfileRequest {
        id: deleted.id.clone(),
        etag: deleted.etag.clone(),
        request_id: request_id.into(),
    };
    let event = |event_type, change| {
        Expected::of_profile(
            event_type,
            &world.account,
            &profile.id,
            "undelete-profile",
            vec![change],
        )
    };
    Prepared {
        call: Call::UndeleteProfile(request("undelete-profile")),
        answered: Expect::Answered,
        events: vec![
            event(
                "roster.profile.restored",
                changed("status", "deleted", "active"),
            ),
            event(
                "roster.profile.extension_assigned",
                set("extensions", "311 (physical)"),
            ),
        ],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::UndeleteProfile(request("undelete-profile-stale")),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn batch_upsert_profiles(world: &World) -> Prepared {
    let item = pb::ProfileUpsert {
        idempotency_key: "batch-item".into(),
        first_name: "Katherine".into(),
        last_name: "Johnson".into(),
        email: "katherine@table.example".into(),
        ..Default::default()
    };
    let request = |item: pb::ProfileUpsert| pb::BatchUpsertProfilesRequest {
        account_id: world.account.clone(),
        items: vec![item],
        ..Default::default()
    };
    Prepared {
        call: Call::BatchUpsertProfiles(request(item.clone())),
        answered: Expect::Answered,
        events: vec![Expected::of_profile(
            "roster.profile.created",
            &world.account,
            Want::FromAnswer,
            "batch-item",
            vec![
                set("first_name", "Katherine"),
                set("last_name", "Johnson"),
                set("email", "katherine@table.example"),
                set("username", "katherine@table.example"),
                set("status", "active"),
            ],
        )],
        replay: Expect::FirstAnswer,
        // Another item wanting the username the first one took.
        refusal: (
            Call::BatchUpsertProfiles(request(pb::ProfileUpsert {
                idempotency_key: "batch-item-taken".into(),
                ..item
            })),
            Expect::ItemFailed(Code::AlreadyExists),
        ),
    }
}

async fn assign_roles(world: &World) -> Prepared {
    let profile = world.profile("given-roles").await;
    let request = |request_id: &str| pb::AssignRolesRequest {
        profile_id: profile.id.clone(),
        roles: vec![
            pb::Role::ContactCenterSupervisor as i32,
            pb::Role::ContactCenterAgent as i32,
        ],
        etag: profile.etag.clone(),
        request_id: request_id.into(),
    };
    Prepared {
        call: Call::AssignRoles(request("assign-roles")),
        answered: Expect::Answered,
        events: vec![Expected::of_profile(
            "roster.profile.roles_assigned",
            &world.account,
            &profile.id,
            "assign-roles",
            vec![changed(
                "roles",
                "[]",
                "[contact_center_agent, contact_center_supervisor]",
            )],
        )],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::AssignRoles(request("assign-roles-stale")),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn unassign_roles(world: &World) -> Prepared {
    let profile = world.profile("taken-roles").await;
    let profile = world
        .with_roles(
            &profile,
            &[
                pb::Role::ContactCenterAgent,
                pb::Role::ContactCenterSupervisor,
            ],
        )
        .await;
    let request = |request_id: &str| pb::UnassignRolesRequest {
        profile_id: profile.id.clone(),
        roles: vec![pb::Role::ContactCenterAgent as i32],
        etag: profile.etag.clone(),
        request_id: request_id.into(),
    };
    Prepared {
        call: Call::UnassignRoles(request("unassign-roles")),
        answered: Expect::Answered,
        events: vec![Expected::of_profile(
            "roster.profile.roles_unassigned",
            &world.account,
            &profile.id,
            "unassign-roles",
            vec![changed(
                "roles",
                "[contact_center_agent, contact_center_supervisor]",
                "[contact_center_supervisor]",
            )],
        )],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::UnassignRoles(request("unassign-roles-stale")),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn assign_extension(world: &World) -> Prepared {
    let profile = world.profile("given-extension").await;
    let holder = world.profile("extension-holder").await;
    world.with_extension(&holder, "402").await;
    let request = |request_id: &str, number: &str| pb::AssignExtensionRequest {
        profile_id: profile.id.clone(),
        extension: Some(physical(number)),
        request_id: request_id.into(),
        ..Default::default()
    };
    Prepared {
        call: Call::AssignExtension(request("assign-extension", "401")),
        answered: Expect::Answered,
        events: vec![Expected::of_profile(
            "roster.profile.extension_assigned",
            &world.account,
            &profile.id,
            "assign-extension",
            vec![set("extensions", "401 (physical)")],
        )],
        replay: Expect::FirstAnswer,
        // A number another profile of the account holds.
        refusal: (
            Call::AssignExtension(request("assign-extension-taken", "402")),
            Expect::Refused(Code::AlreadyExists),
        ),
    }
}

async fn assign_extension_kind(world: &World) -> Prepared {
    let profile = world.profile("extension-kind").await;
    let profile = world.with_extension(&profile, "403").await;
    let request = |request_id: &str| pb::AssignExtensionRequest {
        profile_id: profile.id.clone(),
        extension: Some(pb::Extension {
            number: "403".into(),
            kind: pb::ExtensionKind::Virtual as i32,
        }),
        etag: profile.etag.clone(),
        request_id: request_id.into(),
    };
    let event = |event_type, change| {
        Expected::of_profile(
            event_type,
            &world.account,
            &profile.id,
            "extension-kind",
            vec![change],
        )
    };
    Prepared {
        call: Call::AssignExtension(request("extension-kind")),
        answered: Expect::Answered,
        events: vec![
            event(
                "roster.profile.extension_assigned",
                set("extensions", "403 (virtual)"),
            ),
            event(
                "roster.profile.extension_unassigned",
                cleared("extensions", "403 (physical)"),
            ),
        ],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::AssignExtension(request("extension-kind-stale")),
            Expect::Refused(Code::Aborted),
        ),
    }
}

async fn unassign_extension(world: &World) -> Prepared {
    let profile = world.profile("freed-extension").await;
    let profile = world.with_extension(&profile, "501").await;
    let request = |request_id: &str, number: &str| pb::UnassignExtensionRequest {
        profile_id: profile.id.clone(),
        number: number.into(),
        request_id: request_id.into(),
        ..Default::default()
    };
    Prepared {
        call: Call::UnassignExtension(request("unassign-extension", "501")),
        answered: Expect::Answered,
        events: vec![Expected::of_profile(
            "roster.profile.extension_unassigned",
            &world.account,
            &profile.id,
            "unassign-extension",
            vec![cleared("extensions", "501 (physical)")],
        )],
        replay: Expect::FirstAnswer,
        // A number the profile does not hold.
        refusal: (
            Call::UnassignExtension(request("unassign-extension-unheld", "599")),
            Expect::Refused(Code::NotFound),
        ),
    }
}

async fn send_password_reset(world: &World) -> Prepared {
    let profile = world.profile("reset-sent").await;
    let request = |request_id: &str, email: &str| pb::SendPasswordResetRequest {
        request_id: request_id.into(),
        profile_id: profile.id.clone(),
        email: email.into(),
        ..Default::default()
    };
    Prepared {
        call: Call::SendPasswordReset(request("send-reset", &profile.email)),
        answered: Expect::Answered,
        events: vec![Expected::of_profile(
            "roster.credential.password_reset_requested",
            &world.account,
            &profile.id,
            "send-reset",
            Vec::new(),
        )],
        replay: Expect::FirstAnswer,
        // An address the profile does not have.
        refusal: (
            Call::SendPasswordReset(request("send-reset-refused", "someone.else@table.example")),
            Expect::Refused(Code::FailedPrecondition),
        ),
    }
}

async fn complete_password_reset(world: &World) -> Prepared {
    let profile = world.profile("reset-completed").await;
    let token = world.reset_token(&profile).await;
    // A live token of another profile: issuing one revokes only its own profile's others.
    let other = world.profile("reset-refused").await;
    let other_token = world.reset_token(&other).await;
    let call = Call::CompletePasswordReset(pb::CompletePasswordResetRequest {
        token,
        new_password: STRONG.into(),
        request_id: "complete-reset".into(),
    });
    Prepared {
        call,
        answered: Expect::Answered,
        events: vec![
            Expected::of_profile(
                "roster.credential.password_changed",
                &world.account,
                &profile.id,
                "complete-reset",
                Vec::new(),
            )
            .by(format!("profile {}", profile.id)),
        ],
        // The token is used, but the request id was answered: its answer again.
        replay: Expect::FirstAnswer,
        // A password the policy refuses.
        refusal: (
            Call::CompletePasswordReset(pb::CompletePasswordResetRequest {
                token: other_token,
                new_password: "password".into(),
                request_id: String::new(),
            }),
            Expect::Refused(Code::InvalidArgument),
        ),
    }
}

async fn verify_password_locks(world: &World) -> Prepared {
    let profile = world.profile_with_password("locked").await;
    world.wrong_passwords(&profile, MAX_FAILURES - 1).await;
    let wrong = Call::VerifyPassword(sign_in(&profile, "Wrong-Guess-0000"));
    Prepared {
        call: wrong,
        answered: Expect::SignInRefused,
        events: vec![Expected::of_profile(
            "roster.signin.locked",
            &world.account,
            &profile.id,
            "",
            vec![
                set("failures", MAX_FAILURES.to_string()),
                set("locked_until", Want::Time),
            ],
        )],
        replay: Expect::Refused(Code::ResourceExhausted),
        // Even the right password, while the lock lasts.
        refusal: (
            Call::VerifyPassword(sign_in(&profile, STRONG)),
            Expect::Refused(Code::ResourceExhausted),
        ),
    }
}

async fn verify_password_unlocks(world: &World) -> Prepared {
    let profile = world.profile_with_password("unlocked").await;
    world.wrong_passwords(&profile, MAX_FAILURES).await;
    world.lock_ended(&profile).await;
    let event = |event_type, changes| {
        Expected::of_profile(event_type, &world.account, &profile.id, "", changes)
    };
    Prepared {
        call: Call::VerifyPassword(sign_in(&profile, STRONG)),
        answered: Expect::Answered,
        events: vec![
            event(
                "roster.signin.locked",
                vec![
                    set("failures", (MAX_FAILURES + 1).to_string()),
                    set("locked_until", Want::Time),
                ],
            ),
            event("roster.signin.unlocked", Vec::new()),
        ],
        // Signing in again starts a count of one, far from the limit.
        replay: Expect::Answered,
        refusal: (
            Call::VerifyPassword(sign_in(&profile, "Wrong-Guess-0000")),
            Expect::SignInRefused,
        ),
    }
}

async fn clear_sign_in_throttle(world: &World) -> Prepared {
    let profile = world.profile_with_password("cleared").await;
    world.wrong_passwords(&profile, MAX_FAILURES).await;
    let request = |request_id: &str, profile_id: &str| pb::ClearSignInThrottleRequest {
        request_id: request_id.into(),
        profile_id: profile_id.into(),
    };
    Prepared {
        call: Call::ClearSignInThrottle(request("clear-throttle", &profile.id)),
        answered: Expect::Answered,
        events: vec![Expected::of_profile(
            "roster.signin.unlocked",
            &world.account,
            &profile.id,
            "clear-throttle",
            Vec::new(),
        )],
        replay: Expect::FirstAnswer,
        refusal: (
            Call::ClearSignInThrottle(request(
                "clear-throttle-unknown",
                &uuid::Uuid::now_v7().to_string(),
            )),
            Expect::Refused(Code::NotFound),
        ),
    }
}

#[test]
fn the_events_table_names_every_identity_rpc_of_the_descriptor_set_and_no_other() {
    let table = table_by_path();
    let methods: Vec<String> = raw::methods()
        .into_iter()
        .filter(|method| method.service == Service::Identity)
        .map(|method| method.path)
        .collect();
    let missing: Vec<&str> = methods
        .iter()
        .map(String::as_str)
        .filter(|path| !table.contains_key(path))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs of identity's descriptor set with no entry in the events table: add a case \
         saying which events one call writes (with its replay and a refusal, which write \
         none), or a reads-only entry saying why it writes no event: {missing:?}"
    );
    let gone: Vec<&&str> = table
        .keys()
        .filter(|path| !methods.iter().any(|method| method == **path))
        .collect();
    assert!(
        gone.is_empty(),
        "the events table names RPCs identity's descriptor set no longer has; remove their \
         entries: {gone:?}"
    );
}

async fn one_call_writes_its_events_and_its_replay_or_a_refusal_none(backend: Backend) {
    let Some(world) = World::start(backend).await else {
        return;
    };
    let mut log = Log::start(&world.identity).await;
    for (path, entry) in table_by_path() {
        let Entry::Writes(cases) = entry else {
            continue;
        };
        for case in cases {
            let context = format!("{path} ({})", case.what);
            let prepared = (case.prepare)(&world).await;
            assert_eq!(prepared.call.path(), path, "{context}: the call");
            assert_eq!(prepared.refusal.0.path(), path, "{context}: the refusal");
            // The set-up's events, whatever they are, are behind us.
            log.look().await;

            let first = prepared.call.send(&world.identity).await;
            assert!(
                prepared.answered.admits(&first, &first),
                "{context}: the call was answered {first:?}, not {:?}",
                prepared.answered
            );
            assert_written(&context, &first, &prepared.events, &log.look().await);

            let again = prepared.call.send(&world.identity).await;
            assert!(
                prepared.replay.admits(&again, &first),
                "{context}: the replay was answered {again:?}, not {:?} (first: {first:?})",
                prepared.replay
            );
            let replayed = log.look().await;
            assert!(
                replayed.is_empty(),
                "{context}: the replay wrote {:?}",
                types(&replayed)
            );

            let (refusal, refused) = &prepared.refusal;
            let answer = refusal.send(&world.identity).await;
            assert!(
                refused.admits(&answer, &first),
                "{context}: the refusal was answered {answer:?}, not {refused:?}"
            );
            let after_refusal = log.look().await;
            assert!(
                after_refusal.is_empty(),
                "{context}: the refused call wrote {:?}",
                types(&after_refusal)
            );
        }
    }
}

both_backends!(one_call_writes_its_events_and_its_replay_or_a_refusal_none);
