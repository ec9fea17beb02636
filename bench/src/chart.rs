//! SVG line charts of a run, written beside the Markdown report (`--markdown PATH`) so
//! `docs/BENCHMARKS.md` can show them: plain `<svg>` with `<polyline>`, `<line>` and `<text>`,
//! written by hand (no plotting crate, no fonts), 720×400 per panel.
//!
//! - [`LineChart`]: named series of `(x, y)` points with a title and axis labels, one panel.
//! - [`Figure`]: one file, one or more panels stacked top to bottom.
//! - [`against_concurrency`]: throughput and p99 against concurrency, from the report's rows.
//! - [`figures`] and [`write_beside`]: every chart of a run, written beside the report.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::{Report, Row};
use crate::scenarios::{check_username, create_profile};

/// Width of a panel, in SVG pixels.
const WIDTH: f64 = 720.0;
/// Height of a panel, in SVG pixels.
const HEIGHT: f64 = 400.0;
/// Room left of the plot area for the y ticks' labels and the y axis title.
const LEFT: f64 = 84.0;
/// Room right of the plot area.
const RIGHT: f64 = 24.0;
/// Room under the plot area for the x ticks' labels and the x axis title.
const BOTTOM: f64 = 52.0;
/// Baseline of the title.
const TITLE_Y: f64 = 24.0;
/// Height of one line of the legend.
const LEGEND_LINE: f64 = 18.0;
/// Font size of tick labels and the legend (the title is larger).
const FONT: f64 = 12.0;
/// Steps wanted on each axis, roughly.
const TICKS: usize = 5;
/// A series with at most this many points shows a dot on each.
const MARKED_POINTS: usize = 20;
/// One colour per series, in order: distinct for the usual forms of colour blindness
/// (Okabe–Ito, with black last).
const COLOURS: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000",
];

/// One named line.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub name: String,
    /// `(x, y)`, drawn in this order; points that are not finite are left out.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }

    /// The points that can be drawn.
    fn finite(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    }
}

/// A line chart: several named series on the same axes, each axis starting at zero (or below,
/// for negative values) so that ratios read true.
#[derive(Clone, Debug, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

impl LineChart {
    /// Whether there is nothing to draw: no series with a finite point.
    pub fn is_empty(&self) -> bool {
        self.series
            .iter()
            .all(|series| series.finite().next().is_none())
    }

    /// The chart as a panel: SVG elements in a `WIDTH`×`HEIGHT` box at the origin. Each series
    /// keeps the colour of its place in `series`, drawn or not.
    fn panel(&self, out: &mut String) {
        let drawn: Vec<(usize, &Series)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, series)| series.finite().next().is_some())
            .collect();
        let points = || drawn.iter().flat_map(|(_, series)| series.finite());
        let x_axis = Axis::spanning(points().map(|(x, _)| x));
        let y_axis = Axis::spanning(points().map(|(_, y)| y));

        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{TITLE_Y}" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
        let top = legend(out, &drawn);
        let plot = Plot {
            left: LEFT,
            top,
            width: WIDTH - LEFT - RIGHT,
            height: HEIGHT - top - BOTTOM,
            x: x_axis,
            y: y_axis,
        };
        plot.axes(out, &self.x_label, &self.y_label);
        for (index, series) in &drawn {
            let colour = COLOURS[index % COLOURS.len()];
            let coordinates = series
                .finite()
                .map(|(x, y)| format!("{:.1},{:.1}", plot.px(x), plot.py(y)))
                .collect::<Vec<_>>();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" points="{}"/>"#,
                coordinates.join(" ")
            );
            if coordinates.len() <= MARKED_POINTS {
                for (x, y) in series.finite() {
                    let _ = writeln!(
                        out,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"/>"#,
                        plot.px(x),
                        plot.py(y)
                    );
                }
            }
        }
    }
}

/// One SVG file: its panels stacked top to bottom.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    /// What the file name ends with, after the report's stem and a dash (`import-100000`).
    pub name: String,
    /// The image's text in the Markdown report.
    pub title: String,
    pub panels: Vec<LineChart>,
}

