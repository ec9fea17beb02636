//! The opaque `next_page_token` of `ListNotifications`: where the page ends, and the request it
//! belongs to, so a token cannot be replayed against another account or filter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::domain::notification::Cursor;

/// A decoded page token.
pub(super) struct PageToken {
    pub account_id: Uuid,
    /// The request's `state` filter, as its enum number.
    pub state: i32,
    pub cursor: Cursor,
}

impl PageToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "1|{}|{}|{}|{}",
            self.account_id.simple(),
            self.state,
            self.cursor.created_at.timestamp_micros(),
            self.cursor.id.simple()
        ))
    }

    /// `None` for an empty token (the first page).
    pub fn parse(token: &str) -> Result<Option<Self>, ()> {
        if token.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| ())?;
        let text = String::from_utf8(bytes).map_err(|_| ())?;
        let mut parts = text.split('|');
        let (Some("1"), Some(account), Some(state), Some(micros), Some(id), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(());
        };
        let created_at = micros
            .parse()
            .ok()
            .and_then(chrono::DateTime::from_timestamp_micros)
            .ok_or(())?;
        Ok(Some(Self {
            account_id: Uuid::try_parse(account).map_err(|_| ())?,
            state: state.parse().map_err(|_| ())?,
            cursor: Cursor {
                created_at,
                id: Uuid::try_parse(id).map_err(|_| ())?,
            },
        }))
    }

    /// The cursor, when the token was issued for this account and state.
    pub fn cursor_for(self, account_id: Uuid, state: i32) -> Result<Cursor, ()> {
        if self.account_id == account_id && self.state == state {
            Ok(self.cursor)
        } else {
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_request() {
        let account = Uuid::new_v4();
        let token = PageToken {
            account_id: account,
            state: 3,
            cursor: Cursor {
                created_at: crate::store::now(),
                id: Uuid::now_v7(),
            },
        };
        let cursor = token.cursor;
        let parsed = PageToken::parse(&token.encode()).unwrap().unwrap();
        assert_eq!(parsed.cursor_for(account, 3), Ok(cursor));
        let parsed = PageToken::parse(&token.encode()).unwrap().unwrap();
        assert_eq!(parsed.cursor_for(account, 0), Err(()));
        let parsed = PageToken::parse(&token.encode()).unwrap().unwrap();
        assert_eq!(parsed.cursor_for(Uuid::new_v4(), 3), Err(()));
        assert!(PageToken::parse("garbage!").is_err());
        assert!(PageToken::parse("").unwrap().is_none());
    }
}
