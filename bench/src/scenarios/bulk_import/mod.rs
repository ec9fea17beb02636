//! Bulk import: rows/s of validation and of the apply for spreadsheets of each size, next to
//! the same rows inserted by bare batched SQL, and the peak resident memory (`VmHWM`) of the
//! bulk-import and the identity server — which therefore run as processes of their own,
//! `roster serve bulk-import` and `roster serve identity` from the release build. For each
//! size, a chart draws the rows applied over time next to the rows bare SQL inserted over time.
//!
//! - [`import`]: one spreadsheet uploaded, validated and applied through Roster, measured.
//! - [`process`]: the `roster serve` processes it goes through.
//! - [`bare_sql`]: the baseline, the same rows inserted by batched SQL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_proto::imports::v1 as pb;

use crate::chart::{Figure, LineChart, Series};
use crate::report::{Report, Row, Verdict, percent};
use crate::suite::Options;

mod bare_sql;
mod import;
mod process;

use bare_sql::bare_sql;
use import::{Measured, import};

const SCENARIO: &str = "Bulk import";
/// The key bulk-import calls identity with.
const IDENTITY_KEY: &str = "bench-bulk-import-to-identity";
/// The key the benchmark calls bulk-import with.
const BULK_KEY: &str = "bench-bulk-import-admin";
/// Rows per transaction of the bare SQL baseline: bulk-import's default apply batch.
const SQL_BATCH: usize = 500;

/// What the bulk-import scenario runs.
pub struct ImportOptions {
    /// Spreadsheet sizes, in rows.
    pub sizes: Vec<u64>,
    /// The `roster` binary to run `serve bulk-import` from.
    pub roster_bin: PathBuf,
    /// Longest wait for validation, and for the apply.
    pub timeout: Duration,
    /// Diagnostic: run `ANALYZE` on identity's and bulk-import's databases this often during
    /// the apply, to show what planner statistics change (this machine's PostgreSQL runs
    /// without autovacuum).
    pub analyze_every: Option<Duration>,
}

