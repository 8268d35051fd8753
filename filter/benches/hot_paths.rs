//! Micro-benchmarks of what Tollgate runs on every request, natively (`cargo bench -p tollgate`).
//!
//! Native numbers are a floor for the wasm ones: V8 runs the same code roughly 1.5–3× slower, and
//! every hostcall adds its own cost (see `docs/benchmarks.md`). They exist to catch a hot function
//! getting slower or allocating more, and to show where the per-request time goes. `scripts/bench`
//! runs them and copies the medians into `docs/benchmarks.md`.
//!
//! The divan allocation profiler is the global allocator here, so every benchmark also reports its
//! allocations per operation. Before the benchmarks, `main` drives an authorized request through the
//! whole flow against a counting host, in per-request mode and as a cache hit, and prints the hostcalls
//! each made (`hostcalls:` lines, read by the script).

// Benchmark code, never part of the module: a broken fixture should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use divan::{AllocProfiler, Bencher, black_box};
use tollgate::args::Args;
use tollgate::backend::answer::parse_status;
use tollgate::config::Config;
use tollgate::credentials::{Extracted, Source, extract};
use tollgate::flow::Flow;
use tollgate::host::{CalloutResponse, DispatchError, Host};
use tollgate::stats::Stat;
use tollgate::store::{SharedStore, StoreError};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

/// The filter configuration the end-to-end benchmark loads into Envoy: one service, eight mapping
/// rules, credentials in the query string or headers.
const BENCH_CONFIG: &str = include_str!("../../scripts/bench.d/filter.json");

/// A request as the Envoy benchmark sends it: the 7th rule matches, credentials are in the query.
const BENCH_PATH: &str = "/items/42?app_id=app-42&app_key=key-42";

fn bench_config() -> Config {
    Config::load(BENCH_CONFIG.as_bytes(), &|_| None).expect("scripts/bench.d/filter.json loads")
}

/// The benchmark configuration with every service in per-request mode (one authrep per request), as
/// `scripts/bench` runs its per-request rows; the file itself leaves the mode at its default.
fn per_request_config() -> Config {
    let mut json: serde_json::Value = serde_json::from_str(BENCH_CONFIG).expect("valid JSON");
    let services = json.get_mut("services").and_then(|s| s.as_array_mut());
    for service in services.expect("a services list") {
        service["mode"] = "per_request".into();
    }
    Config::load(json.to_string().as_bytes(), &|_| None).expect("per-request configuration loads")
}

fn main() {
    check_fixtures();
    print_hostcalls();
    divan::main();
}

/// Bodies apisonator sends, verbatim from the protocol reference (§4.2, [observed]).
mod observed {
    pub const AUTHORIZED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Production</plan><usage_reports><usage_report metric="hits" period="month"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>20000</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="day"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>1000</max_value><current_value>0</current_value></usage_report><usage_report metric="get_hello" period="hour"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>100</max_value><current_value>0</current_value></usage_report><usage_report metric="disabled_m" period="eternity"><max_value>0</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#;
    pub const ALL_PERIODS: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>All &amp; &lt;Periods&gt;</plan><usage_reports><usage_report metric="hits" period="eternity"><max_value>130</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="year"><period_start>2026-01-01 00:00:00 +0000</period_start><period_end>2027-01-01 00:00:00 +0000</period_end><max_value>101</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="month"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>146</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="week"><period_start>2026-11-23 00:00:00 +0000</period_start><period_end>2026-11-30 00:00:00 +0000</period_end><max_value>138</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="day"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>131</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="hour"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>135</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="minute"><period_start>2026-11-24 18:10:00 +0000</period_start><period_end>2026-11-24 18:11:00 +0000</period_end><max_value>148</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#;
    pub const UNLIMITED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Unlimited</plan></status>"#;
    pub const EXCEEDED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan><usage_reports><usage_report metric="hits" period="minute" exceeded="true"><period_start>2026-11-24 18:10:00 +0000</period_start><period_end>2026-11-24 18:11:00 +0000</period_end><max_value>2</max_value><current_value>3</current_value></usage_report></usage_reports></status>"#;
    /// The authorized body with the `hierarchy=1` extension a cache refresh asks for.
    pub const WITH_HIERARCHY: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Production</plan><usage_reports><usage_report metric="hits" period="month"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>20000</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="day"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>1000</max_value><current_value>0</current_value></usage_report><usage_report metric="get_hello" period="hour"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>100</max_value><current_value>0</current_value></usage_report><usage_report metric="disabled_m" period="eternity"><max_value>0</max_value><current_value>0</current_value></usage_report></usage_reports><hierarchy><metric name="hits" children="get_hello disabled_m"/><metric name="hits" children="get_hello disabled_m"/><metric name="get_hello" children=""/><metric name="disabled_m" children=""/></hierarchy></status>"#;
}

