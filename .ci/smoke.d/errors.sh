# shellcheck shell=bash
# Sourced by .ci/smoke with ACCOUNT, KEY and WORK set: grpcurl reads Roster's rich error details
# through reflection (google.rpc.ErrorInfo, BadRequest), not as raw bytes.

# A username held already: ErrorInfo with its reason and the suggestions.
grpcurl -plaintext -H "authorization: Bearer $KEY" \
  -d "{\"account_id\":\"$ACCOUNT\",\"first_name\":\"Ada\",\"last_name\":\"Lovelace\",\"email\":\"smoke.ada@example.com\"}" \
  localhost:50051 roster.identity.v1.ProfileService/CreateProfile >/dev/null \
  || fail "CreateProfile of the first Ada"
if out=$(grpcurl -plaintext -H "authorization: Bearer $KEY" \
  -d "{\"account_id\":\"$ACCOUNT\",\"first_name\":\"Ada\",\"last_name\":\"Lovelace\",\"email\":\"smoke.ada@example.com\"}" \
  localhost:50051 roster.identity.v1.ProfileService/CreateProfile 2>&1); then
  fail "a taken username was accepted"
fi
grep -E '"reason": ?"USERNAME_TAKEN"' <<<"$out" >/dev/null || fail "ErrorInfo not decoded by grpcurl: $out"
grep -E '"suggestions": ?"ada\.lovelace' <<<"$out" >/dev/null || fail "suggestions not in ErrorInfo: $out"
grep -F 'is not recognized' <<<"$out" >/dev/null && fail "grpcurl could not decode a detail: $out"
echo "ok   taken username -> ErrorInfo USERNAME_TAKEN with suggestions, decoded by grpcurl"

# An invalid profile: BadRequest with every field violation.
if out=$(grpcurl -plaintext -H "authorization: Bearer $KEY" \
  -d "{\"account_id\":\"$ACCOUNT\",\"first_name\":\"\",\"last_name\":\"\",\"email\":\"not-an-email\"}" \
  localhost:50051 roster.identity.v1.ProfileService/CreateProfile 2>&1); then
  fail "an invalid profile was accepted"
fi
grep -E '"@type": ?"type\.googleapis\.com/google\.rpc\.BadRequest"' <<<"$out" >/dev/null \
  || fail "BadRequest not decoded by grpcurl: $out"
for field in first_name last_name email; do
  grep -E "\"field\": ?\"$field\"" <<<"$out" >/dev/null || fail "no violation of $field: $out"
done
grep -F 'is not recognized' <<<"$out" >/dev/null && fail "grpcurl could not decode a detail: $out"
echo "ok   invalid profile -> BadRequest naming first_name, last_name, email, decoded by grpcurl"
