//! The metrics registry, the hosted methods and their labels, message counting and code names.

use tonic::Code;

use super::body::MessageCounter;
use super::*;

#[tokio::test]
async fn import_progress_and_scrape_hooks_reach_the_text() {
    let metrics = Metrics::new();
    let progress = metrics.import_progress();
    progress.rows_processed("created", 40);
    metrics.import_progress().rows_processed("created", 2);
    progress.rows_processed("error", 1);
    let depth = metrics.gauge("roster_test_depth", "A gauge refreshed on scrape");
    metrics.on_scrape(move || {
        depth.set(7);
        std::future::ready(())
    });
    let text = metrics.encode().await;
    assert!(
        text.contains("roster_import_rows_processed_total{state=\"created\"} 42"),
        "{text}"
    );
    assert!(
        text.contains("roster_import_rows_processed_total{state=\"error\"} 1"),
        "{text}"
    );
    assert!(text.contains("roster_test_depth 7"), "{text}");
}

#[test]
fn hosted_methods_and_their_streaming_type_come_from_the_descriptors() {
    let methods = hosted_methods(
        &[roster_proto::FILE_DESCRIPTOR_SET],
        &[
            "roster.notification.v1.NotificationService",
            "roster.imports.v1.ImportService",
        ],
    );
    assert!(methods.contains("/roster.notification.v1.NotificationService/SendEmail"));
    assert!(!methods.contains("/roster.identity.v1.ProfileService/GetProfile"));
    for (method, grpc_type) in [
        ("SubmitImport", GrpcType::Unary),
        ("UploadImport", GrpcType::ClientStream),
        ("DownloadTemplate", GrpcType::ServerStream),
        ("WatchImport", GrpcType::ServerStream),
    ] {
        assert_eq!(
            methods.grpc_type(&format!("/roster.imports.v1.ImportService/{method}")),
            Some(grpc_type),
            "{method}"
        );
    }
    let reflection = hosted_methods(
        &[tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET],
        &["grpc.reflection.v1.ServerReflection"],
    );
    assert_eq!(
        reflection.grpc_type("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
        Some(GrpcType::BidiStream)
    );
}

#[test]
fn unhosted_paths_share_one_label_set() {
    let methods = hosted_methods(
        &[roster_proto::FILE_DESCRIPTOR_SET],
        &["roster.notification.v1.NotificationService"],
    );
    for path in [
        "/evil.Service/Anything",
        "/roster.identity.v1.ProfileService/GetProfile",
        "/",
        "",
    ] {
        assert_eq!(methods.labels(path), MethodLabels::unknown(), "{path}");
    }
}

/// `count` messages of `size` bytes each, framed as gRPC frames them.
fn framed(sizes: &[usize]) -> Vec<u8> {
    let mut body = Vec::new();
    for size in sizes {
        body.push(0);
        body.extend_from_slice(&u32::try_from(*size).unwrap().to_be_bytes());
        body.extend(std::iter::repeat_n(7u8, *size));
    }
    body
}

#[test]
fn messages_are_counted_however_the_frames_split_them() {
    let body = framed(&[0, 3, 300, 1, 70_000]);
    for split in [1, 2, 4, 5, 6, 7, 64, 1000, body.len()] {
        let mut counter = MessageCounter::default();
        let total: u64 = body.chunks(split).map(|chunk| counter.feed(chunk)).sum();
        assert_eq!(total, 5, "split every {split} bytes");
    }
    let mut counter = MessageCounter::default();
    assert_eq!(
        counter.feed(&body[..body.len() - 1]),
        4,
        "the last one is not complete"
    );
    assert_eq!(counter.feed(&body[body.len() - 1..]), 1);
}

#[test]
fn codes_are_labelled_as_grpc_go_prints_them() {
    assert_eq!(grpc_code_label(Code::Ok), "OK");
    assert_eq!(grpc_code_label(Code::Cancelled), "Canceled");
    assert_eq!(grpc_code_label(Code::Unavailable), "Unavailable");
    assert_eq!(grpc_code_label(Code::DeadlineExceeded), "DeadlineExceeded");
    assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
}
