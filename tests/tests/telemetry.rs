//! One password reset is one trace: identity's SendPasswordReset, the outbox relay that runs
//! later in a background task, and notification's SendEmail export their spans over OTLP to a
//! real in-process trace collector, and all of them carry the same trace id: the caller's,
//! from its `traceparent`, which the call's span also records as its `trace_id` field.
//!
//! The audit log records the same trace id on the reset's event.
//!
//! Telemetry installs a process-global subscriber once, so this file holds a single test and
//! runs as its own test binary: the process is this test's alone.

use std::sync::Arc;
use std::time::Duration;

use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::Identity;

use roster_tests::otlp::{SpanKind, traced};
use roster_tests::{ADMIN_KEY, Backend, TestDatabase, TestServer, identity_settings};

#[test]
fn a_password_reset_is_one_trace_through_identity_and_notification() {
    traced(async |collector| {
        let notification = TestServer::spawn(Service::Notification, Backend::Sqlite)
            .await
            .expect("SQLite is always there");
        let database = Arc::new(
            TestDatabase::create(Backend::Sqlite)
                .await
                .expect("SQLite is always there"),
        );
        let identity = TestServer::start_with(
            Service::Identity,
            roster_tests::test_settings(Service::Identity, &database.url),
            roster_identity::Settings {
                notification_url: Some(format!("http://{}", notification.addr)),
                notification_key: Some(ADMIN_KEY.to_owned()),
                ..identity_settings()
            },
            database,
            Vec::new(),
        )
        .await;

        let channel = identity.channel().await;
        let account = Identity::new(channel.clone(), ADMIN_KEY)
            .account("Traced Ltd")
            .await
            .id;
        let profile = Identity::new(channel.clone(), ADMIN_KEY)
            .person(&account, "Ada", "Lovelace", "ada@example.com")
            .await;
        // The caller's W3C trace context, as the `roster` CLI sends it.
        let callers_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        Identity::new(channel.clone(), ADMIN_KEY)
            .with_metadata(
                "traceparent",
                &format!("00-{callers_trace}-00f067aa0ba902b7-01"),
            )
            .send_password_reset(pb::SendPasswordResetRequest {
                request_id: "traced-reset".into(),
                profile_id: profile.id,
                email: profile.email,
                etag: String::new(),
            })
            .await
            .expect("reset sent");

        let reset_name = "roster.identity.v1.CredentialService/SendPasswordReset";
        let send_name = "roster.notification.v1.NotificationService/SendEmail";
        collector
            .wait_until(Duration::from_secs(30), |collector| {
                // The relay's span ends after the SendEmail it makes, so it is exported last.
                !collector.named(send_name, SpanKind::Server).is_empty()
                    && !collector.named(reset_name, SpanKind::Server).is_empty()
                    && !collector
                        .named("outbox relay", SpanKind::Internal)
                        .is_empty()
            })
            .await;

        let resets = collector.named(reset_name, SpanKind::Server);
        assert_eq!(resets.len(), 1, "{resets:?}");
        let reset = &resets[0];
        assert_eq!(
            reset.attribute("rpc.service"),
            Some("roster.identity.v1.CredentialService")
        );
        assert_eq!(reset.attribute("rpc.grpc.status_code"), Some("0"));
        // Authentication ran inside the call's span and named the caller on it.
        assert_eq!(reset.attribute("caller"), Some("test-admin"));
        let trace = &reset.trace_id;
        // The caller's trace is the one exported, and the one the call's log lines carry.
        let hex: String = trace.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex, callers_trace);
        assert_eq!(reset.attribute("trace_id"), Some(callers_trace));

        // The audit event of the reset carries the same trace id.
        let reader = Identity::new(channel, ADMIN_KEY);
        let requested = reader
            .events_through(&account, "roster.credential.password_reset_requested")
            .await
            .into_iter()
            .find(|event| event.r#type == "roster.credential.password_reset_requested")
            .expect("the reset's event is numbered");
        assert_eq!(requested.trace_id, callers_trace);
        assert_eq!(requested.request_id, "traced-reset");

        // The relay ran later, in its own task, yet continues the reset's trace.
        let relays = collector.named("outbox relay", SpanKind::Internal);
        let relay = relays
            .iter()
            .find(|span| &span.trace_id == trace)
            .unwrap_or_else(|| panic!("the relay joins the reset's trace: {relays:?}"));
        assert!(!relay.parent_span_id.is_empty());

        // Identity's client span for SendEmail, a child of the relay's span...
        let clients = collector.named(send_name, SpanKind::Client);
        assert_eq!(clients.len(), 1, "{clients:?}");
        let client = &clients[0];
        assert_eq!(client.attribute("peer.service"), Some("notification"));
        assert_eq!(&client.trace_id, trace);
        assert_eq!(client.parent_span_id, relay.span_id);
        // ...and notification's server span, a child of it: one trace across both services.
        let servers = collector.named(send_name, SpanKind::Server);
        assert_eq!(servers.len(), 1, "{servers:?}");
        let server = &servers[0];
        assert_eq!(
            server.attribute("rpc.service"),
            Some("roster.notification.v1.NotificationService")
        );
        assert_eq!(&server.trace_id, trace);
        assert_eq!(server.parent_span_id, client.span_id);
    });
}
