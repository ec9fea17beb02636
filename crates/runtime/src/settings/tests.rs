use super::*;

#[derive(Debug, Deserialize, Serialize)]
struct Nothing {}

#[test]
fn invalid_value_names_the_key() {
    let error = load_file(
        Service::Notification,
        "bad",
        "[notification]\nshutdown_grace_seconds = \"soon\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("shutdown_grace_seconds"), "{error}");
}

#[test]
fn file_overrides_defaults() {
    let (common, _) = load_file(
        Service::BulkImport,
        "ok",
        "[bulk_import]\nconcurrency_limit = 7\n",
    )
    .unwrap();
    assert_eq!(common.concurrency_limit, 7);
    assert_eq!(common.listen_addr.port(), 50052);
}

#[test]
fn metrics_ports_differ_per_service_and_can_be_turned_off() {
    let ports: Vec<u16> = Service::ALL
        .into_iter()
        .map(|service| {
            let (common, _) = Loader::new(service).load::<Nothing>().unwrap();
            common.metrics_addr.expect("on by default").port()
        })
        .collect();
    assert_eq!(ports, [9091, 9092, 9093]);

    let (common, _) = load_file(
        Service::Identity,
        "metrics-off",
        "[identity]\nmetrics_addr = \"off\"\n",
    )
    .unwrap();
    assert_eq!(common.metrics_addr, None);
}

/// Loads `service` from a file holding `toml`.
fn load_file(
    service: Service,
    name: &str,
    toml: &str,
) -> Result<(CommonSettings, Nothing), SettingsError> {
    let dir = std::env::temp_dir().join(format!("roster-settings-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, toml).unwrap();
    Loader::new(service).file(Some(&file)).load::<Nothing>()
}

#[test]
fn health_addr_is_off_by_default_and_reads_off_empty_or_an_address() {
    let (common, _) = Loader::new(Service::Identity).load::<Nothing>().unwrap();
    assert_eq!(common.health_addr, None);
    for (name, value) in [
        ("health-off", "off"),
        ("health-empty", ""),
        ("health-upper", "OFF"),
    ] {
        let (common, _) = load_file(
            Service::Identity,
            name,
            &format!("[identity]\nhealth_addr = \"{value}\"\n"),
        )
        .unwrap();
        assert_eq!(common.health_addr, None, "{value:?}");
    }
    let (common, _) = load_file(
        Service::BulkImport,
        "health-on",
        "[bulk_import]\nhealth_addr = \"0.0.0.0:8086\"\n",
    )
    .unwrap();
    assert_eq!(common.health_addr, Some("0.0.0.0:8086".parse().unwrap()));

    let error = load_file(
        Service::BulkImport,
        "health-bad",
        "[bulk_import]\nhealth_addr = \"8086\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("ROSTER_BULK_IMPORT__HEALTH_ADDR"), "{error}");
}

#[test]
fn health_addr_clashing_with_the_grpc_or_metrics_address_is_refused() {
    let clashes = [
        (
            "health-grpc",
            "health_addr = \"0.0.0.0:50053\"",
            "listen_addr",
        ),
        (
            "health-grpc-ip",
            "health_addr = \"127.0.0.1:50053\"",
            "listen_addr",
        ),
        (
            "health-metrics",
            "health_addr = \"0.0.0.0:9093\"",
            "metrics_addr",
        ),
        (
            "health-metrics-set",
            "health_addr = \"10.0.0.1:9090\"\nmetrics_addr = \"0.0.0.0:9090\"",
            "metrics_addr",
        ),
    ];
    for (name, lines, clash) in clashes {
        let error = load_file(
            Service::Notification,
            name,
            &format!("[notification]\n{lines}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("ROSTER_NOTIFICATION__HEALTH_ADDR") && error.contains(clash),
            "{lines}: {error}"
        );
    }

    let (common, _) = load_file(
        Service::Notification,
        "health-own-port",
        "[notification]\nhealth_addr = \"0.0.0.0:8086\"\nmetrics_addr = \"off\"\n",
    )
    .unwrap();
    assert_eq!(common.health_addr.map(|addr| addr.port()), Some(8086));
}

#[test]
fn tls_key_without_certificate_is_refused() {
    let error = load_file(
        Service::Notification,
        "tls",
        "[notification]\ntls_key_file = \"/k.pem\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("ROSTER_NOTIFICATION__TLS_CERT_FILE"),
        "{error}"
    );
}

#[test]
fn semantic_check_names_the_environment_key() {
    let error = load_file(
        Service::Identity,
        "db",
        "[identity]\ndatabase_url = \"mysql://x\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("ROSTER_IDENTITY__DATABASE_URL"), "{error}");
}

#[test]
fn a_port_where_an_address_belongs_says_what_an_address_looks_like() {
    for toml in [
        "metrics_addr = 9090",
        "metrics_addr = \"9090\"",
        "listen_addr = 50051",
    ] {
        let error = load_file(Service::Identity, "port", &format!("[identity]\n{toml}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("is a port, not an address: write IP:port, like 0.0.0.0:"),
            "{toml}: {error}"
        );
    }
}

#[test]
fn a_string_setting_takes_a_value_that_looks_like_a_number() {
    #[derive(Debug, Deserialize, Serialize)]
    struct Key {
        key: Option<String>,
    }
    let (_, settings) = Loader::new(Service::Identity)
        .environment(&[("ROSTER_IDENTITY__KEY", "12345")])
        .load::<Key>()
        .unwrap();
    assert_eq!(settings.key.as_deref(), Some("12345"));
}

#[test]
fn peer_settings_nest_the_same_way_in_every_service() {
    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default)]
    struct Own {
        notification: crate::peer::PeerSettings,
    }
    let (_, own) = Loader::new(Service::Identity)
        .environment(&[
            ("ROSTER_IDENTITY__NOTIFICATION__URL", "https://n:50053"),
            ("ROSTER_IDENTITY__NOTIFICATION__TIMEOUT_SECONDS", "4"),
            ("ROSTER_IDENTITY__NOTIFICATION__TLS__CA_FILE", "/ca.pem"),
        ])
        .load::<Own>()
        .unwrap();
    assert_eq!(own.notification.url.as_deref(), Some("https://n:50053"));
    assert_eq!(own.notification.timeout_seconds, Some(4));
    assert_eq!(
        own.notification.tls.ca_file.as_deref(),
        Some(Path::new("/ca.pem"))
    );
    let error = Loader::new(Service::Identity)
        .environment(&[("ROSTER_IDENTITY__NOTIFICATION__TLS__CA_FIL", "/ca.pem")])
        .load::<Own>()
        .unwrap_err();
    let SettingsError::Unknown(unknown) = error else {
        panic!("{error}");
    };
    assert_eq!(
        unknown[0].suggestion.as_deref(),
        Some("ROSTER_IDENTITY__NOTIFICATION__TLS__CA_FILE")
    );
}

#[test]
fn unknown_keys_are_refused_as_written_with_the_nearest_known_one() {
    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default)]
    struct Own {
        notification_url: Option<String>,
        hashing: Nested,
    }
    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default)]
    struct Nested {
        memory_kib: u32,
    }

    let error = Loader::new(Service::Identity)
        .environment(&[
            ("ROSTER_IDENTITY__NOTIFICATON_URL", "http://x"),
            ("ROSTER_IDENTITY__HASHING__MEMRY_KIB", "1"),
            ("ROSTER_IDENTITY__COMPLETELY_DIFFERENT", "1"),
            // Other services' keys, and the CLI's variables, are no concern of identity's.
            ("ROSTER_BULK_IMPORT__WHATEVER", "1"),
            ("ROSTER_IDENTITY_ADDR", "localhost:50051"),
            ("ROSTER_CONFIG_FILE", "roster.toml"),
        ])
        .load::<Own>()
        .unwrap_err();
    let SettingsError::Unknown(unknown) = error else {
        panic!("{error}");
    };
    assert_eq!(
        unknown,
        [
            UnknownKey {
                written: "ROSTER_IDENTITY__COMPLETELY_DIFFERENT".into(),
                suggestion: None,
            },
            UnknownKey {
                written: "ROSTER_IDENTITY__HASHING__MEMRY_KIB".into(),
                suggestion: Some("ROSTER_IDENTITY__HASHING__MEMORY_KIB".into()),
            },
            UnknownKey {
                written: "ROSTER_IDENTITY__NOTIFICATON_URL".into(),
                suggestion: Some("ROSTER_IDENTITY__NOTIFICATION_URL".into()),
            },
        ]
    );

    // A service that does not exist.
    let error = Loader::new(Service::Identity)
        .environment(&[("ROSTER_NOTIFCATION__WORKERS", "1")])
        .load::<Own>()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("ROSTER_NOTIFCATION__WORKERS: did you mean ROSTER_NOTIFICATION__WORKERS?"),
        "{error}"
    );

    let (_, own) = Loader::new(Service::Identity)
        .environment(&[("ROSTER_IDENTITY__HASHING__MEMORY_KIB", "7")])
        .load::<Own>()
        .unwrap();
    assert_eq!(own.hashing.memory_kib, 7);
}

