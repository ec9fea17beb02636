//! The password-reset flow as a person lives it, in headless Chromium: the real email from the
//! file mail drop, its link, requirements shown unmet for a weak password and met for a strong
//! one, success, the link refused afterwards, and sign-in with the new password.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::Identity;

use roster_tests::{ADMIN_KEY, Backend, TestDatabase, TestServer};

const STRONG: &str = "Violet-Tundra-84-Lantern";

/// The reset link in the plain-text part of the only email in `dir`.
async fn reset_link_from_mail_drop(dir: &Path) -> String {
    let started = Instant::now();
    loop {
        let emails: Vec<_> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if let Some(path) = emails
            .iter()
            .find(|path| path.extension().is_some_and(|e| e == "eml"))
        {
            let raw = std::fs::read(path).expect("email file");
            let mail = mailparse::parse_mail(&raw).expect("an RFC 5322 message");
            let text = std::iter::once(&mail)
                .chain(mail.subparts.iter())
                .chain(mail.subparts.iter().flat_map(|part| part.subparts.iter()))
                .find(|part| part.ctype.mimetype == "text/plain")
                .expect("a plain-text part")
                .get_body()
                .expect("decodable body");
            let start = text.find("http://").expect("a link in the email");
            let link: String = text[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            return link;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no email arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts chromedriver, or says why the browser test cannot run (fatal under CI=true).
fn chromedriver(port: u16) -> Option<std::process::Child> {
    match std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => Some(child),
        Err(error) => {
            roster_tests::not_run(&format!(
                "chromedriver cannot start ({error}); install Debian's chromium and \
                 chromium-driver"
            ));
            None
        }
    }
}

async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_resets_the_password_in_a_real_browser() {
    let driver_port = common::free_port();
    let Some(mut driver) = chromedriver(driver_port) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mail_dir = dir.path().join("mail");

    let notification_db = Arc::new(TestDatabase::create(Backend::Sqlite).await.unwrap());
    let notification = TestServer::start_notification(
        roster_tests::test_settings(Service::Notification, &notification_db.url),
        roster_tests::notification_settings(&format!("file://{}", mail_dir.display())),
        notification_db,
        Vec::new(),
    )
    .await;
    let reset_port = common::free_port();
    let identity_db = Arc::new(TestDatabase::create(Backend::Sqlite).await.unwrap());
    let identity = TestServer::start_with(
        Service::Identity,
        roster_tests::test_settings(Service::Identity, &identity_db.url),
        roster_identity::Settings {
            reset_http_addr: Some(format!("127.0.0.1:{reset_port}").parse().unwrap()),
            reset_base_url: format!("http://127.0.0.1:{reset_port}/reset"),
            notification_url: Some(format!("http://{}", notification.addr)),
            notification_key: Some(ADMIN_KEY.to_owned()),
            ..roster_tests::identity_settings()
        },
        identity_db,
        Vec::new(),
    )
    .await;

    let channel = identity.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Acme")
        .await
        .id;
    let profile = Identity::new(channel.clone(), ADMIN_KEY)
        .person(&account, "Ada", "Lovelace", "ada@example.com")
        .await;
    let credentials = Identity::new(channel, ADMIN_KEY);
    credentials
        .send_password_reset(pb::SendPasswordResetRequest {
            request_id: "browser-reset".into(),
            profile_id: profile.id.clone(),
            email: profile.email.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let link = reset_link_from_mail_drop(&mail_dir).await;
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{reset_port}/reset#token=")),
        "{link}"
    );

    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
            ],
        }),
    );
    let mut connected = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
        {
            Ok(client) => {
                connected = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let browser = connected.expect("a WebDriver session");

    browser.goto(&link).await.unwrap();
    wait_for("the requirements", || async {
        browser
            .find_all(Locator::Css("#rules li"))
            .await
            .map(|items| items.len() >= 6)
            .unwrap_or(false)
    })
    .await;
    let url = browser.current_url().await.unwrap();
    assert!(
        url.fragment().is_none(),
        "the token is dropped from the address bar: {url}"
    );

    let password = browser.find(Locator::Id("password")).await.unwrap();
    let confirm = browser.find(Locator::Id("confirm")).await.unwrap();
    password.send_keys("weak").await.unwrap();
    confirm.send_keys("weak").await.unwrap();
    wait_for("unmet requirements", || async {
        let unmet = browser
            .find_all(Locator::Css("#rules li.unmet"))
            .await
            .unwrap_or_default();
        let mut texts = Vec::new();
        for item in unmet {
            texts.push(item.text().await.unwrap_or_default());
        }
        texts
            .iter()
            .any(|text| text.contains("At least 12 characters"))
            && texts.iter().any(|text| text.contains("digit"))
    })
    .await;
    let submit = browser.find(Locator::Id("submit")).await.unwrap();
    assert!(
        submit.attr("disabled").await.unwrap().is_some(),
        "a weak password cannot be submitted"
    );

    password.clear().await.unwrap();
    confirm.clear().await.unwrap();
    password.send_keys(STRONG).await.unwrap();
    confirm.send_keys(STRONG).await.unwrap();
    wait_for("every requirement met", || async {
        browser
            .find_all(Locator::Css("#rules li.unmet"))
            .await
            .map(|items| items.is_empty())
            .unwrap_or(false)
            && browser
                .find(Locator::Css("#submit:not([disabled])"))
                .await
                .is_ok()
    })
    .await;
    browser
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the success message", || async {
        match browser.find(Locator::Id("done")).await {
            Ok(done) => done.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;

    // Opening the link again, as from the email in a new tab.
    browser.goto("about:blank").await.unwrap();
    browser.goto(&link).await.unwrap();
    wait_for("the link refused", || async {
        match browser.find(Locator::Id("status")).await {
            Ok(status) => status
                .text()
                .await
                .unwrap_or_default()
                .contains("no longer valid"),
            Err(_) => false,
        }
    })
    .await;
    browser.close().await.unwrap();
    let _ = driver.kill();
    let _ = driver.wait();

    let verified = credentials
        .verify_password(pb::VerifyPasswordRequest {
            username: "ada@example.com".into(),
            password: STRONG.into(),
        })
        .await
        .unwrap();
    assert!(verified.verified);
}
