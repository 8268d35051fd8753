//! What Tollgate sends to 3scale: authorize/authrep query strings, the `3scale-options` header and
//! batched report bodies.
//!
//! Parameters use Rack's nested syntax with the brackets percent-encoded (`usage%5Bhits%5D=1`),
//! exactly as APIcast sends them; every name segment and value is form-encoded.

use std::fmt::{self, Write as _};

use crate::credentials::Credentials;
use crate::usage::Usage;

/// How the gateway authenticates itself to 3scale for a service.
///
/// `Debug` hides the secret: these values end up in configuration dumps and logs.
#[derive(Clone, PartialEq, Eq)]
pub enum BackendAuth {
    ServiceToken(String),
    ProviderKey(String),
}

impl BackendAuth {
    fn param(&self) -> (&'static str, &str) {
        match self {
            BackendAuth::ServiceToken(token) => ("service_token", token),
            BackendAuth::ProviderKey(key) => ("provider_key", key),
        }
    }
}

impl fmt::Debug for BackendAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAuth::ServiceToken(_) => f.write_str("ServiceToken(***)"),
            BackendAuth::ProviderKey(_) => f.write_str("ProviderKey(***)"),
        }
    }
}

/// Which authorization endpoint to call. Always the non-oauth ones: OpenID Connect services are
/// authorized with `app_id` on these too, avoiding GA's malformed `oauth_*` bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Authorize and, when authorized, report the usage (per-request mode).
    Authrep,
    /// Authorize only; the usage is a prediction (cache refreshes, authorize-then-report).
    Authorize,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Authrep => "/transactions/authrep.xml",
            Endpoint::Authorize => "/transactions/authorize.xml",
        }
    }

    /// Whether the endpoint records usage, and so takes `log[code]`.
    pub fn reports(self) -> bool {
        self == Endpoint::Authrep
    }
}

/// One authorize or authrep call.
#[derive(Clone, Debug)]
pub struct AuthCall<'a> {
    pub endpoint: Endpoint,
    pub auth: &'a BackendAuth,
    pub service_id: &'a str,
    pub credentials: &'a Credentials,
    pub usage: &'a Usage,
    /// Sent as `referrer` when the service filters on it.
    pub referrer: Option<&'a str>,
    /// The upstream's status code, for authrep after the response (ignored by authorize).
    pub log_code: Option<u16>,
}

impl AuthCall<'_> {
    /// The callout's `:path`: `prefix` (the backend's path prefix, may be empty) followed by the
    /// endpoint and its query string, e.g.
    /// `/transactions/authrep.xml?service_token=t&service_id=1&app_id=a&app_key=k&usage%5Bhits%5D=1&log%5Bcode%5D=200`.
    ///
    /// Usage entries are sent as given, zero deltas included: a `usage` parameter limits which
    /// limits apisonator checks, so dropping entries would change the answer.
    pub fn path(&self, prefix: &str) -> String {
        let mut form = Form::with_capacity(160);
        form.out.push_str(prefix.trim_end_matches('/'));
        form.out.push_str(self.endpoint.path());
        form.out.push('?');
        form.caller(self.auth, self.service_id);
        form.credentials(None, self.credentials, true);
        if let Some(referrer) = self.referrer {
            form.pair("referrer", referrer);
        }
        for (metric, delta) in self.usage.iter() {
            form.key("usage").sub(metric).number(delta);
        }
        if let (true, Some(code)) = (self.endpoint.reports(), self.log_code) {
            form.key("log").sub("code").number(code);
        }
        form.out
    }
}

/// The `3scale-options` header: the rejection reason and limit headers on every answer, and the
/// metric hierarchy when asked (cache refreshes need it to charge child usage to parents).
///
/// Never `no_body`: Tollgate reads the plan and the error codes, and apisonator empties error
/// bodies too under `no_body`.
pub fn options(hierarchy: bool) -> &'static str {
    if hierarchy {
        "rejection_reason_header=1&limit_headers=1&hierarchy=1"
    } else {
        "rejection_reason_header=1&limit_headers=1"
    }
}

