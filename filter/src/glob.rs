//! Host globs: which `:authority` values a service answers for.
//!
//! A glob is a host name (or IP literal) where `*` stands for any run of characters, optionally followed by
//! `:port` (which may contain `*` too). Host and port are matched separately, so `*` in the host never
//! swallows the port and `api.example.com` matches `api.example.com:8443` as well as `api.example.com`.
//! A trailing dot on the host (`api.example.com.`, the same name in DNS) is ignored on both sides so that a
//! client cannot step around a service by spelling the host fully qualified.

/// One host glob, compiled for matching without allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostGlob {
    pattern: String,
    /// Lower-cased host part, trailing dot removed.
    host: Box<[u8]>,
    /// The port part when the pattern names one; then authorities without a port never match.
    port: Option<Box<[u8]>>,
}

impl HostGlob {
    /// `*` matches any run of characters (dots included, or nothing); everything else is literal and
    /// ASCII case-insensitive. A pattern with a `:port` part also requires the authority's port to match
    /// it; without one, any port (or none) is fine. IPv6 literals keep their brackets: `[::1]:8080`.
    /// Err(reason) for empty patterns, characters no host or port can hold, and unbalanced brackets.
    pub fn new(pattern: &str) -> Result<HostGlob, String> {
        if pattern.is_empty() {
            return Err("the host pattern is empty".to_owned());
        }
        let (host, port) = split_pattern(pattern)?;
        Ok(HostGlob {
            pattern: pattern.to_owned(),
            host: without_trailing_dot(host.as_bytes())
                .to_ascii_lowercase()
                .into(),
            port: port.map(|port| port.as_bytes().into()),
        })
    }

    /// Whether `authority` (the request's `:authority`, `host[:port]`) is one this glob names.
    pub fn matches(&self, authority: &[u8]) -> bool {
        let (host, port) = split_authority(authority);
        if !glob_matches(&self.host, without_trailing_dot(host)) {
            return false;
        }
        match (&self.port, port) {
            (None, _) => true,
            (Some(pattern), Some(port)) => glob_matches(pattern, port),
            (Some(_), None) => false,
        }
    }

    /// Whether the glob names every host on every port (`*`).
    pub fn matches_every_host(&self) -> bool {
        self.port.is_none() && !self.host.is_empty() && self.host.iter().all(|&c| c == b'*')
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// Checks a pattern and splits it into host and optional port glob.
fn split_pattern(pattern: &str) -> Result<(&str, Option<&str>), String> {
    let (host, port) = if let Some(bracketed) = pattern.strip_prefix('[') {
        let Some(close) = bracketed.find(']') else {
            return Err(format!("host pattern `{pattern}`: `[` has no matching `]`"));
        };
        let (inside, rest) = bracketed.split_at_checked(close).unwrap_or((bracketed, ""));
        check_chars(pattern, inside, |c| {
            c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '*')
        })?;
        let host_len = close + 2; // the brackets
        let host = pattern.get(..host_len).unwrap_or(pattern);
        match rest.get(1..).unwrap_or_default() {
            "" => (host, None),
            after => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(format!(
                        "host pattern `{pattern}`: expected `:port` after `]`"
                    ));
                }
            },
        }
    } else {
        match pattern.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (pattern, None),
        }
    };
    if !host.starts_with('[') {
        check_chars(pattern, host, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*')
        })?;
    }
    if host.is_empty() {
        return Err(format!("host pattern `{pattern}` has no host"));
    }
    if let Some(port) = port {
        if port.is_empty() {
            return Err(format!(
                "host pattern `{pattern}` has an empty port after `:`"
            ));
        }
        check_chars(pattern, port, |c| c.is_ascii_digit() || c == '*')?;
    }
    Ok((host, port))
}

fn check_chars(pattern: &str, part: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    match part.chars().find(|&c| !allowed(c)) {
        None => Ok(()),
        Some(bad) => Err(format!(
            "host pattern `{pattern}`: character `{bad}` is not allowed there"
        )),
    }
}

/// Splits `host[:port]`, keeping IPv6 brackets with the host. An authority that does not parse is all host.
fn split_authority(authority: &[u8]) -> (&[u8], Option<&[u8]>) {
    let colon = if authority.first() == Some(&b'[') {
        authority
            .iter()
            .position(|&byte| byte == b']')
            .and_then(|close| close.checked_add(1))
            .filter(|&after| authority.get(after) == Some(&b':'))
    } else {
        authority.iter().position(|&byte| byte == b':')
    };
    match colon.and_then(|at| authority.split_at_checked(at)) {
        Some((host, port)) => (host, port.get(1..)),
        None => (authority, None),
    }
}

fn without_trailing_dot(host: &[u8]) -> &[u8] {
    match host.split_last() {
        Some((b'.', rest)) if !rest.is_empty() => rest,
        _ => host,
    }
}

