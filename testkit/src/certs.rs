//! A CA and node certificates for clusters that speak TLS.

use std::fs;
use std::path::Path;

/// A CA and one certificate it signed, in PEM.
pub struct CertPems {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// Makes a CA and one certificate for 127.0.0.1, 127.0.0.11-20 and
/// localhost that it signs (for servers and clients both, as peers need), in `dir`:
/// `NAME-ca.crt`, `NAME.crt`, `NAME.key` (mode 0600).
pub fn make_certs(dir: &Path, name: &str) -> sraft::tls::TlsFiles {
    write_certs(dir, name, &cert_pems(name))
}

/// Writes `pems` as `make_certs` does.
pub fn write_certs(dir: &Path, name: &str, pems: &CertPems) -> sraft::tls::TlsFiles {
    fs::create_dir_all(dir).expect("create the tls dir");
    let files = sraft::tls::TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join(format!("{name}-ca.crt")),
    };
    fs::write(&files.cert, &pems.cert).expect("write the cert");
    write_private(&files.key, &pems.key);
    fs::write(&files.ca, &pems.ca).expect("write the CA");
    files
}

/// The certificates of `make_certs`, in memory.
pub fn cert_pems(name: &str) -> CertPems {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("sraft test CA {name}"));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("node key");
    // 127.0.0.11-20 too: the Jepsen test gives each node its own loopback
    // address (so that packet filters can tell them apart).
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    names.extend((11..=20).map(|i| format!("127.0.0.{i}")));
    let mut params = CertificateParams::new(names).expect("node params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("sraft node {name}"));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("node cert");
    CertPems {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// Writes a secret file with mode 0600, as sraft requires.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).expect("write a secret file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod a secret file");
}
