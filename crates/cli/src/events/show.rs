//! How an event reads for people: the same columns in `events list`'s table and on each line
//! of `events watch`, its changes compact as `field: old → new` (values as JSON writes them,
//! `—` for none).

use prost_types::value::Kind;
use roster_proto::identity::v1 as pb;

use crate::output;

/// The columns of an event.
pub const HEADER: [&str; 7] = [
    "sequence", "time", "type", "subject", "actor", "source", "changes",
];

/// The widths of a watch line's columns but the last, which fit the usual values: a time to
/// the second, the longest event type, a UUID. A longer value shifts the rest of its line.
const WATCH_WIDTHS: [usize; 6] = [8, 20, 42, 36, 16, 8];

/// An event's cells, in [`HEADER`]'s order.
pub fn row(event: &pb::Event) -> [String; 7] {
    [
        event.sequence.to_string(),
        output::time(event.time.as_ref()),
        event.r#type.clone(),
        event.subject_id.clone(),
        event.actor.clone(),
        event.source.clone(),
        changes(&event.changes),
    ]
}

/// Cells as one line of a watch, padded to [`WATCH_WIDTHS`], as the header or an event.
pub fn watch_line(cells: &[String; 7]) -> String {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(WATCH_WIDTHS) {
        line.push_str(&format!("{cell:<width$}  "));
    }
    line.push_str(&cells[6]);
    line.trim_end().to_owned()
}

/// The header of a watch.
pub fn watch_header() -> String {
    watch_line(&HEADER.map(str::to_uppercase))
}

/// `first_name: "Ada" → "Augusta"; roles: [] → ["standard_user"]`.
pub fn changes(changes: &[pb::FieldChange]) -> String {
    changes
        .iter()
        .map(|change| {
            format!(
                "{}: {} → {}",
                change.field,
                compact(change.old_value.as_ref()),
                compact(change.new_value.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A value as JSON writes it (whole numbers without a fraction), `—` when there is none.
fn compact(value: Option<&prost_types::Value>) -> String {
    let Some(kind) = value.and_then(|value| value.kind.as_ref()) else {
        return "—".to_owned();
    };
    match kind {
        Kind::NullValue(_) => "null".to_owned(),
        Kind::NumberValue(number) if number.fract() == 0.0 && number.abs() < 1e15 => {
            format!("{}", *number as i64)
        }
        Kind::NumberValue(number) => number.to_string(),
        Kind::StringValue(text) => format!("{text:?}"),
        Kind::BoolValue(flag) => flag.to_string(),
        Kind::ListValue(list) => {
            let items: Vec<String> = list.values.iter().map(|item| compact(Some(item))).collect();
            format!("[{}]", items.join(", "))
        }
        Kind::StructValue(object) => {
            let fields: Vec<String> = object
                .fields
                .iter()
                .map(|(name, item)| format!("{name:?}: {}", compact(Some(item))))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(text: &str) -> Option<prost_types::Value> {
        Some(prost_types::Value {
            kind: Some(Kind::StringValue(text.to_owned())),
        })
    }

    #[test]
    fn changes_read_field_old_new() {
        let changes = [
            pb::FieldChange {
                field: "first_name".into(),
                old_value: text("Ada"),
                new_value: text("Augusta"),
            },
            pb::FieldChange {
                field: "email".into(),
                old_value: None,
                new_value: text("ada@example.com"),
            },
            pb::FieldChange {
                field: "roles".into(),
                old_value: Some(prost_types::Value {
                    kind: Some(Kind::ListValue(prost_types::ListValue { values: vec![] })),
                }),
                new_value: Some(prost_types::Value {
                    kind: Some(Kind::ListValue(prost_types::ListValue {
                        values: vec![text("standard_user").unwrap()],
                    })),
                }),
            },
            pb::FieldChange {
                field: "min_length".into(),
                old_value: Some(prost_types::Value {
                    kind: Some(Kind::NumberValue(12.0)),
                }),
                new_value: Some(prost_types::Value {
                    kind: Some(Kind::NumberValue(14.0)),
                }),
            },
        ];
        assert_eq!(
            super::changes(&changes),
            "first_name: \"Ada\" → \"Augusta\"; email: — → \"ada@example.com\"; \
             roles: [] → [\"standard_user\"]; min_length: 12 → 14"
        );
    }

    #[test]
    fn watch_lines_align_under_their_header() {
        let event = pb::Event {
            sequence: 7,
            r#type: "roster.profile.created".into(),
            subject_id: "3f2c0c4e-0000-4000-8000-000000000001".into(),
            actor: "operator".into(),
            source: "grpc".into(),
            ..Default::default()
        };
        let header = watch_header();
        let line = watch_line(&row(&event));
        assert_eq!(header.find("TYPE"), line.find("roster."));
        assert_eq!(header.find("ACTOR"), line.find("operator"));
        assert_eq!(header.find("SOURCE"), line.find("grpc"));
        assert!(line.ends_with("grpc"), "{line:?}");
    }
}
