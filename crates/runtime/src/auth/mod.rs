//! Caller authentication: every RPC but health and reflection needs
//! `authorization: Bearer <key>`.
//!
//! Keys are configured as SHA-256 hashes (hex) in a TOML file, each with a name, scopes and the
//! accounts it may touch:
//!
//! ```toml
//! [[keys]]
//! name = "operator"          # unique: it scopes request ids and rate limits
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! scopes = ["admin"]          # or any of: accounts, accounts.read, profiles, credentials, signin, events, imports, notifications
//! accounts = ["*"]            # or account ids
//! ```
//!
//! The [`AuthLayer`] resolves the key to a [`Caller`], checks the scope that the called gRPC
//! service needs, and puts the caller in the request extensions, where handlers read it with
//! [`caller`]. Which account a call may touch is decided by the handlers, which know the account.
//!
//! The layer consults a [`SharedKeyRing`], which [`reload`] replaces as a whole when the keys file
//! changes or the process receives SIGHUP: a call sees either the old keys or the new ones, never
//! a mix, and no restart is needed to rotate a key.

pub mod deleted;
pub mod reload;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::Status;
use uuid::Uuid;

use crate::error::ApiError;
use crate::ratelimit::RateLimiter;

/// The interface of a call over gRPC (see [`Caller::via`]).
pub const GRPC: &str = "grpc";

/// The scope that grants every other scope.
pub const ADMIN_SCOPE: &str = "admin";

/// The scope of reading accounts (GetAccount, ListAccounts), which `accounts` includes: what
/// bulk-import and notification need to learn which accounts were deleted.
pub const ACCOUNTS_READ_SCOPE: &str = "accounts.read";

/// The scope a call to `path` (`/package.Service/Method`) needs; `None` for calls every caller
/// may make without a key (health, reflection).
pub fn required_scope(path: &str) -> Option<&'static str> {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.") {
        return None;
    }
    Some(match service {
        "roster.identity.v1.AccountService"
            if path.ends_with("/GetAccount") || path.ends_with("/ListAccounts") =>
        {
            ACCOUNTS_READ_SCOPE
        }
        "roster.identity.v1.AccountService" => "accounts",
        "roster.identity.v1.ProfileService" => "profiles",
        "roster.identity.v1.CredentialService" if path.ends_with("/VerifyPassword") => "signin",
        "roster.identity.v1.CredentialService" => "credentials",
        "roster.identity.v1.EventService" => "events",
        "roster.imports.v1.ImportService" => "imports",
        "roster.notification.v1.NotificationService" => "notifications",
        _ => ADMIN_SCOPE,
    })
}

/// Which accounts a caller may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountAccess {
    All,
    Only(HashSet<Uuid>),
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key's configured name, for logs.
    pub name: String,
    scopes: HashSet<String>,
    accounts: AccountAccess,
    /// The interface the call came through (`grpc` unless a service says otherwise: its
    /// reset page, its SCIM endpoint), for the audit log.
    pub via: &'static str,
    /// Whom the caller acts for, when it says so and the service believes it (the bulk
    /// import's apply names its import): the audit log's actor instead of the key's name.
    pub acting_for: Option<String>,
}

