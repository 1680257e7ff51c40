//! Test support: brings the real platform (kube-apiserver + Synapse) up once per
//! test binary through `tests/platform.sh`, and gives each test a kube client,
//! the Synapse coordinates and a fresh namespace.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

pub struct Platform {
    pub env: BTreeMap<String, String>,
}

impl Platform {
    pub fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} missing from target/platform/env"))
    }
    pub fn kubeconfig(&self) -> &str {
        self.var("KUBECONFIG")
    }
    pub fn synapse_url(&self) -> &str {
        self.var("SYNAPSE_URL")
    }
    pub fn server_name(&self) -> &str {
        self.var("SYNAPSE_SERVER_NAME")
    }
    pub fn shared_secret(&self) -> &str {
        self.var("SYNAPSE_SHARED_SECRET")
    }
    pub fn kubectl(&self) -> &str {
        self.var("KUBECTL")
    }
    pub fn helm(&self) -> &str {
        self.var("HELM")
    }

    /// Runs kubectl against the platform; returns (success, stdout, stderr).
    pub fn kubectl_run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut child = Command::new(self.kubectl())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        if let Some(input) = stdin {
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The platform, started (or reused) once per test binary, with the CRDs installed.
pub fn platform() -> &'static Platform {
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    PLATFORM.get_or_init(|| {
        let root = repo_root();
        let status = Command::new(root.join("tests/platform.sh"))
            .arg("up")
            .status()
            .expect("tests/platform.sh runs");
        assert!(status.success(), "tests/platform.sh up failed");
        let env = parse_env(&root.join("target/platform/env"));
        let p = Platform { env };
        let crds = root.join("crds");
        let crds = crds.to_str().expect("utf-8 path");
        let (ok, _, err) = p.kubectl_run(&["apply", "--server-side", "--force-conflicts", "-f", crds], None);
        assert!(ok, "installing CRDs failed: {err}");
        let (ok, _, err) = p.kubectl_run(
            &["wait", "--for=condition=Established", "--timeout=60s", "-f", crds],
            None,
        );
        assert!(ok, "CRDs not Established: {err}");
        p
    })
}

fn parse_env(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).expect("target/platform/env exists after `up`");
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A kube client for the platform's API server, as cluster admin.
pub async fn kube_client() -> Client {
    let p = platform();
    let kubeconfig = Kubeconfig::read_from(p.kubeconfig()).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client builds")
}

/// A name no other test (in this run or an earlier one) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}{n}", (std::process::id() ^ nanos) & 0xfffff)
}

/// Creates a fresh namespace for one test. Namespaces are left behind: there is
/// no namespace controller to finish deleting them, and each platform start is fresh.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns = Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("namespace created");
    name
}
