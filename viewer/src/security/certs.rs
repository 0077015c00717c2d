//! Certificates for a fleet's TLS: a CA of its own and a server
//! certificate it signs, for the broker (and the dashboard or a node's
//! HTTP server), ECDSA P-256, valid for ten years.

use anyhow::{Context, Result};
use chrono::Datelike;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// PEM texts of a CA and of a server certificate it signed.
#[derive(Debug)]
pub struct Made {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// A new CA and a server certificate for `hosts` (names or addresses; the
/// first is its common name).
pub fn make(hosts: &[String]) -> Result<Made> {
    let year = chrono::Utc::now().year();
    let validity = |params: &mut CertificateParams| {
        params.not_before = date_time_ymd(year - 1, 1, 1);
        params.not_after = date_time_ymd(year + 10, 1, 1);
    };
    let ca_key = KeyPair::generate().context("making the CA's key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    // A name of its own: a client trusting another fleet's CA is told the
    // issuer is unknown, not that a signature is bad.
    let tag: String = super::passwd::random_password(8);
    ca.distinguished_name
        .push(DnType::CommonName, format!("camfleet fleet CA {tag}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;

    let key = KeyPair::generate().context("making the server's key")?;
    let mut server = CertificateParams::new(hosts.to_vec())
        .with_context(|| format!("{hosts:?} are not host names or addresses"))?;
    server
        .distinguished_name
        .push(DnType::CommonName, hosts[0].clone());
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server);
    let issuer = Issuer::from_params(&ca, &ca_key);
    let cert = server
        .signed_by(&key, &issuer)
        .context("signing the server's certificate")?;
    Ok(Made {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}
