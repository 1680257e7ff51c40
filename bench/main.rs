//! The benchmark: the operator, a minimal client and the original addon's call pattern converge the same
//! generated scenario, each on a fresh Synapse with production bcrypt cost, in one run; ratios printed.
//! Run it through `bench/run.sh` (see bench/README.md). Not part of `cargo test`.

mod client;
mod operator;
mod platform;
mod scenario;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;

use client::Client;
use platform::{Platform, cpu_seconds};
use scenario::Scenario;

#[derive(Parser, Debug)]
#[command(about = "exo-matrix-operator benchmark (see bench/README.md)")]
struct Args {
    /// b50 (500 users, 50 rooms × 40) or b10k (10,000 users, 1,000 rooms × 10).
    #[arg(long, default_value = "b50")]
    scenario: String,
    /// Shrinks users and rooms (not room size), e.g. 0.1 for a quick run.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Which contenders, in this order: operator, operator-oej (the operator with --one-event-joins),
    /// minimal, addon.
    #[arg(long, value_delimiter = ',', default_value = "operator,minimal,addon")]
    contenders: Vec<String>,
    /// More flags for every operator contender, space-separated (e.g. "--join-concurrency 8").
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    operator_flags: String,
    /// The operator's resync during the restart and quiet period.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    quiet_resync: Duration,
    /// Resync periods the quiet period lasts.
    #[arg(long, default_value_t = 2)]
    quiet_passes: u32,
    /// Links that get one more member, one at a time, after the quiet period (join latency).
    #[arg(long, default_value_t = 20)]
    join_samples: usize,
    /// Longest wait for one contender to converge.
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The Kubernetes side only: every MatrixUser `enabled: false` and every link `suspend: true`, so Synapse has
    /// next to nothing to do; converged = every object Ready. For the operator's memory and restart cost at
    /// scale without the hours of Synapse work (no join latency, no end-state check).
    #[arg(long)]
    idle: bool,
    /// Where the figures go as JSON (default target/bench/<scenario>.json).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// One contender's convergence.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Row {
    contender: String,
    seconds: f64,
    calls: u64,
    writes: u64,
    synapse_cpu: f64,
    own_cpu: Option<f64>,
    peak_rss_mib: Option<f64>,
    problems: Vec<String>,
    by_endpoint: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut s = Scenario::named(&args.scenario, args.scale).context("--scenario is b50 or b10k")?;
    if args.idle {
        s.label.push_str("-idle");
    }
    println!(
        "scenario {}: {} users with email, {} rooms, {} memberships",
        s.label,
        s.users,
        s.rooms.len(),
        s.memberships()
    );
    let mut rows = Vec::new();
    let mut extra = serde_json::Map::new();
    for who in &args.contenders {
        eprintln!("bench: {who}: starting a fresh platform");
        let row = match who.as_str() {
            "operator" | "operator-oej" => run_operator(&s, &args, who, &mut extra).await,
            "minimal" | "addon" => run_client(&s, who).await,
            other => anyhow::bail!("unknown contender {other}"),
        }
        .with_context(|| format!("contender {who}"))?;
        print_row(&row);
        rows.push(row);
    }
    print_table(&rows);
    let path =
        args.json.clone().unwrap_or_else(|| platform::repo_root().join(format!("target/bench/{}.json", s.label)));
    std::fs::create_dir_all(path.parent().context("json path")?)?;
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({"scenario": s.label, "rows": rows, "operator": extra}))?,
    )?;
    println!("figures written to {}", path.display());
    Ok(())
}

async fn run_client(s: &Scenario, who: &str) -> anyhow::Result<Row> {
    let p = Platform::fresh(who, false)?;
    let result = async {
        let pid = p.synapse_pid()?;
        let url = p.var("SYNAPSE_URL")?;
        let cpu0 = cpu_seconds(pid);
        let own0 = cpu_seconds(std::process::id());
        let started = Instant::now();
        let c = Client::admin(url, p.var("SYNAPSE_SHARED_SECRET")?, "benchclient").await?;
        let rooms = if who == "minimal" { client::minimal(&c, s).await? } else { client::addon(&c, s).await? };
        let seconds = started.elapsed().as_secs_f64();
        let (synapse_cpu, own_cpu) = (cpu_seconds(pid) - cpu0, cpu_seconds(std::process::id()) - own0);
        let calls = c.calls();
        let problems = client::verify(&c, s, &rooms, 50).await?;
        Ok(row(who, seconds, &flatten(&calls), synapse_cpu, Some(own_cpu), None, problems))
    }
    .await;
    p.down();
    result
}

