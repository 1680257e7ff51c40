//! `--extra-ca-file`: the operator reaching the real Synapse behind TLS signed by a private CA
//! (a TLS-terminating relay in front of it, with a certificate for `localhost` issued by a fresh CA).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use exo_matrix_operator::crd::SpaceRoomLink;
use kube::Api;
use kube::api::PostParams;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const WAIT: Duration = Duration::from_secs(60);

/// A relay serving `https://localhost:<port>` with a certificate from a new private CA and passing the
/// decrypted bytes to Synapse. Returns the URL, the CA's PEM and a count of TLS handshakes tried.
async fn tls_relay() -> (String, String, Arc<AtomicUsize>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert =
        CertificateParams::new(vec!["localhost".to_owned()]).expect("params").signed_by(&key, &issuer).expect("cert");
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let upstream = platform().synapse_url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://localhost:{}", listener.local_addr().expect("addr").port());
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, counted) = (acceptor.clone(), upstream.clone(), counted.clone());
            tokio::spawn(async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut synapse) = TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut synapse).await;
            });
        }
    });
    (url, ca_cert.pem(), handshakes)
}

fn write_file(name: &str, text: &str) -> String {
    let path = repo_root().join("target/platform").join(unique(name));
    std::fs::write(&path, text).expect("file written");
    path.to_string_lossy().into_owned()
}

async fn link(ns: &str, group: &str) -> Api<SpaceRoomLink> {
    let links: Api<SpaceRoomLink> = Api::namespaced(kube_client().await, ns);
    let spec = serde_json::from_value(json!({"spaceGroupId": group, "create": true, "displayName": "Intranet"}))
        .expect("spec");
    links.create(&PostParams::default(), &SpaceRoomLink::new("intranet", spec)).await.expect("link created");
    links
}

async fn ready(links: &Api<SpaceRoomLink>) -> Option<(String, String, String)> {
    let l = links.get("intranet").await.ok()?;
    condition(serde_json::to_value(&l.status).ok().as_ref(), "Ready")
}

#[tokio::test]
async fn the_operator_trusts_synapse_behind_a_private_ca_only_when_given_it() {
    let (url, ca_pem, handshakes) = tls_relay().await;
    let client = kube_client().await;

    // With the CA (a bundle: another certificate first), the link's room is made through the relay.
    let ns = namespace(&client, "private-ca").await;
    let secret = shared_secret_credentials(&client, &ns).await;
    let other = tls_relay().await.1;
    let bundle = write_file("ca-bundle.pem", &format!("{other}{ca_pem}"));
    let mut trusting = Operator::start(&ns, secret, &["--homeserver-url", &url, "--extra-ca-file", &bundle]);
    let links = link(&ns, &unique("intranet")).await;
    eventually("the link Ready through https", WAIT, || async { ready(&links).await.filter(|c| c.0 == "True") }).await;
    assert!(trusting.log_text().contains("trusting extra CA certificates"), "{}", trusting.log_text());
    trusting.terminate(Duration::from_secs(20));

    // Without it, the link says the certificate is not trusted, and the operator keeps trying.
    let ns = namespace(&client, "no-ca").await;
    let secret = shared_secret_credentials(&client, &ns).await;
    let mut distrusting = Operator::start(&ns, secret, &["--homeserver-url", &url]);
    let links = link(&ns, &unique("intranet")).await;
    let before = handshakes.load(Ordering::SeqCst);
    let (_, reason, message) = eventually("the link names the TLS error", WAIT, || async {
        ready(&links).await.filter(|c| c.0 == "False" && c.2.contains("certificate"))
    })
    .await;
    assert!(message.contains("UnknownIssuer"), "{reason}: {message}");
    eventually("another handshake (retried)", WAIT, || async {
        (handshakes.load(Ordering::SeqCst) >= before + 2).then_some(())
    })
    .await;
    assert_eq!(distrusting.exit_status(), None, "the operator stopped: {}", distrusting.log_text());
    distrusting.terminate(Duration::from_secs(20));
}

#[tokio::test]
async fn an_unusable_ca_file_stops_the_start_with_a_clear_error() {
    let client = kube_client().await;
    let ns = namespace(&client, "bad-ca").await;
    let secret = shared_secret_credentials(&client, &ns).await;
    let cases = [
        (write_file("no-cert.pem", "not a certificate\n"), "holds no PEM certificate"),
        ("/nonexistent/ca.pem".to_owned(), "cannot read the CA file /nonexistent/ca.pem"),
    ];
    for (path, expected) in cases {
        let mut op = Operator::start(&ns, secret, &["--extra-ca-file", &path]);
        let deadline = std::time::Instant::now() + WAIT;
        let ok = loop {
            match op.exit_status() {
                Some(ok) => break ok,
                None if std::time::Instant::now() > deadline => panic!("still running: {}", op.log_text()),
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let log = op.log_text();
        assert!(!ok && log.contains(expected) && !log.contains("panicked"), "{log}");
    }
}
