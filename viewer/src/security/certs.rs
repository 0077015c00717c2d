//! Certificates for a fleet's TLS: a CA of its own and a server
//! certificate it signs, for the broker (and the dashboard or a node's
//! HTTP server), ECDSA P-256, valid for ten years.

use anyhow::{Context, Result};
use chrono::Datelike;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A fleet's CA: its certificate (PEM) and what signs with it.
#[derive(Debug)]
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate and its key, PEM.
#[derive(Debug)]
pub struct Signed {
    pub cert: String,
    pub key: String,
}

fn validity(params: &mut CertificateParams) {
    let year = chrono::Utc::now().year();
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 10, 1, 1);
}

impl Ca {
    /// A new CA with a name of its own: a client trusting another fleet's
    /// CA is told the issuer is unknown, not that a signature is bad.
    pub fn new() -> Result<Ca> {
        let key = KeyPair::generate().context("making the CA's key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let tag = super::passwd::random_password(8);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("camfleet fleet CA {tag}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params);
        let cert = params.self_signed(&key).context("signing the CA")?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            params,
            key,
        })
    }

    /// A server certificate for `hosts` (names or addresses; the first is
    /// its common name).
    pub fn sign(&self, hosts: &[String]) -> Result<Signed> {
        let key = KeyPair::generate().context("making a server key")?;
        let mut params = CertificateParams::new(hosts.to_vec())
            .with_context(|| format!("{hosts:?} are not host names or addresses"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, hosts[0].clone());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing a server certificate")?;
        Ok(Signed {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