/// What apisonator answers the benchmark's request, with `hierarchy=1`: the simulator's seed in
/// `scripts/bench.d/run.py` (hits > get_item and the other metrics of the mapping rules; hits limited
/// per minute and month, get_item per hour), periods around `now`.
fn bench_answer(now: SystemTime) -> String {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = |metric: &str, period: &str, start: u64, end: u64, max: u64| {
        format!(
            "<usage_report metric=\"{metric}\" period=\"{period}\"><period_start>{}</period_start>\
             <period_end>{}</period_end><max_value>{max}</max_value><current_value>1</current_value>\
             </usage_report>",
            timestamp(start),
            timestamp(end)
        )
    };
    let (month_start, month_end) = month_around(now);
    let minute = now - now % 60;
    let hour = now - now % 3600;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>true</authorized><plan>Bench</plan>\
         <usage_reports>{}{}{}</usage_reports><hierarchy><metric name=\"hits\" children=\"admin create_item \
         delete_item get_item get_reviews list_items search update_item\"/></hierarchy></status>",
        report(
            "hits",
            "month",
            month_start,
            month_end,
            1_000_000_000_000_000
        ),
        report("hits", "minute", minute, minute + 60, 1_000_000_000_000),
        report("get_item", "hour", hour, hour + 3600, 10_000_000_000_000),
    )
}

/// The generated answer must be one Tollgate reads as authorized, with the right dates.
fn check_fixtures() {
    assert_eq!(timestamp(0), "1970-01-01 00:00:00 +0000");
    assert_eq!(timestamp(1_795_543_791), "2026-11-24 18:09:51 +0000");
    assert_eq!(timestamp(951_782_400), "2000-02-29 00:00:00 +0000");
    let february_2000 = month_around(951_782_400);
    assert_eq!(
        (timestamp(february_2000.0), timestamp(february_2000.1)),
        (
            "2000-02-01 00:00:00 +0000".to_string(),
            "2000-03-01 00:00:00 +0000".to_string()
        )
    );
    let status =
        parse_status(bench_answer(SystemTime::now()).as_bytes()).expect("the bench answer parses");
    assert!(
        status.authorized && status.usage_reports.len() == 3,
        "{status:?}"
    );
}

/// `YYYY-MM-DD HH:MM:SS +0000`, as apisonator prints period bounds.
fn timestamp(unix: u64) -> String {
    let (year, month, day) = civil_date(unix / 86_400);
    let seconds = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// The UTC calendar month holding `unix`: (first second, first second of the next month).
fn month_around(unix: u64) -> (u64, u64) {
    let (year, month, day) = civil_date(unix / 86_400);
    let start = unix - unix % 86_400 - (day - 1) * 86_400;
    let days = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (start, start + days * 86_400)
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil-from-days).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `tollgate::backend::answer::parse_status` on every observed shape of `<status>`.
mod xml_parse {
    use super::*;

    const BODIES: [(&str, &str); 5] = [
        ("authorized", observed::AUTHORIZED),
        ("all_periods", observed::ALL_PERIODS),
        ("unlimited", observed::UNLIMITED),
        ("exceeded", observed::EXCEEDED),
        ("with_hierarchy", observed::WITH_HIERARCHY),
    ];

    #[divan::bench(args = ["authorized", "all_periods", "unlimited", "exceeded", "with_hierarchy"])]
    fn parse_status_body(bencher: Bencher, name: &str) {
        let body = BODIES
            .iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, body)| body.as_bytes())
            .unwrap();
        assert!(parse_status(body).is_ok(), "{name} parses");
        bencher.bench_local(|| parse_status(black_box(body)));
    }
}