impl Figure {
    /// The SVG document, or `None` when no panel has anything to draw (the figure is then not
    /// written). Empty panels are left out.
    pub fn svg(&self) -> Option<String> {
        let panels: Vec<&LineChart> = self.panels.iter().filter(|p| !p.is_empty()).collect();
        if panels.is_empty() {
            return None;
        }
        let height = HEIGHT * panels.len() as f64;
        let mut out = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="{FONT}">"#
        );
        out.push('\n');
        let _ = writeln!(out, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(
            out,
            r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
        );
        for (index, panel) in panels.iter().enumerate() {
            let _ = writeln!(
                out,
                r#"<g transform="translate(0,{})">"#,
                HEIGHT * index as f64
            );
            panel.panel(&mut out);
            out.push_str("</g>\n");
        }
        out.push_str("</svg>\n");
        Some(out)
    }
}

/// Throughput and p99 against concurrency of `subjects` in `scenario`'s rows, one panel each,
/// one series per subject in that order: only rows whose concurrency is a number are plotted,
/// and only series with points at two concurrencies at least (a single-point comparison reads
/// better in the table). `what` names the scenario in the titles.
pub fn against_concurrency(
    rows: &[Row],
    scenario: &str,
    subjects: &[&str],
    name: &str,
    what: &str,
) -> Figure {
    let rows: Vec<(&Row, f64)> = rows
        .iter()
        .filter(|row| row.scenario == scenario && subjects.contains(&row.subject.as_str()))
        .filter_map(|row| Some((row, row.concurrency.trim().parse::<f64>().ok()?)))
        .collect();
    let throughput = by_subject(&rows, subjects, |row| Some(row.rate));
    let p99 = by_subject(&rows, subjects, |row| row.p99_ms);
    // The units of the subjects drawn, in order.
    let mut units: Vec<&str> = Vec::new();
    for (row, _) in &rows {
        if throughput.iter().any(|series| series.name == row.subject)
            && !units.contains(&row.unit.as_str())
        {
            units.push(&row.unit);
        }
    }
    Figure {
        name: name.to_owned(),
        title: format!("{what}: throughput and p99 latency against concurrency"),
        panels: vec![
            LineChart {
                title: format!("{what}: throughput"),
                x_label: "concurrency (calls in flight)".into(),
                y_label: format!("throughput ({})", units.join(", ")),
                series: throughput,
            },
            LineChart {
                title: format!("{what}: p99 latency"),
                x_label: "concurrency (calls in flight)".into(),
                y_label: "p99 latency (ms)".into(),
                series: p99,
            },
        ],
    }
}

/// Every chart of a run: CreateProfile's and CheckUsername's drawn from the rows (Roster next to
/// pgbench, and next to the bare tonic echo server), then those the scenarios added.
pub fn figures(report: &Report) -> Vec<Figure> {
    let mut figures = vec![
        against_concurrency(
            &report.rows,
            create_profile::SCENARIO,
            &[create_profile::ROSTER, create_profile::BASELINE],
            "create-profile",
            "CreateProfile",
        ),
        against_concurrency(
            &report.rows,
            check_username::SCENARIO,
            &[check_username::ROSTER, check_username::BASELINE],
            "check-username",
            "CheckUsername",
        ),
    ];
    figures.extend(report.figures.iter().cloned());
    figures
}

/// Writes each figure that has something to draw into `markdown`'s directory, as
/// `<markdown's stem>-<figure's name>.svg`, and returns a Markdown line `![title](file)` for
/// each file written, to append to the report. A file that cannot be written is reported on
/// stderr and left out.
pub fn write_beside(markdown: &Path, figures: &[Figure]) -> String {
    let directory = markdown.parent().unwrap_or(Path::new(""));
    let stem = markdown
        .file_stem()
        .map_or_else(|| "roster-bench".into(), |stem| stem.to_string_lossy());
    let mut lines = String::new();
    for figure in figures {
        let Some(svg) = figure.svg() else {
            continue;
        };
        let file = format!("{stem}-{}.svg", figure.name);
        let path = directory.join(&file);
        if let Err(error) = std::fs::write(&path, svg) {
            eprintln!("cannot write {}: {error}", path.display());
            continue;
        }
        eprintln!("chart written to {}", path.display());
        // CommonMark takes a link with spaces or parentheses between angle brackets.
        let link = if file.contains(|c: char| c.is_whitespace() || c == '(' || c == ')') {
            format!("<{file}>")
        } else {
            file
        };
        let _ = writeln!(
            lines,
            "\n![{}]({link})",
            figure.title.replace(['[', ']'], "")
        );
    }
    lines
}

