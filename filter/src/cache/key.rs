//! Cache keys and the shared-data slots they hash to.
//!
//! A slot stores its entry's full key, so two applications whose keys hash alike never share
//! limits or usage: a reader compares the stored key before trusting the entry. That only works
//! if the key itself is unambiguous, which is why every field is written with its length.

use std::fmt::Write as _;

use crate::credentials::Credentials;

/// How many consecutive slots a key may occupy: a reader probes `slot(key, slots, 0..PROBES)`.
pub const PROBES: u32 = 4;

/// The full identity of a cache entry: service, credentials and referrer.
///
/// Each field is `<tag><byte length>:<value>` (tags `s` service, `u` user key, `a` app id,
/// `k` app key, `r` referrer) in a fixed order, so no two different inputs produce the same key
/// whatever bytes the values contain: a reader always knows where a value ends. An absent app key
/// or referrer writes nothing, which differs from an empty one (`k0:`).
pub fn cache_key(service_id: &str, credentials: &Credentials, referrer: Option<&str>) -> String {
    let mut key = String::with_capacity(
        service_id.len() + referrer.map_or(0, str::len) + credential_len(credentials) + 24,
    );
    push_field(&mut key, 's', service_id);
    match credentials {
        Credentials::UserKey(user_key) => push_field(&mut key, 'u', user_key),
        Credentials::AppId { app_id, app_key } => {
            push_field(&mut key, 'a', app_id);
            if let Some(app_key) = app_key {
                push_field(&mut key, 'k', app_key);
            }
        }
    }
    if let Some(referrer) = referrer {
        push_field(&mut key, 'r', referrer);
    }
    key
}

fn credential_len(credentials: &Credentials) -> usize {
    match credentials {
        Credentials::UserKey(user_key) => user_key.len(),
        Credentials::AppId { app_id, app_key } => {
            app_id.len() + app_key.as_ref().map_or(0, String::len)
        }
    }
}

fn push_field(key: &mut String, tag: char, value: &str) {
    key.push(tag);
    // Writing to a String cannot fail.
    let _ = write!(key, "{}", value.len());
    key.push(':');
    key.push_str(value);
}

/// What a key names, read back (the report flush only has the stored key): the service id and
/// the application as 3scale reports identify it (`app_id`, or `user_key`; never the app key).
pub fn parse_key(key: &str) -> Option<(&str, Credentials)> {
    let mut rest = key;
    let mut field = |tag: char| -> Option<&str> {
        let after_tag = rest.strip_prefix(tag)?;
        let (len, after_len) = after_tag.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let value = after_len.get(..len)?;
        rest = after_len.get(len..)?;
        Some(value)
    };
    let service = field('s')?;
    let application = match field('u') {
        Some(user_key) => Credentials::UserKey(user_key.to_string()),
        None => Credentials::AppId {
            app_id: field('a')?.to_string(),
            app_key: None,
        },
    };
    Some((service, application))
}

/// The slot of `key` at probe `probe` among `slots` slots: `(hash(key) + probe) % slots`.
///
/// The hash is FNV-1a (64 bits) followed by a avalanche finalizer, so the low bits a modulo keeps
/// depend on every byte of the key. `slots == 0` yields 0 rather than dividing by zero.
pub fn slot(key: &str, slots: u32, probe: u32) -> u32 {
    let hash = hash_key(key).wrapping_add(u64::from(probe));
    hash.checked_rem(u64::from(slots))
        .and_then(|slot| u32::try_from(slot).ok())
        .unwrap_or(0)
}