/// How many parameters a report body may carry. apisonator (Rack 3.1) answers 400 above 4096;
/// the margin keeps a batcher's estimate safe.
pub const REPORT_PARAM_BUDGET: usize = 4000;

/// One application's usage in a batched report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportTransaction {
    /// Sent as `app_id` or `user_key`; an `app_key` is ignored (reports do not need it).
    pub application: Credentials,
    /// Summed deltas per metric. 3scale drops a transaction without non-zero usage, `log` included.
    pub usage: Vec<(String, u64)>,
    pub log_code: Option<u16>,
    /// UNIX seconds; `None` lets 3scale use the time it receives the report.
    pub timestamp: Option<u64>,
}

impl ReportTransaction {
    /// How many form parameters this transaction adds to a report body.
    pub fn param_count(&self) -> usize {
        1 + self.usage.len()
            + usize::from(self.log_code.is_some())
            + usize::from(self.timestamp.is_some())
    }
}

/// Parameters of a whole report body: the caller's two plus every transaction's.
pub fn report_param_count(transactions: &[ReportTransaction]) -> usize {
    transactions.iter().fold(2, |total, transaction| {
        total.saturating_add(transaction.param_count())
    })
}

/// The `application/x-www-form-urlencoded` body of `POST /transactions.xml` for one service.
pub fn report_body(
    auth: &BackendAuth,
    service_id: &str,
    transactions: &[ReportTransaction],
) -> String {
    let mut form = Form::with_capacity(64 + 96 * transactions.len());
    form.caller(auth, service_id);
    for (index, transaction) in transactions.iter().enumerate() {
        form.credentials(Some(index), &transaction.application, false);
        for (metric, delta) in &transaction.usage {
            form.transaction(index)
                .sub("usage")
                .sub(metric)
                .number(*delta);
        }
        if let Some(code) = transaction.log_code {
            form.transaction(index).sub("log").sub("code").number(code);
        }
        if let Some(timestamp) = transaction.timestamp {
            form.transaction(index).sub("timestamp").number(timestamp);
        }
    }
    form.out
}

/// Writes form parameters with Rack-style nested names straight into one string.
struct Form {
    out: String,
    started: bool,
}

