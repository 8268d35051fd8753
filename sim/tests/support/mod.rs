//! Test support: start the real `tollgate-sim` binary on a free port and talk HTTP/1.1 to it
//! with a minimal blocking client (one connection per request, `Connection: close`).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The protocol reference's capture moment (a Tuesday).
pub const CAPTURE: &str = "2026-11-24 18:09:51";
pub const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// A running simulator, killed on drop.
pub struct Sim {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub addr: String,
}

/// Path of a seed: `tests/seeds/NAME` or, for the demo, `seeds/demo.json`.
pub fn seed_path(name: &str) -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    if name == "demo.json" {
        format!("{dir}/seeds/demo.json")
    } else {
        format!("{dir}/tests/seeds/{name}")
    }
}

impl Sim {
    pub fn start(seed: Option<&str>) -> Sim {
        Self::start_with_args(seed, &[])
    }

    pub fn start_with_args(seed: Option<&str>, extra: &[&str]) -> Sim {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate-sim"));
        command
            .args(["--listen", "127.0.0.1:0", "--threads", "1"])
            .args(extra);
        if let Some(seed) = seed {
            command.args(["--seed", &seed_path(seed)]);
        }
        let stderr = if std::env::var_os("SIM_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start tollgate-sim");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("tollgate-sim listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let sim = Sim {
            child,
            _stdout: stdout,
            addr,
        };
        sim.wait_ready();
        sim
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .try_request("GET", "/status", &[], None)
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("tollgate-sim did not become ready");
    }

    /// The admin portal's address, from the line after the listening line (`--portal-listen`).
    pub fn portal_addr(&mut self) -> String {
        let mut line = String::new();
        self._stdout
            .read_line(&mut line)
            .expect("read the portal line");
        line.trim()
            .strip_prefix("tollgate-sim portal listening on ")
            .unwrap_or_else(|| panic!("unexpected portal line {line:?}"))
            .to_owned()
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Sends one request; `Err` if the connection is refused or closed without an answer.
    pub fn try_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        send(&self.addr, method, target, headers, body)
    }

    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.try_request(method, target, headers, body)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, &[], None)
    }

    pub fn get_with(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", target, headers, None)
    }

    /// GET with the `3scale-options` header.
    pub fn get_opts(&self, target: &str, options: &str) -> Response {
        self.request("GET", target, &[("3scale-options", options)], None)
    }

    pub fn post_form(&self, target: &str, body: &str) -> Response {
        self.request(
            "POST",
            target,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        )
    }

    /// A JSON call to the internal APIs.
    pub fn json(&self, method: &str, target: &str, body: &str) -> (u16, serde_json::Value) {
        let body = (!body.is_empty()).then_some(body.as_bytes());
        let r = self.request(
            method,
            target,
            &[("Content-Type", "application/json")],
            body,
        );
        let value = if r.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&r.body).unwrap()
        };
        (r.status, value)
    }

    /// Freezes the simulated clock at `YYYY-MM-DD HH:MM:SS` (UTC).
    pub fn freeze(&self, at: &str) {
        let (status, _) = self.json("PUT", "/_sim/clock", &format!("{{\"now\":\"{at}\"}}"));
        assert_eq!(status, 200);
    }

    pub fn advance(&self, secs: i64) {
        let (status, _) = self.json("PUT", "/_sim/clock", &format!("{{\"advance_s\":{secs}}}"));
        assert_eq!(status, 200);
    }

    /// `/_sim/.../usage` for one metric: period name → value.
    pub fn usage(&self, service: &str, app: &str, metric: &str) -> serde_json::Value {
        let (status, v) = self.json(
            "GET",
            &format!("/_sim/services/{service}/applications/{app}/usage"),
            "",
        );
        assert_eq!(status, 200, "{v}");
        v["metrics"][metric].clone()
    }

    pub fn usage_in(&self, service: &str, app: &str, metric: &str, period: &str) -> i64 {
        self.usage(service, app, metric)[period].as_i64().unwrap()
    }

    pub fn errors(&self, service: &str) -> serde_json::Value {
        let (status, v) = self.json("GET", &format!("/internal/services/{service}/errors/"), "");
        assert_eq!(status, 200, "{v}");
        v
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "tollgate-sim ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The `3scale-limit-*` headers as (remaining, reset, max-value).
    pub fn limits(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            self.header("3scale-limit-remaining"),
            self.header("3scale-limit-reset"),
            self.header("3scale-limit-max-value"),
        )
    }
}

