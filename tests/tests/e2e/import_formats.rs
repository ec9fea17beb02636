//! What spreadsheets actually save, uploaded over gRPC: UTF-8 with or without BOM and the
//! Windows code pages (1252, 1250, 1251, detected or named), CRLF or LF, comma or semicolon,
//! quoted cells with delimiters and line breaks, headers in any order and case, blank rows;
//! what a broken file becomes (a quote never closed, short and long rows, no data rows) and
//! the file-level errors that say what was found; and the formula-escaping round trip, on
//! SQLite and PostgreSQL.

use std::time::Duration;

use roster_proto::identity::v1 as id;
use roster_proto::imports::v1 as pb;
use roster_tests::clients::Identity;
use roster_tests::imports::iconv;
use roster_tests::{ADMIN_KEY, Backend, ImportSuite, both_backends};
use tonic::Code;
use tonic_types::StatusExt;

const WAIT: Duration = Duration::from_secs(60);

async fn validated(
    suite: &ImportSuite,
    account: &str,
    file: Vec<u8>,
) -> (pb::Import, Vec<pb::ImportRow>) {
    validated_in(suite, account, file, "").await
}

/// Uploads `file` naming its `encoding` (empty: detect it) and waits for the preview.
async fn validated_in(
    suite: &ImportSuite,
    account: &str,
    file: Vec<u8>,
    encoding: &str,
) -> (pb::Import, Vec<pb::ImportRow>) {
    let imports = suite.import_client().await;
    let created = imports
        .import_csv_in(account, file, encoding)
        .await
        .unwrap();
    let import = imports
        .wait_for_state(
            &created.id,
            &[pb::ImportState::Validated, pb::ImportState::Invalid],
            WAIT,
        )
        .await;
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;
    (import, rows)
}