fn flatten(calls: &client::Calls) -> BTreeMap<String, u64> {
    calls.iter().map(|((m, e), n)| (format!("{m} {e}"), *n)).collect()
}

fn row(
    who: &str,
    seconds: f64,
    by_endpoint: &BTreeMap<String, u64>,
    synapse_cpu: f64,
    own_cpu: Option<f64>,
    peak_rss_mib: Option<f64>,
    problems: Vec<String>,
) -> Row {
    Row {
        contender: who.to_owned(),
        seconds,
        calls: by_endpoint.values().sum(),
        writes: by_endpoint.iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, v)| v).sum(),
        synapse_cpu,
        own_cpu,
        peak_rss_mib,
        problems,
        by_endpoint: by_endpoint.clone(),
    }
}

async fn run_operator(
    s: &Scenario,
    args: &Args,
    who: &str,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Row> {
    let mut flags: Vec<String> = args.operator_flags.split_whitespace().map(str::to_owned).collect();
    if who == "operator-oej" {
        flags.push("--one-event-joins".into());
    }
    let p = Platform::fresh(who, true)?;
    let result = async {
        let kube = operator::kube(&p).await?;
        let applied = Instant::now();
        operator::apply_scenario(&p, &kube, s, args.idle).await?;
        eprintln!("bench: operator: {} objects applied in {:.1}s", s.objects(), applied.elapsed().as_secs_f64());
        let pid = p.synapse_pid()?;
        let cpu0 = cpu_seconds(pid);
        let (control_plane, writes0) = (p.control_plane_pid()?, kube_writes_by_kind(&kube).await?);
        let control_plane_cpu0 = cpu_seconds(control_plane);
        let started = Instant::now();
        let op = operator::Operator::start(&p, "1h", "operator-converge.log", &flags)?;
        let memory = operator::sample_memory(op.pid(), "converge", Duration::from_secs(5));
        let rooms = match args.idle {
            true => operator::wait_ready(&kube, s, args.timeout).await.map(|()| Vec::new()),
            false => operator::wait_converged(&kube, s, args.timeout).await,
        };
        let usage = operator::usage(started, pid, cpu0, &op, 0.0);
        // What converging cost the API server (with its etcd): a platform team pays for it too.
        let control_plane_cpu = cpu_seconds(control_plane) - control_plane_cpu0;
        let writes = diff(&kube_writes_by_kind(&kube).await?, &writes0);
        println!(
            "{who}: the API server (with etcd) used {control_plane_cpu:.1}s CPU while converging and served {} writes: {writes:?}",
            writes.values().sum::<u64>()
        );
        extra.insert(
            format!("{who}_api_server"),
            json!({"cpu": control_plane_cpu, "writes": writes.values().sum::<u64>(), "writes_by_kind": writes}),
        );
        extra.insert(format!("{who}_memory_mib"), json!(memory.finish()));
        let m = op.scrape().await?;
        let rooms = rooms?;
        let by_endpoint = operator::synapse_calls(&m);
        op.stop();
        let passes = operator::passes(&m, &by_endpoint, s);
        println!("operator passes while converging: {passes}");
        extra.insert("converge_passes".into(), json!(passes));
        let checker = Client::admin(p.var("SYNAPSE_URL")?, p.var("SYNAPSE_SHARED_SECRET")?, "benchchecker").await?;
        let problems = if args.idle { Vec::new() } else { client::verify(&checker, s, &rooms, 50).await? };
        let r = row(
            who,
            usage.seconds,
            &by_endpoint,
            usage.synapse_cpu,
            Some(usage.operator_cpu),
            Some(usage.peak_rss_mib),
            problems,
        );
        // The restart and quiet period do not depend on how rooms were first populated: measured once.
        if !extra.contains_key("quiet") {
            quiet(&p, &kube, s, args, &flags, extra).await?;
        }
        Ok(r)
    }
    .await;
    p.down();
    result
}

/// A restart over the converged scenario, then a quiet period: Synapse calls and Kubernetes writes.
async fn quiet(
    p: &Platform,
    kube: &kube::Client,
    s: &Scenario,
    args: &Args,
    flags: &[String],
    extra: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let resync = args.quiet_resync;
    let pid = p.synapse_pid()?;
    let (cpu0, writes0) = (cpu_seconds(pid), kube_writes(kube).await?);
    let started = Instant::now();
    let op =
        operator::Operator::start(p, &humantime::format_duration(resync).to_string(), "operator-quiet.log", flags)?;
    let memory = operator::sample_memory(op.pid(), "restart", Duration::from_secs(1));
    let calm = Duration::from_secs(3);
    let m0 = operator::wait_settled(&op, 0.0, s.objects(), calm).await?;
    let restart = operator::usage(started, pid, cpu0, &op, 0.0);
    extra.insert("restart_memory_mib".into(), json!(memory.finish()));
    let restart_s = restart.seconds - calm.as_secs_f64();
    let restart_passes = operator::passes(&m0, &operator::synapse_calls(&m0), s);
    println!("operator passes during the restart: {restart_passes}");
    extra.insert("restart_passes".into(), json!(restart_passes));
    let (reads0, synapse_writes0) = split(&operator::synapse_calls(&m0));
    let writes1 = kube_writes(kube).await?;
    println!(
        "restart over {} converged objects: settled in {restart_s:.1}s, {reads0} Synapse reads ({:.2}/object), {synapse_writes0} Synapse writes, {} Kubernetes writes, operator CPU {:.1}s, peak RSS {:.0} MiB",
        s.objects(),
        reads0 as f64 / s.objects() as f64,
        writes1 - writes0,
        restart.operator_cpu,
        restart.peak_rss_mib
    );
    let (op_cpu1, window_start) = (cpu_seconds(op.pid()), Instant::now());
    tokio::time::sleep(resync * args.quiet_passes).await;
    let m1 = op.scrape().await?;
    let writes2 = kube_writes(kube).await?;
    let window = window_start.elapsed().as_secs_f64();
    let op_cpu = cpu_seconds(op.pid()) - op_cpu1;
    // With everything converged and watched: one member added to one link, how soon joined.
    let samples = if args.idle { 0 } else { args.join_samples };
    let (latencies, added) = operator::join_latencies(kube, s, samples, Duration::from_secs(120)).await?;
    let wrong = joined_in_synapse(p, kube, s, &added).await?;
    op.stop();
    let (p50, p95) = (operator::quantile(&latencies, 0.5), operator::quantile(&latencies, 0.95));
    let max = latencies.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "one member added to one link ({} samples, one at a time): joined p50 {p50:.2}s, p95 {p95:.2}s, max {max:.2}s; {}",
        latencies.len(),
        if wrong.is_empty() { "checked in Synapse: OK".to_owned() } else { format!("WRONG IN SYNAPSE: {wrong:?}") }
    );
    extra.insert(
        "member_added".into(),
        json!({"samples": latencies.len(), "p50": p50, "p95": p95, "max": max, "seconds": latencies,
               "problems": wrong}),
    );
    let (reads1, synapse_writes1) = split(&operator::synapse_calls(&m1));
    let passes = window / resync.as_secs_f64();
    let per = |n: u64| n as f64 / s.objects() as f64 / passes;
    let (reads, swrites, kwrites) = (reads1 - reads0, synapse_writes1 - synapse_writes0, writes2 - writes1);
    println!(
        "quiet period ({:.0}s at --resync {}, {passes:.1} passes over {} objects): {reads} Synapse reads ({:.2}/object/pass), {swrites} Synapse writes ({:.2}/object/pass), {kwrites} Kubernetes writes ({:.2}/object/pass), operator CPU {op_cpu:.1}s",
        window,
        humantime::format_duration(resync),
        s.objects(),
        per(reads),
        per(swrites),
        per(kwrites)
    );
    extra.insert(
        "restart".into(),
        json!({"seconds": restart_s, "synapse_reads": reads0, "synapse_writes": synapse_writes0,
               "kube_writes": writes1 - writes0, "operator_cpu": restart.operator_cpu, "peak_rss_mib": restart.peak_rss_mib}),
    );
    extra.insert(
        "quiet".into(),
        json!({"seconds": window, "passes": passes, "objects": s.objects(), "synapse_reads": reads,
               "synapse_writes": swrites, "kube_writes": kwrites, "operator_cpu": op_cpu,
               "reads_per_object_pass": per(reads), "synapse_writes_per_object_pass": per(swrites),
               "kube_writes_per_object_pass": per(kwrites),
               "calls_by_endpoint": diff(&operator::synapse_calls(&m1), &operator::synapse_calls(&m0))}),
    );
    Ok(())
}

