//! Which service serves a request: route metadata naming it, then the route name, then host globs.

use std::rc::Rc;

use crate::config::{Config, Service};

/// What the request offers to identify its service, read lazily: properties cost a hostcall each.
pub trait RouteInfo {
    /// `filter_metadata.tollgate.service` of the matched Envoy route.
    fn metadata_service(&mut self) -> Option<Vec<u8>>;
    /// The matched Envoy route's name.
    fn route_name(&mut self) -> Option<Vec<u8>>;
    /// `:authority` (Host).
    fn authority(&mut self) -> Option<Vec<u8>>;
}

/// The first service that matches, in order of precedence.
pub fn select(config: &Config, route: &mut impl RouteInfo) -> Option<Rc<Service>> {
    if let Some(only) = &config.sole_service {
        return Some(Rc::clone(only));
    }
    if let Some(id) = route.metadata_service() {
        if let Some(service) = config
            .services
            .iter()
            .find(|s| s.id.as_bytes() == id.as_slice())
        {
            return Some(Rc::clone(service));
        }
    }
    if config.uses_route_names {
        if let Some(name) = route.route_name() {
            let by_name = config.services.iter().find(|s| {
                s.route_names
                    .iter()
                    .any(|n| n.as_bytes() == name.as_slice())
            });
            if let Some(service) = by_name {
                return Some(Rc::clone(service));
            }
        }
    }
    let authority = route.authority()?;
    config
        .services
        .iter()
        .find(|s| s.hosts.iter().any(|glob| glob.matches(&authority)))
        .map(Rc::clone)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Answers like a route carrying metadata for `svc-b`, named `route-b`, for Host `a.example.com`;
    /// records what was read.
    #[derive(Default)]
    struct Recorded {
        reads: Vec<&'static str>,
    }

    impl RouteInfo for Recorded {
        fn metadata_service(&mut self) -> Option<Vec<u8>> {
            self.reads.push("metadata");
            Some(b"svc-b".to_vec())
        }
        fn route_name(&mut self) -> Option<Vec<u8>> {
            self.reads.push("route name");
            Some(b"route-b".to_vec())
        }
        fn authority(&mut self) -> Option<Vec<u8>> {
            self.reads.push("authority");
            Some(b"a.example.com".to_vec())
        }
    }

    fn config(services: &str) -> Config {
        let json =
            format!(r#"{{"backend": {{"cluster": "threescale"}}, "services": [{services}]}}"#);
        Config::load(json.as_bytes(), &|_| None).unwrap()
    }

    fn service(id: &str, matching: &str) -> String {
        format!(
            r#"{{"id": "{id}", "service_token": "t", "match": {matching},
                "credentials": {{"kind": "user_key"}},
                "mapping_rules": [{{"method": "ANY", "pattern": "/", "metric": "hits"}}]}}"#
        )
    }

    fn selected(config: &Config) -> (Option<String>, Vec<&'static str>) {
        let mut route = Recorded::default();
        let service = select(config, &mut route).map(|s| s.id.clone());
        (service, route.reads)
    }

    #[test]
    fn route_metadata_comes_first() {
        let both = config(&format!(
            "{}, {}",
            service("svc-a", r#"{"hosts": ["*"]}"#),
            service("svc-b", r#"{"hosts": ["b.example.com"]}"#)
        ));
        assert_eq!(selected(&both), (Some("svc-b".into()), vec!["metadata"]));
    }

    #[test]
    fn then_the_route_name_then_the_host() {
        let by_name = config(&format!(
            "{}, {}",
            service("svc-a", r#"{"hosts": ["*"]}"#),
            service("svc-c", r#"{"route_names": ["route-b"]}"#)
        ));
        assert_eq!(
            selected(&by_name),
            (Some("svc-c".into()), vec!["metadata", "route name"])
        );
        let by_host = config(&format!(
            "{}, {}",
            service("svc-a", r#"{"hosts": ["a.example.com"]}"#),
            service("svc-c", r#"{"hosts": ["c.example.com"]}"#)
        ));
        assert_eq!(
            selected(&by_host),
            (Some("svc-a".into()), vec!["metadata", "authority"])
        );
    }

    #[test]
    fn a_sole_service_for_every_host_is_chosen_without_reading_anything() {
        let sole = config(&service("svc-a", r#"{"hosts": ["*"]}"#));
        assert_eq!(selected(&sole), (Some("svc-a".into()), vec![]));
        // Metadata could still name it for another Host: it is read.
        let one_host = config(&service("svc-a", r#"{"hosts": ["x.example.com"]}"#));
        assert_eq!(selected(&one_host), (None, vec!["metadata", "authority"]));
    }
}
