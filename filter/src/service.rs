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
