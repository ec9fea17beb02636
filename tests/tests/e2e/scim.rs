//! SCIM 2.0 over real HTTP, on SQLite and PostgreSQL: users made, read, filtered, replaced,
//! patched and deleted the way Entra ID and Okta do it, through the same rules as gRPC (global
//! usernames never reused, confusables refused), a token that reaches only its own account and
//! stops working the moment it is revoked on every replica, If-Match, groups as roles, SCIM
//! error responses for every failure, and an audit event with source `scim` for every change.

use std::sync::Arc;

use http::{Method, StatusCode};
use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::Identity;
use roster_tests::scim::{Answer, Scim, patch_op};
use roster_tests::{
    Backend, TestDatabase, TestServer, both_backends, identity_settings, test_settings,
};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

both_backends!(
    users_are_created_read_and_listed_the_way_entra_id_does_it,
    filters_and_paging_select_in_the_database,
    usernames_are_global_and_never_reused_through_scim_and_grpc_alike,
    a_token_reaches_only_its_own_account,
    a_revoked_token_is_refused_at_once_on_every_replica,
    patch_applies_the_shapes_entra_id_and_okta_send,
    put_replaces_and_if_match_refuses_a_stale_version,
    every_scim_change_writes_its_audit_event_with_source_scim,
    failures_are_scim_error_responses,
    groups_are_roles_and_their_members_change_together,
    a_returning_employee_is_the_same_person,
    outside_the_restore_window_a_username_stays_retired,
    a_token_that_sends_welcome_emails_sends_one_per_new_user,
    one_accounts_slow_requests_leave_room_for_every_other_account,
    a_put_that_leaves_active_out_keeps_the_users_status,
    a_group_patch_applies_its_operations_in_order,
    concurrent_changes_without_if_match_all_go_through,
    replacements_of_a_group_at_once_end_as_one_of_them,
    replacements_of_one_group_wait_without_holding_connections,
);

struct Setup {
    server: TestServer,
    identity: Identity,
    account: String,
    scim: Scim,
    scim_token: String,
}

async fn start(backend: Backend, settings: roster_identity::Settings) -> Option<Setup> {
    let database = Arc::new(TestDatabase::create(backend).await?);
    let common = test_settings(Service::Identity, &database.url);
    let server =
        TestServer::start_with(Service::Identity, common, settings, database, Vec::new()).await;
    let identity = Identity::connect(&server).await;
    let account = identity.account("Acme").await.id;
    let secret = token(&identity, &account).await.1;
    let scim = Scim::new(server.scim_addr.expect("SCIM is on"), &secret);
    Some(Setup {
        server,
        identity,
        account,
        scim,
        scim_token: secret,
    })
}

/// A new SCIM token of `account`: its id and its secret.
async fn token(identity: &Identity, account: &str) -> (String, String) {
    let created = identity
        .create_scim_token(pb::CreateScimTokenRequest {
            account_id: account.to_owned(),
            display_name: "Entra ID".into(),
            ..Default::default()
        })
        .await
        .expect("CreateScimToken");
    (created.token.expect("token").id, created.secret)
}

/// An Entra ID-style User body.
fn user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "displayName": "Ada Lovelace",
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
        "title": "Analyst",
        "locale": "en-GB",
        "timezone": "Europe/London",
        ENTERPRISE: {"department": "Engines", "employeeNumber": "1815"},
    })
}

