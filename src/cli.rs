//! Command-line interface: parsing and the small subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::crd;
use crate::duration::parse_duration;

#[derive(Parser, Debug)]
#[command(
    name = "exo-matrix-operator",
    version,
    about = "Gives every eXo space its own Matrix room and keeps Synapse in sync"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator: watch SpaceRoomLink and MatrixUser objects and keep Synapse in sync.
    Run(Box<RunArgs>),
    /// Write the CustomResourceDefinitions generated from the Rust types.
    Crdgen(CrdgenArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Base URL of Synapse's client API, e.g. http://synapse:8008. When absent,
    /// `serverUrl` (or `exo.matrix.server.url`) of the credentials Secret is used.
    #[arg(long, env = "MATRIX_SERVER_URL")]
    pub homeserver_url: Option<String>,

    /// The Matrix server name (the part after `:` in user ids). Discovered from
    /// /_matrix/client/v3/account/whoami when absent.
    #[arg(long, env = "MATRIX_SERVER_NAME")]
    pub server_name: Option<String>,

    /// NAMESPACE/NAME of the Secret holding `accessToken` and/or `sharedSecret`
    /// (the addon's `exo.matrix.access_token` / `exo.matrix.shared_secret_registration` work too).
    /// Changes are picked up without a restart.
    #[arg(long, env = "EXO_MATRIX_CREDENTIALS_SECRET", value_parser = parse_secret_ref)]
    pub credentials_secret: (String, String),

    /// Watch this namespace only; all namespaces when absent.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// How often every object is re-read from Synapse and drift put back (e.g. 30s, 10m, 1h).
    #[arg(long, env = "EXO_MATRIX_RESYNC", default_value = "10m", value_parser = parse_duration)]
    pub resync: std::time::Duration,

    /// How often each account's email addresses and email pushers are read (the bulk account list read every
    /// resync shows everything else); spread over the period, and always after a spec change or a failure.
    #[arg(long, env = "EXO_MATRIX_ACCOUNT_CHECK", default_value = "6h", value_parser = parse_duration)]
    pub account_check: std::time::Duration,

    /// An object failing for this long says since when in its Ready message ("not Ready since <t>"), so an
    /// outage reads differently from a blip and alerts can match it.
    #[arg(long, env = "EXO_MATRIX_LASTING_FAILURE", default_value = "60s", value_parser = parse_duration)]
    pub lasting_failure: std::time::Duration,

    /// How accounts are created: through the admin API (no password, fast) or by
    /// shared-secret registration (the original addon's way; bcrypt-bound).
    #[arg(long, value_enum, default_value = "admin-api")]
    pub user_creation: crate::controller::UserCreation,

    /// Objects reconciled at once. Synapse is one busy Python thread: beyond 4 buys little.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,

    /// MatrixUser passes at once. A new account's pass spends most of its time on Kubernetes writes (finalizer,
    /// Event, status) around one Synapse call: with 4 at once Synapse sat idle a third of the time while B10k's
    /// 10,000 accounts were made.
    #[arg(long, default_value_t = 8)]
    pub user_concurrency: u16,

    /// Localpart of the admin account the operator registers for itself when the
    /// credentials Secret has no access token.
    #[arg(long, default_value = "exo-matrix-operator")]
    pub admin_username: String,

    /// Room aliases are `#<prefix><spaceGroupId>:<server>`; the alias is what makes room creation idempotent.
    #[arg(long, default_value = "space_")]
    pub alias_prefix: String,

    /// One pass never kicks more than this many members of a room …
    #[arg(long, default_value_t = 5)]
    pub max_kicks: usize,

    /// … unless they are at most this share of the room's managed members (0..1).
    #[arg(long, default_value_t = 0.5)]
    pub max_kick_share: f64,

    /// A link waits this long after the last change that concerns it (its spec, a listed person's account)
    /// before its pass, so people whose accounts appear one after the other are joined in one pass (one read
    /// of the room state) instead of one pass each. It adds as much to the time a change takes; 0s turns it off.
    #[arg(long, env = "EXO_MATRIX_LINK_DEBOUNCE", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub link_debounce: std::time::Duration,

    /// A MatrixSpace follows changes of its links and their people's accounts at most this late, in one pass per
    /// this period however many come (the convergence of 1,000 links is otherwise thousands of space passes,
    /// each reading the space's whole state).
    #[arg(long, env = "EXO_MATRIX_SPACE_DEBOUNCE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub space_debounce: std::time::Duration,

    /// How often each room of a MatrixSpace has its `m.space.parent` read though the space lists it as a child
    /// (the space's own state shows the rest; a room's admins could remove it by hand); spread over the period.
    #[arg(long, env = "EXO_MATRIX_SPACE_PARENT_CHECK", default_value = "6h", value_parser = parse_duration)]
    pub space_parent_check: std::time::Duration,

    /// Joins, invites and kicks into one room run at most this many at a time.
    #[arg(long, default_value_t = 4)]
    pub join_concurrency: usize,

    /// A new room's first members cost one Synapse event each instead of two (invite + join): the room is
    /// created without its alias, its id kept out of the link's status, opened (`public`) while they are
    /// joined, then closed, cleared of anyone unlisted, and only then published. See the README's trade-off.
    #[arg(long, env = "EXO_MATRIX_ONE_EVENT_JOINS")]
    pub one_event_joins: bool,

    /// Serve /healthz, /readyz and /metrics on this address (e.g. 0.0.0.0:8080); off when absent.
    #[arg(long, env = "EXO_MATRIX_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Elect one active replica through a coordination.k8s.io Lease.
    #[arg(long, env = "EXO_MATRIX_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the Lease; the credentials Secret's namespace when absent.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(long, default_value = "exo-matrix-operator")]
    pub lease_name: String,

    /// A standby takes over this long after the leader stopped renewing.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: std::time::Duration,

    /// The leader stops writing (and exits) when it could not renew the Lease for this long;
    /// must be shorter than --lease-duration, so it stops before a standby may take over.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: std::time::Duration,

    /// This replica's name in the Lease; the pod name, else host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Serve the original addon's `/rest/matrix` endpoints on this address (e.g. 0.0.0.0:8090).
    #[arg(long, env = "EXO_MATRIX_ADDON_API_ADDR")]
    pub addon_api_addr: Option<std::net::SocketAddr>,

    /// NAMESPACE/NAME of the Secret whose key `token` callers must send as a bearer token;
    /// without it the addon endpoints stay off. The Secret is watched: a rotated token applies at once.
    #[arg(long, env = "EXO_MATRIX_ADDON_API_TOKEN_SECRET", value_parser = parse_secret_ref)]
    pub addon_api_token_secret: Option<(String, String)>,

    /// Namespace where the addon endpoints create and look up links; the credentials Secret's when absent.
    #[arg(long)]
    pub addon_api_namespace: Option<String>,

    /// An ExoSource does nothing when eXo suddenly lists more than this share fewer
    /// spaces or users than at its last good sync (0..1).
    #[arg(long, default_value_t = 0.5)]
    pub exo_max_drop: f64,

    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// PEM bundle of extra CA certificates trusted (besides the built-in roots) by every outgoing HTTPS client:
    /// Synapse, MAS, eXo and avatar downloads. For servers behind TLS signed by an internal CA.
    #[arg(long, env = "EXO_MATRIX_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_secret_ref(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
    }
}