/// `MappingRules::evaluate` with the benchmark service's eight rules.
mod mapping_rules {
    use super::*;

    /// (name, method, path, query): the first, a late and no rule matching, and a query condition.
    const REQUESTS: [(&str, &str, &str, &str); 4] = [
        ("first_rule", "GET", "/items", ""),
        ("seventh_rule", "GET", "/items/42", ""),
        ("query_condition", "GET", "/search", "q=shoes&page=2"),
        ("no_match", "GET", "/nothing/here/at/all", ""),
    ];

    #[divan::bench(args = ["first_rule", "seventh_rule", "query_condition", "no_match"])]
    fn evaluate(bencher: Bencher, name: &str) {
        let config = bench_config();
        let rules = &config.services.first().unwrap().mapping_rules;
        let (_, method, path, query) = REQUESTS
            .iter()
            .find(|(candidate, ..)| *candidate == name)
            .unwrap();
        let args = Args::parse(query.as_bytes());
        let matches = !rules
            .evaluate(method.as_bytes(), path.as_bytes(), &args)
            .rules
            .is_empty();
        assert_eq!(matches, name != "no_match", "{name}");
        bencher.bench_local(|| {
            rules.evaluate(
                black_box(method.as_bytes()),
                black_box(path.as_bytes()),
                black_box(&args),
            )
        });
    }

    /// Parsing the query string, which the request path does before extraction and evaluation.
    #[divan::bench]
    fn parse_query(bencher: Bencher) {
        let query = "app_id=app-42&app_key=key-42&q=shoes&page=2";
        bencher.bench_local(|| Args::parse(black_box(query.as_bytes())));
    }
}

/// A `credentials::Source` backed by maps, as the glue's would be by hostcalls.
struct MapSource {
    headers: BTreeMap<&'static str, &'static str>,
    query: Args,
}

impl Source for MapSource {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .get(name)
            .map(|value| value.as_bytes().to_vec())
    }
    fn query(&self) -> &Args {
        &self.query
    }
    fn form(&self) -> Option<&Args> {
        None
    }
    fn jwt_claim(&mut self, _claim: &str) -> Option<Vec<u8>> {
        None
    }
}

/// `tollgate::credentials::extract` with the benchmark service's spec (query, then headers).
mod credentials {
    use super::*;

    fn source(name: &str) -> MapSource {
        let (headers, query): (&[(&'static str, &'static str)], &str) = match name {
            "query" => (&[], "app_id=app-42&app_key=key-42"),
            "header" => (&[("app_id", "app-42"), ("app_key", "key-42")], ""),
            "missing" => (&[("accept", "*/*")], "page=2"),
            other => panic!("no credentials case {other}"),
        };
        MapSource {
            headers: headers.iter().copied().collect(),
            query: Args::parse(query.as_bytes()),
        }
    }

    #[divan::bench(args = ["query", "header", "missing"])]
    fn extract_credentials(bencher: Bencher, name: &str) {
        let config = bench_config();
        let spec = &config.services.first().unwrap().credentials;
        let found = matches!(extract(spec, &mut source(name)), Extracted::Found(_));
        assert_eq!(found, name != "missing", "{name}");
        bencher
            .with_inputs(|| source(name))
            .bench_local_refs(|source| extract(black_box(spec), source));
    }
}

/// `Config::load`: paid once per VM at `on_configure`, not per request; shown for scale.
mod config {
    use super::*;

    #[divan::bench]
    fn load(bencher: Bencher) {
        bencher.bench_local(|| Config::load(black_box(BENCH_CONFIG.as_bytes()), &|_| None));
    }
}

