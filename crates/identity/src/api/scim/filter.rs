//! SCIM's filter and attribute-path syntax (RFC 7644 §3.4.2.2 and §3.5.2), parsed into a
//! [`Filter`] that names attributes as the client wrote them; `users` and `groups` then say
//! what each attribute means. The text is bounded in bytes before it is read, and the nesting
//! while it is read, so no filter recurses without limit.

use super::error::ScimError;

/// Longest filter or path accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;

/// Deepest nesting of parentheses, `not` and value filters.
const MAX_NESTING: usize = 10;

/// An attribute as a filter or path names it: `schema:name.sub`, each part as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN, when the path carries one (`urn:…:User`).
    pub schema: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// True when this path names `name` (and `sub`), ignoring case as SCIM does.
    pub fn is(&self, name: &str, sub: Option<&str>) -> bool {
        self.name.eq_ignore_ascii_case(name)
            && match (&self.sub, sub) {
                (None, None) => true,
                (Some(have), Some(want)) => have.eq_ignore_ascii_case(want),
                _ => false,
            }
    }

    /// The path as SCIM writes it, for messages.
    pub fn display(&self) -> String {
        let mut text = String::new();
        if let Some(schema) = &self.schema {
            text.push_str(schema);
            text.push(':');
        }
        text.push_str(&self.name);
        if let Some(sub) = &self.sub {
            text.push('.');
            text.push_str(sub);
        }
        text
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A literal compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Text(String),
    Bool(bool),
    Number(String),
    Null,
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: Op,
        value: Literal,
    },
    Present(AttrPath),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `attr[filter]`: some value of the multi-valued `attr` matches `filter`, whose paths
    /// name `attr`'s sub-attributes.
    Values {
        attr: AttrPath,
        filter: Box<Filter>,
    },
}

/// A PATCH operation's path: an attribute, or some values of a multi-valued one
/// (`emails[type eq "work"]`), with an optional sub-attribute after the filter.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`.value` in `emails[type eq "work"].value`).
    pub sub: Option<String>,
}

/// Parses a `filter` query parameter.
pub fn parse_filter(text: &str) -> Result<Filter, ScimError> {
    let mut parser = Parser::new(text, ScimError::invalid_filter)?;
    let filter = parser.or_expression(0)?;
    parser.finish()?;
    Ok(filter)
}

/// Parses a PATCH operation's `path`.
pub fn parse_path(text: &str) -> Result<PatchPath, ScimError> {
    let mut parser = Parser::new(text, ScimError::invalid_path)?;
    let attr = match parser.next()? {
        Some(Token::Word(word)) => attr_path(&word).map_err(|message| parser.fail(message))?,
        _ => return Err(parser.fail("a path starts with an attribute name".into())),
    };
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if parser.peek_is(&Token::Open('[')) {
        parser.next()?;
        path.filter = Some(parser.or_expression(1)?);
        parser.expect(&Token::Close(']'))?;
        if let Some(Token::Word(word)) = parser.peek().cloned() {
            let sub = word
                .strip_prefix('.')
                .filter(|sub| is_name(sub))
                .ok_or_else(|| parser.fail(format!("{word:?} after ']' is no sub-attribute")))?;
            path.sub = Some(sub.to_owned());
            parser.next()?;
        }
    }
    parser.finish()?;
    Ok(path)
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Open(char),
    Close(char),
    Text(String),
    Word(String),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    error: fn(String) -> ScimError,
}

impl Parser {
    fn new(text: &str, error: fn(String) -> ScimError) -> Result<Self, ScimError> {
        if text.len() > MAX_FILTER_BYTES {
            return Err(error(format!(
                "is {} bytes long; at most {MAX_FILTER_BYTES} are accepted",
                text.len()
            )));
        }
        Ok(Self {
            tokens: tokens(text).map_err(error)?,
            at: 0,
            error,
        })
    }

