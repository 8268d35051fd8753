//! Application credentials: which kinds a service accepts, where they are found in a request.
//!
//! A service names one kind of credentials (3scale's `backend_version`) and an ordered list of places
//! to look; the first place that offers credentials wins, and an `app_id`/`app_key` pair always comes
//! from one place. Values are checked before anything is sent to 3scale: a client must not be able to
//! make apisonator answer `not_valid_data`, which the gateway would have to report as its own fault.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::args::Args;

/// The credentials that identify an application to 3scale.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// `backend_version` 1: one key identifies the application.
    UserKey(String),
    /// `backend_version` 2 (`app_key` optional) and OpenID Connect (the client id, never a key).
    AppId {
        app_id: String,
        app_key: Option<String>,
    },
}

/// The kind of credentials a service accepts: 3scale `backend_version` 1, 2 and `oauth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    UserKey,
    AppId,
    /// OpenID Connect: the application is the client id found in a claim of a JWT that Envoy's
    /// `jwt_authn` verified.
    Oidc,
}

impl Kind {
    /// 3scale's `backend_version` for this kind.
    pub fn backend_version(self) -> &'static str {
        match self {
            Kind::UserKey => "1",
            Kind::AppId => "2",
            Kind::Oidc => "oauth",
        }
    }
}

/// A place in the request where credentials may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    Query,
    /// An `application/x-www-form-urlencoded` body the filter buffered.
    Form,
    Header,
    /// `Authorization: Basic`: user = `user_key` or `app_id`, password = `app_key`.
    Basic,
    /// `Authorization: Bearer`: the token is the `user_key` or the `app_id`.
    Bearer,
    /// A claim of the JWT verified by `jwt_authn` (OpenID Connect only).
    JwtClaim,
}

impl Location {
    /// The name used in configuration and debug output.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Query => "query",
            Location::Form => "form",
            Location::Header => "header",
            Location::Basic => "basic",
            Location::Bearer => "bearer",
            Location::JwtClaim => "jwt_claim",
        }
    }
}

/// The names under which the three credential values travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub user_key: String,
    pub app_id: String,
    pub app_key: String,
}

impl Default for Names {
    /// 3scale's own names, used by APIcast unless a service renames them.
    fn default() -> Self {
        Names {
            user_key: "user_key".to_owned(),
            app_id: "app_id".to_owned(),
            app_key: "app_key".to_owned(),
        }
    }
}

/// Where and how a service's credentials are looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    /// Ordered, first hit wins (JwtClaim only for Oidc; Oidc uses only JwtClaim).
    pub locations: Vec<Location>,
    /// Query-string and form parameter names.
    pub params: Names,
    /// Header names (lower-case).
    pub headers: Names,
    /// OIDC: the claim holding the client id.
    pub jwt_claim: String,
}

/// The `Authorization` header, as Envoy names it.
const AUTHORIZATION: &str = "authorization";

/// Longer values are refused. 3scale keys are 32 hex digits and client ids rarely pass 100 bytes; the
/// bound keeps callout URLs and cache keys small whatever a client sends.
pub const MAX_CREDENTIAL_BYTES: usize = 512;

/// Base64 of `app_id:app_key` at the longest values accepted; a longer Basic token cannot be valid.
const MAX_BASIC_TOKEN_BYTES: usize = (2 * MAX_CREDENTIAL_BYTES + 1).div_ceil(3) * 4;