impl Caller {
    /// A caller with every scope on every account, for the suite's own calls between services.
    pub fn internal(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scopes: HashSet::from([ADMIN_SCOPE.to_owned()]),
            accounts: AccountAccess::All,
            via: GRPC,
            acting_for: None,
        }
    }

    /// A caller limited to one account with `scopes`: a credential the service manages at
    /// run time (a SCIM token) rather than a configured key.
    pub fn limited(name: impl Into<String>, scopes: &[&str], account: Uuid) -> Self {
        Self {
            name: name.into(),
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
            accounts: AccountAccess::Only(HashSet::from([account])),
            via: GRPC,
            acting_for: None,
        }
    }

    /// This caller, come through `interface`.
    pub fn via(mut self, interface: &'static str) -> Self {
        self.via = interface;
        self
    }

    /// This caller, acting for `actor`.
    pub fn acting_for(mut self, actor: impl Into<String>) -> Self {
        self.acting_for = Some(actor.into());
        self
    }

    /// Who a change by this caller is attributed to: whom it acts for, else the key's name.
    pub fn actor(&self) -> &str {
        self.acting_for.as_deref().unwrap_or(&self.name)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(ADMIN_SCOPE)
            || self.scopes.contains(scope)
            || (scope == ACCOUNTS_READ_SCOPE && self.scopes.contains("accounts"))
    }

    /// True when the caller may touch this account's data.
    pub fn may_access(&self, account: Uuid) -> bool {
        match &self.accounts {
            AccountAccess::All => true,
            AccountAccess::Only(accounts) => accounts.contains(&account),
        }
    }

    /// The accounts this caller is limited to, or `None` when it may touch all.
    pub fn account_limit(&self) -> Option<&HashSet<Uuid>> {
        match &self.accounts {
            AccountAccess::All => None,
            AccountAccess::Only(accounts) => Some(accounts),
        }
    }

    /// This caller without the `closed` (deleted) accounts; PERMISSION_DENIED (reason
    /// ACCOUNT_DELETED) when it was limited to accounts that are all closed. A caller of every
    /// account is unchanged: the services refuse changes of a deleted account themselves.
    pub fn without_accounts(mut self, closed: &HashSet<Uuid>) -> Result<Self, ApiError> {
        if let AccountAccess::Only(accounts) = &mut self.accounts
            && accounts.iter().any(|account| closed.contains(account))
        {
            accounts.retain(|account| !closed.contains(account));
            if accounts.is_empty() {
                return Err(ApiError::PermissionDenied {
                    reason: "ACCOUNT_DELETED",
                    message: "the caller key may act only on accounts that were deleted".into(),
                });
            }
        }
        Ok(self)
    }

    /// PERMISSION_DENIED unless the caller may touch `account`. For requests that name an
    /// account; objects reached by their own id answer NOT_FOUND instead (see DESIGN.md §8).
    pub fn require_account(&self, account: Uuid) -> Result<(), ApiError> {
        if self.may_access(account) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied {
                reason: "ACCOUNT_NOT_PERMITTED",
                message: "the caller key may not act on this account".into(),
            })
        }
    }
}

/// The authenticated caller of a request (put there by [`AuthLayer`]).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, ApiError> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::Unauthenticated {
            message: "missing caller".into(),
        })
}

#[derive(Debug, Deserialize)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    sha256: String,
    scopes: Vec<String>,
    accounts: Vec<String>,
}

/// A problem in the keys file. (The I/O error is in the message, so it is no `source`: a report
/// of the chain would print it twice.)
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("keys file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("keys file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// The configured caller keys, by SHA-256 hash.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], Caller>,
}