/// `*`-only glob matching, ASCII case-insensitive, in O(pattern × text) without backtracking blow-up:
/// on a mismatch only the most recent `*` is extended, which is enough when `*` is the sole wildcard.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut resume: Option<(usize, usize)> = None;
    loop {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, t));
                continue;
            }
            Some(&expected)
                if text
                    .get(t)
                    .is_some_and(|actual| actual.eq_ignore_ascii_case(&expected)) =>
            {
                p += 1;
                t += 1;
                continue;
            }
            None if t == text.len() => return true,
            _ => {}
        }
        match resume {
            Some((star_p, star_t)) if star_t < text.len() => {
                resume = Some((star_p, star_t + 1));
                p = star_p;
                t = star_t + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn glob(pattern: &str) -> HostGlob {
        HostGlob::new(pattern).unwrap()
    }

    #[test]
    fn literal_hosts_ignore_case_and_port() {
        let g = glob("API.example.com");
        assert!(g.matches(b"api.example.com"));
        assert!(g.matches(b"Api.Example.COM:8443"));
        assert!(!g.matches(b"api.example.co"));
        assert!(!g.matches(b"api.example.com.evil"));
        assert!(!g.matches(b"xapi.example.com"));
        assert_eq!(g.as_str(), "API.example.com");
    }

    #[test]
    fn only_a_lone_star_names_every_host() {
        assert!(glob("*").matches_every_host());
        assert!(glob("**").matches_every_host());
        assert!(!glob("*:8443").matches_every_host());
        assert!(!glob("*.example.com").matches_every_host());
    }

    #[test]
    fn star_matches_any_run_including_dots_and_nothing() {
        let g = glob("*.example.com");
        assert!(g.matches(b"a.example.com"));
        assert!(g.matches(b"a.b.example.com:80"));
        assert!(g.matches(b".example.com"));
        assert!(!g.matches(b"example.com"));
        assert!(!g.matches(b"a.example.org"));

        let g = glob("api*");
        assert!(g.matches(b"api"));
        assert!(g.matches(b"api-v2.internal:9000"));
        assert!(!g.matches(b"ap"));

        let g = glob("a*b*c");
        assert!(g.matches(b"abc"));
        assert!(g.matches(b"axxbyyc"));
        assert!(g.matches(b"abbbc"));
        assert!(g.matches(b"acbc"));
        assert!(!g.matches(b"acb"));

        assert!(glob("*").matches(b""));
        assert!(glob("*").matches(b"anything:1"));
        assert!(glob("**").matches(b"x"));
    }

    #[test]
    fn star_does_not_blow_up_on_adversarial_input() {
        let g = glob("*a*a*a*a*a*a*a*a*b");
        let host = vec![b'a'; 4000];
        assert!(!g.matches(&host));
    }

    #[test]
    fn a_port_in_the_pattern_must_match_the_port() {
        let g = glob("api.example.com:8080");
        assert!(g.matches(b"api.example.com:8080"));
        assert!(!g.matches(b"api.example.com:8081"));
        assert!(!g.matches(b"api.example.com"));

        let g = glob("*:80*");
        assert!(g.matches(b"x:80"));
        assert!(g.matches(b"x:8080"));
        assert!(!g.matches(b"x:443"));
        assert!(!g.matches(b"x"));

        assert!(glob("api:*").matches(b"api:1"));
        assert!(!glob("api:*").matches(b"api"));
    }

    #[test]
    fn ipv6_literals() {
        let g = glob("[::1]");
        assert!(g.matches(b"[::1]"));
        assert!(g.matches(b"[::1]:8080"));
        assert!(!g.matches(b"[::2]:8080"));

        let g = glob("[::1]:8080");
        assert!(g.matches(b"[::1]:8080"));
        assert!(!g.matches(b"[::1]"));
        assert!(!g.matches(b"[::1]:9090"));

        let g = glob("[fe80::*]");
        assert!(g.matches(b"[FE80::1]:443"));
        assert!(!g.matches(b"[fe81::1]"));

        // A host-only glob that is not IPv6 never matches an IPv6 literal.
        assert!(!glob("localhost").matches(b"[::1]:80"));
    }

    #[test]
    fn ipv4_hosts() {
        let g = glob("10.0.0.*");
        assert!(g.matches(b"10.0.0.7:8000"));
        assert!(!g.matches(b"10.0.1.7"));
    }

    #[test]
    fn a_trailing_dot_does_not_dodge_a_glob() {
        let g = glob("api.example.com");
        assert!(g.matches(b"api.example.com."));
        assert!(g.matches(b"api.example.com.:443"));
        assert!(glob("api.example.com.").matches(b"api.example.com"));
        assert!(!g.matches(b"api.example.com.."));
    }

    #[test]
    fn odd_authorities_never_panic() {
        let g = glob("*.example.com");
        for authority in [
            &b""[..],
            b":",
            b"[",
            b"]",
            b"[::1",
            b"[::1]x",
            b"a:b:c",
            b"\xff\xfe",
            b".",
            b"[]:",
        ] {
            let _ = g.matches(authority);
            let _ = glob("*").matches(authority);
            let _ = glob("[::1]:*").matches(authority);
        }
        assert!(!glob("a").matches(b""));
        assert!(glob("*").matches(b"[::1"));
    }

    #[test]
    fn bad_patterns_are_rejected_with_a_reason() {
        for (pattern, reason) in [
            ("", "empty"),
            (":8080", "no host"),
            ("api:", "empty port"),
            ("api:80x", "`x`"),
            ("a b", "` `"),
            ("api/v1", "`/`"),
            ("a:1:2", "`:`"),
            ("[::1", "no matching"),
            ("[::1]8080", "expected `:port`"),
            ("[::g]", "`g`"),
            ("ex[a]mple", "`[`"),
            ("exämple.com", "`ä`"),
        ] {
            let err = HostGlob::new(pattern).unwrap_err();
            assert!(err.contains(reason), "{pattern:?}: {err}");
        }
    }
}
