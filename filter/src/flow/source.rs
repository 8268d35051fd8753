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

/// The first element when `value` is a list in proxy-wasm's pair encoding (a little-endian u32 count,
/// then a (key length, value length) u32 pair per entry, then each key and value NUL-terminated; list
/// elements are keys with empty values); otherwise `value` itself.
fn first_of_list(value: Vec<u8>) -> Vec<u8> {
    decode_first_key(&value).unwrap_or(value)
}

fn decode_first_key(bytes: &[u8]) -> Option<Vec<u8>> {
    let u32_at = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = u32_at(0)?;
    if count == 0 || count > 1024 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((u32_at(4 + 8 * i)?, u32_at(8 + 8 * i)?));
    }
    let data_start = 4 + 8 * count;
    let data_len: usize = sizes.iter().map(|(k, v)| k + v + 2).sum();
    if data_start.checked_add(data_len)? != bytes.len() {
        return None;
    }
    let (first_key, _) = *sizes.first()?;
    bytes
        .get(data_start..data_start + first_key)
        .map(<[u8]>::to_vec)
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