/// FNV-1a, then MurmurHash3's 64-bit finalizer.
fn hash_key(key: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = key.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::collections::HashSet;

    fn user(key: &str) -> Credentials {
        Credentials::UserKey(key.into())
    }

    fn app(id: &str, key: Option<&str>) -> Credentials {
        Credentials::AppId {
            app_id: id.into(),
            app_key: key.map(Into::into),
        }
    }

    #[test]
    fn keys_are_readable_and_length_prefixed() {
        assert_eq!(cache_key("42", &user("abc"), None), "s2:42u3:abc");
        assert_eq!(
            cache_key("42", &app("id", Some("key")), Some("example.com")),
            "s2:42a2:idk3:keyr11:example.com"
        );
        assert_eq!(cache_key("", &app("", None), Some("")), "s0:a0:r0:");
    }

    #[test]
    fn keys_read_back_to_service_and_application() {
        let key = cache_key("s:1", &app("a2:x", Some("k")), Some("r"));
        assert_eq!(parse_key(&key), Some(("s:1", app("a2:x", None))));
        let key = cache_key("42", &user("u5:abc"), None);
        assert_eq!(parse_key(&key), Some(("42", user("u5:abc"))));
        assert_eq!(parse_key("s9:short"), None);
        assert_eq!(parse_key("x"), None);
    }

    #[test]
    fn adversarial_inputs_never_collide() {
        let separators = [
            "", ":", "s", "u", "a", "k", "r", "1:", "a1:", "k0:", "r0:", "é", "\0",
        ];
        let mut values: Vec<String> = Vec::new();
        for a in separators {
            for b in separators {
                values.push(format!("{a}{b}"));
            }
        }
        let mut inputs = Vec::new();
        for service in ["1", "1:", "s1:1", ""] {
            for value in &values {
                inputs.push((service.to_owned(), user(value), None));
                inputs.push((service.to_owned(), app(value, None), None));
                for other in ["", "k", ":x", "k1:x"] {
                    inputs.push((service.to_owned(), app(value, Some(other)), None));
                    inputs.push((
                        service.to_owned(),
                        app(other, Some(value)),
                        Some(value.clone()),
                    ));
                    inputs.push((service.to_owned(), user(other), Some(value.clone())));
                }
            }
        }
        let mut seen = HashSet::new();
        let mut keys = HashSet::new();
        for (service, credentials, referrer) in &inputs {
            if !seen.insert((service.clone(), credentials.clone(), referrer.clone())) {
                continue;
            }
            let key = cache_key(service, credentials, referrer.as_deref());
            assert!(
                keys.insert(key.clone()),
                "collision on {key:?} for {service:?} {credentials:?} {referrer:?}"
            );
        }
        assert!(keys.len() > 2_000, "{}", keys.len());
    }

    #[test]
    fn absent_and_empty_optional_fields_differ() {
        let keys = [
            cache_key("1", &app("a", None), None),
            cache_key("1", &app("a", Some("")), None),
            cache_key("1", &app("a", None), Some("")),
            cache_key("1", &app("a", Some("")), Some("")),
            cache_key("1", &user("a"), None),
        ];
        let unique: HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
    }

    #[test]
    fn slots_stay_in_range_and_probes_are_consecutive() {
        for slots in [1, 2, 7, 1024, 100_003, u32::MAX] {
            for key in ["", "s1:1u1:a", "s2:42a2:idk3:key"] {
                let first = slot(key, slots, 0);
                assert!(first < slots);
                for probe in 1..PROBES {
                    let expected =
                        ((u64::from(first) + u64::from(probe)) % u64::from(slots)) as u32;
                    // Equal unless the hash itself wrapped around u64::MAX.
                    assert_eq!(slot(key, slots, probe), expected);
                }
            }
        }
        assert_eq!(slot("anything", 0, 3), 0);
    }

    #[test]
    fn slots_spread_evenly() {
        // 100k sequential user keys over 1024 slots: every slot within ±25 % of the mean.
        let slots = 1024u32;
        let mut counts = vec![0u32; slots as usize];
        let keys = 100_000u32;
        for n in 0..keys {
            let key = cache_key("7", &user(&format!("key{n}")), None);
            counts[slot(&key, slots, 0) as usize] += 1;
        }
        // Uniform hashing makes counts Poisson: chi-square ≈ slots - 1 ± sqrt(2 (slots - 1)).
        let mean = f64::from(keys) / f64::from(slots);
        let chi_square: f64 = counts
            .iter()
            .map(|&count| (f64::from(count) - mean).powi(2) / mean)
            .sum();
        assert!(chi_square < 1023.0 + 5.0 * 45.0, "chi-square {chi_square}");
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            f64::from(*min) > mean * 0.55 && f64::from(*max) < mean * 1.45,
            "min {min} max {max}"
        );
        // Keys differing in one byte land in different slots of a power-of-two table.
        let a = slot(&cache_key("7", &user("key-a"), None), 1 << 16, 0);
        let b = slot(&cache_key("7", &user("key-b"), None), 1 << 16, 0);
        assert_ne!(a, b);
    }
}
