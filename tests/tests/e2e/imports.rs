//! Bulk import over gRPC, identity and bulk-import both running on real sockets, on SQLite and
//! PostgreSQL: the admin's whole flow (template → edit → upload → preview → submit → progress →
//! report), what changes between preview and submit, cancel and expiry, tenant isolation, and
//! two replicas sharing one job.

use std::time::Duration;

use roster_bulk_import::store::entities::outcome;
use roster_proto::identity::v1 as id;
use roster_proto::imports::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::Imports;
use roster_tests::imports::{parse_csv, people_csv};
use roster_tests::{ADMIN_KEY, Backend, ImportSuite, TestKey, both_backends, reason};
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter, QuerySelect};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

async fn create_profile(
    suite: &ImportSuite,
    account_id: &str,
    first: &str,
    email: &str,
    username: &str,
    job_title: &str,
) -> id::Profile {
    suite
        .identity_client()
        .await
        .create_profile(id::CreateProfileRequest {
            account_id: account_id.to_owned(),
            first_name: first.to_owned(),
            last_name: "Original".to_owned(),
            email: email.to_owned(),
            username: username.to_owned(),
            job_title: job_title.to_owned(),
            ..Default::default()
        })
        .await
        .expect("profile created")
        .profile
        .expect("profile")
}

fn by_row(rows: &[pb::ImportRow], row_number: i64) -> &pb::ImportRow {
    rows.iter()
        .find(|row| row.row_number == row_number)
        .unwrap_or_else(|| panic!("row {row_number} missing from {rows:#?}"))
}

fn reasons(row: &pb::ImportRow) -> Vec<(&str, &str)> {
    row.errors
        .iter()
        .map(|error| (error.column.as_str(), error.reason.as_str()))
        .collect()
}

async fn the_whole_flow_from_template_to_report(backend: Backend) {
    whole_flow(backend, 1000).await
}

/// The whole flow with the file validated two rows at a time: five batches staged at once and
/// in any order, the repeated usernames of rows 5 and 6 in different batches.
async fn the_whole_flow_in_batches_of_two_rows(backend: Backend) {
    whole_flow(backend, 2).await
}

