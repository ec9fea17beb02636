//! Bulk import of assignments (issue 7), on SQLite and PostgreSQL: the template's Extensions
//! and Roles columns, their preview diff, and an apply in which a row whose extension another
//! profile holds fails alone, named on the Extensions column.

use std::time::Duration;

use roster_proto::identity::v1 as id;
use roster_proto::imports::v1 as pb;
use roster_tests::clients::Imports;
use roster_tests::imports::parse_csv;
use roster_tests::{Backend, ImportSuite, both_backends};

const WAIT: Duration = Duration::from_secs(60);

async fn create_profile(suite: &ImportSuite, account_id: &str, first: &str) -> id::Profile {
    let email = format!("{}@example.com", first.to_lowercase());
    suite
        .identity_client()
        .await
        .person(account_id, first, "Original", &email)
        .await
}

async fn assign_extension(
    suite: &ImportSuite,
    profile_id: &str,
    number: &str,
    kind: id::ExtensionKind,
) {
    suite
        .identity_client()
        .await
        .give_extension(profile_id, number, kind)
        .await;
}

/// Submits a validated import and waits until its apply ended, with or without failed rows.
async fn applied(imports: &Imports, import_id: &str) -> pb::Import {
    imports.submit(import_id, false).await;
    imports
        .wait_for_state(
            import_id,
            &[
                pb::ImportState::Completed,
                pb::ImportState::CompletedWithErrors,
            ],
            WAIT,
        )
        .await
}

fn by_row(rows: &[pb::ImportRow], row_number: i64) -> &pb::ImportRow {
    rows.iter()
        .find(|row| row.row_number == row_number)
        .unwrap_or_else(|| panic!("row {row_number} missing from {rows:#?}"))
}

fn extensions(profile: &id::Profile) -> Vec<(String, i32)> {
    profile
        .extensions
        .iter()
        .map(|extension| (extension.number.clone(), extension.kind))
        .collect()
}

