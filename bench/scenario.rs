//! The generated scenario every contender converges: users with email, rooms with members and managers.

/// One eXo space: its members (managers included) by user index.
#[derive(Debug, Clone)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub members: Vec<usize>,
    pub managers: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub label: String,
    pub users: usize,
    pub rooms: Vec<Room>,
}

impl Scenario {
    /// `b50`: 500 users, 50 rooms × 40; `b10k`: 10,000 users, 1,000 rooms × 10; 2 managers each.
    /// `scale` shrinks users and rooms (not room size) for quick runs.
    pub fn named(name: &str, scale: f64) -> Option<Scenario> {
        let (users, rooms, size) = match name {
            "b50" => (500, 50, 40),
            "b10k" => (10_000, 1_000, 10),
            _ => return None,
        };
        let users = ((users as f64 * scale).round() as usize).max(2);
        let rooms = ((rooms as f64 * scale).round() as usize).max(1);
        let size = size.min(users);
        // Room r takes the next `size` users round-robin: every user is in about the same number of rooms.
        let rooms = (0..rooms)
            .map(|r| {
                let members: Vec<usize> = (0..size).map(|j| (r * size + j) % users).collect();
                Room {
                    id: format!("bench_s{r:04}"),
                    name: format!("Bench space {r}"),
                    managers: members.iter().take(2).copied().collect(),
                    members,
                }
            })
            .collect();
        let label = if scale == 1.0 { name.to_owned() } else { format!("{name}x{scale}") };
        Some(Scenario { label, users, rooms })
    }

    pub fn username(i: usize) -> String {
        format!("u{i:05}")
    }

    pub fn display_name(i: usize) -> String {
        format!("Bench User {i}")
    }

    pub fn email(i: usize) -> String {
        format!("u{i:05}@bench.example.org")
    }

    pub fn topic(room: &Room) -> String {
        format!("The chat of {}", room.name)
    }

    pub fn memberships(&self) -> usize {
        self.rooms.iter().map(|r| r.members.len()).sum()
    }

    pub fn objects(&self) -> usize {
        self.users + self.rooms.len()
    }
}