/// The rooms that got a member in `join_latencies`, checked in Synapse itself.
async fn joined_in_synapse(
    p: &Platform,
    kube: &kube::Client,
    s: &Scenario,
    added: &[(usize, usize)],
) -> anyhow::Result<Vec<String>> {
    let checker = Client::admin(p.var("SYNAPSE_URL")?, p.var("SYNAPSE_SHARED_SECRET")?, "benchjoins").await?;
    let links: kube::Api<exo_matrix_operator::crd::SpaceRoomLink> = kube::Api::namespaced(kube.clone(), operator::NS);
    let mut wrong = Vec::new();
    for &(r, newcomer) in added {
        let room = &s.rooms[r];
        let link = links.get(&room.id.replace('_', "-")).await?;
        let id = link.status.and_then(|st| st.room_id).context("a room id")?;
        let mut members: std::collections::BTreeSet<String> =
            room.members.iter().map(|m| checker.user_id(*m)).collect();
        members.insert(checker.user_id(newcomer));
        let managers = room.managers.iter().map(|m| checker.user_id(*m)).collect();
        wrong.extend(checker.verify_room(&id, &members, &managers, 50).await?);
    }
    Ok(wrong)
}

fn split(calls: &BTreeMap<String, u64>) -> (u64, u64) {
    let reads = calls.iter().filter(|(k, _)| k.starts_with("GET ")).map(|(_, v)| v).sum();
    (reads, calls.values().sum::<u64>() - reads)
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).filter(|(_, v)| *v > 0).collect()
}

