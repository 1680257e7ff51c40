//! When each child room's `m.space.parent` is next read though nothing says it changed (see
//! `plan::space::parents`): once per `--space-parent-check`, each room at its own time, so a space of 1,000
//! rooms reads a few parents per pass instead of all of them at once. Kept in memory: after a restart the
//! first checks are spread over the period again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::ids::{OwnedRoomId, RoomId};

/// Per space (its uid), each room's next check.
#[derive(Default)]
pub struct ParentChecks(Mutex<HashMap<String, BTreeMap<OwnedRoomId, Instant>>>);

impl ParentChecks {
    /// Whether `room`'s parent is due for a read. A room seen for the first time gets a first check at a
    /// random point of the period, so that the rooms of a space are not all due together.
    pub fn due(&self, space: &str, room: &RoomId, period: Duration) -> bool {
        self.due_at(space, room, period, Instant::now(), rand::rng().random_range(0.0..1.0))
    }

    fn due_at(&self, space: &str, room: &RoomId, period: Duration, now: Instant, spread: f64) -> bool {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = all
            .entry(space.to_owned())
            .or_default()
            .entry(room.to_owned())
            .or_insert_with(|| now + period.mul_f64(spread));
        *next <= now
    }

    /// `room`'s parent was just read.
    pub fn checked(&self, space: &str, room: &RoomId, period: Duration) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(space.to_owned()).or_default().insert(room.to_owned(), Instant::now() + period);
    }

    /// Forgets rooms that are no longer the space's (and the space, with none).
    pub fn keep(&self, space: &str, rooms: &BTreeSet<OwnedRoomId>) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if rooms.is_empty() {
            all.remove(space);
        } else if let Some(due) = all.get_mut(space) {
            due.retain(|room, _| rooms.contains(room));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(id: &str) -> OwnedRoomId {
        crate::ids::room_id(id).expect("a room id")
    }

    #[test]
    fn each_room_is_due_once_per_period_from_a_spread_first_check() {
        let checks = ParentChecks::default();
        let (period, t0) = (Duration::from_secs(600), Instant::now());
        assert!(!checks.due_at("s", &rid("!a"), period, t0, 0.5), "first check half a period away");
        assert!(!checks.due_at("s", &rid("!a"), period, t0 + Duration::from_secs(299), 0.0));
        assert!(checks.due_at("s", &rid("!a"), period, t0 + Duration::from_secs(300), 0.0));
        checks.checked("s", &rid("!a"), period);
        assert!(!checks.due_at("s", &rid("!a"), period, Instant::now() + Duration::from_secs(599), 0.0));
        assert!(checks.due_at("s", &rid("!a"), period, Instant::now() + Duration::from_secs(601), 0.0));
        assert!(!checks.due_at("other", &rid("!a"), period, t0, 0.5), "spaces keep their own times");
    }

    #[test]
    fn rooms_that_left_are_forgotten() {
        let checks = ParentChecks::default();
        let period = Duration::from_secs(600);
        checks.checked("s", &rid("!a"), period);
        checks.checked("s", &rid("!b"), period);
        checks.keep("s", &[rid("!a")].into());
        let all = checks.0.lock().expect("lock");
        assert_eq!(all["s"].keys().collect::<Vec<_>>(), vec![&rid("!a")]);
    }
}
