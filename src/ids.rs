//! Matrix identifiers derived from eXo names, in one place.
//!
//! The localpart rule: the eXo username, lowercased; any character Matrix does
//! not allow in a localpart (`a-z 0-9 . _ = - / +`) is written `=xx`, its UTF-8
//! bytes in lowercase hex, as the Matrix spec suggests for mapping foreign
//! names. eXo usernames are ASCII letters, digits, `.`, `_` and `-` (the CRD
//! enforces it), so in practice the rule is "lowercase"; the escape keeps it
//! total. Two usernames differing only in case share a localpart: the later
//! `MatrixUser` gets a `Conflict` condition.

/// The Matrix localpart for an eXo username.
pub fn localpart(username: &str) -> String {
    let mut out = String::with_capacity(username.len());
    for c in username.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/' | '+') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("={b:02x}"));
            }
        }
    }
    out
}

/// `@localpart:server_name`.
pub fn user_id(localpart: &str, server_name: &str) -> String {
    format!("@{localpart}:{server_name}")
}

/// The server name part of a user id (`@a:b:8448` → `b:8448`).
pub fn server_of(user_id: &str) -> Option<&str> {
    user_id.strip_prefix('@')?.split_once(':').map(|(_, server)| server)
}

/// The localpart of a user id (`@a:b` → `a`).
pub fn localpart_of(user_id: &str) -> Option<&str> {
    user_id.strip_prefix('@')?.split_once(':').map(|(local, _)| local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localpart_lowercases_and_escapes() {
        assert_eq!(localpart("mary"), "mary");
        assert_eq!(localpart("John.Smith"), "john.smith");
        assert_eq!(localpart("a_b-c"), "a_b-c");
        assert_eq!(localpart("x y"), "x=20y");
        assert_eq!(localpart("a=b"), "a=3db");
        assert_eq!(localpart("jérôme"), "j=c3=a9r=c3=b4me");
        // Case-only differences collide: that is what the Conflict condition is for.
        assert_eq!(localpart("Mary"), localpart("mary"));
    }

    #[test]
    fn user_ids_split_back() {
        let id = user_id("mary", "exo.test:8448");
        assert_eq!(id, "@mary:exo.test:8448");
        assert_eq!(server_of(&id), Some("exo.test:8448"));
        assert_eq!(localpart_of(&id), Some("mary"));
        assert_eq!(server_of("mary"), None);
    }
}
