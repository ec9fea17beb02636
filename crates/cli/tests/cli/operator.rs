//! The operator commands as an operator runs them: the real `roster` binary as a process,
//! against services the harness starts in this process, in table and in `--json` output.

use std::io::Write;
use std::process::{Command, Stdio};

use roster_runtime::KeyRing;
use roster_runtime::Service;
use roster_runtime::auth::hash_key_hex;
use roster_tests::{ADMIN_KEY, Backend, TestServer, newest_reset_token, outbox_emails};
use serde_json::Value;

use crate::common::Run;

/// Services to run `roster` against.
struct Operator {
    identity: TestServer,
    notification: Option<TestServer>,
}

impl Operator {
    async fn identity() -> Operator {
        Operator {
            identity: TestServer::spawn(Service::Identity, Backend::Sqlite)
                .await
                .expect("SQLite is always available"),
            notification: None,
        }
    }

    async fn with_notification() -> Operator {
        let mut operator = Operator::identity().await;
        operator.notification = TestServer::spawn(Service::Notification, Backend::Sqlite).await;
        operator
    }

    /// Sends Ada a welcome email of `account` (named `account_name`) with `roster
    /// notifications send`; the notification's id.
    async fn send_welcome(&self, account: &str, account_name: &str) -> String {
        let sent = self
            .run(&[
                "--json",
                "notifications",
                "send",
                "--account",
                account,
                "--to",
                "ada@example.com",
                "--template",
                "welcome",
                "--var",
                "first_name=Ada",
                "--var",
                "username=ada@example.com",
                "--account-name",
                account_name,
            ])
            .await
            .ok()
            .json();
        sent["notification"]["id"]
            .as_str()
            .expect("notification id")
            .to_owned()
    }

