//! The server's TLS: a self-signed certificate for `localhost` generated at start (rcgen) and
//! two rustls configurations: TLS 1.2 inside PRELOGIN, as SQL Server offers it under TDS 7.x,
//! and TDS 8 strict encryption (TLS 1.2 or 1.3 first, ALPN `tds/8.0`, [MS-TDS] 3.3.5.1).

use std::io;
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Tls;

pub(crate) fn self_signed() -> io::Result<Tls> {
    let key = KeyPair::generate().map_err(io::Error::other)?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned()]).map_err(io::Error::other)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "localhost");
    params.distinguished_name = name;
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    let config = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
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
    })
}
