//! Reading the settings of a client: deadlines, URLs, TLS files and the key.

use super::discovery::Target;
use super::*;

#[test]
fn grpc_timeouts_are_read() {
    let read = |text: &'static str| parse_grpc_timeout(&http::HeaderValue::from_static(text));
    assert_eq!(read("250m"), Some(Duration::from_millis(250)));
    assert_eq!(read("3S"), Some(Duration::from_secs(3)));
    assert_eq!(read("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(read("123456789m"), None);
    assert_eq!(read("m"), None);
    assert_eq!(read("10x"), None);
}

#[test]
fn several_urls_are_read_from_one_setting() {
    let config = ClientConfig::new("identity", "http://a:1, http://b:2 http://c:3");
    assert_eq!(config.urls, ["http://a:1", "http://b:2", "http://c:3"]);
}

#[test]
fn tls_files_need_an_https_url() {
    let config = ClientConfig::new("identity", "http://a:1").tls(ClientTls {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..ClientTls::default()
    });
    let error = Target::parse(&config.urls[0], &config, None).err().unwrap();
    assert!(error.to_string().contains("https://"), "{error}");
}

#[test]
fn the_key_is_never_printed() {
    let config = ClientConfig::new("identity", "http://a:1").key(Some("s3cret".into()));
    assert!(!format!("{config:?}").contains("s3cret"));
}