async fn an_import_assigns_extensions_and_roles_and_a_colliding_extension_fails_alone(
    backend: Backend,
) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let ada = create_profile(&suite, &account, "Ada").await;
    let bob = create_profile(&suite, &account, "Bob").await;
    assign_extension(&suite, &ada.id, "200", id::ExtensionKind::Virtual).await;
    assign_extension(&suite, &bob.id, "300", id::ExtensionKind::Physical).await;
    // Fay, who is not in the file, takes 400 after the preview: only the apply finds it taken.
    let fay = create_profile(&suite, &account, "Fay").await;
    let imports = suite.import_client().await;

    let template = imports.template(&account).await;
    let rows = parse_csv(&template);
    assert_eq!(rows[0][9..], ["Extensions".to_owned(), "Roles".to_owned()]);
    let ada_row = rows
        .iter()
        .find(|row| row[0] == ada.id)
        .expect("Ada in the template");
    assert_eq!(
        (ada_row[9].as_str(), ada_row[10].as_str()),
        ("200:virtual", "")
    );

    // Ada keeps 200 (its kind unwritten, so still virtual), gains 201 and two roles; Cleo
    // is new; Dan asks for Fay's 400; Eve names a role that does not exist.
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address,Extensions,Roles\r\n\
             {ada},Ada,Original,ada@example.com,201; 200,Contact Center Agent;standard-user\r\n\
             ,Cleo,New,cleo@example.com,0042:virtual,account_administrator\r\n\
             ,Dan,New,dan@example.com,400,standard_user\r\n\
             ,Eve,New,eve@example.com,,root\r\n\
             {bob},Bob,Original,bob@example.com,300:physical,\r\n",
        ada = ada.id,
        bob = bob.id,
    );
    let validated = imports
        .validated_csv(&account, file.into_bytes(), WAIT)
        .await;
    assert_eq!(
        (
            validated.create_count,
            validated.update_count,
            validated.unchanged_count,
            validated.error_count
        ),
        (2, 1, 1, 1),
        "{validated:?}"
    );
    assign_extension(&suite, &fay.id, "400", id::ExtensionKind::Physical).await;
    let rows = imports
        .all_rows(&validated.id, pb::ImportRowFilter::All)
        .await;
    let update = by_row(&rows, 2);
    assert_eq!(update.action, pb::ImportRowAction::Update as i32);
    let changes: Vec<_> = update
        .changes
        .iter()
        .map(|change| {
            (
                change.column.as_str(),
                change.old_value.as_str(),
                change.new_value.as_str(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("Extensions", "200:virtual", "200:virtual;201:physical"),
            ("Roles", "", "contact_center_agent;standard_user"),
        ]
    );
    let eve = by_row(&rows, 5);
    assert_eq!(eve.action, pb::ImportRowAction::Error as i32);
    assert_eq!(
        (eve.errors[0].column.as_str(), eve.errors[0].reason.as_str()),
        ("Roles", "ROLE_INVALID")
    );
    assert_eq!(
        by_row(&rows, 6).action,
        pb::ImportRowAction::Unchanged as i32,
        "sets compare equal"
    );

    imports.submit(&validated.id, false).await;
    let done = imports
        .wait_for_state(&validated.id, &[pb::ImportState::CompletedWithErrors], WAIT)
        .await;
    assert_eq!((done.applied_count, done.failed_count), (2, 1), "{done:?}");
    let rows = imports
        .all_rows(&validated.id, pb::ImportRowFilter::All)
        .await;
    let dan = by_row(&rows, 4);
    assert_eq!(dan.outcome, pb::ImportRowOutcome::Failed as i32);
    assert!(
        dan.outcome_message
            .starts_with("Extensions: ALREADY_EXISTS (EXTENSION_TAKEN)"),
        "{dan:?}"
    );
    let report = parse_csv(&imports.report(&validated.id).await.unwrap());
    assert_eq!(report[3][6], "Failed", "{:?}", report[3]);
    assert!(
        report[3][7].contains("Extensions: ALREADY_EXISTS"),
        "{:?}",
        report[3]
    );

    let after = suite.identity_client().await.all_profiles(&account).await;
    assert_eq!(after.len(), 4, "Dan was not created");
    let find = |first: &str| after.iter().find(|p| p.first_name == first).unwrap();
    let (physical, virtual_) = (
        id::ExtensionKind::Physical as i32,
        id::ExtensionKind::Virtual as i32,
    );
    assert_eq!(
        extensions(find("Ada")),
        vec![("200".to_owned(), virtual_), ("201".to_owned(), physical)]
    );
    assert_eq!(
        find("Ada").roles,
        vec![
            id::Role::ContactCenterAgent as i32,
            id::Role::StandardUser as i32
        ]
    );
    assert_eq!(
        extensions(find("Cleo")),
        vec![("0042".to_owned(), virtual_)]
    );
    assert_eq!(
        find("Cleo").roles,
        vec![id::Role::AccountAdministrator as i32]
    );
    assert_eq!(extensions(find("Bob")), vec![("300".to_owned(), physical)]);

    // An upload without the columns leaves assignments alone; an empty cell clears them.
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address,Job Title\r\n{ada},Ada,Original,ada@example.com,Analyst\r\n",
        ada = ada.id,
    );
    let validated = imports
        .validated_csv(&account, file.into_bytes(), WAIT)
        .await;
    imports.submit(&validated.id, false).await;
    imports
        .wait_for_state(&validated.id, &[pb::ImportState::Completed], WAIT)
        .await;
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address,Roles\r\n{ada},Ada,Original,ada@example.com,\r\n",
        ada = ada.id,
    );
    let validated = imports
        .validated_csv(&account, file.into_bytes(), WAIT)
        .await;
    imports.submit(&validated.id, false).await;
    imports
        .wait_for_state(&validated.id, &[pb::ImportState::Completed], WAIT)
        .await;
    let after = suite.identity_client().await.all_profiles(&account).await;
    let ada_now = after.iter().find(|p| p.id == ada.id).unwrap();
    assert_eq!(ada_now.job_title, "Analyst");
    assert!(
        ada_now.roles.is_empty(),
        "an empty Roles cell takes every role"
    );
    assert_eq!(
        extensions(ada_now).len(),
        2,
        "no Extensions column keeps the extensions"
    );
}

both_backends!(an_import_assigns_extensions_and_roles_and_a_colliding_extension_fails_alone);

