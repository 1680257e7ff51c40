//! One line for an error and every error beneath it, as conditions, Events and logs show it.
//! `Display` of most errors (reqwest, kube, serde) leaves out the cause that says what went wrong.

/// `outer: cause: root cause` (never holds secrets: no error type here prints one).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("reading the Secret")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_shown_outermost_first() {
        let err = Outer(std::io::Error::other("connection refused"));
        assert_eq!(super::chain(&err), "reading the Secret: connection refused");
    }
}
