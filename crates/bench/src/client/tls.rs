//! The client TLS configuration: trust a PEM bundle (`--cacert`) or nothing
//! at all (`--insecure`), ALPN as the protocol asks.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::error::BenchError;
use crate::plan::{Plan, Protocol};

pub(crate) fn config(plan: &Plan) -> Result<Arc<ClientConfig>, BenchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Tls(e.to_string()))?;
    let mut config = if plan.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth()
    } else {
        let Some(path) = &plan.cacert else {
            return Err(BenchError::NoTrust);
        };
        let pem = std::fs::read(path).map_err(|e| BenchError::CaCert {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            roots.add(cert).map_err(|e| BenchError::CaCert {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        if roots.is_empty() {
            return Err(BenchError::CaCert {
                path: path.clone(),
                reason: "no certificate in PEM form".into(),
            });
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = match plan.protocol {
        Protocol::HttpsHttp1 => vec![b"http/1.1".to_vec()],
        Protocol::HttpsHttp2 => vec![b"h2".to_vec()],
        _ => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}

/// The configuration of one client: `shared`'s settings with a session
/// cache of its own, as each real client keeps its own tickets (one cache
/// for every slot would hold a few tickets for a thousand clients).
pub(crate) fn for_client(shared: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::clone(shared);
    config.resumption = rustls::client::Resumption::in_memory_sessions(4);
    Arc::new(config)
}

pub(crate) fn server_name(plan: &Plan) -> ServerName<'static> {
    ServerName::try_from(plan.host.clone())
        .unwrap_or_else(|_| ServerName::IpAddress(plan.addr.ip().into()))
}

/// `--insecure`: every certificate is accepted, signatures are not checked.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
