//! Test support: brings the real platform (kube-apiserver + Synapse) up once per
//! test binary through `tests/platform.sh`, and gives each test a kube client,
//! the Synapse coordinates and a fresh namespace.
#![allow(dead_code)]

pub mod exo;
pub mod http;
pub mod mas;
pub mod proxy;
pub mod team;

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
        self.env.get(name).map(String::as_str).unwrap_or_else(|| panic!("{name} missing from target/platform/env"))
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

    /// `kubectl apply` of `manifest` in `ns`; it must succeed.
    pub fn apply(&self, ns: &str, manifest: &str) {
        let (ok, _, err) = self.kubectl_run(&["apply", "-n", ns, "-f", "-"], Some(manifest));
        assert!(ok, "{err}");
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
        let status = Command::new(root.join("tests/platform.sh")).arg("up").status().expect("tests/platform.sh runs");
        assert!(status.success(), "tests/platform.sh up failed");
        let env = parse_env(&root.join("target/platform/env"));
        let p = Platform { env };
        let crds = root.join("crds");
        let crds = crds.to_str().expect("utf-8 path");
        let (ok, _, err) = p.kubectl_run(&["apply", "--server-side", "--force-conflicts", "-f", crds], None);
        assert!(ok, "installing CRDs failed: {err}");
        let (ok, _, err) = p.kubectl_run(&["wait", "--for=condition=Established", "--timeout=60s", "-f", crds], None);
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
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kubeconfig is usable");
    Client::try_from(config).expect("client builds")
}

/// A name no other test (in this run or an earlier one) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{:x}{n}", (std::process::id() ^ nanos) & 0xfffff)
}

/// Creates a fresh namespace for one test. Namespaces are left behind: there is
/// no namespace controller to finish deleting them, and each platform start is fresh.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns =
        Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("namespace created");
    name
}

/// The operator binary running as a child process against the platform; sent
/// SIGTERM when dropped.
pub struct Operator {
    child: std::process::Child,
    pub log: PathBuf,
}

impl Operator {
    /// Starts `exo-matrix-operator run --namespace <ns> --credentials-secret <ns>/<secret>` plus `extra`.
    pub fn start(ns: &str, secret: &str, extra: &[&str]) -> Operator {
        Self::start_as(platform().kubeconfig(), ns, secret, extra)
    }

    /// Like `start`, with the operator's own Synapse account named `account`
    /// (two installations sharing one account, or a reinstall).
    pub fn start_with_account(ns: &str, secret: &str, account: &str, extra: &[&str]) -> Operator {
        Self::spawn(platform().kubeconfig(), ns, secret, account, extra)
    }

    /// Like `start`, with another identity (e.g. a ServiceAccount's kubeconfig).
    pub fn start_as(kubeconfig: &str, ns: &str, secret: &str, extra: &[&str]) -> Operator {
        Self::spawn(kubeconfig, ns, secret, &format!("op-{ns}"), extra)
    }

