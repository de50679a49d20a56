//! The server's TLS: a test CA and a certificate for `localhost` signed by it, generated at
//! start (rcgen), and two rustls configurations: TLS 1.2 inside PRELOGIN, as SQL Server offers
//! it under TDS 7.x, and TDS 8 strict encryption (TLS 1.2 or 1.3 first, ALPN `tds/8.0`,
//! [MS-TDS] 3.3.5.1). A client that trusts the CA (OpenSSL: `SSL_CERT_FILE`) validates the
//! certificate as it would a real server's, host name included.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Tls;

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

pub(crate) fn generate() -> io::Result<Tls> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name = name("tds-test-server test CA");
    let ca_key = KeyPair::generate().map_err(io::Error::other)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(io::Error::other)?;

    let key = KeyPair::generate().map_err(io::Error::other)?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned()]).map_err(io::Error::other)?;
    params.distinguished_name = name("localhost");
    let cert = params.signed_by(&key, &ca).map_err(io::Error::other)?;

    let chain = vec![cert.der().clone(), ca.der().clone()];
    let config = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(io::Error::other)?;
        config.send_tls13_tickets = 0;
        Ok::<_, io::Error>(config)
    };
    let mut strict = config(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    strict.alpn_protocols = vec![b"tds/8.0".to_vec()];
    Ok(Tls {
        config: Arc::new(config(&[&rustls::version::TLS12])?),
        strict: Arc::new(strict),
        pem: cert.pem(),
        ca_pem: ca.pem(),
    })
}
