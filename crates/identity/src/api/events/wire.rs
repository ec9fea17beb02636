//! An event on the wire: the protobuf message (gRPC and the NATS payload) and its JSON form
//! (the NATS `Roster-Event-Json` header), which follows the protobuf JSON mapping of the same
//! message (camelCase names, 64-bit numbers as strings).

use std::io;

use prost_types::value::Kind;
use roster_proto::identity::v1 as pb;
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::ser::Formatter;

use crate::api::convert::timestamp;
use crate::domain::event::{Event, FieldChange, Value};

/// The protobuf message of `event`.
pub fn event(event: &Event) -> pb::Event {
    pb::Event {
        sequence: event.sequence,
        id: event.id.to_string(),
        time: Some(timestamp(event.time)),
        account_id: event.account_id.to_string(),
        subject_type: event.subject.kind().to_owned(),
        subject_id: event.subject.id().to_string(),
        r#type: event.event_type.as_str().to_owned(),
        actor: event.actor.clone(),
        caller: event.caller.clone(),
        source: event.source.as_str().to_owned(),
        request_id: event.request_id.clone(),
        trace_id: event.trace_id.clone(),
        changes: event.changes.iter().map(change).collect(),
    }
}

fn change(change: &FieldChange) -> pb::FieldChange {
    pb::FieldChange {
        field: change.field.clone(),
        old_value: change.old.as_ref().map(value),
        new_value: change.new.as_ref().map(value),
    }
}

fn value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => Kind::NumberValue(*number as f64),
        Value::Text(text) => Kind::StringValue(text.clone()),
        Value::List(items) => Kind::ListValue(prost_types::ListValue {
            values: items
                .iter()
                .map(|item| prost_types::Value {
                    kind: Some(Kind::StringValue(item.clone())),
                })
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The JSON form of `event`, as the protobuf JSON mapping writes [`pb::Event`], in one line
/// of ASCII for a message header: every character beyond ASCII (they stand only inside
/// strings) is written as a JSON `\u` escape. The members come in the order of their names.
///
/// Written straight from the event, without a `serde_json::Value` in between: the relay writes
/// one per published event, and building the tree, then a string from it, then an ASCII copy
/// of that string was a third of the relay's work.
pub fn json_header(event: &Event) -> String {
    let mut out = Vec::with_capacity(384 + 96 * event.changes.len());
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, AsciiOnly);
    JsonEvent(event)
        .serialize(&mut serializer)
        .expect("an event always has a JSON form");
    // The formatter writes nothing but ASCII.
    String::from_utf8(out).expect("ASCII is UTF-8")
}

/// [`json_header`]'s event, members named and ordered as written.
struct JsonEvent<'a>(&'a Event);

impl Serialize for JsonEvent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut object = serializer.serialize_struct("Event", 13)?;
        object.serialize_field("accountId", &event.account_id)?;
        object.serialize_field("actor", &event.actor)?;
        object.serialize_field("caller", &event.caller)?;
        object.serialize_field("changes", &JsonChanges(&event.changes))?;
        object.serialize_field("id", &event.id)?;
        object.serialize_field("requestId", &event.request_id)?;
        object.serialize_field("sequence", &Shown(event.sequence))?;
        object.serialize_field("source", event.source.as_str())?;
        object.serialize_field("subjectId", &event.subject.id())?;
        object.serialize_field("subjectType", event.subject.kind())?;
        object.serialize_field(
            "time",
            &event
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        )?;
        object.serialize_field("traceId", &event.trace_id)?;
        object.serialize_field("type", event.event_type.as_str())?;
        object.end()
    }
}

struct JsonChanges<'a>(&'a [FieldChange]);

impl Serialize for JsonChanges<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(JsonChange))
    }
}

struct JsonChange<'a>(&'a FieldChange);

impl Serialize for JsonChange<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let change = self.0;
        let mut object = serializer.serialize_struct("FieldChange", 3)?;
        object.serialize_field("field", &change.field)?;
        // `Value` is written as the JSON value it is.
        match &change.new {
            Some(new) => object.serialize_field("newValue", new)?,
            None => object.skip_field("newValue")?,
        }
        match &change.old {
            Some(old) => object.serialize_field("oldValue", old)?,
            None => object.skip_field("oldValue")?,
        }
        object.end()
    }
}

/// A value written as the JSON string of its `Display` form.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// serde_json's compact formatting, with every character beyond ASCII in a string written as a
/// `\u` escape of its UTF-16 code units (two for a character beyond the Basic Multilingual Plane).
struct AsciiOnly;

impl Formatter for AsciiOnly {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(|character: char| !character.is_ascii()) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let character = rest[at..].chars().next().expect("found at `at`");
            let mut units = [0u16; 2];
            for unit in character.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + character.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests;