/// One series per subject, in the order of `subjects`, from the rows' `value` (a finite one),
/// sorted by concurrency; a series with fewer than two concurrencies is left out.
fn by_subject(
    rows: &[(&Row, f64)],
    subjects: &[&str],
    value: impl Fn(&Row) -> Option<f64>,
) -> Vec<Series> {
    subjects
        .iter()
        .map(|subject| {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|(row, _)| row.subject == *subject)
                .filter_map(|(row, concurrency)| {
                    Some((*concurrency, value(row).filter(|y| y.is_finite())?))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series::new(*subject, points)
        })
        .filter(|series| {
            let mut concurrencies = series.points.iter().map(|(x, _)| *x);
            concurrencies
                .next()
                .is_some_and(|first| concurrencies.any(|x| x != first))
        })
        .collect()
}

/// The legend under the title, its entries wrapped over as many lines as they need; returns
/// where the plot area starts.
fn legend(out: &mut String, drawn: &[(usize, &Series)]) -> f64 {
    let (mut x, mut y) = (LEFT, TITLE_Y + 22.0);
    for (index, series) in drawn {
        // Sans-serif at 12 px averages about 6.5 px a character.
        let width = 28.0 + series.name.chars().count() as f64 * 6.5 + 18.0;
        if x > LEFT && x + width > WIDTH - RIGHT {
            x = LEFT;
            y += LEGEND_LINE;
        }
        let colour = COLOURS[index % COLOURS.len()];
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/>"#,
            y - 4.0,
            x + 22.0,
            y - 4.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{y:.1}">{}</text>"#,
            x + 28.0,
            escape(&series.name)
        );
        x += width;
    }
    y + 16.0
}

/// An axis: from `min` to `max` with a tick every `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Axis {
    min: f64,
    max: f64,
    step: f64,
}

impl Axis {
    /// A range that holds every value and zero, cut into about [`TICKS`] round steps.
    fn spanning(values: impl Iterator<Item = f64>) -> Self {
        let (low, high) = values.fold((0.0_f64, 0.0_f64), |(low, high), value| {
            (low.min(value), high.max(value))
        });
        // All zeros: 0 to 1.
        let high = if high > low { high } else { low + 1.0 };
        let step = nice_step((high - low) / TICKS as f64);
        let min = (low / step).floor() * step;
        let mut max = (high / step).ceil() * step;
        if max <= min {
            max = min + step;
        }
        Self { min, max, step }
    }

    /// The ticks' values, from `min` to `max`.
    fn ticks(&self) -> Vec<f64> {
        let count = ((self.max - self.min) / self.step).round() as usize;
        (0..=count)
            .map(|k| self.min + k as f64 * self.step)
            .collect()
    }

    /// `value`'s place between `min` (0) and `max` (1).
    fn fraction(&self, value: f64) -> f64 {
        (value - self.min) / (self.max - self.min)
    }

    /// A tick's label: as few decimals as the step needs, thousands separated by commas.
    fn label(&self, value: f64) -> String {
        let mut decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10()).ceil().clamp(0.0, 6.0) as usize
        };
        // Steps of 2.5 times a power of ten need one digit more.
        if (self.step * 10f64.powi(decimals as i32)).fract().abs() > 1e-6 {
            decimals += 1;
        }
        if decimals > 0 {
            return format!("{value:.decimals$}");
        }
        let digits = (value.round() as i64).unsigned_abs().to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if value.round() < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    }
}

/// The round step (1, 2, 2.5 or 5 times a power of ten) closest above `rough`.
fn nice_step(rough: f64) -> f64 {
    let magnitude = 10f64.powf(rough.log10().floor());
    let normalized = rough / magnitude;
    let factor = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|factor| normalized <= factor * (1.0 + 1e-9))
        .unwrap_or(10.0);
    factor * magnitude
}