    fn spawn(kubeconfig: &str, ns: &str, secret: &str, account: &str, extra: &[&str]) -> Operator {
        let log = repo_root().join("target/platform").join(format!("operator-{ns}-{}.log", unique("run")));
        let file = std::fs::File::create(&log).expect("operator log file");
        let child = Command::new(env!("CARGO_BIN_EXE_exo-matrix-operator"))
            .args(["run", "--namespace", ns, "--credentials-secret", &format!("{ns}/{secret}")])
            .args(["--admin-username", account])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            // EXO_TEST_OPERATOR_LOG widens the operator's log when a test needs debugging.
            .env(
                "RUST_LOG",
                std::env::var("EXO_TEST_OPERATOR_LOG").unwrap_or_else(|_| "info,exo_matrix_operator=debug".into()),
            )
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .spawn()
            .expect("operator starts");
        Operator { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it exited successfully, once it has exited.
    pub fn exit_status(&mut self) -> Option<bool> {
        self.child.try_wait().ok().flatten().map(|s| s.success())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<bool> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status.success());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.terminate(std::time::Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A kubeconfig for the ServiceAccount `sa` in `ns`, from a token the API server signs.
pub fn service_account_kubeconfig(ns: &str, sa: &str) -> String {
    let p = platform();
    let (ok, token, err) = p.kubectl_run(&["create", "token", sa, "-n", ns, "--duration=1h"], None);
    assert!(ok, "kubectl create token: {err}");
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique("sa")));
    std::fs::copy(p.kubeconfig(), &path).expect("copy kubeconfig");
    let path = path.to_string_lossy().into_owned();
    for args in [
        vec!["config", "set-credentials", "operator-sa", &format!("--token={}", token.trim())],
        vec!["config", "set-context", "local", "--user=operator-sa"],
    ] {
        let out = Command::new(p.kubectl()).args(&args).env("KUBECONFIG", &path).output().expect("kubectl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    path
}

/// A MatrixUser spec as most tests want it: display name and email made from the username, no password.
pub fn user_spec(username: &str) -> exo_matrix_operator::crd::MatrixUserSpec {
    exo_matrix_operator::crd::MatrixUserSpec {
        username: username.into(),
        display_name: Some(format!("{username} Display")),
        email: Some(format!("{username}@example.org")),
        avatar_url: None,
        enabled: true,
        admin: false,
        password_secret_ref: None,
        deletion_policy: exo_matrix_operator::crd::UserDeletionPolicy::Deactivate,
    }
}

/// Creates the credentials Secret `name` in `ns` from key/value pairs.
pub async fn credentials_secret(client: &Client, ns: &str, name: &str, pairs: &[(&str, &str)]) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        string_data: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::apply("tests").force(), &Patch::Apply(&secret))
        .await
        .expect("credentials Secret written");
}

/// Credentials as most tests use them: the shared secret only, so the operator
/// bootstraps its own admin account.
pub async fn shared_secret_credentials(client: &Client, ns: &str) -> &'static str {
    let p = platform();
    credentials_secret(client, ns, "matrix", &[("sharedSecret", p.shared_secret()), ("serverUrl", p.synapse_url())])
        .await;
    "matrix"
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A user id as the Synapse adapter takes it (test input: a bad one is a test bug).
pub fn uid(id: impl AsRef<str>) -> exo_matrix_operator::ids::OwnedUserId {
    exo_matrix_operator::ids::user_id(id.as_ref()).expect("a valid user id")
}

/// A room id as the Synapse adapter takes it.
pub fn rid(id: impl AsRef<str>) -> exo_matrix_operator::ids::OwnedRoomId {
    exo_matrix_operator::ids::room_id(id.as_ref()).expect("a valid room id")
}

/// A room alias as the Synapse adapter takes it.
pub fn alias(id: impl AsRef<str>) -> exo_matrix_operator::ids::OwnedRoomAliasId {
    exo_matrix_operator::ids::room_alias(id.as_ref()).expect("a valid room alias")
}

/// An admin client for Synapse, for tests to look at (and tamper with) what the operator did.
pub async fn synapse_admin() -> exo_matrix_operator::synapse::Synapse {
    let p = platform();
    let synapse = exo_matrix_operator::synapse::Synapse::new(p.synapse_url()).expect("valid URL");
    synapse.with_token(admin_token().await)
}

/// A fresh Synapse admin account's access token.
pub async fn admin_token() -> exo_matrix_operator::secret::SecretString {
    use exo_matrix_operator::secret::SecretString;
    use exo_matrix_operator::synapse::{Registration, Synapse};
    let p = platform();
    let synapse = Synapse::new(p.synapse_url()).expect("valid URL");
    let reg = Registration {
        username: unique("testadmin").replace('-', "_"),
        password: SecretString::new("test-admin-password"),
        admin: true,
        displayname: None,
    };
    let r = synapse
        .register_with_shared_secret(&SecretString::new(p.shared_secret()), &reg)
        .await
        .expect("test admin registered");
    r.access_token.expect("token")
}

/// The `Ready` condition of an object's status as (status, reason, message).
pub fn condition(status: Option<&serde_json::Value>, type_: &str) -> Option<(String, String, String)> {
    status?.get("conditions")?.as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (
            c["status"].as_str().unwrap_or_default().to_owned(),
            c["reason"].as_str().unwrap_or_default().to_owned(),
            c["message"].as_str().unwrap_or_default().to_owned(),
        )
    })
}