/// Standard base64 (RFC 7617), with or without padding: many clients drop it.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl Spec {
    /// Sensible defaults: 3scale's parameter and header names; keys looked for in the query string, then
    /// a form body, then headers; OIDC client ids in the `azp` claim.
    pub fn default_for(kind: Kind) -> Spec {
        let locations = match kind {
            Kind::UserKey | Kind::AppId => vec![Location::Query, Location::Form, Location::Header],
            Kind::Oidc => vec![Location::JwtClaim],
        };
        Spec {
            kind,
            locations,
            params: Names::default(),
            headers: Names::default(),
            jwt_claim: "azp".to_owned(),
        }
    }

    /// Whether a location is one this spec's kind can use.
    pub fn supports(&self, location: Location) -> bool {
        (self.kind == Kind::Oidc) == (location == Location::JwtClaim)
    }

    /// Checks what the types cannot: for the config loader, which prefixes the reason with the JSON path.
    pub fn check(&self) -> Result<(), String> {
        if self.locations.is_empty() {
            return Err("no credential locations".to_owned());
        }
        for (index, &location) in self.locations.iter().enumerate() {
            if !self.supports(location) {
                return Err(format!(
                    "location `{}` cannot hold `{}` credentials",
                    location.as_str(),
                    self.kind.backend_version()
                ));
            }
            if self
                .locations
                .get(..index)
                .is_some_and(|before| before.contains(&location))
            {
                return Err(format!("location `{}` is listed twice", location.as_str()));
            }
        }
        for (what, name) in [
            ("parameter", &self.params.user_key),
            ("parameter", &self.params.app_id),
            ("parameter", &self.params.app_key),
            ("header", &self.headers.user_key),
            ("header", &self.headers.app_id),
            ("header", &self.headers.app_key),
        ] {
            if name.is_empty() {
                return Err(format!("a credential {what} name is empty"));
            }
        }
        let headers = [
            &self.headers.user_key,
            &self.headers.app_id,
            &self.headers.app_key,
        ];
        if let Some(bad) = headers
            .iter()
            .find(|name| !name.bytes().all(is_lowercase_header_char))
        {
            return Err(format!(
                "header name `{bad}` must be lower-case letters, digits, `-` or `_`"
            ));
        }
        if self.kind == Kind::Oidc && self.jwt_claim.is_empty() {
            return Err("the JWT claim name is empty".to_owned());
        }
        Ok(())
    }

    /// Whether a form body must be buffered to look for credentials.
    pub fn reads_form(&self) -> bool {
        self.locations.contains(&Location::Form)
    }

    /// The parameter names (query/form) or header names this spec reads at `location` (e.g. for Query with AppId:
    /// [app_id, app_key]); Basic/Bearer → the `authorization` header. Used to strip credentials before the request
    /// goes upstream.
    pub fn names_at(&self, location: Location) -> Vec<&str> {
        if !self.supports(location) {
            return Vec::new();
        }
        match location {
            Location::Query | Location::Form => self.names_of_kind(&self.params),
            Location::Header => self.names_of_kind(&self.headers),
            Location::Basic | Location::Bearer => vec![AUTHORIZATION],
            Location::JwtClaim => Vec::new(),
        }
    }

    fn names_of_kind<'a>(&self, names: &'a Names) -> Vec<&'a str> {
        match self.kind {
            Kind::UserKey => vec![&names.user_key],
            Kind::AppId => vec![&names.app_id, &names.app_key],
            Kind::Oidc => Vec::new(),
        }
    }
}

fn is_lowercase_header_char(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'-' | b'_')
}

/// What the request offers. The glue implements it with hostcalls (each costs ~0.6 µs: only ask for what you need,
/// in location order, and stop at the first hit); tests implement it with maps.
pub trait Source {
    /// A request header's raw value: it may be non-UTF-8.
    fn header(&mut self, name: &str) -> Option<Vec<u8>>;
    fn query(&self) -> &Args;
    /// None unless a urlencoded form body was buffered.
    fn form(&self) -> Option<&Args>;
    /// A claim of `jwt_authn`'s verified payload.
    fn jwt_claim(&mut self, claim: &str) -> Option<Vec<u8>>;
}

/// Credentials and where they were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub credentials: Credentials,
    pub location: Location,
}

/// The outcome of looking for credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extracted {
    Found(Found),
    /// No location offered credentials (`auth_missing`).
    Missing,
    /// The first location offering credentials offered unusable ones (`auth_failed`, without asking 3scale).
    Invalid(Location),
}

/// Looks for credentials in `spec.locations` order and stops at the first location that offers any.
pub fn extract(spec: &Spec, source: &mut impl Source) -> Extracted {
    let mut request = Request {
        source,
        authorization: None,
    };
    for &location in &spec.locations {
        match request.offer(spec, location) {
            Ok(None) => {}
            Ok(Some(credentials)) => {
                return Extracted::Found(Found {
                    credentials,
                    location,
                });
            }
            Err(Rejected) => return Extracted::Invalid(location),
        }
    }
    Extracted::Missing
}

/// A value that is present but unusable.
#[derive(Debug, PartialEq, Eq)]
struct Rejected;

/// What a location offers: nothing, credentials, or something unusable.
type Offer = Result<Option<Credentials>, Rejected>;

/// The source plus the `Authorization` header, read at most once for Basic and Bearer together.
struct Request<'s, S> {
    source: &'s mut S,
    authorization: Option<Option<Vec<u8>>>,
}