/// The cache decision on the entry itself: decode it from the shared-data bytes, admit the request's
/// usage against the cached limits plus the usage since the refresh, encode it back. A hit does this
/// once per request (or skips the decode when its VM wrote the entry last).
mod cache_decision {
    use super::*;
    use tollgate::cache::{Answer, Entry, cache_key};
    use tollgate::credentials::Credentials;
    use tollgate::usage::Usage;

    /// 2026-11-24 18:09:51 UTC: inside the periods of the observed body.
    const NOW_MS: u64 = 1_795_543_791_000;

    fn entry() -> Entry {
        let key = cache_key(
            "svc",
            &Credentials::AppId {
                app_id: "app-42".into(),
                app_key: Some("key-42".into()),
            },
            None,
        );
        let status = parse_status(observed::WITH_HIERARCHY.as_bytes()).unwrap();
        Entry::new(key, Answer::Authorized, Some(&status), NOW_MS).unwrap()
    }

    fn usage() -> Usage {
        let mut usage = Usage::new();
        usage.add(&Rc::from("get_hello"), 1);
        usage
    }

    #[divan::bench]
    fn decode_admit_encode(bencher: Bencher) {
        let bytes = entry().encode();
        let usage = usage();
        bencher.bench_local(|| {
            let mut entry = Entry::decode(black_box(&bytes)).unwrap();
            let admission = entry.admit_awaiting_code(&usage, NOW_MS / 1000);
            black_box((admission, entry.encode()))
        });
    }

    /// The end of the request: the usage joins the pending report with its response code.
    #[divan::bench]
    fn record_with_code(bencher: Bencher) {
        let bytes = entry().encode();
        let usage = usage();
        bencher.bench_local(|| {
            let mut entry = Entry::decode(black_box(&bytes)).unwrap();
            entry.record(&usage, 200, NOW_MS / 1000);
            black_box(entry.encode())
        });
    }
}

/// The batched report: with response codes tracked, every request is a transaction of its own
/// (3scale counts one `log[code]` per transaction), so its body grows with the traffic.
mod report {
    use super::*;
    use tollgate::backend::call::{BackendAuth, ReportTransaction, report_body};
    use tollgate::credentials::Credentials;

    /// An application's requests between two flushes at the saturation rate of `scripts/bench`
    /// (about 20,000 requests/s over 100 applications, a flush every second).
    const REQUESTS: usize = 200;

    #[divan::bench]
    fn body_of_200_requests(bencher: Bencher) {
        let auth = BackendAuth::ServiceToken("service-token-of-the-bench".into());
        let transaction = ReportTransaction {
            application: Credentials::AppId {
                app_id: "app-42".into(),
                app_key: None,
            },
            usage: vec![("hits".into(), 1)],
            log_code: Some(200),
            timestamp: None,
        };
        let transactions = vec![transaction; REQUESTS];
        bencher.bench_local(|| black_box(report_body(&auth, "svc", black_box(&transactions))));
    }
}

/// One request through `tollgate::flow::Flow` against a native host that answers from memory: the
/// filter's own work per request, without Envoy's hostcall costs.
mod whole_request {
    use super::*;

    /// The request phase alone: headers read, service selected, credentials and usage found, the
    /// authrep built and dispatched. A cache hit will do this minus the dispatch plus the cache lookup.
    #[divan::bench]
    fn request_headers(bencher: Bencher) {
        let config = Rc::new(per_request_config());
        bencher
            .with_inputs(CountingHost::bench_request)
            .bench_local_refs(|host| {
                let mut flow = Flow::new(Rc::clone(&config));
                flow.on_request_headers(host, true);
                flow
            });
    }

    /// Per-request mode end to end: the request phase, then 3scale's authorized answer (XML parse,
    /// verdict, forwarding headers), then the response headers.
    #[divan::bench]
    fn per_request_authorized(bencher: Bencher) {
        let config = Rc::new(per_request_config());
        bencher
            .with_inputs(CountingHost::bench_request)
            .bench_local_refs(|host| run_authorized(&config, host));
    }

