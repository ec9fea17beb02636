//! The Prometheus endpoint of each service, scraped over HTTP after real calls and parsed: the
//! gRPC series with go-grpc-middleware's names, label set and label values (unary, server- and
//! client-streaming calls, error codes, a stream the client cancels, paths the server does not
//! host), the latency histogram's buckets, the database pool, identity's outbox while its relay
//! cannot deliver and after it did, notification's queue and its sent, retrying and failed
//! counters against a real SMTP server, and bulk-import's rows processed and imports by state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_proto::identity::v1 as id;
use roster_proto::imports::v1 as im;
use roster_proto::notification::v1::SendEmailRequest;
use roster_runtime::Service;
use roster_tests::clients::{Identity, Imports, Notifications};
use roster_tests::imports::{ImportSuite, people_csv};
use roster_tests::smtp::SmtpServer;
use roster_tests::{
    ADMIN_KEY, TestDatabase, TestServer, both_backends, identity_settings, notification_settings,
    scrape_metrics, test_settings,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

/// The values `grpc_code` may take: grpc-go's names of the status codes.
const GO_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The buckets of `grpc_server_handling_seconds`: Prometheus' default ones, as go-grpc-middleware
/// has them.
const BUCKETS: [f64; 12] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];

/// One sample line of the exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: the samples and the `# TYPE` of each metric family.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

impl Scrape {
    async fn of(addr: SocketAddr) -> Scrape {
        let (content_type, text) = scrape_metrics(addr).await;
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        Scrape::parse(text)
    }

    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        let mut types = HashMap::new();
        for line in text.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declaration.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Scrape {
            text,
            samples,
            types,
        }
    }

    /// The value of the sample `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|sample| sample.name == name && sample.labels == labels)
            .map(|sample| sample.value)
    }

    /// [`Scrape::value`], failing the test with the whole text when the sample is missing.
    fn expect(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    /// Every sample of `name`.
    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |sample| sample.name == name)
    }
}