/// Writes the API server served to MatrixUsers, SpaceRoomLinks and Events (its own request counter).
async fn kube_writes(kube: &kube::Client) -> anyhow::Result<u64> {
    Ok(kube_writes_by_kind(kube).await?.values().sum())
}

/// Those writes by resource, subresource and verb (e.g. "matrixusers/status PATCH").
async fn kube_writes_by_kind(kube: &kube::Client) -> anyhow::Result<BTreeMap<String, u64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = kube.request_text(req).await?;
    let mut writes = BTreeMap::new();
    for ((name, labels), count) in operator::parse_metrics(&text) {
        let (Some(verb), Some(resource)) = (operator::label(&labels, "verb"), operator::label(&labels, "resource"))
        else {
            continue;
        };
        let write = ["POST", "PUT", "PATCH", "APPLY", "DELETE"].contains(&verb);
        if name != "apiserver_request_total"
            || !write
            || !["matrixusers", "spaceroomlinks", "events"].contains(&resource)
        {
            continue;
        }
        let sub = operator::label(&labels, "subresource").filter(|s| !s.is_empty()).map(|s| format!("/{s}"));
        *writes.entry(format!("{resource}{} {verb}", sub.unwrap_or_default())).or_insert(0) += count as u64;
    }
    Ok(writes)
}

fn print_row(r: &Row) {
    println!(
        "{}: converged in {:.1}s, {} Synapse calls ({} writes), Synapse CPU {:.1}s{}{}; {}",
        r.contender,
        r.seconds,
        r.calls,
        r.writes,
        r.synapse_cpu,
        r.own_cpu.map(|c| format!(", own CPU {c:.1}s")).unwrap_or_default(),
        r.peak_rss_mib.map(|m| format!(", peak RSS {m:.0} MiB")).unwrap_or_default(),
        if r.problems.is_empty() {
            "end state checked in Synapse: OK".to_owned()
        } else {
            format!("END STATE WRONG: {:?}", &r.problems[..r.problems.len().min(5)])
        }
    );
    for (endpoint, n) in &r.by_endpoint {
        println!("    {n:>7}  {endpoint}");
    }
}

fn print_table(rows: &[Row]) {
    println!("\n| contender | converged | Synapse calls (writes) | Synapse CPU | own CPU | peak RSS | end state |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} s | {} ({}) | {:.1} s | {} | {} | {} |",
            r.contender,
            r.seconds,
            r.calls,
            r.writes,
            r.synapse_cpu,
            r.own_cpu.map(|c| format!("{c:.1} s")).unwrap_or("-".into()),
            r.peak_rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or("-".into()),
            if r.problems.is_empty() { "OK".to_owned() } else { format!("{} problems", r.problems.len()) }
        );
    }
    let find = |n: &str| rows.iter().find(|r| r.contender == n);
    for op in ["operator", "operator-oej"].into_iter().filter_map(find) {
        for other in ["minimal", "addon"].into_iter().filter_map(find) {
            println!(
                "{} / {}: time {:.2}×, calls {:.2}×, Synapse CPU {:.2}×",
                op.contender,
                other.contender,
                op.seconds / other.seconds,
                op.calls as f64 / other.calls as f64,
                op.synapse_cpu / other.synapse_cpu
            );
        }
    }
}