/// Batches go to identity several at once, but not when a row frees an extension number that a
/// row further down claims: with one row per batch and eight batches in flight, each number
/// freed in rows 1-4 is claimed in rows 5-8, and every claim succeeds, as in file order.
async fn extension_numbers_freed_above_are_claimed_below_whatever_the_batches_in_flight(
    backend: Backend,
) {
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| {
            settings.apply_batch_size = 1;
            settings.apply_batches_in_flight = 8;
        },
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Acme").await;
    let mut holders = Vec::new();
    let mut takers = Vec::new();
    for n in 1..=4 {
        let holder = create_profile(&suite, &account, &format!("Holder{n}")).await;
        assign_extension(
            &suite,
            &holder.id,
            &format!("70{n}"),
            id::ExtensionKind::Physical,
        )
        .await;
        holders.push(holder);
        takers.push(create_profile(&suite, &account, &format!("Taker{n}")).await);
    }
    let mut file = String::from("Internal ID,First Name,Last Name,Email Address,Extensions\r\n");
    for holder in &holders {
        file.push_str(&format!(
            "{},{},Original,{},\r\n",
            holder.id, holder.first_name, holder.email
        ));
    }
    for (n, taker) in takers.iter().enumerate() {
        file.push_str(&format!(
            "{},{},Original,{},70{}\r\n",
            taker.id,
            taker.first_name,
            taker.email,
            n + 1
        ));
    }
    let imports = suite.import_client().await;
    let validated = imports
        .validated_csv(&account, file.into_bytes(), WAIT)
        .await;
    assert_eq!(validated.update_count, 8, "{validated:?}");
    let done = applied(&imports, &validated.id).await;
    let rows = imports
        .all_rows(&validated.id, pb::ImportRowFilter::All)
        .await;
    assert_eq!(
        (done.applied_count, done.failed_count),
        (8, 0),
        "{:#?}",
        rows.iter()
            .map(|row| (row.row_number, row.outcome, row.outcome_message.clone()))
            .collect::<Vec<_>>()
    );
    let after = suite.identity_client().await.all_profiles(&account).await;
    for (n, taker) in takers.iter().enumerate() {
        let now = after.iter().find(|p| p.id == taker.id).unwrap();
        assert_eq!(
            extensions(now),
            vec![(format!("70{}", n + 1), id::ExtensionKind::Physical as i32)]
        );
    }
    for holder in &holders {
        let now = after.iter().find(|p| p.id == holder.id).unwrap();
        assert!(extensions(now).is_empty(), "{now:?}");
    }
}

both_backends!(extension_numbers_freed_above_are_claimed_below_whatever_the_batches_in_flight);

