//! The container image (`image/build.sh`, no engine, no registry): deterministic, the same files and config
//! as the Dockerfile, and run the way the chart's Deployment runs it — by runc, the runtime under containerd —
//! against the platform, names resolved from the /etc/hosts Kubernetes mounts.
//! The musl release build is cached in the target dir: slow once, seconds afterwards.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// A built OCI image layout and its manifest digest.
struct Image {
    dir: PathBuf,
    digest: String,
}

fn build(out: &Path) -> String {
    let out_ = out.to_str().expect("utf-8 path");
    let run = Command::new(repo_root().join("image/build.sh")).arg(out_).stderr(Stdio::inherit()).output();
    let run = run.expect("image/build.sh runs");
    assert!(run.status.success(), "image/build.sh failed");
    String::from_utf8_lossy(&run.stdout).trim().to_owned()
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = repo_root().join("target/image/oci-test");
        let digest = build(&dir);
        assert!(digest.starts_with("sha256:"), "build.sh prints the manifest digest, got {digest:?}");
        Image { dir, digest }
    })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.strip_prefix("sha256:").expect("sha256 digest"))
}

/// (image config, paths in the layers) of the layout's only image.
fn contents(dir: &Path) -> (Value, BTreeSet<String>) {
    let index = read_json(&dir.join("index.json"));
    let manifest = read_json(&blob(dir, index["manifests"][0]["digest"].as_str().expect("manifest digest")));
    let config = read_json(&blob(dir, manifest["config"]["digest"].as_str().expect("config digest")));
    let mut files = BTreeSet::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        let list = Command::new("tar").arg("-tzf").arg(blob(dir, layer["digest"].as_str().expect("digest"))).output();
        let list = list.expect("tar runs");
        assert!(list.status.success(), "layer is a gzipped tar");
        files.extend(String::from_utf8_lossy(&list.stdout).lines().map(|l| format!("/{}", l.trim_start_matches("./"))));
    }
    (config["config"].clone(), files)
}

/// What the Dockerfile's final stage declares: (config as in an image config, files it copies in).
fn dockerfile_declares() -> (Value, BTreeSet<String>) {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    // Continuation lines joined; the final stage is everything after the last FROM.
    let text = text.replace("\\\n", " ");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let last_from = lines.iter().rposition(|l| l.to_uppercase().starts_with("FROM ")).expect("a FROM");
    assert_eq!(lines[last_from].split_whitespace().nth(1), Some("scratch"), "the final stage is FROM scratch");
    let json_array = |arg: &str| -> Value { serde_json::from_str(arg).expect("exec (JSON array) form") };
    let mut config = json!({});
    let mut files = BTreeSet::new();
    let mut env = Vec::new();
    for line in &lines[last_from + 1..] {
        let (instruction, arg) = line.split_once(' ').expect("instruction and argument");
        let arg = arg.trim();
        match instruction.to_uppercase().as_str() {
            "COPY" => {
                let dest = arg.split_whitespace().last().expect("destination");
                files.insert(dest.to_owned());
            }
            "USER" => config["User"] = json!(arg),
            "ENTRYPOINT" => config["Entrypoint"] = json_array(arg),
            "CMD" => config["Cmd"] = json_array(arg),
            "ENV" => env.push(arg.to_owned()),
            "EXPOSE" => {
                let ports: BTreeMap<String, Value> = arg
                    .split_whitespace()
                    .map(|p| (if p.contains('/') { p.to_owned() } else { format!("{p}/tcp") }, json!({})))
                    .collect();
                config["ExposedPorts"] = json!(ports);
            }
            other => panic!("tests/image.rs does not know Dockerfile instruction {other}: teach it or image/oci.py"),
        }
    }
    if !env.is_empty() {
        config["Env"] = json!(env);
    }
    (config, files)
}

#[test]
fn the_image_is_reproducible_and_is_what_the_dockerfile_declares() {
    let first = image();
    let again = repo_root().join("target/image/oci-again");
    assert_eq!(build(&again), first.digest, "the same binary gives the same image digest");
    let _ = std::fs::remove_dir_all(&again);

    let (config, files) = contents(&first.dir);
    let (declared, declared_files) = dockerfile_declares();
    assert_eq!(files, declared_files, "files in the built image vs the Dockerfile's COPY lines");
    assert_eq!(config, declared, "image config vs the Dockerfile's USER/ENTRYPOINT/CMD/ENV/EXPOSE");
}

#[test]
fn the_binary_in_the_image_is_static() {
    let image = image();
    let bundle = unpack(image, &unique("static"));
    let elf = std::fs::read(bundle.join("rootfs/exo-matrix-operator")).expect("binary in the image");
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF binary");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    let has_interp = (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) == PT_INTERP
    });
    assert!(!has_interp, "the binary asks for a dynamic loader, which a scratch image does not have");
    let _ = std::fs::remove_dir_all(bundle);
}