    /// Cache mode, the steady state of a busy application: its entry in shared data (a first
    /// request filled it), the worker holding a lease on it, and request after request decided from
    /// the lease (renewed with one CAS when it runs out, every 64 requests at this rate): the
    /// request, response and log phases of each. The `hostcalls: cache_hit` lines say what one such
    /// request asks of the host.
    #[divan::bench]
    fn cache_hit(bencher: Bencher) {
        let config = Rc::new(bench_config());
        let host = warmed_host(&config);
        host.replay.set(true);
        bencher.bench_local(|| {
            let mut flow = Flow::new(Rc::clone(&config));
            flow.on_request_headers(&host, true);
            flow.on_response_headers(&host);
            flow.on_log(&host);
            flow
        });
    }
}

/// The report flush: one tick of the worker that flushes.
mod flush {
    use super::*;
    use tollgate::background::Background;

    const APPLICATIONS: usize = 10_000;

    /// One request of application `n` (a miss the first time, answered at once), to its end.
    fn request(config: &Rc<Config>, host: &CountingHost, n: usize) {
        host.next_request();
        let path = format!("/items/42?app_id=app-{n}&app_key=key-{n}");
        if let Some((_, value)) = host.request_headers.borrow_mut().get_mut(1) {
            *value = path.into_bytes();
        }
        let dispatched = host.dispatched.get();
        let mut flow = Flow::new(Rc::clone(config));
        flow.on_request_headers(host, true);
        if host.dispatched.get() > dispatched {
            flow.on_callout_response(host, 1, 1, host.callout.body.len());
        }
        flow.on_response_headers(host);
        flow.on_log(host);
    }

    /// 10,000 cached applications whose reports are never answered (as when 3scale answers reports in 5 s
    /// and the flush runs every second): five rounds of one request each, with a flush after each of the
    /// first four; the queue then holds every application, many with their maximum of batches in flight.
    fn waiting(config: &Rc<Config>) -> (CountingHost, Background) {
        let host = CountingHost::bench_request();
        let mut background = Background::new(Rc::clone(config), 1);
        for round in 0..5 {
            for n in 0..APPLICATIONS {
                request(config, &host, n);
            }
            if round < 4 {
                background.tick(&host);
            }
        }
        host.calls.take();
        (host, background)
    }

    /// A flush tick that finds 10,000 applications queued: it takes at most 2,000 slots, each once.
    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn tick_with_10000_applications_waiting(bencher: Bencher) {
        let config = Rc::new(bench_config());
        bencher
            .with_inputs(|| waiting(&config))
            .bench_local_refs(|(host, background)| background.tick(host));
    }
}

/// A host whose shared data holds the benchmark application's cache entry: one request went first.
fn warmed_host(config: &Rc<Config>) -> CountingHost {
    let host = CountingHost::bench_request();
    for _ in 0..2 {
        let mut flow = Flow::new(Rc::clone(config));
        flow.on_request_headers(&host, true);
        if host.dispatched.get() > 0 {
            flow.on_callout_response(&host, 1, 1, host.callout.body.len());
        }
        flow.on_response_headers(&host);
        flow.on_log(&host);
        host.next_request();
    }
    host
}

/// Drives one authorized request through the flow.
fn run_authorized(config: &Rc<Config>, host: &CountingHost) {
    let mut flow = Flow::new(Rc::clone(config));
    flow.on_request_headers(host, true);
    let body_size = host.callout.body.len();
    flow.on_callout_response(host, 1, 1, body_size);
    flow.on_response_headers(host);
}

