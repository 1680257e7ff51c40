//! The fault campaign: an intranet imported through an ExoSource from the fake
//! eXo, then faults injected one after another, ordinary changes made in eXo
//! before each, and after each the checks of `check.rs` until they hold:
//! - the operator SIGKILLed at random moments (seeded; the seed is printed),
//! - Synapse stopped and started again,
//! - the real kube-apiserver stopped and started again on the same etcd data
//!   (`tests/platform.sh restart-apiserver`),
//! - eXo answering 500s, garbage (HTML, wrong shapes, roster entries without a
//!   username), half pages and truncated bodies.
//!
//! `cargo test` runs it small (30 people, 5 spaces, 5 kills); `bench/faults.sh`
//! runs it at full size through the `FAULT_*` variables of `world::Size` and
//! keeps the figures (bench/README.md). Its own test binary: it stops the
//! platform's Synapse and API server.

#[path = "../support/mod.rs"]
mod support;

mod check;
mod phases;
mod world;

use std::time::{Duration, Instant};

use exo_matrix_operator::crd::ExoSource;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::exo::{FakeExo, PASSWORD, USERNAME};
use support::*;

use check::{Checker, Figures, NotYet};
use world::{Size, World};

/// The operator as a Deployment's pod would be: SIGKILLed by the campaign, and
/// started again whenever it is not running (as the kubelet restarts a container).
pub struct Supervisor {
    op: Option<Operator>,
    ns: String,
    args: Vec<String>,
    /// Exits the operator made by itself (not a SIGKILL of the campaign).
    pub exits: usize,
}

impl Supervisor {
    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.op = Some(Operator::start(&self.ns, "matrix", &args));
    }

    pub fn ensure_started(&mut self) {
        if self.op.is_none() {
            self.start();
        }
    }

    /// Starts it again if it exited by itself.
    pub fn ensure(&mut self) {
        if let Some(op) = self.op.as_mut()
            && op.exit_status().is_some()
        {
            eprintln!("[campaign] the operator exited by itself; log {}", op.log.display());
            self.exits += 1;
            self.start();
        }
    }

    /// SIGKILL, then a new process, as after a node or OOM kill.
    pub fn kill(&mut self) {
        if let Some(op) = self.op.as_mut() {
            let _ = std::process::Command::new("kill").args(["-KILL", &op.pid().to_string()]).status();
            while op.exit_status().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.start();
    }

    pub fn log(&self) -> String {
        self.op.as_ref().map(|o| o.log.display().to_string()).unwrap_or_default()
    }
}

/// One injected fault and what followed it.
pub struct Record {
    pub kind: &'static str,
    pub detail: String,
    /// From the end of the fault (or the kill) until every check held.
    pub recovered: Duration,
    pub figures: Figures,
}

pub struct Campaign {
    pub size: Size,
    pub world: World,
    pub checker: Checker,
    pub operator: Supervisor,
    pub records: Vec<Record>,
    pub timeout: Duration,
}

impl Campaign {
    /// Waits until every check holds; records the fault with the time since `since`.
    pub async fn converged(&mut self, kind: &'static str, detail: String, since: Instant) {
        let deadline = Instant::now() + self.timeout;
        let mut last;
        let figures = loop {
            self.operator.ensure();
            match self.checker.check(&self.world).await {
                Ok(f) => break f,
                Err(NotYet::Broken(why)) => panic!("{kind} ({detail}): {why} (seed {})", self.size.seed),
                Err(NotYet::Waiting(why)) => last = why,
            }
            assert!(
                Instant::now() < deadline,
                "{kind} ({detail}): not converged after {:?}: {last} (seed {}, operator log {})",
                self.timeout,
                self.size.seed,
                self.operator.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let recovered = since.elapsed();
        println!(
            "[campaign] {kind} ({detail}): recovered in {:.1} s: {} objects Current, {} rooms, {} members, {} kicks (all of people eXo dropped)",
            recovered.as_secs_f64(),
            figures.objects,
            figures.rooms,
            figures.members,
            figures.kicks
        );
        self.records.push(Record { kind, detail, recovered, figures });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_leave_one_room_per_space_every_member_and_nobody_wrongly_kicked() {
    let size = Size::from_env();
    println!("[campaign] seed {} (FAULT_SEED={} reproduces it), {size:?}", size.seed, size.seed);
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, "faults").await;
    shared_secret_credentials(&client, &ns).await;
    let tag = unique("f").replace('-', "");
    let exo = FakeExo::start().await;
    // Pages of 50 while the client asks 100: every roster of more than 50 spans pages.
    exo.edit(|s| s.page_cap = 50);
    let mut world = World::new(exo.clone(), size.seed, &tag);
    for _ in 0..size.users {
        world.add_user();
    }
    for _ in 0..size.spaces {
        let members = world.rng_range(size.members.0, size.members.1);
        world.add_space(members);
    }
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "exo-admin"},
        "type": "kubernetes.io/basic-auth", "stringData": {"username": USERNAME, "password": PASSWORD}});
    let (ok, _, err) = p.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(&secret.to_string()));
    assert!(ok, "{err}");
    let source = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
        "metadata": {"name": "intranet"},
        "spec": {"url": exo.url, "credentialsSecretRef": {"name": "exo-admin"},
                 "interval": format!("{}s", size.interval_secs)}}))
    .expect("source");
    Api::<ExoSource>::namespaced(client.clone(), &ns).create(&PostParams::default(), &source).await.expect("source");

    let admin = synapse_admin().await;
    let checker = Checker {
        client: client.clone(),
        ns: ns.clone(),
        admin,
        token: admin_token().await.expose().to_owned(),
        operator: format!("@op-{ns}:{}", p.server_name()),
        server: p.server_name().to_owned(),
    };
    let resync = format!("{}s", size.interval_secs);
    let args = vec!["--resync".into(), resync, "--lasting-failure".into(), format!("{}s", size.lasting_secs)];
    let operator = Supervisor { op: None, ns: ns.clone(), args, exits: 0 };
    let timeout = Duration::from_secs(std::env::var("FAULT_TIMEOUT").ok().and_then(|v| v.parse().ok()).unwrap_or(300));
    let mut campaign = Campaign { size, world, checker, operator, records: Vec::new(), timeout };

    phases::kills(&mut campaign).await;
    phases::synapse_restart(&mut campaign).await;
    phases::apiserver_restart(&mut campaign).await;
    phases::exo_faults(&mut campaign).await;
    phases::report(&campaign);
    assert_eq!(campaign.operator.exits, 0, "the operator exited by itself (log {})", campaign.operator.log());
}