async fn created(scim: &Scim, body: &Value) -> Value {
    let answer = scim.post("/Users", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body
}

fn id(resource: &Value) -> &str {
    resource["id"].as_str().expect("an id")
}

fn user_names(list: &Answer) -> Vec<String> {
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    list.body["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|user| user["userName"].as_str().unwrap().to_owned())
        .collect()
}

fn filtered(filter: &str) -> String {
    format!(
        "/Users?filter={}",
        url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
    )
}

async fn users_are_created_read_and_listed_the_way_entra_id_does_it(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    // Entra ID asks first whether the user exists.
    let before = scim
        .get(&filtered(r#"userName eq "ada@example.com""#))
        .await;
    assert_eq!(before.body["totalResults"], 0, "{:?}", before.body);
    let answer = scim
        .post("/Users", &user("ada@example.com", "E-1815"))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/scim+json"));
    let location = answer.header("location").expect("Location").to_owned();
    let etag = answer.header("etag").map(str::to_owned);
    let ada = answer.body;
    assert!(
        location.ends_with(&format!("/scim/v2/Users/{}", id(&ada))),
        "{location}"
    );
    assert_eq!(etag.as_deref(), ada["meta"]["version"].as_str());
    assert_eq!(ada["userName"], "ada@example.com");
    assert_eq!(ada["externalId"], "E-1815");
    assert_eq!(
        ada["name"],
        json!({"givenName": "Ada", "familyName": "Lovelace"})
    );
    assert_eq!(
        ada["emails"],
        json!([{"value": "ada@example.com", "type": "work"}])
    );
    assert_eq!(ada["title"], "Analyst");
    assert_eq!(ada["locale"], "en-GB");
    assert_eq!(ada["timezone"], "Europe/London");
    assert_eq!(ada["active"], true);
    assert_eq!(ada[ENTERPRISE]["department"], "Engines");
    assert_eq!(ada["meta"]["resourceType"], "User");
    // The profile is the user: gRPC reads the same.
    let profile = setup.identity.profile(id(&ada)).await;
    assert_eq!(profile.account_id, setup.account);
    assert_eq!(profile.username, "ada@example.com");
    assert_eq!(profile.job_title, "Analyst");
    assert_eq!(profile.external_id, "E-1815");
    let read = scim.get(&format!("/Users/{}", id(&ada))).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, ada);
    // The existence check finds it whatever the case of the name or of the value.
    let found = scim
        .get(&filtered(r#"USERNAME eq "ADA@example.com""#))
        .await;
    assert_eq!(user_names(&found), ["ada@example.com"]);
    let by_external = scim.get(&filtered(r#"externalId eq "E-1815""#)).await;
    assert_eq!(user_names(&by_external), ["ada@example.com"]);
    let wrong_case = scim.get(&filtered(r#"externalId eq "e-1815""#)).await;
    assert_eq!(user_names(&wrong_case), Vec::<String>::new());
    // attributes and excludedAttributes.
    let narrow = scim
        .get(&format!(
            "/Users/{}?attributes=userName,name.givenName",
            id(&ada)
        ))
        .await;
    assert_eq!(
        narrow.body,
        json!({
            "schemas": ada["schemas"],
            "id": ada["id"],
            "userName": "ada@example.com",
            "name": {"givenName": "Ada"},
        })
    );
    let without = scim
        .get(&format!(
            "/Users/{}?excludedAttributes=emails,{ENTERPRISE}",
            id(&ada)
        ))
        .await;
    assert!(without.body.get("emails").is_none());
    assert!(without.body.get(ENTERPRISE).is_none());
    assert_eq!(without.body["userName"], "ada@example.com");
    // A user made inactive from the start is a suspended profile.
    let mut inactive = user("byron@example.com", "E-1788");
    inactive["active"] = json!(false);
    let byron = created(scim, &inactive).await;
    assert_eq!(byron["active"], false);
    assert_eq!(
        setup.identity.profile(id(&byron)).await.status,
        pb::ProfileStatus::Suspended as i32
    );
    // Deleted: gone for SCIM, kept (deleted) for gRPC.
    let deleted = scim.delete(&format!("/Users/{}", id(&ada)), &[]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let gone = scim.get(&format!("/Users/{}", id(&ada))).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = scim.delete(&format!("/Users/{}", id(&ada)), &[]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        setup.identity.profile(id(&ada)).await.status,
        pb::ProfileStatus::Deleted as i32
    );
    drop(setup.server);
}

async fn filters_and_paging_select_in_the_database(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    for (name, family, title) in [
        ("ann@example.com", "Archer", Some("Pilot")),
        ("bob@example.com", "Baker", None),
        ("cy_d@example.org", "Carter", Some("Pilot")),
        ("dee%x@example.org", "Dyer", Some("Clerk")),
    ] {
        let mut body = user(name, &format!("X-{family}"));
        body["name"]["familyName"] = json!(family);
        match title {
            Some(title) => body["title"] = json!(title),
            None => {
                body.as_object_mut().unwrap().remove("title");
            }
        }
        created(scim, &body).await;
    }
    for (filter, expected) in [
        (r#"name.familyName sw "b""#, vec!["bob@example.com"]),
        (
            r#"emails.value ew "@EXAMPLE.ORG""#,
            vec!["cy_d@example.org", "dee%x@example.org"],
        ),
        (r#"userName co "_""#, vec!["cy_d@example.org"]),
        (r#"userName co "%""#, vec!["dee%x@example.org"]),
        (
            r#"title pr"#,
            vec!["ann@example.com", "cy_d@example.org", "dee%x@example.org"],
        ),
        (r#"not (title pr)"#, vec!["bob@example.com"]),
        (
            r#"title ne "Pilot""#,
            vec!["bob@example.com", "dee%x@example.org"],
        ),
        (
            r#"title eq "pilot" and emails[type eq "work" and value co "example.com"]"#,
            vec!["ann@example.com"],
        ),
        (
            r#"userName eq "bob@example.com" or name.familyName eq "Dyer""#,
            vec!["bob@example.com", "dee%x@example.org"],
        ),
        (r#"id eq "not-a-uuid""#, vec![]),
        (
            r#"meta.lastModified gt "2000-01-01T00:00:00Z" and active eq true"#,
            vec![
                "ann@example.com",
                "bob@example.com",
                "cy_d@example.org",
                "dee%x@example.org",
            ],
        ),
    ] {
        let mut names = user_names(&scim.get(&filtered(filter)).await);
        names.sort();
        assert_eq!(names, expected, "{filter}");
    }
    // Paging: 1-based startIndex, count, totalResults of the whole filter.
    let page = scim.get("/Users?startIndex=2&count=2").await;
    assert_eq!(page.body["totalResults"], 4);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["itemsPerPage"], 2);
    assert_eq!(user_names(&page), ["bob@example.com", "cy_d@example.org"]);
    let count_only = scim.get("/Users?count=0").await;
    assert_eq!(count_only.body["totalResults"], 4);
    assert_eq!(count_only.body["Resources"], json!([]));
    let past = scim.get("/Users?startIndex=10").await;
    assert_eq!(past.body["totalResults"], 4);
    assert_eq!(user_names(&past), Vec::<String>::new());
}

async fn usernames_are_global_and_never_reused_through_scim_and_grpc_alike(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    // Held in another account, made over gRPC.
    let other = setup.identity.account("Other").await;
    let held = setup
        .identity
        .person(&other.id, "Carol", "Held", "carol@example.com")
        .await;
    let taken = scim.post("/Users", &user("Carol@Example.com", "E-1")).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{:?}", taken.body);
    assert_eq!(taken.scim_type(), Some("uniqueness"));
    assert!(
        taken.detail().contains("used by another user"),
        "{}",
        taken.detail()
    );
    for secret in [&held.id, &other.id, "Other", "Held"] {
        assert!(
            !taken.detail().contains(secret),
            "the refusal names {secret}"
        );
    }
    // Made over SCIM, refused over gRPC.
    let dana = created(scim, &user("dana@example.com", "E-2")).await;
    let refused = setup
        .identity
        .create_profile(pb::CreateProfileRequest {
            account_id: other.id.clone(),
            first_name: "Dana".into(),
            last_name: "Other".into(),
            email: "dana@example.com".into(),
            ..Default::default()
        })
        .await
        .expect_err("the username is taken");
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    // Deleted over SCIM: retired for good, for everyone.
    scim.delete(&format!("/Users/{}", id(&dana)), &[]).await;
    let retired = scim.post("/Users", &user("dana@example.com", "E-3")).await;
    assert_eq!(retired.status, StatusCode::CONFLICT);
    assert_eq!(retired.scim_type(), Some("uniqueness"));
    assert!(
        retired.detail().contains("was used before"),
        "{}",
        retired.detail()
    );
    // Confusable with a name in use ("ecco" written in Cyrillic letters): refused as an
    // invalid value.
    setup
        .identity
        .create_profile(pb::CreateProfileRequest {
            account_id: other.id.clone(),
            first_name: "Ecco".into(),
            last_name: "Held".into(),
            email: "ecco@example.com".into(),
            username: "ecco".into(),
            ..Default::default()
        })
        .await
        .expect("ecco created");
    let mut cyrillic = user("ecco@example.net", "E-4");
    cyrillic["userName"] = json!("\u{0435}\u{0441}\u{0441}\u{043E}");
    let confusable = scim.post("/Users", &cyrillic).await;
    assert_eq!(
        confusable.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        confusable.body
    );
    assert_eq!(confusable.scim_type(), Some("invalidValue"));
    assert!(
        confusable.detail().contains("confused"),
        "{}",
        confusable.detail()
    );
    // Renaming onto a held name is refused the same way, and changes nothing.
    let erin = created(scim, &user("erin@example.com", "E-5")).await;
    let rename = scim
        .patch(
            &format!("/Users/{}", id(&erin)),
            &patch_op(json!([{"op": "replace", "path": "userName", "value": "carol@example.com"}])),
            &[],
        )
        .await;
    assert_eq!(rename.status, StatusCode::CONFLICT);
    assert_eq!(
        setup.identity.profile(id(&erin)).await.username,
        "erin@example.com"
    );
}

async fn a_token_reaches_only_its_own_account(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    let other = setup.identity.account("Other").await;
    let theirs = setup
        .identity
        .person(&other.id, "Fay", "Theirs", "fay@example.com")
        .await;
    let nobody = uuid::Uuid::now_v7().to_string();
    let missing = scim.get(&format!("/Users/{nobody}")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let foreign = scim.get(&format!("/Users/{}", theirs.id)).await;
    assert_eq!(foreign.status, missing.status);
    assert_eq!(
        foreign.body, missing.body,
        "another account's user reads as no user"
    );
    for (method, body) in [
        (Method::PUT, Some(user("fay@example.com", "E-9"))),
        (
            Method::PATCH,
            Some(patch_op(
                json!([{"op": "replace", "path": "active", "value": false}]),
            )),
        ),
        (Method::DELETE, None),
    ] {
        let answer = scim
            .send(
                method.clone(),
                &format!("/scim/v2/Users/{}", theirs.id),
                body.as_ref(),
                &[],
            )
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(answer.body, missing.body, "{method}");
    }
    assert_eq!(
        setup.identity.profile(&theirs.id).await.status,
        pb::ProfileStatus::Active as i32,
        "nothing changed"
    );
    // Lists and filters see only the token's account.
    assert_eq!(
        user_names(
            &scim
                .get(&filtered(r#"userName eq "fay@example.com""#))
                .await
        ),
        Vec::<String>::new()
    );
    assert_eq!(scim.get("/Users").await.body["totalResults"], 0);
    // A group change naming another account's user changes nothing.
    let adding = scim
        .patch(
            "/Groups/standard_user",
            &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": theirs.id}]}])),
            &[],
        )
        .await;
    assert_eq!(adding.status, StatusCode::BAD_REQUEST, "{:?}", adding.body);
    assert!(setup.identity.profile(&theirs.id).await.roles.is_empty());
    // No token, a wrong one, another scheme.
    for client in [
        scim.with_token(None),
        scim.with_token(Some("rscim_not-a-real-token")),
        scim.with_token(Some("")),
    ] {
        let answer = client.get("/Users").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(
            answer
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer"))
        );
        assert_eq!(
            answer.body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
        );
    }
    let basic = scim
        .with_token(None)
        .send(
            Method::GET,
            "/scim/v2/Users",
            None,
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
}

async fn a_revoked_token_is_refused_at_once_on_every_replica(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    // A second replica on the same database.
    let replica = TestServer::start_with(
        Service::Identity,
        test_settings(Service::Identity, &setup.server.database.url),
        identity_settings(),
        setup.server.database.clone(),
        Vec::new(),
    )
    .await;
    let (token_id, secret) = token(&setup.identity, &setup.account).await;
    let first = Scim::new(setup.server.scim_addr.unwrap(), &secret);
    let second = Scim::new(replica.scim_addr.unwrap(), &secret);
    assert_eq!(first.get("/Users").await.status, StatusCode::OK);
    assert_eq!(second.get("/Users").await.status, StatusCode::OK);
    setup
        .identity
        .revoke_scim_token(pb::RevokeScimTokenRequest {
            account_id: setup.account.clone(),
            token_id,
            ..Default::default()
        })
        .await
        .expect("RevokeScimToken");
    for client in [&first, &second] {
        let answer = client.post("/Users", &user("gus@example.com", "E-7")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", answer.body);
    }
    assert_eq!(
        setup.scim.get("/Users").await.status,
        StatusCode::OK,
        "the account's other token still works"
    );
}

async fn patch_applies_the_shapes_entra_id_and_okta_send(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    let ada = created(scim, &user("ada@example.com", "E-1")).await;
    let path = format!("/Users/{}", id(&ada));
    // Entra ID: capitalised op names, value-filter paths, booleans as strings.
    let entra = scim
        .patch(
            &path,
            &patch_op(json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ada.l@example.com"},
                {"op": "Replace", "path": "name.familyName", "value": "King"},
                {"op": "Add", "path": "title", "value": "Countess"},
                {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "Maths"},
                {"op": "Replace", "path": "active", "value": "False"},
            ])),
            &[],
        )
        .await;
    assert_eq!(entra.status, StatusCode::OK, "{:?}", entra.body);
    assert_eq!(entra.body["emails"][0]["value"], "ada.l@example.com");
    assert_eq!(entra.body["name"]["familyName"], "King");
    assert_eq!(entra.body["title"], "Countess");
    assert_eq!(entra.body[ENTERPRISE]["department"], "Maths");
    assert_eq!(entra.body["active"], false);
    let profile = setup.identity.profile(id(&ada)).await;
    assert_eq!(profile.email, "ada.l@example.com");
    assert_eq!(profile.status, pb::ProfileStatus::Suspended as i32);
    // Okta: no path, an object of attributes; reactivation.
    let okta = scim
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "value": {"active": true, "name": {"givenName": "Augusta"}}}])),
            &[],
        )
        .await;
    assert_eq!(okta.status, StatusCode::OK, "{:?}", okta.body);
    assert_eq!(okta.body["active"], true);
    assert_eq!(okta.body["name"]["givenName"], "Augusta");
    // remove clears an optional attribute; a required one cannot go.
    let removed = scim
        .patch(
            &path,
            &patch_op(json!([{"op": "remove", "path": "title"}])),
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert!(removed.body.get("title").is_none());
    let required = scim
        .patch(
            &path,
            &patch_op(json!([{"op": "remove", "path": "name.givenName"}])),
            &[],
        )
        .await;
    assert_eq!(required.status, StatusCode::BAD_REQUEST);
    assert_eq!(required.scim_type(), Some("invalidValue"));
    assert!(
        required.detail().contains("name.givenName"),
        "{}",
        required.detail()
    );
    // One bad operation: none of the request's operations apply.
    let mixed = scim
        .patch(
            &path,
            &patch_op(json!([
                {"op": "replace", "path": "title", "value": "Never"},
                {"op": "replace", "path": "shoeSize", "value": "42"},
            ])),
            &[],
        )
        .await;
    assert_eq!(mixed.status, StatusCode::BAD_REQUEST);
    assert_eq!(mixed.scim_type(), Some("invalidPath"));
    assert_eq!(setup.identity.profile(id(&ada)).await.job_title, "");
    let readonly = scim
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "path": "id", "value": "x"}])),
            &[],
        )
        .await;
    assert_eq!(readonly.scim_type(), Some("mutability"));
}

async fn put_replaces_and_if_match_refuses_a_stale_version(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    let ada = created(scim, &user("ada@example.com", "E-1")).await;
    let path = format!("/Users/{}", id(&ada));
    let first = ada["meta"]["version"].as_str().unwrap().to_owned();
    // PUT replaces: what it leaves out is unset.
    let mut replacement = user("ada@example.com", "E-1");
    replacement.as_object_mut().unwrap().remove("title");
    replacement["name"]["givenName"] = json!("Augusta");
    let put = scim.put(&path, &replacement, &[("if-match", &first)]).await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    assert!(put.body.get("title").is_none());
    assert_eq!(put.body["name"]["givenName"], "Augusta");
    let second = put.body["meta"]["version"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    // The first version is stale now: PATCH, PUT and DELETE are refused, nothing changes.
    let stale = scim
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "path": "title", "value": "Late"}])),
            &[("if-match", &first)],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{:?}",
        stale.body
    );
    let stale_put = scim
        .put(
            &path,
            &user("ada@example.com", "E-1"),
            &[("if-match", &first)],
        )
        .await;
    assert_eq!(stale_put.status, StatusCode::PRECONDITION_FAILED);
    let stale_delete = scim.delete(&path, &[("if-match", &first)]).await;
    assert_eq!(stale_delete.status, StatusCode::PRECONDITION_FAILED);
    let now = scim.get(&path).await;
    assert_eq!(now.body["meta"]["version"], second.as_str());
    assert!(now.body.get("title").is_none());
    // The current version, and `*`, pass.
    let patched = scim
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "path": "title", "value": "Now"}])),
            &[("if-match", &second)],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let deleted = scim.delete(&path, &[("if-match", "*")]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
}

async fn every_scim_change_writes_its_audit_event_with_source_scim(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    let ada = created(scim, &user("ada@example.com", "E-1")).await;
    let path = format!("/Users/{}", id(&ada));
    scim.patch(
        &path,
        &patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
        &[],
    )
    .await;
    scim.patch(
        "/Groups/contact_center_agent",
        &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id(&ada)}]}])),
        &[],
    )
    .await;
    scim.delete(&path, &[]).await;
    // A refused change writes nothing.
    scim.post("/Users", &user("ada@example.com", "E-2")).await;
    let events = setup
        .identity
        .events_through(&setup.account, "roster.profile.deleted")
        .await;
    let profile_events: Vec<_> = events
        .iter()
        .filter(|event| event.subject_id == id(&ada))
        .collect();
    let types: Vec<&str> = profile_events
        .iter()
        .map(|event| event.r#type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "roster.profile.created",
            "roster.profile.suspended",
            "roster.profile.roles_assigned",
            "roster.profile.deleted"
        ]
    );
    for event in profile_events {
        assert_eq!(event.source, "scim", "{}", event.r#type);
        assert_eq!(event.actor, "scim", "{}", event.r#type);
        assert!(event.caller.starts_with("scim-token "), "{}", event.caller);
    }
    let created = &events
        .iter()
        .find(|e| e.r#type == "roster.profile.created")
        .unwrap();
    assert!(
        created
            .changes
            .iter()
            .any(|change| change.field == "external_id"),
        "{:?}",
        created.changes
    );
}

async fn failures_are_scim_error_responses(backend: Backend) {
    let settings = roster_identity::Settings {
        scim_requests_per_second: 1,
        scim_request_burst: 20,
        ..identity_settings()
    };
    let Some(setup) = start(backend, settings).await else {
        return;
    };
    let scim = &setup.scim;
    let bad_filter = scim.get(&filtered(r#"userName eq "unclosed"#)).await;
    assert_eq!(bad_filter.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_filter.scim_type(), Some("invalidFilter"));
    assert!(
        bad_filter.detail().contains("unclosed"),
        "{}",
        bad_filter.detail()
    );
    let unknown = scim.get(&filtered(r#"shoeSize gt "40""#)).await;
    assert_eq!(unknown.scim_type(), Some("invalidFilter"));
    // Names of other characters than ASCII are refused (or, in a body, ignored), never cut
    // inside a character: these ended the connection without an answer.
    for name in ["名前", "abcé", "a😀"] {
        let refused = scim.get(&filtered(&format!("{name} pr"))).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(refused.scim_type(), Some("invalidFilter"), "{name}");
        let projected = scim
            .get(&format!(
                "/Users?attributes={}",
                url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
            ))
            .await;
        assert_ne!(
            projected.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{name}"
        );
    }
    let mut body = user("unicode.keys@example.com", "unicode-keys");
    body["名前"] = json!(1);
    let with_odd_key = scim.post("/Users", &body).await;
    assert_eq!(
        with_odd_key.status,
        StatusCode::CREATED,
        "{:?}",
        with_odd_key.body
    );
    let not_json = scim
        .send_bytes(
            Method::POST,
            "/scim/v2/Users",
            b"{\"userName\": ".to_vec(),
            &[],
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.scim_type(), Some("invalidSyntax"));
    // A body declared larger than the limit is refused before it is read.
    let too_large = oversized(&setup, 300 * 1024).await;
    assert!(too_large.starts_with("HTTP/1.1 413"), "{too_large}");
    assert!(too_large.contains("\"status\":\"413\""), "{too_large}");
    // Every field the profile needs, named as SCIM names it.
    let empty = scim
        .post("/Users", &json!({"userName": "x@example.com"}))
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    for attribute in ["name.givenName", "name.familyName", "emails.value"] {
        assert!(empty.detail().contains(attribute), "{}", empty.detail());
    }
    // Oversized values are refused before any Unicode work, with what was wrong.
    let long = scim
        .post("/Users", &user(&"\u{FDFA}".repeat(5000), "E-1"))
        .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST, "{:?}", long.body);
    let nowhere = scim.get("/nowhere").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.body["status"], "404");
    let password = scim
        .post(
            "/Users",
            &json!({"userName": "p@example.com", "password": "hunter2"}),
        )
        .await;
    assert_eq!(password.scim_type(), Some("mutability"));
    // The token's rate: the burst passes, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..40 {
        let answer = scim.get("/Users?count=0").await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the burst runs out");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(limited.body["status"], "429");
    // Discovery says what works.
    let config = scim.get("/ServiceProviderConfig").await;
    assert_eq!(config.status, StatusCode::OK);
    assert_eq!(config.body["patch"]["supported"], true);
    assert_eq!(config.body["bulk"]["supported"], false);
    assert_eq!(config.body["changePassword"]["supported"], false);
    assert_eq!(config.body["sort"]["supported"], false);
    assert_eq!(config.body["etag"]["supported"], true);
    assert_eq!(config.body["filter"]["maxResults"], 1000);
    let schemas = scim.get("/Schemas").await;
    let ids: Vec<&str> = schemas.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|schema| schema["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"urn:roster:params:scim:schemas:extension:roster:2.0:User"));
    let types = scim.get("/ResourceTypes").await;
    assert_eq!(types.body["totalResults"], 2);
}

async fn groups_are_roles_and_their_members_change_together(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    let ada = created(scim, &user("ada@example.com", "E-1")).await;
    let bob = created(scim, &user("bob@example.com", "E-2")).await;
    let groups = scim.get("/Groups?excludedAttributes=members").await;
    assert_eq!(groups.body["totalResults"], 4);
    let agents = scim
        .get(&format!(
            "/Groups?filter={}",
            url::form_urlencoded::byte_serialize(br#"displayName eq "Contact-center agents""#)
                .collect::<String>()
        ))
        .await;
    assert_eq!(agents.body["totalResults"], 1, "{:?}", agents.body);
    let group = "/Groups/contact_center_agent";
    let added = scim
        .patch(
            group,
            &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id(&ada)}, {"value": id(&bob)}]}])),
            &[],
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{:?}", added.body);
    assert_eq!(added.body["members"].as_array().unwrap().len(), 2);
    assert_eq!(
        setup.identity.profile(id(&ada)).await.roles,
        [pb::Role::ContactCenterAgent as i32]
    );
    let user_view = scim.get(&format!("/Users/{}", id(&bob))).await;
    assert_eq!(user_view.body["groups"][0]["value"], "contact_center_agent");
    // Entra ID's removal.
    let removed = scim
        .patch(
            group,
            &patch_op(
                json!([{"op": "Remove", "path": format!("members[value eq \"{}\"]", id(&ada))}]),
            ),
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert!(setup.identity.profile(id(&ada)).await.roles.is_empty());
    // One unknown member: nobody changes.
    let nobody = uuid::Uuid::now_v7().to_string();
    let partial = scim
        .patch(
            group,
            &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id(&ada)}, {"value": nobody}]}])),
            &[],
        )
        .await;
    assert_eq!(partial.status, StatusCode::BAD_REQUEST);
    assert!(setup.identity.profile(id(&ada)).await.roles.is_empty());
    // Roles are fixed.
    let create = scim
        .post("/Groups", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "New"}))
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    assert!(create.detail().contains("fixed"), "{}", create.detail());
    let rename = scim
        .patch(
            group,
            &patch_op(json!([{"op": "replace", "path": "displayName", "value": "Agents"}])),
            &[],
        )
        .await;
    assert_eq!(rename.scim_type(), Some("mutability"));
    assert_eq!(scim.delete(group, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        scim.get("/Groups/no_such_role").await.status,
        StatusCode::NOT_FOUND
    );
}

