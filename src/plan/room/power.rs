//! A room's power levels: ruma's `m.room.power_levels` content for what Matrix defines,
//! and every other key (Synapse's `historical`, another tool's) kept as read, so a
//! read-modify-write never drops what the operator does not model.

use js_int::Int;
use ruma_events::room::power_levels::RoomPowerLevelsEventContent;
use serde_json::{Map, Value};

use crate::ids::UserId;

/// The keys ruma's content models; any other key is carried through untouched.
const MODELLED: [&str; 10] = [
    "ban",
    "events",
    "events_default",
    "invite",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
    "notifications",
];

#[derive(Debug, Clone)]
pub struct PowerLevels {
    pub levels: RoomPowerLevelsEventContent,
    /// Top-level keys ruma does not model.
    other: Map<String, Value>,
    /// Keys of `notifications` other than `room` (ruma models only that one).
    other_notifications: Map<String, Value>,
}

impl PowerLevels {
    /// Reads the content as Synapse gives it. Levels may be numbers or (room v1–v9) numeric strings.
    pub fn parse(content: &Value) -> Result<Self, serde_json::Error> {
        let levels = serde_json::from_value(content.clone())?;
        let mut other = content.as_object().cloned().unwrap_or_default();
        let other_notifications = match other.get("notifications") {
            Some(Value::Object(n)) => {
                n.iter().filter(|(k, _)| *k != "room").map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            _ => Map::new(),
        };
        other.retain(|k, _| !MODELLED.contains(&k.as_str()));
        Ok(Self { levels, other, other_notifications })
    }

    /// The content to PUT: the modelled keys as ruma writes them (levels equal to the spec's default
    /// may be left out: they mean the same), then every key it does not model, as read.
    pub fn content(&self) -> Value {
        let mut out = match serde_json::to_value(&self.levels) {
            Ok(Value::Object(known)) => known,
            // Maps of ids and numbers always serialize to an object.
            _ => Map::new(),
        };
        for (k, v) in &self.other {
            out.insert(k.clone(), v.clone());
        }
        if !self.other_notifications.is_empty() {
            let n = out.entry("notifications").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(n) = n {
                for (k, v) in &self.other_notifications {
                    n.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        Value::Object(out)
    }

    /// The level listed for `user` in `users` (not the default, not creator power).
    pub fn listed(&self, user: &UserId) -> Option<Int> {
        self.levels.users.get(user).copied()
    }
}

impl Default for PowerLevels {
    /// A room without power levels: the spec's defaults.
    fn default() -> Self {
        Self::parse(&Value::Object(Map::new())).unwrap_or_else(|_| unreachable!("an empty content has every default"))
    }
}

/// Equal when Synapse would hold the same power levels: a default left out equals the default written.
impl PartialEq for PowerLevels {
    fn eq(&self, other: &Self) -> bool {
        self.content() == other.content()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_ruma_does_not_model_survive_a_read_modify_write() {
        let read = json!({
            "ban": 50, "kick": 50, "users_default": 0, "historical": 100,
            "users": {"@owner:exo.test": 100}, "events": {"org.example.custom": 20},
            "notifications": {"room": 50, "org.example.ping": 30},
            "org.example.policy": {"strict": true},
        });
        let mut pl = PowerLevels::parse(&read).unwrap();
        pl.levels.kick = Int::from(75);
        let written = pl.content();
        assert_eq!(written["historical"], 100);
        assert_eq!(written["org.example.policy"], json!({"strict": true}));
        assert_eq!(written["notifications"]["org.example.ping"], 30);
        assert_eq!(written["events"]["org.example.custom"], 20);
        assert_eq!(written["users"]["@owner:exo.test"], 100);
        assert_eq!(written["kick"], 75);
        // Read back, it is the same power levels.
        assert_eq!(PowerLevels::parse(&written).unwrap(), pl);
    }

    #[test]
    fn a_default_left_out_equals_the_default_written() {
        let explicit = PowerLevels::parse(&json!({"ban": 50, "kick": 50, "invite": 0})).unwrap();
        assert_eq!(explicit, PowerLevels::default());
        assert_ne!(PowerLevels::parse(&json!({"kick": 0})).unwrap(), PowerLevels::default());
        // Writing a default over a stale non-default must not leave the stale value behind.
        let mut pl = PowerLevels::parse(&json!({"kick": 0})).unwrap();
        pl.levels.kick = Int::from(50);
        assert_eq!(PowerLevels::parse(&pl.content()).unwrap().levels.kick, Int::from(50));
    }

    #[test]
    fn string_levels_of_old_rooms_are_read_and_garbage_is_refused() {
        let old = PowerLevels::parse(&json!({"users": {"@a:exo.test": "100"}, "ban": "60"})).unwrap();
        assert_eq!(old.levels.ban, Int::from(60));
        assert!(PowerLevels::parse(&json!({"ban": "lots"})).is_err());
        assert!(PowerLevels::parse(&json!({"users": {"not-a-user": 50}})).is_err());
    }
}
