//! TLS for the server: a rustls configuration (ring provider) from PEM files,
//! from the caller's own `rustls::ServerConfig`, or (feature `self-signed`) a
//! certificate made at start; ALPN offers `h2` then `http/1.1`; session
//! tickets every generation can open ([`TicketKeys`]).

pub(crate) mod session;
mod tickets;

pub use tickets::{TICKET_KEY_LEN, TicketKeys};

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// ALPN protocols the server offers, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A server TLS configuration.
///
/// # Examples
///
/// From PEM files:
///
/// ```no_run
/// use gracedown::tls::TlsConfig;
///
/// let tls = TlsConfig::from_pem_files("cert.pem".as_ref(), "key.pem".as_ref())?;
/// # Ok::<(), gracedown::Error>(())
/// ```
///
/// From a `rustls::ServerConfig` of your own (client authentication, a
/// certificate resolver, other protocol versions): ALPN is set to `h2`,
/// `http/1.1` if it is empty.
///
/// ```no_run
/// # fn demo(config: rustls::ServerConfig) {
/// use std::sync::Arc;
/// use gracedown::tls::TlsConfig;
///
/// let tls = TlsConfig::from_server_config(Arc::new(config));
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.config.alpn_protocols)
            .finish()
    }
}

impl TlsConfig {
    /// Loads a certificate chain and a private key from PEM files.
    ///
    /// # Errors
    ///
    /// [`Error::TlsFile`] when a file cannot be read, [`Error::TlsPem`] when
    /// it holds no certificate or key, [`Error::TlsConfig`] when rustls
    /// rejects the pair.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::TlsFile {
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(Error::TlsPem {
                path: cert.to_owned(),
                what: "certificate",
            });
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| Error::TlsPem {
            path: key.to_owned(),
            what: "private key",
        })?;
        Self::from_der(chain, key_der)
    }

    /// Serves with the caller's rustls configuration. When its ALPN list is
    /// empty, it is set to [`ALPN`] (`h2`, then `http/1.1`); a list of the
    /// caller's own is kept (a server that offers only `http/1.1` serves only
    /// HTTP/1.1 over TLS).
    pub fn from_server_config(config: Arc<ServerConfig>) -> Self {
        if !config.alpn_protocols.is_empty() {
            return Self { config };
        }
        let mut config = Arc::unwrap_or_clone(config);
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Self {
            config: Arc::new(config),
        }
    }

    /// Generates a self-signed certificate for `names` (DNS names or IP
    /// addresses) and returns the configuration and the certificate in PEM,
    /// for clients that want to trust it.
    ///
    /// # Errors
    ///
    /// [`Error::TlsConfig`] when a name is not acceptable in a certificate.
    ///
    /// # Examples
    ///
    /// ```
    /// use gracedown::tls::TlsConfig;
    ///
    /// let (tls, cert_pem) = TlsConfig::self_signed(&["localhost".to_owned()])?;
    /// assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    /// # Ok::<(), gracedown::Error>(())
    /// ```
    #[cfg(feature = "self-signed")]
    pub fn self_signed(names: &[String]) -> Result<(Self, String), Error> {
        let certified =
            rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| Error::TlsConfig {
                what: "generating a self-signed certificate",
                source: e.into(),
            })?;
        let pem = certified.cert.pem();
        let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).map_err(|e| {
            Error::TlsConfig {
                what: "encoding the generated key",
                source: e.into(),
            }
        })?;
        let config = Self::from_der(vec![certified.cert.der().clone()], key)?;
        Ok((config, pem))
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::TlsConfig {
                what: "protocol versions",
                source: e.into(),
            })?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| Error::TlsConfig {
                what: "certificate and private key do not form a usable pair",
                source: e.into(),
            })?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Issues session tickets with `keys` (shared by every generation), so
    /// that a client that reconnects after a restart resumes its session.
    ///
    /// Under gracedown's `start_server` this is done with the superdaemon's
    /// keys unless the configuration already issues tickets.
    pub fn ticket_keys(self, keys: &TicketKeys) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        config.ticketer = keys.ticketer();
        Self {
            config: Arc::new(config),
        }
    }

    /// Lets rustls give a connection's record keys out, so that its session
    /// can move to the next generation (they travel only on the handoff
    /// channel, and are zeroed after use).
    pub(crate) fn secrets_extractable(self) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        config.enable_secret_extraction = true;
        Self {
            config: Arc::new(config),
        }
    }

    /// Whether tickets are issued (ours, or the caller's own ticketer).
    pub(crate) fn issues_tickets(&self) -> bool {
        self.config.ticketer.enabled()
    }

    /// The rustls configuration, for use with other servers.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }
}