async fn whole_flow(backend: Backend, validate_batch_size: usize) {
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| settings.validate_batch_size = validate_batch_size,
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Acme").await;
    let other = suite.account("Elsewhere").await;
    let ada = create_profile(&suite, &account, "Ada", "ada@example.com", "ada", "Analyst").await;
    let bob = create_profile(&suite, &account, "Bob", "bob@example.com", "bob", "").await;
    create_profile(&suite, &other, "Taken", "t@example.com", "taken.name", "").await;
    let foreign = create_profile(&suite, &other, "Foreign", "f@example.com", "foreign", "").await;
    let imports = suite.import_client().await;

    let template = imports.template(&account).await;
    assert!(template.starts_with(b"\xEF\xBB\xBFInternal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone,Extensions,Roles\r\n"));
    let rows = parse_csv(&template);
    assert_eq!(rows.len(), 3, "header and one row per profile: {rows:?}");
    assert!(
        rows.iter()
            .any(|row| row[0] == ada.id && row[5] == "Analyst")
    );

    // The admin edits the template: Ada changes, Bob stays, and new rows come in.
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone\r\n\
             {ada},Ada,King ,ada@example.com,ada,Analyst,,,\r\n\
             {bob},Bob,Original,bob@example.com,bob,,,,\r\n\
             ,Cleo,New,cleo@example.com,,,Sales,fr-FR,Europe/Paris\r\n\
             ,Dup,One,dup1@example.com,twin,,,,\r\n\
             ,Dup,Two,dup2@example.com,TWIN,,,,\r\n\
             ,Tess,Taken,tess@example.com,taken.name,,,,\r\n\
             ,,Nameless,not-an-email,,,,,\r\n\
             {foreign},Foreign,Original,f@example.com,foreign,,,,\r\n\
             00000000-0000-7000-8000-000000000000,Ghost,Original,g@example.com,,,,,\r\n",
        ada = ada.id,
        bob = bob.id,
        foreign = foreign.id,
    );
    let created = imports
        .import_csv(&account, file.into_bytes())
        .await
        .unwrap();
    assert_eq!(
        created.state,
        pb::ImportState::Validating as i32,
        "{created:?}"
    );
    let validated = imports
        .wait_for_state(&created.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(
        (
            validated.total_row_count,
            validated.create_count,
            validated.update_count,
            validated.unchanged_count,
            validated.error_count
        ),
        (9, 1, 1, 1, 6),
        "{validated:?}"
    );
    assert!(validated.expire_time.is_some());

    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;
    let update = by_row(&rows, 2);
    assert_eq!(update.action, pb::ImportRowAction::Update as i32);
    assert_eq!(update.profile_id, ada.id);
    assert_eq!(update.changes.len(), 1, "{update:?}");
    assert_eq!(
        (
            update.changes[0].column.as_str(),
            update.changes[0].old_value.as_str(),
            update.changes[0].new_value.as_str()
        ),
        ("Last Name", "Original", "King")
    );
    assert_eq!(update.notes[0].reason, "WHITESPACE_TRIMMED");
    assert_eq!(update.notes[0].column, "Last Name");
    assert_eq!(update.values["Last Name"], "King");
    assert_eq!(
        by_row(&rows, 3).action,
        pb::ImportRowAction::Unchanged as i32
    );
    assert_eq!(by_row(&rows, 4).action, pb::ImportRowAction::Create as i32);
    let first_twin = by_row(&rows, 5);
    assert_eq!(reasons(first_twin), vec![("Username", "DUPLICATE_IN_FILE")]);
    assert_eq!(first_twin.errors[0].message, "row 6 has the same username");
    assert_eq!(
        by_row(&rows, 6).errors[0].message,
        "row 5 has the same username"
    );
    let taken = by_row(&rows, 7);
    assert_eq!(reasons(taken), vec![("Username", "USERNAME_TAKEN")]);
    assert!(
        taken.errors[0].message.contains("in use on the platform"),
        "{taken:?}"
    );
    assert!(!taken.errors[0].message.contains("Elsewhere"));
    let invalid = reasons(by_row(&rows, 8));
    assert!(invalid.contains(&("First Name", "REQUIRED")), "{invalid:?}");
    assert!(
        invalid.contains(&("Email Address", "INVALID_EMAIL")),
        "{invalid:?}"
    );
    let foreign_row = by_row(&rows, 9);
    let ghost_row = by_row(&rows, 10);
    assert_eq!(
        reasons(foreign_row)[0],
        ("Internal ID", "INTERNAL_ID_UNKNOWN")
    );
    assert_eq!(
        reasons(ghost_row),
        vec![("Internal ID", "INTERNAL_ID_UNKNOWN")]
    );
    assert_eq!(
        foreign_row.errors[0].message.replace(&foreign.id, "<id>"),
        ghost_row.errors[0]
            .message
            .replace("00000000-0000-7000-8000-000000000000", "<id>"),
        "one identical message whether the id is another account's or unknown"
    );
    assert!(foreign_row.profile_id.is_empty());
    let errors = imports
        .all_rows(&created.id, pb::ImportRowFilter::Errors)
        .await;
    assert_eq!(errors.len(), 6);
    let creates = imports
        .all_rows(&created.id, pb::ImportRowFilter::Creates)
        .await;
    assert_eq!(
        creates.iter().map(|r| r.row_number).collect::<Vec<_>>(),
        vec![4]
    );

    let preview = parse_csv(&imports.report(&created.id).await.unwrap());
    assert_eq!(preview[0].last().map(String::as_str), Some("Error"));
    assert_eq!(preview[3][9], "Create");

    let submitted = imports
        .submit_import(pb::SubmitImportRequest {
            import_id: created.id.clone(),
            request_id: "submit-1".into(),
            send_welcome_emails: false,
        })
        .await
        .unwrap()
        .import
        .unwrap();
    assert_eq!(submitted.state, pb::ImportState::Applying as i32);
    assert!(submitted.expire_time.is_none());
    let again = imports
        .submit_import(pb::SubmitImportRequest {
            import_id: created.id.clone(),
            request_id: "submit-1".into(),
            send_welcome_emails: false,
        })
        .await
        .expect("a repeated request id returns the import");
    assert_eq!(again.import.unwrap().id, created.id);
    // The same id asking for welcome emails is another request: refused, nothing changes.
    let other = imports
        .submit_import(pb::SubmitImportRequest {
            import_id: created.id.clone(),
            request_id: "submit-1".into(),
            send_welcome_emails: true,
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument, "{other:?}");
    assert_eq!(roster_tests::violated_fields(&other), ["request_id"]);

    let mut watch = imports
        .watch_import(pb::WatchImportRequest {
            import_id: created.id.clone(),
        })
        .await
        .unwrap();
    let mut last = None;
    while let Some(progress) = watch.message().await.unwrap() {
        last = Some(progress);
    }
    let last = last.expect("progress messages");
    let done = last.import.clone().unwrap();
    assert_eq!(
        done.state,
        pb::ImportState::CompletedWithErrors as i32,
        "{done:?}"
    );
    assert_eq!((done.applied_count, done.failed_count), (2, 0));
    assert_eq!((last.rows_processed, last.rows_total), (2, 2));

    let profiles = suite.identity_client().await.all_profiles(&account).await;
    assert_eq!(profiles.len(), 3);
    let cleo = profiles
        .iter()
        .find(|p| p.email == "cleo@example.com")
        .expect("created");
    assert_eq!(
        (
            cleo.department.as_str(),
            cleo.locale.as_str(),
            cleo.time_zone.as_str()
        ),
        ("Sales", "fr-FR", "Europe/Paris")
    );
    assert_eq!(
        profiles.iter().find(|p| p.id == ada.id).unwrap().last_name,
        "King"
    );

    let report = parse_csv(&imports.report(&created.id).await.unwrap());
    assert_eq!(report.len(), 10, "header and every row: {report:?}");
    assert_eq!(
        report[0],
        vec![
            "Internal ID",
            "First Name",
            "Last Name",
            "Email Address",
            "Username",
            "Job Title",
            "Department",
            "Locale",
            "Time Zone",
            "Status",
            "Error"
        ]
    );
    assert_eq!(report[1][9], "Updated");
    assert_eq!(report[2][9], "Unchanged");
    assert_eq!(
        (report[3][0].as_str(), report[3][9].as_str()),
        (cleo.id.as_str(), "Created")
    );
    assert_eq!(report[6][9], "Error");
    assert!(report[6][10].starts_with("Username: "), "{:?}", report[6]);

    let listed = imports
        .list_imports(pb::ListImportsRequest {
            account_id: account.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.imports.len(), 1);
    assert_eq!(listed.imports[0].id, created.id);
}

async fn a_username_taken_after_preview_fails_alone(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let other = suite.account("Other").await;
    let imports = suite.import_client().await;
    let created = imports
        .validated_csv(&account, people_csv("late", 3), WAIT)
        .await;
    // Someone elsewhere on the platform takes row 3's username before the submit.
    create_profile(&suite, &other, "Quick", "late1@example.com", "", "").await;
    imports.submit(&created.id, false).await;
    let done = imports
        .wait_for_state(&created.id, &[pb::ImportState::CompletedWithErrors], WAIT)
        .await;
    assert_eq!((done.applied_count, done.failed_count), (2, 1), "{done:?}");
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;
    let failed = by_row(&rows, 3);
    assert_eq!(failed.outcome, pb::ImportRowOutcome::Failed as i32);
    assert!(
        failed
            .outcome_message
            .starts_with("ALREADY_EXISTS (USERNAME_TAKEN)"),
        "{failed:?}"
    );
    assert_eq!(
        by_row(&rows, 2).outcome,
        pb::ImportRowOutcome::Applied as i32
    );
    let report = parse_csv(&imports.report(&created.id).await.unwrap());
    assert_eq!(report[2][9], "Failed");
    assert!(report[2][10].contains("ALREADY_EXISTS"), "{:?}", report[2]);
    assert!(
        report[2][0].is_empty(),
        "no Internal ID for a row that created nothing"
    );
    assert_eq!(
        suite
            .identity_client()
            .await
            .all_profiles(&account)
            .await
            .len(),
        2
    );
}

/// Ada (an engineer) in a new account, and a validated file of some of the template's columns
/// that changes her first name alone; the preview shows that one change.
async fn a_file_changing_adas_first_name(
    suite: &ImportSuite,
) -> (Imports, id::Profile, pb::Import) {
    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    let ada = create_profile(suite, &account, "Ada", "ada@example.com", "", "Engineer").await;
    // The profile as the template gave it, with the first name edited.
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address,Job Title\r\n\
         {},Adele,Original,ada@example.com,Engineer\r\n",
        ada.id
    );
    let created = imports
        .validated_csv(&account, file.into_bytes(), WAIT)
        .await;
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;
    let previewed = by_row(&rows, 2);
    assert_eq!(previewed.action, pb::ImportRowAction::Update as i32);
    let changed: Vec<&str> = previewed
        .changes
        .iter()
        .map(|change| change.column.as_str())
        .collect();
    assert_eq!(changed, ["First Name"]);
    (imports, ada, created)
}

/// Changes the named fields of profile `id` over gRPC, as the console or another caller would.
async fn change_elsewhere(suite: &ImportSuite, id: &str, fields: &[(&str, &str)]) {
    let mut profile = id::Profile {
        id: id.to_owned(),
        ..Default::default()
    };
    for (path, value) in fields {
        let slot = match *path {
            "first_name" => &mut profile.first_name,
            "last_name" => &mut profile.last_name,
            "job_title" => &mut profile.job_title,
            other => panic!("no field {other} here"),
        };
        *slot = (*value).to_owned();
    }
    suite
        .identity_client()
        .await
        .update_profile(id::UpdateProfileRequest {
            profile: Some(profile),
            update_mask: Some(prost_types::FieldMask {
                paths: fields.iter().map(|(path, _)| (*path).to_owned()).collect(),
            }),
            request_id: String::new(),
        })
        .await
        .expect("changed elsewhere");
}

/// The import ended COMPLETED with Ada's first name from the file, and the job title and last
/// name as they were changed elsewhere.
async fn only_the_first_name_came_from_the_file(
    suite: &ImportSuite,
    imports: &Imports,
    ada: &id::Profile,
    import: &pb::Import,
) {
    let done = imports
        .wait_for_state(&import.id, &[pb::ImportState::Completed], WAIT)
        .await;
    assert_eq!(done.applied_count, 1, "{done:?}");
    let after = suite.identity_client().await.profile(&ada.id).await;
    assert_eq!(after.first_name, "Adele", "the file's change, as previewed");
    assert_eq!(
        (after.job_title.as_str(), after.last_name.as_str()),
        ("Principal", "Renamed"),
        "kept: the file did not change them"
    );
    assert_eq!(after.email, "ada@example.com");
}

/// The file changes one field of a profile; between the preview and the submit, someone
/// changes two others elsewhere. The apply writes what the preview showed — the first name —
/// and leaves the other fields as they are now instead of putting the file's old values back.
async fn changes_made_after_the_preview_to_fields_the_file_leaves_alone_stand(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let (imports, ada, created) = a_file_changing_adas_first_name(&suite).await;
    let elsewhere = [("job_title", "Principal"), ("last_name", "Renamed")];
    change_elsewhere(&suite, &ada.id, &elsewhere).await;
    imports.submit(&created.id, false).await;
    only_the_first_name_came_from_the_file(&suite, &imports, &ada, &created).await;
}

/// The file's change made elsewhere between the preview and the submit: identity has nothing
/// to write, and the row says so — outcome UNCHANGED, report Status "Unchanged" — instead of
/// claiming an update; the import still completes with the row counted as applied.
async fn a_change_made_elsewhere_since_the_preview_is_reported_unchanged(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let (imports, ada, created) = a_file_changing_adas_first_name(&suite).await;
    change_elsewhere(&suite, &ada.id, &[("first_name", "Adele")]).await;
    let before = suite.identity_client().await.profile(&ada.id).await;
    imports.submit(&created.id, false).await;
    let done = imports
        .wait_for_state(&created.id, &[pb::ImportState::Completed], WAIT)
        .await;
    assert_eq!((done.applied_count, done.failed_count), (1, 0), "{done:?}");
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;
    let row = by_row(&rows, 2);
    assert_eq!(
        (row.outcome, row.outcome_message.as_str()),
        (pb::ImportRowOutcome::Unchanged as i32, ""),
        "{row:?}"
    );
    let report = String::from_utf8(imports.report(&created.id).await.unwrap()).unwrap();
    let line = report
        .lines()
        .find(|line| line.contains(&ada.id))
        .expect("Ada's row in the report");
    assert!(line.ends_with(",Unchanged,"), "{report}");
    let after = suite.identity_client().await.profile(&ada.id).await;
    assert_eq!(after.etag, before.etag, "nothing was written");
}

/// The same, in the seconds between the apply's read of the profiles and identity's write:
/// a field changed there stands too (identity writes the previewed columns alone), and a
/// column the file changes gets the file's value, as the preview said.
async fn changes_made_while_the_apply_writes_to_fields_the_file_leaves_alone_stand(
    backend: Backend,
) {
    let pause = roster_bulk_import::jobs::ApplyPause::on();
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| settings.apply_pause = pause.clone(),
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let (imports, ada, created) = a_file_changing_adas_first_name(&suite).await;
    imports.submit(&created.id, false).await;
    // The apply has read the profile, and waits before it sends the row.
    pause.arrived().await;
    let elsewhere = [
        ("first_name", "Adelaide"),
        ("job_title", "Principal"),
        ("last_name", "Renamed"),
    ];
    change_elsewhere(&suite, &ada.id, &elsewhere).await;
    pause.go_on();
    only_the_first_name_came_from_the_file(&suite, &imports, &ada, &created).await;
}

/// A bulk-import of the test's own (with `pause`, windows of two row numbers, one batch at a
/// time) that calls the suite's identity through a proxy the test can take down.
async fn behind_a_proxy(
    suite: &ImportSuite,
    backend: Backend,
    pause: roster_bulk_import::jobs::ApplyPause,
) -> Option<(roster_tests::proxy::Proxy, roster_tests::TestServer)> {
    let proxy = roster_tests::proxy::Proxy::start(suite.identity.addr.to_string()).await;
    let database = std::sync::Arc::new(roster_tests::TestDatabase::create(backend).await?);
    let settings = roster_bulk_import::Settings {
        identity_url: format!("http://{}", proxy.addr),
        apply_batch_size: 2,
        apply_batches_in_flight: 1,
        apply_pause: pause,
        ..suite.import_settings.clone()
    };
    let server = roster_tests::TestServer::start_bulk_import(
        roster_tests::test_settings(Service::BulkImport, &database.url),
        settings,
        database,
        Vec::new(),
    )
    .await;
    Some((proxy, server))
}

/// Identity unreachable while a file is validated: the import stays VALIDATING (an outage is
/// no verdict on the file) and is validated once identity is back.
async fn a_validation_waits_out_an_identity_outage(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let pause = roster_bulk_import::jobs::ApplyPause::default();
    let Some((proxy, server)) = behind_a_proxy(&suite, backend, pause).await else {
        return;
    };
    let imports = Imports::new(server.channel().await, ADMIN_KEY);
    let account = suite.account("Acme").await;
    proxy.set(false);
    let created = imports
        .import_csv(&account, people_csv("outage", 3))
        .await
        .unwrap();
    // Past the attempts (3, about 0.6 s) and into the lease's 3 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = imports.import(&created.id).await;
    assert_eq!(
        (waiting.state, waiting.error_message.as_str()),
        (pb::ImportState::Validating as i32, ""),
        "{waiting:?}"
    );
    proxy.set(true);
    let validated = imports
        .wait_for_state(&created.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(
        (validated.create_count, validated.error_count),
        (3, 0),
        "{validated:?}"
    );
}

/// Identity unreachable for longer than the apply's attempts: the import waits, APPLYING, with
/// what identity answered recorded and nothing skipped, and completes once identity is back —
/// every row written once.
async fn an_apply_waits_out_an_identity_outage_and_completes(backend: Backend) {
    use roster_bulk_import::jobs::ApplyPause;

    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let pause = ApplyPause::on();
    let Some((proxy, server)) = behind_a_proxy(&suite, backend, pause.clone()).await else {
        return;
    };
    let imports = Imports::new(server.channel().await, ADMIN_KEY);
    let account = suite.account("Acme").await;
    let validated = imports
        .validated_csv(&account, people_csv("outage", 6), WAIT)
        .await;
    imports.submit(&validated.id, false).await;
    // Windows of two row numbers (the header is row 1): row 2 is written, rows 3 and 4 are
    // read when identity goes away.
    pause.arrived().await;
    pause.go_on();
    pause.arrived().await;
    proxy.set(false);
    pause.go_on();
    // Past the attempts (3, about 0.6 s) and well into the lease's 3 s: still applying.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = imports.import(&validated.id).await;
    assert_eq!(
        (
            waiting.state,
            waiting.applied_count,
            waiting.error_message.as_str()
        ),
        (pb::ImportState::Applying as i32, 1, ""),
        "{waiting:?}"
    );
    let rows = imports
        .all_rows(&validated.id, pb::ImportRowFilter::All)
        .await;
    assert!(
        rows.iter()
            .all(|row| row.outcome != pb::ImportRowOutcome::Skipped as i32),
        "nothing is skipped while identity is away"
    );
    proxy.set(true);
    // The job's next try, once the lease runs out, goes through every group.
    let goes_on = tokio::spawn(async move {
        loop {
            pause.arrived().await;
            pause.go_on();
        }
    });
    let done = imports
        .wait_for_state(&validated.id, &[pb::ImportState::Completed], WAIT)
        .await;
    goes_on.abort();
    assert_eq!((done.applied_count, done.failed_count), (6, 0), "{done:?}");
    let profiles = suite.identity_client().await.all_profiles(&account).await;
    assert_eq!(profiles.len(), 6, "every row written once");
}

async fn cancel_expiry_and_state_errors(backend: Backend) {
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| settings.import_ttl_seconds = 2,
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    let created = imports
        .import_csv(&account, people_csv("c", 2))
        .await
        .unwrap();
    let status = imports
        .list_import_rows(pb::ListImportRowsRequest {
            import_id: created.id.clone(),
            ..Default::default()
        })
        .await;
    if let Err(status) = status {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    }
    imports
        .wait_for_state(&created.id, &[pb::ImportState::Validated], WAIT)
        .await;
    let cancelled = imports
        .cancel_import(pb::CancelImportRequest {
            import_id: created.id.clone(),
            request_id: "c1".into(),
        })
        .await
        .unwrap()
        .import
        .unwrap();
    assert_eq!(cancelled.state, pb::ImportState::Cancelled as i32);
    let refused = imports
        .submit_import(pb::SubmitImportRequest {
            import_id: created.id.clone(),
            request_id: String::new(),
            send_welcome_emails: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("CANCELLED"), "{refused:?}");

    // An import never submitted expires and is purged.
    let waiting = imports
        .import_csv(&account, people_csv("e", 1))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let result = imports
            .get_import(pb::GetImportRequest {
                import_id: waiting.id.clone(),
            })
            .await;
        match result {
            Err(status) if status.code() == Code::NotFound => break,
            Ok(_) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "expired import not purged"
            ),
            Err(status) => panic!("{status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        suite
            .identity_client()
            .await
            .all_profiles(&account)
            .await
            .len(),
        0
    );
}

/// A cancel while the apply is under way stops it before its next batch: the rows it had read
/// but not sent are never created and stay Skipped, and the row identity wrote before the cancel
/// is reported as identity has it.
async fn a_cancel_during_the_apply_stops_the_rows_read_but_not_sent(backend: Backend) {
    use roster_bulk_import::jobs::ApplyPause;
    use roster_bulk_import::store::entities::lease;

    let pause = ApplyPause::on();
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| {
            settings.apply_batch_size = 1;
            settings.apply_batches_in_flight = 1;
            settings.apply_pause = pause.clone();
        },
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    let validated = imports
        .validated_csv(&account, people_csv("stop", 5), WAIT)
        .await;
    imports.submit(&validated.id, false).await;
    // Row 2 goes to identity; before the next group the apply has read row 3, and the cancel
    // comes while row 2's outcome is not recorded yet.
    pause.arrived().await;
    pause.go_on();
    pause.arrived().await;
    let cancelled = imports
        .cancel_import(pb::CancelImportRequest {
            import_id: validated.id.clone(),
            request_id: "stop".into(),
        })
        .await
        .unwrap()
        .import
        .unwrap();
    assert_eq!(cancelled.state, pb::ImportState::Cancelled as i32);
    pause.go_on();
    // The apply ends by dropping the import's lease.
    let database = Database::connect(&suite.imports.database.url)
        .await
        .unwrap();
    let import_id = uuid::Uuid::parse_str(&validated.id).unwrap();
    let started = std::time::Instant::now();
    while lease::Entity::find_by_id(import_id)
        .one(&database)
        .await
        .unwrap()
        .is_some()
    {
        assert!(started.elapsed() < WAIT, "the apply did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let profiles = suite.identity_client().await.all_profiles(&account).await;
    let emails: Vec<&str> = profiles.iter().map(|p| p.email.as_str()).collect();
    assert_eq!(emails, ["stop0@example.com"], "only row 2 was sent");
    let rows = imports
        .all_rows(&validated.id, pb::ImportRowFilter::All)
        .await;
    let outcomes: Vec<(i64, i32, &str)> = rows
        .iter()
        .map(|row| (row.row_number, row.outcome, row.profile_id.as_str()))
        .collect();
    let (applied, skipped) = (
        pb::ImportRowOutcome::Applied as i32,
        pb::ImportRowOutcome::Skipped as i32,
    );
    assert_eq!(
        outcomes,
        [
            (2, applied, profiles[0].id.as_str()),
            (3, skipped, ""),
            (4, skipped, ""),
            (5, skipped, ""),
            (6, skipped, ""),
        ]
    );
    let report = parse_csv(&imports.report(&validated.id).await.unwrap());
    let statuses: Vec<&str> = report[1..].iter().map(|row| row[9].as_str()).collect();
    assert_eq!(
        statuses,
        ["Created", "Skipped", "Skipped", "Skipped", "Skipped"]
    );
    let ended = imports.import(&validated.id).await;
    assert_eq!(
        (ended.state, ended.applied_count),
        (pb::ImportState::Cancelled as i32, 1)
    );
}

async fn another_accounts_imports_are_not_found(backend: Backend) {
    let limited_account = uuid::Uuid::new_v4();
    let Some(suite) = ImportSuite::start_with(
        backend,
        |_| {},
        vec![TestKey::limited(
            "limited",
            &["imports"],
            &[limited_account],
        )],
    )
    .await
    else {
        return;
    };
    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    let created = imports
        .import_csv(&account, people_csv("iso", 1))
        .await
        .unwrap();
    let denied = imports
        .with_key("limited")
        .import_csv(&account, people_csv("x", 1))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let hidden = imports
        .with_key("limited")
        .get_import(pb::GetImportRequest {
            import_id: created.id.clone(),
        })
        .await
        .unwrap_err();
    let unknown = imports
        .with_key("limited")
        .get_import(pb::GetImportRequest {
            import_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (hidden.code(), hidden.message()),
        (unknown.code(), unknown.message())
    );
    assert_eq!(hidden.code(), Code::NotFound);
    let template = imports
        .with_key("limited")
        .download_template(pb::DownloadTemplateRequest {
            account_id: account.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(template.code(), Code::PermissionDenied);
    assert_eq!(reason(&template).as_deref(), Some("ACCOUNT_NOT_PERMITTED"));
}

async fn two_replicas_and_one_job_only_one_applies(backend: Backend) {
    // A lease no stall of a loaded machine outlasts: this is about one holder while nothing
    // fails (a holder whose lease ran out is taken over, each row still applied once).
    let Some(suite) =
        ImportSuite::start_with(backend, |settings| settings.lease_seconds = 60, Vec::new()).await
    else {
        return;
    };
    let second = suite.replica().await;
    let account = suite.account("Acme").await;
    let first_client = suite.import_client().await;
    let second_client = Imports::new(second.channel().await, ADMIN_KEY);
    let created = first_client
        .upload_csv(&account, &people_csv("pair", 1500), 64 * 1024)
        .await
        .unwrap();
    second_client
        .wait_for_state(&created.id, &[pb::ImportState::Validated], WAIT)
        .await;
    second_client.submit(&created.id, false).await;
    let done = first_client
        .wait_for_state(&created.id, &[pb::ImportState::Completed], WAIT)
        .await;
    assert_eq!(done.applied_count, 1500);
    let database = Database::connect(&suite.imports.database.url)
        .await
        .unwrap();
    let owners: Vec<Option<String>> = outcome::Entity::find()
        .select_only()
        .column(outcome::Column::AppliedBy)
        .distinct()
        .filter(outcome::Column::ImportId.eq(uuid::Uuid::parse_str(&created.id).unwrap()))
        .into_tuple()
        .all(&database)
        .await
        .unwrap();
    assert_eq!(
        owners.len(),
        1,
        "every row was applied by the one replica holding the lease"
    );
    assert_eq!(
        suite
            .identity_client()
            .await
            .all_profiles(&account)
            .await
            .len(),
        1500
    );
    assert_eq!(second.service, Service::BulkImport);
}

both_backends!(
    the_whole_flow_from_template_to_report,
    the_whole_flow_in_batches_of_two_rows,
    a_username_taken_after_preview_fails_alone,
    changes_made_after_the_preview_to_fields_the_file_leaves_alone_stand,
    a_change_made_elsewhere_since_the_preview_is_reported_unchanged,
    changes_made_while_the_apply_writes_to_fields_the_file_leaves_alone_stand,
    an_apply_waits_out_an_identity_outage_and_completes,
    a_validation_waits_out_an_identity_outage,
    cancel_expiry_and_state_errors,
    a_cancel_during_the_apply_stops_the_rows_read_but_not_sent,
    another_accounts_imports_are_not_found,
    file_names_are_checked_and_belong_to_their_request_id,
    two_replicas_and_one_job_only_one_applies
);

/// A file name holding a NUL (which PostgreSQL cannot store) or another control character is
/// refused INVALID_ARGUMENT naming file_name, not an INTERNAL error of the database; and a
/// request id sent again with another file name is refused naming request_id.
async fn file_names_are_checked_and_belong_to_their_request_id(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    // A request id names one request: the same id with another file name is refused.
    let named = |file_name: &str, content: Vec<u8>| {
        imports.create_import(pb::CreateImportRequest {
            request_id: "named-once".into(),
            account_id: account.clone(),
            file_name: file_name.into(),
            content,
            ..Default::default()
        })
    };
    let first = named("first.csv", people_csv("named", 1)).await.unwrap();
    let again = named("first.csv", people_csv("named", 1)).await.unwrap();
    assert_eq!(again.import.unwrap().id, first.import.unwrap().id);
    let other = named("second.csv", people_csv("other", 2))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument, "{other:?}");
    assert_eq!(roster_tests::violated_fields(&other), ["request_id"]);
    for name in ["a\0b.csv", "line\nbreak.csv"] {
        let status = imports
            .create_import(pb::CreateImportRequest {
                account_id: account.clone(),
                file_name: name.into(),
                content: people_csv("named", 1),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}: {status:?}");
        assert_eq!(roster_tests::violated_fields(&status), ["file_name"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_ids_are_invalid_arguments() {
    let suite = ImportSuite::start(Backend::Sqlite)
        .await
        .expect("SQLite is always there");
    let imports = suite.import_client().await;
    let status = imports
        .get_import(pb::GetImportRequest {
            import_id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status).as_deref(), Some("INVALID_ARGUMENT"));
}

/// The free usernames a row error offers after its `free: `.
fn offered(message: &str) -> Vec<String> {
    message
        .split_once("free: ")
        .map(|(_, list)| list.split(", ").map(str::to_owned).collect())
        .unwrap_or_default()
}

async fn a_refused_username_in_a_row_offers_free_ones(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let elsewhere = suite.account("Elsewhere").await;
    create_profile(&suite, &elsewhere, "Grace", "grace@example.com", "", "").await;
    create_profile(
        &suite,
        &elsewhere,
        "Ghost",
        "g@example.com",
        "grace.hopper",
        "",
    )
    .await;
    let imports = suite.import_client().await;
    let file = "First Name,Last Name,Email Address,Username\r\n\
                Grace,Hopper,grace@example.com,\r\n\
                Grace,Hopper,gh@navy.example,grace.hopper\r\n";
    let created = imports
        .validated_csv(&account, file.as_bytes().to_vec(), WAIT)
        .await;
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;

    let defaulted = &by_row(&rows, 2).errors[0];
    assert_eq!(
        (defaulted.column.as_str(), defaulted.reason.as_str()),
        ("Username", "USERNAME_TAKEN")
    );
    assert!(
        defaulted.message.starts_with("Username is empty, so the email address is the username, and it is in use on the platform"),
        "{defaulted:?}"
    );
    let chosen = &by_row(&rows, 3).errors[0];
    assert_eq!(chosen.reason, "USERNAME_TAKEN");
    for (error, own) in [
        (defaulted, "grace@example.com"),
        (chosen, "gh@navy.example"),
    ] {
        let suggestions = offered(&error.message);
        assert!(!suggestions.is_empty(), "{error:?}");
        assert!(
            !suggestions.contains(&"grace.hopper".to_owned()),
            "{suggestions:?}"
        );
        let checks = suite
            .identity_client()
            .await
            .batch_check_usernames(id::BatchCheckUsernamesRequest {
                usernames: suggestions.clone(),
                seeds: Vec::new(),
            })
            .await
            .unwrap()
            .checks;
        for (suggestion, check) in suggestions.iter().zip(checks) {
            assert!(check.available, "{suggestion} is not free");
            assert!(
                !suggestion.contains('@') || suggestion == own,
                "{suggestion}"
            );
        }
    }
    assert_eq!(offered(&chosen.message)[0], "gh@navy.example");
}

/// An import staged before outcomes had a table of their own keeps them through the upgrade:
/// the applied and failed rows report theirs, the pending one is still the one to write.
async fn an_upgraded_import_keeps_its_outcomes(backend: Backend) {
    use roster_bulk_import::domain::import::ImportId;
    use roster_bulk_import::domain::state::RowOutcome;
    use roster_bulk_import::store::{Migrator, Store};
    use sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::MigratorTrait;
    let Some(database) = roster_tests::TestDatabase::create(backend).await else {
        return;
    };
    let db = Database::connect(&database.url).await.unwrap();
    let before = Migrator::migrations()
        .iter()
        .position(|migration| migration.name() == "m20261206_000006_import_outcomes")
        .expect("the import_outcomes migration");
    Migrator::up(&db, Some(before as u32)).await.unwrap();
    let import = uuid::Uuid::new_v4();
    let insert = match backend {
        Backend::Postgres => {
            "INSERT INTO import_rows (import_id, row_number, action, profile_id, claim, cells, \
             changes, errors, notes, outcome, outcome_message, applied_by) \
             VALUES ($1, $2, 1, $3, NULL, '{}', '[]', '[]', '[]', $4, $5, $6)"
        }
        Backend::Sqlite => {
            "INSERT INTO import_rows (import_id, row_number, action, profile_id, claim, cells, \
             changes, errors, notes, outcome, outcome_message, applied_by) \
             VALUES (?, ?, 1, ?, NULL, '{}', '[]', '[]', '[]', ?, ?, ?)"
        }
    };
    let rows = [
        (
            1i64,
            Some("created-1"),
            RowOutcome::Applied,
            "",
            Some("replica-a"),
        ),
        (2, None, RowOutcome::Pending, "", None),
        (3, None, RowOutcome::Failed, "refused", Some("replica-a")),
    ];
    for (number, profile, outcome, message, owner) in rows {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            insert,
            [
                import.into(),
                number.into(),
                profile.map(str::to_owned).into(),
                outcome.code().into(),
                message.into(),
                owner.map(str::to_owned).into(),
            ],
        ))
        .await
        .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();

    let store = Store::new(db);
    let staged = store.rows(ImportId(import), None, 0, 10).await.unwrap();
    let read: Vec<(i64, Option<String>, RowOutcome, String)> = staged
        .into_iter()
        .map(|row| {
            (
                row.row_number,
                row.profile_id,
                row.outcome,
                row.outcome_message,
            )
        })
        .collect();
    assert_eq!(
        read,
        [
            (
                1,
                Some("created-1".to_owned()),
                RowOutcome::Applied,
                String::new()
            ),
            (2, None, RowOutcome::Pending, String::new()),
            (3, None, RowOutcome::Failed, "refused".to_owned()),
        ]
    );
    let pending: Vec<i64> = store
        .pending_rows(ImportId(import), 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.row_number)
        .collect();
    assert_eq!(pending, [2]);
    let counts = store.outcome_counts(ImportId(import)).await.unwrap();
    assert_eq!(
        counts,
        [
            (RowOutcome::Pending.code(), 1),
            (RowOutcome::Applied.code(), 1),
            (RowOutcome::Failed.code(), 1)
        ]
        .into_iter()
        .collect()
    );
}

/// What a replica that died after identity wrote a window of rows, and before it recorded
/// their outcomes, leaves behind is answered from what identity kept: for an import submitted
/// now, the window's one record under `<import id>:rows:<first>-<last>` (the batch size pinned
/// at submit); for an import submitted by a version that pinned none, each row's own key. Either
/// way the rows are created once and report the profiles the dead replica created.
async fn a_window_written_before_a_crash_is_answered_from_what_identity_kept(backend: Backend) {
    use roster_bulk_import::domain::import::ImportId;
    use roster_bulk_import::store::Store;
    use roster_tests::clients::Identity;
    use roster_tests::imports::IMPORT_IDENTITY_KEY;

    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| settings.apply_batch_size = 3,
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    let store = Store::new(
        Database::connect(&suite.imports.database.url)
            .await
            .unwrap(),
    );
    // Identity as bulk-import calls it: the same key, so the same idempotency scope.
    let as_bulk_import = Identity::new(suite.identity.channel().await, IMPORT_IDENTITY_KEY);

    for pinned in [true, false] {
        let prefix = if pinned { "pinned" } else { "legacy" };
        let validated = imports
            .validated_csv(&account, people_csv(prefix, 5), WAIT)
            .await;
        let id = ImportId(uuid::Uuid::parse_str(&validated.id).unwrap());
        let numbers: Vec<i64> = store
            .rows(id, None, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|row| row.row_number)
            .collect();
        assert_eq!(numbers.len(), 5);
        // The dead replica's window: row numbers 1 to 3, which holds the first data rows.
        let written: Vec<(i64, usize)> = numbers
            .iter()
            .enumerate()
            .filter(|(_, number)| **number <= 3)
            .map(|(n, number)| (*number, n))
            .collect();
        assert!(!written.is_empty());
        let items = written
            .iter()
            .map(|(number, n)| id::ProfileUpsert {
                idempotency_key: format!("{}:{number}", validated.id),
                first_name: format!("First{n}"),
                last_name: format!("Last{n}"),
                email: format!("{prefix}{n}@example.com"),
                ..Default::default()
            })
            .collect();
        let answered = as_bulk_import
            .upserted(id::BatchUpsertProfilesRequest {
                account_id: account.clone(),
                items,
                import_id: validated.id.clone(),
                request_id: if pinned {
                    format!("{}:rows:1-3", validated.id)
                } else {
                    String::new()
                },
                ..Default::default()
            })
            .await;
        let created: Vec<String> = answered
            .iter()
            .map(|result| {
                assert_eq!(
                    result.outcome,
                    id::UpsertOutcome::Created as i32,
                    "{result:?}"
                );
                result.profile.as_ref().unwrap().id.clone()
            })
            .collect();

        if pinned {
            imports.submit(&validated.id, false).await;
            let submitted = store.import(id).await.unwrap().unwrap();
            assert_eq!(submitted.apply_batch_size, Some(3), "pinned at submit");
        } else {
            // Submitted as a version without a pinned batch size did it.
            let current = store.import(id).await.unwrap().unwrap();
            let tx = store.begin().await.unwrap();
            tx.start_apply(
                &current,
                roster_bulk_import::domain::state::ImportState::Validated,
                "",
                false,
                "",
                None,
            )
            .await
            .unwrap()
            .unwrap();
            tx.commit().await.unwrap();
        }
        let done = imports
            .wait_for_state(&validated.id, &[pb::ImportState::Completed], WAIT)
            .await;
        assert_eq!((done.applied_count, done.failed_count), (5, 0), "{done:?}");
        let rows = store.rows(id, None, 0, 100).await.unwrap();
        for ((number, _), profile) in written.iter().zip(&created) {
            let row = rows.iter().find(|row| row.row_number == *number).unwrap();
            assert_eq!(
                row.profile_id.as_ref(),
                Some(profile),
                "row {number} ({prefix})"
            );
        }
        let profiles = suite.identity_client().await.all_profiles(&account).await;
        let mine = profiles
            .iter()
            .filter(|profile| profile.email.starts_with(prefix))
            .count();
        assert_eq!(mine, 5, "each row created once ({prefix})");
    }
}

/// The checks after staging (repeats, look-alikes, numbers held) add a row's errors only while
/// their replica holds the import's lease, in the transaction that renews it: a replica whose
/// lease was taken over adds nothing to what the new holder staged.
/// A validated import of two rows whose lease replica B holds from the start (a validated
/// import has none left; B's from its insert, so this suite's own worker never finds it
/// free): the import as the service answers it, and the bulk-import store beside the service.
async fn validated_under_b(
    suite: &ImportSuite,
    slug: &str,
) -> (
    pb::Import,
    roster_bulk_import::domain::import::ImportId,
    roster_bulk_import::store::Store,
) {
    use roster_bulk_import::store::entities::lease;
    use roster_bulk_import::store::{Store, now_millis};
    use sea_orm::ActiveValue::Set;

    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    let validated = imports
        .validated_csv(&account, people_csv(slug, 2), WAIT)
        .await;
    let id =
        roster_bulk_import::domain::import::ImportId(uuid::Uuid::parse_str(&validated.id).unwrap());
    let db = Database::connect(&suite.imports.database.url)
        .await
        .unwrap();
    let now = now_millis();
    lease::Entity::insert(lease::ActiveModel {
        import_id: Set(id.0),
        owner: Set(Some("replica-b".into())),
        expires_at: Set(now + 60_000),
        heartbeat_at: Set(now),
        claims: Set(1),
    })
    .exec(&db)
    .await
    .unwrap();
    (validated, id, Store::new(db))
}

async fn a_row_error_is_added_only_under_the_lease(backend: Backend) {
    use roster_bulk_import::domain::rows::RowError;
    use roster_bulk_import::domain::state::RowAction;

    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let (_, id, store) = validated_under_b(&suite, "lease").await;
    let first = store.rows(id, None, 0, 10).await.unwrap()[0].clone();
    assert_eq!(first.action, RowAction::Create);
    let error = |message: &str| RowError {
        column: "Extensions".into(),
        reason: "EXTENSION_TAKEN".into(),
        message: message.into(),
    };

    let added = store
        .add_row_error(id, "replica-a", 60_000, first.row_number, error("from A"))
        .await
        .unwrap();
    assert!(!added, "replica A's lease was taken over");
    let row = store.rows(id, None, 0, 10).await.unwrap()[0].clone();
    assert_eq!((row.action, row.errors.len()), (RowAction::Create, 0));

    for message in ["from B", "again from B"] {
        let added = store
            .add_row_error(id, "replica-b", 60_000, first.row_number, error(message))
            .await
            .unwrap();
        assert!(added);
    }
    let row = store.rows(id, None, 0, 10).await.unwrap()[0].clone();
    assert_eq!(row.action, RowAction::Error);
    assert_eq!(row.errors, [error("from B"), error("again from B")]);
    assert!(row.changes.is_empty());
}

both_backends!(
    a_refused_username_in_a_row_offers_free_ones,
    an_upgraded_import_keeps_its_outcomes,
    a_window_written_before_a_crash_is_answered_from_what_identity_kept,
    a_row_error_is_added_only_under_the_lease
);

/// A report fixed and uploaded again keeps its Error column, which the import ignores; a quote
/// left open there can take in the next row while the row keeps its number of cells. The row is
/// an error naming the column and the line it may have taken in: no row is dropped without the
/// preview saying so.
async fn a_line_break_in_an_ignored_column_is_an_error_in_the_preview(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    let file = b"First Name,Last Name,Email Address,Error\n\
                 Ann,Smith,ann@x.com,\"oops\nBob,Jones,bob@x.com,fixed\"\n";
    let created = imports.upload_csv(&account, file, 16).await.unwrap();
    let validated = imports
        .wait_for_state(&created.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(
        (
            validated.total_row_count,
            validated.create_count,
            validated.error_count
        ),
        (1, 0, 1),
        "{validated:?}"
    );
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::Errors)
        .await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let ann = by_row(&rows, 2);
    assert_eq!(ann.action, pb::ImportRowAction::Error as i32);
    assert_eq!(ann.values["First Name"], "Ann");
    assert_eq!(reasons(ann), vec![("Error", "LINE_BREAK_IN_CELL")]);
    assert_eq!(
        ann.errors[0].message,
        "Error holds a line break: its quoted cell runs from line 2 to line 3 and may have \
         taken in the next row; if a closing quote is missing on line 2, line 3 belongs to a \
         row of its own (the column itself is ignored)"
    );
}

/// SubmitImport sent many times at once with one request_id (a client retrying over a slow
/// network) gets one answer every time, and the rows are applied once (AIP-155).
async fn one_submit_sent_many_times_at_once_gets_one_answer(backend: Backend) {
    use roster_bulk_import::jobs::ApplyPause;

    // The apply waits before its first group, so the import stays as the submit left it
    // while the answers are compared.
    let pause = ApplyPause::on();
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| settings.apply_pause = pause.clone(),
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Acme").await;
    let imports = suite.import_client().await;
    let validated = imports
        .validated_csv(&account, people_csv("once", 5), WAIT)
        .await;
    let submits = (0..32).map(|_| {
        let imports = imports.clone();
        let import_id = validated.id.clone();
        tokio::spawn(async move {
            imports
                .submit_import(pb::SubmitImportRequest {
                    import_id,
                    request_id: "submit-once".into(),
                    send_welcome_emails: false,
                })
                .await
        })
    });
    let mut answers = Vec::new();
    for submit in submits.collect::<Vec<_>>() {
        let answer = submit.await.unwrap().expect("every SubmitImport succeeds");
        answers.push(answer.import.expect("import"));
    }
    assert_eq!(answers[0].state, pb::ImportState::Applying as i32);
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:#?}"
    );

    pause.arrived().await;
    for _ in 0..5 {
        pause.go_on();
    }
    let done = imports
        .wait_for_state(&validated.id, &[pb::ImportState::Completed], WAIT)
        .await;
    assert_eq!((done.applied_count, done.failed_count), (5, 0), "{done:?}");
    let profiles = suite.identity_client().await.all_profiles(&account).await;
    assert_eq!(profiles.len(), 5, "each row applied once");
}

/// Restarting a validation deletes what was staged only while its replica holds the import's
/// lease, in the transaction that renews it: a replica whose lease was taken over deletes
/// nothing of what the new holder staged.
async fn a_validation_restarts_only_under_the_lease(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let imports = suite.import_client().await;
    let (validated, id, store) = validated_under_b(&suite, "restart").await;

    let restarted = store
        .restart_validation(id, "replica-a", 60_000)
        .await
        .unwrap();
    assert!(!restarted, "replica A's lease was taken over");
    assert_eq!(store.rows(id, None, 0, 10).await.unwrap().len(), 2);
    assert_eq!(imports.import(&validated.id).await.total_row_count, 2);

    let restarted = store
        .restart_validation(id, "replica-b", 60_000)
        .await
        .unwrap();
    assert!(restarted);
    assert!(store.rows(id, None, 0, 10).await.unwrap().is_empty());
    assert_eq!(imports.import(&validated.id).await.total_row_count, 0);
}

both_backends!(
    a_line_break_in_an_ignored_column_is_an_error_in_the_preview,
    one_submit_sent_many_times_at_once_gets_one_answer,
    a_validation_restarts_only_under_the_lease
);
