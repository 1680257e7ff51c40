//! Membership follows intent, never health, through Synapse outages: nobody is
//! removed or demoted when Synapse stops and starts again, nor when the
//! operator restarts while Synapse is down. Its own test binary (it stops the
//! shared Synapse); the tests take turns.

mod support;

use std::time::Duration;

use serde_json::json;
use support::team::{PEOPLE, Team};
use support::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start(team: &Team) -> Operator {
    Operator::start(&team.ns, "matrix", &["--resync", "2s"])
}

/// Synapse stopped until this is dropped (also when a test fails).
struct SynapseDown;

impl SynapseDown {
    fn now() -> SynapseDown {
        let pid = std::fs::read_to_string(repo_root().join("target/platform/synapse.pid")).expect("pid file");
        let pid = pid.trim().to_owned();
        assert!(std::process::Command::new("kill").arg(&pid).status().expect("kill").success());
        // Wait until it is really gone, so `up` starts it again.
        for _ in 0..200 {
            let alive = std::process::Command::new("kill")
                .args(["-0", &pid])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        SynapseDown
    }
}

impl Drop for SynapseDown {
    fn drop(&mut self) {
        let up = std::process::Command::new(repo_root().join("tests/platform.sh")).arg("up").status();
        assert!(up.is_ok_and(|s| s.success()), "Synapse restarted");
    }
}

#[tokio::test]
async fn synapse_stopped_and_started_removes_nobody() {
    let _turn = SERIAL.lock().await;
    let mut team = Team::new("mo-restart", platform().synapse_url()).await;
    let op = start(&team);
    team.populate(json!({})).await;
    let before = team.snapshot().await;

    let down = SynapseDown::now();
    for short in PEOPLE {
        let (reason, message) = team.user_ready(short, "False").await;
        assert_eq!(reason, "SynapseUnavailable", "{message}");
    }
    team.ids_kept().await;
    tokio::time::sleep(Duration::from_secs(4)).await; // links fail too, for a few passes
    drop(down);

    team.unchanged_for(&before, Duration::from_secs(10), "right after Synapse came back").await;
    for short in PEOPLE {
        team.user_ready(short, "True").await;
    }
    team.unchanged_for(&before, Duration::from_secs(4), "once everything is Ready").await;
    assert!(!op.log_text().contains("panicked"));
}

#[tokio::test]
async fn the_operator_restarted_during_an_outage_removes_nobody() {
    let _turn = SERIAL.lock().await;
    let mut team = Team::new("mo-oprestart", platform().synapse_url()).await;
    let first = start(&team);
    team.populate(json!({})).await;
    let before = team.snapshot().await;

    let down = SynapseDown::now();
    for short in PEOPLE {
        team.user_ready(short, "False").await;
    }
    drop(first);
    // A new operator starts while Synapse is still down: every account it sees is failing.
    let second = start(&team);
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(down);

    team.unchanged_for(&before, Duration::from_secs(10), "right after Synapse came back").await;
    for short in PEOPLE {
        team.user_ready(short, "True").await;
    }
    team.unchanged_for(&before, Duration::from_secs(4), "once everything is Ready").await;
    team.ids_kept().await;
    assert!(!second.log_text().contains("panicked"));
}