/// The plot area of a panel and its axes.
struct Plot {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x: Axis,
    y: Axis,
}

impl Plot {
    /// `x` in SVG pixels.
    fn px(&self, x: f64) -> f64 {
        self.left + self.x.fraction(x) * self.width
    }

    /// `y` in SVG pixels (upwards).
    fn py(&self, y: f64) -> f64 {
        self.top + self.height - self.y.fraction(y) * self.height
    }

    /// Grid lines, ticks with their labels, both axes and their titles.
    fn axes(&self, out: &mut String, x_label: &str, y_label: &str) {
        let (right, bottom) = (self.left + self.width, self.top + self.height);
        for tick in self.y.ticks() {
            let y = self.py(tick);
            let _ = writeln!(
                out,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                self.left,
                self.left - 6.0,
                y + 4.0,
                escape(&self.y.label(tick))
            );
        }
        for tick in self.x.ticks() {
            let x = self.px(tick);
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\n\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                bottom + 5.0,
                bottom + 18.0,
                escape(&self.x.label(tick))
            );
        }
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"#333\" points=\"{:.1},{:.1} {:.1},{bottom:.1} {right:.1},{bottom:.1}\"/>",
            self.left, self.top, self.left
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            self.left + self.width / 2.0,
            HEIGHT - 12.0,
            escape(x_label)
        );
        let (x, y) = (16.0, self.top + self.height / 2.0);
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {x:.1} {y:.1})\">{}</text>",
            escape(y_label)
        );
    }
}

