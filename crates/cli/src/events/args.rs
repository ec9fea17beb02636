//! The values `roster events` flags take. Each parser is a clap value parser, so a bad value is
//! refused before any call, in a message naming the flag (`invalid value '3x' for '--since
//! <TIME>': …`).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prost_types::Timestamp;
use roster_identity::domain::event::EventType;

use crate::client::parse_duration;

/// A point in time: an age back from now (`30m`, `24h`, `7d`) or an RFC 3339 time.
pub fn parse_time(value: &str) -> Result<Timestamp, String> {
    let time = match DateTime::parse_from_rfc3339(value) {
        Ok(time) => time.to_utc(),
        Err(_) => {
            let age = parse_age(value).map_err(|_| {
                format!(
                    "{value:?} is neither an age such as 30m, 24h or 7d nor an RFC 3339 time \
                     such as 2025-06-01T09:00:00Z"
                )
            })?;
            TimeDelta::from_std(age)
                .ok()
                .and_then(|age| Utc::now().checked_sub_signed(age))
                .ok_or_else(|| format!("{value:?} reaches back before any time"))?
        }
    };
    Ok(Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    })
}

/// A duration as `--timeout` takes it (`30s`, `2m`, `1h`), or a number of days (`7d`).
fn parse_age(value: &str) -> Result<Duration, String> {
    match value.strip_suffix('d') {
        Some(days) => Ok(parse_duration(days)? * 86_400),
        None => parse_duration(value),
    }
}

/// An event type of the closed list, by its wire name.
pub fn parse_event_type(value: &str) -> Result<String, String> {
    match EventType::from_name(value) {
        Some(kind) => Ok(kind.as_str().to_owned()),
        None => {
            let known: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
            Err(format!(
                "{value:?} is not an event type; one of: {}",
                known.join(", ")
            ))
        }
    }
}

/// A position in the log: `now` (its end when the watch starts) or the sequence of the last
/// event seen, every later one to come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    Now,
    After(i64),
}

impl Cursor {
    /// `now`, or a sequence number (0 or more).
    pub fn parse(value: &str) -> Result<Cursor, String> {
        if value == "now" {
            return Ok(Cursor::Now);
        }
        parse_sequence(value).map(Cursor::After)
    }
}

/// A sequence number: 0 or more.
pub fn parse_sequence(value: &str) -> Result<i64, String> {
    value
        .parse::<i64>()
        .ok()
        .filter(|sequence| *sequence >= 0)
        .ok_or_else(|| format!("{value:?} is neither `now` nor a sequence number (0 or more)"))
}

/// As WatchEventsRequest.cursor takes it.
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::Now => f.write_str("now"),
            Cursor::After(sequence) => write!(f, "{sequence}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_ages_or_rfc3339() {
        let now = Utc::now().timestamp();
        let day_ago = parse_time("24h").unwrap().seconds;
        assert!((now - 86_400 - day_ago).abs() <= 1, "{day_ago}");
        assert_eq!(
            parse_time("7d").unwrap().seconds,
            parse_time("168h").unwrap().seconds
        );
        assert!((now - 1800 - parse_time("30m").unwrap().seconds).abs() <= 1);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 0
            }
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20.5+02:00").unwrap(),
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 500_000_000
            }
        );
        for bad in ["yesterday", "3x", "d", "-1h", "2023-11-14"] {
            let error = parse_time(bad).unwrap_err();
            assert!(error.contains("RFC 3339"), "{bad}: {error}");
        }
    }

    #[test]
    fn event_types_come_from_the_closed_list() {
        assert_eq!(
            parse_event_type("roster.profile.deleted").unwrap(),
            "roster.profile.deleted"
        );
        let error = parse_event_type("roster.profile.renamed").unwrap_err();
        assert!(
            error.contains("not an event type") && error.contains("roster.signin.locked"),
            "{error}"
        );
    }

    #[test]
    fn cursors_are_now_or_a_sequence() {
        assert_eq!(Cursor::parse("now"), Ok(Cursor::Now));
        assert_eq!(Cursor::parse("0"), Ok(Cursor::After(0)));
        assert_eq!(Cursor::parse("42"), Ok(Cursor::After(42)));
        assert_eq!(Cursor::After(42).to_string(), "42");
        assert_eq!(Cursor::Now.to_string(), "now");
        for bad in ["-1", "soon", "", "4 2"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