/// The raw answer to a POST /Users whose headers declare `length` bytes, of which only the
/// first kilobyte is sent.
async fn oversized(setup: &Setup, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = setup.server.scim_addr.unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {length}\r\n\r\n",
        setup.scim_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 1024]).await.unwrap();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer before the body is sent")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

async fn a_returning_employee_is_the_same_person(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    let mut body = user("ada@example.com", "E-1815");
    body["urn:roster:params:scim:schemas:extension:roster:2.0:User"] =
        json!({"roles": ["standard_user"]});
    let ada = created(scim, &body).await;
    scim.delete(&format!("/Users/{}", id(&ada)), &[]).await;
    // Another external id, or none: the username stays retired.
    let stranger = scim
        .post("/Users", &user("ada@example.com", "E-9999"))
        .await;
    assert_eq!(stranger.status, StatusCode::CONFLICT, "{:?}", stranger.body);
    let mut anonymous = user("ada@example.com", "");
    anonymous.as_object_mut().unwrap().remove("externalId");
    assert_eq!(
        scim.post("/Users", &anonymous).await.status,
        StatusCode::CONFLICT
    );
    // Another account with the same external id: refused too.
    let other = setup.identity.account("Other").await;
    let other_secret = token(&setup.identity, &other.id).await.1;
    let other_scim = scim.with_token(Some(&other_secret));
    assert_eq!(
        other_scim
            .post("/Users", &user("ada@example.com", "E-1815"))
            .await
            .status,
        StatusCode::CONFLICT
    );
    // The same person comes back: same id, same username, roles as they were, new title.
    let mut returning = user("Ada@Example.com", "E-1815");
    returning["title"] = json!("Chief Analyst");
    let back = scim.post("/Users", &returning).await;
    assert_eq!(back.status, StatusCode::CREATED, "{:?}", back.body);
    assert_eq!(back.body["id"], ada["id"]);
    assert_eq!(back.body["title"], "Chief Analyst");
    assert_eq!(back.body["active"], true);
    let profile = setup.identity.profile(id(&ada)).await;
    assert_eq!(profile.status, pb::ProfileStatus::Active as i32);
    assert_eq!(profile.roles, [pb::Role::StandardUser as i32]);
    let restored = |events: &[pb::Event]| {
        events
            .iter()
            .any(|event| event.r#type == "roster.profile.restored" && event.subject_id == id(&ada))
    };
    let events = setup
        .identity
        .events_once(&setup.account, "the returning employee's restore", restored)
        .await;
    assert!(
        restored(&events),
        "{:?}",
        events.iter().map(|event| &event.r#type).collect::<Vec<_>>()
    );
    // Restored once: a second POST is a plain conflict with the live profile.
    let twice = scim.post("/Users", &returning).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert!(
        twice.detail().contains("used by another user"),
        "{}",
        twice.detail()
    );
}

async fn outside_the_restore_window_a_username_stays_retired(backend: Backend) {
    let settings = roster_identity::Settings {
        profile_restore_days: 0,
        ..identity_settings()
    };
    let Some(setup) = start(backend, settings).await else {
        return;
    };
    let scim = &setup.scim;
    let ada = created(scim, &user("ada@example.com", "E-1815")).await;
    scim.delete(&format!("/Users/{}", id(&ada)), &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let late = scim
        .post("/Users", &user("ada@example.com", "E-1815"))
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{:?}", late.body);
    assert!(
        late.detail().contains("was used before"),
        "{}",
        late.detail()
    );
}

async fn a_token_that_sends_welcome_emails_sends_one_per_new_user(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let welcoming = setup
        .identity
        .create_scim_token(pb::CreateScimTokenRequest {
            account_id: setup.account.clone(),
            display_name: "Okta".into(),
            send_welcome_emails: true,
            ..Default::default()
        })
        .await
        .expect("CreateScimToken")
        .secret;
    created(&setup.scim, &user("quiet@example.com", "E-1")).await;
    assert!(
        roster_tests::outbox_emails(&setup.server).await.is_empty(),
        "a token without welcome emails sends none"
    );
    let welcomed = setup.scim.with_token(Some(&welcoming));
    created(&welcomed, &user("ada@example.com", "E-2")).await;
    let emails = roster_tests::outbox_emails(&setup.server).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(
        emails[0].to_string().contains("ada@example.com"),
        "{:?}",
        emails[0]
    );
}

/// The rate limit bounds how many requests a token starts, not how long each lasts: requests
/// that trickle their bodies hold their places until the body is whole. One account may hold
/// a quarter of the endpoint's places at once; its next request is answered 429 at once, and
/// every other account's requests still find room.
async fn one_accounts_slow_requests_leave_room_for_every_other_account(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let addr = setup.server.scim_addr.unwrap();
    // Sixty-four uploads of A, each declaring 200,000 bytes and sending a kilobyte.
    let mut slow = Vec::new();
    let mut refused = 0;
    for _ in 0..64 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: 200000\r\n\r\n",
            setup.scim_token
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b' '; 1024]).await.unwrap();
        // Answered at once (refused), or still waiting for its body.
        let mut answer = vec![0; 4096];
        match tokio::time::timeout(
            std::time::Duration::from_millis(300),
            stream.read(&mut answer),
        )
        .await
        {
            Ok(read) => {
                let answer = String::from_utf8_lossy(&answer[..read.unwrap()]).into_owned();
                assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
                assert!(answer.contains("at once"), "{answer}");
                refused += 1;
            }
            Err(_) => slow.push(stream),
        }
    }
    assert_eq!(slow.len(), 16, "a quarter of the 64 places");
    assert_eq!(refused, 48);

    // Account B is served while A's uploads wait.
    let other = setup.identity.account("Globex").await.id;
    let b = Scim::new(addr, &token(&setup.identity, &other).await.1);
    let started = std::time::Instant::now();
    let list = b.get("/Users").await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // A's own quick requests wait for its places, as its uploads hold them all.
    let own = setup.scim.get("/Users").await;
    assert_eq!(own.status, StatusCode::TOO_MANY_REQUESTS);

    // Once A's uploads end (here: dropped), its places are free again.
    drop(slow);
    let mut served = false;
    for _ in 0..50 {
        if setup.scim.get("/Users").await.status == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(served, "A's places came back");
}

/// A PUT replaces what it names; one that leaves `active` out keeps the user's status, as one
/// that leaves Roster's extension out keeps the roles. A suspended user stays suspended.
async fn a_put_that_leaves_active_out_keeps_the_users_status(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    let ada = created(scim, &user("ada@example.com", "E-1")).await;
    let path = format!("/Users/{}", id(&ada));
    let suspended = scim
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
            &[],
        )
        .await;
    assert_eq!(suspended.body["active"], false, "{:?}", suspended.body);
    let mut body = user("ada@example.com", "E-1");
    body.as_object_mut().unwrap().remove("active");
    body["title"] = json!("Engineer");
    let replaced = scim.put(&path, &body, &[]).await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.body);
    assert_eq!(replaced.body["title"], "Engineer");
    assert_eq!(replaced.body["active"], false, "{:?}", replaced.body);
    assert_eq!(
        setup.identity.profile(id(&ada)).await.status,
        pb::ProfileStatus::Suspended as i32
    );
    // Named, it is written.
    body["active"] = json!(true);
    let reactivated = scim.put(&path, &body, &[]).await;
    assert_eq!(reactivated.body["active"], true, "{:?}", reactivated.body);
}

