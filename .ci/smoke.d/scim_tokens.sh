# shellcheck shell=bash
# Sourced by .ci/smoke with ACCOUNT, KEY and WORK set: an account's SCIM token made, listed and
# revoked with grpcurl, its secret in the creating answer only.

scim() { # method json
  grpcurl -plaintext -H "authorization: Bearer $KEY" -d "$2" \
    localhost:50051 "roster.identity.v1.AccountService/$1"
}
created=$(scim CreateScimToken "{\"account_id\":\"$ACCOUNT\",\"display_name\":\"Smoke IdP\",\"request_id\":\"smoke-scim\"}") \
  || fail "CreateScimToken: $created"
read -r token secret < <(python3 -c '
import json, sys
answer = json.load(sys.stdin)
print(answer["token"]["id"], answer["secret"])' <<<"$created") || fail "CreateScimToken answered: $created"
[[ "$secret" =~ ^rscim_[A-Za-z0-9_-]{43}$ ]] || fail "not a SCIM secret: $secret"
again=$(scim CreateScimToken "{\"account_id\":\"$ACCOUNT\",\"display_name\":\"Smoke IdP\",\"request_id\":\"smoke-scim\"}") \
  || fail "repeated CreateScimToken: $again"
grep -F "$token" <<<"$again" >/dev/null || fail "the repeat answered another token: $again"
grep -F "$secret" <<<"$again" >/dev/null && fail "the repeat showed the secret again: $again"
echo "ok   CreateScimToken -> a secret once; the repeated request id answers the token without it"

listed=$(scim ListScimTokens "{\"account_id\":\"$ACCOUNT\"}") || fail "ListScimTokens: $listed"
grep -F "$token" <<<"$listed" >/dev/null || fail "the token is not listed: $listed"
grep -F "${secret:0:10}" <<<"$listed" >/dev/null || fail "the secret's prefix is not listed: $listed"
grep -F "$secret" <<<"$listed" >/dev/null && fail "the list shows the secret: $listed"
revoked=$(scim RevokeScimToken "{\"account_id\":\"$ACCOUNT\",\"token_id\":\"$token\"}") \
  || fail "RevokeScimToken: $revoked"
grep -F "revokeTime" <<<"$revoked" >/dev/null || fail "no revocation time: $revoked"
echo "ok   ListScimTokens shows the token by its prefix; RevokeScimToken revokes it"
