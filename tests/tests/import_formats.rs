//! What spreadsheets actually save, uploaded over gRPC: Windows-1252 and UTF-8 with or without
//! BOM, CRLF or LF, comma or semicolon, quoted cells with delimiters and line breaks, headers in
//! any order and case, blank rows; the file-level errors that say what was found; and the
//! formula-escaping round trip, on SQLite and PostgreSQL.

use std::time::Duration;

use roster_proto::identity::v1 as id;
use roster_proto::imports::v1 as pb;
use roster_tests::imports::{
    all_profiles, all_rows, create_import, download_report, download_template, upload_import,
    wait_for_state,
};
use roster_tests::{ADMIN_KEY, ImportSuite, authed, both_backends};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

async fn validated(
    suite: &ImportSuite,
    account: &str,
    file: Vec<u8>,
) -> (pb::Import, Vec<pb::ImportRow>) {
    let mut imports = suite.import_client().await;
    let created = create_import(&mut imports, ADMIN_KEY, account, file)
        .await
        .unwrap();
    let import = wait_for_state(
        &mut imports,
        &created.id,
        &[pb::ImportState::Validated, pb::ImportState::Invalid],
        WAIT,
    )
    .await;
    let rows = all_rows(&mut imports, &created.id, pb::ImportRowFilter::All).await;
    (import, rows)
}

async fn submit_and_wait(suite: &ImportSuite, import_id: &str) -> pb::Import {
    let mut imports = suite.import_client().await;
    imports
        .submit_import(authed(
            ADMIN_KEY,
            pb::SubmitImportRequest {
                import_id: import_id.to_owned(),
                request_id: String::new(),
                send_welcome_emails: false,
            },
        ))
        .await
        .unwrap();
    wait_for_state(
        &mut imports,
        import_id,
        &[
            pb::ImportState::Completed,
            pb::ImportState::CompletedWithErrors,
            pb::ImportState::Failed,
        ],
        WAIT,
    )
    .await
}

fn invalid_message(import: &pb::Import) -> &str {
    assert_eq!(
        import.state,
        pb::ImportState::Invalid as i32,
        "expected INVALID: {import:?}"
    );
    &import.error_message
}