#[test]
fn unknown_keys_and_tables_of_the_file_are_refused() {
    let error = load_file(
        Service::BulkImport,
        "unknown",
        "[bulk_import]\nconcurency_limit = 3\n\n[bulk-import]\nx = 1\n\n\
         [identity]\nanything = 1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("unknown configuration key concurency_limit in [bulk_import] of ")
            && error.contains("did you mean concurrency_limit?"),
        "{error}"
    );
    assert!(
        error.contains("[bulk-import] in ") && error.contains("did you mean [bulk_import]?"),
        "{error}"
    );
    // Identity's table is identity's business.
    assert!(!error.contains("anything"), "{error}");
}

#[test]
fn a_secret_comes_from_its_value_or_its_file_never_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, "  from-the-file\n").unwrap();
    let secret = |value: Option<&str>, file: Option<&Path>| {
        super::secret(Service::Identity, "notification_key", value, file)
    };
    assert_eq!(
        secret(Some("value"), None).unwrap().as_deref(),
        Some("value")
    );
    assert_eq!(
        secret(None, Some(&file)).unwrap().as_deref(),
        Some("from-the-file")
    );
    assert_eq!(secret(Some(""), None).unwrap(), None);
    let both = secret(Some("value"), Some(&file)).unwrap_err().to_string();
    assert!(
        both.contains("ROSTER_IDENTITY__NOTIFICATION_KEY: set together with")
            && both.contains("ROSTER_IDENTITY__NOTIFICATION_KEY_FILE"),
        "{both}"
    );
    let missing = secret(None, Some(&dir.path().join("absent")))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("ROSTER_IDENTITY__NOTIFICATION_KEY_FILE"),
        "{missing}"
    );
}