/// Prints, before the benchmarks, the hostcalls of one authorized per-request-mode request, phase
/// by phase: `hostcalls: <phase> <count> <hostcall>` lines (`request`: the request headers up to the
/// dispatch; `answer`: 3scale's answer up to the resume; `response`: the response headers).
fn print_hostcalls() {
    let config = Rc::new(per_request_config());
    let host = CountingHost::bench_request();
    host.counting.set(true);
    let mut flow = Flow::new(Rc::clone(&config));
    flow.on_request_headers(&host, true);
    let request = host.calls.take();
    flow.on_callout_response(&host, 1, 1, host.callout.body.len());
    let answer = host.calls.take();
    flow.on_response_headers(&host);
    let response = host.calls.take();
    assert_eq!(host.resumed.get(), 1, "the request was resumed");
    assert_eq!(host.replied.get(), None, "no local reply");
    for (phase, calls) in [
        ("request", request),
        ("answer", answer),
        ("response", response),
    ] {
        for (name, count) in calls {
            println!("hostcalls: {phase} {count} {name}");
        }
    }

    let config = Rc::new(bench_config());
    let host = warmed_host(&config);
    host.counting.set(true);
    let mut flow = Flow::new(Rc::clone(&config));
    flow.on_request_headers(&host, true);
    flow.on_response_headers(&host);
    flow.on_log(&host);
    let hit = host.dispatched.get() == 0 && host.replied.get().is_none();
    for (name, count) in host.calls.take() {
        println!("hostcalls: cache_hit {count} {name}");
    }
    println!(
        "hostcalls: cache_hit_answered_locally {} {hit}",
        u32::from(hit)
    );
    let largest = host
        .shared
        .borrow()
        .values()
        .map(|(value, _)| value.len())
        .max()
        .unwrap_or(0);
    println!("hostcalls: cache_entry_bytes {largest} bytes");
}

/// A host that answers from memory, counts every hostcall by name, and copies returned bytes the
/// way the SDK does (one `Vec` per returned value), so allocation counts resemble the wasm build's.
struct CountingHost {
    request_headers: RefCell<Vec<(String, Vec<u8>)>>,
    callout: CalloutResponse,
    /// Hostcalls by name, kept only when `counting` (the map's own allocations would blur the benches').
    calls: RefCell<BTreeMap<&'static str, u32>>,
    counting: Cell<bool>,
    /// Every request is the same one: header changes are counted but not kept, so the next request
    /// arrives as sent without rebuilding the host inside a measurement.
    replay: Cell<bool>,
    replied: Cell<Option<u16>>,
    resumed: Cell<u32>,
    dispatched: Cell<u32>,
    /// Shared data without Envoy's CAS rules (one worker, no conflicts) and the shared queue.
    shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    queue: RefCell<VecDeque<Vec<u8>>>,
}

impl CountingHost {
    /// The request the Envoy benchmark sends, and apisonator's authorized answer to it.
    fn bench_request() -> CountingHost {
        let headers = [
            (":method", "GET"),
            (":path", BENCH_PATH),
            (":authority", "bench.local:10000"),
            (":scheme", "http"),
            ("user-agent", "wrk"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "5f1c2a9e-7d1b-4a57-9a0e-3c2b1d0e9f8a"),
        ];
        CountingHost {
            request_headers: RefCell::new(
                headers
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                    .collect(),
            ),
            callout: CalloutResponse {
                status: Some(200),
                limit_remaining: Some(19_999),
                limit_reset: Some(3_600),
                limit_max_value: Some(20_000),
                body: bench_answer(SystemTime::now()).into_bytes(),
                ..CalloutResponse::default()
            },
            calls: RefCell::default(),
            counting: Cell::new(false),
            replay: Cell::new(false),
            replied: Cell::default(),
            resumed: Cell::default(),
            dispatched: Cell::default(),
            shared: RefCell::default(),
            queue: RefCell::default(),
        }
    }

    /// The same request again on this host, its shared data kept: headers as sent, no call counted.
    fn next_request(&self) {
        let fresh = CountingHost::bench_request();
        *self.request_headers.borrow_mut() = fresh.request_headers.take();
        self.calls.take();
        self.replied.set(None);
        self.resumed.set(0);
        self.dispatched.set(0);
    }

    fn record(&self, name: &'static str) {
        if !self.counting.get() {
            return;
        }
        *self.calls.borrow_mut().entry(name).or_default() += 1;
    }
}

