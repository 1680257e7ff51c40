//! A fresh platform per contender (tests/platform.sh in a directory of its own), and /proc readings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Platform {
    dir: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl Platform {
    /// Starts a fresh Synapse with production bcrypt cost (and a fresh kube-apiserver when `kube`).
    pub fn fresh(name: &str, kube: bool) -> anyhow::Result<Platform> {
        let dir = repo_root().join("target/bench").join(name);
        let p = Platform { dir: dir.clone(), env: BTreeMap::new() };
        p.script("down")?;
        let _ = std::fs::remove_dir_all(&dir);
        p.script(if kube { "up" } else { "synapse" })?;
        let env = parse_env(&dir.join("env"))?;
        Ok(Platform { env, ..p })
    }

    fn script(&self, cmd: &str) -> anyhow::Result<()> {
        let status = Command::new(repo_root().join("tests/platform.sh"))
            .arg(cmd)
            .env("EXO_MATRIX_PLATFORM_DIR", &self.dir)
            .env("EXO_MATRIX_BCRYPT_ROUNDS", "default")
            .status()
            .context("running tests/platform.sh")?;
        if !status.success() {
            bail!("tests/platform.sh {cmd} failed for {}", self.dir.display());
        }
        Ok(())
    }

    pub fn var(&self, name: &str) -> anyhow::Result<&str> {
        self.env.get(name).map(String::as_str).with_context(|| format!("{name} missing from the platform env"))
    }

    pub fn synapse_pid(&self) -> anyhow::Result<u32> {
        Ok(self.var("SYNAPSE_PID")?.parse()?)
    }

    /// The control plane (kube-apiserver with its etcd, one process), when this platform has one.
    pub fn control_plane_pid(&self) -> anyhow::Result<u32> {
        let path = self.dir.join("control-plane.pid");
        Ok(std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?.trim().parse()?)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn down(&self) {
        if let Err(e) = self.script("down") {
            eprintln!("bench: {e:#}");
        }
    }
}

fn parse_env(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// CPU seconds (user + system, reaped children included) of a process, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.iter().skip(11).take(4).filter_map(|f| f.parse::<u64>().ok()).sum();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; getconf says otherwise if not.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident set size (VmHWM) of a process in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// Resident set size now (VmRSS) of a process in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: u32, field: &str) -> f64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return f64::NAN };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
