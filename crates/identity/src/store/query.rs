//! Queries over an account's profiles ([`ProfileQuery`], which a SCIM `filter` becomes): the
//! query as one SQL condition, a page of the profiles it matches in creation order, and how
//! many it matches in all.
//!
//! Every value is bound as a parameter, never written into the SQL. Every condition is made to
//! be true or false, never NULL, so that `not` takes in exactly the profiles a condition leaves
//! out: a comparison with an unset attribute is false, and its `ne` true.
//!
//! Text comparisons ignore case, but for the id and the external id (SCIM's `caseExact`):
//! - the username is compared in its canonical form (`canonical_username`): `eq` and `ne` with
//!   the canonical form of the value, which is a username or matches none; the other
//!   comparisons with the value mapped the same way (full case folding and NFKC);
//! - the email in the lower-cased copy the store keeps of it (`email_search`), with the value
//!   lower-cased the same way, and for `eq` and `ne` first normalised like a stored address;
//! - the other texts, and the value, as the database's `LOWER` gives them. PostgreSQL's
//!   folds every letter its database's `LC_CTYPE` knows; SQLite's folds only ASCII letters,
//!   so there `ÉLODIE` finds a stored `Élodie` (both are `Élodie` to it) but `élodie` does
//!   not, and `MÜLLER` does not find `Müller`.
//!
//! `co`, `sw` and `ew` are `LIKE` with `%`, `_` and `\` in the value matched literally, or on
//! SQLite, for the attributes that respect case, `GLOB` (SQLite's `LIKE` ignores ASCII case).
//! `gt`, `ge`, `lt` and `le` compare texts by code point, which is SCIM's lexicographic order
//! (PostgreSQL compares `COLLATE "C"` for it), and times as times.

