use chrono::TimeZone;
use uuid::Uuid;

use super::*;
use crate::domain::event::{EventType, Source, Subject};
use crate::domain::ids::{AccountId, ProfileId};

fn event(changes: Vec<FieldChange>) -> Event {
    Event {
        sequence: 9_007_199_254_740_993,
        id: Uuid::parse_str("0193a5d4-8e2b-7c31-9a0f-5b6c7d8e9f01").unwrap(),
        time: chrono::Utc
            .timestamp_opt(1_796_000_000, 123_456_789)
            .single()
            .unwrap(),
        account_id: AccountId(Uuid::parse_str("0193a5d4-0000-7000-8000-000000000001").unwrap()),
        subject: Subject::Profile(ProfileId(
            Uuid::parse_str("0193a5d4-0000-7000-8000-0000000000aa").unwrap(),
        )),
        event_type: EventType::ProfileCreated,
        actor: "key:ops \"night\"".into(),
        caller: "bulk-import".into(),
        source: Source::Import,
        request_id: "req\\1\n".into(),
        trace_id: String::new(),
        changes,
    }
}

fn change(field: &str, old: Option<Value>, new: Option<Value>) -> FieldChange {
    FieldChange {
        field: field.into(),
        old,
        new,
    }
}

#[test]
fn the_json_header_is_the_protobuf_json_mapping_in_ascii_with_sorted_members() {
    let header = json_header(&event(vec![
        change(
            "first_name",
            Some(Value::Text("Zoë".into())),
            Some(Value::Text("Ωmega 😀 \u{1}".into())),
        ),
        change("suspended", None, Some(Value::Bool(true))),
        change("failures", Some(Value::Number(-3)), None),
        change(
            "roles",
            Some(Value::List(vec![])),
            Some(Value::List(vec!["admin".into(), "ünï".into()])),
        ),
    ]));
    assert_eq!(
        header,
        concat!(
            r#"{"accountId":"0193a5d4-0000-7000-8000-000000000001","actor":"key:ops \"night\"","#,
            r#""caller":"bulk-import","changes":["#,
            r#"{"field":"first_name","newValue":"\u03a9mega \ud83d\ude00 \u0001","oldValue":"Zo\u00eb"},"#,
            r#"{"field":"suspended","newValue":true},"#,
            r#"{"field":"failures","oldValue":-3},"#,
            r#"{"field":"roles","newValue":["admin","\u00fcn\u00ef"],"oldValue":[]}],"#,
            r#""id":"0193a5d4-8e2b-7c31-9a0f-5b6c7d8e9f01","requestId":"req\\1\n","#,
            r#""sequence":"9007199254740993","source":"import","#,
            r#""subjectId":"0193a5d4-0000-7000-8000-0000000000aa","subjectType":"profile","#,
            r#""time":"2026-11-30T00:53:20.123456Z","traceId":"","type":"roster.profile.created"}"#,
        )
    );
    assert!(header.is_ascii());
    // It reads back as the event's values.
    let read: serde_json::Value = serde_json::from_str(&header).unwrap();
    assert_eq!(read["changes"][0]["newValue"], "Ωmega 😀 \u{1}");
    assert_eq!(read["changes"][0]["oldValue"], "Zoë");
    assert_eq!(read["requestId"], "req\\1\n");
}

#[test]
fn an_event_without_changes_has_an_empty_list_of_them() {
    let header = json_header(&event(Vec::new()));
    let read: serde_json::Value = serde_json::from_str(&header).unwrap();
    assert_eq!(read["changes"], serde_json::json!([]));
    assert_eq!(read["sequence"], "9007199254740993");
}
