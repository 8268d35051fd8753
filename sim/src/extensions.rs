//! The `3scale-options` request header (apisonator's API extensions).
//!
//! The header is a query string parsed with the same nested-parameter rules as the request;
//! `no_body` can also come from the deprecated `no_body` query parameter.

use crate::params::{Hash, Param, parse_nested_query};

/// The extensions a request asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// Empty bodies on status and error answers.
    pub no_body: bool,
    /// `3scale-rejection-reason` on 409 answers.
    pub rejection_reason_header: bool,
    /// `3scale-limit-*` headers on 200 and limits-exceeded 409 answers.
    pub limit_headers: bool,
    /// `<hierarchy>` section.
    pub hierarchy: bool,
    /// Usage of child metrics is not propagated to parents.
    pub flat_usage: bool,
    /// `<app_keys>` section.
    pub list_app_keys: bool,
    /// The parsed header, for the context of stored errors.
    pub raw: Vec<(String, String)>,
}

impl Extensions {
    /// Reads the header value and the request's top-level parameters. An unparsable header
    /// counts as no header.
    pub fn parse(header: Option<&[u8]>, params: &Hash) -> Self {
        let options = header
            .and_then(|h| parse_nested_query(h).ok())
            .unwrap_or_default();
        let flag = |name: &str| options.str(name) == Some("1");
        // `ext[:no_body] || params[:no_body]`, then anything but "false"/"0" enables it.
        let no_body = match options
            .get("no_body")
            .filter(|p| p.is_present())
            .or(params.get("no_body"))
        {
            None | Some(Param::Nil) => false,
            Some(Param::Str(t)) => t.value != "false" && t.value != "0",
            Some(_) => true,
        };
        let raw = options
            .iter()
            .map(|(k, v)| (k.to_owned(), v.as_str().unwrap_or("").to_owned()))
            .collect();
        Self {
            no_body,
            rejection_reason_header: flag("rejection_reason_header"),
            limit_headers: flag("limit_headers"),
            hierarchy: flag("hierarchy"),
            flat_usage: flag("flat_usage"),
            list_app_keys: flag("list_app_keys"),
            raw,
        }
    }

    /// The extensions as apisonator stores them in an error's `context_info`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.raw {
            map.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        if self.no_body {
            map.insert("no_body".into(), serde_json::Value::Bool(true));
        }
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn ext(header: &str, query: &str) -> Extensions {
        Extensions::parse(
            Some(header.as_bytes()),
            &parse_nested_query(query.as_bytes()).unwrap(),
        )
    }

    #[test]
    fn apicast_header() {
        let e = ext("rejection_reason_header=1&limit_headers=1&no_body=1", "");
        assert!(e.no_body && e.rejection_reason_header && e.limit_headers);
        assert!(!e.hierarchy && !e.flat_usage && !e.list_app_keys);
    }

    #[test]
    fn only_exact_one_enables_flags() {
        let e = ext(
            "limit_headers=true&hierarchy=11&flat_usage=1&list_app_keys=1",
            "",
        );
        assert!(!e.limit_headers && !e.hierarchy && e.flat_usage && e.list_app_keys);
    }

    #[test]
    fn no_body_values() {
        assert!(ext("no_body=yes", "").no_body);
        assert!(ext("no_body=", "").no_body);
        assert!(!ext("no_body=0", "").no_body);
        assert!(!ext("no_body=false", "").no_body);
        assert!(ext("", "no_body=true").no_body);
        assert!(!ext("", "no_body").no_body, "a key without value is nil");
        assert!(!ext("no_body", "").no_body);
        assert!(
            ext("no_body", "no_body=1").no_body,
            "a nil header value falls back to the query"
        );
        assert!(!ext("no_body=0", "no_body=1").no_body, "the header wins");
        assert!(ext("no_body[x]=1", "").no_body);
    }

    #[test]
    fn broken_header_is_ignored() {
        let e = ext("limit_headers=1&x=%zz", "");
        assert_eq!(e, Extensions::default());
        let none = Extensions::parse(None, &Hash::new());
        assert_eq!(none, Extensions::default());
    }
}
