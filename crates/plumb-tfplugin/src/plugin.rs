//! Starting a provider binary and connecting to it: the go-plugin handshake.
//!
//! plumb starts the provider with the magic cookie Terraform providers expect,
//! the protocol versions it speaks and a fresh client certificate
//! (`PLUGIN_CLIENT_CERT`, AutoMTLS). The provider answers with one line on
//! stdout — `CORE|APP|NETWORK|ADDRESS|grpc|SERVER-CERT` — and serves gRPC over
//! TLS on a unix socket. plumb trusts exactly the certificate in that line and
//! presents its own; nothing else can talk to the provider.
//!
//! What the launch depends on in the caller's environment (where `setpriv`
//! is, which provider log variables the user set) arrives in
//! [`LaunchOptions`]; this module reads no environment variable itself.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Error;

/// The cookie Terraform-ecosystem providers check before serving.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Its value.
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

const PROVIDER_LOG_VARS: &[&str] = &[
    "TF_LOG_PROVIDER",
    "TF_LOG_SDK",
    "TF_LOG_SDK_PROTO",
    "TF_LOG_SDK_FRAMEWORK",
    "TF_LOG_SDK_HELPER_SCHEMA",
];

/// How provider processes are started, from what the caller knows about its
/// environment (this crate reads none of it itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchOptions {
    /// `setpriv` (util-linux), when the caller found it: the provider then
    /// gets a parent-death signal and dies with plumb even on SIGKILL.
    /// Without it the provider is still killed whenever plumb exits
    /// normally.
    pub setpriv: Option<PathBuf>,
    /// The provider log settings the user made (`TF_LOG`,
    /// `TF_LOG_PROVIDER`, ...), by variable name: plumb leaves those alone.
    pub log_settings: BTreeSet<String>,
}

impl LaunchOptions {
    /// The options for an environment where `var` looks up a variable
    /// (`std::env::var_os` for the process's own): `setpriv` on `PATH`, and
    /// which provider log variables are set.
    pub fn from_env(var: impl Fn(&str) -> Option<OsString>) -> LaunchOptions {
        let setpriv = var("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("setpriv"))
                .find(|p| p.is_file())
        });
        let log_settings = std::iter::once("TF_LOG")
            .chain(PROVIDER_LOG_VARS.iter().copied())
            .filter(|name| var(name).is_some())
            .map(str::to_string)
            .collect();
        LaunchOptions {
            setpriv,
            log_settings,
        }
    }
}

/// How to reach a started provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The plugin protocol major version the provider chose (5 or 6).
    pub protocol_version: u32,
    /// `unix` or `tcp`.
    pub network: String,
    /// Socket path or host:port.
    pub address: String,
    /// The provider's TLS certificate (DER), when AutoMTLS is on.
    pub server_cert: Option<Vec<u8>>,
}

impl Handshake {
    /// Parses the provider's handshake line.
    pub fn parse(line: &str) -> Result<Handshake, Error> {
        let bad = |why: &str| Error::Handshake(format!("{why} in handshake line {line:?}"));
        let parts: Vec<&str> = line.trim().split('|').collect();
        if parts.len() < 5 {
            return Err(bad("too few fields"));
        }
        if parts[0] != "1" {
            return Err(bad("unsupported go-plugin core protocol"));
        }
        let protocol_version: u32 = parts[1].parse().map_err(|_| bad("bad protocol version"))?;
        if parts[4] != "grpc" {
            return Err(bad("provider does not speak gRPC (a pre-0.12 provider?)"));
        }
        let server_cert = match parts.get(5).map(|s| s.trim_end_matches('=')) {
            Some(b64) if !b64.is_empty() => Some(
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(b64)
                    .map_err(|_| bad("bad server certificate"))?,
            ),
            _ => None,
        };
        Ok(Handshake {
            protocol_version,
            network: parts[2].to_string(),
            address: parts[3].to_string(),
            server_cert,
        })
    }
}

/// The client side of AutoMTLS: a self-signed certificate made per process.
pub(crate) struct ClientIdentity {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) key_der: Vec<u8>,
}