/// `text` with XML's special characters escaped, for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\n' | '\t') => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> LineChart {
        LineChart {
            title: "Rows <applied> over time".into(),
            x_label: "seconds".into(),
            y_label: "rows".into(),
            series: vec![
                Series::new(
                    "Roster apply & co",
                    vec![(0.0, 0.0), (10.0, 40_000.0), (20.0, 70_000.0)],
                ),
                Series::new("bare \"SQL\"", vec![(0.0, 0.0), (5.0, 50_000.0)]),
            ],
        }
    }

    /// The `points` attribute of each data polyline (the ones drawn with a series' colour).
    fn series_points(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.lines()
            .filter(|line| line.starts_with("<polyline") && line.contains("stroke-width=\"2\""))
            .map(|line| {
                let start = line.find("points=\"").unwrap() + "points=\"".len();
                let end = start + line[start..].find('"').unwrap();
                line[start..end]
                    .split(' ')
                    .map(|pair| {
                        let (x, y) = pair.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn charts_are_svg_with_scaled_points_and_an_escaped_legend() {
        let figure = Figure {
            name: "import-100000".into(),
            title: "Bulk import".into(),
            panels: vec![chart()],
        };
        let svg = figure.svg().unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
        assert!(svg.contains(">Roster apply &amp; co</text>"));
        assert!(svg.contains(">bare &quot;SQL&quot;</text>"));
        assert!(svg.contains(">Rows &lt;applied&gt; over time</text>"));
        assert!(!svg.contains("apply & co"));

        let lines = series_points(&svg);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 3);
        assert_eq!(lines[1].len(), 2);
        for (x, y) in lines.iter().flatten() {
            assert!((LEFT..=WIDTH - RIGHT).contains(x), "x {x}");
            assert!((TITLE_Y..=HEIGHT - BOTTOM).contains(y), "y {y}");
        }
        // The origin sits in the bottom left corner of the plot area, and time runs rightwards
        // while rows go up.
        let (origin, last) = (lines[0][0], lines[0][2]);
        assert_eq!(origin.0, LEFT);
        assert_eq!(origin.1, HEIGHT - BOTTOM);
        assert!(last.0 > origin.0 && last.1 < origin.1);
        // Round ticks: 0 to 20 s by 5, 0 to 80,000 rows by 20,000.
        for tick in ["0", "5", "20", "20,000", "80,000"] {
            assert!(svg.contains(&format!(">{tick}</text>")), "tick {tick}");
        }
    }

    #[test]
    fn figures_are_written_beside_the_markdown_and_listed() {
        let directory = tempfile::tempdir().unwrap();
        let markdown = directory.path().join("bench.md");
        let figures = [
            Figure {
                name: "import-100000".into(),
                title: "Bulk import [100000 rows]".into(),
                panels: vec![chart()],
            },
            Figure {
                name: "check-username".into(),
                title: "nothing measured".into(),
                panels: vec![LineChart::default()],
            },
        ];
        let lines = write_beside(&markdown, &figures);
        assert_eq!(
            lines,
            "\n![Bulk import 100000 rows](bench-import-100000.svg)\n"
        );
        let svg = std::fs::read_to_string(directory.path().join("bench-import-100000.svg"));
        assert!(svg.unwrap().starts_with("<svg"));
        assert!(!directory.path().join("bench-check-username.svg").exists());
    }

    #[test]
    fn nothing_to_draw_is_no_figure() {
        let empty = Figure {
            name: "x".into(),
            title: "x".into(),
            panels: vec![
                LineChart::default(),
                LineChart {
                    series: vec![Series::new("nan", vec![(f64::NAN, 1.0)])],
                    ..LineChart::default()
                },
            ],
        };
        assert!(empty.svg().is_none());
    }

    #[test]
    fn axes_have_round_ticks() {
        let axis = Axis::spanning([3.0, 64.0].into_iter());
        assert_eq!((axis.min, axis.max, axis.step), (0.0, 80.0, 20.0));
        assert_eq!(axis.ticks(), [0.0, 20.0, 40.0, 60.0, 80.0]);
        let axis = Axis::spanning([1_000_000.0].into_iter());
        assert_eq!(
            (axis.min, axis.max, axis.step),
            (0.0, 1_000_000.0, 200_000.0)
        );
        assert_eq!(axis.label(400_000.0), "400,000");
        assert_eq!(axis.label(1_000_000.0), "1,000,000");
        let axis = Axis::spanning([0.0].into_iter());
        assert_eq!((axis.min, axis.max, axis.step), (0.0, 1.0, 0.2));
        assert_eq!(axis.label(0.4), "0.4");
        let axis = Axis::spanning([12.5].into_iter());
        assert_eq!(axis.step, 2.5);
        assert_eq!(axis.label(7.5), "7.5");
        assert_eq!(axis.label(5.0), "5.0");
    }

    #[test]
    fn concurrency_charts_take_subjects_with_two_numeric_points() {
        let row = |subject: &str, concurrency: &str, rate: f64, p99: Option<f64>| Row {
            scenario: "CreateProfile".into(),
            subject: subject.into(),
            concurrency: concurrency.into(),
            rate,
            unit: "calls/s".into(),
            p99_ms: p99,
            ..Row::default()
        };
        let rows = vec![
            row("Roster", "8", 100.0, Some(5.0)),
            row("baseline", "8", 300.0, None),
            row("Roster", "32", 200.0, Some(9.0)),
            row("baseline", "32", 500.0, None),
            row("Roster without request_id", "32", 210.0, Some(8.0)),
            row("Roster without request_id", "64", 220.0, Some(9.0)),
            row("Roster", "1 import", 1.0, Some(1.0)),
            row("twice at one concurrency", "32", 1.0, Some(1.0)),
            row("twice at one concurrency", "32", 2.0, Some(1.0)),
            Row {
                scenario: "Other".into(),
                ..row("Roster", "64", 1.0, Some(1.0))
            },
        ];
        let subjects = ["Roster", "baseline", "twice at one concurrency"];
        let figure = against_concurrency(
            &rows,
            "CreateProfile",
            &subjects,
            "create-profile",
            "CreateProfile",
        );
        let names = |panel: &LineChart| {
            panel
                .series
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&figure.panels[0]), ["Roster", "baseline"]);
        assert_eq!(
            figure.panels[0].series[0].points,
            [(8.0, 100.0), (32.0, 200.0)]
        );
        assert_eq!(names(&figure.panels[1]), ["Roster"]);
        assert_eq!(figure.panels[0].y_label, "throughput (calls/s)");
        assert!(figure.svg().is_some());
        assert!(
            against_concurrency(&rows, "None", &subjects, "x", "x")
                .svg()
                .is_none()
        );
    }
}
