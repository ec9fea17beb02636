//! Tests of row planning: cleaning, shape errors, drafts, verdicts and diffs.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::domain::columns::Layout;
use crate::domain::columns::parse_header;
use crate::domain::reader::{OpenQuote, QuoteEnd, Record};
use crate::domain::state::RowAction;

fn layout() -> Layout {
    parse_header(
        &Column::ALL
            .iter()
            .map(|c| c.header().to_owned())
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

fn record(cells: &[&str]) -> Record {
    Record {
        row_number: 2,
        line: 2,
        cells: cells.iter().map(|c| (*c).to_owned()).collect(),
        open_quote: None,
        after_open_quote: None,
    }
}

/// A record of the template's 11 columns: `cells`, then empty ones.
fn full(cells: &[&str]) -> Record {
    let mut padded = cells.to_vec();
    padded.resize(Column::ALL.len(), "");
    record(&padded)
}

fn ada() -> CurrentProfile {
    CurrentProfile {
        id: "0190b6a4-0000-7000-8000-000000000001".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: "ada@example.com".into(),
        username: "ada".into(),
        canonical_username: "ada".into(),
        job_title: "0042".into(),
        ..CurrentProfile::default()
    }
}

fn plan(cells: &[&str], verdict: Option<UsernameVerdict>) -> PlannedRow {
    let row = clean_row(&layout(), &full(cells), 1000, b',').unwrap();
    let profiles = HashMap::from([(ada().id, ada())]);
    let draft = draft(row, &profiles);
    finish(draft, verdict.as_ref())
}

#[test]
fn an_update_lists_each_change_old_to_new() {
    let row = plan(
        &[
            &ada().id,
            " Ada ",
            "King",
            "ada@example.com",
            "",
            "42",
            "",
            "",
            "",
        ],
        None,
    );
    assert_eq!(row.action, RowAction::Update);
    assert_eq!(
        row.changes,
        vec![
            FieldChange {
                column: "Last Name".into(),
                old_value: "Lovelace".into(),
                new_value: "King".into()
            },
            FieldChange {
                column: "Job Title".into(),
                old_value: "0042".into(),
                new_value: "42".into()
            },
        ]
    );
    let notes: Vec<_> = row.notes.iter().map(|n| n.reason.as_str()).collect();
    assert_eq!(notes, vec!["WHITESPACE_TRIMMED", "LEADING_ZEROS_LOST"]);
}

/// Ada holding extension 0042, and her row of the template with `username` and `extensions`.
fn plan_holding_0042(username: &str, extensions: &str) -> PlannedRow {
    use crate::domain::assignments::{Extension, ExtensionKind};
    let held = CurrentProfile {
        job_title: String::new(),
        extensions: vec![Extension {
            number: "0042".into(),
            kind: ExtensionKind::Physical,
        }],
        extensions_cell: "0042:physical".into(),
        ..ada()
    };
    let mut cells = vec![""; 11];
    cells[0] = &held.id;
    cells[1] = "Ada";
    cells[2] = "Lovelace";
    cells[3] = "ada@example.com";
    cells[4] = username;
    cells[9] = extensions;
    let row = clean_row(&layout(), &record(&cells), 1000, b',').unwrap();
    let profiles = HashMap::from([(held.id.clone(), held.clone())]);
    finish(draft(row, &profiles), None)
}

#[test]
fn an_extension_number_that_lost_its_leading_zeros_is_noted() {
    // Typed as 0042 and saved by a spreadsheet as a number.
    let planned = plan_holding_0042("", "42");
    let notes: Vec<_> = planned
        .notes
        .iter()
        .filter(|note| note.reason == "LEADING_ZEROS_LOST")
        .map(|note| (note.column.as_str(), note.message.as_str()))
        .collect();
    assert_eq!(
        notes,
        vec![(
            "Extensions",
            "the profile has '0042' and the file '42': a spreadsheet may have dropped the \
             leading zeros; the value is kept as in the file"
        )]
    );
}

#[test]
fn equal_values_are_unchanged() {
    let row = plan(
        &[
            &ada().id.to_uppercase(),
            "Ada",
            "Lovelace",
            "ada@EXAMPLE.com",
            "ada",
            "0042",
            "",
            "",
            "",
        ],
        Some(UsernameVerdict {
            canonical: "ada".into(),
            reason: "USERNAME_TAKEN".into(),
            holder_profile_id: ada().id,
            ..UsernameVerdict::default()
        }),
    );
    assert_eq!(row.action, RowAction::Unchanged, "{row:?}");
    assert_eq!(row.claim, None);
}

#[test]
fn every_problem_of_a_row_is_listed() {
    let row = plan(
        &[
            "nope",
            "",
            "Lovelace",
            "not-an-email",
            "",
            "",
            "",
            "xx-invalid",
            "",
        ],
        None,
    );
    assert_eq!(row.action, RowAction::Error);
    let reasons: Vec<_> = row
        .errors
        .iter()
        .map(|e| (e.column.as_str(), e.reason.as_str()))
        .collect();
    assert!(reasons.contains(&("Internal ID", "INTERNAL_ID_UNKNOWN")));
    assert!(reasons.contains(&("First Name", "REQUIRED")));
    assert!(reasons.contains(&("Email Address", "INVALID_EMAIL")));
    assert!(
        reasons.contains(&("Locale", "INVALID_LOCALE")),
        "{reasons:?}"
    );
}

#[test]
fn unknown_and_foreign_ids_read_the_same() {
    let id = "0190b6a4-0000-7000-8000-0000000000ff";
    let unknown = plan(&[id, "A", "B", "a@example.com", "", "", "", "", ""], None);
    let error = &unknown.errors[0];
    assert_eq!(error.reason, "INTERNAL_ID_UNKNOWN");
    assert_eq!(
        error.message,
        format!(
            "Internal ID '{id}' is not a profile of this account; clear the cell to create a \
             new profile"
        )
    );
}

#[test]
fn a_refused_username_is_a_row_error_and_a_free_one_is_claimed() {
    let taken = plan(
        &["", "A", "B", "a@example.com", "", "", "", "", ""],
        Some(UsernameVerdict {
            canonical: "a@example.com".into(),
            reason: "USERNAME_TAKEN".into(),
            message: "this username is in use on the platform".into(),
            ..UsernameVerdict::default()
        }),
    );
    assert_eq!(taken.action, RowAction::Error);
    assert_eq!(taken.errors[0].reason, "USERNAME_TAKEN");
    assert!(
        taken.errors[0]
            .message
            .contains("email address is the username")
    );
    let free = plan(
        &["", "A", "B", "a@example.com", "a.b", "", "", "", ""],
        Some(UsernameVerdict {
            available: true,
            canonical: "a.b".into(),
            ..UsernameVerdict::default()
        }),
    );
    assert_eq!(free.action, RowAction::Create);
    assert_eq!(free.claim.as_deref(), Some("a.b"));
}

#[test]
fn a_row_claims_its_usernames_skeleton_and_its_extension_numbers() {
    let free = |canonical: &str| UsernameVerdict {
        available: true,
        canonical: canonical.into(),
        ..UsernameVerdict::default()
    };
    let created = plan(
        &[
            "",
            "A",
            "B",
            "a@example.com",
            "paypaI",
            "",
            "",
            "",
            "",
            "7;0007",
        ],
        Some(free("paypai")),
    );
    assert_eq!(created.claim.as_deref(), Some("paypai"));
    assert_eq!(
        created.skeleton.as_deref(),
        Some("paypal"),
        "looks like paypal"
    );
    let numbers: Vec<_> = created
        .extension_numbers
        .iter()
        .map(|claim| (claim.number.as_str(), claim.held, claim.holder.is_some()))
        .collect();
    assert_eq!(numbers, vec![("0007", false, false), ("7", false, false)]);

    // An update that keeps its username claims no skeleton; a number its profile holds is
    // held, a new one not.
    let kept = plan_holding_0042("ada", "0042;55");
    assert_eq!((kept.claim, kept.skeleton), (None, None));
    let numbers: Vec<_> = kept
        .extension_numbers
        .iter()
        .map(|claim| (claim.number.as_str(), claim.held))
        .collect();
    assert_eq!(numbers, vec![("0042", true), ("55", false)]);

    // Without an Extensions cell the row leaves them alone and claims none.
    let untouched = plan(&[&ada().id, "Ada", "Lovelace", "ada@example.com"], None);
    assert!(untouched.extension_numbers.is_empty());
}

#[test]
fn blank_rows_are_skipped_and_nameless_cells_reported() {
    assert!(clean_row(&layout(), &record(&["", " ", ""]), 10, b',').is_none());
    let nameless =
        parse_header(&["First Name", "", "Last Name", "Email Address"].map(String::from)).unwrap();
    let row = clean_row(
        &nameless,
        &record(&["A", "stray", "B", "a@example.com"]),
        100,
        b',',
    )
    .unwrap();
    assert_eq!(row.errors[0].reason, "EXTRA_CELL");
    assert_eq!(
        row.errors[0].message,
        "cell 2 holds 'stray' but its column has no name in the header row"
    );
}

#[test]
fn short_and_long_rows_are_errors_that_say_how_many_cells() {
    let short = clean_row(
        &layout(),
        &record(&["", "Ada", "Lovelace", "ada@example.com"]),
        100,
        b',',
    )
    .unwrap();
    assert!(short.misshapen);
    assert_eq!(
        short.errors,
        vec![RowError {
            column: String::new(),
            reason: "ROW_TOO_SHORT".into(),
            message: "this row has 4 cells; the header has 11 columns (no cell for Username, \
                      Job Title, Department, Locale, Time Zone, Extensions, Roles); a missing \
                      cell is never read as empty"
                .into(),
        }]
    );
    let planned = finish(draft(short, &HashMap::new()), None);
    assert_eq!((planned.action, planned.claim), (RowAction::Error, None));
    let mut cells = vec![""; 11];
    cells[1] = "Ada";
    cells.extend(["", " Jr.", ""]);
    let long = clean_row(&layout(), &record(&cells), 100, b';').unwrap();
    assert_eq!(long.errors[0].reason, "ROW_TOO_LONG");
    assert_eq!(
        long.errors[0].message,
        "this row has 14 cells; the header has 11 columns (cell 13 holds 'Jr.'); a value \
         holding ';' must be in quotes"
    );
    // One empty cell too many is a trailing delimiter — or what an unquoted delimiter leaves
    // when the row's last cells were empty ("Sales, EMEA" in Job Title), its values moved one
    // column right: no error, and the preview says so.
    cells.truncate(11);
    cells.push("");
    let trailing = clean_row(&layout(), &record(&cells), 100, b',').unwrap();
    assert!(!trailing.misshapen && trailing.errors.is_empty());
    assert_eq!(
        trailing.notes,
        vec![RowNote {
            column: String::new(),
            reason: "EXTRA_EMPTY_CELLS".into(),
            message: "this row has 12 cells and the header 11 columns; the cells past them are \
                      empty and ignored — if a value held ',' outside quotes, the values after \
                      it moved one column to the right"
                .into(),
        }]
    );
    // A program that pads every line with delimiters pads its header too: nothing to say.
    let mut headers: Vec<String> = Column::ALL.iter().map(|c| c.header().to_owned()).collect();
    headers.push(String::new());
    let padded = parse_header(&headers).unwrap();
    cells.push("");
    let padded_row = clean_row(&padded, &record(&cells), 100, b',').unwrap();
    assert!(!padded_row.misshapen && padded_row.notes.is_empty());
}

#[test]
fn an_open_quote_is_reported_at_its_line_naming_the_lines_it_took() {
    let mut open = full(&["", "Unclosed,Quote,uq@example.com,,,,"]);
    open.line = 3;
    open.cells.truncate(2);
    open.open_quote = Some(OpenQuote {
        line: 3,
        cell: 1,
        end: QuoteEnd::EndOfFile,
        took: Some((4, 5)),
    });
    let row = clean_row(&layout(), &open, 1000, b',').unwrap();
    assert!(row.misshapen);
    assert_eq!(
        row.errors,
        vec![RowError {
            column: "First Name".into(),
            reason: "QUOTE_NOT_CLOSED".into(),
            message: "line 3: the quoted cell opened here is never closed; a closing quote \
                      is probably missing; it took in lines 4 to 5, which are read as rows \
                      of their own"
                .into(),
        }]
    );
    let mut after = full(&["", "Ann", "Lee", "ann@example.com"]);
    after.after_open_quote = Some(3);
    let row = clean_row(&layout(), &after, 1000, b',').unwrap();
    assert_eq!(row.notes[0].reason, "READ_AFTER_OPEN_QUOTE");
    assert!(!row.misshapen);
}

#[test]
fn a_line_break_in_a_cell_names_the_lines_it_runs_over() {
    let row = plan(
        &["", "Ann", "Lee", "ann@example.com", "", "Head of\r\nSales"],
        None,
    );
    assert_eq!(row.action, RowAction::Error);
    assert_eq!(
        row.errors,
        vec![RowError {
            column: "Job Title".into(),
            reason: "LINE_BREAK_IN_CELL".into(),
            message: "Job Title holds a line break: its quoted cell runs from line 2 to line \
                      3, and a profile field is one line"
                .into(),
        }]
    );
}

/// Every row of `file` as the validation reads and cleans it.
fn clean_file(file: &[u8]) -> Vec<CleanRow> {
    use crate::domain::encoding::TextEncoding;
    use crate::domain::reader::{Next, RecordReader};

    let mut reader = RecordReader::new(TextEncoding::UTF_8, 1024);
    reader.push(file);
    reader.finish();
    let mut layout = None;
    let mut rows = Vec::new();
    while let Next::Record(record) = reader.next_record().unwrap() {
        match &layout {
            None => layout = Some(parse_header(&record.cells).unwrap()),
            Some(layout) => rows.extend(clean_row(layout, &record, 1000, b',')),
        }
    }
    rows
}

#[test]
fn a_line_break_in_an_ignored_column_is_an_error_naming_the_rows_it_may_have_taken() {
    let rows = clean_file(
        b"First Name,Last Name,Email Address,Error\n\
          Ann,Smith,ann@x.com,\"oops\nBob,Jones,bob@x.com,fixed\"\n",
    );
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        rows[0].errors,
        vec![RowError {
            column: "Error".into(),
            reason: "LINE_BREAK_IN_CELL".into(),
            message: "Error holds a line break: its quoted cell runs from line 2 to line 3 and \
                      may have taken in the next row; if a closing quote is missing on line 2, \
                      line 3 belongs to a row of its own (the column itself is ignored)"
                .into(),
        }]
    );
    let planned = finish(draft(rows[0].clone(), &HashMap::new()), None);
    assert_eq!(planned.action, RowAction::Error);

    // Over several lines, in a Status column; the value itself stays ignored.
    let rows = clean_file(
        b"Status,First Name,Last Name,Email Address\n\
          \"Created\nCreated\nCreated\",Ann,Smith,ann@x.com\n\
          Anything,Cleo,New,cleo@x.com\n",
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let error = &rows[0].errors[0];
    assert_eq!(
        (error.column.as_str(), error.reason.as_str()),
        ("Status", "LINE_BREAK_IN_CELL")
    );
    assert!(
        error.message.contains(
            "may have taken in the next rows; if a closing quote is missing on line 2, lines 3 \
             to 4 belong to rows of their own"
        ),
        "{error:?}"
    );
    assert!(rows[1].errors.is_empty() && rows[1].notes.is_empty());
    assert!(!rows[1].values.values().any(|value| value == "Anything"));
}

#[test]
fn identity_messages_read_in_the_rows_voice() {
    let row = plan(
        &[
            "",
            &"A".repeat(101),
            "Lee",
            "ann@@example.com",
            "",
            "",
            "",
            "xx-invalid",
            "Mars/Base",
        ],
        None,
    );
    let messages: Vec<(&str, &str)> = row
        .errors
        .iter()
        .map(|error| (error.column.as_str(), error.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        vec![
            (
                "First Name",
                "First Name is 101 characters long; at most 100 are allowed"
            ),
            (
                "Locale",
                "Locale 'xx-invalid' is not a BCP 47 language tag such as en, en-GB or pt-BR: the primary language is not in the IANA Language Subtag Registry"
            ),
            (
                "Time Zone",
                "Time Zone 'Mars/Base' is not an IANA time zone name such as Europe/Paris, America/New_York or UTC"
            ),
            (
                "Email Address",
                "Email Address has more than one @; it must have exactly one"
            ),
        ],
        "{:#?}",
        row.errors
    );
    assert_eq!(
        in_row_voice("The part of the email address before the @ starts or ends with a dot."),
        "the part of the email address before the @ starts or ends with a dot"
    );
    assert_eq!(
        in_row_voice(
            "job_title contains the invisible or control character U+000D, which is not allowed."
        ),
        "Job Title contains the invisible or control character U+000D, which is not allowed"
    );
}

#[test]
fn assignments_diff_as_sets_and_unknown_roles_are_row_errors() {
    use crate::domain::assignments::{Extension, ExtensionKind};
    let held = ada().with_assignments(
        BTreeSet::from([Role::StandardUser, Role::ContactCenterAgent]),
        vec![Extension {
            number: "0101".into(),
            kind: ExtensionKind::Virtual,
        }],
    );
    let profiles = HashMap::from([(held.id.clone(), held.clone())]);
    let plan = |extensions: &str, roles: &str| {
        let cells = [
            held.id.as_str(),
            "Ada",
            "Lovelace",
            "ada@example.com",
            "",
            "0042",
            "",
            "",
            "",
            extensions,
            roles,
        ];
        let row = clean_row(&layout(), &record(&cells), 1000, b',').unwrap();
        finish(draft(row, &profiles), None)
    };
    let same = plan("0101", "Standard User; contact-center-agent");
    assert_eq!(same.action, RowAction::Unchanged, "{same:?}");
    let changed = plan("0101;0102:virtual", "standard_user");
    assert_eq!(changed.action, RowAction::Update);
    assert_eq!(
        changed.changes,
        vec![
            FieldChange {
                column: "Extensions".into(),
                old_value: "0101:virtual".into(),
                new_value: "0101:virtual;0102:virtual".into(),
            },
            FieldChange {
                column: "Roles".into(),
                old_value: "contact_center_agent;standard_user".into(),
                new_value: "standard_user".into(),
            },
        ]
    );
    let wrong = plan("", "root");
    assert_eq!(wrong.action, RowAction::Error);
    assert_eq!(wrong.errors[0].column, "Roles");
    assert_eq!(wrong.errors[0].reason, "ROLE_INVALID");
    let values = BTreeMap::from([(Column::Extensions, "0101;7".to_owned())]);
    let fields = upsert_fields(&values, Some(&held));
    assert!(fields.set_assignments);
    assert_eq!(
        fields.roles,
        vec![Role::ContactCenterAgent, Role::StandardUser]
    );
    assert_eq!(fields.extensions.len(), 2);
    assert!(!upsert_fields(&BTreeMap::new(), Some(&held)).set_assignments);
}

#[test]
fn updates_keep_what_the_file_lacks() {
    let values = BTreeMap::from([(Column::LastName, "King".to_owned())]);
    let fields = upsert_fields(&values, Some(&ada()));
    assert_eq!(fields.first_name, "Ada");
    assert_eq!(fields.last_name, "King");
    assert_eq!(fields.username, "", "an empty username keeps the profile's");
    assert_eq!(fields.id, ada().id);
}
