//! Uploads that are neither cut off nor kept, on SQLite and PostgreSQL: an UploadImport outlasts
//! the server's deadline for one call while it keeps sending; one that stops sending, whose
//! client goes away, whose own deadline passes, or that ends without its end message (or with
//! one that does not add up) ends FAILED with the reason and leaves no stored piece; the sweep fails uploads their replica abandoned, once each, however many
//! replicas sweep at the same moment.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use roster_bulk_import::domain::import::ImportId;
use roster_bulk_import::store::Store;
use roster_proto::imports::v1 as pb;
use roster_tests::clients::{Imports, OpenUpload, refusal, upload_end, upload_header};
use roster_tests::imports::{Relay, new_upload, people_csv, stored_chunks};
use roster_tests::{ADMIN_KEY, Backend, ImportSuite, both_backends, reason};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

/// Opens bulk-import's database through the store, as another replica would.
async fn replica_store(suite: &ImportSuite) -> Store {
    let database = roster_runtime::db::connect(&suite.imports.database.url, 4)
        .await
        .expect("the import database opens");
    Store::new(database)
}

async fn an_upload_outlasts_the_request_timeout_while_it_keeps_sending(backend: Backend) {
    let Some(suite) = ImportSuite::start_configured(
        backend,
        roster_tests::identity_settings(),
        |server| server.request_timeout_seconds = 1,
        |_| {},
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Slow Link").await;
    let file = people_csv("slow", 2000);
    let upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    let started = Instant::now();
    for piece in file.chunks(file.len() / 6 + 1) {
        assert!(upload.send(piece).await, "the server stopped reading");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let import = upload.finish().await.expect("the upload completes");
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the upload lasted longer than the 1 s request timeout"
    );
    let validated = suite
        .import_client()
        .await
        .wait_for_state(&import.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(validated.create_count, 2000, "{validated:?}");
}

async fn an_upload_that_stops_sending_fails_after_the_idle_timeout(backend: Backend) {
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| {
            settings.upload_idle_timeout_seconds = 2;
            // The upload's own timer ends it, not the sweep.
            settings.upload_sweep_interval_seconds = 3600;
        },
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Gone Quiet").await;
    let file = people_csv("quiet", 30_000);
    let mut upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    for piece in file.chunks(512 * 1024).take(3) {
        assert!(upload.send(piece).await);
    }
    // Before the server has the last chunk, so before its idle timer starts.
    let quiet_since = Instant::now();
    let client = suite.import_client().await;
    let import_id = client
        .uploading_import(&suite.imports.database, &account, 3, WAIT)
        .await;

    // The stream stays open; the client just sends nothing more.
    let status = upload
        .answer_while_open(Duration::from_secs(30))
        .await
        .expect_err("an idle upload is aborted");
    let waited = quiet_since.elapsed();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some("UPLOAD_IDLE_TIMEOUT"));
    assert!(
        status.message().contains("no chunk arrived for 2 s"),
        "{}",
        status.message()
    );
    assert!(waited >= Duration::from_secs(2), "aborted after {waited:?}");

    let import = suite.import_client().await.import(&import_id).await;
    assert_eq!(import.state, pb::ImportState::Failed as i32, "{import:?}");
    assert!(
        import.error_message.contains("no chunk arrived for 2 s"),
        "{}",
        import.error_message
    );
    assert_eq!(stored_chunks(&suite.imports.database, &import_id).await, 0);
    drop(upload);
}

async fn an_upload_whose_client_goes_away_fails_at_once(backend: Backend) {
    // The idle timeout and the sweep are far away: only the dropped call can end it.
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| settings.upload_sweep_interval_seconds = 3600,
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Gone Away").await;
    let file = people_csv("away", 30_000);
    let relay = Relay::start(suite.imports.addr).await;
    let upload = Imports::new(roster_tests::connect(relay.addr).await, ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    for piece in file.chunks(512 * 1024).take(3) {
        assert!(upload.send(piece).await);
    }
    let client = suite.import_client().await;
    let import_id = client
        .uploading_import(&suite.imports.database, &account, 3, WAIT)
        .await;

    // The client's connection breaks mid-upload, its stream still open.
    relay.cut().await;
    let import = client
        .wait_for_state(
            &import_id,
            &[pb::ImportState::Failed],
            Duration::from_secs(10),
        )
        .await;
    // Whether the stream's read failed first or the call was dropped first, the reason
    // says the upload was broken off.
    assert!(
        import.error_message.contains("the upload broke off")
            || import.error_message.contains("the client went away"),
        "{}",
        import.error_message
    );
    assert_eq!(stored_chunks(&suite.imports.database, &import_id).await, 0);
    drop(upload);
}

async fn a_deadline_the_client_sets_still_ends_its_upload(backend: Backend) {
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| settings.upload_sweep_interval_seconds = 3600,
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("In A Hurry").await;
    let file = people_csv("hurry", 30_000);
    // Long enough for the two chunks to be stored and seen below on a loaded machine.
    let mut upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(&account, Some(Duration::from_secs(8)))
        .await;
    for piece in file.chunks(512 * 1024).take(2) {
        assert!(upload.send(piece).await);
    }
    let client = suite.import_client().await;
    let import_id = client
        .uploading_import(&suite.imports.database, &account, 2, WAIT)
        .await;

    let status = upload
        .answer_while_open(Duration::from_secs(30))
        .await
        .expect_err("the client's deadline ends the upload");
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    let import = client
        .wait_for_state(
            &import_id,
            &[pb::ImportState::Failed],
            Duration::from_secs(10),
        )
        .await;
    assert!(
        import.error_message.contains("cut off"),
        "{}",
        import.error_message
    );
    assert_eq!(stored_chunks(&suite.imports.database, &import_id).await, 0);
    drop(upload);
}

/// A half of `file` sent, then the stream ended by `ending`: whatever it is, the import must
/// end FAILED with no piece kept, and the call refused naming `field`; returns the refusal's
/// violation and the import's error message.
async fn an_upload_ended_by(
    suite: &ImportSuite,
    account: &str,
    file: &[u8],
    ending: impl AsyncFnOnce(OpenUpload) -> Result<pb::Import, tonic::Status>,
) -> (String, String) {
    let upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(account, None)
        .await;
    for piece in file.chunks(512 * 1024).take(2) {
        assert!(upload.send(piece).await);
    }
    let client = suite.import_client().await;
    let import_id = client
        .uploading_import(&suite.imports.database, account, 2, WAIT)
        .await;
    let status = ending(upload).await.expect_err("the file is not taken");
    let refused = refusal(&status);
    assert_eq!(refused.code, Code::InvalidArgument, "{status:?}");
    let [violation] = &refused.violations[..] else {
        panic!("one field named: {status:?}");
    };
    let import = client
        .wait_for_state(&import_id, &[pb::ImportState::Failed], WAIT)
        .await;
    assert_eq!(import.total_row_count, 0, "{import:?}");
    assert_eq!(stored_chunks(&suite.imports.database, &import_id).await, 0);
    (violation.clone(), import.error_message)
}

async fn a_stream_that_ends_without_its_end_message_is_not_taken_as_the_file(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Half Sent").await;
    let file = people_csv("half", 30_000);

    // A client stopped half-way that closes its side cleanly: what arrived is a valid CSV of
    // fewer rows, and must not be validated as the file.
    let (violation, reason) =
        an_upload_ended_by(&suite, &account, &file, OpenUpload::close_without_end).await;
    assert!(violation.starts_with("end: "), "{violation}");
    assert!(
        reason.contains("cut off") && reason.contains("without its end message"),
        "{reason}"
    );

    // An end message that does not add up (a chunk lost or sent twice) is refused naming both
    // sizes.
    let declared = file.len() as u64;
    let (violation, reason) = an_upload_ended_by(&suite, &account, &file, async |upload| {
        upload.finish_saying(declared).await
    })
    .await;
    let both = format!("{declared} bytes but {} arrived", 1024 * 1024);
    assert!(violation.starts_with("end.size_bytes: "), "{violation}");
    assert!(violation.contains(&both), "{violation}");
    assert!(reason.contains(&both), "{reason}");

    // Nothing may follow the end message.
    let messages = vec![
        upload_header(&account, ""),
        chunk(&file[..1000]),
        upload_end(1000),
        chunk(&file[1000..2000]),
    ];
    let status = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .upload_import(tokio_stream::iter(messages))
        .await
        .expect_err("a message after the end is refused");
    let refused = refusal(&status);
    assert_eq!(refused.code, Code::InvalidArgument, "{status:?}");
    assert!(refused.violations[0].starts_with("end: "), "{refused:?}");
    let client = suite.import_client().await;
    let imports = client
        .list_imports(pb::ListImportsRequest {
            account_id: account.clone(),
            ..Default::default()
        })
        .await
        .expect("ListImports")
        .imports;
    assert_eq!(imports.len(), 3, "{imports:?}");
    for import in &imports {
        assert_eq!(import.state, pb::ImportState::Failed as i32, "{import:?}");
        assert_eq!(stored_chunks(&suite.imports.database, &import.id).await, 0);
    }
    assert!(
        imports[0]
            .error_message
            .contains("a message followed the end message"),
        "{}",
        imports[0].error_message
    );

    // The whole file with its end is taken, as every other upload test shows; here too.
    let import = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .upload_csv(&account, &file, 512 * 1024)
        .await
        .expect("the whole file is taken");
    let validated = client
        .wait_for_state(&import.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(validated.create_count, 30_000, "{validated:?}");
}

fn chunk(bytes: &[u8]) -> pb::UploadImportRequest {
    pb::UploadImportRequest {
        content: Some(pb::upload_import_request::Content::Chunk(bytes.to_vec())),
    }
}

async fn racing_sweeps_fail_each_abandoned_upload_once(backend: Backend) {
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| {
            settings.upload_idle_timeout_seconds = 1;
            settings.upload_sweep_interval_seconds = 3600;
        },
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Abandoned").await;
    let account_id = uuid::Uuid::parse_str(&account).unwrap();
    // What replicas that died mid-upload leave behind: UPLOADING imports with pieces.
    let writer = replica_store(&suite).await;
    let mut abandoned = HashSet::new();
    for _ in 0..20 {
        let (model, created) = writer.create_import(&new_upload(account_id)).await.unwrap();
        assert!(created);
        for seq in 0..3 {
            assert!(
                writer
                    .append_chunk(model.id, seq, vec![b'x'; 4096])
                    .await
                    .unwrap()
            );
        }
        abandoned.insert(model.id);
    }
    // The sweeping replicas' connections are open before the live upload's last chunk, so
    // the sweeps start right after it, however slowly connections open here.
    let sweepers = [
        replica_store(&suite).await,
        replica_store(&suite).await,
        replica_store(&suite).await,
    ];
    let idle = Duration::from_secs(2);
    tokio::time::sleep(idle + Duration::from_millis(500)).await;
    // An upload still receiving is not abandoned.
    let (alive, _) = writer.create_import(&new_upload(account_id)).await.unwrap();
    assert!(
        writer
            .append_chunk(alive.id, 0, vec![b'y'; 4096])
            .await
            .unwrap()
    );

    let (first, second, third) = tokio::join!(
        roster_bulk_import::jobs::sweep_uploads(&sweepers[0], idle),
        roster_bulk_import::jobs::sweep_uploads(&sweepers[1], idle),
        roster_bulk_import::jobs::sweep_uploads(&sweepers[2], idle),
    );
    let swept: Vec<ImportId> = [first.unwrap(), second.unwrap(), third.unwrap()].concat();
    let once: HashSet<ImportId> = swept.iter().copied().collect();
    assert_eq!(
        swept.len(),
        once.len(),
        "an upload was failed twice: {swept:?}"
    );
    assert_eq!(
        once, abandoned,
        "every abandoned upload is failed, and only those"
    );

    for import_id in &abandoned {
        let import = suite
            .import_client()
            .await
            .import(&import_id.to_string())
            .await;
        assert_eq!(import.state, pb::ImportState::Failed as i32, "{import:?}");
        assert!(
            import.error_message.contains("abandoned"),
            "{}",
            import.error_message
        );
        let stored = writer
            .import(*import_id)
            .await
            .unwrap()
            .expect("kept as FAILED");
        assert_eq!(stored.version, 2, "changed once, by one sweeper");
        assert_eq!(
            stored_chunks(&suite.imports.database, &import_id.to_string()).await,
            0
        );
    }
    let alive = suite
        .import_client()
        .await
        .import(&alive.id.to_string())
        .await;
    assert_eq!(alive.state, pb::ImportState::Uploading as i32, "{alive:?}");
    assert_eq!(stored_chunks(&suite.imports.database, &alive.id).await, 1);
}

async fn an_upload_left_by_a_dead_replica_is_swept_when_a_replica_starts(backend: Backend) {
    let Some(mut suite) = ImportSuite::start_with(
        backend,
        |settings| {
            settings.upload_idle_timeout_seconds = 1;
            // Only the sweep a replica makes as it starts can find the upload in time.
            settings.upload_sweep_interval_seconds = 3600;
        },
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Crashed").await;
    let account_id = uuid::Uuid::parse_str(&account).unwrap();
    suite.imports.stop().await;
    // The state a replica killed mid-upload leaves: UPLOADING, pieces stored, nobody there.
    let writer = replica_store(&suite).await;
    let (left, _) = writer.create_import(&new_upload(account_id)).await.unwrap();
    for seq in 0..4 {
        assert!(
            writer
                .append_chunk(left.id, seq, vec![b'z'; 64 * 1024])
                .await
                .unwrap()
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stored_chunks(&suite.imports.database, &left.id.to_string()).await,
        4
    );

    let replica = suite.replica().await;
    let client = Imports::new(replica.channel().await, ADMIN_KEY);
    // Far less than the hour to the next sweep, however slowly a loaded machine starts it.
    let import = client
        .wait_for_state(
            &left.id.to_string(),
            &[pb::ImportState::Failed],
            Duration::from_secs(30),
        )
        .await;
    assert!(
        import.error_message.contains("abandoned"),
        "{}",
        import.error_message
    );
    assert_eq!(
        stored_chunks(&suite.imports.database, &left.id.to_string()).await,
        0
    );
}

/// A client sending its file a few bytes a message costs a stored piece per 64 KiB (or per
/// half second), not a row and a transaction per message: 2,000 messages of 10 bytes and then
/// the rest in one are a piece or a few, and the file is read whole and in order.
async fn tiny_messages_are_gathered_into_pieces(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Drip Feed").await;
    let file = people_csv("drip", 3000);
    assert!(file.len() > 20_000 + 64 * 1024 && file.len() < 1024 * 1024);
    let (tiny, rest) = file.split_at(20_000);
    let upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    let started = Instant::now();
    for piece in tiny.chunks(10) {
        assert!(upload.send(piece).await, "the server stopped reading");
    }
    assert!(upload.send(rest).await);
    let import_id = suite
        .import_client()
        .await
        .uploading_import(&suite.imports.database, &account, 1, WAIT)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A piece per half second at most while the small messages came, and the last one.
    let most = 2 + started.elapsed().as_millis() as u64 / 500;
    let stored = stored_chunks(&suite.imports.database, &import_id).await;
    assert!(
        (1..=most).contains(&stored),
        "{stored} pieces stored for 2,001 messages"
    );
    let import = upload.finish().await.expect("the upload completes");
    let validated = suite
        .import_client()
        .await
        .wait_for_state(&import.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(
        (validated.create_count, validated.error_count),
        (3000, 0),
        "{validated:?}"
    );
}

/// A client that sends a little every half second, slower than a piece fills, is no
/// abandoned upload: what it sent is stored in time for the sweep to see it alive, and the
/// file completes.
async fn a_slow_trickle_of_small_chunks_is_not_taken_for_abandoned(backend: Backend) {
    let Some(suite) = ImportSuite::start_with(
        backend,
        |settings| {
            settings.upload_idle_timeout_seconds = 2;
            settings.upload_sweep_interval_seconds = 1;
        },
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Trickle").await;
    let file = people_csv("trickle", 12);
    let upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    let piece = file.len() / 12 + 1;
    for chunk in file.chunks(piece) {
        assert!(upload.send(chunk).await, "the server stopped reading");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let import = upload.finish().await.expect("the upload completes");
    let validated = suite
        .import_client()
        .await
        .wait_for_state(&import.id, &[pb::ImportState::Validated], WAIT)
        .await;
    assert_eq!(validated.create_count, 12, "{validated:?}");
}

/// A key may hold `watches_per_key` WatchImport streams at once: the next is refused
/// RESOURCE_EXHAUSTED (TOO_MANY_WATCHES), and a watch whose client went away gives its place
/// back at once, though the import it followed (still UPLOADING) did not change.
async fn a_key_holds_a_bounded_number_of_import_watches(backend: Backend) {
    let Some(suite) =
        ImportSuite::start_with(backend, |settings| settings.watches_per_key = 2, Vec::new()).await
    else {
        return;
    };
    let account = suite.account("Watched").await;
    let upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    assert!(upload.send(&people_csv("watched", 3)).await);
    let client = suite.import_client().await;
    let import_id = client
        .uploading_import(&suite.imports.database, &account, 0, WAIT)
        .await;
    let watch = || {
        client.watch_import(pb::WatchImportRequest {
            import_id: import_id.clone(),
        })
    };
    let first = watch().await.unwrap();
    let _second = watch().await.unwrap();
    let refused = watch().await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(reason(&refused).as_deref(), Some("TOO_MANY_WATCHES"));
    drop(first);
    let started = Instant::now();
    loop {
        match watch().await {
            Ok(_third) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the dropped watch kept its place"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    drop(upload);
}

both_backends!(
    a_key_holds_a_bounded_number_of_import_watches,
    a_slow_trickle_of_small_chunks_is_not_taken_for_abandoned,
    tiny_messages_are_gathered_into_pieces,
    an_upload_outlasts_the_request_timeout_while_it_keeps_sending,
    an_upload_that_stops_sending_fails_after_the_idle_timeout,
    an_upload_whose_client_goes_away_fails_at_once,
    a_deadline_the_client_sets_still_ends_its_upload,
    a_stream_that_ends_without_its_end_message_is_not_taken_as_the_file,
    racing_sweeps_fail_each_abandoned_upload_once,
    an_upload_left_by_a_dead_replica_is_swept_when_a_replica_starts
);