use sea_orm::sea_query::extension::sqlite::SqliteBinOper;
use sea_orm::sea_query::{BinOper, Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    AccessMode, ColumnTrait, Condition, DbBackend, EntityTrait, IsolationLevel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::entities::profile;
use super::{Store, StoreError};
use crate::domain::email::EmailAddress;
use crate::domain::ids::AccountId;
use crate::domain::profile::{Profile, ProfileStatus};
use crate::domain::query::{Comparison, ProfileAttribute, ProfileQuery, QueryValue};
use crate::domain::username::{Username, canonical_prefix};

impl Store {
    /// The profiles of `account_id` that `query` matches, never a deleted one, in creation
    /// order (ties by id, so pages never overlap), `limit` of them after the first `offset`;
    /// and how many it matches in all. The page and the total are read from one snapshot.
    pub async fn query_profiles(
        &self,
        account_id: AccountId,
        query: &ProfileQuery,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Profile>, u64), StoreError> {
        let backend = self.db.get_database_backend();
        let matching = Condition::all()
            .add(profile::Column::AccountId.eq(account_id.0))
            .add(profile::Column::Status.ne(ProfileStatus::Deleted.as_str()))
            .add(condition(query, backend));
        // PostgreSQL gives each statement of a READ COMMITTED transaction a snapshot of its
        // own; a SQLite transaction reads one snapshot from its first read on.
        let (isolation, access) = match backend {
            DbBackend::Postgres => (
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            ),
            _ => (None, None),
        };
        let txn = self.db.begin_with_config(isolation, access).await?;
        let total = profile::Entity::find()
            .filter(matching.clone())
            .count(&txn)
            .await?;
        // Past the last match there is nothing to read; before it, the page is bounded by
        // the total, so whatever the caller asked fits the database's integers.
        let models = if limit == 0 || offset >= total {
            Vec::new()
        } else {
            profile::Entity::find()
                .filter(matching)
                .order_by_asc(profile::Column::CreatedAt)
                .order_by_asc(profile::Column::Id)
                .offset(offset)
                .limit(Ord::min(limit, total - offset))
                .all(&txn)
                .await?
        };
        let profiles = self.with_assignments(&txn, models).await?;
        txn.commit().await?;
        Ok((profiles, total))
    }
}

/// The SQL condition of `query` on `backend`: true or false for every profile, never NULL.
fn condition(query: &ProfileQuery, backend: DbBackend) -> Condition {
    match query {
        ProfileQuery::All => always(),
        ProfileQuery::Present(attribute) => present(*attribute, backend),
        ProfileQuery::Compare {
            attribute,
            comparison,
            value,
        } => compare(*attribute, *comparison, value, backend),
        ProfileQuery::Not(inner) => condition(inner, backend).not(),
        ProfileQuery::And(parts) => parts.iter().fold(Condition::all(), |all, part| {
            all.add(condition(part, backend))
        }),
        ProfileQuery::Or(parts) => parts.iter().fold(Condition::any(), |any, part| {
            any.add(condition(part, backend))
        }),
    }
}

/// True for every profile (an empty conjunction).
fn always() -> Condition {
    Condition::all()
}

/// False for every profile (an empty disjunction).
fn never() -> Condition {
    Condition::any()
}

fn column(column: profile::Column) -> Expr {
    Expr::col(column)
}

/// The condition that `expr` is true.
fn holds(expr: Expr) -> Condition {
    Condition::all().add(expr)
}

/// `pr`: the attribute has a value, and it is not empty. The id, the status and the times
/// always have one.
fn present(attribute: ProfileAttribute, backend: DbBackend) -> Condition {
    match operand(attribute, backend).and_then(|operand| operand.stored) {
        Some(stored) => Condition::all()
            .add(column(stored).is_not_null())
            .add(column(stored).ne("")),
        None => always(),
    }
}

fn compare(
    attribute: ProfileAttribute,
    comparison: Comparison,
    value: &QueryValue,
    backend: DbBackend,
) -> Condition {
    match (attribute, value) {
        (ProfileAttribute::Active, QueryValue::Bool(active)) => {
            let wanted = match comparison {
                Comparison::Eq => *active,
                Comparison::Ne => !*active,
                _ => return never(),
            };
            // Deleted profiles are left out of every query, so not active is suspended.
            let status = if wanted {
                ProfileStatus::Active
            } else {
                ProfileStatus::Suspended
            };
            holds(profile::Column::Status.eq(status.as_str()))
        }
        (ProfileAttribute::Created, QueryValue::Time(time)) => {
            compare_time(profile::Column::CreatedAt, comparison, *time)
        }
        (ProfileAttribute::LastModified, QueryValue::Time(time)) => {
            compare_time(profile::Column::UpdatedAt, comparison, *time)
        }
        (_, QueryValue::Text(text)) => match operand(attribute, backend) {
            Some(operand) => compare_text(attribute, &operand, comparison, text, backend),
            None => never(),
        },
        // A value of another kind than the attribute's: `ProfileQuery::check` refuses such a
        // query before it gets here.
        _ => never(),
    }
}

fn compare_time(
    stored: profile::Column,
    comparison: Comparison,
    time: chrono::DateTime<chrono::Utc>,
) -> Condition {
    let time = Expr::val(time);
    let expr = match comparison {
        Comparison::Eq => column(stored).eq(time),
        Comparison::Ne => column(stored).ne(time),
        Comparison::Gt => column(stored).gt(time),
        Comparison::Ge => column(stored).gte(time),
        Comparison::Lt => column(stored).lt(time),
        Comparison::Le => column(stored).lte(time),
        Comparison::Contains | Comparison::StartsWith | Comparison::EndsWith => return never(),
    };
    holds(expr)
}

/// A text attribute as a comparison reads it.
struct Operand {
    /// What the value is compared with.
    expr: Expr,
    /// The column the attribute is stored in (the id's is no text).
    stored: Option<profile::Column>,
    /// True when the attribute may be unset (NULL).
    nullable: bool,
    /// True when case counts (the comparison must not fold it).
    exact: bool,
    /// Brings a value to the form `expr` has (for every comparison but `eq` and `ne` of the
    /// username and the email, which have their own).
    fold: fn(&str) -> String,
    /// True when `expr` is the column as the database's `LOWER` gives it, so that the value
    /// is compared as `LOWER` gives it too.
    lowered: bool,
}

impl Operand {
    /// A folded value, or a pattern made of one, as what `expr` is compared with.
    fn value(&self, folded: String) -> Expr {
        if self.lowered {
            Func::lower(Expr::val(folded)).into()
        } else {
            Expr::val(folded)
        }
    }
}

/// How a comparison reads the attribute, when it holds text.
fn operand(attribute: ProfileAttribute, backend: DbBackend) -> Option<Operand> {
    let kept = |stored: profile::Column, nullable: bool, exact: bool, fold| Operand {
        expr: column(stored),
        stored: Some(stored),
        nullable,
        exact,
        fold,
        lowered: false,
    };
    let lowered = |stored: profile::Column, nullable: bool| Operand {
        expr: Func::lower(column(stored)).into(),
        stored: Some(stored),
        nullable,
        exact: false,
        fold: str::to_owned,
        lowered: true,
    };
    use profile::Column as C;
    Some(match attribute {
        ProfileAttribute::Id => Operand {
            expr: id_text(backend),
            stored: None,
            nullable: false,
            exact: true,
            fold: str::to_owned,
            lowered: false,
        },
        ProfileAttribute::ExternalId => kept(C::ExternalId, true, true, str::to_owned),
        ProfileAttribute::Username => kept(C::CanonicalUsername, false, false, username_fragment),
        ProfileAttribute::Email => kept(C::EmailSearch, false, false, str::to_lowercase),
        ProfileAttribute::FirstName => lowered(C::FirstName, false),
        ProfileAttribute::LastName => lowered(C::LastName, false),
        ProfileAttribute::JobTitle => lowered(C::JobTitle, true),
        ProfileAttribute::Department => lowered(C::Department, true),
        ProfileAttribute::Locale => lowered(C::Locale, true),
        ProfileAttribute::TimeZone => lowered(C::TimeZone, true),
        ProfileAttribute::Active | ProfileAttribute::Created | ProfileAttribute::LastModified => {
            return None;
        }
    })
}

/// The id as text (lower-case hexadecimal with hyphens). PostgreSQL stores a `uuid` and casts
/// it; SQLite stores the 16 bytes, which `hex` spells in upper case without hyphens.
fn id_text(backend: DbBackend) -> Expr {
    match backend {
        DbBackend::Postgres => column(profile::Column::Id).cast_as("TEXT"),
        _ => Expr::cust_with_exprs(
            "lower(substr(hex(?), 1, 8) || '-' || substr(hex(?), 9, 4) || '-' || \
             substr(hex(?), 13, 4) || '-' || substr(hex(?), 17, 4) || '-' || substr(hex(?), 21))",
            std::iter::repeat_n(column(profile::Column::Id), 5),
        ),
    }
}

/// The condition that the attribute, read as `operand`, compares with `text` as `comparison`
/// says.
fn compare_text(
    attribute: ProfileAttribute,
    operand: &Operand,
    comparison: Comparison,
    text: &str,
    backend: DbBackend,
) -> Condition {
    let anchored = |anchor| matches(operand, text, anchor, backend);
    let ordered = |operator| ordered(operand, operator, text, backend);
    let compared = match comparison {
        Comparison::Eq | Comparison::Ne => equals(attribute, operand, text),
        Comparison::Contains => anchored(Anchor::Contains),
        Comparison::StartsWith => anchored(Anchor::StartsWith),
        Comparison::EndsWith => anchored(Anchor::EndsWith),
        Comparison::Gt => ordered(BinOper::GreaterThan),
        Comparison::Ge => ordered(BinOper::GreaterThanOrEqual),
        Comparison::Lt => ordered(BinOper::SmallerThan),
        Comparison::Le => ordered(BinOper::SmallerThanOrEqual),
    };
    // An unset attribute compares with nothing; `ne` is the one comparison it satisfies.
    let compared = match operand.stored {
        Some(stored) if operand.nullable => Condition::all()
            .add(column(stored).is_not_null())
            .add(compared),
        _ => compared,
    };
    if comparison == Comparison::Ne {
        compared.not()
    } else {
        compared
    }
}

/// `eq`: the attribute equals `text` (in the form each attribute is compared in).
fn equals(attribute: ProfileAttribute, operand: &Operand, text: &str) -> Condition {
    match attribute {
        ProfileAttribute::Id => match exact_uuid(text) {
            Some(id) => holds(profile::Column::Id.eq(id)),
            None => never(),
        },
        ProfileAttribute::Username => match Username::parse(text) {
            Ok(username) => holds(profile::Column::CanonicalUsername.eq(username.canonical())),
            Err(_) => never(),
        },
        ProfileAttribute::Email => {
            let address = EmailAddress::parse(text)
                .map(|address| address.as_str().to_lowercase())
                .unwrap_or_else(|_| text.to_lowercase());
            holds(profile::Column::EmailSearch.eq(address))
        }
        _ => holds(operand.expr.clone().eq(operand.value((operand.fold)(text)))),
    }
}

/// The UUID `text` spells exactly as an id is written (lower case, with hyphens), if any: the
/// id respects case, so `ABC…` is not the id `abc…`.
fn exact_uuid(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text)
        .ok()
        .filter(|id| id.hyphenated().to_string() == text)
}