impl<S: Source> Request<'_, S> {
    fn offer(&mut self, spec: &Spec, location: Location) -> Offer {
        if !spec.supports(location) {
            return Ok(None);
        }
        match location {
            Location::Query => from_args(spec, self.source.query()),
            Location::Form => self
                .source
                .form()
                .map_or(Ok(None), |form| from_args(spec, form)),
            Location::Header => by_name(spec.kind, &spec.headers, |name| self.source.header(name)),
            Location::Basic => from_basic(spec.kind, self.authorization_token("basic")),
            Location::Bearer => from_bearer(spec.kind, self.authorization_token("bearer")),
            Location::JwtClaim => {
                let client_id = self.source.jwt_claim(&spec.jwt_claim);
                Ok(present(client_id.as_deref().unwrap_or_default())?.map(app_id_only))
            }
        }
    }

    /// The token after `scheme` in the `Authorization` header; None when the header is absent or uses
    /// another scheme.
    fn authorization_token(&mut self, scheme: &str) -> Option<&[u8]> {
        let source = &mut self.source;
        let header = self
            .authorization
            .get_or_insert_with(|| source.header(AUTHORIZATION))
            .as_deref()?;
        let header = header.trim_ascii();
        let split = header
            .iter()
            .position(|&byte| byte == b' ' || byte == b'\t')
            .unwrap_or(header.len());
        let (name, token) = header.split_at_checked(split)?;
        name.eq_ignore_ascii_case(scheme.as_bytes())
            .then(|| token.trim_ascii_start())
    }
}

fn from_args(spec: &Spec, args: &Args) -> Offer {
    by_name(spec.kind, &spec.params, |name| args.first(name))
}

/// Reads the values of `kind` under `names` through `lookup`; the `app_key` is only asked for once an
/// `app_id` is present, as each header lookup is a hostcall.
fn by_name<V: AsRef<[u8]>>(
    kind: Kind,
    names: &Names,
    mut lookup: impl FnMut(&str) -> Option<V>,
) -> Offer {
    match kind {
        Kind::UserKey => {
            let user_key = lookup(&names.user_key);
            Ok(present(bytes(&user_key))?.map(|key| Credentials::UserKey(key.to_owned())))
        }
        Kind::AppId => {
            let app_id = lookup(&names.app_id);
            let Some(app_id) = present(bytes(&app_id))? else {
                return Ok(None);
            };
            let app_key = lookup(&names.app_key);
            app_pair(app_id, bytes(&app_key))
        }
        Kind::Oidc => Ok(None),
    }
}

fn bytes<V: AsRef<[u8]>>(value: &Option<V>) -> &[u8] {
    value.as_ref().map_or(&[], AsRef::as_ref)
}

/// `user:password`. As APIcast, a `user_key` may travel as the password when the user part is empty.
/// A token without `:` is all user (some clients send just the key).
fn from_basic(kind: Kind, token: Option<&[u8]>) -> Offer {
    let Some(token) = token else {
        return Ok(None);
    };
    if token.len() > MAX_BASIC_TOKEN_BYTES {
        return Err(Rejected);
    }
    let decoded = BASIC_BASE64.decode(token).map_err(|_| Rejected)?;
    let mut parts = decoded.splitn(2, |&byte| byte == b':');
    let user = parts.next().unwrap_or_default();
    let password = parts.next().unwrap_or_default();
    match kind {
        Kind::UserKey => {
            let key = match present(user)? {
                Some(key) => Some(key),
                None => present(password)?,
            };
            Ok(key.map(|key| Credentials::UserKey(key.to_owned())))
        }
        Kind::AppId => match present(user)? {
            Some(app_id) => app_pair(app_id, password),
            None => Ok(None),
        },
        Kind::Oidc => Ok(None),
    }
}

fn from_bearer(kind: Kind, token: Option<&[u8]>) -> Offer {
    let Some(token) = present(token.unwrap_or_default())? else {
        return Ok(None);
    };
    match kind {
        Kind::UserKey => Ok(Some(Credentials::UserKey(token.to_owned()))),
        Kind::AppId => Ok(Some(app_id_only(token))),
        Kind::Oidc => Ok(None),
    }
}

/// An `app_id` found, with the `app_key` of the same location (optional, but checked when present).
fn app_pair(app_id: &str, app_key: &[u8]) -> Offer {
    let app_key = present(app_key)?;
    Ok(Some(Credentials::AppId {
        app_id: app_id.to_owned(),
        app_key: app_key.map(str::to_owned),
    }))
}

fn app_id_only(app_id: &str) -> Credentials {
    Credentials::AppId {
        app_id: app_id.to_owned(),
        app_key: None,
    }
}

