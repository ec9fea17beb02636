//! Certificates made at run time for TLS tests: a throwaway CA that issues server certificates
//! (for `localhost` and `127.0.0.1`) and client certificates, written as PEM files into a
//! temporary directory that lives as long as the [`TestCa`].

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A throwaway certificate authority.
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to [`TestCa::ca_file`].
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Roster test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("certificate directory");
        std::fs::write(dir.path().join("ca.pem"), certificate.pem()).expect("write the CA");
        TestCa {
            dir,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate (PEM), for clients and servers to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `localhost` and `127.0.0.1`, written as `file.pem` and
    /// `file-key.pem`.
    pub fn server(&self, file: &str) -> CertFiles {
        self.issue(
            file,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate named `file`, for mutual TLS.
    pub fn client(&self, file: &str) -> CertFiles {
        self.issue(file, &[file], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, file: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> CertFiles {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("certificate key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("signed certificate");
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}-key.pem")),
        };
        std::fs::write(&files.cert, certificate.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }
}