/// The username form of a piece of a username: case-folded and normalised as usernames are
/// (an overlong piece, which no username holds, lower-cased only).
fn username_fragment(text: &str) -> String {
    canonical_prefix(text).unwrap_or_else(|_| text.to_lowercase())
}

/// Where a pattern lets anything stand around the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Anchor {
    Contains,
    StartsWith,
    EndsWith,
}

/// `co`, `sw`, `ew`: the attribute holds `text` where `anchor` says.
fn matches(operand: &Operand, text: &str, anchor: Anchor, backend: DbBackend) -> Condition {
    let text = (operand.fold)(text);
    let expr = if operand.exact && backend == DbBackend::Sqlite {
        let pattern = operand.value(glob_pattern(&text, anchor));
        operand.expr.clone().binary(SqliteBinOper::Glob, pattern)
    } else {
        let pattern = operand.value(escaped_like(&text, anchor));
        // `pattern ESCAPE '\'`, as sea-query writes a `LikeExpr`, with the pattern an
        // expression (the database's `LOWER` of it) rather than a value.
        let escaped = Expr::Binary(
            Box::new(pattern),
            BinOper::Escape,
            Box::new(Expr::Constant(LIKE_ESCAPE.into())),
        );
        operand.expr.clone().binary(BinOper::Like, escaped)
    };
    holds(expr)
}