/// Unpacks the image into an OCI runtime bundle (rootfs + config.json derived from the image config) with umoci.
fn unpack(image: &Image, name: &str) -> PathBuf {
    let bundle = repo_root().join("target/image").join(name);
    let tag = env!("CARGO_PKG_VERSION");
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:{tag}", image.dir.display())])
        .arg(&bundle)
        .output()
        .expect("umoci runs (Debian package umoci)");
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    bundle
}

/// A container run by runc; killed and deleted when dropped.
struct Container {
    id: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Container {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The container's first process as the host sees it.
    fn pid(&self) -> u32 {
        let out = Command::new("runc").args(["state", &self.id]).output().expect("runc state");
        let state: Value = serde_json::from_slice(&out.stdout).expect("runc state is JSON");
        state["pid"].as_u64().expect("a running container has a pid") as u32
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc").args(["kill", &self.id, "TERM"]).stderr(Stdio::null()).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("runc").args(["kill", &self.id, "KILL"]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
        let _ = Command::new("runc").args(["delete", "--force", &self.id]).stderr(Stdio::null()).status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The port of the API server the platform's kubeconfig points at.
fn api_server_port(kubeconfig: &str) -> String {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig parses");
    let server = config.clusters[0].cluster.as_ref().and_then(|c| c.server.clone()).expect("a server URL");
    server.rsplit(':').next().expect("a port").trim_end_matches('/').to_owned()
}

/// The names a pod would use for the API server and Synapse; only /etc/hosts in the container knows them.
const API_SERVER_NAME: &str = "kubernetes.default.svc";
const SYNAPSE_NAME: &str = "synapse.matrix.svc.cluster.local";

#[tokio::test]
async fn the_image_runs_as_the_charts_deployment_and_a_link_becomes_ready() {
    use exo_matrix_operator::crd::SpaceRoomLink;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::Api;
    use kube::api::PostParams;

    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, "image").await;
    let release = unique("img");
    let fullname = format!("{release}-exo-matrix-operator");
    let metrics_port = free_port();
    let synapse_port = p.synapse_url().rsplit(':').next().expect("Synapse URL has a port").to_owned();
    let synapse_url = format!("http://{SYNAPSE_NAME}:{synapse_port}");
    let out = Command::new(p.helm())
        .args(["install", &release, ".", "--namespace", &ns, "--wait=false"])
        .args(["--set", "matrix.existingSecret=matrix", "--set", &format!("metrics.port={metrics_port}")])
        .args(["--set", &format!("matrix.homeserverUrl={synapse_url}")])
        .env("KUBECONFIG", p.kubeconfig())
        .current_dir(repo_root())
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm install: {}", String::from_utf8_lossy(&out.stderr));
    credentials_secret(&client, &ns, "matrix", &[("sharedSecret", p.shared_secret())]).await;

    // What the kubelet would read: the Deployment's pod template.
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns).get(&fullname).await.expect("Deployment");
    let pod = deployment.spec.template.spec.expect("pod template");
    let container = &pod.containers[0];
    let sc = container.security_context.clone().expect("container securityContext");
    let pod_sc = pod.security_context.clone().expect("pod securityContext");

    let image = image();
    let bundle = unpack(image, &unique("bundle"));
    let mut spec = read_json(&bundle.join("config.json"));

    // The image's own USER is the chart's uid, so it runs the same where nothing sets runAsUser.
    let image_user = (spec["process"]["user"]["uid"].as_i64(), spec["process"]["user"]["gid"].as_i64());
    assert_eq!(image_user, (Some(65532), Some(65532)), "uid:gid from the image's USER");
    // runAsUser/runAsGroup (container, else pod) override the image's; runAsNonRoot makes the kubelet refuse uid 0.
    let uid = sc.run_as_user.or(pod_sc.run_as_user).or(image_user.0).expect("uid");
    let gid = sc.run_as_group.or(pod_sc.run_as_group).or(image_user.1).expect("gid");
    assert_eq!(pod_sc.run_as_non_root.or(sc.run_as_non_root), Some(true));
    assert_ne!(uid, 0, "runAsNonRoot");
    spec["process"]["user"]["uid"] = json!(uid);
    spec["process"]["user"]["gid"] = json!(gid);

    // Kubernetes `args` replace the image's CMD and keep its ENTRYPOINT.
    let mut args: Vec<Value> = spec["process"]["args"].as_array().expect("args")[..1].to_vec();
    assert_eq!(args, [json!("/exo-matrix-operator")], "the image's ENTRYPOINT");
    args.extend(container.args.iter().flatten().map(|a| json!(a)));
    // Tests share one Synapse: an admin account of this test's own.
    args.push(json!(format!("--admin-username=op-{ns}")));
    spec["process"]["args"] = json!(args);
    let env = spec["process"]["env"].as_array_mut().expect("env from the image");
    for var in container.env.iter().flatten() {
        let value = match (&var.value, var.name.as_str()) {
            (Some(v), _) => v.clone(),
            (None, "POD_NAME") => format!("{fullname}-0"),
            (None, "POD_NAMESPACE") => ns.clone(),
            (None, other) => panic!("env {other} from a source this test does not provide"),
        };
        env.push(json!(format!("{}={value}", var.name)));
    }
    let api_port = api_server_port(p.kubeconfig());
    env.push(json!(format!("KUBERNETES_SERVICE_HOST={API_SERVER_NAME}")));
    env.push(json!(format!("KUBERNETES_SERVICE_PORT={api_port}")));

    // The container's securityContext, as runc applies it.
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    spec["root"]["readonly"] = json!(true);
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    spec["process"]["noNewPrivileges"] = json!(true);
    assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_owned()]));
    spec["process"]["capabilities"] =
        json!({"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []});
    spec["process"]["terminal"] = json!(false);
    // The platform listens on loopback: the container shares the host's network namespace, and /etc/hosts
    // maps the Service names a pod would use to it.
    let namespaces = spec["linux"]["namespaces"].as_array_mut().expect("namespaces");
    namespaces.retain(|n| n["type"] != "network");

    // What the kubelet mounts: /etc/hosts, /etc/resolv.conf, the ServiceAccount's token, CA and namespace.
    let files = bundle.join("mounts");
    let sa = files.join("serviceaccount");
    std::fs::create_dir_all(&sa).expect("mount dir");
    std::fs::write(
        files.join("hosts"),
        format!("127.0.0.1\tlocalhost\n127.0.0.1\t{API_SERVER_NAME}\n127.0.0.1\t{SYNAPSE_NAME}\n"),
    )
    .expect("hosts");
    // No name server answers here; every name the operator needs is in /etc/hosts, as a cluster's DNS would.
    std::fs::write(files.join("resolv.conf"), "nameserver 127.0.0.1\noptions ndots:5 attempts:1 timeout:1\n")
        .expect("resolv.conf");
    let (ok, token, err) = p.kubectl_run(&["create", "token", &fullname, "-n", &ns, "--duration=1h"], None);
    assert!(ok, "kubectl create token: {err}");
    std::fs::write(sa.join("token"), token.trim()).expect("token");
    std::fs::write(sa.join("namespace"), &ns).expect("namespace");
    let ca = Path::new(p.kubeconfig()).with_file_name("pki").join("ca.crt");
    let pem = std::fs::read(&ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    std::fs::write(sa.join("ca.crt"), pem).expect("ca.crt");
    let bind = |source: &Path, destination: &str| json!({"type": "bind", "source": source, "destination": destination, "options": ["rbind", "ro"]});
    let mounts = spec["mounts"].as_array_mut().expect("mounts");
    mounts.push(bind(&files.join("hosts"), "/etc/hosts"));
    mounts.push(bind(&files.join("resolv.conf"), "/etc/resolv.conf"));
    mounts.push(bind(&sa, "/var/run/secrets/kubernetes.io/serviceaccount"));
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec).expect("json")).expect("config.json");

    let id = unique("exo-matrix-operator");
    let log = bundle.join("container.log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log fd"))
        .stderr(file)
        .spawn()
        .expect("runc runs (Debian package runc)");
    let mut container = Container { id, child, log };

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let healthz = loop {
        if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{metrics_port}/healthz")).await {
            break resp.status().as_u16();
        }
        let exited = container.child.try_wait().expect("runc waits");
        assert!(exited.is_none() && std::time::Instant::now() < deadline, "no /healthz:\n{}", container.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(healthz, 200, "{}", container.log_text());

    // The process really runs as the chart says: uid 65532, no capabilities, read-only root.
    let pid = container.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default();
    assert_eq!(field("Uid:").split_whitespace().collect::<Vec<_>>(), [uid.to_string().as_str(); 4]);
    assert_eq!(field("Gid:").split_whitespace().collect::<Vec<_>>(), [gid.to_string().as_str(); 4]);
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapBnd:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mountinfo.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).expect("a root mount");
    assert!(root.split_whitespace().nth(5).is_some_and(|o| o.split(',').any(|o| o == "ro")), "root is ro: {root}");

    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let link = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "image"}, "spec": {"spaceGroupId": unique("image").replace('-', "_"), "create": true}}))
    .expect("link");
    links.create(&PostParams::default(), &link).await.expect("link created");
    eventually("the link Ready", Duration::from_secs(60), || async {
        let l = links.get("image").await.ok()?;
        condition(serde_json::to_value(&l.status).ok().as_ref(), "Ready").filter(|c| c.0 == "True")
    })
    .await;
    let log = container.log_text();
    assert!(!log.contains("\"level\":\"ERROR\""), "errors in the operator's log:\n{log}");
    drop(container);
    let _ = std::fs::remove_dir_all(&bundle);
}
