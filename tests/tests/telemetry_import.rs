//! One bulk import is one trace through all three services: bulk-import's CreateImport, its
//! validation and apply jobs (which run later, in background tasks), identity's batch calls
//! they make, the welcome emails identity's outbox relay hands over, and notification's
//! SendEmail — exported over OTLP to a real in-process trace collector, all with one trace id.
//!
//! Telemetry installs a process-global subscriber once, so this file holds a single test and
//! runs as its own test binary: the process is this test's alone.

use std::time::Duration;

use roster_proto::imports::v1 as pb;
use roster_tests::imports::ImportSuite;
use roster_tests::otlp::{Collector, ReceivedSpan, SpanKind, traced};
use roster_tests::{Backend, MailDrop};

const WAIT: Duration = Duration::from_secs(60);

/// The one span named `name` of `kind` in `trace`.
fn one_in(collector: &Collector, trace: &[u8], name: &str, kind: SpanKind) -> ReceivedSpan {
    let spans: Vec<ReceivedSpan> = collector
        .named(name, kind)
        .into_iter()
        .filter(|span| span.trace_id == trace)
        .collect();
    assert_eq!(
        spans.len(),
        1,
        "one {name} span in the import's trace: {:#?}",
        collector.named(name, kind)
    );
    spans.into_iter().next().unwrap()
}

#[test]
fn a_bulk_import_is_one_trace_through_bulk_import_identity_and_notification() {
    traced(async |collector| {
        let mail = MailDrop::start(Backend::Sqlite)
            .await
            .expect("SQLite is always there");
        let suite = ImportSuite::start_with_identity(
            Backend::Sqlite,
            mail.identity_settings(),
            |_| {},
            Vec::new(),
        )
        .await
        .expect("SQLite is always there");
        let account = suite.account("Traced Imports Ltd").await;
        let imports = suite.import_client().await;
        let file = b"First Name,Last Name,Email Address\r\n\
                     Ada,Lovelace,ada@example.com\r\n\
                     Alan,Turing,alan@example.com\r\n"
            .to_vec();
        let validated = imports.validated_csv(&account, file, WAIT).await;
        imports.submit(&validated.id, true).await;
        imports
            .wait_for_state(&validated.id, &[pb::ImportState::Completed], WAIT)
            .await;
        assert_eq!(mail.wait_for(2, WAIT).await.len(), 2, "both users welcomed");

        let create_name = "roster.imports.v1.ImportService/CreateImport";
        let send_name = "roster.notification.v1.NotificationService/SendEmail";
        collector
            .wait_until(Duration::from_secs(30), |collector| {
                // A relay span ends after its SendEmail call returns, and may be exported in a
                // later batch than the call's server span.
                collector.named(send_name, SpanKind::Server).len() >= 2
                    && collector.named("outbox relay", SpanKind::Internal).len() >= 2
                    && !collector.named(create_name, SpanKind::Server).is_empty()
                    && !collector
                        .named("import apply", SpanKind::Internal)
                        .is_empty()
            })
            .await;

        // The import's trace starts where the caller created it.
        let creates = collector.named(create_name, SpanKind::Server);
        assert_eq!(creates.len(), 1, "{creates:?}");
        let trace = creates[0].trace_id.clone();
        assert_eq!(
            creates[0].attribute("rpc.service"),
            Some("roster.imports.v1.ImportService")
        );

        // bulk-import: validation and apply ran later in background tasks, in the same trace.
        let validation = one_in(&collector, &trace, "import validation", SpanKind::Internal);
        assert_eq!(validation.parent_span_id, creates[0].span_id);
        let apply = one_in(&collector, &trace, "import apply", SpanKind::Internal);
        assert_eq!(apply.parent_span_id, creates[0].span_id);

        // identity: validation's username check and the apply's write, each the child of
        // bulk-import's client span for it.
        let check = "roster.identity.v1.ProfileService/BatchCheckUsernames";
        let check_client = one_in(&collector, &trace, check, SpanKind::Client);
        assert_eq!(check_client.attribute("peer.service"), Some("identity"));
        assert_eq!(check_client.parent_span_id, validation.span_id);
        let check_server = one_in(&collector, &trace, check, SpanKind::Server);
        assert_eq!(check_server.parent_span_id, check_client.span_id);
        let upsert = "roster.identity.v1.ProfileService/BatchUpsertProfiles";
        let upsert_client = one_in(&collector, &trace, upsert, SpanKind::Client);
        assert_eq!(upsert_client.parent_span_id, apply.span_id);
        let upsert_server = one_in(&collector, &trace, upsert, SpanKind::Server);
        assert_eq!(upsert_server.parent_span_id, upsert_client.span_id);
        assert_eq!(upsert_server.attribute("rpc.grpc.status_code"), Some("0"));

        // notification: each welcome email, relayed from identity's outbox, continues the
        // write that created the profile.
        let relays: Vec<ReceivedSpan> = collector
            .named("outbox relay", SpanKind::Internal)
            .into_iter()
            .filter(|span| span.trace_id == trace)
            .collect();
        assert_eq!(relays.len(), 2, "{relays:#?}");
        for relay in &relays {
            assert_eq!(relay.parent_span_id, upsert_server.span_id);
        }
        let sends: Vec<ReceivedSpan> = collector
            .named(send_name, SpanKind::Server)
            .into_iter()
            .filter(|span| span.trace_id == trace)
            .collect();
        assert_eq!(
            sends.len(),
            2,
            "both SendEmail calls in the import's trace: {:#?}",
            collector.named(send_name, SpanKind::Server)
        );
        for send in &sends {
            assert_eq!(
                send.attribute("rpc.service"),
                Some("roster.notification.v1.NotificationService")
            );
        }
    });
}
