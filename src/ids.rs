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

pub use ruma_common::{
    OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId, ServerName, UserId,
};

/// A string that is not the Matrix identifier it should be: rejected where it
/// enters (a CR field, a Synapse answer, a name derived from eXo), not deep inside a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid Matrix {kind}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    #[source]
    pub source: ruma_common::IdParseError,
}

fn parse<T: TryFrom<String, Error = ruma_common::IdParseError>>(kind: &'static str, value: &str) -> Result<T, IdError> {
    T::try_from(value.to_owned()).map_err(|source| IdError { kind, value: value.to_owned(), source })
}

/// `@localpart:server`.
pub fn user_id(value: &str) -> Result<OwnedUserId, IdError> {
    parse("user id", value)
}

/// `!opaque:server`, or the domainless `!hash` of room version 12.
pub fn room_id(value: &str) -> Result<OwnedRoomId, IdError> {
    parse("room id", value)
}

/// `#localpart:server`.
pub fn room_alias(value: &str) -> Result<OwnedRoomAliasId, IdError> {
    parse("room alias", value)
}

/// A host name or IP literal, optionally with a port.
pub fn server_name(value: &str) -> Result<OwnedServerName, IdError> {
    parse("server name", value)
}

/// `@localpart:server_name`.
pub fn user_on(localpart: &str, server_name: &ServerName) -> Result<OwnedUserId, IdError> {
    user_id(&format!("@{localpart}:{server_name}"))
}

/// `#localpart:server_name`.
pub fn alias_on(localpart: &str, server_name: &ServerName) -> Result<OwnedRoomAliasId, IdError> {
    room_alias(&format!("#{localpart}:{server_name}"))
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
        let server = server_name("exo.test:8448").unwrap();
        let id = user_on("mary", &server).unwrap();
        assert_eq!(id, "@mary:exo.test:8448");
        assert_eq!(id.server_name(), "exo.test:8448");
        assert_eq!(id.localpart(), "mary");
        let err = user_id("mary").unwrap_err();
        assert_eq!(err.to_string(), "\"mary\" is not a valid Matrix user id");
    }

    #[test]
    fn room_ids_of_every_version_parse() {
        // Room version 12: the id is the create event's hash, with no server name.
        let v12 = room_id("!Mey68DZqlq4QApwTqAvHHZiL0O_t1XO-nKDCDkkVPfI").unwrap();
        assert_eq!(v12.server_name(), None);
        assert!(room_id("!abc:exo.test").unwrap().server_name().is_some());
        assert!(room_id("#alias:exo.test").is_err());
        assert!(room_id("").is_err());
        assert!(room_alias("#support:exo.test").is_ok());
        assert!(room_alias("support").is_err());
        assert!(server_name("exo test").is_err());
    }

    #[test]
    fn every_escaped_localpart_makes_a_valid_user_id() {
        let server = server_name("exo.test").unwrap();
        for name in ["mary", "John.Smith", "x y", "jérôme", "a:b", "@x", "ÆØÅ", "a/b+c"] {
            let id = user_on(&localpart(name), &server).unwrap();
            assert!(id.validate_strict().is_ok(), "{id}");
        }
    }
}