/// Rows that identity would refuse at apply are errors in the preview: an extension number on
/// two rows (only the other rows when one row's profile holds the number and keeps it),
/// usernames that differ but look alike (naming each other), and a number another profile
/// holds — unless that profile's row frees it above. Nothing of the file then fails at apply.
async fn rows_that_collide_in_the_file_are_errors_in_the_preview(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let bob = create_profile(&suite, &account, "Bob").await;
    assign_extension(&suite, &bob.id, "300", id::ExtensionKind::Physical).await;
    let mut holders = Vec::new();
    for (first, number) in [("Fay", "400"), ("Oz", "700"), ("Ned", "600")] {
        let profile = create_profile(&suite, &account, first).await;
        assign_extension(&suite, &profile.id, number, id::ExtensionKind::Physical).await;
        holders.push(profile);
    }
    let (oz, ned) = (&holders[1], &holders[2]);
    let imports = suite.import_client().await;
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address,Username,Extensions\r\n\
         {bob},Bob,Original,bob@example.com,,300:physical\r\n\
         ,Gus,New,gus@example.com,,300\r\n\
         ,Hal,New,hal@example.com,,500\r\n\
         ,Ivy,New,ivy@example.com,,500;501\r\n\
         ,Jo,New,jo@example.com,paypal,\r\n\
         ,Kim,New,kim@example.com,paypaI,\r\n\
         ,Lu,New,lu@example.com,,0500\r\n\
         ,Mo,New,mo@example.com,PayPal,\r\n\
         ,Pat,New,pat@example.com,,400\r\n\
         {oz},Oz,Original,oz@example.com,,\r\n\
         ,Quin,New,quin@example.com,,700\r\n\
         ,Rae,New,rae@example.com,,600\r\n\
         {ned},Ned,Original,ned@example.com,,\r\n",
        bob = bob.id,
        oz = oz.id,
        ned = ned.id,
    );
    let validated = imports
        .validated_csv(&account, file.into_bytes(), WAIT)
        .await;
    let rows = imports
        .all_rows(&validated.id, pb::ImportRowFilter::All)
        .await;
    let errors = |row_number: i64| -> Vec<(String, String, String)> {
        by_row(&rows, row_number)
            .errors
            .iter()
            .map(|error| {
                (
                    error.column.clone(),
                    error.reason.clone(),
                    error.message.clone(),
                )
            })
            .collect()
    };
    let error = |column: &str, reason: &str, message: &str| {
        (column.to_owned(), reason.to_owned(), message.to_owned())
    };
    let only_once = "a number can be one profile's only";
    let alike = "a username that looks like this one; two usernames that look alike cannot both \
                 be used";
    assert_eq!(
        by_row(&rows, 2).action,
        pb::ImportRowAction::Unchanged as i32,
        "Bob keeps his number: {:?}",
        errors(2)
    );
    assert_eq!(
        errors(3),
        [error(
            "Extensions",
            "DUPLICATE_IN_FILE",
            &format!("row 2 has extension 300 and keeps it; {only_once}")
        )]
    );
    assert_eq!(
        errors(4),
        [error(
            "Extensions",
            "DUPLICATE_IN_FILE",
            &format!("row 5 has extension 500 too; {only_once}")
        )]
    );
    assert_eq!(
        errors(5),
        [error(
            "Extensions",
            "DUPLICATE_IN_FILE",
            &format!("row 4 has extension 500 too; {only_once}")
        )]
    );
    assert_eq!(
        errors(6),
        [
            error(
                "Username",
                "DUPLICATE_IN_FILE",
                "row 9 has the same username"
            ),
            error(
                "Username",
                "USERNAME_CONFUSABLE",
                &format!("row 7 has {alike}")
            ),
        ]
    );
    assert_eq!(
        errors(7),
        [error(
            "Username",
            "USERNAME_CONFUSABLE",
            &format!("row 6 has {alike}")
        )]
    );
    assert_eq!(by_row(&rows, 8).action, pb::ImportRowAction::Create as i32);
    assert_eq!(
        errors(9),
        [error(
            "Username",
            "DUPLICATE_IN_FILE",
            "row 6 has the same username"
        )]
    );
    assert_eq!(
        errors(10),
        [error(
            "Extensions",
            "EXTENSION_TAKEN",
            "extension 400 is held by another profile (fay@example.com), which this file does \
             not change; free it there first or give this row another number"
        )]
    );
    assert_eq!(by_row(&rows, 11).action, pb::ImportRowAction::Update as i32);
    assert_eq!(
        by_row(&rows, 12).action,
        pb::ImportRowAction::Create as i32,
        "Oz's row frees 700 above: {:?}",
        errors(12)
    );
    assert_eq!(
        errors(13),
        [error(
            "Extensions",
            "EXTENSION_TAKEN",
            "extension 600 is held by another profile (ned@example.com), whose row 14 frees it \
             only below this row; rows apply in file order, so move this row below row 14"
        )]
    );
    assert_eq!(by_row(&rows, 14).action, pb::ImportRowAction::Update as i32);
    assert_eq!(
        (
            validated.create_count,
            validated.update_count,
            validated.unchanged_count,
            validated.error_count
        ),
        (2, 2, 1, 8),
        "{validated:?}"
    );

    let done = applied(&imports, &validated.id).await;
    assert_eq!(
        (done.applied_count, done.failed_count),
        (4, 0),
        "what the preview let through applies: {done:?}"
    );
    let after = suite.identity_client().await.all_profiles(&account).await;
    let lu = after.iter().find(|p| p.first_name == "Lu").expect("Lu");
    assert_eq!(
        extensions(lu),
        vec![("0500".to_owned(), id::ExtensionKind::Physical as i32)]
    );
    let quin = after.iter().find(|p| p.first_name == "Quin").expect("Quin");
    assert_eq!(
        extensions(quin),
        vec![("700".to_owned(), id::ExtensionKind::Physical as i32)]
    );
}

