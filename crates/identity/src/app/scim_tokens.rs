//! SCIM tokens: an administrator of an account creates, lists and revokes them at run time
//! (gRPC, the CLI), and the SCIM endpoint finds the token a request bears with
//! [`Identity::scim_token`]. Each token acts on its own account only, and only through SCIM.
//!
//! A secret is 32 bytes from the operating system's random generator, handed over once, in
//! the answer that creates it, and stored only as its SHA-256. It is never logged, never in an
//! event, and never in an answer kept for a repeated request id: a repeated CreateScimToken
//! answers its token without the secret.
//!
//! Every SCIM request looks its token up in the database, so a revoked token is refused by
//! every replica from the moment its revocation commits.

use rand::TryRngCore;
use rand::rngs::OsRng;
use roster_runtime::Caller;
use sha2::{Digest, Sha256};

use super::events::origin;
use super::{Identity, RequestId, Seen, once, request_scope};
use crate::domain::error::IdentityError;
use crate::domain::event;
use crate::domain::ids::{AccountId, ScimTokenId};
use crate::domain::scim_token::{SECRET_BYTES, ScimSecret, ScimToken, ScimTokenName};
use crate::store::NewScimTokenRow;

/// What CreateScimToken asks for.
#[derive(Clone, Debug)]
pub struct NewScimToken {
    pub account_id: AccountId,
    /// Checked here (see [`ScimTokenName`]).
    pub display_name: String,
    pub send_welcome_emails: bool,
}

/// The answer to CreateScimToken.
#[derive(Clone, Debug)]
pub struct CreatedScimToken {
    pub token: ScimToken,
    /// The secret, when this call created the token; `None` when the answer repeats the first
    /// answer to its request id, which showed it already.
    pub secret: Option<ScimSecret>,
}

/// A new secret from the operating system's random generator.
fn new_secret() -> Result<ScimSecret, IdentityError> {
    let mut random = [0u8; SECRET_BYTES];
    OsRng.try_fill_bytes(&mut random).map_err(|error| {
        IdentityError::Internal(format!("the operating system's random generator: {error}"))
    })?;
    Ok(ScimSecret::from_random(random))
}

/// SHA-256 of a secret, hex, as stored.
fn secret_sha256(secret: &ScimSecret) -> String {
    hex::encode(Sha256::digest(secret.expose_secret().as_bytes()))
}

impl Identity {
    /// Creates a SCIM token for an account the caller may act on (another account is
    /// NOT_FOUND), unless the account has as many active tokens as it may have. The token is
    /// recorded with its event in one transaction, once per request id: a repeat answers the
    /// same token without its secret.
    pub async fn create_scim_token(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        new: NewScimToken,
    ) -> Result<CreatedScimToken, IdentityError> {
        if !caller.may_access(new.account_id.0) {
            return Err(IdentityError::NotFound("account"));
        }
        let name = ScimTokenName::parse("display_name", &new.display_name)?;
        let secret = new_secret()?;
        let digest = secret_sha256(&secret);
        let row = NewScimTokenRow {
            account_id: new.account_id,
            display_name: &name,
            send_welcome_emails: new.send_welcome_emails,
            secret_sha256: &digest,
            secret_prefix: secret.shown_prefix(),
        };
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        let mut created = None;
        let token = once(
            store,
            &request_scope(caller, "CreateScimToken"),
            request_id,
            Seen::Checked,
            async |txn| {
                let token = store.create_scim_token(txn, row).await?;
                store.ensure_account_open(txn, new.account_id).await?;
                store
                    .append_events(txn, &origin, vec![event::scim_token_created(&token)])
                    .await?;
                created = Some(token.id);
                Ok(token)
            },
        )
        .await?;
        // The token is this call's own only when its transaction committed; otherwise the
        // answer is the first one to the request id, whose secret was shown then.
        let secret = (created == Some(token.id)).then_some(secret);
        Ok(CreatedScimToken { token, secret })
    }

    /// A page of an account's tokens, revoked ones included, newest first, created before
    /// `before` when given; one more than `limit` tells that another page follows. An account
    /// the caller may not act on is NOT_FOUND, like one that does not exist.
    pub async fn scim_tokens(
        &self,
        caller: &Caller,
        account_id: AccountId,
        before: Option<ScimTokenId>,
        limit: u64,
    ) -> Result<Vec<ScimToken>, IdentityError> {
        if !caller.may_access(account_id.0) || self.store.account(account_id).await?.is_none() {
            return Err(IdentityError::NotFound("account"));
        }
        Ok(self.store.scim_tokens(account_id, before, limit).await?)
    }

    /// Revokes a token of an account the caller may act on (another account is NOT_FOUND); a
    /// token that is not the account's is NOT_FOUND, like one that does not exist. A revoked
    /// token is answered as it is, and only the revocation that happens writes an event.
    pub async fn revoke_scim_token(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        account_id: AccountId,
        id: ScimTokenId,
    ) -> Result<ScimToken, IdentityError> {
        if !caller.may_access(account_id.0) {
            return Err(IdentityError::NotFound("account"));
        }
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        once(
            store,
            &request_scope(caller, "RevokeScimToken"),
            request_id,
            Seen::Checked,
            async |txn| {
                let (token, revoked) = store
                    .revoke_scim_token(txn, account_id, id)
                    .await?
                    .ok_or(IdentityError::NotFound("scim token"))?;
                if revoked {
                    store
                        .append_events(txn, &origin, vec![event::scim_token_revoked(&token)])
                        .await?;
                }
                Ok(token)
            },
        )
        .await
    }

    /// The active token whose secret `secret` is, for the SCIM endpoint: `None` for a revoked
    /// or unknown secret, and, without a query, for anything not shaped like a secret.
    pub async fn scim_token(&self, secret: &str) -> Result<Option<ScimToken>, IdentityError> {
        let Some(secret) = ScimSecret::parse(secret) else {
            return Ok(None);
        };
        Ok(self
            .store
            .active_scim_token(&secret_sha256(&secret))
            .await?)
    }
}
