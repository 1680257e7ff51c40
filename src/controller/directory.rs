//! Every Synapse account, read in bulk once per resync period, so a quiet pass over a MatrixUser needs no
//! per-account read. What the bulk list does not show (email addresses, email pushers) is read per account
//! on a slower cadence (`--account-check`), spread over that period.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::plan::user::CreationPusher;
use crate::synapse::{self, AdminUser, ListedUser, Synapse};

/// Accounts per page of the bulk list: 10,000 accounts cost 20 reads.
const PAGE: u32 = 500;

#[derive(Default)]
pub struct UserDirectory {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The homeserver the listing is of: a new base URL starts over.
    base: String,
    /// `None` when listing every account would cost more reads than reading the managed ones one by one
    /// (a big homeserver, few MatrixUsers).
    users: Option<BTreeMap<String, ListedUser>>,
    fetched: Option<Instant>,
    /// When each account's email addresses and pushers are to be read again.
    deep_due: BTreeMap<String, Instant>,
    /// Whether this homeserver gives the accounts it creates with an email their email pusher.
    creation_pusher: Option<bool>,
}

/// What the listing says about one account.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    /// Not listed: the account does not exist.
    Absent,
    Listed(ListedUser),
    /// No listing this period: read the account itself.
    Unknown,
}

impl UserDirectory {
    /// The account as listed at most `max_age` ago; the list is read again when older, unless it has more
    /// pages than `managed` (the MatrixUsers watched), when reading accounts one by one is cheaper.
    pub async fn listed(
        &self,
        admin: &Synapse,
        user_id: &str,
        max_age: Duration,
        managed: impl FnOnce() -> usize,
    ) -> Result<Listing, synapse::Error> {
        let mut inner = self.inner.lock().await;
        let base = admin.base_url().as_str();
        if inner.base != base {
            *inner = Inner { base: base.to_owned(), ..Inner::default() };
        }
        // Not worth listing last time: look again only every ten periods (one read each time).
        let age = if inner.users.is_none() { max_age * 10 } else { max_age };
        if inner.fetched.is_none_or(|t| t.elapsed() >= age) {
            inner.users = list_all(admin, managed()).await?;
            inner.fetched = Some(Instant::now());
        }
        Ok(match &inner.users {
            None => Listing::Unknown,
            Some(users) => users.get(user_id).cloned().map_or(Listing::Absent, Listing::Listed),
        })
    }

    /// What the operator just read or wrote: later passes see it without waiting for the next listing.
    pub async fn record(&self, user_id: &str, account: Option<&AdminUser>) {
        let mut inner = self.inner.lock().await;
        let Some(users) = inner.users.as_mut() else { return };
        match account {
            Some(a) => users.insert(user_id.to_owned(), ListedUser::from(a)),
            None => users.remove(user_id),
        };
    }

    /// What an account creation on this homeserver does about the email pusher, as learned so far.
    pub async fn creation_pusher(&self) -> CreationPusher {
        match self.inner.lock().await.creation_pusher {
            Some(true) => CreationPusher::Made,
            Some(false) => CreationPusher::NotMade,
            None => CreationPusher::Unknown,
        }
    }

    /// An account just created with an email was seen with (`made`) or without its email pusher. Learned once
    /// for the process: a Synapse restarted with other settings is caught by the `--account-check` reads.
    pub async fn learned_creation_pusher(&self, made: bool) {
        self.inner.lock().await.creation_pusher.get_or_insert(made);
    }

    /// Whether this account's email addresses and pushers are due to be read. An account first seen gets a
    /// due time spread over `period`, so a restart does not read every account at once.
    pub async fn deep_check_due(&self, user_id: &str, period: Duration) -> bool {
        let mut inner = self.inner.lock().await;
        let now = Instant::now();
        let due = *inner
            .deep_due
            .entry(user_id.to_owned())
            .or_insert_with(|| now + period.mul_f64(rand::rng().random_range(0.0..1.0)));
        due <= now
    }

    /// The account's email addresses and pushers were just read (or set).
    pub async fn deep_checked(&self, user_id: &str, period: Duration) {
        self.inner.lock().await.deep_due.insert(user_id.to_owned(), Instant::now() + period);
    }
}

/// Every account, page by page; `None` when there are more pages than `managed` accounts.
async fn list_all(admin: &Synapse, managed: usize) -> Result<Option<BTreeMap<String, ListedUser>>, synapse::Error> {
    let mut users = BTreeMap::new();
    let mut from = "0".to_owned();
    loop {
        let page = admin.list_users(&from, PAGE).await?;
        if page.total.div_ceil(u64::from(PAGE)) > managed.max(1) as u64 {
            return Ok(None);
        }
        let empty = page.users.is_empty();
        users.extend(page.users.into_iter().map(|u| (u.name.clone(), u)));
        match page.next {
            // A page that moves nothing forward ends the walk rather than looping.
            Some(next) if !empty && next != from => from = next,
            _ => return Ok(Some(users)),
        }
    }
}
