//! The request as the credentials extractor and the service selector see it, backed by hostcalls.

use crate::args::Args;
use crate::config::JwtSource;
use crate::credentials::Source;
use crate::host::Host;
use crate::pairs;
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
    /// resolves the path down to the claim and returns a string claim as its raw bytes, a list claim
    /// (e.g. `aud: ["a", "b"]`) in proxy-wasm's pair encoding, of which the first element is used.
    fn jwt_claim(&mut self, claim: &str) -> Option<Vec<u8>> {
        let path = [
            "metadata",
            "filter_metadata",
            &self.jwt.filter,
            &self.jwt.payload_key,
            claim,
        ];
        self.host.property(&path).map(first_of_list)
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

/// The first element when `value` is a list in proxy-wasm's map encoding (list elements are keys
/// with empty values); otherwise `value` itself.
fn first_of_list(value: Vec<u8>) -> Vec<u8> {
    let first = pairs::decode(&value).and_then(|entries| entries.into_iter().next());
    match first.and_then(|(key, _)| value.get(key)) {
        Some(key) => key.to_vec(),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_claims_yield_their_first_element_and_strings_stay_as_they_are() {
        let list = [
            &[2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0][..],
            b"client-a\0\0client-b\0\0",
        ]
        .concat();
        assert_eq!(first_of_list(list), b"client-a".to_vec());
        assert_eq!(first_of_list(b"oidc-prod".to_vec()), b"oidc-prod".to_vec());
        assert_eq!(first_of_list(vec![1, 0, 0, 0, 9]), vec![1, 0, 0, 0, 9]);
        assert_eq!(first_of_list(Vec::new()), Vec::<u8>::new());
    }
}