/// RFC 7644 §3.5.2: a PATCH's operations apply in order, each to what the one before left.
/// And removing a user who is no member — deleted since, or never one — changes nothing and
/// refuses nothing: a deleted user is never listed among the members, so a client cannot
/// know to leave it out.
async fn a_group_patch_applies_its_operations_in_order(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let scim = &setup.scim;
    let group = "/Groups/contact_center_agent";
    let ada = created(scim, &user("ada@example.com", "E-1")).await;
    let bob = created(scim, &user("bob@example.com", "E-2")).await;
    let cyd = created(scim, &user("cyd@example.com", "E-3")).await;
    let members = |answer: &Answer| -> Vec<String> {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        let mut ids: Vec<String> = answer.body["members"]
            .as_array()
            .map(|members| {
                members
                    .iter()
                    .map(|member| member["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let sorted = |ids: &[&Value]| -> Vec<String> {
        let mut ids: Vec<String> = ids.iter().map(|user| id(user).to_owned()).collect();
        ids.sort();
        ids
    };
    // Removed, then added back: a member.
    let answer = scim
        .patch(
            group,
            &patch_op(json!([
                {"op": "remove", "path": format!("members[value eq \"{}\"]", id(&ada))},
                {"op": "add", "path": "members", "value": [{"value": id(&ada)}]},
            ])),
            &[],
        )
        .await;
    assert_eq!(members(&answer), sorted(&[&ada]));
    // Added, then every member replaced: only the replacement.
    let answer = scim
        .patch(
            group,
            &patch_op(json!([
                {"op": "add", "path": "members", "value": [{"value": id(&bob)}]},
                {"op": "replace", "path": "members", "value": [{"value": id(&cyd)}]},
            ])),
            &[],
        )
        .await;
    assert_eq!(members(&answer), sorted(&[&cyd]));
    // Replaced, then one added and one removed on top of the replacement.
    let answer = scim
        .patch(
            group,
            &patch_op(json!([
                {"op": "replace", "path": "members", "value": [{"value": id(&ada)}, {"value": id(&bob)}]},
                {"op": "remove", "path": format!("members[value eq \"{}\"]", id(&ada))},
                {"op": "add", "path": "members", "value": [{"value": id(&cyd)}]},
            ])),
            &[],
        )
        .await;
    assert_eq!(members(&answer), sorted(&[&bob, &cyd]));
    assert!(setup.identity.profile(id(&ada)).await.roles.is_empty());

    // Bob is deleted; the next sync removes him and adds Ada.
    assert_eq!(
        scim.delete(&format!("/Users/{}", id(&bob)), &[])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let nobody = uuid::Uuid::now_v7().to_string();
    let answer = scim
        .patch(
            group,
            &patch_op(json!([
                {"op": "remove", "path": format!("members[value eq \"{}\"]", id(&bob))},
                {"op": "remove", "path": format!("members[value eq \"{nobody}\"]")},
                {"op": "add", "path": "members", "value": [{"value": id(&ada)}]},
            ])),
            &[],
        )
        .await;
    assert_eq!(members(&answer), sorted(&[&ada, &cyd]));
    // Adding a deleted user is still refused, and changes nothing.
    let answer = scim
        .patch(
            group,
            &patch_op(json!([
                {"op": "remove", "path": format!("members[value eq \"{}\"]", id(&cyd))},
                {"op": "add", "path": "members", "value": [{"value": id(&bob)}]},
            ])),
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);
    assert_eq!(
        setup.identity.profile(id(&cyd)).await.roles,
        [pb::Role::ContactCenterAgent as i32]
    );
}

/// Without If-Match a client asks for its change on whatever version is current: sixteen
/// PATCHes of one user at once (as many as one account may have served at once), each a
/// different title, all answer 200 (a change that lost a race is read again and applied), and
/// the user ends with one of them.
/// Three attempts were not enough: several answered 412, naming an If-Match never sent.
async fn concurrent_changes_without_if_match_all_go_through(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let ada = created(&setup.scim, &user("ada@example.com", "E-1")).await;
    let path = format!("/Users/{}", id(&ada));
    let titles: Vec<String> = (0..16).map(|n| format!("Title {n}")).collect();
    let answers = futures::future::join_all(titles.iter().map(|title| {
        let scim = setup.scim.clone();
        let path = path.clone();
        let body = patch_op(json!([{"op": "replace", "path": "title", "value": title}]));
        async move { scim.patch(&path, &body, &[]).await }
    }))
    .await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    let now = setup.scim.get(&path).await;
    assert!(
        titles.contains(&now.body["title"].as_str().unwrap().to_owned()),
        "{:?}",
        now.body
    );
}

/// PUTs of one group's members sent at once, with two different lists, leave the group with
/// one of the lists, never their union (each replacement reads the members it replaces in its
/// own transaction, under the group's lock); every PUT is answered 200.
async fn replacements_of_a_group_at_once_end_as_one_of_them(backend: Backend) {
    let Some(setup) = start(backend, identity_settings()).await else {
        return;
    };
    let mut ids = Vec::new();
    for n in 0..8 {
        let user = created(
            &setup.scim,
            &user(&format!("u{n}@example.com"), &format!("E-{n}")),
        )
        .await;
        ids.push(id(&user).to_owned());
    }
    let (north, south) = ids.split_at(4);
    let group = "/Groups/contact_center_agent";
    let body = |members: &[String]| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "members": members.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
        })
    };
    let listed = |answer: &Value| -> Vec<String> {
        let mut members: Vec<String> = answer["members"]
            .as_array()
            .map(|members| {
                members
                    .iter()
                    .map(|member| member["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        members.sort();
        members
    };
    let (mut north_sorted, mut south_sorted) = (north.to_vec(), south.to_vec());
    north_sorted.sort();
    south_sorted.sort();
    for round in 0..6 {
        // Each round starts from nobody, so that both lists add what they name.
        let emptied = setup.scim.put(group, &body(&[]), &[]).await;
        assert_eq!(emptied.status, StatusCode::OK, "{:?}", emptied.body);
        let answers = futures::future::join_all((0..8).map(|n| {
            let scim = setup.scim.clone();
            let body = body(if n % 2 == 0 { north } else { south });
            async move { scim.put(group, &body, &[]).await }
        }))
        .await;
        for answer in &answers {
            assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        }
        let now = listed(&setup.scim.get(group).await.body);
        assert!(
            now == north_sorted || now == south_sorted,
            "round {round}: the group holds {} members, not one of the two lists of 4",
            now.len()
        );
        // What the users show agrees with the group.
        let holders = futures::future::join_all(ids.iter().map(|id| setup.identity.profile(id)))
            .await
            .into_iter()
            .filter(|profile| profile.roles == [pb::Role::ContactCenterAgent as i32])
            .count();
        assert_eq!(holders, 4, "round {round}");
    }
}

/// Sixteen replacements of one account's group at once (as many as one account may have in
/// flight, and as many connections as the pool has by default) take turns without holding a
/// database connection while they wait: none waits on the database's lock, and another
/// account's request is answered meanwhile.
async fn replacements_of_one_group_wait_without_holding_connections(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let database = Arc::new(database);
    let mut common = test_settings(Service::Identity, &database.url);
    common.db_max_connections = 16;
    let server = TestServer::start_with(
        Service::Identity,
        common,
        identity_settings(),
        database.clone(),
        Vec::new(),
    )
    .await;
    let identity = Identity::connect(&server).await;
    let a = identity.account("Acme").await.id;
    let b = identity.account("Globex").await.id;
    let scim_addr = server.scim_addr.expect("SCIM is on");
    let scim_a = Scim::new(scim_addr, &token(&identity, &a).await.1);
    let scim_b = Scim::new(scim_addr, &token(&identity, &b).await.1);
    let ids: Vec<String> = identity
        .batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
            account_id: a.clone(),
            items: (0..600)
                .map(|n| pb::ProfileUpsert {
                    idempotency_key: format!("m{n}"),
                    first_name: "Member".into(),
                    last_name: format!("Number {n}"),
                    email: format!("member{n}@example.com"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .results
        .into_iter()
        .map(|result| result.profile.expect("created").id)
        .collect();
    let (north, south) = ids.split_at(300);
    let body = |members: &[String]| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "members": members.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
        })
    };
    let puts: Vec<_> = (0..16)
        .map(|n| {
            let scim = scim_a.clone();
            let body = body(if n % 2 == 0 { north } else { south });
            tokio::spawn(async move { scim.put("/Groups/contact_center_agent", &body, &[]).await })
        })
        .collect();
    // While they run: who waits on the database's lock (PostgreSQL), and B is served.
    let mut most_waiting = 0;
    let admin = match backend {
        Backend::Postgres => Some(
            sea_orm::Database::connect(&database.url)
                .await
                .expect("the database opens"),
        ),
        Backend::Sqlite => None,
    };
    let started = std::time::Instant::now();
    while puts.iter().any(|put| !put.is_finished()) {
        if let Some(admin) = &admin {
            use sea_orm::ConnectionTrait;
            let row = admin
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT count(*) AS waiting FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event = 'advisory'",
                ))
                .await
                .unwrap()
                .unwrap();
            most_waiting = most_waiting.max(row.try_get::<i64>("", "waiting").unwrap());
        }
        let listed = scim_b.get("/Users").await;
        assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
        assert!(started.elapsed() < std::time::Duration::from_secs(120));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for put in puts {
        let answer = put.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    assert_eq!(
        most_waiting, 0,
        "replacements waited on the database's lock, each holding a connection"
    );
}