impl ClientIdentity {
    pub(crate) fn generate() -> Result<ClientIdentity, Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let tls = |e: rcgen::Error| Error::Tls(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(tls)?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(tls)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "localhost");
        dn.push(DnType::OrganizationName, "plumb");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert = params.self_signed(&key).map_err(tls)?;
        Ok(ClientIdentity {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

/// A running provider process. Killed when dropped.
pub struct PluginProcess {
    pub(crate) child: Child,
    /// What the provider announced.
    pub handshake: Handshake,
}

impl PluginProcess {
    /// Stops the process.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Starts `binary` and reads its handshake.
pub(crate) async fn launch(
    binary: &Path,
    identity: &ClientIdentity,
    versions: &[u32],
    options: &LaunchOptions,
) -> Result<PluginProcess, Error> {
    let versions: Vec<String> = versions.iter().map(u32::to_string).collect();
    // A provider must not outlive plumb: if plumb is killed (even with
    // SIGKILL) the kernel kills the provider too. setpriv (util-linux) sets
    // the parent-death signal and then execs the provider in place, so the
    // handshake and pid are the provider's own. Without setpriv the provider
    // is still killed whenever plumb exits normally (kill_on_drop).
    let mut cmd = match &options.setpriv {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    // Providers built on HashiCorp's SDKs log every request at trace level
    // unless told otherwise, and the host is expected to filter. plumb keeps
    // only warnings and errors unless it is itself logging at debug, so it
    // asks for just those: formatting ~80 JSON lines per resource otherwise
    // costs the provider more CPU than the work itself. An explicit TF_LOG*
    // setting from the user wins.
    if !options.log_settings.contains("TF_LOG") && !tracing::enabled!(tracing::Level::DEBUG) {
        for var in PROVIDER_LOG_VARS {
            if !options.log_settings.contains(*var) {
                cmd.env(var, "WARN");
            }
        }
    }
    cmd.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", versions.join(","))
        .env("PLUGIN_CLIENT_CERT", &identity.cert_pem)
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| Error::Start {
        binary: binary.display().to_string(),
        message: e.to_string(),
    })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Handshake("no stdout".into()))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| Error::Handshake("no stderr".into()))?;
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The provider logs (go-hclog) on stderr; keep them at debug level.
    let log_name = name.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(provider = %log_name, "{line}");
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .map_err(|_| Error::Handshake(format!("{name} did not answer within 60s")))?
        .map_err(|e| Error::Handshake(e.to_string()))?
        .ok_or_else(|| {
            Error::Handshake(format!(
                "{name} exited before its handshake (is it a Terraform provider built for this platform?)"
            ))
        })?;
    // Drain anything else the plugin prints on stdout so it never blocks.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let handshake = Handshake::parse(&line)?;
    if !versions.contains(&handshake.protocol_version.to_string()) {
        return Err(Error::Handshake(format!(
            "{name} chose protocol {} which plumb did not offer",
            handshake.protocol_version
        )));
    }
    Ok(PluginProcess { child, handshake })
}

/// Opens a gRPC channel to the provider over the announced socket.
pub(crate) async fn connect(
    handshake: &Handshake,
    identity: &ClientIdentity,
) -> Result<tonic::transport::Channel, Error> {
    let tls = match &handshake.server_cert {
        Some(server_der) => Some(tokio_rustls::TlsConnector::from(Arc::new(tls_config(
            server_der, identity,
        )?))),
        None => None,
    };
    let network = handshake.network.clone();
    let address = handshake.address.clone();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let network = network.clone();
        let address = address.clone();
        let tls = tls.clone();
        async move {
            let stream: Box<dyn Io> = match network.as_str() {
                "unix" => Box::new(tokio::net::UnixStream::connect(&address).await?),
                _ => Box::new(tokio::net::TcpStream::connect(&address).await?),
            };
            let stream: Box<dyn Io> = match tls {
                Some(tls) => {
                    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
                    Box::new(tls.connect(name, stream).await?)
                }
                None => stream,
            };
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(30))
        .connect_with_connector(connector)
        .await
        .map_err(|e| Error::Handshake(format!("cannot connect to the provider: {e}")))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

fn tls_config(server_der: &[u8], identity: &ClientIdentity) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedServerCert {
        der: server_der.to_vec(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![CertificateDer::from(identity.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone())),
        )
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Trusts exactly the certificate the provider announced in its handshake.
#[derive(Debug)]
struct PinnedServerCert {
    der: Vec<u8>,
}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "provider presented a certificate other than the one in its handshake".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &SUPPORTED)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SUPPORTED.supported_schemes()
    }
}

/// go-plugin's AutoMTLS certificates use ECDSA P-521, which ring lacks; this
/// verifies those signatures with the RustCrypto `p521` crate.
#[derive(Debug)]
struct EcdsaP521Sha512;

impl rustls::pki_types::SignatureVerificationAlgorithm for EcdsaP521Sha512 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), rustls::pki_types::InvalidSignature> {
        use p521::ecdsa::signature::Verifier;
        let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
            .map_err(|_| rustls::pki_types::InvalidSignature)?;
        let sig = p521::ecdsa::Signature::from_der(signature)
            .map_err(|_| rustls::pki_types::InvalidSignature)?;
        key.verify(message, &sig)
            .map_err(|_| rustls::pki_types::InvalidSignature)
    }

    fn public_key_alg_id(&self) -> rustls::pki_types::AlgorithmIdentifier {
        rustls::pki_types::alg_id::ECDSA_P521
    }

    fn signature_alg_id(&self) -> rustls::pki_types::AlgorithmIdentifier {
        rustls::pki_types::alg_id::ECDSA_SHA512
    }
}

static P521: EcdsaP521Sha512 = EcdsaP521Sha512;

static SUPPORTED: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[&P521],
    mapping: &[(SignatureScheme::ECDSA_NISTP521_SHA512, &[&P521])],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_handshake_lines() {
        let h = Handshake::parse("1|6|unix|/tmp/plugin1|grpc|AAEC\n").unwrap();
        assert_eq!(h.protocol_version, 6);
        assert_eq!(h.network, "unix");
        assert_eq!(h.server_cert, Some(vec![0, 1, 2]));
        let h = Handshake::parse("1|5|tcp|127.0.0.1:1234|grpc|").unwrap();
        assert_eq!(h.server_cert, None);
        assert!(Handshake::parse("1|4|tcp|127.0.0.1:1234|netrpc").is_err());
        assert!(Handshake::parse("garbage").is_err());
    }

    #[test]
    fn client_identity_is_a_pem_certificate() {
        let id = ClientIdentity::generate().unwrap();
        assert!(id.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!id.key_der.is_empty());
    }
}