pub async fn run(
    options: &Options,
    import_options: &ImportOptions,
    report: &mut Report,
) -> anyhow::Result<()> {
    let sizes = &import_options.sizes;
    let roster_bin = import_options.roster_bin.as_path();
    let command = format!(
        "cargo build --release -p roster-bench -p roster && \
         target/release/roster-bench --scenario bulk-import --import-rows {}",
        sizes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    if !roster_bin.exists() {
        not_measured(
            report,
            &format!("{} does not exist", roster_bin.display()),
            &command,
        );
        return Ok(());
    }
    let mut peaks = Vec::new();
    for &rows in sizes {
        // The baseline first: it is worth having even when the import cannot run yet.
        let (sql, sql_usage, sql_progress) = bare_sql(options, rows).await?;
        report.add(Row {
            scenario: SCENARIO.into(),
            subject: format!(
                "bare batched SQL ({SQL_BATCH} rows per INSERT and transaction), {rows} rows"
            ),
            concurrency: "1".into(),
            rate: rows as f64 / sql.as_secs_f64(),
            unit: "rows/s".into(),
            usage: Some(sql_usage),
            note: format!("{:.1} s", sql.as_secs_f64()),
            ..Row::default()
        });
        let csv = spreadsheet(rows);
        let measured = match import(options, import_options, &csv, rows).await {
            Ok(measured) => measured,
            Err(error) if is_unimplemented(&error) => {
                not_measured(
                    report,
                    "this build's ImportService answers UNIMPLEMENTED",
                    &command,
                );
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        record(report, rows, &measured, sql);
        peaks.push((rows, measured.peak_rss_mib, measured.identity_peak_rss_mib));
        if measured.apply.is_some() {
            report.figure(progress_chart(rows, measured.applied, sql_progress));
        }
    }
    memory_verdicts(report, &peaks);
    Ok(())
}

fn record(report: &mut Report, rows: u64, measured: &Measured, sql: Duration) {
    let import = &measured.import;
    let size = format!("{rows} rows");
    let state = pb::ImportState::try_from(import.state)
        .map_or_else(|_| import.state.to_string(), |state| format!("{state:?}"));
    let timeout_note = measured
        .timed_out
        .map(|phase| format!("; TIMED OUT during {phase}"))
        .unwrap_or_default();
    report.add(Row {
        scenario: SCENARIO.into(),
        subject: format!("Roster upload + validate, {size}"),
        concurrency: "1 import".into(),
        rate: rows as f64 / measured.validate.as_secs_f64(),
        unit: "rows/s".into(),
        errors: u64::try_from(import.error_count).unwrap_or(0),
        peak_rss_mib: measured.peak_rss_mib,
        usage: Some(measured.usage_validate),
        note: format!(
            "upload {:.1} s, validation {:.1} s after it; creates {}, errors {}{timeout_note}",
            measured.upload.as_secs_f64(),
            measured.validate.as_secs_f64(),
            import.create_count,
            import.error_count
        ),
        ..Row::default()
    });
    let sql_rate = rows as f64 / sql.as_secs_f64();
    if let Some(apply) = measured.apply {
        let applied = u64::try_from(import.applied_count).unwrap_or(0);
        let rate = applied as f64 / apply.as_secs_f64();
        report.add(Row {
            scenario: SCENARIO.into(),
            subject: format!("Roster apply, {size}"),
            concurrency: "1 import".into(),
            rate,
            unit: "rows/s".into(),
            errors: u64::try_from(import.failed_count).unwrap_or(0),
            peak_rss_mib: measured.peak_rss_mib,
            usage: measured.usage_apply,
            note: format!(
                "{applied} applied in {:.1} s; final state {state}; {} of bare SQL{timeout_note}",
                apply.as_secs_f64(),
                percent(rate / sql_rate)
            ),
            ..Row::default()
        });
        report.verdict(Verdict {
            what: format!("Import apply vs bare batched SQL, {size}"),
            measured: format!(
                "{} ({rate:.0} vs {sql_rate:.0} rows/s)",
                percent(rate / sql_rate)
            ),
            target: "≥ 50 %".into(),
            met: Some(rate / sql_rate >= 0.5),
        });
        if measured.timed_out.is_none() {
            let validate_rate = rows as f64 / measured.validate.as_secs_f64();
            report.verdict(Verdict {
                what: format!("Import validation vs bare batched SQL, {size}"),
                measured: format!(
                    "{} ({validate_rate:.0} vs {sql_rate:.0} rows/s)",
                    percent(validate_rate / sql_rate)
                ),
                target: "≥ 60 %".into(),
                met: Some(validate_rate / sql_rate >= 0.6),
            });
        }
        if rows == 1_000_000 {
            let total = measured.upload + measured.validate + apply;
            let bound = sql.mul_f64(2.5);
            report.verdict(Verdict {
                what: "1,000,000 rows uploaded, validated and applied".into(),
                measured: match measured.timed_out {
                    None => format!(
                        "{:.0} s ({:.1} × the {:.1} s of bare SQL)",
                        total.as_secs_f64(),
                        total.as_secs_f64() / sql.as_secs_f64(),
                        sql.as_secs_f64()
                    ),
                    Some(phase) => format!(
                        "not finished: {applied} rows applied after {:.0} s ({phase} timed out)",
                        total.as_secs_f64()
                    ),
                },
                target: format!("≤ 2.5 × bare SQL ({:.0} s)", bound.as_secs_f64()),
                met: Some(measured.timed_out.is_none() && total <= bound),
            });
        }
    }
}

/// Rows written over time for one size: Roster's apply (rows applied, counted from
/// SubmitImport) next to bare batched SQL (rows committed), so a rate that decays shows as a
/// bending line.
fn progress_chart(rows: u64, applied: Vec<(f64, f64)>, sql: Vec<(f64, f64)>) -> Figure {
    let title = format!("Bulk import of {rows} rows: rows written over time");
    Figure {
        name: format!("import-{rows}"),
        title: title.clone(),
        panels: vec![LineChart {
            title,
            x_label: "seconds since the start (Roster: since SubmitImport)".into(),
            y_label: "rows written".into(),
            series: vec![
                Series::new("Roster apply (applied_count from GetImport)", applied),
                Series::new(
                    format!("bare batched SQL ({SQL_BATCH} rows per transaction)"),
                    sql,
                ),
            ],
        }],
    }
}

fn memory_verdicts(report: &mut Report, peaks: &[(u64, Option<f64>, Option<f64>)]) {
    let known: Vec<(u64, f64)> = peaks
        .iter()
        .filter_map(|(rows, peak, _)| peak.map(|peak| (*rows, peak)))
        .collect();
    if let Some(identity) = peaks
        .iter()
        .filter_map(|(_, _, identity)| *identity)
        .reduce(f64::max)
    {
        report.verdict(Verdict {
            what: "identity peak RSS, largest import (the `roster serve identity` process)".into(),
            measured: format!("{identity:.0} MiB"),
            target: "< 150 MB".into(),
            met: Some(identity * 1.048_576 < 150.0),
        });
    }
    let Some(largest) = known.iter().map(|(_, peak)| *peak).reduce(f64::max) else {
        return;
    };
    report.verdict(Verdict {
        what: "bulk-import peak RSS, largest import".into(),
        measured: format!("{largest:.0} MiB"),
        target: "< 150 MB".into(),
        met: Some(largest * 1.048_576 < 150.0),
    });
    if let (Some((small_rows, small)), Some((large_rows, large))) = (known.first(), known.last())
        && small_rows != large_rows
    {
        let growth = large / small - 1.0;
        report.verdict(Verdict {
            what: format!("bulk-import peak RSS, {large_rows} vs {small_rows} rows"),
            measured: format!("{large:.0} vs {small:.0} MiB ({:+.0} %)", growth * 100.0),
            target: "within 20 %".into(),
            met: Some(growth.abs() <= 0.20),
        });
    }
}

fn not_measured(report: &mut Report, why: &str, command: &str) {
    report.verdict(Verdict {
        what: "Bulk import (apply vs SQL, 1M rows ≤ 2.5 × bare SQL, peak RSS)".into(),
        measured: format!("not measured: {why}"),
        target: "see issue 20".into(),
        met: None,
    });
    report.note(format!(
        "Bulk import not yet measured ({why}); measure it with: {command}"
    ));
}

fn is_unimplemented(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<tonic::Status>()
        .is_some_and(|status| status.code() == tonic::Code::Unimplemented)
}

/// Row `n` of the generated spreadsheets: a new profile whose username defaults to its email.
fn row_email(n: u64) -> String {
    format!("user{n}@bulk.example")
}

/// A spreadsheet of `rows` new profiles, as the template's columns.
fn spreadsheet(rows: u64) -> Arc<Vec<u8>> {
    let mut csv = Vec::with_capacity(rows as usize * 90 + 200);
    csv.extend_from_slice(
        b"Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone\r\n",
    );
    for n in 0..rows {
        csv.extend_from_slice(
            format!(
                ",Given{n},Family{n},{},,Engineer,Research,en,Europe/Paris\r\n",
                row_email(n)
            )
            .as_bytes(),
        );
    }
    Arc::new(csv)
}

#[cfg(test)]
mod tests {
    use roster_identity::domain::username::Username;

    use super::*;

    #[test]
    fn generated_usernames_are_valid_and_never_confusable() {
        let mut skeletons = std::collections::HashSet::new();
        for n in 0..20_000 {
            let username = Username::parse(&row_email(n)).unwrap();
            assert!(skeletons.insert(username.skeleton().to_owned()), "row {n}");
        }
    }

    #[test]
    fn spreadsheets_have_a_header_and_one_line_per_row() {
        let csv = spreadsheet(3);
        let text = String::from_utf8(csv.to_vec()).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.starts_with("Internal ID,First Name,"));
    }
}
