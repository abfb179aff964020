//! Certificates for the TLS tests: a certificate authority of the test's own and a server
//! certificate it signed for `127.0.0.1` and `localhost`, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate authority and a server certificate it signed, as PEM files in `dir`.
#[derive(Debug)]
pub struct TestCertificates {
    /// The CA's certificate: what a client trusts (`sslrootcert=`).
    pub ca: PathBuf,
    /// The server's certificate.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// The CA's certificate as PEM text.
    pub ca_pem: String,
}

impl TestCertificates {
    /// Generates a CA named `name` and a server certificate it signed, into `dir` (created).
    ///
    /// # Panics
    ///
    /// When generating or writing fails: a test cannot go on without them.
    pub fn generate(dir: &Path, name: &str) -> TestCertificates {
        std::fs::create_dir_all(dir).expect("a folder for the certificates");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("Strata test CA {name}"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            std::fs::write(&path, text).expect("write a certificate file");
            path
        };
        let ca_pem = ca.pem();
        TestCertificates {
            ca: write(&format!("{name}-ca.pem"), &ca_pem),
            server_cert: write(&format!("{name}-server.pem"), &server_cert.pem()),
            server_key: write(&format!("{name}-server.key"), &server_key.serialize_pem()),
            ca_pem,
        }
    }
}
