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

#[test]
fn an_unreadable_tls_file_is_named_by_its_setting_and_path() {
    let tls = ClientTls {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..ClientTls::default()
    };
    let names = TlsSettingNames {
        ca_file: SettingName::new("--tls-ca-file").also("ROSTER_TLS_CA_FILE"),
        ..TlsSettingNames::default()
    };
    let error = tls.load(&names).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read --tls-ca-file /nonexistent/ca.pem"
    );
    let error = Client::new(ClientConfig::new("identity", "https://a:1").tls(tls))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.starts_with("TLS: cannot read ca_file /nonexistent/ca.pem: "),
        "{error}"
    );
}

#[test]
fn a_missing_half_of_the_certificate_pair_is_named_with_every_way_to_set_it() {
    let tls = ClientTls {
        key_file: Some("/nonexistent/key.pem".into()),
        ..ClientTls::default()
    };
    let names = TlsSettingNames {
        cert_file: SettingName::new("--tls-cert-file").also("ROSTER_TLS_CERT_FILE"),
        key_file: SettingName::new("--tls-key-file").also("ROSTER_TLS_KEY_FILE"),
        ..TlsSettingNames::default()
    };
    assert_eq!(
        tls.load(&names).unwrap_err().to_string(),
        "--tls-cert-file (ROSTER_TLS_CERT_FILE) and --tls-key-file (ROSTER_TLS_KEY_FILE) go \
         together: set both to present a client certificate, or neither"
    );
}