/// Writes a raw request and reads the whole answer (the server closes after it).
pub fn send(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

/// Sends raw bytes as a request, closes the writing side, and returns whatever comes back.
pub fn send_raw(addr: &str, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(bytes)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(raw),
        Err(e) => Err(e),
    }
}

fn parse_response(raw: &[u8], head_only: bool) -> std::io::Result<Response> {
    let closed = || {
        std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "connection closed without an answer",
        )
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(closed)?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(closed)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if head_only {
        body.clear();
    } else if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// One expected `<usage_report>`.
pub struct Report<'a> {
    pub metric: &'a str,
    pub period: &'a str,
    /// `None` for eternity.
    pub bounds: Option<(&'a str, &'a str)>,
    pub max: i64,
    pub current: i64,
    pub exceeded: bool,
}

/// Builds an expected `<status>` document (independently of the simulator's own code).
pub fn status_xml(
    reason: Option<&str>,
    application: Option<&str>,
    plan_xml: &str,
    reports: &[Report<'_>],
    tail: &str,
) -> String {
    let mut x = format!("{XML_DECL}<status>");
    match reason {
        None => x.push_str("<authorized>true</authorized>"),
        Some(r) => x.push_str(&format!(
            "<authorized>false</authorized><reason>{r}</reason>"
        )),
    }
    if let Some(app) = application {
        x.push_str(app);
    }
    x.push_str(&format!("<plan>{plan_xml}</plan>"));
    if !reports.is_empty() {
        x.push_str("<usage_reports>");
        for r in reports {
            let exceeded = if r.exceeded { " exceeded=\"true\"" } else { "" };
            x.push_str(&format!(
                "<usage_report metric=\"{}\" period=\"{}\"{exceeded}>",
                r.metric, r.period
            ));
            if let Some((start, end)) = r.bounds {
                x.push_str(&format!(
                    "<period_start>{start} +0000</period_start><period_end>{end} +0000</period_end>"
                ));
            }
            x.push_str(&format!(
                "<max_value>{}</max_value><current_value>{}</current_value></usage_report>",
                r.max, r.current
            ));
        }
        x.push_str("</usage_reports>");
    }
    x.push_str(tail);
    x.push_str("</status>");
    x
}

pub fn error_xml(code: &str, message: &str) -> String {
    format!("{XML_DECL}<error code=\"{code}\">{message}</error>")
}

/// Asserts the headers every listener answer carries.
pub fn assert_listener_headers(r: &Response) {
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.3scale-v2.0+xml")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("ETag, Link, 3scale-rejection-reason")
    );
}

/// The ids, names and limits one seed provides for the behaviour tests, so that the same
/// behaviours run on two seeds that share nothing.
pub struct Fixture {
    pub seed: &'static str,
    /// A moment at :51 seconds (limit-reset 9 on minute limits) and its period bounds.
    pub time: &'static str,
    /// (year, month, week, day, hour, minute) bounds at `time`.
    pub bounds: [(&'static str, &'static str); 6],
    pub service: &'static str,
    pub token: &'static str,
    pub provider_key: &'static str,
    pub parent: &'static str,
    pub child: &'static str,
    /// The parent's children as `hierarchy=1` lists them.
    pub children: &'static str,
    /// An application whose tightest limit is `minute_limit` on `parent`.
    pub small_app: &'static str,
    pub small_key: Option<&'static str>,
    pub minute_limit: i64,
    /// An application whose plan limits `disabled` (a child of `parent`) to 0.
    pub disabled_app: &'static str,
    pub disabled_key: Option<&'static str>,
    pub disabled: &'static str,
    /// An application whose plan limits `parent` in all seven periods, longest first.
    pub all_app: &'static str,
    pub all_key: Option<&'static str>,
    pub all_plan_xml: &'static str,
    pub all_maxes: [i64; 7],
    /// An application whose plan has no limits.
    pub unlimited_app: &'static str,
    pub unlimited_plan: &'static str,
    pub suspended_app: &'static str,
    pub suspended_key: Option<&'static str>,
    /// A grandchild of `parent` and its own parent, when the seed has three levels.
    pub grandchild: Option<(&'static str, &'static str)>,
}