async fn submit_and_wait(suite: &ImportSuite, import_id: &str) -> pb::Import {
    let imports = suite.import_client().await;
    imports.submit(import_id, false).await;
    imports
        .wait_for_state(
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

async fn windows_1252_with_semicolons_lf_and_blank_trailing_rows_is_read(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    // Excel's "CSV (semicolon delimited)" on a Western Windows: code page 1252, and here
    // LF line ends and blank rows at the end.
    let file = b"first name;LAST NAME;Email Address;Department\n\
                     Zo\xEB M\xFCller;Stra\xDFe;zoe@example.com;\"R&D; Europe\"\n\
                     ;;;\n\n\n"
        .to_vec();
    let (import, rows) = validated(&suite, &account, file).await;
    assert_eq!(
        import.state,
        pb::ImportState::Validated as i32,
        "{import:?}"
    );
    assert_eq!(
        (import.total_row_count, import.create_count),
        (1, 1),
        "{import:?}"
    );
    assert_eq!(rows[0].values["First Name"], "Zoë Müller");
    assert_eq!(rows[0].values["Last Name"], "Straße");
    assert_eq!(rows[0].values["Department"], "R&D; Europe");
    let done = submit_and_wait(&suite, &import.id).await;
    assert_eq!(done.state, pb::ImportState::Completed as i32, "{done:?}");
    let profiles = suite.identity_client().await.all_profiles(&account).await;
    assert_eq!(profiles[0].first_name, "Zoë Müller");
    assert_eq!(profiles[0].department, "R&D; Europe");
}

async fn bom_crlf_quoted_line_breaks_and_any_header_order_stream_in(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let file = "\u{feff}EMAIL ADDRESS,first_name,Last Name,Job Title\r\n\
                    ann@example.com,Ann,\"Smith, Jr.\",\"Head of\r\nSales\"\r\n\
                    ben@example.com,Ben,Øster,\"Says \"\"hi\"\"\"\r\n\
                    ,,,\r\n\
                    cat@example.com,Cat,Ünal, Lead \r\n\
                    ,,,\r\n\r\n";
    let imports = suite.import_client().await;
    // Small pieces split the multi-byte characters between messages.
    let created = imports
        .upload_csv(&account, file.as_bytes(), 7)
        .await
        .unwrap();
    let import = imports
        .wait_for_state(&created.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(
        (
            import.total_row_count,
            import.create_count,
            import.error_count
        ),
        (3, 2, 1),
        "{import:?}"
    );
    assert_eq!(
        (
            import.encoding.as_str(),
            import.encoding_given,
            import.delimiter.as_str(),
            import.line_ending.as_str()
        ),
        ("UTF-8", false, ",", "CRLF")
    );
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;
    let numbers: Vec<i64> = rows.iter().map(|row| row.row_number).collect();
    assert_eq!(
        numbers,
        vec![2, 3, 5],
        "a quoted line break stays in its row; blank rows count"
    );
    assert_eq!(rows[0].values["Last Name"], "Smith, Jr.");
    assert_eq!(
        rows[0].errors,
        vec![pb::RowError {
            column: "Job Title".into(),
            reason: "LINE_BREAK_IN_CELL".into(),
            message: "Job Title holds a line break: its quoted cell runs from line 2 to line 3, \
                          and a profile field is one line"
                .into(),
        }]
    );
    assert_eq!(rows[1].values["Job Title"], "Says \"hi\"");
    assert_eq!(rows[1].values["Last Name"], "Øster");
    assert_eq!(rows[2].values["Job Title"], "Lead");
    assert_eq!(rows[2].notes[0].reason, "WHITESPACE_TRIMMED");
    assert_eq!(rows[2].notes[0].column, "Job Title");
    let report = imports.report(&created.id).await.unwrap();
    assert!(report.starts_with(b"\xEF\xBB\xBFInternal ID,Email Address,First Name,Last Name,Job Title,Status,Error\r\n"),
            "{}", String::from_utf8_lossy(&report));
}

async fn unknown_and_missing_columns_are_file_errors(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let (import, rows) = validated(
        &suite,
        &account,
        b"First Name,Last Name,Emial Address\r\nA,B,a@example.com\r\n".to_vec(),
    )
    .await;
    let message = invalid_message(&import);
    assert!(message.starts_with(
            "line 1: unknown column 'Emial Address'; expected one of Internal ID, First Name, Last Name, \
             Email Address, Username, Job Title, Department, Locale, Time Zone"), "{message}");
    assert!(
        message.contains("missing column 'Email Address'"),
        "{message}"
    );
    assert!(rows.is_empty());
    let (import, _) = validated(&suite, &account, b"Email Address\nx@example.com\n".to_vec()).await;
    assert!(
        invalid_message(&import).contains("missing columns 'First Name', 'Last Name'"),
        "{import:?}"
    );
    let imports = suite.import_client().await;
    let refused = imports.report(&import.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let (import, _) = validated(
        &suite,
        &account,
        b"First Name\tLast Name\tEmail Address\n".to_vec(),
    )
    .await;
    assert!(
        invalid_message(&import).contains("separated by tabs"),
        "{import:?}"
    );
}

async fn invalid_utf8_and_other_files_are_refused_saying_what_was_found(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let (import, _) = validated(
        &suite,
        &account,
        b"\xEF\xBB\xBFFirst Name,Last Name,Email Address\r\nZo\xEB,M,z@example.com\r\n".to_vec(),
    )
    .await;
    let message = invalid_message(&import);
    assert!(
        message.contains("byte-order mark but is not valid UTF-8: byte 0xEB on line 2"),
        "{message}"
    );
    let (import, _) = validated(
        &suite,
        &account,
        "First Name,Last Name,Email Address\nZoë,M,z@example.com\n"
            .bytes()
            .chain(*b"M\xFCller,N,m@example.com\n")
            .collect(),
    )
    .await;
    assert!(
        invalid_message(&import).contains("mixes encodings"),
        "{import:?}"
    );
    let (import, _) = validated(&suite, &account, b"PK\x03\x04\x14\x00\x06\x00".to_vec()).await;
    assert!(
        invalid_message(&import).contains("Excel workbook (.xlsx)"),
        "{import:?}"
    );
    let (import, _) = validated(&suite, &account, b"\xFF\xFEF\x00i\x00".to_vec()).await;
    assert!(invalid_message(&import).contains("UTF-16"), "{import:?}");
    let imports = suite.import_client().await;
    let empty = imports.import_csv(&account, Vec::new()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
}

async fn over_long_cells_and_an_open_quote_are_reported(backend: Backend) {
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| settings.max_row_bytes = 64 * 1024,
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Acme").await;
    let long = "x".repeat(1500);
    let file = format!("First Name,Last Name,Email Address\r\nA,{long},a@example.com\r\n");
    let (import, rows) = validated(&suite, &account, file.into_bytes()).await;
    assert_eq!(import.error_count, 1, "{import:?}");
    assert_eq!(
        (
            rows[0].errors[0].column.as_str(),
            rows[0].errors[0].reason.as_str()
        ),
        ("Last Name", "TOO_LONG")
    );
    // A quote open past the longest row (64 KiB here) ends its row there; the lines it took
    // in are rows again, and memory stays bounded however long the file is.
    let people: String = (0..5000)
        .map(|n| format!("B{n},C,c{n}@example.com\r\n"))
        .collect();
    let file = format!("First Name,Last Name,Email Address\r\nA,\"open,a@example.com\r\n{people}");
    let (import, rows) = validated(&suite, &account, file.into_bytes()).await;
    assert_eq!(
        (import.state, import.total_row_count, import.create_count),
        (pb::ImportState::Validated as i32, 5001, 5000),
        "{import:?}"
    );
    let error = &rows[0].errors[0];
    assert_eq!(
        (error.column.as_str(), error.reason.as_str()),
        ("Last Name", "QUOTE_NOT_CLOSED")
    );
    assert!(
        error.message.starts_with(
            "line 2: the quoted cell opened here is still open after 64 KiB; a closing quote is \
                 probably missing; it took in lines 3 to "
        ),
        "{error:?}"
    );
    assert!(
        rows[1..]
            .iter()
            .all(|row| row.action == pb::ImportRowAction::Create as i32)
    );
    assert_eq!(rows[1].values["First Name"], "B0");
    assert_eq!(rows[1].notes[0].reason, "READ_AFTER_OPEN_QUOTE");
    // The rows on the lines it took in (some 64 KiB of them) carry the note; the rest not.
    let noted = rows.iter().filter(|row| !row.notes.is_empty()).count();
    assert!((2000..3000).contains(&noted), "{noted} rows noted");
    assert!(rows.last().unwrap().notes.is_empty());

    // A file that quotes every cell (as PowerShell's Export-Csv writes), four lines of which
    // lack their last closing quote: each is its own row, an error naming its line, and no
    // row runs into the next.
    let file = "\"First Name\",\"Last Name\",\"Email Address\"\r\n\
                \"Ann\",\"Lee\",\"ann@example.com\r\n\
                \"Bob\",\"Ray\",\"bob@example.com\r\n\
                \"Cy\",\"Doe\",\"cy@example.com\r\n\
                \"Dee\",\"Fox\",\"dee@example.com\r\n\
                \"Eve\",\"Gil\",\"eve@example.com\"\r\n\
                \"Fay\",\"Hu\",\"fay@example.com\"\r\n";
    let (import, rows) = validated(&suite, &account, file.as_bytes().to_vec()).await;
    assert_eq!(
        (
            import.total_row_count,
            import.error_count,
            import.create_count
        ),
        (6, 4, 2),
        "{import:?}"
    );
    for (row, line) in rows[..4].iter().zip(2..) {
        assert_eq!(row.row_number, line);
        assert_eq!(row.errors[0].reason, "QUOTE_NOT_CLOSED", "{row:?}");
        assert!(
            row.errors[0]
                .message
                .starts_with(&format!("line {line}: the quoted cell opened here")),
            "{row:?}"
        );
    }
    assert_eq!(rows[1].values["First Name"], "Bob");
    assert_eq!(rows[4].values["First Name"], "Eve");
    assert_eq!(rows[5].values["Email Address"], "fay@example.com");
}

async fn formula_cells_survive_a_round_trip_unchanged(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let profiles = suite.identity_client().await;
    let risky = [
        ("=1+2", "=HYPERLINK(\"http://evil\",\"x\")"),
        ("+33 1 23 45", "-"),
        ("@team", "'=already quoted"),
        ("007", "''"),
    ];
    for (index, (job_title, department)) in risky.iter().enumerate() {
        profiles
            .create_profile(id::CreateProfileRequest {
                account_id: account.clone(),
                first_name: format!("Risky{index}"),
                last_name: "Cell".into(),
                email: format!("risky{index}@example.com"),
                job_title: (*job_title).to_owned(),
                department: (*department).to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let imports = suite.import_client().await;
    let template = imports.template(&account).await;
    let text = String::from_utf8(template.clone()).unwrap();
    assert!(
        text.contains(",'=1+2,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",,,,\r\n"),
        "{text}"
    );
    assert!(text.contains(",'+33 1 23 45,'-,,,,\r\n"), "{text}");
    assert!(text.contains(",'@team,''=already quoted,,,,\r\n"), "{text}");
    for line in text.lines().skip(1) {
        for cell in line.split(',') {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "unescaped cell {cell:?} in {line:?}"
            );
        }
    }
    // The template uploaded back as it is changes nothing.
    let (import, rows) = validated(&suite, &account, template.clone()).await;
    assert_eq!(
        (
            import.unchanged_count,
            import.error_count,
            import.total_row_count
        ),
        (4, 0, 4),
        "{rows:#?}"
    );
    let done = submit_and_wait(&suite, &import.id).await;
    assert_eq!(done.state, pb::ImportState::Completed as i32);
    let after = suite.identity_client().await.all_profiles(&account).await;
    for (index, (job_title, department)) in risky.iter().enumerate() {
        let profile = after
            .iter()
            .find(|p| p.first_name == format!("Risky{index}"))
            .unwrap();
        assert_eq!(
            (profile.job_title.as_str(), profile.department.as_str()),
            (*job_title, *department)
        );
    }
    // A spreadsheet that dropped the leading zeros of 007 is noted, never padded.
    let edited = text.replace(",007,", ",7,");
    let (import, rows) = validated(&suite, &account, edited.into_bytes()).await;
    assert_eq!(import.update_count, 1, "{rows:#?}");
    let update = rows
        .iter()
        .find(|row| row.action == pb::ImportRowAction::Update as i32)
        .unwrap();
    assert_eq!(update.changes[0].new_value, "7");
    assert_eq!(
        update
            .notes
            .iter()
            .map(|n| n.reason.as_str())
            .collect::<Vec<_>>(),
        vec!["LEADING_ZEROS_LOST"]
    );
}

both_backends!(
    windows_1252_with_semicolons_lf_and_blank_trailing_rows_is_read,
    bom_crlf_quoted_line_breaks_and_any_header_order_stream_in,
    unknown_and_missing_columns_are_file_errors,
    invalid_utf8_and_other_files_are_refused_saying_what_was_found,
    over_long_cells_and_an_open_quote_are_reported,
    formula_cells_survive_a_round_trip_unchanged
);

/// The template's header row.
const HEADER: &str = "Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,\
                      Locale,Time Zone,Extensions,Roles";

/// (reason, message) of each error or note.
type Said = Vec<(String, String)>;

/// Every row's number, action, errors and notes, for assertions.
fn verdicts(rows: &[pb::ImportRow]) -> Vec<(i64, i32, Said, Said)> {
    rows.iter()
        .map(|row| {
            (
                row.row_number,
                row.action,
                row.errors
                    .iter()
                    .map(|e| (e.reason.clone(), e.message.clone()))
                    .collect(),
                row.notes
                    .iter()
                    .map(|n| (n.reason.clone(), n.message.clone()))
                    .collect(),
            )
        })
        .collect()
}

const CREATE: i32 = pb::ImportRowAction::Create as i32;
const ERROR: i32 = pb::ImportRowAction::Error as i32;

fn read_after(line: u64) -> Said {
    vec![(
        "READ_AFTER_OPEN_QUOTE".into(),
        format!(
            "the quoted cell opened on line {line} took in this row's line; a closing quote is \
             probably missing there, and this line is read as a row of its own"
        ),
    )]
}

async fn an_unclosed_quote_is_reported_where_it_opens_and_the_rows_it_took_are_read_again(
    backend: Backend,
) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    // The file: the quote in First Name on line 3 never closes, two rows follow.
    let file = format!(
        "{HEADER}\r\n\
         ,Ann,Lee,ann@example.com,,,,,,,\r\n\
         ,\"Unclosed,Quote,uq@example.com,,,,\r\n\
         ,Ben,Kay,ben@example.com,,,,,,,\r\n\
         ,Cat,Ng,cat@example.com,,,,,,,\r\n"
    );
    let (import, rows) = validated(&suite, &account, file.into_bytes()).await;
    assert_eq!(
        import.state,
        pb::ImportState::Validated as i32,
        "{import:?}"
    );
    assert_eq!(
        (
            import.total_row_count,
            import.create_count,
            import.error_count
        ),
        (4, 3, 1)
    );
    assert_eq!(
        verdicts(&rows),
        vec![
            (2, CREATE, vec![], vec![]),
            (
                3,
                ERROR,
                vec![(
                    "QUOTE_NOT_CLOSED".into(),
                    "line 3: the quoted cell opened here is never closed; a closing quote is \
                     probably missing; it took in lines 4 to 5, which are read as rows of their own"
                        .into()
                )],
                vec![]
            ),
            (4, CREATE, vec![], read_after(3)),
            (5, CREATE, vec![], read_after(3)),
        ]
    );
    assert_eq!(rows[1].errors[0].column, "First Name");
    assert_eq!(
        rows[1].values["First Name"],
        "Unclosed,Quote,uq@example.com,,,,"
    );
    assert_eq!(rows[2].values["Email Address"], "ben@example.com");

    // In the last cell: it takes in the rest of the file.
    let file = format!(
        "{HEADER}\r\n\
         ,Ann,Lee,ann@example.com,,,,,,,\"standard_user\r\n\
         ,Ben,Kay,ben@example.com,,,,,,,\r\n\
         ,Cat,Ng,cat@example.com,,,,,,,\r\n"
    );
    let (import, rows) = validated(&suite, &account, file.into_bytes()).await;
    assert_eq!(
        (import.total_row_count, import.error_count),
        (3, 1),
        "{import:?}"
    );
    assert_eq!(
        verdicts(&rows),
        vec![
            (
                2,
                ERROR,
                vec![(
                    "QUOTE_NOT_CLOSED".into(),
                    "line 2: the quoted cell opened here is never closed; a closing quote is \
                     probably missing; it took in lines 3 to 4, which are read as rows of their own"
                        .into()
                )],
                vec![]
            ),
            (3, CREATE, vec![], read_after(2)),
            (4, CREATE, vec![], read_after(2)),
        ]
    );
    assert_eq!(rows[0].errors[0].column, "Roles");

    // On the file's last line, which has no line break.
    let file = format!(
        "{HEADER}\r\n\
         ,Ann,Lee,ann@example.com,,,,,,,\r\n\
         ,Cat,Ng,cat@example.com,,\"Head of"
    );
    let (import, rows) = validated(&suite, &account, file.into_bytes()).await;
    assert_eq!(
        (import.total_row_count, import.error_count),
        (2, 1),
        "{import:?}"
    );
    assert_eq!(
        (
            rows[1].row_number,
            rows[1].errors[0].column.as_str(),
            rows[1].errors[0].message.as_str()
        ),
        (
            3,
            "Job Title",
            "line 3: the quoted cell opened here is never closed; a closing quote is probably \
             missing"
        )
    );
    assert_eq!(rows[1].values["Job Title"], "Head of");

    // A quote in Job Title that a later quote closes: the row comes out short, so the quote
    // is cut at its line and the row it took in is read again.
    let file = "Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone\r\n\
                ,Ann,Lee,ann@example.com,,\"Engineer,R&D,en-GB,Europe/London\r\n\
                ,Ben,Kay,ben@example.com,,Analyst,\"Sales\",en-GB,Europe/London\r\n\
                ,Cat,Ng,cat@example.com,,,,,\r\n";
    let (import, rows) = validated(&suite, &account, file.as_bytes().to_vec()).await;
    assert_eq!(
        (import.total_row_count, import.create_count),
        (3, 2),
        "{import:?}"
    );
    assert_eq!(
        verdicts(&rows),
        vec![
            (
                2,
                ERROR,
                vec![(
                    "QUOTE_NOT_CLOSED".into(),
                    "line 2: the quoted cell opened here closes only on line 3; a closing quote is \
                     probably missing; it took in line 3, which is read as a row of its own"
                        .into()
                )],
                vec![]
            ),
            (3, CREATE, vec![], read_after(2)),
            (4, CREATE, vec![], vec![]),
        ]
    );
    assert_eq!(rows[0].errors[0].column, "Job Title");
    assert_eq!(rows[1].values["Department"], "Sales");
}

async fn short_and_long_rows_are_row_errors_and_never_clear_fields(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let channel = suite.identity.channel().await;
    let ada = suite
        .identity_client()
        .await
        .create_profile(id::CreateProfileRequest {
            account_id: account.clone(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            job_title: "Countess".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .profile
        .unwrap();
    let file = format!(
        "{HEADER}\r\n\
         {},Ada,King,ada@example.com\r\n\
         ,Bob,Short,bob@example.com\r\n\
         ,Cy,Long,cy@example.com,,,,,,,,Extra\r\n\
         ,Di,Fine,di@example.com,,,,,,,,\r\n",
        ada.id
    );
    let (import, rows) = validated(&suite, &account, file.into_bytes()).await;
    assert_eq!(
        (
            import.total_row_count,
            import.create_count,
            import.error_count
        ),
        (4, 1, 3),
        "{import:?}"
    );
    let short = "this row has 4 cells; the header has 11 columns (no cell for Username, Job Title, \
                 Department, Locale, Time Zone, Extensions, Roles); a missing cell is never read as empty";
    assert_eq!(
        verdicts(&rows),
        vec![
            (
                2,
                ERROR,
                vec![("ROW_TOO_SHORT".into(), short.into())],
                vec![]
            ),
            (
                3,
                ERROR,
                vec![("ROW_TOO_SHORT".into(), short.into())],
                vec![]
            ),
            (
                4,
                ERROR,
                vec![(
                    "ROW_TOO_LONG".into(),
                    "this row has 12 cells; the header has 11 columns (cell 12 holds 'Extra'); a \
                     value holding ',' must be in quotes"
                        .into()
                )],
                vec![]
            ),
            (
                5,
                CREATE,
                vec![],
                vec![(
                    "EXTRA_EMPTY_CELLS".into(),
                    "this row has 12 cells and the header 11 columns; the cells past them are \
                     empty and ignored — if a value held ',' outside quotes, the values after \
                     it moved one column to the right"
                        .into()
                )]
            ),
        ]
    );
    assert!(
        rows[0].changes.is_empty() && rows[0].profile_id.is_empty(),
        "{:?}",
        rows[0]
    );
    let done = submit_and_wait(&suite, &import.id).await;
    assert_eq!((done.applied_count, done.failed_count), (1, 0), "{done:?}");
    let after = Identity::new(channel.clone(), ADMIN_KEY)
        .all_profiles(&account)
        .await;
    let ada_now = after.iter().find(|p| p.id == ada.id).unwrap();
    assert_eq!(
        (ada_now.last_name.as_str(), ada_now.job_title.as_str()),
        ("Lovelace", "Countess")
    );
    assert_eq!(after.len(), 2, "only Di was created: {after:?}");
}

async fn a_header_without_data_rows_is_a_file_error(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    let mut file = format!("{HEADER}\r\n").into_bytes();
    file.extend(b"\r\n".repeat(1_000_000));
    let (import, rows) = validated(&suite, &account, file).await;
    assert_eq!(
        invalid_message(&import),
        "the file has a header row and no data rows; the 1000000 rows after it are blank"
    );
    assert!(rows.is_empty());
    let (import, _) = validated(&suite, &account, format!("{HEADER}\n\n,,\n\n").into_bytes()).await;
    assert_eq!(
        invalid_message(&import),
        "the file has a header row and no data rows; the 3 rows after it are blank"
    );
    let (import, _) = validated(&suite, &account, format!("{HEADER}\r\n").into_bytes()).await;
    assert_eq!(
        invalid_message(&import),
        "the file has a header row and no data rows"
    );
    assert_eq!(
        (import.delimiter.as_str(), import.line_ending.as_str()),
        (",", "CRLF")
    );
}

async fn central_european_and_cyrillic_code_pages_are_detected_and_reported(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    // Polish Excel: "CSV (rozdzielany przecinkami)" is windows-1250 with semicolons.
    let polish = "First Name;Last Name;Email Address;Job Title;Department\r\n\
                  Łukasz;Wróbel;lukasz@example.com;Kierownik działu;Sprzedaż\r\n\
                  Agnieszka;Dąbrowska;agnieszka@example.com;Główna księgowa;Finanse\r\n\
                  Paweł;Wiśniewski;pawel@example.com;Specjalista ds. kadr;Kadry i płace\r\n";
    let imports = suite.import_client().await;
    let created = imports
        .upload_csv(&account, &iconv(polish, "WINDOWS-1250"), 5)
        .await
        .unwrap();
    assert_eq!(
        (created.encoding.as_str(), created.encoding_given),
        ("windows-1250", false),
        "{created:?}"
    );
    let import = imports
        .wait_for_state(&created.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(
        (
            import.encoding.as_str(),
            import.delimiter.as_str(),
            import.line_ending.as_str()
        ),
        ("windows-1250", ";", "CRLF")
    );
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;
    let names: Vec<[&str; 4]> = rows
        .iter()
        .map(|row| {
            ["First Name", "Last Name", "Job Title", "Department"].map(|c| row.values[c].as_str())
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ["Łukasz", "Wróbel", "Kierownik działu", "Sprzedaż"],
            ["Agnieszka", "Dąbrowska", "Główna księgowa", "Finanse"],
            [
                "Paweł",
                "Wiśniewski",
                "Specjalista ds. kadr",
                "Kadry i płace"
            ],
        ]
    );

    // Russian Excel: windows-1251, here with LF line ends.
    let russian = "First Name,Last Name,Email Address,Job Title,Department\n\
                   Иван,Петров,ivan@example.com,Менеджер по продажам,Отдел продаж\n\
                   Ольга,Смирнова,olga@example.com,Бухгалтер,Финансы\n\
                   Сергей,Кузнецов,sergey@example.com,Инженер,Разработка\n";
    let (import, rows) = validated(&suite, &account, iconv(russian, "WINDOWS-1251")).await;
    assert_eq!(
        (
            import.state,
            import.encoding.as_str(),
            import.delimiter.as_str(),
            import.line_ending.as_str()
        ),
        (pb::ImportState::Validated as i32, "windows-1251", ",", "LF"),
        "{import:?}"
    );
    assert_eq!(rows[0].values["First Name"], "Иван");
    assert_eq!(rows[1].values["Department"], "Финансы");
    let done = submit_and_wait(&suite, &import.id).await;
    assert_eq!(done.state, pb::ImportState::Completed as i32, "{done:?}");
    let written = suite.identity_client().await.all_profiles(&account).await;
    let ivan = written
        .iter()
        .find(|p| p.email == "ivan@example.com")
        .unwrap();
    assert_eq!(
        (ivan.first_name.as_str(), ivan.last_name.as_str()),
        ("Иван", "Петров")
    );
}

async fn an_unsure_guess_is_refused_naming_candidates_and_a_named_encoding_wins(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Acme").await;
    // One short row: chardetng's best guess is ISO-8859-2, which reads it otherwise than
    // windows-1250 does.
    let file = iconv(
        "First Name,Last Name,Email Address\r\nJan,Dąbrowski,jan@example.com\r\n",
        "WINDOWS-1250",
    );
    let (import, _) = validated(&suite, &account, file.clone()).await;
    assert_eq!(
        invalid_message(&import),
        "the file is not UTF-8 (byte 0xB9 on line 2 (offset 41) is not UTF-8), and its encoding \
         is not sure: it may be ISO-8859-2 (reads \"Dšbrowski\") or windows-1250 (reads \
         \"Dąbrowski\"); upload it again naming its encoding (`encoding` in the request, \
         --encoding in roster import upload), or save it as CSV UTF-8"
    );
    assert_eq!(import.encoding, "");
    let imports = suite.import_client().await;
    let created = imports
        .upload_csv_in(&account, &file, 7, "Windows-1250")
        .await
        .unwrap();
    let import = imports
        .wait_for_state(&created.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(
        (import.encoding.as_str(), import.encoding_given),
        ("windows-1250", true)
    );
    let rows = imports
        .all_rows(&created.id, pb::ImportRowFilter::All)
        .await;
    assert_eq!(rows[0].values["Last Name"], "Dąbrowski");

    // A named encoding is used even where detection would be sure of another.
    let polish = iconv(
        "First Name,Last Name,Email Address\r\nŁukasz,Wróbel,l@example.com\r\n",
        "WINDOWS-1250",
    );
    let (import, rows) = validated_in(&suite, &account, polish.clone(), "cp1252").await;
    assert_eq!(
        (import.encoding.as_str(), import.encoding_given),
        ("windows-1252", true),
        "{import:?}"
    );
    assert_eq!(rows[0].values["First Name"], "£ukasz");
    let (import, rows) = validated(&suite, &account, polish).await;
    assert_eq!(
        (import.encoding.as_str(), import.encoding_given),
        ("windows-1250", false),
        "{import:?}"
    );
    assert_eq!(rows[0].values["First Name"], "Łukasz");

    // A file the named encoding does not read, and labels that are no encoding.
    let (import, _) = validated_in(
        &suite,
        &account,
        b"First Name,Last Name,Email Address\r\nA\x81,B,c@example.com\r\n".to_vec(),
        "windows-1250",
    )
    .await;
    assert_eq!(
        invalid_message(&import),
        "the file is not windows-1250, the encoding the request names: byte 0x81 on line 2 \
         (offset 37) is not a character of windows-1250; upload it again naming its encoding, or \
         without one to have it detected"
    );
    let refused = imports
        .import_csv_in(&account, b"a\n".to_vec(), "klingon")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let violations = refused
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations;
    assert_eq!(
        violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect::<Vec<_>>(),
        vec![(
            "encoding",
            "'klingon' is not an encoding label; give a WHATWG label such as utf-8, windows-1250, \
             windows-1251 or shift_jis, or leave it empty to detect the encoding"
        )]
    );
    let refused = imports
        .upload_csv_in(&account, b"a\n", 7, "utf-16le")
        .await
        .unwrap_err();
    let violations = refused
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations;
    assert_eq!(violations[0].field, "header.encoding");
    assert!(
        violations[0]
            .description
            .contains("not a superset of ASCII"),
        "{violations:?}"
    );
}

both_backends!(
    an_unclosed_quote_is_reported_where_it_opens_and_the_rows_it_took_are_read_again,
    short_and_long_rows_are_row_errors_and_never_clear_fields,
    a_header_without_data_rows_is_a_file_error,
    central_european_and_cyrillic_code_pages_are_detected_and_reported,
    an_unsure_guess_is_refused_naming_candidates_and_a_named_encoding_wins,
);