/// Whether a row may take a number its holder's row frees above depends on whether that row
/// applies, which the same check may deny it for a number of its own: the preview decides from
/// the top of the file down, whatever order the numbers sort in, so that what it lets through
/// applies. A chain (Pia takes Rex's number, which this file does not free; a new row takes
/// Pia's) and a swap (Quy and Sam take each other's numbers) are errors all along.
async fn a_row_that_waits_for_a_freed_number_fails_in_the_preview_when_the_freeing_row_does(
    backend: Backend,
) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let mut holders = Vec::new();
    for (first, number) in [
        ("Pia", "100"),
        ("Rex", "300"),
        ("Quy", "200"),
        ("Sam", "210"),
    ] {
        let profile = create_profile(&suite, &account, first).await;
        assign_extension(&suite, &profile.id, number, id::ExtensionKind::Physical).await;
        holders.push(profile);
    }
    let (pia, quy, sam) = (&holders[0], &holders[2], &holders[3]);
    let imports = suite.import_client().await;
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address,Username,Extensions\r\n\
         {pia},Pia,Original,pia@example.com,,300\r\n\
         ,Una,New,una@example.com,,100\r\n\
         {quy},Quy,Original,quy@example.com,,210\r\n\
         {sam},Sam,Original,sam@example.com,,200\r\n\
         ,Val,New,val@example.com,,999\r\n",
        pia = pia.id,
        quy = quy.id,
        sam = sam.id,
    );
    let validated = imports
        .validated_csv(&account, file.into_bytes(), WAIT)
        .await;
    let rows = imports
        .all_rows(&validated.id, pb::ImportRowFilter::All)
        .await;
    let messages = |row_number: i64| -> Vec<String> {
        by_row(&rows, row_number)
            .errors
            .iter()
            .map(|error| format!("{} {} {}", error.column, error.reason, error.message))
            .collect()
    };
    assert_eq!(
        messages(2),
        [
            "Extensions EXTENSION_TAKEN extension 300 is held by another profile \
          (rex@example.com), which this file does not change; free it there first or give this \
          row another number"
        ]
    );
    assert_eq!(
        messages(3),
        [
            "Extensions EXTENSION_TAKEN extension 100 is held by another profile \
          (pia@example.com), whose row 2 would free it but has errors"
        ],
        "row 3 waits for row 2, which does not apply"
    );
    assert_eq!(
        messages(4),
        [
            "Extensions EXTENSION_TAKEN extension 210 is held by another profile \
          (sam@example.com), whose row 5 frees it only below this row; rows apply in file \
          order, so move this row below row 5"
        ]
    );
    assert_eq!(
        messages(5),
        [
            "Extensions EXTENSION_TAKEN extension 200 is held by another profile \
          (quy@example.com), whose row 4 would free it but has errors"
        ],
        "row 5 waits for row 4, which does not apply"
    );
    assert_eq!(by_row(&rows, 6).action, pb::ImportRowAction::Create as i32);
    assert_eq!(
        (validated.create_count, validated.error_count),
        (1, 4),
        "{validated:?}"
    );

    let done = applied(&imports, &validated.id).await;
    assert_eq!(
        (done.applied_count, done.failed_count),
        (1, 0),
        "what the preview let through applies, and nothing else was tried: {done:?}"
    );
    let after = suite.identity_client().await.all_profiles(&account).await;
    let held = |first: &str| extensions(after.iter().find(|p| p.first_name == first).expect(first));
    let physical = |number: &str| vec![(number.to_owned(), id::ExtensionKind::Physical as i32)];
    assert_eq!(held("Pia"), physical("100"));
    assert_eq!(held("Quy"), physical("200"));
    assert_eq!(held("Sam"), physical("210"));
    assert_eq!(held("Val"), physical("999"));
}

both_backends!(
    rows_that_collide_in_the_file_are_errors_in_the_preview,
    a_row_that_waits_for_a_freed_number_fails_in_the_preview_when_the_freeing_row_does
);