    fn fail(&self, message: String) -> ScimError {
        (self.error)(message)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn peek_is(&self, token: &Token) -> bool {
        self.peek() == Some(token)
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword))
    }

    fn next(&mut self) -> Result<Option<Token>, ScimError> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        Ok(token)
    }

    fn expect(&mut self, token: &Token) -> Result<(), ScimError> {
        match self.next()? {
            Some(found) if &found == token => Ok(()),
            Some(found) => {
                Err(self.fail(format!("expected {}, found {}", show(token), show(&found))))
            }
            None => Err(self.fail(format!("expected {} before the end", show(token)))),
        }
    }

    fn finish(&self) -> Result<(), ScimError> {
        match self.peek() {
            None => Ok(()),
            Some(token) => Err(self.fail(format!("unexpected {} after the end", show(token)))),
        }
    }

    fn nested(&self, depth: usize) -> Result<usize, ScimError> {
        if depth >= MAX_NESTING {
            Err(self.fail(format!("nests deeper than {MAX_NESTING} levels")))
        } else {
            Ok(depth + 1)
        }
    }

    /// `and` binds tighter than `or` (RFC 7644, table 4).
    fn or_expression(&mut self, depth: usize) -> Result<Filter, ScimError> {
        let mut left = self.and_expression(depth)?;
        while self.peek_keyword("or") {
            self.next()?;
            let right = self.and_expression(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expression(&mut self, depth: usize) -> Result<Filter, ScimError> {
        let mut left = self.unary(depth)?;
        while self.peek_keyword("and") {
            self.next()?;
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, ScimError> {
        if self.peek_keyword("not") {
            self.next()?;
            let inner = self.nested(depth)?;
            self.expect(&Token::Open('('))?;
            let filter = self.or_expression(inner)?;
            self.expect(&Token::Close(')'))?;
            return Ok(Filter::Not(Box::new(filter)));
        }
        match self.next()? {
            Some(Token::Open('(')) => {
                let inner = self.nested(depth)?;
                let filter = self.or_expression(inner)?;
                self.expect(&Token::Close(')'))?;
                Ok(filter)
            }
            Some(Token::Word(word)) => {
                let path = attr_path(&word).map_err(|message| self.fail(message))?;
                self.attribute_expression(path, depth)
            }
            Some(token) => Err(self.fail(format!(
                "expected an attribute name, found {}",
                show(&token)
            ))),
            None => Err(self.fail("ends where an attribute name was expected".into())),
        }
    }

    fn attribute_expression(&mut self, path: AttrPath, depth: usize) -> Result<Filter, ScimError> {
        if self.peek_is(&Token::Open('[')) {
            self.next()?;
            let inner = self.nested(depth)?;
            let filter = self.or_expression(inner)?;
            self.expect(&Token::Close(']'))?;
            return Ok(Filter::Values {
                attr: path,
                filter: Box::new(filter),
            });
        }
        let operator = match self.next()? {
            Some(Token::Word(word)) => word,
            Some(token) => {
                return Err(self.fail(format!(
                    "expected an operator after {}, found {}",
                    path.display(),
                    show(&token)
                )));
            }
            None => {
                return Err(self.fail(format!("expected an operator after {}", path.display())));
            }
        };
        if operator.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = operator_named(&operator).ok_or_else(|| {
            self.fail(format!(
                "{operator:?} is no operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)"
            ))
        })?;
        let value = match self.next()? {
            Some(Token::Text(text)) => Literal::Text(text),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("null") => Literal::Null,
            Some(Token::Word(word)) if is_number(&word) => Literal::Number(word),
            Some(token) => {
                return Err(self.fail(format!(
                    "expected a value after {operator}, found {} (strings are in double quotes)",
                    show(&token)
                )));
            }
            None => return Err(self.fail(format!("expected a value after {operator}"))),
        };
        Ok(Filter::Compare { path, op, value })
    }
}

fn operator_named(word: &str) -> Option<Op> {
    Some(match word.to_ascii_lowercase().as_str() {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "co" => Op::Co,
        "sw" => Op::Sw,
        "ew" => Op::Ew,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "lt" => Op::Lt,
        "le" => Op::Le,
        _ => return None,
    })
}

fn show(token: &Token) -> String {
    match token {
        Token::Open(c) | Token::Close(c) => format!("'{c}'"),
        Token::Text(text) => format!("the string {text:?}"),
        Token::Word(word) => format!("{word:?}"),
    }
}

fn is_number(word: &str) -> bool {
    let digits = word.strip_prefix('-').unwrap_or(word);
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().next().is_some_and(|c| c.is_ascii_digit())
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

/// Splits `text` into tokens: brackets, JSON strings and words (names, operators, numbers).
fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | '[' => {
                chars.next();
                tokens.push(Token::Open(c));
            }
            ')' | ']' => {
                chars.next();
                tokens.push(Token::Close(c));
            }
            '"' => {
                let rest = &text[start..];
                let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<String>();
                let value = match stream.next() {
                    Some(Ok(value)) => value,
                    _ => {
                        return Err(format!(
                            "has an unclosed or malformed string at byte {start}"
                        ));
                    }
                };
                let end = start + stream.byte_offset();
                while chars.peek().is_some_and(|&(at, _)| at < end) {
                    chars.next();
                }
                tokens.push(Token::Text(value));
            }
            _ => {
                let mut end = start;
                while let Some(&(at, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                        break;
                    }
                    end = at + c.len_utf8();
                    chars.next();
                }
                tokens.push(Token::Word(text[start..end].to_owned()));
            }
        }
    }
    Ok(tokens)
}

/// An attribute path: `name`, `name.sub`, or either after a schema URN
/// (`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName`).
fn attr_path(word: &str) -> Result<AttrPath, String> {
    // By bytes: a name of any characters (`名前`, `abcé`) is refused below, never sliced
    // inside a character.
    let (schema, rest) = if word.len() > 4 && word.as_bytes()[..4].eq_ignore_ascii_case(b"urn:") {
        match word.rfind(':') {
            Some(colon) => (Some(word[..colon].to_owned()), &word[colon + 1..]),
            None => (None, word),
        }
    } else {
        (None, word)
    };
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if !is_name(name) || sub.is_some_and(|sub| !is_name(sub)) {
        return Err(format!("{word:?} is no attribute path"));
    }
    Ok(AttrPath {
        schema,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            schema: None,
            name: name.into(),
            sub: sub.map(Into::into),
        }
    }

    fn eq(name: &str, value: &str) -> Filter {
        Filter::Compare {
            path: path(name, None),
            op: Op::Eq,
            value: Literal::Text(value.into()),
        }
    }

    #[test]
    fn the_existence_check_of_entra_and_okta_parses() {
        assert_eq!(
            parse_filter(r#"userName eq "ada@example.com""#).unwrap(),
            eq("userName", "ada@example.com")
        );
        assert_eq!(
            parse_filter(r#"USERNAME EQ "a\"b""#).unwrap(),
            Filter::Compare {
                path: path("USERNAME", None),
                op: Op::Eq,
                value: Literal::Text("a\"b".into()),
            }
        );
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_group() {
        let filter = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
        assert_eq!(
            filter,
            Filter::Or(
                Box::new(eq("a", "1")),
                Box::new(Filter::And(Box::new(eq("b", "2")), Box::new(eq("c", "3"))))
            )
        );
        let grouped = parse_filter(r#"(a eq "1" or b eq "2") and not (c pr)"#).unwrap();
        assert_eq!(
            grouped,
            Filter::And(
                Box::new(Filter::Or(Box::new(eq("a", "1")), Box::new(eq("b", "2")))),
                Box::new(Filter::Not(Box::new(Filter::Present(path("c", None)))))
            )
        );
    }

    #[test]
    fn literals_and_urn_paths_parse() {
        let filter = parse_filter(
            "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw \"A\" and active eq true and x eq null and n gt 5",
        )
        .unwrap();
        let Filter::And(left, last) = filter else {
            panic!()
        };
        assert_eq!(
            *last,
            Filter::Compare {
                path: path("n", None),
                op: Op::Gt,
                value: Literal::Number("5".into())
            }
        );
        let Filter::And(left, null) = *left else {
            panic!()
        };
        assert!(matches!(
            *null,
            Filter::Compare {
                value: Literal::Null,
                ..
            }
        ));
        let Filter::And(given, active) = *left else {
            panic!()
        };
        assert!(matches!(
            *active,
            Filter::Compare {
                value: Literal::Bool(true),
                ..
            }
        ));
        let Filter::Compare { path: given, .. } = *given else {
            panic!()
        };
        assert_eq!(
            given.schema.as_deref(),
            Some("urn:ietf:params:scim:schemas:core:2.0:User")
        );
        assert!(given.is("name", Some("givenname")));
    }

    #[test]
    fn value_filters_parse_in_filters_and_paths() {
        let filter = parse_filter(r#"emails[type eq "work" and value co "@example.com"]"#).unwrap();
        assert!(matches!(filter, Filter::Values { ref attr, .. } if attr.is("emails", None)));
        let patch = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert!(patch.attr.is("emails", None));
        assert_eq!(patch.filter, Some(eq("type", "work")));
        assert_eq!(patch.sub.as_deref(), Some("value"));
        let member = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(member.filter, Some(eq("value", "2819c223")));
        assert_eq!(member.sub, None);
        let enterprise =
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
                .unwrap();
        assert!(enterprise.attr.is("department", None));
    }

    #[test]
    fn malformed_filters_are_refused_with_what_is_wrong() {
        for (text, says) in [
            (r#"userName eq "open"#, "unclosed"),
            ("userName eq", "expected a value"),
            ("userName is \"x\"", "no operator"),
            ("userName eq bare", "double quotes"),
            ("(userName pr", "expected ')'"),
            ("userName pr extra", "after the end"),
            ("", "ends where"),
            ("1abc eq \"x\"", "no attribute path"),
        ] {
            let error = parse_filter(text).unwrap_err();
            assert_eq!(error.scim_type, Some("invalidFilter"), "{text}");
            assert!(error.detail.contains(says), "{text}: {}", error.detail);
        }
    }

    #[test]
    fn filters_are_bounded_in_bytes_and_nesting() {
        let long = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_BYTES));
        assert!(parse_filter(&long).unwrap_err().detail.contains("bytes"));
        let deep = format!(
            "{}userName pr{}",
            "not (".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert!(parse_filter(&deep).unwrap_err().detail.contains("nests"));
        let parens = format!("{}a pr{}", "(".repeat(1000), ")".repeat(1000));
        assert!(parse_filter(&parens).unwrap_err().detail.contains("nests"));
    }
}