both_backends! {
    async fn windows_1252_with_semicolons_lf_and_blank_trailing_rows_is_read(backend) {
        let Some(suite) = ImportSuite::start(backend).await else { return };
        let account = suite.account("Acme").await;
        // Excel's "CSV (semicolon delimited)" on a Western Windows: code page 1252, and here
        // LF line ends and blank rows at the end.
        let file = b"first name;LAST NAME;Email Address;Department\n\
                     Zo\xEB M\xFCller;Stra\xDFe;zoe@example.com;\"R&D; Europe\"\n\
                     ;;;\n\n\n".to_vec();
        let (import, rows) = validated(&suite, &account, file).await;
        assert_eq!(import.state, pb::ImportState::Validated as i32, "{import:?}");
        assert_eq!((import.total_row_count, import.create_count), (1, 1), "{import:?}");
        assert_eq!(rows[0].values["First Name"], "Zoë Müller");
        assert_eq!(rows[0].values["Last Name"], "Straße");
        assert_eq!(rows[0].values["Department"], "R&D; Europe");
        let done = submit_and_wait(&suite, &import.id).await;
        assert_eq!(done.state, pb::ImportState::Completed as i32, "{done:?}");
        let profiles = all_profiles(&suite.identity.channel().await, &account).await;
        assert_eq!(profiles[0].first_name, "Zoë Müller");
        assert_eq!(profiles[0].department, "R&D; Europe");
    }

    async fn bom_crlf_quoted_line_breaks_and_any_header_order_stream_in(backend) {
        let Some(suite) = ImportSuite::start(backend).await else { return };
        let account = suite.account("Acme").await;
        let file = "\u{feff}EMAIL ADDRESS,first_name,Last Name,Job Title\r\n\
                    ann@example.com,Ann,\"Smith, Jr.\",\"Head of\r\nSales\"\r\n\
                    ben@example.com,Ben,Øster,\"Says \"\"hi\"\"\"\r\n\
                    ,,,\r\n\
                    cat@example.com,Cat,Ünal, Lead \r\n\
                    ,,,\r\n\r\n";
        let mut imports = suite.import_client().await;
        // Small pieces split the multi-byte characters between messages.
        let created = upload_import(&mut imports, ADMIN_KEY, &account, file.as_bytes(), 7).await.unwrap();
        let import = wait_for_state(&mut imports, &created.id, &[pb::ImportState::Validated], WAIT).await;
        assert_eq!((import.total_row_count, import.create_count, import.error_count), (3, 2, 1), "{import:?}");
        let rows = all_rows(&mut imports, &created.id, pb::ImportRowFilter::All).await;
        let numbers: Vec<i64> = rows.iter().map(|row| row.row_number).collect();
        assert_eq!(numbers, vec![2, 3, 5], "a quoted line break stays in its row; blank rows count");
        assert_eq!(rows[0].values["Last Name"], "Smith, Jr.");
        assert_eq!(rows[0].errors[0].column, "Job Title", "{:?}", rows[0]);
        assert!(rows[0].errors[0].message.contains("control character"), "{:?}", rows[0]);
        assert_eq!(rows[1].values["Job Title"], "Says \"hi\"");
        assert_eq!(rows[1].values["Last Name"], "Øster");
        assert_eq!(rows[2].values["Job Title"], "Lead");
        assert_eq!(rows[2].notes[0].reason, "WHITESPACE_TRIMMED");
        assert_eq!(rows[2].notes[0].column, "Job Title");
        let report = download_report(&mut imports, &created.id).await.unwrap();
        assert!(report.starts_with(b"\xEF\xBB\xBFInternal ID,Email Address,First Name,Last Name,Job Title,Status,Error\r\n"),
            "{}", String::from_utf8_lossy(&report));
    }

    async fn unknown_and_missing_columns_are_file_errors(backend) {
        let Some(suite) = ImportSuite::start(backend).await else { return };
        let account = suite.account("Acme").await;
        let (import, rows) = validated(&suite, &account, b"First Name,Last Name,Emial Address\r\nA,B,a@example.com\r\n".to_vec()).await;
        let message = invalid_message(&import);
        assert!(message.starts_with(
            "line 1: unknown column 'Emial Address'; expected one of Internal ID, First Name, Last Name, \
             Email Address, Username, Job Title, Department, Locale, Time Zone"), "{message}");
        assert!(message.contains("missing column 'Email Address'"), "{message}");
        assert!(rows.is_empty());
        let (import, _) = validated(&suite, &account, b"Email Address\nx@example.com\n".to_vec()).await;
        assert!(invalid_message(&import).contains("missing columns 'First Name', 'Last Name'"), "{import:?}");
        let mut imports = suite.import_client().await;
        let refused = download_report(&mut imports, &import.id).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        let (import, _) = validated(&suite, &account, b"First Name\tLast Name\tEmail Address\n".to_vec()).await;
        assert!(invalid_message(&import).contains("separated by tabs"), "{import:?}");
    }

    async fn invalid_utf8_and_other_files_are_refused_saying_what_was_found(backend) {
        let Some(suite) = ImportSuite::start(backend).await else { return };
        let account = suite.account("Acme").await;
        let (import, _) = validated(
            &suite,
            &account,
            b"\xEF\xBB\xBFFirst Name,Last Name,Email Address\r\nZo\xEB,M,z@example.com\r\n".to_vec(),
        )
        .await;
        let message = invalid_message(&import);
        assert!(message.contains("byte-order mark but is not valid UTF-8: byte 0xEB on line 2"), "{message}");
        let (import, _) = validated(
            &suite,
            &account,
            "First Name,Last Name,Email Address\nZoë,M,z@example.com\n".bytes().chain(*b"M\xFCller,N,m@example.com\n").collect(),
        )
        .await;
        assert!(invalid_message(&import).contains("mixes encodings"), "{import:?}");
        let (import, _) = validated(&suite, &account, b"PK\x03\x04\x14\x00\x06\x00".to_vec()).await;
        assert!(invalid_message(&import).contains("Excel workbook (.xlsx)"), "{import:?}");
        let (import, _) = validated(&suite, &account, b"\xFF\xFEF\x00i\x00".to_vec()).await;
        assert!(invalid_message(&import).contains("UTF-16"), "{import:?}");
        let mut imports = suite.import_client().await;
        let empty = create_import(&mut imports, ADMIN_KEY, &account, Vec::new()).await.unwrap_err();
        assert_eq!(empty.code(), Code::InvalidArgument);
    }

    async fn over_long_cells_and_an_open_quote_are_reported(backend) {
        let Some(suite) = ImportSuite::start_with(backend, |settings| settings.max_row_bytes = 64 * 1024, Vec::new()).await else { return };
        let account = suite.account("Acme").await;
        let long = "x".repeat(1500);
        let file = format!("First Name,Last Name,Email Address\r\nA,{long},a@example.com\r\n");
        let (import, rows) = validated(&suite, &account, file.into_bytes()).await;
        assert_eq!(import.error_count, 1, "{import:?}");
        assert_eq!((rows[0].errors[0].column.as_str(), rows[0].errors[0].reason.as_str()), ("Last Name", "TOO_LONG"));
        let file = format!("First Name,Last Name,Email Address\r\nA,\"open,a@example.com\r\n{}", "B,C,c@example.com\r\n".repeat(5000));
        let (import, _) = validated(&suite, &account, file.into_bytes()).await;
        assert!(invalid_message(&import).contains("missing its closing quote"), "{import:?}");
    }

    async fn formula_cells_survive_a_round_trip_unchanged(backend) {
        let Some(suite) = ImportSuite::start(backend).await else { return };
        let account = suite.account("Acme").await;
        let mut profiles = suite.profile_client().await;
        let risky = [
            ("=1+2", "=HYPERLINK(\"http://evil\",\"x\")"),
            ("+33 1 23 45", "-"),
            ("@team", "'=already quoted"),
            ("007", "''"),
        ];
        for (index, (job_title, department)) in risky.iter().enumerate() {
            profiles
                .create_profile(authed(ADMIN_KEY, id::CreateProfileRequest {
                    account_id: account.clone(),
                    first_name: format!("Risky{index}"),
                    last_name: "Cell".into(),
                    email: format!("risky{index}@example.com"),
                    job_title: (*job_title).to_owned(),
                    department: (*department).to_owned(),
                    ..Default::default()
                }))
                .await
                .unwrap();
        }
        let mut imports = suite.import_client().await;
        let template = download_template(&mut imports, &account).await;
        let text = String::from_utf8(template.clone()).unwrap();
        assert!(text.contains(",'=1+2,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",,,,\r\n"), "{text}");
        assert!(text.contains(",'+33 1 23 45,'-,,,,\r\n"), "{text}");
        assert!(text.contains(",'@team,''=already quoted,,,,\r\n"), "{text}");
        for line in text.lines().skip(1) {
            for cell in line.split(',') {
                assert!(!cell.starts_with(['=', '+', '-', '@']), "unescaped cell {cell:?} in {line:?}");
            }
        }
        // The template uploaded back as it is changes nothing.
        let (import, rows) = validated(&suite, &account, template.clone()).await;
        assert_eq!((import.unchanged_count, import.error_count, import.total_row_count), (4, 0, 4), "{rows:#?}");
        let done = submit_and_wait(&suite, &import.id).await;
        assert_eq!(done.state, pb::ImportState::Completed as i32);
        let after = all_profiles(&suite.identity.channel().await, &account).await;
        for (index, (job_title, department)) in risky.iter().enumerate() {
            let profile = after.iter().find(|p| p.first_name == format!("Risky{index}")).unwrap();
            assert_eq!((profile.job_title.as_str(), profile.department.as_str()), (*job_title, *department));
        }
        // A spreadsheet that dropped the leading zeros of 007 is noted, never padded.
        let edited = text.replace(",007,", ",7,");
        let (import, rows) = validated(&suite, &account, edited.into_bytes()).await;
        assert_eq!(import.update_count, 1, "{rows:#?}");
        let update = rows.iter().find(|row| row.action == pb::ImportRowAction::Update as i32).unwrap();
        assert_eq!(update.changes[0].new_value, "7");
        assert_eq!(update.notes.iter().map(|n| n.reason.as_str()).collect::<Vec<_>>(), vec!["LEADING_ZEROS_LOST"]);
    }
}
