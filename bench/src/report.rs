//! The results of a run: one row per measured step, one verdict per target of issue 9, printed
//! as Markdown tables (ready for `docs/BENCHMARKS.md`) once the run ends. Each row is also
//! printed as soon as it is measured, so a long run shows progress. Scenarios can add charts of
//! what the rows do not hold (rows applied over time); main writes them beside the Markdown.

use std::fmt::Write as _;

use crate::chart::Figure;
use crate::load::Outcome;
use crate::system::Usage;

/// One measured step.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub scenario: String,
    /// What ran: Roster's call or the baseline.
    pub subject: String,
    /// Calls in flight (or the tool's own notion of it), as text.
    pub concurrency: String,
    pub rate: f64,
    pub unit: String,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: u64,
    pub peak_rss_mib: Option<f64>,
    pub usage: Option<Usage>,
    pub note: String,
}

impl Row {
    /// A row from a load-generator outcome.
    pub fn from_outcome(
        scenario: &str,
        subject: &str,
        concurrency: usize,
        unit: &str,
        outcome: &Outcome,
    ) -> Self {
        Self {
            scenario: scenario.to_owned(),
            subject: subject.to_owned(),
            concurrency: concurrency.to_string(),
            rate: outcome.rate(),
            unit: unit.to_owned(),
            p50_ms: Some(outcome.quantile_ms(0.50)),
            p99_ms: Some(outcome.quantile_ms(0.99)),
            errors: outcome.errors,
            note: outcome
                .first_error
                .as_ref()
                .map(|error| format!("first error: {}", shorten(error, 120)))
                .unwrap_or_default(),
            ..Self::default()
        }
    }

    /// The measured values as text, in the order of the report's columns: scenario, subject,
    /// concurrency, throughput with its unit, p50 and p99 in ms, errors, peak RSS in MiB.
    fn cells(&self) -> [String; 8] {
        [
            self.scenario.clone(),
            self.subject.clone(),
            self.concurrency.clone(),
            format!("{} {}", number(self.rate), self.unit),
            optional(self.p50_ms),
            optional(self.p99_ms),
            self.errors.to_string(),
            optional(self.peak_rss_mib),
        ]
    }
}

/// One target of issue 9, checked.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub what: String,
    pub measured: String,
    pub target: String,
    /// `None` when it could not be decided (not measured).
    pub met: Option<bool>,
}

/// Everything a run measured.
#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub verdicts: Vec<Verdict>,
    pub notes: Vec<String>,
    /// Charts of measurements the rows only sum up, beside those drawn from the rows.
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn add(&mut self, row: Row) {
        eprintln!("  {}", format_row(&row));
        self.rows.push(row);
    }

    pub fn verdict(&mut self, verdict: Verdict) {
        eprintln!(
            "  => {}: {} (target {}) {}",
            verdict.what,
            verdict.measured,
            verdict.target,
            mark(verdict.met)
        );
        self.verdicts.push(verdict);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("  note: {note}");
        self.notes.push(note);
    }

    pub fn figure(&mut self, figure: Figure) {
        self.figures.push(figure);
    }

    /// The whole report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| scenario | subject | conc. | throughput | p50 ms | p99 ms | errors | peak RSS MiB \
             | CPU cores bench/pg/others | load 1m before→after | note |\n",
        );
        out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |\n");
        for row in &self.rows {
            let usage = row.usage.map_or_else(
                || ("—".to_owned(), "—".to_owned()),
                |usage| {
                    (
                        format!(
                            "{:.2}/{:.2}/{:.2}",
                            usage.own_cores, usage.postgres_cores, usage.other_cores
                        ),
                        format!("{:.2}→{:.2}", usage.load_before, usage.load_after),
                    )
                },
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                row.cells().join(" | "),
                usage.0,
                usage.1,
                row.note.replace('|', "/"),
            );
        }
        out.push_str("\n| target | measured | wanted | met |\n| --- | --- | --- | --- |\n");
        for verdict in &self.verdicts {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                verdict.what,
                verdict.measured,
                verdict.target,
                mark(verdict.met)
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

/// What the progress line writes before and after each of [`Row::cells`].
const LINE_LABELS: [(&str, &str); 8] = [
    ("", ""),
    ("", ""),
    ("c=", ""),
    ("", ""),
    ("p50 ", " ms"),
    ("p99 ", " ms"),
    ("errors ", ""),
    ("peak RSS ", " MiB"),
];

/// The row as the progress line printed when it is measured.
fn format_row(row: &Row) -> String {
    let mut line = row
        .cells()
        .iter()
        .zip(LINE_LABELS)
        .map(|(cell, (before, after))| format!("{before}{cell}{after}"))
        .collect::<Vec<_>>()
        .join(" | ");
    if let Some(usage) = row.usage {
        let _ = write!(
            line,
            " | cores bench {:.2} pg {:.2} others {:.2} | load {:.2}→{:.2}",
            usage.own_cores,
            usage.postgres_cores,
            usage.other_cores,
            usage.load_before,
            usage.load_after
        );
    }
    if !row.note.is_empty() {
        let _ = write!(line, " | {}", row.note);
    }
    line
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// A throughput with a sensible number of digits.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        "—".to_owned()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn optional(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => number(value),
        _ => "—".to_owned(),
    }
}

/// `text` cut to `max` characters.
pub fn shorten(text: &str, max: usize) -> String {
    let single_line = text.replace('\n', " ");
    if single_line.chars().count() <= max {
        single_line
    } else {
        single_line.chars().take(max).collect::<String>() + "…"
    }
}

/// A ratio as a percentage.
pub fn percent(ratio: f64) -> String {
    format!("{:.0} %", ratio * 100.0)
}