impl KeyRing {
    /// Reads a keys file (see the module documentation for the format).
    pub fn load(path: &Path) -> Result<Self, KeyRingError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| KeyRingError::Read {
            path: display.clone(),
            error,
        })?;
        Self::parse(&text).map_err(|message| KeyRingError::Invalid {
            path: display,
            message,
        })
    }

    /// Parses the TOML text of a keys file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: KeysFile = toml_from_str(text)?;
        let mut ring = KeyRing::default();
        let mut names = HashSet::new();
        for (index, entry) in file.keys.into_iter().enumerate() {
            let at = format!("keys[{index}] ({})", entry.name);
            // A key's name scopes what the services keep per caller — the request ids they
            // replay answers for, the rate limit's bucket — so two keys of one name, say of two
            // accounts, would replay each other's answers and share one budget.
            // The services join the name with what a caller sends (request ids, accounts) by
            // ':' in the keys they keep per caller: a name holding one could make up another
            // caller's key.
            if entry.name.is_empty() || entry.name.contains(':') {
                return Err(format!(
                    "{at}: a key's name must be non-empty and hold no ':' (the services join it \
                     with request ids by ':')"
                ));
            }
            if !names.insert(entry.name.clone()) {
                return Err(format!(
                    "{at}: another key has the name {:?}; each key needs a name of its own \
                     (it scopes request ids and rate limits; a rotated key takes a new one)",
                    entry.name
                ));
            }
            let digest: [u8; 32] = hex::decode(entry.sha256.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("{at}: sha256 must be 64 hexadecimal characters"))?;
            let accounts = if entry.accounts.iter().any(|account| account == "*") {
                AccountAccess::All
            } else {
                AccountAccess::Only(
                    entry
                        .accounts
                        .iter()
                        .map(|account| {
                            Uuid::parse_str(account).map_err(|_| {
                                format!("{at}: account {account:?} is neither \"*\" nor a UUID")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                )
            };
            let caller = Caller {
                name: entry.name,
                scopes: entry.scopes.into_iter().collect(),
                accounts,
                via: GRPC,
                acting_for: None,
            };
            if ring.by_hash.insert(digest, caller).is_some() {
                return Err(format!("{at}: the same key hash appears twice"));
            }
        }
        Ok(ring)
    }

    /// Adds a key given in plain text (the embedded suite and tests).
    pub fn insert_plaintext(
        &mut self,
        key: &str,
        name: &str,
        scopes: &[&str],
        accounts: AccountAccess,
    ) {
        self.by_hash.insert(
            hash_key(key),
            Caller {
                name: name.to_owned(),
                scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
                accounts,
                via: GRPC,
                acting_for: None,
            },
        );
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: KeyRing) {
        self.by_hash.extend(other.by_hash);
    }

    /// The caller holding `key`, if any.
    pub fn authenticate(&self, key: &str) -> Option<&Caller> {
        self.by_hash.get(&hash_key(key))
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }
}

/// The key ring in force, replaced as a whole while the servers run, and the accounts that
/// were deleted (closed), whose limited keys no longer act on them. Cheap to clone; clones
/// share both. Reading is one uncontended read lock; a replacement holds the write lock only
/// to swap a pointer.
#[derive(Clone, Debug, Default)]
pub struct SharedKeyRing {
    current: Arc<RwLock<Arc<KeyRing>>>,
    closed: Arc<RwLock<Arc<HashSet<Uuid>>>>,
}

impl SharedKeyRing {
    pub fn new(ring: KeyRing) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(ring))),
            closed: Arc::default(),
        }
    }

    /// Puts `accounts` in force as the deleted accounts: from the next call on, a key limited
    /// to some accounts acts only on those of them still open, and a key whose accounts are
    /// all deleted is refused. Keys of every account are not affected. True when they differ
    /// from those in force before (and were put in force), for the caller to log.
    pub fn close_accounts(&self, accounts: HashSet<Uuid>) -> bool {
        let mut closed = self.closed.write().unwrap_or_else(PoisonError::into_inner);
        if **closed == accounts {
            return false;
        }
        *closed = Arc::new(accounts);
        true
    }

    /// The deleted accounts in force now.
    pub fn closed_accounts(&self) -> Arc<HashSet<Uuid>> {
        self.closed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The caller a call with these headers makes, if it may call a service needing `scope`.
    pub fn authorize(&self, headers: &http::HeaderMap, scope: &str) -> Result<Caller, ApiError> {
        let caller = self.with(|keys| authorize(keys, headers, scope))?;
        caller.without_accounts(&self.closed_accounts())
    }

    /// The ring in force now.
    pub fn current(&self) -> Arc<KeyRing> {
        // A panic cannot leave the ring half-replaced (the write is one pointer swap), so a
        // poisoned lock still holds a whole ring.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `ring` in force for every call that starts from now on.
    pub fn replace(&self, ring: KeyRing) {
        let ring = Arc::new(ring);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = ring;
    }

    /// Runs `f` on the ring in force, under the read lock.
    fn with<T>(&self, f: impl FnOnce(&KeyRing) -> T) -> T {
        f(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl From<KeyRing> for SharedKeyRing {
    fn from(ring: KeyRing) -> Self {
        Self::new(ring)
    }
}

/// SHA-256 of a key, as stored in the keys file.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// SHA-256 of a key as the lowercase hex that the keys file holds.
pub fn hash_key_hex(key: &str) -> String {
    hex::encode(hash_key(key))
}

fn toml_from_str(text: &str) -> Result<KeysFile, String> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|config| config.try_deserialize())
        .map_err(|error| error.to_string())
}

/// Tower layer that authenticates every call but health and reflection, and limits each
/// caller's rate.
#[derive(Clone)]
pub struct AuthLayer {
    keys: SharedKeyRing,
    limiter: Arc<RateLimiter>,
}

impl AuthLayer {
    pub fn new(keys: SharedKeyRing, limiter: Arc<RateLimiter>) -> Self {
        Self { keys, limiter }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            keys: self.keys.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`AuthLayer`] builds.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    keys: SharedKeyRing,
    limiter: Arc<RateLimiter>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(scope) = required_scope(request.uri().path()) else {
            return Either::Right(self.inner.call(request));
        };
        let authorized = self.keys.authorize(request.headers(), scope);
        let admitted = authorized.and_then(|caller| {
            self.limiter
                .admit(&caller.name)
                .map(|()| caller)
                .map_err(|wait| ApiError::ResourceExhausted {
                    reason: "RATE_LIMITED",
                    message: "too many calls from this caller key; slow down".into(),
                    retry_after: Some(wait),
                })
        });
        match admitted {
            Ok(caller) => {
                tracing::Span::current().record("caller", caller.name.as_str());
                tracing::debug!(caller = %caller.name, scope, "caller admitted");
                request.extensions_mut().insert(caller);
                Either::Right(self.inner.call(request))
            }
            Err(error) => {
                tracing::debug!(%error, scope, "caller refused");
                Either::Left(ready(Ok(Status::from(error).into_http())))
            }
        }
    }
}

fn authorize(keys: &KeyRing, headers: &http::HeaderMap, scope: &str) -> Result<Caller, ApiError> {
    let value =
        headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthenticated {
                message: "missing `authorization: Bearer <key>` metadata".into(),
            })?;
    let key = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::Unauthenticated {
            message: "the authorization metadata must be `Bearer <key>`".into(),
        })?;
    let caller = keys
        .authenticate(key)
        .ok_or_else(|| ApiError::Unauthenticated {
            message: "unknown caller key".into(),
        })?;
    if !caller.has_scope(scope) {
        return Err(ApiError::PermissionDenied {
            reason: "SCOPE_MISSING",
            message: format!("the caller key lacks the `{scope}` scope"),
        });
    }
    Ok(caller.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_reflection_need_no_key() {
        assert_eq!(required_scope("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_scope("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            None
        );
        assert_eq!(
            required_scope("/roster.identity.v1.CredentialService/VerifyPassword"),
            Some("signin")
        );
    }

    #[test]
    fn reading_accounts_needs_accounts_read_which_accounts_includes() {
        for method in ["GetAccount", "ListAccounts"] {
            let path = format!("/roster.identity.v1.AccountService/{method}");
            assert_eq!(required_scope(&path), Some(ACCOUNTS_READ_SCOPE));
        }
        let delete = "/roster.identity.v1.AccountService/DeleteAccount";
        assert_eq!(required_scope(delete), Some("accounts"));
        let account = Uuid::new_v4();
        let reader = Caller::limited("reader", &[ACCOUNTS_READ_SCOPE], account);
        assert!(reader.has_scope(ACCOUNTS_READ_SCOPE) && !reader.has_scope("accounts"));
        let writer = Caller::limited("writer", &["accounts"], account);
        assert!(writer.has_scope(ACCOUNTS_READ_SCOPE) && writer.has_scope("accounts"));
    }

    #[test]
    fn keys_file_is_parsed_and_checked() {
        let account = Uuid::new_v4();
        let ring = KeyRing::parse(&format!(
            "[[keys]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"profiles\"]\naccounts = [\"{account}\"]\n",
            hash_key_hex("secret")
        ))
        .unwrap();
        let caller = ring.authenticate("secret").expect("known key");
        assert!(caller.has_scope("profiles"));
        assert!(!caller.has_scope("accounts"));
        assert!(caller.may_access(account));
        assert!(!caller.may_access(Uuid::new_v4()));
        assert!(ring.authenticate("other").is_none());

        let error = KeyRing::parse(
            "[[keys]]\nname = \"bad\"\nsha256 = \"xyz\"\nscopes = []\naccounts = [\"*\"]\n",
        )
        .unwrap_err();
        assert!(error.contains("sha256"), "{error}");
    }

    #[test]
    fn a_name_holding_a_colon_or_nothing_is_refused() {
        for name in ["crm:connector", ""] {
            let entry = format!(
                "[[keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [\"profiles\"]\naccounts = [\"*\"]\n",
                hash_key_hex("key-a")
            );
            let error = KeyRing::parse(&entry).unwrap_err();
            assert!(
                error.contains("must be non-empty and hold no ':'"),
                "{name:?}: {error}"
            );
        }
    }

    #[test]
    fn two_keys_of_one_name_are_refused() {
        let entry = |key: &str, account: &str| {
            format!(
                "[[keys]]\nname = \"crm-connector\"\nsha256 = \"{}\"\nscopes = [\"profiles\"]\naccounts = [\"{account}\"]\n",
                hash_key_hex(key)
            )
        };
        let (a, b) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
        let error =
            KeyRing::parse(&format!("{}{}", entry("key-a", &a), entry("key-b", &b))).unwrap_err();
        assert!(
            error
                .starts_with("keys[1] (crm-connector): another key has the name \"crm-connector\""),
            "{error}"
        );
        // Names differing in case are two names.
        let renamed = entry("key-b", &b).replace("crm-connector", "CRM-connector");
        let ring = KeyRing::parse(&format!("{}{renamed}", entry("key-a", &a))).unwrap();
        assert_eq!(ring.len(), 2);
    }

    /// The gRPC status an [`Auth`] service answers for a call with `key`: `None` when it
    /// passes the call on.
    async fn status_for(auth: &mut Auth<EchoService>, key: &str) -> Option<String> {
        use tower::Service;
        let request = http::Request::builder()
            .uri("/roster.identity.v1.ProfileService/GetProfile")
            .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
            .body(())
            .expect("a request");
        let response = auth.call(request).await.expect("the service answers");
        response
            .headers()
            .get("grpc-status")
            .map(|status| status.to_str().expect("an ASCII status").to_owned())
    }

    type EchoService = tower::util::ServiceFn<
        fn(http::Request<()>) -> Ready<Result<http::Response<String>, std::convert::Infallible>>,
    >;

    fn echo(
        _: http::Request<()>,
    ) -> Ready<Result<http::Response<String>, std::convert::Infallible>> {
        ready(Ok(http::Response::new(String::new())))
    }

    #[tokio::test]
    async fn a_replaced_key_ring_is_in_force_for_the_next_call_of_a_running_layer() {
        let mut old = KeyRing::default();
        old.insert_plaintext("old-key", "old", &["admin"], AccountAccess::All);
        let keys = SharedKeyRing::new(old);
        let layer = AuthLayer::new(keys.clone(), Arc::new(RateLimiter::new(0, 0)));
        let mut auth = tower::Layer::layer(&layer, tower::service_fn(echo as fn(_) -> _));
        assert_eq!(status_for(&mut auth, "old-key").await, None);

        let mut new = KeyRing::default();
        new.insert_plaintext("new-key", "new", &["admin"], AccountAccess::All);
        keys.replace(new);

        assert_eq!(status_for(&mut auth, "new-key").await, None);
        let unauthenticated = (tonic::Code::Unauthenticated as i32).to_string();
        assert_eq!(
            status_for(&mut auth, "old-key").await,
            Some(unauthenticated)
        );
        assert_eq!(keys.current().len(), 1);
    }

    #[tokio::test]
    async fn a_key_of_deleted_accounts_only_is_refused_and_one_of_several_keeps_the_others() {
        let (deleted, open) = (Uuid::new_v4(), Uuid::new_v4());
        let mut ring = KeyRing::default();
        let only = |ids: &[Uuid]| AccountAccess::Only(ids.iter().copied().collect());
        ring.insert_plaintext("one", "one", &["profiles"], only(&[deleted]));
        ring.insert_plaintext("two", "two", &["profiles"], only(&[deleted, open]));
        ring.insert_plaintext("all", "all", &["profiles"], AccountAccess::All);
        let keys = SharedKeyRing::new(ring);
        let layer = AuthLayer::new(keys.clone(), Arc::new(RateLimiter::new(0, 0)));
        let mut auth = tower::Layer::layer(&layer, tower::service_fn(echo as fn(_) -> _));
        assert_eq!(status_for(&mut auth, "one").await, None);

        assert!(keys.close_accounts(HashSet::from([deleted])));
        assert!(
            !keys.close_accounts(HashSet::from([deleted])),
            "the same set again"
        );

        let denied = (tonic::Code::PermissionDenied as i32).to_string();
        assert_eq!(status_for(&mut auth, "one").await, Some(denied));
        assert_eq!(status_for(&mut auth, "two").await, None);
        assert_eq!(status_for(&mut auth, "all").await, None);
        let headers = |key: &str| {
            let mut headers = http::HeaderMap::new();
            let value = format!("Bearer {key}").parse().expect("a header value");
            headers.insert(http::header::AUTHORIZATION, value);
            headers
        };
        let two = keys.authorize(&headers("two"), "profiles").unwrap();
        assert!(two.may_access(open) && !two.may_access(deleted));
        assert!(
            keys.authorize(&headers("all"), "profiles")
                .unwrap()
                .may_access(deleted)
        );

        assert!(keys.close_accounts(HashSet::new()));
        assert_eq!(status_for(&mut auth, "one").await, None);
    }
}
