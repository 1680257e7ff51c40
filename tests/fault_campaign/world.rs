//! What eXo says (the fake eXo's state), the people changes the campaign makes
//! in it, and the removals it made: the only kicks allowed.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::exo::FakeExo;

/// Sizes of one campaign (small in `cargo test`, large in `bench/faults.sh`).
#[derive(Clone, Debug)]
pub struct Size {
    pub users: usize,
    pub spaces: usize,
    /// Members of a space at creation, a range.
    pub members: (usize, usize),
    pub kills: usize,
    pub seed: u64,
    /// How long Synapse stays stopped.
    pub synapse_down_secs: u64,
    /// The operator's `--lasting-failure`: links must say since when within the Synapse outage.
    pub lasting_secs: u64,
    /// How long the kube-apiserver stays stopped.
    pub apiserver_down_secs: u64,
    /// How long each eXo fault lasts.
    pub exo_fault_secs: u64,
    /// The ExoSource's `interval` and the operator's `--resync`.
    pub interval_secs: u64,
    /// Every shape of garbage, or two (HTML, roster entries without a username).
    pub all_garbage: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Size {
    /// The small campaign, each value overridable by its `FAULT_*` variable (bench/faults.sh sets them).
    pub fn from_env() -> Size {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Size {
            users: env_or("FAULT_USERS", 30),
            spaces: env_or("FAULT_SPACES", 5),
            members: (env_or("FAULT_MEMBERS_MIN", 5), env_or("FAULT_MEMBERS_MAX", 15)),
            kills: env_or("FAULT_KILLS", 5),
            seed: env_or("FAULT_SEED", (nanos as u64) % 1_000_000),
            synapse_down_secs: env_or("FAULT_SYNAPSE_DOWN", 20),
            lasting_secs: env_or("FAULT_LASTING", 5),
            apiserver_down_secs: env_or("FAULT_APISERVER_DOWN", 5),
            exo_fault_secs: env_or("FAULT_EXO_SECS", 6),
            interval_secs: env_or("FAULT_INTERVAL", 2),
            all_garbage: env_or("FAULT_ALL_GARBAGE", false),
        }
    }
}

pub struct World {
    pub exo: FakeExo,
    pub rng: StdRng,
    tag: String,
    next_user: usize,
    next_space: usize,
    /// (space id, username) pairs the campaign took out of eXo: the only kicks allowed.
    pub removed: BTreeSet<(String, String)>,
    /// People changes made in eXo so far (joins, leaves, new people, new spaces).
    pub changes: usize,
}

impl World {
    pub fn new(exo: FakeExo, seed: u64, tag: &str) -> World {
        World {
            exo,
            rng: StdRng::seed_from_u64(seed),
            tag: tag.to_owned(),
            next_user: 0,
            next_space: 100,
            removed: BTreeSet::new(),
            changes: 0,
        }
    }

    /// A number in `lo..=hi` from the seeded generator.
    pub fn rng_range(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.random_range(lo..=hi.max(lo))
    }

    pub fn add_user(&mut self) -> String {
        let u = format!("u{:04}{}", self.next_user, self.tag);
        self.next_user += 1;
        self.exo.edit(|s| {
            s.users.insert(u.clone(), (format!("Person {u}"), format!("{u}@example.org"), true));
        });
        u
    }

    fn users(&self) -> Vec<String> {
        self.exo.state.lock().expect("lock").users.keys().cloned().collect()
    }

    /// A new space of `size` people; the first two are its managers.
    pub fn add_space(&mut self, size: usize) {
        let id = self.next_space.to_string();
        self.next_space += 1;
        let users = self.users();
        let mut members: Vec<String> = Vec::new();
        while members.len() < size.min(users.len()) {
            let u = users[self.rng.random_range(0..users.len())].clone();
            if !members.contains(&u) {
                members.push(u);
            }
        }
        let managers = members.iter().take(2).cloned().collect();
        let pretty = format!("space{id}{}", self.tag);
        self.exo.edit(|s| {
            s.spaces.insert(id.clone(), (pretty, format!("Space {id}"), format!("Team <b>{id}</b>")));
            s.members.insert(id.clone(), members);
            s.managers.insert(id, managers);
        });
        self.changes += 1;
    }

    /// Ordinary changes as people make them in eXo: someone (sometimes a newcomer) joins a
    /// space, someone who is not a manager leaves one. Returns the (space, person) who left.
    pub fn churn(&mut self) -> Option<(String, String)> {
        let joiner = if self.rng.random_bool(0.3) {
            self.add_user()
        } else {
            let users = self.users();
            users[self.rng.random_range(0..users.len())].clone()
        };
        let spaces: Vec<String> = self.exo.state.lock().expect("lock").spaces.keys().cloned().collect();
        let into = spaces[self.rng.random_range(0..spaces.len())].clone();
        let from = spaces[self.rng.random_range(0..spaces.len())].clone();
        let pick = self.rng.random_range(0..1000usize);
        let mut left = None;
        self.exo.edit(|s| {
            let members = s.members.entry(into.clone()).or_default();
            if !members.contains(&joiner) {
                members.push(joiner.clone());
            }
            let managers = s.managers.get(&from).cloned().unwrap_or_default();
            let members = s.members.entry(from.clone()).or_default();
            // Managers stay: a demotion is checked by the power levels, not by the kick count.
            let candidates: Vec<usize> =
                (0..members.len()).filter(|i| !managers.contains(&members[*i]) && members[*i] != joiner).collect();
            if candidates.len() > 2 {
                left = Some(members.remove(candidates[pick % candidates.len()]));
            }
        });
        self.changes += 1 + usize::from(left.is_some());
        let left = left.map(|u| (from, u));
        if let Some(pair) = &left {
            self.removed.insert(pair.clone());
        }
        left
    }

    /// Space id → (expected members, expected managers) as usernames: enabled people in eXo's rosters.
    pub fn expected(&self) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
        let s = self.exo.state.lock().expect("lock");
        let enabled = |u: &&String| s.users.get(*u).is_some_and(|(_, _, on)| *on);
        s.spaces
            .keys()
            .map(|id| {
                let members = s.members.get(id).into_iter().flatten().filter(enabled).cloned().collect();
                let managers = s.managers.get(id).into_iter().flatten().filter(enabled).cloned().collect();
                (id.clone(), (members, managers))
            })
            .collect()
    }

    pub fn user_count(&self) -> usize {
        self.exo.state.lock().expect("lock").users.len()
    }
}
