# Bulk import end to end with grpcurl, as an operator drives it: download the template, upload a
# small CSV inline (base64 `content`), wait for VALIDATED, review the rows, submit, wait for
# COMPLETED, download the report. Sourced by .ci/smoke with $ACCOUNT, $KEY, $WORK and `fail`.

imports_addr=localhost:50052
imports_auth=(-H "authorization: Bearer $KEY")
imports_call() { # method json
  grpcurl -plaintext "${imports_auth[@]}" -d "$2" "$imports_addr" "roster.imports.v1.ImportService/$1"
}
# Concatenates the `chunk`s of a grpcurl server stream (one JSON object per message).
imports_join_chunks() {
  python3 -c '
import base64, json, sys
text, decoder, position, data = sys.stdin.read(), json.JSONDecoder(), 0, b""
while True:
    while position < len(text) and text[position].isspace():
        position += 1
    if position >= len(text):
        break
    message, position = decoder.raw_decode(text, position)
    data += base64.b64decode(message.get("chunk", ""))
sys.stdout.buffer.write(data)'
}
imports_field() { # json field
  python3 -c 'import json, sys; print(json.load(sys.stdin)["import"].get(sys.argv[1], ""))' "$2" <<<"$1"
}
imports_wait() { # import id, wanted state
  local state="" out
  for _ in $(seq 1 60); do
    out=$(imports_call GetImport "{\"import_id\":\"$1\"}") || fail "GetImport: $out"
    state=$(imports_field "$out" state)
    [ "$state" = "$2" ] && return 0
    sleep 0.5
  done
  fail "import $1 is $state, expected $2: $out"
}

template=$(imports_call DownloadTemplate "{\"account_id\":\"$ACCOUNT\"}") || fail "DownloadTemplate: $template"
imports_join_chunks <<<"$template" >"$WORK/template.csv"
head -c 3 "$WORK/template.csv" | od -An -tx1 | grep "ef bb bf" >/dev/null || fail "the template has no UTF-8 BOM"
head -1 "$WORK/template.csv" | grep $'Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone,Extensions,Roles\r' >/dev/null \
  || fail "template header: $(head -1 "$WORK/template.csv")"
echo "ok   DownloadTemplate: BOM, CRLF and the header row"

suffix=$(date +%s%N)
printf 'Internal ID;First Name;Last Name;Email Address;Job Title\r\n;Grace;Hopper;grace.%s@example.com;=Admiral\r\n;Alan;Turing;alan.%s@example.com; Scientist \r\n' \
  "$suffix" "$suffix" >"$WORK/people.csv"
content=$(base64 -w0 "$WORK/people.csv")
created=$(imports_call CreateImport \
  "{\"request_id\":\"smoke-$suffix\",\"account_id\":\"$ACCOUNT\",\"file_name\":\"people.csv\",\"content\":\"$content\"}") \
  || fail "CreateImport: $created"
import_id=$(imports_field "$created" id)
imports_wait "$import_id" IMPORT_STATE_VALIDATED
echo "ok   CreateImport inline -> VALIDATED ($import_id)"

rows=$(imports_call ListImportRows "{\"import_id\":\"$import_id\",\"filter\":\"IMPORT_ROW_FILTER_CREATES\"}") \
  || fail "ListImportRows: $rows"
python3 -c '
import json, sys
rows = json.load(sys.stdin)["rows"]
assert len(rows) == 2, rows
assert rows[0]["values"]["Job Title"] == "=Admiral", rows[0]
assert rows[1]["notes"][0]["reason"] == "WHITESPACE_TRIMMED", rows[1]
' <<<"$rows" || fail "unexpected preview: $rows"
echo "ok   ListImportRows: two creates, formula kept as text, trimmed white space noted"

submitted=$(imports_call SubmitImport "{\"import_id\":\"$import_id\",\"request_id\":\"smoke-submit-$suffix\"}") \
  || fail "SubmitImport: $submitted"
imports_wait "$import_id" IMPORT_STATE_COMPLETED
echo "ok   SubmitImport -> COMPLETED"

report=$(imports_call DownloadReport "{\"import_id\":\"$import_id\"}") || fail "DownloadReport: $report"
imports_join_chunks <<<"$report" >"$WORK/report.csv"
grep -q "Status,Error" "$WORK/report.csv" || fail "report header: $(head -1 "$WORK/report.csv")"
[ "$(grep -c ',Created,' "$WORK/report.csv")" -eq 2 ] || fail "report: $(cat "$WORK/report.csv")"
grep -q "'=Admiral" "$WORK/report.csv" || fail "the report does not escape formulas: $(cat "$WORK/report.csv")"
echo "ok   DownloadReport: every row Created, with its Internal ID"