impl Host for CountingHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        let value = self
            .request_headers
            .borrow()
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.clone());
        self.record(if value.is_some() {
            "get_http_request_header (found)"
        } else {
            "get_http_request_header (absent)"
        });
        value
    }
    fn request_headers(&self) -> Option<Vec<u8>> {
        self.record("get_http_request_headers (the map)");
        let headers = self.request_headers.borrow();
        Some(tollgate::pairs::encode(
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())),
        ))
    }
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        self.record(if value.is_some() {
            "set_http_request_header"
        } else {
            "remove_http_request_header"
        });
        if self.replay.get() {
            return;
        }
        let mut headers = self.request_headers.borrow_mut();
        match (
            value,
            headers.iter_mut().find(|(candidate, _)| candidate == name),
        ) {
            (Some(value), Some((_, current))) => *current = value.to_vec(),
            (Some(value), None) => headers.push((name.to_string(), value.to_vec())),
            (None, _) => headers.retain(|(candidate, _)| candidate != name),
        }
    }
    fn request_body(&self, _size: usize) -> Option<Vec<u8>> {
        self.record("get_http_request_body");
        None
    }
    fn set_request_body(&self, _body: &[u8]) {
        self.record("set_http_request_body");
    }
    fn response_header(&self, _name: &str) -> Option<Vec<u8>> {
        self.record("get_http_response_header");
        None
    }
    fn set_response_header(&self, _name: &str, _value: &[u8]) {
        self.record("set_http_response_header");
    }
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        self.record("get_property");
        None
    }
    fn set_filter_state(&self, _name: &str, _value: &[u8]) {
        self.record("set_property (filter state)");
    }
    fn dispatch(
        &self,
        _cluster: &str,
        _headers: &[(&str, &str)],
        _body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, DispatchError> {
        self.record("dispatch_http_call");
        self.dispatched.set(self.dispatched.get() + 1);
        Ok(1)
    }
    fn callout_response(&self, _headers: usize, _body_size: usize) -> CalloutResponse {
        // The glue reads `:status`, the rejection reason and three limit headers one by one, then the body.
        for _ in 0..5 {
            self.record("get_http_call_response_header");
        }
        self.record("get_http_call_response_body");
        self.callout.clone()
    }
    fn send_reply(&self, status: u16, _headers: &[(&str, &str)], _body: &[u8]) {
        self.record("send_http_response");
        self.replied.set(Some(status));
    }
    fn send_grpc_reply(&self, _grpc_status: u32, _message: &str, _headers: &[(&str, &str)]) {
        self.record("send_grpc_response");
        self.replied.set(Some(200));
    }
    fn resume_request(&self) {
        self.record("resume_http_request");
        self.resumed.set(self.resumed.get() + 1);
    }
    fn clear_route_cache(&self) {
        self.record("clear_route_cache");
    }
    fn now(&self) -> SystemTime {
        self.record("get_current_time");
        SystemTime::now()
    }
    /// Not a hostcall in the wasm build: counters are summed in the VM and handed to Envoy at the
    /// root context's tick (`Adapter::flush_counters`), one `increment_metric` per counter and tick.
    fn add(&self, _stat: Stat, _n: u64) {}

    fn observe(&self, _histogram: tollgate::stats::Histogram, _value: u64) {
        self.record("record_metric");
    }
}

impl SharedStore for CountingHost {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.record("get_shared_data");
        self.shared.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        self.record("set_shared_data");
        let mut shared = self.shared.borrow_mut();
        let cas = shared.get(key).map_or(1, |(_, cas)| cas + 1);
        shared.insert(key.to_string(), (value.to_vec(), cas));
        Ok(())
    }
    fn enqueue(&self, value: &[u8]) -> Result<(), StoreError> {
        self.record("enqueue_shared_queue");
        self.queue.borrow_mut().push_back(value.to_vec());
        Ok(())
    }
    fn dequeue(&self) -> Option<Vec<u8>> {
        self.record("dequeue_shared_queue");
        self.queue.borrow_mut().pop_front()
    }
}
