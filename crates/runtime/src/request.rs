//! Request plumbing every service reads the same way: ids, request ids (AIP-155), page sizes and
//! page tokens (AIP-158), etags (AIP-154), update masks (AIP-134), batch sizes and byte bounds.
//!
//! Each parser names the request field it read in the violation it returns, so a caller is told
//! exactly which field to fix; parsers that can find several faults (update masks, lengths) report
//! all of them.

use uuid::Uuid;

use crate::error::{ApiError, FieldViolation};

/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Page size when the caller leaves it 0.
pub const DEFAULT_PAGE_SIZE: u64 = 100;

/// Largest page size a caller may ask for.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// A required UUID field; names the field when it is empty or not a UUID.
pub fn parse_id(field: &str, value: &str) -> Result<Uuid, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    Uuid::parse_str(value).map_err(|_| ApiError::invalid(field, "is not a UUID"))
}

/// A request id (AIP-155): up to 128 printable ASCII characters; empty means none.
pub fn check_request_id(field: &str, request_id: &str) -> Result<(), ApiError> {
    if request_id.len() > MAX_REQUEST_ID_BYTES || !request_id.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(ApiError::invalid(
            field,
            "must be at most 128 printable ASCII characters",
        ));
    }
    Ok(())
}

/// The page size a request asks for: 0 means [`DEFAULT_PAGE_SIZE`], at most [`MAX_PAGE_SIZE`].
pub fn page_size(requested: i32) -> Result<u64, ApiError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1.. if requested as u64 <= MAX_PAGE_SIZE => Ok(requested as u64),
        _ => Err(ApiError::invalid(
            "page_size",
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// A page token that carries the last id of the previous page behind a one-letter `prefix`
/// (opaque to callers); `None` for an empty token (the first page).
pub fn parse_id_token(prefix: char, token: &str) -> Result<Option<Uuid>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(prefix)
        .and_then(|id| Uuid::try_parse(id).ok())
        .map(Some)
        .ok_or_else(bad_page_token)
}

/// The token [`parse_id_token`] reads back.
pub fn id_token(prefix: char, last: Uuid) -> String {
    format!("{prefix}{}", last.simple())
}

/// A page token that carries the last number of the previous page behind `prefix`; 0 for an
/// empty token.
pub fn parse_number_token(prefix: char, token: &str) -> Result<i64, ApiError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix(prefix)
        .and_then(|number| number.parse().ok())
        .ok_or_else(bad_page_token)
}

/// The token [`parse_number_token`] reads back.
pub fn number_token(prefix: char, last: i64) -> String {
    format!("{prefix}{last}")
}

fn bad_page_token() -> ApiError {
    ApiError::invalid("page_token", "is not a token returned by Roster")
}

/// The etag of a row at `version` (opaque to callers).
pub fn etag(version: i64) -> String {
    format!("v{version}")
}

/// The version an etag names; `None` for an empty etag (no check), an error naming `field` for
/// one Roster did not return.
pub fn parse_etag(field: &str, etag: &str) -> Result<Option<i64>, ApiError> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.strip_prefix('v')
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid(field, "is not an etag returned by Roster"))
}

/// The paths of an update mask, each one checked against what may be updated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateMask {
    paths: Vec<String>,
}

impl UpdateMask {
    /// Checks `paths` against `updatable`: an empty mask is refused naming what may be updated,
    /// and every unknown path is one violation of `update_mask`.
    pub fn parse(paths: Vec<String>, updatable: &[&str]) -> Result<Self, ApiError> {
        let allowed = updatable.join(", ");
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                format!("must name the fields to change: {allowed}"),
            ));
        }
        let unknown: Vec<FieldViolation> = paths
            .iter()
            .filter(|path| !updatable.contains(&path.as_str()))
            .map(|path| {
                FieldViolation::new(
                    "update_mask",
                    format!("{path:?} cannot be updated; updatable: {allowed}"),
                )
            })
            .collect();
        if unknown.is_empty() {
            Ok(Self { paths })
        } else {
            Err(ApiError::invalid_fields(unknown))
        }
    }

    /// True when the mask names `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.paths.iter().any(|candidate| candidate == path)
    }

    /// The paths, as given.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }
}

/// Refuses a batch of `len` items outside 1 to `max`, naming `field` and what it holds.
pub fn check_batch(field: &str, noun: &str, len: usize, max: usize) -> Result<(), ApiError> {
    if len == 0 || len > max {
        return Err(ApiError::invalid(
            field,
            format!("must hold 1 to {max} {noun}"),
        ));
    }
    Ok(())
}

/// Refuses every field of `fields` (name, value, most bytes) whose value is longer than its
/// bound, all of them in one error. For fields that are only compared or searched, never
/// stored: bounded before any normalisation or folding runs over them.
pub fn check_lengths(fields: &[(&str, &str, usize)]) -> Result<(), ApiError> {
    let violations: Vec<FieldViolation> = fields
        .iter()
        .filter(|(_, value, max)| value.len() > *max)
        .map(|(field, value, max)| {
            FieldViolation::new(
                *field,
                format!("is {} bytes long; at most {max} are allowed", value.len()),
            )
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields(violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(error: ApiError) -> Vec<FieldViolation> {
        match error {
            ApiError::InvalidArgument { violations, .. } => violations,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn an_update_mask_reports_every_unknown_path() {
        let error = UpdateMask::parse(
            vec!["first_name".into(), "colour".into(), "shoe_size".into()],
            &["first_name", "last_name"],
        )
        .unwrap_err();
        let violations = violations(error);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].description.contains("\"colour\""));
        assert!(violations[1].description.contains("\"shoe_size\""));
        assert!(violations.iter().all(|v| v.field == "update_mask"));
    }

    #[test]
    fn an_empty_update_mask_names_what_may_be_updated() {
        let violations = violations(UpdateMask::parse(Vec::new(), &["a", "b"]).unwrap_err());
        assert_eq!(
            violations[0].description,
            "must name the fields to change: a, b"
        );
    }

    #[test]
    fn a_mask_knows_its_paths() {
        let mask = UpdateMask::parse(vec!["b".into()], &["a", "b"]).unwrap();
        assert!(mask.contains("b"));
        assert!(!mask.contains("a"));
    }

    #[test]
    fn tokens_round_trip_and_refuse_what_roster_did_not_issue() {
        let id = Uuid::now_v7();
        assert_eq!(parse_id_token('p', &id_token('p', id)).unwrap(), Some(id));
        assert_eq!(parse_id_token('p', "").unwrap(), None);
        assert!(parse_id_token('p', &id_token('i', id)).is_err());
        assert_eq!(parse_number_token('r', &number_token('r', 42)).unwrap(), 42);
        assert_eq!(parse_number_token('r', "").unwrap(), 0);
        assert!(parse_number_token('r', "r4x").is_err());
    }

    #[test]
    fn etags_round_trip() {
        assert_eq!(parse_etag("etag", &etag(7)).unwrap(), Some(7));
        assert_eq!(parse_etag("etag", "").unwrap(), None);
        assert_eq!(
            violations(parse_etag("profile.etag", "7").unwrap_err())[0].field,
            "profile.etag"
        );
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert!(page_size(1001).is_err());
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn request_ids_are_printable_ascii_of_at_most_128_bytes() {
        assert!(check_request_id("request_id", "").is_ok());
        assert!(check_request_id("request_id", &"a".repeat(128)).is_ok());
        assert!(check_request_id("request_id", &"a".repeat(129)).is_err());
        assert!(check_request_id("request_id", "a b").is_err());
        assert!(check_request_id("request_id", "é").is_err());
    }
}
