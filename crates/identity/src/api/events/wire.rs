//! An event on the wire: the protobuf message (gRPC and the NATS payload) and its JSON form
//! (the NATS `Roster-Event-Json` header), which follows the protobuf JSON mapping of the same
//! message (camelCase names, 64-bit numbers as strings).

use prost_types::value::Kind;
use roster_proto::identity::v1 as pb;
use serde_json::json;

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

/// The JSON form of `event`, as the protobuf JSON mapping writes [`pb::Event`].
pub fn json(event: &Event) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = event
        .changes
        .iter()
        .map(|change| {
            let mut object = json!({ "field": change.field });
            if let Some(old) = &change.old {
                object["oldValue"] = json_value(old);
            }
            if let Some(new) = &change.new {
                object["newValue"] = json_value(new);
            }
            object
        })
        .collect();
    json!({
        "sequence": event.sequence.to_string(),
        "id": event.id.to_string(),
        "time": event.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "accountId": event.account_id.to_string(),
        "subjectType": event.subject.kind(),
        "subjectId": event.subject.id().to_string(),
        "type": event.event_type.as_str(),
        "actor": event.actor,
        "caller": event.caller,
        "source": event.source.as_str(),
        "requestId": event.request_id,
        "traceId": event.trace_id,
        "changes": changes,
    })
}

/// `json` as one line of ASCII, for a message header: every character beyond ASCII (they
/// stand only inside strings) written as a JSON `\u` escape.
pub fn ascii_json(json: &serde_json::Value) -> String {
    let text = json.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut ascii = String::with_capacity(text.len() + text.len() / 2);
    for character in text.chars() {
        if character.is_ascii() {
            ascii.push(character);
        } else {
            let mut units = [0u16; 2];
            for unit in character.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    ascii
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Bool(flag) => json!(flag),
        Value::Number(number) => json!(number),
        Value::Text(text) => json!(text),
        Value::List(items) => json!(items),
    }
}
