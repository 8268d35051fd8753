//! The request as the credentials extractor and the service selector see it, backed by hostcalls.

use crate::args::Args;
use crate::config::JwtSource;
use crate::credentials::Source;
use crate::host::Host;
use crate::service::RouteInfo;

pub struct RequestSource<'a, H: Host> {
    pub host: &'a H,
    pub query: &'a Args,
    pub form: Option<&'a Args>,
    pub jwt: &'a JwtSource,
}

impl<H: Host> Source for RequestSource<'_, H> {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.host.request_header(name)
    }

    fn query(&self) -> &Args {
        self.query
    }

    fn form(&self) -> Option<&Args> {
        self.form
    }

    /// `jwt_authn` stores the verified payload as a Struct in the request's dynamic metadata; Envoy
    /// resolves the path down to the claim and returns a string claim as its raw bytes.
    fn jwt_claim(&mut self, claim: &str) -> Option<Vec<u8>> {
        let path = [
            "metadata",
            "filter_metadata",
            &self.jwt.filter,
            &self.jwt.payload_key,
            claim,
        ];
        self.host.property(&path)
    }
}

pub struct Route<'a, H: Host> {
    pub host: &'a H,
}

impl<H: Host> RouteInfo for Route<'_, H> {
    fn metadata_service(&mut self) -> Option<Vec<u8>> {
        self.host
            .property(&[
                "xds",
                "route_metadata",
                "filter_metadata",
                "tollgate",
                "service",
            ])
            .filter(|v| !v.is_empty())
    }

    fn route_name(&mut self) -> Option<Vec<u8>> {
        self.host
            .property(&["xds", "route_name"])
            .filter(|v| !v.is_empty())
    }

    fn authority(&mut self) -> Option<Vec<u8>> {
        self.host.request_header(":authority")
    }
}