impl RunArgs {
    pub fn config(&self) -> crate::run::RunConfig {
        crate::run::RunConfig {
            session: crate::session::SessionConfig {
                secret_namespace: self.credentials_secret.0.clone(),
                secret_name: self.credentials_secret.1.clone(),
                homeserver_url: self.homeserver_url.clone(),
                server_name: self.server_name.clone(),
                admin_localpart: self.admin_username.clone(),
            },
            namespace: self.namespace.clone(),
            metrics_addr: self.metrics_addr,
            addon_api: self.addon_api_addr.zip(self.addon_api_token_secret.clone()).map(|(addr, secret)| {
                crate::run::AddonApiConfig {
                    addr,
                    token_secret: secret,
                    namespace: self.addon_api_namespace.clone().unwrap_or_else(|| self.credentials_secret.0.clone()),
                }
            }),
            lease: self.leader_election.then(|| crate::leader::LeaseConfig {
                namespace: self.lease_namespace.clone().unwrap_or_else(|| self.credentials_secret.0.clone()),
                name: self.lease_name.clone(),
                identity: self.identity.clone().unwrap_or_else(|| {
                    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "exo-matrix-operator".into());
                    format!("{host}-{}", std::process::id())
                }),
                duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
            }),
            settings: crate::controller::Settings {
                resync: self.resync,
                user_creation: self.user_creation,
                concurrency: self.concurrency.max(1),
                user_concurrency: self.user_concurrency.max(1),
                alias_prefix: self.alias_prefix.clone(),
                blast_radius: crate::plan::room::BlastRadius {
                    min_kicks: self.max_kicks,
                    max_share: self.max_kick_share.clamp(0.0, 1.0),
                },
                join_concurrency: self.join_concurrency.max(1),
                one_event_joins: self.one_event_joins,
                link_debounce: self.link_debounce,
                space_debounce: self.space_debounce,
                space_parent_check: self.space_parent_check,
                exo_max_drop: self.exo_max_drop.clamp(0.0, 1.0),
                account_check: self.account_check,
                lasting_failure: self.lasting_failure,
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct CrdgenArgs {
    /// Directory to write `<plural>.<group>.yaml` files into; stdout when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot serialize the CRD {0}")]
    Serialize(String, #[source] serde_yaml::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
}

pub fn crdgen(args: &CrdgenArgs) -> Result<(), CliError> {
    let mut all = String::new();
    for crd in crd::all() {
        let name = crd::file_name(&crd);
        let yaml = crd::to_yaml(&crd).map_err(|e| CliError::Serialize(name.clone(), e))?;
        match &args.out {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| CliError::Write(dir.clone(), e))?;
                let path = dir.join(&name);
                std::fs::write(&path, yaml).map_err(|e| CliError::Write(path, e))?;
            }
            None => {
                all.push_str("---\n");
                all.push_str(&yaml);
            }
        }
    }
    if args.out.is_none() {
        print!("{all}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_refs_need_namespace_and_name() {
        assert_eq!(parse_secret_ref("matrix/creds"), Ok(("matrix".into(), "creds".into())));
        assert!(parse_secret_ref("creds").is_err());
        assert!(parse_secret_ref("/creds").is_err());
    }
}