/// A value is present when non-empty; a present value must be UTF-8 text of at most
/// [`MAX_CREDENTIAL_BYTES`] with no control characters or whitespace. U+FFFD counts as invalid too: it is
/// what undecodable bytes in a query string became, so the client sent something that was not UTF-8.
fn present(raw: &[u8]) -> Result<Option<&str>, Rejected> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_CREDENTIAL_BYTES {
        return Err(Rejected);
    }
    let text = std::str::from_utf8(raw).map_err(|_| Rejected)?;
    if text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == char::REPLACEMENT_CHARACTER)
    {
        return Err(Rejected);
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::collections::HashMap;

    use super::*;

    /// A request made of maps, recording every question asked.
    #[derive(Default)]
    struct Fake {
        headers: HashMap<String, Vec<u8>>,
        query: Args,
        form: Option<Args>,
        claims: HashMap<String, Vec<u8>>,
        asked: Vec<String>,
    }

    impl Fake {
        fn new() -> Self {
            Fake::default()
        }
        fn query(mut self, query: &str) -> Self {
            self.query = Args::parse(query.as_bytes());
            self
        }
        fn form(mut self, body: &str) -> Self {
            self.form = Some(Args::parse(body.as_bytes()));
            self
        }
        fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
            self.headers
                .insert(name.to_owned(), value.as_ref().to_vec());
            self
        }
        fn basic(self, plain: impl AsRef<[u8]>) -> Self {
            let token = base64::engine::general_purpose::STANDARD.encode(plain);
            self.header("authorization", format!("Basic {token}"))
        }
        fn claim(mut self, name: &str, value: &str) -> Self {
            self.claims
                .insert(name.to_owned(), value.as_bytes().to_vec());
            self
        }
    }

    impl Source for Fake {
        fn header(&mut self, name: &str) -> Option<Vec<u8>> {
            self.asked.push(format!("header:{name}"));
            self.headers.get(name).cloned()
        }
        fn query(&self) -> &Args {
            &self.query
        }
        fn form(&self) -> Option<&Args> {
            self.form.as_ref()
        }
        fn jwt_claim(&mut self, claim: &str) -> Option<Vec<u8>> {
            self.asked.push(format!("claim:{claim}"));
            self.claims.get(claim).cloned()
        }
    }

    fn spec_of(kind: Kind, locations: &[Location]) -> Spec {
        Spec {
            locations: locations.to_vec(),
            ..Spec::default_for(kind)
        }
    }

    fn user_key(key: &str, location: Location) -> Extracted {
        Extracted::Found(Found {
            credentials: Credentials::UserKey(key.to_owned()),
            location,
        })
    }

    fn app(app_id: &str, app_key: Option<&str>, location: Location) -> Extracted {
        Extracted::Found(Found {
            credentials: Credentials::AppId {
                app_id: app_id.to_owned(),
                app_key: app_key.map(str::to_owned),
            },
            location,
        })
    }

    use Location::*;

    #[test]
    fn defaults() {
        let keys = Spec::default_for(Kind::UserKey);
        assert_eq!(keys.locations, vec![Query, Form, Header]);
        assert_eq!(keys.params, Names::default());
        assert_eq!(keys.headers.app_key, "app_key");
        assert!(keys.check().is_ok());
        assert!(keys.reads_form());
        let oidc = Spec::default_for(Kind::Oidc);
        assert_eq!(oidc.locations, vec![JwtClaim]);
        assert_eq!(oidc.jwt_claim, "azp");
        assert!(oidc.check().is_ok());
        assert!(!oidc.reads_form());
        assert_eq!(Kind::AppId.backend_version(), "2");
    }

    #[test]
    fn user_key_in_every_location() {
        let all = [Query, Form, Header, Basic, Bearer];
        let spec = spec_of(Kind::UserKey, &all);
        assert_eq!(
            extract(&spec, &mut Fake::new().query("user_key=q")),
            user_key("q", Query)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().form("user_key=f")),
            user_key("f", Form)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().header("user_key", "h")),
            user_key("h", Header)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().basic("b:")),
            user_key("b", Basic)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().header("authorization", "Bearer t")),
            user_key("t", Bearer)
        );
        assert_eq!(extract(&spec, &mut Fake::new()), Extracted::Missing);
    }

    #[test]
    fn app_id_in_every_location() {
        let spec = spec_of(Kind::AppId, &[Query, Form, Header, Basic, Bearer]);
        let found = extract(&spec, &mut Fake::new().query("app_id=i&app_key=k"));
        assert_eq!(found, app("i", Some("k"), Query));
        assert_eq!(
            extract(&spec, &mut Fake::new().query("app_id=i")),
            app("i", None, Query)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().form("app_key=k&app_id=i")),
            app("i", Some("k"), Form)
        );
        let headers = Fake::new().header("app_id", "i").header("app_key", "k");
        assert_eq!(
            extract(&spec, &mut { headers }),
            app("i", Some("k"), Header)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().header("app_id", "i")),
            app("i", None, Header)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().basic("i:k")),
            app("i", Some("k"), Basic)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().basic("i:")),
            app("i", None, Basic)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().header("authorization", "bearer t")),
            app("t", None, Bearer)
        );
        assert_eq!(extract(&spec, &mut Fake::new()), Extracted::Missing);
    }

    #[test]
    fn oidc_reads_only_the_claim() {
        let spec = Spec::default_for(Kind::Oidc);
        let mut fake = Fake::new()
            .claim("azp", "client")
            .query("user_key=x&app_id=y");
        assert_eq!(extract(&spec, &mut fake), app("client", None, JwtClaim));
        assert_eq!(fake.asked, vec!["claim:azp"]);

        let spec = Spec {
            jwt_claim: "client_id".to_owned(),
            ..Spec::default_for(Kind::Oidc)
        };
        let mut fake = Fake::new().claim("azp", "a").claim("client_id", "c");
        assert_eq!(extract(&spec, &mut fake), app("c", None, JwtClaim));

        assert_eq!(extract(&spec, &mut Fake::new()), Extracted::Missing);
        assert_eq!(
            extract(&spec, &mut Fake::new().claim("client_id", "")),
            Extracted::Missing
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().claim("client_id", "a b")),
            Extracted::Invalid(JwtClaim)
        );
    }

    #[test]
    fn unsupported_locations_are_skipped_without_asking() {
        let spec = spec_of(Kind::Oidc, &[Query, Header, Basic, Bearer, JwtClaim]);
        let mut fake = Fake::new()
            .query("app_id=x")
            .header("app_id", "x")
            .basic("x:y")
            .claim("azp", "c");
        assert_eq!(extract(&spec, &mut fake), app("c", None, JwtClaim));
        assert_eq!(fake.asked, vec!["claim:azp"]);

        let spec = spec_of(Kind::UserKey, &[JwtClaim]);
        let mut fake = Fake::new().claim("azp", "c");
        assert_eq!(extract(&spec, &mut fake), Extracted::Missing);
        assert!(fake.asked.is_empty());
    }

    #[test]
    fn the_first_location_in_order_wins() {
        let request = || {
            Fake::new()
                .query("user_key=q")
                .form("user_key=f")
                .header("user_key", "h")
                .header("authorization", "Bearer t")
        };
        assert_eq!(
            extract(&spec_of(Kind::UserKey, &[Query, Header]), &mut request()),
            user_key("q", Query)
        );
        assert_eq!(
            extract(&spec_of(Kind::UserKey, &[Header, Query]), &mut request()),
            user_key("h", Header)
        );
        assert_eq!(
            extract(&spec_of(Kind::UserKey, &[Form, Query]), &mut request()),
            user_key("f", Form)
        );
        assert_eq!(
            extract(&spec_of(Kind::UserKey, &[Bearer, Query]), &mut request()),
            user_key("t", Bearer)
        );
        // Locations not listed are never read.
        assert_eq!(
            extract(
                &spec_of(Kind::UserKey, &[Header]),
                &mut Fake::new().query("user_key=q")
            ),
            Extracted::Missing
        );
    }

    #[test]
    fn the_app_id_pair_comes_from_one_location() {
        let spec = spec_of(Kind::AppId, &[Query, Header]);
        // The key in the header does not complete the id in the query.
        let mut fake = Fake::new().query("app_id=i").header("app_key", "k");
        assert_eq!(extract(&spec, &mut fake), app("i", None, Query));
        // A location with only a key is no hit: the next one is tried.
        let mut fake = Fake::new().query("app_key=k").header("app_id", "i");
        assert_eq!(extract(&spec, &mut fake), app("i", None, Header));
        assert_eq!(
            extract(&spec, &mut Fake::new().query("app_key=k")),
            Extracted::Missing
        );
        // Basic with an empty user is no hit for app ids either.
        let spec = spec_of(Kind::AppId, &[Basic]);
        assert_eq!(
            extract(&spec, &mut Fake::new().basic(":k")),
            Extracted::Missing
        );
    }

    #[test]
    fn only_non_empty_values_are_present() {
        let spec = spec_of(Kind::UserKey, &[Query, Header]);
        let mut fake = Fake::new()
            .query("user_key=&user_key=second")
            .header("user_key", "h");
        // The first occurrence is empty, so the query offers nothing.
        assert_eq!(extract(&spec, &mut fake), user_key("h", Header));
        let spec = spec_of(Kind::AppId, &[Query]);
        assert_eq!(
            extract(&spec, &mut Fake::new().query("app_id=i&app_key=")),
            app("i", None, Query)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().query("app_id=&app_key=k")),
            Extracted::Missing
        );
    }

    #[test]
    fn credentials_are_decoded_from_args_and_the_first_occurrence_wins() {
        let spec = spec_of(Kind::UserKey, &[Query]);
        assert_eq!(
            extract(&spec, &mut Fake::new().query("user%5Fkey=a%2Bb&user_key=x")),
            user_key("a+b", Query)
        );
    }

    #[test]
    fn renamed_parameters_and_headers() {
        let spec = Spec {
            params: Names {
                user_key: "api_key".into(),
                ..Names::default()
            },
            headers: Names {
                user_key: "x-api-key".into(),
                ..Names::default()
            },
            ..spec_of(Kind::UserKey, &[Query, Header])
        };
        assert_eq!(
            extract(&spec, &mut Fake::new().query("user_key=no&api_key=yes")),
            user_key("yes", Query)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().header("x-api-key", "h")),
            user_key("h", Header)
        );
        assert_eq!(spec.names_at(Query), vec!["api_key"]);
        assert_eq!(spec.names_at(Header), vec!["x-api-key"]);
    }

    #[test]
    fn invalid_values_are_refused_where_they_are_found() {
        let spec = spec_of(Kind::UserKey, &[Query, Form, Header, Bearer]);
        let too_long = "k".repeat(MAX_CREDENTIAL_BYTES + 1);
        let longest = "k".repeat(MAX_CREDENTIAL_BYTES);
        for (query, expected) in [
            (format!("user_key={too_long}"), Extracted::Invalid(Query)),
            (format!("user_key={longest}"), user_key(&longest, Query)),
            ("user_key=a%20b".to_owned(), Extracted::Invalid(Query)),
            ("user_key=a+b".to_owned(), Extracted::Invalid(Query)),
            ("user_key=a%00".to_owned(), Extracted::Invalid(Query)),
            ("user_key=%0A".to_owned(), Extracted::Invalid(Query)),
            ("user_key=%C2%85".to_owned(), Extracted::Invalid(Query)),
            ("user_key=%FF".to_owned(), Extracted::Invalid(Query)),
            ("user_key=%E2%80%83".to_owned(), Extracted::Invalid(Query)),
            ("user_key=%C3%A9t%C3%A9".to_owned(), user_key("été", Query)),
        ] {
            // An invalid value stops the search: later locations are not consulted.
            let mut fake = Fake::new().query(&query).header("user_key", "fine");
            assert_eq!(extract(&spec, &mut fake), expected, "{query}");
        }
        assert_eq!(
            extract(&spec, &mut Fake::new().form("user_key=a%09b")),
            Extracted::Invalid(Form)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().header("user_key", b"\xff\xfe")),
            Extracted::Invalid(Header)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().header("user_key", "a\x7f")),
            Extracted::Invalid(Header)
        );
        let mut fake = Fake::new().header("authorization", "Bearer a b");
        assert_eq!(extract(&spec, &mut fake), Extracted::Invalid(Bearer));
        let mut fake = Fake::new().header("authorization", b"Bearer \xc3\x28");
        assert_eq!(extract(&spec, &mut fake), Extracted::Invalid(Bearer));
    }

    #[test]
    fn an_invalid_app_key_invalidates_the_pair() {
        let spec = spec_of(Kind::AppId, &[Query, Header, Basic]);
        assert_eq!(
            extract(&spec, &mut Fake::new().query("app_id=i&app_key=a%20b")),
            Extracted::Invalid(Query)
        );
        let mut fake = Fake::new().header("app_id", "i").header("app_key", b"\x00");
        assert_eq!(extract(&spec, &mut fake), Extracted::Invalid(Header));
        assert_eq!(
            extract(&spec, &mut Fake::new().basic("i:k k")),
            Extracted::Invalid(Basic)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().basic(b"i:\xff")),
            Extracted::Invalid(Basic)
        );
        assert_eq!(
            extract(&spec, &mut Fake::new().basic("i i:k")),
            Extracted::Invalid(Basic)
        );
    }

    #[test]
    fn basic_edge_cases() {
        let keys = spec_of(Kind::UserKey, &[Basic]);
        let apps = spec_of(Kind::AppId, &[Basic]);
        let extract_with = |spec: &Spec, header: &[u8]| {
            extract(spec, &mut Fake::new().header("authorization", header))
        };

        // The scheme is case-insensitive, padding optional, extra blanks tolerated.
        assert_eq!(
            extract_with(&keys, b"bAsIc dXNlcjpwYXNz"),
            user_key("user", Basic)
        );
        assert_eq!(
            extract_with(&apps, b"Basic aTpr"),
            app("i", Some("k"), Basic)
        ); // "i:k", no padding needed
        assert_eq!(
            extract_with(&apps, b"Basic aTprMg"),
            app("i", Some("k2"), Basic)
        ); // "i:k2" unpadded
        assert_eq!(
            extract_with(&apps, b"Basic aTprMg=="),
            app("i", Some("k2"), Basic)
        );
        assert_eq!(
            extract_with(&apps, b"  Basic \t  aTprMg  "),
            app("i", Some("k2"), Basic)
        );

        // No colon: the whole text is the user.
        assert_eq!(extract_with(&keys, b"Basic a2V5"), user_key("key", Basic));
        assert_eq!(extract_with(&apps, b"Basic a2V5"), app("key", None, Basic));
        // Empty user: APIcast takes the password as the user_key.
        assert_eq!(
            extract(&keys, &mut Fake::new().basic(":secret")),
            user_key("secret", Basic)
        );
        // The password keeps any further colons.
        assert_eq!(
            extract(&apps, &mut Fake::new().basic("i:k:x")),
            app("i", Some("k:x"), Basic)
        );
        // Nothing in it.
        assert_eq!(
            extract(&keys, &mut Fake::new().basic(":")),
            Extracted::Missing
        );
        assert_eq!(extract_with(&keys, b"Basic"), Extracted::Missing);
        assert_eq!(extract_with(&keys, b"Basic "), Extracted::Missing);

        // Undecodable or non-UTF-8: refused.
        assert_eq!(extract_with(&keys, b"Basic !!!"), Extracted::Invalid(Basic));
        assert_eq!(
            extract_with(&keys, b"Basic a2V5 a2V5"),
            Extracted::Invalid(Basic)
        );
        assert_eq!(
            extract_with(&keys, b"Basic a2V5=x"),
            Extracted::Invalid(Basic)
        );
        assert_eq!(
            extract_with(&keys, b"Basic _-_-"),
            Extracted::Invalid(Basic)
        ); // base64url is not Basic
        assert_eq!(
            extract(&keys, &mut Fake::new().basic(b"\xff\xfe:k")),
            Extracted::Invalid(Basic)
        );
        let huge = format!("Basic {}", "A".repeat(MAX_BASIC_TOKEN_BYTES + 4));
        assert_eq!(
            extract_with(&keys, huge.as_bytes()),
            Extracted::Invalid(Basic)
        );
        let longest = format!(
            "{}:{}",
            "i".repeat(MAX_CREDENTIAL_BYTES),
            "k".repeat(MAX_CREDENTIAL_BYTES)
        );
        let extracted = extract(&apps, &mut Fake::new().basic(&longest));
        assert!(
            matches!(
                extracted,
                Extracted::Found(Found {
                    location: Basic,
                    ..
                })
            ),
            "{extracted:?}"
        );

        // Another scheme is no hit at all.
        assert_eq!(extract_with(&keys, b"Bearer a2V5"), Extracted::Missing);
        assert_eq!(extract_with(&keys, b"Basically a2V5"), Extracted::Missing);
        assert_eq!(
            extract_with(&keys, b"Digest username=x"),
            Extracted::Missing
        );
        assert_eq!(extract_with(&keys, b""), Extracted::Missing);
        assert_eq!(extract_with(&keys, b"\xff\xff"), Extracted::Missing);
    }

    #[test]
    fn bearer_edge_cases() {
        let keys = spec_of(Kind::UserKey, &[Bearer]);
        let extract_with =
            |header: &[u8]| extract(&keys, &mut Fake::new().header("authorization", header));
        assert_eq!(extract_with(b"BEARER tok"), user_key("tok", Bearer));
        assert_eq!(extract_with(b"Bearer   tok  "), user_key("tok", Bearer));
        assert_eq!(extract_with(b"Bearer"), Extracted::Missing);
        assert_eq!(extract_with(b"Bearer "), Extracted::Missing);
        assert_eq!(extract_with(b"Bearertok"), Extracted::Missing);
        assert_eq!(extract_with(b"Basic dG9r"), Extracted::Missing);
    }

    #[test]
    fn an_undecodable_basic_header_is_invalid_only_when_basic_is_read() {
        let header = ("authorization", "Basic !!!");
        let spec = spec_of(Kind::UserKey, &[Bearer, Header]);
        let mut fake = Fake::new()
            .header(header.0, header.1)
            .header("user_key", "h");
        assert_eq!(extract(&spec, &mut fake), user_key("h", Header));
    }

    #[test]
    fn the_source_is_asked_as_little_as_possible() {
        // Stops at the first hit.
        let spec = spec_of(Kind::UserKey, &[Header, Basic, Bearer]);
        let mut fake = Fake::new().header("user_key", "h");
        extract(&spec, &mut fake);
        assert_eq!(fake.asked, vec!["header:user_key"]);

        // Basic and Bearer share one read of the Authorization header.
        let spec = spec_of(Kind::UserKey, &[Basic, Bearer, Header]);
        let mut fake = Fake::new().header("authorization", "Bearer t");
        assert_eq!(extract(&spec, &mut fake), user_key("t", Bearer));
        assert_eq!(fake.asked, vec!["header:authorization"]);
        let mut fake = Fake::new();
        assert_eq!(extract(&spec, &mut fake), Extracted::Missing);
        assert_eq!(fake.asked, vec!["header:authorization", "header:user_key"]);

        // No app_key is asked for without an app_id.
        let spec = spec_of(Kind::AppId, &[Header]);
        let mut fake = Fake::new().header("app_key", "k");
        assert_eq!(extract(&spec, &mut fake), Extracted::Missing);
        assert_eq!(fake.asked, vec!["header:app_id"]);
        let mut fake = Fake::new().header("app_id", "i");
        extract(&spec, &mut fake);
        assert_eq!(fake.asked, vec!["header:app_id", "header:app_key"]);

        // Query and form locations cost no hostcall at all.
        let spec = spec_of(Kind::AppId, &[Query, Form]);
        let mut fake = Fake::new().form("app_id=i");
        assert_eq!(extract(&spec, &mut fake), app("i", None, Form));
        assert!(fake.asked.is_empty());
    }

    #[test]
    fn names_to_strip_per_location() {
        let keys = Spec::default_for(Kind::UserKey);
        assert_eq!(keys.names_at(Query), vec!["user_key"]);
        assert_eq!(keys.names_at(Form), vec!["user_key"]);
        assert_eq!(keys.names_at(Header), vec!["user_key"]);
        assert_eq!(keys.names_at(Basic), vec!["authorization"]);
        assert_eq!(keys.names_at(Bearer), vec!["authorization"]);
        assert!(keys.names_at(JwtClaim).is_empty());
        let apps = Spec::default_for(Kind::AppId);
        assert_eq!(apps.names_at(Query), vec!["app_id", "app_key"]);
        assert_eq!(apps.names_at(Header), vec!["app_id", "app_key"]);
        let oidc = Spec::default_for(Kind::Oidc);
        for location in [Query, Form, Header, Basic, Bearer, JwtClaim] {
            assert!(oidc.names_at(location).is_empty());
        }
    }

    #[test]
    fn check_rejects_what_cannot_work() {
        let cases = [
            (spec_of(Kind::UserKey, &[]), "no credential locations"),
            (
                spec_of(Kind::UserKey, &[Query, JwtClaim]),
                "`jwt_claim` cannot hold `1`",
            ),
            (
                spec_of(Kind::Oidc, &[Bearer]),
                "`bearer` cannot hold `oauth`",
            ),
            (
                spec_of(Kind::AppId, &[Query, Header, Query]),
                "`query` is listed twice",
            ),
            (
                Spec {
                    headers: Names {
                        app_id: "X-App-Id".into(),
                        ..Names::default()
                    },
                    ..Spec::default_for(Kind::AppId)
                },
                "`X-App-Id` must be lower-case",
            ),
            (
                Spec {
                    params: Names {
                        app_key: String::new(),
                        ..Names::default()
                    },
                    ..Spec::default_for(Kind::AppId)
                },
                "parameter name is empty",
            ),
            (
                Spec {
                    jwt_claim: String::new(),
                    ..Spec::default_for(Kind::Oidc)
                },
                "claim name is empty",
            ),
        ];
        for (spec, expected) in cases {
            let err = spec.check().unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn arbitrary_authorization_headers_never_panic() {
        let spec = spec_of(Kind::AppId, &[Basic, Bearer]);
        let mut state = 0x9e37_79b9_u32;
        for _ in 0..3000 {
            let mut header = b"Basic ".to_vec();
            for _ in 0..state % 40 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                header.push((state >> 8) as u8);
            }
            state = state.wrapping_add(0x6d2b_79f5);
            let _ = extract(&spec, &mut Fake::new().header("authorization", &header));
        }
    }
}