impl Fixture {
    /// Caller and application parameters for `app`.
    pub fn creds(&self, app: &str, key: Option<&str>) -> String {
        let key = key.map(|k| format!("&app_key={k}")).unwrap_or_default();
        format!(
            "service_token={}&service_id={}&app_id={app}{key}",
            self.token, self.service
        )
    }

    pub fn url(&self, endpoint: &str, app: &str, key: Option<&str>, extra: &str) -> String {
        format!(
            "/transactions/{endpoint}.xml?{}{extra}",
            self.creds(app, key)
        )
    }

    pub fn start(&self) -> Sim {
        let sim = Sim::start(Some(self.seed));
        sim.freeze(self.time);
        sim
    }

    /// Expected usage reports of `all_app` with `current` in every period.
    pub fn all_reports(&self, current: i64) -> Vec<Report<'_>> {
        let periods = ["eternity", "year", "month", "week", "day", "hour", "minute"];
        periods
            .iter()
            .enumerate()
            .map(|(i, period)| Report {
                metric: self.parent,
                period,
                bounds: if i == 0 {
                    None
                } else {
                    Some(self.bounds[i - 1])
                },
                max: self.all_maxes[i],
                current,
                exceeded: false,
            })
            .collect()
    }
}

pub const REFERENCE: Fixture = Fixture {
    seed: "reference.json",
    time: CAPTURE,
    bounds: [
        ("2026-01-01 00:00:00", "2027-01-01 00:00:00"),
        ("2026-11-01 00:00:00", "2026-12-01 00:00:00"),
        ("2026-11-23 00:00:00", "2026-11-30 00:00:00"),
        ("2026-11-24 00:00:00", "2026-11-25 00:00:00"),
        ("2026-11-24 18:00:00", "2026-11-24 19:00:00"),
        ("2026-11-24 18:09:00", "2026-11-24 18:10:00"),
    ],
    service: "svc1",
    token: "tok1",
    provider_key: "pk1",
    parent: "hits",
    child: "get_hello",
    children: "get_hello disabled_m",
    small_app: "app_basic",
    small_key: None,
    minute_limit: 2,
    disabled_app: "app1",
    disabled_key: Some("key1"),
    disabled: "disabled_m",
    all_app: "app_all",
    all_key: None,
    all_plan_xml: "All &amp; &lt;Periods&gt;",
    all_maxes: [130, 101, 146, 138, 131, 135, 148],
    unlimited_app: "app_unl",
    unlimited_plan: "Unlimited",
    suspended_app: "app4",
    suspended_key: Some("key4"),
    grandchild: None,
};

pub const OTHER: Fixture = Fixture {
    seed: "other.json",
    time: "2027-02-28 23:59:51",
    bounds: [
        ("2027-01-01 00:00:00", "2028-01-01 00:00:00"),
        ("2027-02-01 00:00:00", "2027-03-01 00:00:00"),
        ("2027-02-22 00:00:00", "2027-03-01 00:00:00"),
        ("2027-02-28 00:00:00", "2027-03-01 00:00:00"),
        ("2027-02-28 23:00:00", "2027-03-01 00:00:00"),
        ("2027-02-28 23:59:00", "2027-03-01 00:00:00"),
    ],
    service: "4242",
    token: "acme-token-widgets",
    provider_key: "acme-provider-7f3a",
    parent: "requests",
    child: "read_widget",
    children: "read_widget write_widget",
    small_app: "widget-app-1",
    small_key: Some("wk-two"),
    minute_limit: 3,
    disabled_app: "widget-app-1",
    disabled_key: Some("wk-one"),
    disabled: "write_widget",
    all_app: "widget-app-2",
    all_key: Some("wk-three"),
    all_plan_xml: "Platinum &amp; &lt;Co&gt;",
    all_maxes: [1000, 900, 700, 500, 300, 200, 100],
    unlimited_app: "widget-keyless",
    unlimited_plan: "Free For All",
    suspended_app: "widget-frozen",
    suspended_key: Some("wk-frozen"),
    grandchild: Some(("bulk_write", "write_widget")),
};

pub const FIXTURES: [&Fixture; 2] = [&REFERENCE, &OTHER];
