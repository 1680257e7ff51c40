//! Synapse's rate limits: against a second Synapse started by this test with its
//! rate limits on (room events limited to 1/s after a burst of 2) and the
//! operator's account not exempted, every `M_LIMIT_EXCEEDED` is waited out for
//! the `retry_after_ms` Synapse asked, and the rooms still come out right.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec, SpaceRoomLink};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

const SERVER: &str = "ratelimited.test";
const SECRET: &str = "rate-limited-shared-secret";

/// A Synapse of its own: own directory, own port, rate limits as configured below.
struct RateLimitedSynapse {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl RateLimitedSynapse {
    async fn start() -> Self {
        let p = platform();
        let python = p.var("SYNAPSE_PYTHON").to_owned();
        let dir = repo_root().join("target/platform").join(unique("synapse-rl"));
        std::fs::create_dir_all(&dir).expect("synapse dir");
        let d = dir.to_string_lossy().into_owned();
        let out = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--generate-config", "-H", SERVER, "--report-stats", "no"])
            .args(["-c", &format!("{d}/homeserver.yaml"), "--config-directory", &d, "--data-directory", &d])
            .current_dir(&dir)
            .output()
            .expect("synapse --generate-config runs");
        assert!(out.status.success(), "generate-config: {}", String::from_utf8_lossy(&out.stderr));
        let log_config = dir.join(format!("{SERVER}.log.config"));
        let text = std::fs::read_to_string(&log_config).expect("log config");
        // Same edit as tests/platform.sh: the generated log config writes to the current directory.
        let text: String = text
            .lines()
            .map(|l| match l.split_once("filename:") {
                Some((indent, _)) => format!("{indent}filename: {d}/homeserver.log"),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&log_config, text).expect("log config written");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        // Synapse's default limits, except room events: 1/s after a burst of 2, so a few rooms hit it.
        let overlay = format!(
            "listeners:\n  - {{port: {port}, bind_addresses: ['127.0.0.1'], type: http, tls: false, \
             resources: [{{names: [client], compress: false}}]}}\n\
             registration_shared_secret: \"{SECRET}\"\nenable_registration: false\ntrusted_key_servers: []\n\
             suppress_key_server_warning: true\nreport_stats: false\npresence: {{enabled: false}}\nbcrypt_rounds: 4\n\
             rc_message: {{per_second: 1, burst_count: 2}}\n"
        );
        std::fs::write(dir.join("test.yaml"), overlay).expect("overlay");
        let log = std::fs::File::create(dir.join("stdout.log")).expect("log");
        let child = Command::new(&python)
            .args([
                "-m",
                "synapse.app.homeserver",
                "-c",
                &format!("{d}/homeserver.yaml"),
                "-c",
                &format!("{d}/test.yaml"),
            ])
            .current_dir(&dir)
            .stdout(log.try_clone().expect("fd"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("synapse starts");
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}/health");
        eventually("the rate-limited Synapse answers", Duration::from_secs(90), || async {
            reqwest::get(&health).await.ok()?.status().is_success().then_some(())
        })
        .await;
        RateLimitedSynapse { child, url, dir }
    }
}

impl Drop for RateLimitedSynapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// (timestamp, line) of the operator's log lines that contain `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<(jiff::Timestamp, &'a str)> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| Some((l.split_whitespace().next()?.parse().ok()?, l)))
        .collect()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}=")))
}

#[tokio::test]
async fn rate_limited_calls_wait_as_long_as_synapse_asks_and_the_rooms_come_out_right() {
    let synapse = RateLimitedSynapse::start().await;
    let client = kube_client().await;
    let ns = namespace(&client, "ratelimit").await;
    credentials_secret(&client, &ns, "matrix", &[("sharedSecret", SECRET), ("serverUrl", &synapse.url)]).await;
    let op = Operator::start(&ns, "matrix", &["--concurrency", "1", "--join-concurrency", "1"]);
    eventually("the operator connected", Duration::from_secs(60), || async {
        op.log_text().contains("connected to Synapse").then_some(())
    })
    .await;

    // The operator exempts its own account; take the exemption away, as an admin of that homeserver would.
    let admin = exo_matrix_operator::synapse::Synapse::new(&synapse.url).expect("url");
    let reg = exo_matrix_operator::synapse::Registration {
        username: "rladmin".into(),
        password: exo_matrix_operator::secret::SecretString::new("rl-admin-password"),
        admin: true,
        displayname: None,
    };
    let token = admin
        .register_with_shared_secret(&exo_matrix_operator::secret::SecretString::new(SECRET), &reg)
        .await
        .expect("admin registered")
        .access_token
        .expect("token");
    let operator = format!("@op-{ns}:{SERVER}");
    let resp = reqwest::Client::new()
        .delete(format!(
            "{}/_synapse/admin/v1/users/{}/override_ratelimit",
            synapse.url,
            operator.replace('@', "%40").replace(':', "%3A")
        ))
        .bearer_auth(token.expose())
        .send()
        .await
        .expect("override removed");
    assert!(resp.status().is_success(), "{}", resp.status());

    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let people = ["ann", "bob", "cat"];
    for u in people {
        let spec: MatrixUserSpec = serde_json::from_value(json!({"username": u})).expect("spec");
        users.create(&PostParams::default(), &MatrixUser::new(u, spec)).await.expect("user");
    }
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    for i in 0..3 {
        let link = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
            "metadata": {"name": format!("space{i}")},
            "spec": {"spaceGroupId": format!("space{i}"), "create": true, "displayName": format!("Space {i}"),
                     "description": "A <b>team</b>", "members": people, "managers": ["ann"]}}))
        .expect("link");
        links.create(&PostParams::default(), &link).await.expect("link created");
    }
    eventually("every room made with its members", Duration::from_secs(180), || async {
        let list = links.list(&Default::default()).await.ok()?.items;
        list.iter().all(|l| l.status.as_ref().and_then(|s| s.joined_members) == Some(3)).then_some(())
    })
    .await;

    // Renaming every space: state events, which Synapse rate-limits (createRoom carried the first ones).
    for i in 0..3 {
        let patch = json!({"spec": {"displayName": format!("Renamed {i}"), "description": format!("Team <i>{i}</i>")}});
        links.patch(&format!("space{i}"), &PatchParams::default(), &Patch::Merge(&patch)).await.expect("renamed");
    }
    let admin = admin.with_token(token.clone());
    eventually("every room renamed in Synapse", Duration::from_secs(180), || async {
        for l in links.list(&Default::default()).await.ok()?.items {
            let room = l.status?.room_id?;
            let state = admin.admin_room_state(&support::rid(&room)).await.ok()?;
            let name = state.iter().find(|e| e.kind == "m.room.name")?.content["name"].as_str()?.to_owned();
            if !name.starts_with("Renamed") {
                return None;
            }
        }
        Some(())
    })
    .await;

    let log = op.log_text();
    let waits = lines_with(&log, "rate limited by Synapse, waiting");
    assert!(!waits.is_empty(), "Synapse never rate-limited the operator; the test proves nothing:\n{log}");
    let writes = lines_with(&log, "synapse write");
    let mut shortest_gap = i64::MAX;
    for (at, line) in &waits {
        let wait: i64 = field(line, "wait_ms").and_then(|w| w.parse().ok()).expect("wait_ms logged");
        assert!(wait > 0, "{line}");
        let path = field(line, "path").expect("path logged");
        // The retry of that call: the next write to the same path.
        let (retry_at, _) = writes
            .iter()
            .find(|(t, l)| t > at && field(l, "path") == Some(path))
            .unwrap_or_else(|| panic!("no retry after {line}"));
        let gap = retry_at.duration_since(*at).as_millis() as i64;
        assert!(gap + 5 >= wait, "retried after {gap} ms although Synapse asked for {wait} ms: {line}");
        shortest_gap = shortest_gap.min(gap - wait);
    }
    println!(
        "rate limits: {} M_LIMIT_EXCEEDED answers waited out (each retry at least retry_after_ms later; \
         slack {shortest_gap} ms at the least), 3 rooms x 3 members made",
        waits.len()
    );
}