impl Form {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            started: false,
        }
    }

    /// Starts a parameter named `name`; continue with [`Form::sub`] and end with a value.
    fn key(&mut self, name: &str) -> &mut Self {
        if self.started {
            self.out.push('&');
        }
        self.started = true;
        self.encode(name);
        self
    }

    /// Starts `transactions[index]`.
    fn transaction(&mut self, index: usize) -> &mut Self {
        self.key("transactions");
        self.out.push_str("%5B");
        // Writing into a String cannot fail.
        let _ = write!(self.out, "{index}");
        self.out.push_str("%5D");
        self
    }

    /// Appends a `[segment]` to the parameter name.
    fn sub(&mut self, segment: &str) -> &mut Self {
        self.out.push_str("%5B");
        self.encode(segment);
        self.out.push_str("%5D");
        self
    }

    fn value(&mut self, value: &str) {
        self.out.push('=');
        self.encode(value);
    }

    fn number(&mut self, value: impl Into<u64>) {
        let _ = write!(self.out, "={}", value.into());
    }

    fn pair(&mut self, name: &str, value: &str) {
        self.key(name).value(value);
    }

    fn encode(&mut self, text: &str) {
        self.out
            .extend(form_urlencoded::byte_serialize(text.as_bytes()));
    }

    /// `service_token=…&service_id=…` or `provider_key=…&service_id=…`.
    fn caller(&mut self, auth: &BackendAuth, service_id: &str) {
        let (name, secret) = auth.param();
        self.pair(name, secret);
        self.pair("service_id", service_id);
    }

    /// The application's credentials, top-level or inside `transactions[index]`.
    fn credentials(&mut self, index: Option<usize>, credentials: &Credentials, with_key: bool) {
        let (name, value, app_key) = match credentials {
            Credentials::UserKey(key) => ("user_key", key, None),
            Credentials::AppId { app_id, app_key } => ("app_id", app_id, app_key.as_ref()),
        };
        self.credential(index, name, value);
        if let (true, Some(key)) = (with_key, app_key) {
            self.credential(index, "app_key", key);
        }
    }

    fn credential(&mut self, index: Option<usize>, name: &str, value: &str) {
        match index {
            Some(index) => self.transaction(index).sub(name).value(value),
            None => self.pair(name, value),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    use crate::usage::usage_of as usage;

    fn app(app_id: &str, app_key: Option<&str>) -> Credentials {
        Credentials::AppId {
            app_id: app_id.into(),
            app_key: app_key.map(Into::into),
        }
    }

    fn call<'a>(
        endpoint: Endpoint,
        auth: &'a BackendAuth,
        service_id: &'a str,
        credentials: &'a Credentials,
        usage: &'a Usage,
    ) -> AuthCall<'a> {
        AuthCall {
            endpoint,
            auth,
            service_id,
            credentials,
            usage,
            referrer: None,
            log_code: None,
        }
    }

    #[test]
    fn observed_request_lines_are_reproduced() {
        let tok1 = BackendAuth::ServiceToken("tok1".into());
        let app1 = app("app1", Some("key1"));
        let none = Usage::new();
        assert_eq!(
            call(Endpoint::Authorize, &tok1, "svc1", &app1, &none).path(""),
            "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1"
        );

        let get_hello = usage(&[("get_hello", 3)]);
        let mut authrep = call(Endpoint::Authrep, &tok1, "svc1", &app1, &get_hello);
        authrep.log_code = Some(200);
        assert_eq!(
            authrep.path(""),
            "/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bget_hello%5D=3&log%5Bcode%5D=200"
        );

        let tok2 = BackendAuth::ServiceToken("tok2".into());
        let uk1 = Credentials::UserKey("uk1".into());
        let hits = usage(&[("hits", 1)]);
        assert_eq!(
            call(Endpoint::Authrep, &tok2, "svc2", &uk1, &hits).path(""),
            "/transactions/authrep.xml?service_token=tok2&service_id=svc2&user_key=uk1&usage%5Bhits%5D=1"
        );

        let pk1 = BackendAuth::ProviderKey("pk1".into());
        assert_eq!(
            call(Endpoint::Authorize, &pk1, "svc1", &app1, &none).path(""),
            "/transactions/authorize.xml?provider_key=pk1&service_id=svc1&app_id=app1&app_key=key1"
        );
    }

    #[test]
    fn oidc_client_id_without_key_and_referrer() {
        let tok3 = BackendAuth::ServiceToken("tok3".into());
        let client = app("client1", None);
        let hits = usage(&[("hits", 1), ("get_hello", 0)]);
        let mut authrep = call(Endpoint::Authrep, &tok3, "svc3", &client, &hits);
        authrep.referrer = Some("https://shop.example/a b?c=d&e");
        assert_eq!(
            authrep.path("/"),
            "/transactions/authrep.xml?service_token=tok3&service_id=svc3&app_id=client1&referrer=https%3A%2F%2Fshop.example%2Fa+b%3Fc%3Dd%26e&usage%5Bhits%5D=1&usage%5Bget_hello%5D=0"
        );
    }

    #[test]
    fn prefix_and_encoding_of_every_value() {
        let auth = BackendAuth::ServiceToken("t&k=1 +%".into());
        let creds = app("a/b?", Some("k[1]"));
        let usage = usage(&[("we&ird[m]", 2)]);
        let mut authorize = call(Endpoint::Authorize, &auth, "s 1", &creds, &usage);
        authorize.log_code = Some(500);
        assert_eq!(
            authorize.path("/backend/"),
            "/backend/transactions/authorize.xml?service_token=t%26k%3D1+%2B%25&service_id=s+1&app_id=a%2Fb%3F&app_key=k%5B1%5D&usage%5Bwe%26ird%5Bm%5D%5D=2"
        );
        // Every parameter round-trips through a form decoder.
        let path = authorize.path("");
        let query = path.split_once('?').unwrap().1;
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("service_token".into(), "t&k=1 +%".into()),
                ("service_id".into(), "s 1".into()),
                ("app_id".into(), "a/b?".into()),
                ("app_key".into(), "k[1]".into()),
                ("usage[we&ird[m]]".into(), "2".into()),
            ]
        );
    }

    #[test]
    fn options_never_ask_for_no_body() {
        assert_eq!(options(false), "rejection_reason_header=1&limit_headers=1");
        assert_eq!(
            options(true),
            "rejection_reason_header=1&limit_headers=1&hierarchy=1"
        );
        assert!(!options(true).contains("no_body"));
    }

    #[test]
    fn observed_report_body_is_reproduced() {
        let transactions = vec![
            ReportTransaction {
                application: app("app1", Some("ignored")),
                usage: vec![("hits".into(), 2)],
                log_code: Some(200),
                timestamp: None,
            },
            ReportTransaction {
                application: app("app3", None),
                usage: vec![("get_hello".into(), 1)],
                log_code: None,
                timestamp: Some(1_795_543_791),
            },
        ];
        let body = report_body(
            &BackendAuth::ServiceToken("tok1".into()),
            "svc1",
            &transactions,
        );
        assert_eq!(
            body,
            "service_token=tok1&service_id=svc1&transactions%5B0%5D%5Bapp_id%5D=app1&transactions%5B0%5D%5Busage%5D%5Bhits%5D=2&transactions%5B0%5D%5Blog%5D%5Bcode%5D=200&transactions%5B1%5D%5Bapp_id%5D=app3&transactions%5B1%5D%5Busage%5D%5Bget_hello%5D=1&transactions%5B1%5D%5Btimestamp%5D=1795543791"
        );
        assert_eq!(report_param_count(&transactions), 8);
        assert_eq!(form_urlencoded::parse(body.as_bytes()).count(), 8);
    }

    #[test]
    fn report_with_user_keys_and_provider_key() {
        let transactions = vec![ReportTransaction {
            application: Credentials::UserKey("u k".into()),
            usage: vec![("hits".into(), 10), ("post".into(), 3)],
            log_code: None,
            timestamp: None,
        }];
        let body = report_body(&BackendAuth::ProviderKey("pk".into()), "42", &transactions);
        assert_eq!(
            body,
            "provider_key=pk&service_id=42&transactions%5B0%5D%5Buser_key%5D=u+k&transactions%5B0%5D%5Busage%5D%5Bhits%5D=10&transactions%5B0%5D%5Busage%5D%5Bpost%5D=3"
        );
        assert_eq!(
            report_param_count(&transactions),
            form_urlencoded::parse(body.as_bytes()).count()
        );
        assert_eq!(
            report_body(&BackendAuth::ProviderKey("pk".into()), "42", &[]),
            "provider_key=pk&service_id=42"
        );
        assert_eq!(report_param_count(&[]), 2);
    }

    #[test]
    fn param_count_matches_body_for_large_batches() {
        let transactions: Vec<_> = (0..300)
            .map(|i| ReportTransaction {
                application: app(&format!("app{i}"), None),
                usage: (0..(i % 5))
                    .map(|m| (format!("m{m}"), m as u64 + 1))
                    .collect(),
                log_code: (i % 2 == 0).then_some(200),
                timestamp: (i % 3 == 0).then_some(1_700_000_000),
            })
            .collect();
        let body = report_body(&BackendAuth::ServiceToken("t".into()), "s", &transactions);
        assert_eq!(
            report_param_count(&transactions),
            form_urlencoded::parse(body.as_bytes()).count()
        );
        assert!(report_param_count(&transactions) < REPORT_PARAM_BUDGET);
        assert!(body.contains("transactions%5B299%5D%5Bapp_id%5D=app299"));
    }

    #[test]
    fn debug_hides_secrets() {
        let debug = format!("{:?}", BackendAuth::ServiceToken("s3cr3t".into()));
        assert_eq!(debug, "ServiceToken(***)");
        assert!(!format!("{:?}", BackendAuth::ProviderKey("s3cr3t".into())).contains("s3cr3t"));
    }
}
