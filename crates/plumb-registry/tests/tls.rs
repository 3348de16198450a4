//! `plumb registry serve` with a certificate and key speaks HTTPS; clients that
//! trust the certificate push and pull, plain HTTP gets nowhere.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use bytes::Bytes;
use common::{PASSWORD, TestRegistry, USER, rt, run};
use plumb_oci::client::{ClientOptions, Credentials, RegistryClient};
use plumb_oci::{Digest, RepositoryName};

#[test]
fn tls_serves_https_to_clients_that_trust_the_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let p = |n: &str| certs.path().join(n);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    // A throwaway CA, and a server certificate for 127.0.0.1 signed by it.
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args(["-subj", "/CN=plumb test CA", "-days", "1", "-keyout"])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .arg("req")
        .args(ec)
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(p("key.pem"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "1", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .args(["-CAcreateserial", "-extfile"])
        .arg(p("ext"))
        .arg("-out")
        .arg(p("cert.pem")));
    let (cert, key, ca) = (p("cert.pem"), p("key.pem"), p("ca.pem"));
    plumb_oci::client::install_crypto_provider();
    let tls = plumb_registry::server::tls_config(&cert, &key).unwrap();
    let reg = TestRegistry::start_full("", Some(tls));
    let client = RegistryClient::new(ClientOptions {
        plain_http: Some(false),
        credentials: Some(Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        }),
        ca_file: Some(ca),
    })
    .unwrap();
    let repo = RepositoryName::parse("secure/app").unwrap();
    let data = Bytes::from_static(b"over TLS");
    let d = Digest::sha256_of(&data);
    let rt = rt();
    rt.block_on(async {
        client
            .blob_put(&reg.host(), &repo, &d, data.clone())
            .await
            .unwrap();
        assert_eq!(client.blob_get(&reg.host(), &repo, &d).await.unwrap(), data);
        // A client that does not trust the certificate is refused by TLS.
        let untrusting = RegistryClient::new(ClientOptions {
            plain_http: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(
            untrusting
                .blob_exists(&reg.host(), &repo, &d)
                .await
                .is_err()
        );
        // Plain HTTP to the TLS port gets no answer.
        let plain = RegistryClient::new(ClientOptions {
            plain_http: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert!(plain.blob_exists(&reg.host(), &repo, &d).await.is_err());
    });
}
