//! Durations as Kubernetes writes them, for flags and CR fields alike.

/// Kubernetes-style durations: `30s`, `5m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 30s, 5m or 1h: {e}"))?;
    if d.is_zero() {
        return Err("the duration must be positive".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_kubernetes_style() {
        assert_eq!(parse_duration("30s"), Ok(std::time::Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(std::time::Duration::from_secs(5400)));
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