    /// Runs `roster args…` with the admin key, feeding `stdin`.
    async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        self.run_program(env!("CARGO_BIN_EXE_roster"), args, stdin)
            .await
    }

    /// Runs `program args…` with the environment of a `roster` run, feeding `stdin`.
    async fn run_program(&self, program: &str, args: &[&str], stdin: &str) -> Run {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("ROSTER_KEY", ADMIN_KEY)
            .env("ROSTER_IDENTITY_ADDR", self.identity.addr.to_string())
            .env_remove("ROSTER_TIMEOUT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.notification {
            Some(notification) => {
                command.env("ROSTER_NOTIFICATION_ADDR", notification.addr.to_string())
            }
            // Nothing listens on port 9 (discard): a test that reaches for it fails plainly.
            None => command.env("ROSTER_NOTIFICATION_ADDR", "127.0.0.1:9"),
        };
        let stdin = stdin.to_owned();
        // The binary is a blocking child process; the servers keep running on the runtime.
        let output = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("roster starts");
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(stdin.as_bytes())
                .expect("stdin written");
            child.wait_with_output().expect("roster runs")
        })
        .await
        .expect("the blocking task completes");
        Run::from(output)
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "").await
    }

    /// Runs `roster args…` with a terminal for its standard streams (util-linux `script`
    /// makes one), typing `input` at it; what the terminal showed is `stdout`.
    async fn run_at_terminal(&self, args: &[&str], input: &str) -> Run {
        let command_line = std::iter::once(env!("CARGO_BIN_EXE_roster"))
            .chain(args.iter().copied())
            .map(|word| format!("'{word}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let script = [
            "--quiet",
            "--return",
            "--command",
            &command_line,
            "/dev/null",
        ];
        let mut run = self.run_program("script", &script, input).await;
        // The terminal joins the two streams.
        run.stdout.push_str(&std::mem::take(&mut run.stderr));
        run
    }

    /// Creates an account and returns its id.
    async fn account(&self, name: &str) -> String {
        let run = self
            .run(&["--json", "accounts", "create", "--name", name])
            .await
            .ok();
        run.json()["account"]["id"]
            .as_str()
            .expect("account id")
            .to_owned()
    }

    /// Creates a profile and returns it as JSON.
    async fn profile(&self, account: &str, first: &str, last: &str, email: &str) -> Value {
        let run = self
            .run(&[
                "--json",
                "profiles",
                "create",
                "--account",
                account,
                "--first-name",
                first,
                "--last-name",
                last,
                "--email",
                email,
            ])
            .await
            .ok();
        run.json()["profile"].clone()
    }
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is an array: {list}"))
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_created_and_listed_as_tables_and_as_json() {
    let operator = Operator::identity().await;

    let table = operator
        .run(&["accounts", "create", "--name", "Acme Table Ltd"])
        .await
        .ok();
    let rows: Vec<String> = table
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for row in ["display name: Acme Table Ltd", "extension digits: 2–8"] {
        assert!(
            rows.iter().any(|line| line == row),
            "{row}: {}",
            table.stdout
        );
    }
    let created = operator
        .run(&[
            "--json",
            "accounts",
            "create",
            "--name",
            "Json Corp",
            "--preset",
            "nist",
        ])
        .await
        .ok()
        .json();
    let json_id = created["account"]["id"].as_str().expect("account id");
    assert_eq!(created["account"]["display_name"], "Json Corp");

    let policy = operator
        .run(&["accounts", "policy", "get", json_id, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(policy["policy"]["preset"], "PASSWORD_POLICY_PRESET_NIST");
    assert_eq!(policy["policy"]["min_length"], 15);

    let listed = operator.run(&["accounts", "list"]).await.ok();
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("DISPLAY NAME"),
        "{}",
        listed.stdout
    );
    assert!(lines.iter().any(|line| line.contains("Acme Table Ltd")));
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with(json_id) && line.contains("Json Corp"))
    );

    // One page of one account, then every page: the same accounts in the same order.
    let first_page = operator
        .run(&["--json", "accounts", "list", "--page-size", "1"])
        .await
        .ok()
        .json();
    assert_eq!(ids(&first_page, "accounts").len(), 1);
    assert!(
        !first_page["next_page_token"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    );
    let all = operator
        .run(&["--json", "accounts", "list", "--page-size", "1", "--all"])
        .await
        .ok()
        .json();
    let all_ids = ids(&all, "accounts");
    assert_eq!(all_ids.len(), 2, "{all}");
    assert_eq!(all_ids[1], json_id);
    assert_eq!(all["next_page_token"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_id_creates_nothing_twice() {
    let operator = Operator::identity().await;
    let create = [
        "--json",
        "accounts",
        "create",
        "--name",
        "Once",
        "--request-id",
        "op-1",
    ];
    let first = operator.run(&create).await.ok().json();
    let again = operator.run(&create).await.ok().json();
    assert_eq!(first["account"]["id"], again["account"]["id"]);
    let all = operator
        .run(&["--json", "accounts", "list", "--all"])
        .await
        .ok()
        .json();
    assert_eq!(ids(&all, "accounts").len(), 1);
}

/// `profiles update` and `policy set` read the resource, then send it with the etag they read:
/// repeated with its request id after the first run went through (what the CLI advises when an
/// answer was lost), the repeat reads the changed resource and a new etag, and is still the
/// same request — answered the first answer, nothing done twice. The same id with another
/// change is refused, naming request_id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_modify_write_repeated_with_its_request_id_is_answered_its_first_answer() {
    let operator = Operator::identity().await;
    let account = operator.account("Retry Ltd").await;
    let profile = operator
        .profile(&account, "Ada", "Lovelace", "ada@retry.example")
        .await;
    let id = profile["id"].as_str().expect("id").to_owned();
    let update = |job: &str| {
        [
            "--json",
            "profiles",
            "update",
            &id,
            "--set",
            &format!("job_title={job}"),
            "--request-id",
            "op-update-1",
        ]
        .map(str::to_owned)
    };
    let run = |args: [String; 8]| {
        let operator = &operator;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            operator.run(&args).await
        }
    };
    let updated = run(update("Countess")).await.ok().json();
    let again = run(update("Countess")).await.ok().json();
    assert_eq!(
        updated, again,
        "the first answer, the etag it gave included"
    );
    let other = run(update("Analyst")).await.failed();
    assert!(
        other.stderr.contains("INVALID_ARGUMENT") && other.stderr.contains("request_id"),
        "{}",
        other.stderr
    );

    let policy = [
        "--json",
        "accounts",
        "policy",
        "set",
        &account,
        "--min-length",
        "14",
        "--request-id",
        "op-policy-1",
    ];
    let first = operator.run(&policy).await.ok().json();
    let again = operator.run(&policy).await.ok().json();
    assert_eq!(first, again);
    let shown = operator
        .run(&["--json", "profiles", "get", &id])
        .await
        .ok()
        .json();
    assert_eq!(shown["profile"]["job_title"], "Countess");
    assert_eq!(
        shown["profile"]["etag"], updated["profile"]["etag"],
        "nothing changed the profile after the first update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_token_is_created_with_its_secret_shown_once_listed_and_revoked() {
    let operator = Operator::identity().await;
    let account = operator.account("Scim Ltd").await;
    let create = [
        "accounts",
        "scim-token",
        "create",
        &account,
        "--name",
        "Entra ID",
        "--send-welcome-emails",
        "--request-id",
        "op-scim-1",
    ];
    let table = operator.run(&create).await.ok();
    let secret = table
        .stdout
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("rscim_"))
        .expect("the secret is printed")
        .to_owned();
    assert_eq!(secret.len(), 49, "{secret}");
    assert_eq!(
        table.stdout.matches(&secret).count(),
        1,
        "the secret is printed once"
    );
    assert!(
        table.stdout.contains("will not be shown again"),
        "{}",
        table.stdout
    );
    let rows: Vec<String> = table
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for row in [
        "display name: Entra ID".to_owned(),
        format!("secret prefix: {}", &secret[..10]),
        "welcome emails: yes".to_owned(),
    ] {
        assert!(rows.contains(&row), "{row}: {}", table.stdout);
    }
    let id = rows
        .iter()
        .find_map(|row| row.strip_prefix("id: "))
        .expect("the token's id")
        .to_owned();

    // The same request id again: the same token, and no secret.
    let again = operator.run(&create).await.ok();
    assert!(!again.stdout.contains(&secret), "{}", again.stdout);
    assert!(again.stdout.contains(&id), "{}", again.stdout);
    assert!(
        again.stderr.contains("will not be shown again"),
        "{}",
        again.stderr
    );

    let json = operator
        .run(&[
            "--json",
            "accounts",
            "scim-token",
            "create",
            &account,
            "--name",
            "Okta",
        ])
        .await
        .ok()
        .json();
    let okta_secret = json["secret"].as_str().expect("the secret");
    assert!(okta_secret.starts_with("rscim_"), "{json}");
    assert_eq!(json["token"]["send_welcome_emails"], false);
    let okta = json["token"]["id"].as_str().expect("token id").to_owned();

    let listed = operator
        .run(&["accounts", "scim-token", "list", &account])
        .await
        .ok();
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("SECRET PREFIX"),
        "{}",
        listed.stdout
    );
    assert_eq!(lines.len(), 3, "{}", listed.stdout);
    assert!(lines[1].starts_with(&okta) && lines[2].starts_with(&id));
    assert!(!listed.stdout.contains(&secret) && !listed.stdout.contains(okta_secret));

    let revoked = operator
        .run(&["--json", "accounts", "scim-token", "revoke", &account, &id])
        .await
        .ok()
        .json();
    assert_eq!(revoked["token"]["id"], id.as_str());
    assert!(revoked["token"]["revoke_time"].is_string(), "{revoked}");
    let listed = operator
        .run(&["--json", "accounts", "scim-token", "list", &account])
        .await
        .ok()
        .json();
    let tokens = listed["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 2, "{listed}");
    assert!(tokens[0].get("revoke_time").is_none(), "{listed}");
    assert_eq!(tokens[1]["revoke_time"], revoked["token"]["revoke_time"]);

    // Another account's token by id is not found.
    let other = operator.account("Other Ltd").await;
    let refused = operator
        .run(&["accounts", "scim-token", "revoke", &other, &okta])
        .await
        .failed();
    assert!(
        refused
            .stderr
            .contains("RevokeScimToken: NOT_FOUND: scim token not found"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_created_read_updated_and_deleted() {
    let operator = Operator::identity().await;
    let account = operator.account("Profiles Inc").await;
    let profile = operator
        .profile(&account, "Ada", "Lovelace", "ada@example.com")
        .await;
    let id = profile["id"].as_str().expect("profile id").to_owned();
    assert_eq!(profile["username"], "ada@example.com");
    assert_eq!(profile["status"], "PROFILE_STATUS_ACTIVE");

    let shown = operator.run(&["profiles", "get", &id]).await.ok();
    assert!(
        shown.stdout.contains("email:      ada@example.com"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("status:     active"),
        "{}",
        shown.stdout
    );

    let updated = operator
        .run(&[
            "profiles",
            "update",
            &id,
            "--set",
            "job_title=Countess",
            "--set",
            "first-name=Augusta Ada",
        ])
        .await
        .ok();
    assert!(
        updated.stdout.contains("job_title: \"\" → \"Countess\""),
        "{}",
        updated.stdout
    );
    let after = operator
        .run(&["--json", "profiles", "get", &id])
        .await
        .ok()
        .json();
    assert_eq!(after["profile"]["first_name"], "Augusta Ada");
    assert_eq!(after["profile"]["job_title"], "Countess");
    assert_ne!(after["profile"]["etag"], profile["etag"]);

    // The etag of the first read is stale now: the change is refused, not lost.
    let stale_etag = profile["etag"].as_str().expect("etag");
    let refused = operator
        .run(&[
            "--json",
            "profiles",
            "update",
            &id,
            "--set",
            "job_title=Nobody",
            "--etag",
            stale_etag,
        ])
        .await
        .failed()
        .error_json();
    assert_eq!(refused["error"]["code"], "ABORTED");
    assert_eq!(refused["error"]["reason"], "ETAG_MISMATCH");

    let listed = operator
        .run(&["profiles", "list", "--account", &account])
        .await
        .ok();
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);

    let deleted = operator.run(&["profiles", "delete", &id]).await.ok();
    assert!(
        deleted.stdout.contains("stays retired"),
        "{}",
        deleted.stdout
    );
    let active = operator
        .run(&["--json", "profiles", "list", "--account", &account])
        .await
        .ok()
        .json();
    assert!(ids(&active, "profiles").is_empty(), "{active}");
    let gone = operator
        .run(&[
            "--json",
            "profiles",
            "list",
            "--account",
            &account,
            "--status",
            "deleted",
        ])
        .await
        .ok()
        .json();
    assert_eq!(ids(&gone, "profiles"), [id]);
    assert_eq!(gone["profiles"][0]["status"], "PROFILE_STATUS_DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_profile_is_undeleted_and_a_sign_in_state_read_and_cleared() {
    let operator = Operator::identity().await;
    let account = operator.account("Lifecycle Ltd").await;
    let profile = operator
        .profile(&account, "Ada", "Lovelace", "ada@example.com")
        .await;
    let id = profile["id"].as_str().expect("profile id");

    let state = operator.run(&["passwords", "signin-state", id]).await.ok();
    assert!(state.stdout.contains("not locked"), "{}", state.stdout);
    let unlocked = operator.run(&["passwords", "unlock", id]).await.ok();
    assert!(
        unlocked
            .stdout
            .contains("Forgot 0 failed sign-ins; its sign-in was not locked."),
        "{}",
        unlocked.stdout
    );

    let not_deleted = operator
        .run(&["--json", "profiles", "undelete", id])
        .await
        .failed()
        .error_json();
    assert_eq!(not_deleted["error"]["code"], "FAILED_PRECONDITION");
    operator.run(&["profiles", "delete", id]).await.ok();
    let undeleted = operator.run(&["profiles", "undelete", id]).await.ok();
    assert!(
        undeleted
            .stdout
            .contains(&format!("Undeleted profile {id} (ada@example.com)")),
        "{}",
        undeleted.stdout
    );
    let shown = operator
        .run(&["--json", "profiles", "get", id])
        .await
        .ok()
        .json();
    assert_eq!(shown["profile"]["status"], "PROFILE_STATUS_ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_username_shows_its_reason_and_suggestions() {
    let operator = Operator::identity().await;
    let account = operator.account("Names Ltd").await;
    operator
        .profile(&account, "Ada", "Lovelace", "ada@example.com")
        .await;

    let check = [
        "usernames",
        "check",
        "ADA@Example.com",
        "--first-name",
        "Ada",
        "--last-name",
        "Lovelace",
        "--email",
        "ada@example.com",
    ];
    let table = operator.run(&check).await.ok();
    assert!(
        table.stdout.contains("canonical:   ada@example.com"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("available:   no"), "{}", table.stdout);
    assert!(
        table.stdout.contains("reason:      taken: "),
        "{}",
        table.stdout
    );

    let mut json_args = vec!["--json"];
    json_args.extend(check);
    let json = operator.run(&json_args).await.ok().json();
    assert_eq!(json["available"], false);
    assert_eq!(json["canonical"], "ada@example.com");
    assert_eq!(json["reason"], "USERNAME_REFUSAL_TAKEN");
    let suggestions = json["suggestions"].as_array().expect("suggestions");
    assert!(!suggestions.is_empty(), "{json}");
    let first = suggestions[0].as_str().expect("a suggestion");
    assert!(table.stdout.contains(first), "{}", table.stdout);

    let free = operator
        .run(&["--json", "usernames", "check", first])
        .await
        .ok()
        .json();
    assert_eq!(free["available"], true, "a suggestion is free: {free}");
}

/// How many reset emails identity's outbox holds.
async fn reset_emails(identity: &TestServer) -> usize {
    outbox_emails(identity)
        .await
        .iter()
        .filter(|email| email["template"] == "password_reset")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_prints_profile_email_and_expiry_but_never_the_token() {
    let operator = Operator::identity().await;
    let account = operator.account("Reset Co").await;
    let profile = operator
        .profile(&account, "Grace", "Hopper", "grace@example.com")
        .await;
    let id = profile["id"].as_str().expect("profile id");

    // Without a terminal to confirm at, a reset needs --yes with the confirmed address.
    let unconfirmed = operator.run(&["passwords", "reset", id]).await.failed();
    assert!(
        unconfirmed
            .stderr
            .contains("pass --yes with --email grace@example.com"),
        "{}",
        unconfirmed.stderr
    );
    // An address that is not the profile's is refused before anything is asked or sent, by
    // the CLI when it can look the profile up, and by identity when told --yes.
    let wrong = operator
        .run(&["passwords", "reset", id, "--email", "eve@example.com"])
        .await
        .failed();
    assert!(
        wrong.stderr.contains("not eve@example.com"),
        "{}",
        wrong.stderr
    );
    let refused = operator
        .run(&[
            "passwords",
            "reset",
            id,
            "--yes",
            "--email",
            "eve@example.com",
        ])
        .await
        .failed();
    assert!(
        refused.stderr.contains("PROFILE_CHANGED"),
        "{}",
        refused.stderr
    );
    assert_eq!(reset_emails(&operator.identity).await, 0);

    // At a terminal the profile is shown and the operator answers.
    let declined = operator
        .run_at_terminal(&["passwords", "reset", id], "n\n")
        .await
        .failed();
    assert!(
        declined.stdout.contains("grace@example.com"),
        "{}",
        declined.stdout
    );
    assert!(
        declined.stdout.contains("Send a password reset link"),
        "{}",
        declined.stdout
    );
    assert_eq!(reset_emails(&operator.identity).await, 0);
    let confirmed = operator
        .run_at_terminal(&["passwords", "reset", id], "y\n")
        .await
        .ok();
    assert!(
        confirmed.stdout.contains("Password reset email queued"),
        "{}",
        confirmed.stdout
    );
    assert_eq!(reset_emails(&operator.identity).await, 1);

    let table = operator
        .run(&[
            "passwords",
            "reset",
            id,
            "--yes",
            "--email",
            "GRACE@example.com",
        ])
        .await
        .ok();
    assert!(
        table.stdout.contains(&format!("profile: {id}")),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("email:   grace@example.com"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("expires: 20"), "{}", table.stdout);
    let token = newest_reset_token(&operator.identity).await;
    assert!(!table.stdout.contains(&token) && !table.stderr.contains(&token));

    let json = operator
        .run(&[
            "--json",
            "passwords",
            "reset",
            id,
            "--yes",
            "--email",
            "grace@example.com",
        ])
        .await
        .ok();
    let token = newest_reset_token(&operator.identity).await;
    assert!(!json.stdout.contains(&token) && !json.stderr.contains(&token));
    let document = json.json();
    let mut fields: Vec<&str> = document
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(fields, ["email", "expire_time", "profile_id"]);

    // The requirements and a check against them, the password read from stdin.
    let requirements = operator
        .run(&["--json", "passwords", "requirements", &account])
        .await
        .ok()
        .json();
    assert!(!requirements["rules"].as_array().expect("rules").is_empty());
    let check = operator
        .run_with_stdin(
            &[
                "--json",
                "passwords",
                "check",
                "--account",
                &account,
                "--profile",
                id,
            ],
            "short\n",
        )
        .await
        .ok()
        .json();
    assert_eq!(check["acceptable"], false);
    let codes: Vec<&str> = check["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|rule| rule["code"].as_str().expect("code"))
        .collect();
    assert!(codes.contains(&"MIN_LENGTH"), "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_new_prints_a_key_once_with_the_stanza_of_its_hash() {
    let operator = Operator::identity().await;
    let table = operator
        .run(&[
            "keys",
            "new",
            "--name",
            "signin-service",
            "--scopes",
            "signin,profiles",
            "--accounts",
            "*",
        ])
        .await
        .ok();
    let key = table
        .stdout
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("rst_"))
        .expect("the key is printed")
        .to_owned();
    let stanza = &table.stdout[table.stdout.find("[[keys]]").expect("the stanza")..];
    assert!(
        stanza.contains(&format!("sha256 = \"{}\"", hash_key_hex(&key))),
        "{stanza}"
    );
    let ring = KeyRing::parse(stanza).expect("the stanza is a keys file");
    let caller = ring.authenticate(&key).expect("the stanza admits the key");
    assert_eq!(caller.name, "signin-service");
    assert!(caller.has_scope("signin") && !caller.has_scope("accounts"));
    assert_eq!(
        table.stdout.matches(&key).count(),
        1,
        "the key is printed once"
    );

    let json = operator
        .run(&[
            "--json",
            "keys",
            "new",
            "--name",
            "ops",
            "--scopes",
            "admin",
            "--accounts",
            "*",
        ])
        .await
        .ok()
        .json();
    let key = json["key"].as_str().expect("key");
    assert_eq!(json["sha256"], hash_key_hex(key));

    let hashed = operator
        .run_with_stdin(&["keys", "hash"], &format!("{key}\n"))
        .await
        .ok();
    assert_eq!(hashed.stdout.trim(), hash_key_hex(key));

    let refused = operator
        .run(&[
            "keys",
            "new",
            "--name",
            "x",
            "--scopes",
            "root",
            "--accounts",
            "*",
        ])
        .await
        .failed();
    assert!(
        refused.stderr.contains("unknown scope \"root\""),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_exits_non_zero_naming_every_invalid_field() {
    let operator = Operator::identity().await;
    let account = operator.account("Errors Ltd").await;
    let args = [
        "profiles",
        "create",
        "--account",
        &account,
        "--first-name",
        "",
        "--last-name",
        "",
        "--email",
        "not-an-address",
    ];

    let text = operator.run(&args).await.failed();
    assert!(text.stderr.contains("INVALID_ARGUMENT"), "{}", text.stderr);
    for field in ["first_name", "last_name", "email"] {
        assert!(
            text.stderr.contains(&format!("invalid field {field}: ")),
            "{field} is named:\n{}",
            text.stderr
        );
    }
    assert!(text.stdout.is_empty(), "{}", text.stdout);

    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let json = operator.run(&json_args).await.failed().error_json();
    let error = &json["error"];
    assert_eq!(error["code"], "INVALID_ARGUMENT");
    assert_eq!(error["reason"], "INVALID_ARGUMENT");
    let bad_request = error["details"]
        .as_array()
        .expect("details")
        .iter()
        .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .unwrap_or_else(|| panic!("a BadRequest among the details: {error}"));
    let mut fields: Vec<&str> = bad_request["field_violations"]
        .as_array()
        .expect("field violations")
        .iter()
        .map(|violation| violation["field"].as_str().expect("field"))
        .collect();
    fields.sort();
    assert_eq!(fields, ["email", "first_name", "last_name"]);
    assert!(
        error["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_or_an_unknown_key_is_named() {
    let operator = Operator::identity().await;
    let unreachable = operator
        .run(&["--identity-addr", "127.0.0.1:9", "accounts", "list"])
        .await
        .failed();
    assert!(
        unreachable
            .stderr
            .contains("cannot reach identity at http://127.0.0.1:9"),
        "{}",
        unreachable.stderr
    );
    let wrong_key = operator
        .run(&["--json", "--key", "not-a-key", "accounts", "list"])
        .await
        .failed()
        .error_json();
    assert_eq!(wrong_key["error"]["code"], "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_is_sent_and_watched_until_delivered() {
    let operator = Operator::with_notification().await;
    let account = uuid::Uuid::new_v4().to_string();
    let id = &operator.send_welcome(&account, "Watch Ltd").await;

    let watched = operator
        .run(&[
            "--json",
            "notifications",
            "watch",
            id,
            "--interval",
            "100ms",
        ])
        .await
        .ok()
        .json();
    assert_eq!(watched["notification"]["state"], "NOTIFICATION_STATE_SENT");

    let listed = operator
        .run(&["notifications", "list", "--account", &account])
        .await
        .ok();
    assert!(
        listed
            .stdout
            .lines()
            .any(|line| line.starts_with(id) && line.contains("sent")),
        "{}",
        listed.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_email_is_neither_retried_nor_cancelled_and_the_refusal_names_its_state() {
    let operator = Operator::with_notification().await;
    let account = uuid::Uuid::new_v4().to_string();
    let id = &operator.send_welcome(&account, "Retry Ltd").await;
    operator
        .run(&["notifications", "watch", id, "--interval", "100ms"])
        .await
        .ok();

    let cancel = operator
        .run(&["--json", "notifications", "cancel", id])
        .await
        .failed()
        .error_json();
    assert_eq!(cancel["error"]["code"], "FAILED_PRECONDITION");
    assert_eq!(cancel["error"]["reason"], "NOTIFICATION_NOT_WAITING");
    let message = cancel["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("CancelNotification") && message.contains("SENT"),
        "{message}"
    );

    let retry = operator.run(&["notifications", "retry", id]).await.failed();
    assert!(
        retry
            .stderr
            .contains("RetryNotification: FAILED_PRECONDITION")
            && retry.stderr.contains("the notification is SENT"),
        "{}",
        retry.stderr
    );
}