/// `gt`, `ge`, `lt`, `le`: the attribute orders against `text` by code point.
fn ordered(operand: &Operand, operator: BinOper, text: &str, backend: DbBackend) -> Condition {
    let expr = match backend {
        DbBackend::Postgres => Expr::cust_with_expr("$1 COLLATE \"C\"", operand.expr.clone()),
        // SQLite's default collation (BINARY) compares UTF-8 bytes: code point order.
        _ => operand.expr.clone(),
    };
    holds(expr.binary(operator, operand.value((operand.fold)(text))))
}

/// The LIKE pattern of [`escaped_like`], with its escape character, for sea-query's `like`.
pub(super) fn like_pattern(text: &str, anchor: Anchor) -> LikeExpr {
    LikeExpr::new(escaped_like(text, anchor)).escape(LIKE_ESCAPE)
}

/// The escape character of LIKE patterns.
const LIKE_ESCAPE: char = '\\';

/// A LIKE pattern matching texts that hold `text` where `anchor` says, with [`LIKE_ESCAPE`]
/// escaping the wildcards (and itself) in `text`.
fn escaped_like(text: &str, anchor: Anchor) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    if anchor != Anchor::StartsWith {
        pattern.push('%');
    }
    for c in text.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    if anchor != Anchor::EndsWith {
        pattern.push('%');
    }
    pattern
}

/// A SQLite GLOB pattern (which respects case) matching texts that hold `text` where `anchor`
/// says. GLOB has no escape character: each of its special characters stands alone in a
/// bracket expression instead.
fn glob_pattern(text: &str, anchor: Anchor) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    if anchor != Anchor::StartsWith {
        pattern.push('*');
    }
    for c in text.chars() {
        match c {
            '*' => pattern.push_str("[*]"),
            '?' => pattern.push_str("[?]"),
            '[' => pattern.push_str("[[]"),
            _ => pattern.push(c),
        }
    }
    if anchor != Anchor::EndsWith {
        pattern.push('*');
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_wildcards_literally() {
        let pattern = escaped_like;
        assert_eq!(pattern("50%_off", Anchor::Contains), r"%50\%\_off%");
        assert_eq!(pattern(r"a\b", Anchor::StartsWith), r"a\\b%");
        assert_eq!(pattern("x", Anchor::EndsWith), "%x");
        assert_eq!(pattern("", Anchor::Contains), "%%");
    }

    #[test]
    fn glob_patterns_bracket_their_special_characters() {
        assert_eq!(
            glob_pattern("a*b?c[d]", Anchor::Contains),
            "*a[*]b[?]c[[]d]*"
        );
        assert_eq!(glob_pattern("A_%", Anchor::StartsWith), "A_%*");
        assert_eq!(glob_pattern("z", Anchor::EndsWith), "*z");
    }

    #[test]
    fn an_id_matches_only_in_its_own_spelling() {
        let id = Uuid::from_u128(0xabcdef);
        let spelt = id.hyphenated().to_string();
        assert_eq!(exact_uuid(&spelt), Some(id));
        assert_eq!(exact_uuid(&spelt.to_uppercase()), None);
        assert_eq!(exact_uuid(&id.simple().to_string()), None);
        assert_eq!(exact_uuid("not-a-uuid"), None);
        assert_eq!(exact_uuid(""), None);
    }

    #[test]
    fn a_username_piece_is_folded_like_a_username() {
        assert_eq!(username_fragment("ＡＬＩＣＥ"), "alice");
        assert_eq!(username_fragment("Straße"), "strasse");
        let overlong = "A".repeat(2000);
        assert_eq!(username_fragment(&overlong), "a".repeat(2000));
    }
}