/// `name{key="value",…} value`, with the text format's escapes in label values.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("a sample has a value");
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (index, char) = chars.next().expect("labels end with }");
            match char {
                '}' => {
                    rest = &inner[index + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, char)| char), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("a closed label value").1 {
                            '"' => break,
                            '\\' => match chars.next().expect("an escape").1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.trim().split(' ').next().expect("a value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        value => value
            .parse()
            .unwrap_or_else(|_| panic!("a number in {line}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// The labels of a method in every gRPC series but `grpc_server_handled_total`.
fn method<'a>(grpc_type: &'a str, service: &'a str, name: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("grpc_type", grpc_type),
        ("grpc_service", service),
        ("grpc_method", name),
    ]
}

/// The labels of a method's `grpc_server_handled_total` for `code`.
fn handled<'a>(
    grpc_type: &'a str,
    service: &'a str,
    name: &'a str,
    code: &'a str,
) -> [(&'a str, &'a str); 4] {
    [
        ("grpc_type", grpc_type),
        ("grpc_service", service),
        ("grpc_method", name),
        ("grpc_code", code),
    ]
}

/// Checks the label set of every gRPC sample: exactly go-grpc-middleware's labels, with its
/// values for `grpc_type` and `grpc_code`.
fn assert_go_grpc_middleware_labels(scrape: &Scrape) {
    let grpc: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|sample| sample.name.starts_with("grpc_server_"))
        .collect();
    assert!(!grpc.is_empty(), "{}", scrape.text);
    for sample in grpc {
        let keys: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
        let mut expected = BTreeSet::from(["grpc_type", "grpc_service", "grpc_method"]);
        match sample.name.as_str() {
            "grpc_server_handled_total" => {
                expected.insert("grpc_code");
                let code = &sample.labels["grpc_code"];
                assert!(GO_CODES.contains(&code.as_str()), "{sample:?}");
            }
            "grpc_server_handling_seconds_bucket" => {
                expected.insert("le");
            }
            "grpc_server_started_total"
            | "grpc_server_msg_received_total"
            | "grpc_server_msg_sent_total"
            | "grpc_server_handling_seconds_sum"
            | "grpc_server_handling_seconds_count" => {}
            other => panic!("a gRPC series go-grpc-middleware does not have: {other}"),
        }
        assert_eq!(keys, expected, "{sample:?}");
        let grpc_type = sample.labels["grpc_type"].as_str();
        let unknown = sample.labels["grpc_service"] == "unknown";
        assert!(
            ["unary", "client_stream", "server_stream", "bidi_stream"].contains(&grpc_type)
                || (unknown && grpc_type == "unknown"),
            "{sample:?}"
        );
    }
    for (family, kind) in [
        ("grpc_server_started_total", "counter"),
        ("grpc_server_handled_total", "counter"),
        ("grpc_server_msg_received_total", "counter"),
        ("grpc_server_msg_sent_total", "counter"),
        ("grpc_server_handling_seconds", "histogram"),
    ] {
        assert_eq!(
            scrape.types.get(family).map(String::as_str),
            Some(kind),
            "{family} in\n{}",
            scrape.text
        );
    }
}

/// Scrapes `addr` until `done` holds, failing after [`WAIT`].
async fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let started = Instant::now();
    loop {
        let scrape = Scrape::of(addr).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(
            started.elapsed() < WAIT,
            "{what}: not within {WAIT:?}\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list_services_by_reflection(server: &TestServer) {
    use futures::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    while let Some(message) = stream.next().await {
        message.expect("a reflection answer");
    }
}

fn welcome_email(request_id: &str, recipient: &str) -> SendEmailRequest {
    SendEmailRequest {
        request_id: request_id.into(),
        account_id: uuid::Uuid::new_v4().to_string(),
        recipient: recipient.into(),
        template: "welcome".into(),
        locale: "en".into(),
        variables: HashMap::from([
            ("first_name".to_owned(), "Ada".to_owned()),
            ("username".to_owned(), "ada".to_owned()),
        ]),
        account_display_name: "Acme".into(),
    }
}

const ACCOUNTS: &str = "roster.identity.v1.AccountService";
const IMPORTS: &str = "roster.imports.v1.ImportService";

async fn unary_calls_carry_the_go_grpc_middleware_labels_and_codes(backend: roster_tests::Backend) {
    let Some(identity) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let accounts = Identity::new(identity.channel().await, ADMIN_KEY);
    accounts
        .create_account(id::CreateAccountRequest {
            request_id: "metrics".into(),
            display_name: "Metrics Ltd".into(),
            ..Default::default()
        })
        .await
        .expect("account created");
    let invalid = accounts
        .create_account(id::CreateAccountRequest::default())
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let missing = accounts
        .get_account(id::GetAccountRequest {
            id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let anonymous = accounts
        .without_key()
        .list_accounts(id::ListAccountsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    list_services_by_reflection(&identity).await;

    let scrape = Scrape::of(identity.metrics_addr()).await;
    assert_go_grpc_middleware_labels(&scrape);
    let create = method("unary", ACCOUNTS, "CreateAccount");
    for (name, labels, count) in [
        ("grpc_server_started_total", &create[..], 2.0),
        (
            "grpc_server_handled_total",
            &handled("unary", ACCOUNTS, "CreateAccount", "OK")[..],
            1.0,
        ),
        (
            "grpc_server_handled_total",
            &handled("unary", ACCOUNTS, "CreateAccount", "InvalidArgument")[..],
            1.0,
        ),
        (
            "grpc_server_handled_total",
            &handled("unary", ACCOUNTS, "GetAccount", "NotFound")[..],
            1.0,
        ),
        (
            "grpc_server_handled_total",
            &handled("unary", ACCOUNTS, "ListAccounts", "Unauthenticated")[..],
            1.0,
        ),
        ("grpc_server_msg_received_total", &create[..], 2.0),
        // The refused call answered with a status alone.
        ("grpc_server_msg_sent_total", &create[..], 1.0),
        ("grpc_server_handling_seconds_count", &create[..], 2.0),
    ] {
        assert_eq!(scrape.expect(name, labels), count, "{name}{labels:?}");
    }
    // A bidirectional stream, whose status comes in the trailers.
    let reflection = method(
        "bidi_stream",
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    );
    for name in [
        "grpc_server_started_total",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "grpc_server_handling_seconds_count",
    ] {
        assert_eq!(scrape.expect(name, &reflection), 1.0, "{name}");
    }
    assert_eq!(
        scrape.expect(
            "grpc_server_handled_total",
            &handled(
                "bidi_stream",
                "grpc.reflection.v1.ServerReflection",
                "ServerReflectionInfo",
                "OK"
            )
        ),
        1.0
    );

    // The histogram: every default bucket, cumulative, ending in +Inf at the count.
    let buckets: Vec<(f64, f64)> = scrape
        .named("grpc_server_handling_seconds_bucket")
        .filter(|sample| {
            sample.labels["grpc_method"] == "CreateAccount" && sample.labels["grpc_type"] == "unary"
        })
        .map(|sample| {
            let le = &sample.labels["le"];
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            (bound, sample.value)
        })
        .collect();
    assert_eq!(
        buckets.iter().map(|(bound, _)| *bound).collect::<Vec<_>>(),
        BUCKETS,
        "{}",
        scrape.text
    );
    assert!(buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1));
    assert_eq!(buckets.last().map(|(_, count)| *count), Some(2.0));
    assert!(scrape.expect("grpc_server_handling_seconds_sum", &create) > 0.0);

    // No upper-case code names are left from before.
    assert!(!scrape.text.contains("NOT_FOUND"), "{}", scrape.text);
    assert!(!scrape.text.contains("UNAUTHENTICATED"), "{}", scrape.text);

    assert_eq!(
        scrape.expect("roster_db_pool_max_connections", &[]),
        f64::from(identity.settings.db_max_connections)
    );
    let open = scrape.expect("roster_db_pool_connections", &[]);
    let idle = scrape.expect("roster_db_pool_idle_connections", &[]);
    assert!(
        open >= 1.0 && idle <= open,
        "pool: {open} open, {idle} idle"
    );
}

async fn streaming_calls_are_typed_from_their_descriptors_and_end_as_canceled_when_dropped(
    backend: roster_tests::Backend,
) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Metrics Streams Ltd").await;
    let imports = suite.import_client().await;
    let addr = suite.imports.metrics_addr();

    // Server streaming: the template, in as many messages as the client reads.
    let mut template = imports
        .download_template(im::DownloadTemplateRequest {
            account_id: account.clone(),
        })
        .await
        .expect("DownloadTemplate");
    let mut pieces = 0.0;
    while template
        .message()
        .await
        .expect("a template piece")
        .is_some()
    {
        pieces += 1.0;
    }
    let download = method("server_stream", IMPORTS, "DownloadTemplate");
    let scrape = Scrape::of(addr).await;
    assert_go_grpc_middleware_labels(&scrape);
    assert_eq!(scrape.expect("grpc_server_started_total", &download), 1.0);
    assert_eq!(
        scrape.expect("grpc_server_msg_received_total", &download),
        1.0
    );
    assert_eq!(
        scrape.expect("grpc_server_msg_sent_total", &download),
        pieces
    );
    assert_eq!(
        scrape.expect(
            "grpc_server_handled_total",
            &handled("server_stream", IMPORTS, "DownloadTemplate", "OK")
        ),
        1.0
    );
    assert_eq!(
        scrape.expect("grpc_server_handling_seconds_count", &download),
        1.0
    );

    // Client streaming: an upload, the header and a first chunk sent, left open.
    let file = people_csv("streams", 3);
    let (first, rest) = file.split_at(file.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    let upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    assert!(upload.send(first).await);
    // A chunk this small is gathered, not stored yet: the import is there from the header.
    let import_id = imports
        .uploading_import(&suite.imports.database, &account, 0, WAIT)
        .await;

    // Server streaming that lasts: the upload's progress, followed while it is UPLOADING.
    let mut watch = imports
        .watch_import(im::WatchImportRequest {
            import_id: import_id.clone(),
        })
        .await
        .expect("WatchImport");
    watch
        .message()
        .await
        .expect("a progress message")
        .expect("the import as it is");
    let watching = method("server_stream", IMPORTS, "WatchImport");
    let uploading = method("client_stream", IMPORTS, "UploadImport");
    let scrape = Scrape::of(addr).await;
    assert_eq!(scrape.expect("grpc_server_started_total", &watching), 1.0);
    assert_eq!(scrape.expect("grpc_server_started_total", &uploading), 1.0);
    assert!(scrape.expect("grpc_server_msg_sent_total", &watching) >= 1.0);
    // Started, not finished: no status yet, and no latency either.
    for call in ["WatchImport", "UploadImport"] {
        assert!(
            !scrape
                .named("grpc_server_handled_total")
                .chain(scrape.named("grpc_server_handling_seconds_count"))
                .any(|sample| sample.labels["grpc_method"] == call),
            "{call} counted as finished while open:\n{}",
            scrape.text
        );
    }

    // The client goes away from the watch: the call ends Canceled.
    drop(watch);
    scrape_until(addr, "the dropped watch counted as Canceled", |scrape| {
        scrape.value(
            "grpc_server_handled_total",
            &handled("server_stream", IMPORTS, "WatchImport", "Canceled"),
        ) == Some(1.0)
    })
    .await;

    assert!(upload.send(second).await);
    assert!(upload.send(third).await);
    let uploaded = upload.finish().await.expect("the upload is accepted");
    assert_eq!(uploaded.id, import_id);
    let scrape = Scrape::of(addr).await;
    assert_go_grpc_middleware_labels(&scrape);
    assert_eq!(
        scrape.expect(
            "grpc_server_handled_total",
            &handled("client_stream", IMPORTS, "UploadImport", "OK")
        ),
        1.0
    );
    // The header, three chunks and the end in; one answer out.
    assert_eq!(
        scrape.expect("grpc_server_msg_received_total", &uploading),
        5.0
    );
    assert_eq!(scrape.expect("grpc_server_msg_sent_total", &uploading), 1.0);
    assert_eq!(
        scrape.expect("grpc_server_handling_seconds_count", &uploading),
        1.0
    );
    assert_eq!(
        scrape.expect("grpc_server_msg_received_total", &watching),
        1.0
    );
    assert_eq!(
        scrape.expect("grpc_server_handling_seconds_count", &watching),
        1.0
    );
    // A streaming error answered at once: a status, no message.
    let refused = imports
        .watch_import(im::WatchImportRequest {
            import_id: "not-an-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let scrape = Scrape::of(addr).await;
    assert_eq!(
        scrape.expect(
            "grpc_server_handled_total",
            &handled("server_stream", IMPORTS, "WatchImport", "InvalidArgument")
        ),
        1.0
    );
    assert_eq!(scrape.expect("grpc_server_started_total", &watching), 2.0);
}

async fn unhosted_paths_are_counted_under_one_unknown_label_set(backend: roster_tests::Backend) {
    let Some(notification) = TestServer::spawn(Service::Notification, backend).await else {
        return;
    };
    let channel = notification.channel().await;
    let unhosted = Identity::new(channel.clone(), ADMIN_KEY)
        .get_profile(id::GetProfileRequest { id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(unhosted.code(), Code::Unimplemented);
    // Paths a caller makes up: each would be a series of its own if counted by name.
    for n in 0..20 {
        let path = format!("/attacker{n}.Service/Method{n}");
        let status = roster_tests::raw::call(&channel, &path, Some(ADMIN_KEY), Vec::new())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
    }

    let scrape = Scrape::of(notification.metrics_addr()).await;
    assert_go_grpc_middleware_labels(&scrape);
    let unknown = method("unknown", "unknown", "unknown");
    assert_eq!(scrape.expect("grpc_server_started_total", &unknown), 21.0);
    assert_eq!(
        scrape.expect(
            "grpc_server_handled_total",
            &handled("unknown", "unknown", "unknown", "Unimplemented")
        ),
        21.0
    );
    for sample in scrape.samples.iter() {
        for value in sample.labels.values() {
            assert!(
                !value.contains("attacker") && !value.contains("GetProfile"),
                "{sample:?}"
            );
        }
    }
}

async fn metrics_show_the_notification_queue_depth_and_age(backend: roster_tests::Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let settings = test_settings(Service::Notification, &database.url);
    // Nobody listens on port 1: the email waits for a retry a minute away.
    let notification = TestServer::start_notification(
        settings,
        roster_notification::Settings {
            retry_base_millis: 60_000,
            retry_max_millis: 120_000,
            ..notification_settings("smtp://127.0.0.1:1")
        },
        Arc::new(database),
        Vec::new(),
    )
    .await;
    Notifications::new(notification.channel().await, ADMIN_KEY)
        .send_email(welcome_email("metrics-queue", "ada@example.com"))
        .await
        .expect("queued");

    let scrape = scrape_until(
        notification.metrics_addr(),
        "the refused connection counted as a retry",
        |scrape| scrape.value("roster_notification_messages_retrying_total", &[]) == Some(1.0),
    )
    .await;
    assert_eq!(scrape.expect("roster_notification_queue_depth", &[]), 1.0);
    let age = scrape.expect("roster_notification_queue_oldest_age_seconds", &[]);
    assert!(age > 0.0 && age < 60.0, "oldest email waits {age} s");
    assert_eq!(
        scrape.expect("roster_notification_messages_sent_total", &[]),
        0.0
    );
    assert_eq!(
        scrape.expect("roster_notification_messages_failed_total", &[]),
        0.0
    );
}

async fn notification_counts_messages_sent_retrying_and_failed_on_a_real_smtp_server(
    backend: roster_tests::Backend,
) {
    let Some(smtp) = SmtpServer::start(&[
        "--reject",
        "gone@example.com",
        "--tempfail",
        "busy@example.com",
    ])
    .await
    else {
        return;
    };
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let mail = notification_settings(&smtp.url());
    let max_attempts = mail.max_attempts;
    let notification = TestServer::start_notification(
        test_settings(Service::Notification, &database.url),
        mail,
        Arc::new(database),
        Vec::new(),
    )
    .await;
    let addr = notification.metrics_addr();
    let scrape = Scrape::of(addr).await;
    for counter in [
        "roster_notification_messages_sent_total",
        "roster_notification_messages_retrying_total",
        "roster_notification_messages_failed_total",
    ] {
        assert_eq!(scrape.expect(counter, &[]), 0.0, "{counter}");
        assert_eq!(
            scrape.types.get(counter).map(String::as_str),
            Some("counter")
        );
    }

    let client = Notifications::new(notification.channel().await, ADMIN_KEY);
    for (request_id, recipient) in [
        ("metrics-ok", "ada@example.com"),
        // 550: refused for good at the first attempt.
        ("metrics-gone", "gone@example.com"),
        // 451 every time: retried until the attempts run out.
        ("metrics-busy", "busy@example.com"),
    ] {
        client
            .send_email(welcome_email(request_id, recipient))
            .await
            .expect("queued");
    }
    let scrape = scrape_until(addr, "every email delivered or given up", |scrape| {
        scrape.value("roster_notification_queue_depth", &[]) == Some(0.0)
            && scrape.value("roster_notification_messages_failed_total", &[]) == Some(2.0)
    })
    .await;
    assert_eq!(
        scrape.expect("roster_notification_messages_sent_total", &[]),
        1.0
    );
    assert_eq!(
        scrape.expect("roster_notification_messages_retrying_total", &[]),
        f64::from(max_attempts - 1),
        "busy@ was retried after each attempt but its last"
    );
    assert_eq!(
        scrape.expect("roster_notification_queue_oldest_age_seconds", &[]),
        0.0
    );
    assert_eq!(smtp.records().len(), 1);
    assert_eq!(
        scrape.expect(
            "grpc_server_handled_total",
            &handled(
                "unary",
                "roster.notification.v1.NotificationService",
                "SendEmail",
                "OK"
            )
        ),
        3.0
    );
}

/// Creates a profile with a welcome email, which identity writes to its outbox.
async fn welcome(identity: &TestServer) {
    let channel = identity.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Outbox Ltd")
        .await
        .id;
    Identity::new(channel, ADMIN_KEY)
        .create_profile(id::CreateProfileRequest {
            account_id: account,
            first_name: "Grace".to_owned(),
            last_name: "Hopper".to_owned(),
            email: "grace@example.com".to_owned(),
            send_welcome_email: true,
            ..Default::default()
        })
        .await
        .expect("profile created");
}

const RELAY_FAILURES: &str = "roster_identity_outbox_relay_failures_total";

async fn the_outbox_series_show_a_relay_that_cannot_deliver_and_its_recovery(
    backend: roster_tests::Backend,
) {
    // Notification's address, where nothing listens until the test starts it.
    let notification_addr = std::net::SocketAddr::from(([127, 0, 0, 1], roster_tests::free_port()));
    let Some(identity_db) = TestDatabase::create(backend).await else {
        return;
    };
    let identity = TestServer::start_with(
        Service::Identity,
        test_settings(Service::Identity, &identity_db.url),
        roster_identity::Settings {
            notification_url: Some(format!("http://{notification_addr}")),
            notification_key: Some(ADMIN_KEY.to_owned()),
            ..identity_settings()
        },
        Arc::new(identity_db),
        Vec::new(),
    )
    .await;
    let addr = identity.metrics_addr();
    let scrape = Scrape::of(addr).await;
    assert_eq!(scrape.expect("roster_identity_outbox_depth", &[]), 0.0);
    assert_eq!(
        scrape.expect("roster_identity_outbox_oldest_age_seconds", &[]),
        0.0
    );
    for reason in [
        "unavailable",
        "deadline_exceeded",
        "refused",
        "rejected",
        "unreadable_payload",
        "database",
    ] {
        assert_eq!(
            scrape.expect(RELAY_FAILURES, &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }
    assert_eq!(
        scrape.types.get(RELAY_FAILURES).map(String::as_str),
        Some("counter")
    );

    welcome(&identity).await;
    let stuck = scrape_until(addr, "a failed hand-over counted", |scrape| {
        scrape
            .value(RELAY_FAILURES, &[("reason", "unavailable")])
            .is_some_and(|failures| failures >= 1.0)
    })
    .await;
    assert_eq!(stuck.expect("roster_identity_outbox_depth", &[]), 1.0);
    let age = stuck.expect("roster_identity_outbox_oldest_age_seconds", &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = Scrape::of(addr).await;
    assert_eq!(later.expect("roster_identity_outbox_depth", &[]), 1.0);
    let older = later.expect("roster_identity_outbox_oldest_age_seconds", &[]);
    assert!(
        older >= age + 1.0,
        "the waiting email's age grows: {age} s, then {older} s"
    );
    assert_eq!(later.expect("roster_outbox_relay_refused_total", &[]), 0.0);

    // Notification comes up where the relay calls: the email is handed over.
    let notification_db = Arc::new(
        TestDatabase::create(backend)
            .await
            .expect("the backend is there"),
    );
    let mail = tempfile::tempdir().expect("mail directory");
    let mut settings = test_settings(Service::Notification, &notification_db.url);
    settings.listen_addr = notification_addr;
    let notification = TestServer::start_notification(
        settings,
        notification_settings(&format!("file://{}", mail.path().display())),
        notification_db,
        Vec::new(),
    )
    .await;
    let delivered = scrape_until(addr, "the outbox emptied", |scrape| {
        scrape.value("roster_identity_outbox_depth", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(
        delivered.expect("roster_identity_outbox_oldest_age_seconds", &[]),
        0.0
    );
    assert_eq!(
        delivered.expect(RELAY_FAILURES, &[("reason", "refused")]),
        0.0
    );
    scrape_until(
        notification.metrics_addr(),
        "the email sent by notification",
        |scrape| scrape.value("roster_notification_messages_sent_total", &[]) == Some(1.0),
    )
    .await;
}

async fn metrics_show_import_rows_processed_and_imports_by_state(backend: roster_tests::Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Metrics Imports Ltd").await;
    let imports = suite.import_client().await;
    // Three new people and one row in error (no email address).
    let mut file = people_csv("metrics", 3);
    file.extend_from_slice(b",Nobody,Nowhere,,,,,,\r\n");
    let validated = imports.validated_csv(&account, file, WAIT).await;

    let scrape = Scrape::of(suite.imports.metrics_addr()).await;
    assert_eq!(
        scrape.expect(
            "roster_import_rows_processed_total",
            &[("state", "validated")]
        ),
        4.0
    );
    assert_eq!(
        scrape.expect("roster_imports", &[("state", "VALIDATED")]),
        1.0
    );
    assert_eq!(
        scrape.expect("roster_imports", &[("state", "APPLYING")]),
        0.0
    );

    imports.submit(&validated.id, false).await;
    imports
        .wait_for_state(&validated.id, &[im::ImportState::CompletedWithErrors], WAIT)
        .await;

    let scrape = Scrape::of(suite.imports.metrics_addr()).await;
    for (name, labels, value) in [
        (
            "roster_import_rows_processed_total",
            [("state", "applied")],
            3.0,
        ),
        (
            "roster_import_rows_processed_total",
            [("state", "failed")],
            0.0,
        ),
        ("roster_imports", [("state", "VALIDATED")], 0.0),
        ("roster_imports", [("state", "COMPLETED_WITH_ERRORS")], 1.0),
    ] {
        assert_eq!(scrape.expect(name, &labels), value, "{name}{labels:?}");
    }
    assert_eq!(
        scrape.expect(
            "grpc_server_handled_total",
            &handled("unary", IMPORTS, "SubmitImport", "OK")
        ),
        1.0
    );
}

both_backends!(
    unary_calls_carry_the_go_grpc_middleware_labels_and_codes,
    streaming_calls_are_typed_from_their_descriptors_and_end_as_canceled_when_dropped,
    unhosted_paths_are_counted_under_one_unknown_label_set,
    metrics_show_the_notification_queue_depth_and_age,
    notification_counts_messages_sent_retrying_and_failed_on_a_real_smtp_server,
    the_outbox_series_show_a_relay_that_cannot_deliver_and_its_recovery,
    metrics_show_import_rows_processed_and_imports_by_state,
);
