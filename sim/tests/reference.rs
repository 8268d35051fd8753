//! Every [observed] request/answer of `shared/reference/3scale-backend-protocol.md`, replayed
//! against the simulator started with `tests/seeds/reference.json` (the reference's setup) and
//! its clock frozen at the capture moment, so even the timestamps match byte for byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::{CAPTURE, Report, Sim, XML_DECL, assert_listener_headers, error_xml, status_xml};

const APP1: &str =
    "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1";

fn sim() -> Sim {
    let sim = Sim::start(Some("reference.json"));
    sim.freeze(CAPTURE);
    sim
}

fn production_reports(hits: i64, get_hello: i64) -> Vec<Report<'static>> {
    vec![
        Report {
            metric: "hits",
            period: "month",
            bounds: Some(("2026-11-01 00:00:00", "2026-12-01 00:00:00")),
            max: 20000,
            current: hits,
            exceeded: false,
        },
        Report {
            metric: "hits",
            period: "day",
            bounds: Some(("2026-11-24 00:00:00", "2026-11-25 00:00:00")),
            max: 1000,
            current: hits,
            exceeded: false,
        },
        Report {
            metric: "get_hello",
            period: "hour",
            bounds: Some(("2026-11-24 18:00:00", "2026-11-24 19:00:00")),
            max: 100,
            current: get_hello,
            exceeded: false,
        },
        Report {
            metric: "disabled_m",
            period: "eternity",
            bounds: None,
            max: 0,
            current: 0,
            exceeded: false,
        },
    ]
}

#[test]
fn authorized_with_plan_and_usage_reports() {
    let sim = sim();
    let r = sim.get(APP1);
    assert_eq!(r.status, 200);
    assert_listener_headers(&r);
    let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>true</authorized><plan>Production</plan><usage_reports><usage_report metric=\"hits\" period=\"month\"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>20000</max_value><current_value>0</current_value></usage_report><usage_report metric=\"hits\" period=\"day\"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>1000</max_value><current_value>0</current_value></usage_report><usage_report metric=\"get_hello\" period=\"hour\"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>100</max_value><current_value>0</current_value></usage_report><usage_report metric=\"disabled_m\" period=\"eternity\"><max_value>0</max_value><current_value>0</current_value></usage_report></usage_reports></status>";
    assert_eq!(r.text(), expected);
    assert_eq!(
        expected,
        status_xml(None, None, "Production", &production_reports(0, 0), "")
    );
    // The same call authenticated with the provider key.
    let r = sim.get(
        "/transactions/authorize.xml?provider_key=pk1&service_id=svc1&app_id=app1&app_key=key1",
    );
    assert_eq!((r.status, r.text()), (200, expected.to_owned()));
}

#[test]
fn all_seven_periods_and_an_escaped_plan_name() {
    let sim = Sim::start(Some("reference.json"));
    sim.freeze("2026-11-24 18:10:05");
    let r =
        sim.get("/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app_all");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>true</authorized><plan>All &amp; &lt;Periods&gt;</plan><usage_reports><usage_report metric=\"hits\" period=\"eternity\"><max_value>130</max_value><current_value>0</current_value></usage_report><usage_report metric=\"hits\" period=\"year\"><period_start>2026-01-01 00:00:00 +0000</period_start><period_end>2027-01-01 00:00:00 +0000</period_end><max_value>101</max_value><current_value>0</current_value></usage_report><usage_report metric=\"hits\" period=\"month\"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>146</max_value><current_value>0</current_value></usage_report><usage_report metric=\"hits\" period=\"week\"><period_start>2026-11-23 00:00:00 +0000</period_start><period_end>2026-11-30 00:00:00 +0000</period_end><max_value>138</max_value><current_value>0</current_value></usage_report><usage_report metric=\"hits\" period=\"day\"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>131</max_value><current_value>0</current_value></usage_report><usage_report metric=\"hits\" period=\"hour\"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>135</max_value><current_value>0</current_value></usage_report><usage_report metric=\"hits\" period=\"minute\"><period_start>2026-11-24 18:10:00 +0000</period_start><period_end>2026-11-24 18:11:00 +0000</period_end><max_value>148</max_value><current_value>0</current_value></usage_report></usage_reports></status>"
    );
}

#[test]
fn plan_without_limits() {
    let sim = sim();
    let r =
        sim.get("/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app_unl");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>true</authorized><plan>Unlimited</plan></status>"
    );
}

#[test]
fn denied_by_the_requested_usage() {
    let sim = sim();
    let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan><usage_reports><usage_report metric=\"hits\" period=\"minute\"><period_start>2026-11-24 18:09:00 +0000</period_start><period_end>2026-11-24 18:10:00 +0000</period_end><max_value>2</max_value><current_value>0</current_value></usage_report></usage_reports></status>";
    for endpoint in ["authorize", "authrep"] {
        let r = sim.get(&format!("/transactions/{endpoint}.xml?service_token=tok1&service_id=svc1&app_id=app_basic&usage%5Bhits%5D=3"));
        assert_eq!(
            (r.status, r.text()),
            (409, expected.to_owned()),
            "{endpoint}"
        );
    }
    assert_eq!(
        sim.usage_in("svc1", "app_basic", "hits", "minute"),
        0,
        "a denied authrep reports nothing"
    );
}

#[test]
fn denied_by_stored_usage_over_the_limit() {
    let sim = Sim::start(Some("reference.json"));
    sim.freeze("2026-11-24 18:10:05");
    // Reports do not check limits: three hits on a limit of two.
    let r = sim.post_form("/transactions.xml", "service_token=tok1&service_id=svc1&transactions%5B0%5D%5Bapp_id%5D=app_basic&transactions%5B0%5D%5Busage%5D%5Bhits%5D=3");
    assert_eq!(r.status, 202);
    let r =
        sim.get("/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app_basic");
    assert_eq!(r.status, 409);
    let exceeded = "<usage_reports><usage_report metric=\"hits\" period=\"minute\" exceeded=\"true\"><period_start>2026-11-24 18:10:00 +0000</period_start><period_end>2026-11-24 18:11:00 +0000</period_end><max_value>2</max_value><current_value>3</current_value></usage_report></usage_reports></status>";
    assert_eq!(
        r.text(),
        format!(
            "{XML_DECL}<status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan>{exceeded}"
        )
    );
    // Only limits of the requested metrics (and their ancestors) are enforced.
    let r = sim.get("/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app_basic&usage%5Bunlimited_m%5D=1");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!("{XML_DECL}<status><authorized>true</authorized><plan>Basic</plan>{exceeded}")
    );
}

#[test]
fn suspended_application() {
    let sim = sim();
    let r = sim.get(
        "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app4&app_key=key4",
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.text(),
        status_xml(
            Some("application is not active"),
            None,
            "Production",
            &production_reports(0, 0),
            ""
        )
    );
    assert!(r.text().starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>false</authorized><reason>application is not active</reason><plan>Production</plan><usage_reports>"));
}

#[test]
fn oauth_authrep_success_with_unescaped_redirect_url() {
    let sim = sim();
    let r = sim.get("/transactions/oauth_authrep.xml?service_token=tok3&service_id=svc3&app_id=client1&usage%5Bhits%5D=1");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>true</authorized><application><id>client1</id><key>secret1</key><redirect_url>https://example.com/cb?a=1&b=2</redirect_url></application><plan>Gold</plan><usage_reports><usage_report metric=\"hits\" period=\"day\"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>100</max_value><current_value>1</current_value></usage_report></usage_reports></status>"
    );
}

#[test]
fn extensions_list_app_keys_and_hierarchy() {
    let sim = sim();
    let r = sim.get_opts(APP1, "list_app_keys=1");
    assert!(r.text().ends_with("</usage_reports><app_keys app=\"app1\" svc=\"svc1\"><key id=\"key1\"/></app_keys></status>"), "{}", r.text());
    let r = sim.get_opts(APP1, "hierarchy=1");
    assert!(r.text().ends_with("</usage_reports><hierarchy><metric name=\"hits\" children=\"get_hello disabled_m\"/><metric name=\"hits\" children=\"get_hello disabled_m\"/><metric name=\"get_hello\" children=\"\"/><metric name=\"disabled_m\" children=\"\"/></hierarchy></status>"), "{}", r.text());
    let r = sim.get_opts(APP1, "hierarchy=1&list_app_keys=1");
    let text = r.text();
    assert!(text.find("<app_keys").unwrap() < text.find("<hierarchy>").unwrap());
    // An application without keys lists an empty section.
    let r = sim.get_opts(
        "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app_unl",
        "list_app_keys=1",
    );
    assert!(
        r.text().ends_with(
            "<plan>Unlimited</plan><app_keys app=\"app_unl\" svc=\"svc1\"></app_keys></status>"
        ),
        "{}",
        r.text()
    );
}

#[test]
fn authrep_reports_child_usage_and_response_code() {
    let sim = sim();
    let r = sim.get("/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bget_hello%5D=3&log%5Bcode%5D=200");
    assert_eq!(r.status, 200);
    // The answer already includes this call's usage, child usage added to hits.
    assert_eq!(
        r.text(),
        status_xml(None, None, "Production", &production_reports(3, 3), "")
    );
    assert_eq!(sim.usage_in("svc1", "app1", "hits", "month"), 3);
    assert_eq!(sim.usage_in("svc1", "app1", "get_hello", "eternity"), 3);
    let (_, codes) = sim.json(
        "GET",
        "/_sim/services/svc1/applications/app1/response_codes",
        "",
    );
    assert_eq!(codes, serde_json::json!({"codes": {"200": 1, "2XX": 1}}));
}

#[test]
fn user_key_and_oidc_requests() {
    let sim = sim();
    let r = sim.get("/transactions/authrep.xml?service_token=tok2&service_id=svc2&user_key=uk1&usage%5Bhits%5D=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sim.usage_in("svc2", "uapp1", "hits", "day"), 1);
    // GA: on a user_key service an app_id alone is accepted too.
    let r = sim.get("/transactions/authorize.xml?service_token=tok2&service_id=svc2&app_id=uapp1");
    assert_eq!(r.status, 200);
    // OIDC with a non-oauth endpoint: app_id only, the key is checked if given.
    let r = sim.get("/transactions/authrep.xml?service_token=tok3&service_id=svc3&app_id=client1&usage%5Bhits%5D=1");
    assert_eq!(r.status, 200);
    let r = sim.get(
        "/transactions/authrep.xml?service_token=tok3&service_id=svc3&app_id=client1&app_key=nope",
    );
    assert_eq!(r.status, 409);
    assert!(
        r.text()
            .contains("<reason>application key \"nope\" is invalid</reason>")
    );
    assert_eq!(sim.usage_in("svc3", "client1", "hits", "day"), 1);
}

#[test]
fn caller_authentication_errors() {
    let sim = sim();
    let cases = [
        (
            "app_id=app1",
            403,
            "provider_key_or_service_token_required",
            "Provider key or service token are required",
        ),
        (
            "service_token=tok1&app_id=app1",
            422,
            "service_id_missing",
            "Service ID is missing",
        ),
        (
            "service_token=bad&service_id=svc1&app_id=app1",
            403,
            "service_token_invalid",
            "service token \"bad\" or service id \"svc1\" is invalid",
        ),
        (
            "service_token=tok2&service_id=svc1&app_id=app1",
            403,
            "service_token_invalid",
            "service token \"tok2\" or service id \"svc1\" is invalid",
        ),
        (
            "provider_key=bad&app_id=app1",
            403,
            "provider_key_invalid_or_service_missing",
            "provider key \"bad\" invalid and/or service ID missing",
        ),
        (
            "provider_key=bad&service_id=svc1&app_id=app1",
            403,
            "provider_key_invalid",
            "provider key \"bad\" is invalid",
        ),
        (
            "provider_key=pk1&service_id=nosuch&app_id=app1",
            403,
            "service_id_invalid",
            "service id \"nosuch\" is invalid",
        ),
        (
            "provider_key=pk1&service_id=svc2&app_id=uapp1",
            403,
            "service_id_invalid",
            "service id \"svc2\" is invalid",
        ),
    ];
    for endpoint in ["authorize", "authrep", "oauth_authorize", "oauth_authrep"] {
        for (query, status, code, message) in cases {
            let r = sim.get(&format!("/transactions/{endpoint}.xml?{query}"));
            assert_eq!(
                (r.status, r.text()),
                (status, error_xml(code, message)),
                "{endpoint} {query}"
            );
            assert_listener_headers(&r);
        }
    }
    // The provider key wins over a service token; without service_id the default service is used.
    let r = sim.get(
        "/transactions/authorize.xml?provider_key=pk1&service_token=bad&app_id=app1&app_key=key1",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn application_errors() {
    let sim = sim();
    let base = "/transactions/authorize.xml?service_token=tok1&service_id=svc1";
    let cases = [
        (
            "&app_id=nope",
            404,
            "application_not_found",
            "application with id=\"nope\" was not found",
        ),
        (
            "&app_id=%20app1%20&app_key=key1",
            404,
            "application_not_found",
            "application with id=\" app1 \" was not found",
        ),
        (
            "",
            404,
            "application_not_found",
            "application with id=\"\" was not found",
        ),
        (
            "&user_key=uk1",
            403,
            "user_key_invalid",
            "user key \"uk1\" is invalid",
        ),
        (
            "&app_id=app1&user_key=ukey1",
            403,
            "authentication_error",
            "either app_id or user_key is allowed, not both",
        ),
        (
            "&app_id=app1&app_key=key1&usage%5Bnope%5D=1",
            404,
            "metric_invalid",
            "metric \"nope\" is invalid",
        ),
        (
            "&app_id=app1&app_key=key1&usage%5Bhits%5D=-1",
            403,
            "usage_value_invalid",
            "usage value \"-1\" for metric \"hits\" is invalid",
        ),
        (
            "&app_id=app1&app_key=key1&usage%5Bhits%5D=",
            403,
            "usage_value_invalid",
            "usage value for metric \"hits\" can not be empty",
        ),
        (
            "&app_id=app1&user_id=123",
            400,
            "end_users_no_longer_supported",
            "End-users are no longer supported, do not specify the user_id parameter",
        ),
        (
            "&app_id=%3Cb%3E%26",
            404,
            "application_not_found",
            "application with id=\"&lt;b&gt;&amp;\" was not found",
        ),
    ];
    for (query, status, code, message) in cases {
        let r = sim.get(&format!("{base}{query}"));
        assert_eq!(
            (r.status, r.text()),
            (status, error_xml(code, message)),
            "{query}"
        );
    }
    // A known user key on an app_id/app_key service finds its application (app3 has no keys).
    assert_eq!(sim.get(&format!("{base}&user_key=ukey1")).status, 200);
    // oauth endpoints require app_id.
    let r = sim.get("/transactions/oauth_authorize.xml?service_token=tok3&service_id=svc3");
    assert_eq!(
        (r.status, r.text()),
        (
            404,
            error_xml(
                "application_not_found",
                "application with id=\"\" was not found"
            )
        )
    );
    // `usage` that is not a hash: 403 with an empty body.
    let r = sim.get(&format!("{base}&app_id=app1&app_key=key1&usage=1"));
    assert_eq!((r.status, r.body.len()), (403, 0));
    assert_listener_headers(&r);
}

#[test]
fn no_body_empties_status_and_error_answers() {
    let sim = sim();
    let r = sim.get_opts(
        "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=nope",
        "no_body=1",
    );
    assert_eq!((r.status, r.body.len()), (404, 0));
    let r = sim.get(
        "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=nope&no_body=true",
    );
    assert_eq!((r.status, r.body.len()), (404, 0));
    let r = sim.get_opts(APP1, "no_body=1");
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = sim.get_opts(APP1, "no_body=0");
    assert!(r.text().starts_with(XML_DECL));
    assert!(r.header("3scale-rejection-reason").is_none());
}

#[test]
fn validation_order_decides_the_reason() {
    let sim = sim();
    // Wrong key + unknown metric: the key validator runs first…
    let q = "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=wrong&usage%5Bnope%5D=1";
    let r = sim.get(q);
    assert_eq!(r.status, 409);
    assert!(
        r.text()
            .contains("<reason>application key \"wrong\" is invalid</reason>")
    );
    // …except with no_body, where metric names are resolved before any validator.
    let r = sim.get_opts(q, "no_body=1");
    assert_eq!((r.status, r.body.len()), (404, 0));
    let r = sim.get_opts(q, "no_body=1&rejection_reason_header=1");
    assert!(
        r.header("3scale-rejection-reason").is_none(),
        "errors carry no rejection header"
    );
    // Suspended and over the limit: not active wins.
    let r = sim.get("/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app4&app_key=key4&usage%5Bdisabled_m%5D=1");
    assert!(
        r.text()
            .contains("<reason>application is not active</reason>")
    );
    // Missing key.
    let r = sim.get_opts(
        "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app1",
        "rejection_reason_header=1",
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.header("3scale-rejection-reason"),
        Some("application_key_invalid")
    );
    assert!(
        r.text()
            .contains("<reason>application key is missing</reason>")
    );
    // An empty key is "missing"; only app_key is stripped.
    let r = sim.get("/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=%20key1%20");
    assert_eq!(r.status, 200);
}

#[test]
fn captured_limit_and_rejection_headers() {
    let sim = sim();
    let authrep = "/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bhits%5D=1";
    let options = "rejection_reason_header=1&limit_headers=1";
    for _ in 0..3 {
        assert_eq!(sim.get(authrep).status, 200);
    }
    let r = sim.get_opts(authrep, options);
    assert_eq!(r.status, 200);
    assert_eq!(r.limits(), (Some("996"), Some("21009"), Some("1000")));
    assert!(r.header("3scale-rejection-reason").is_none());

    let r = sim.get_opts("/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app_basic&usage%5Bhits%5D=3", options);
    assert_eq!(r.status, 409);
    assert_eq!(r.header("3scale-rejection-reason"), Some("limits_exceeded"));
    assert_eq!(r.limits(), (Some("0"), Some("9"), Some("2")));

    let r = sim.get_opts(
        "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=nope",
        options,
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.header("3scale-rejection-reason"),
        Some("application_key_invalid")
    );
    assert_eq!(r.limits(), (None, None, None));

    let r = sim.get_opts(
        "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=nope",
        options,
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        (r.header("3scale-rejection-reason"), r.limits()),
        (None, (None, None, None))
    );
}

#[test]
fn zero_usage_is_authorized_and_records_nothing() {
    let sim = sim();
    let r = sim.get_opts(
        "/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bhits%5D=0&log%5Bcode%5D=200",
        "limit_headers=1",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.limits(), (Some("-1"), Some("-1"), None));
    assert_eq!(sim.usage_in("svc1", "app1", "hits", "eternity"), 0);
    let (_, codes) = sim.json(
        "GET",
        "/_sim/services/svc1/applications/app1/response_codes",
        "",
    );
    assert_eq!(codes, serde_json::json!({"codes": {}}));
}

#[test]
fn report_observed_batch() {
    let sim = sim();
    let r = sim.post_form("/transactions.xml", "service_token=tok1&service_id=svc1&transactions%5B0%5D%5Bapp_id%5D=app1&transactions%5B0%5D%5Busage%5D%5Bhits%5D=2&transactions%5B0%5D%5Blog%5D%5Bcode%5D=200&transactions%5B1%5D%5Bapp_id%5D=app3&transactions%5B1%5D%5Busage%5D%5Bget_hello%5D=1&transactions%5B1%5D%5Btimestamp%5D=2026-11-24%2018%3A09%3A51");
    assert_eq!((r.status, r.body.len()), (202, 0));
    assert_listener_headers(&r);
    assert_eq!(sim.usage_in("svc1", "app1", "hits", "minute"), 2);
    assert_eq!(sim.usage_in("svc1", "app3", "hits", "day"), 1);
    assert_eq!(sim.usage_in("svc1", "app3", "get_hello", "day"), 1);
    assert_eq!(sim.errors("svc1")["count"], 0);
    // Everything in the query string works too (the go-client's way).
    let r = sim.request("POST", "/transactions.xml?provider_key=pk1&service_id=svc1&transactions%5B0%5D%5Bapp_id%5D=app1&transactions%5B0%5D%5Busage%5D%5Bhits%5D=1", &[], None);
    assert_eq!(r.status, 202);
    assert_eq!(sim.usage_in("svc1", "app1", "hits", "minute"), 3);
}

#[test]
fn report_request_errors() {
    let sim = sim();
    let r = sim.request(
        "POST",
        "/transactions.xml",
        &[("Content-Type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            error_xml(
                "content_type_invalid",
                "invalid Content-Type: application/json"
            )
        )
    );
    let r = sim.request(
        "POST",
        "/transactions.xml",
        &[(
            "Content-Type",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        )],
        Some(b"service_token=tok1&service_id=svc1"),
    );
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            error_xml("transactions_is_blank", "transactions parameter is blank")
        )
    );
    let r = sim.request("POST", "/transactions.xml", &[], None);
    assert_eq!(
        (r.status, r.text()),
        (
            403,
            error_xml(
                "provider_key_or_service_token_required",
                "Provider key or service token are required"
            )
        )
    );
    let r = sim.post_form("/transactions.xml", "testparam=value1%");
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            error_xml(
                "bad_request",
                "Invalid query parameters: invalid %-encoding"
            )
        )
    );
    let r = sim.post_form(
        "/transactions.xml",
        "service_token=tok1&service_id=svc1&transactions=1",
    );
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            error_xml(
                "transactions_format_invalid",
                "transactions format is invalid"
            )
        )
    );
    let r = sim.post_form(
        "/transactions.xml",
        "service_token=tok1&service_id=svc1&transactions[0]",
    );
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            error_xml(
                "transactions_has_nil_transaction",
                "transactions has a nil transaction"
            )
        )
    );
    let r = sim.post_form(
        "/transactions.xml",
        "provider_key=%ff&service_id=svc1&transactions[0][app_id]=app1",
    );
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            error_xml("not_valid_data", "all data must be valid UTF8")
        )
    );
    let r = sim.post_form("/transactions.xml", "service_token=tok1&service_id=svc1&transactions[0][user_id]=1&transactions[0][usage][hits]=1");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("end_users_no_longer_supported"));
    let r = sim.post_form("/transactions.xml", "service_token=tok1&service_id=svc1&transactions[0][app_id]=app1&transactions[0][usage][hits]=1");
    assert_eq!(r.status, 202);
    let r = sim.request("POST", "/transactions.xml", &[("Content-Type", "multipart/form-data; boundary=XyZ")], Some(b"--XyZ\r\nContent-Disposition: form-data; name=\"service_token\"\r\n\r\ntok1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"service_id\"\r\n\r\nsvc1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"transactions[0][app_id]\"\r\n\r\napp1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"transactions[0][usage][hits]\"\r\n\r\n4\r\n--XyZ--\r\n"));
    assert_eq!(r.status, 202);
    assert_eq!(sim.usage_in("svc1", "app1", "hits", "minute"), 5);
}

#[test]
fn integration_errors_are_readable() {
    let sim = sim();
    let r = sim.post_form("/transactions.xml", "service_token=tok1&service_id=svc1&transactions%5B0%5D%5Bapp_id%5D=nope&transactions%5B0%5D%5Busage%5D%5Bhits%5D=1");
    assert_eq!(r.status, 202);
    let r = sim.get("/internal/services/svc1/errors/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.text(),
        r#"{"status":"found","errors":[{"code":"application_not_found","message":"application with id=\"nope\" was not found","timestamp":"2026-11-24 18:09:51 UTC","context_info":{}}],"count":1}"#
    );
    // Authorization errors are stored too, with the request in context_info.
    sim.get("/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bnope%5D=1");
    let errors = sim.errors("svc1");
    assert_eq!(errors["count"], 2);
    assert_eq!(errors["errors"][0]["code"], "metric_invalid");
    assert!(
        errors["errors"][0]["context_info"]["url"]
            .as_str()
            .unwrap()
            .contains("usage%5Bnope%5D=1")
    );
    assert_eq!(errors["errors"][0]["context_info"]["method"], "GET");
    let (status, v) = sim.json(
        "GET",
        "/internal/services/svc1/errors/?per_page=1&page=2",
        "",
    );
    assert_eq!(
        (status, v["errors"][0]["code"].as_str()),
        (200, Some("application_not_found"))
    );
    assert_eq!(
        sim.json("GET", "/internal/services/svc1/errors/?per_page=0", "")
            .0,
        400
    );
    assert_eq!(
        sim.json("DELETE", "/internal/services/svc1/errors/", "").0,
        200
    );
    assert_eq!(sim.errors("svc1")["count"], 0);
}

#[test]
fn utilization_as_observed() {
    let sim = sim();
    sim.get("/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bget_hello%5D=3");
    sim.get("/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bhits%5D=4");
    let r = sim.get("/internal/services/svc1/applications/app1/utilization/");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        r#"{"status":"found","utilization":[{"period":"month","metric_name":"hits","max_value":20000,"current_value":7},{"period":"day","metric_name":"hits","max_value":1000,"current_value":7},{"period":"hour","metric_name":"get_hello","max_value":100,"current_value":3},{"period":"eternity","metric_name":"disabled_m","max_value":0,"current_value":0}]}"#
    );
    let (status, v) = sim.json(
        "GET",
        "/internal/services/nope/applications/app1/utilization/",
        "",
    );
    assert_eq!(
        (status, v),
        (
            404,
            serde_json::json!({"status": "not_found", "error": "service not found"})
        )
    );
    let (status, v) = sim.json(
        "GET",
        "/internal/services/svc1/applications/nope/utilization/",
        "",
    );
    assert_eq!(
        (status, v),
        (
            404,
            serde_json::json!({"status": "not_found", "error": "application not found"})
        )
    );
}

#[test]
fn health_cors_and_unknown_routes() {
    let sim = sim();
    let r = sim.get("/status");
    assert_eq!(
        (r.status, r.text()),
        (
            200,
            r#"{"status":"ok","version":{"backend":"3.4.3"}}"#.to_owned()
        )
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = sim.get("/check.txt");
    assert_eq!((r.status, r.text()), (200, "ok".to_owned()));
    assert_eq!(sim.request("HEAD", "/available", &[], None).status, 200);
    let r = sim.request("OPTIONS", "/transactions/authrep.xml", &[], None);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, POST, PATCH, PUT, DELETE")
    );
    assert!(
        r.header("access-control-allow-headers")
            .unwrap()
            .ends_with(", 3scale-options")
    );
    for (method, path) in [
        ("GET", "/transactions.xml"),
        ("POST", "/transactions/authorize.xml"),
        ("POST", "/foo.html"),
        ("GET", "/available"),
        ("PUT", "/transactions.xml"),
    ] {
        let r = sim.request(method, path, &[], Some(b""));
        assert_eq!((r.status, r.body.len()), (404, 0), "{method} {path}");
        assert_eq!(r.header("x-cascade"), Some("pass"));
        assert_listener_headers(&r);
    }
    // HEAD works wherever GET does.
    let r = sim.request("HEAD", APP1, &[], None);
    assert_eq!((r.status, r.body.len()), (200, 0));
}

#[test]
fn redirect_validation_and_oauth_not_enabled() {
    let sim = sim();
    let base =
        "/transactions/oauth_authorize.xml?service_token=tok3&service_id=svc3&app_id=client1";
    let r = sim.get(&format!(
        "{base}&redirect_uri=https%3A%2F%2Fexample.com%2Fcb%3Fa%3D1%26b%3D2"
    ));
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .contains("<redirect_uri>https://example.com/cb?a=1&b=2</redirect_uri>")
    );
    let r = sim.get_opts(
        &format!("{base}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"),
        "rejection_reason_header=1",
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.header("3scale-rejection-reason"),
        Some("redirect_uri_invalid")
    );
    assert!(
        r.text()
            .contains("<reason>redirect_uri \"https://evil.example/cb\" is invalid</reason>")
    );
    let r = sim.get_opts(
        &format!(
            "{base}&redirect_url=x&redirect_uri=https%3A%2F%2Fexample.com%2Fcb%3Fa%3D1%26b%3D2"
        ),
        "rejection_reason_header=1",
    );
    assert_eq!(
        r.header("3scale-rejection-reason"),
        Some("redirect_url_invalid"),
        "redirect_url takes precedence"
    );
    assert!(r.text().contains("<redirect_url>"));
    // app_key is validated if present, even empty.
    let r = sim.get(&format!("{base}&app_key="));
    assert!(
        r.text()
            .contains("<reason>application key is missing</reason>")
    );
    assert_eq!(sim.get(&format!("{base}&app_key=secret1")).status, 200);
    // An oauth endpoint on a non-oauth service.
    let r = sim.get_opts(
        "/transactions/oauth_authorize.xml?service_token=tok1&service_id=svc1&app_id=app1",
        "rejection_reason_header=1",
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.header("3scale-rejection-reason"),
        Some("oauth_not_enabled")
    );
    assert!(r.text().starts_with(&format!("{XML_DECL}<status><authorized>false</authorized><reason>oauth is not enabled</reason><application><id>app1</id><key>key1</key><redirect_url></redirect_url></application><plan>Production</plan>")));
}

#[test]
fn internal_api_seeding_sequence_of_the_reference() {
    let sim = Sim::start(None);
    sim.freeze(CAPTURE);
    let calls = [
        (
            "POST",
            "/internal/services/",
            r#"{"service":{"id":"svc1","provider_key":"pk1","backend_version":"2","state":"active"}}"#,
            201,
        ),
        (
            "POST",
            "/internal/service_tokens/",
            r#"{"service_tokens":{"tok1":{"service_id":"svc1"}}}"#,
            201,
        ),
        (
            "POST",
            "/internal/services/svc1/metrics/1",
            r#"{"metric":{"name":"hits"}}"#,
            201,
        ),
        (
            "POST",
            "/internal/services/svc1/metrics/2",
            r#"{"metric":{"name":"get_hello","parent_id":"1"}}"#,
            201,
        ),
        (
            "PUT",
            "/internal/services/svc1/plans/plan_prod/usagelimits/1/day",
            r#"{"usagelimit":{"day":1000}}"#,
            200,
        ),
        (
            "PUT",
            "/internal/services/svc1/plans/plan_sandbox/usagelimits/1/minute",
            r#"{"usagelimit":{"minute":5}}"#,
            200,
        ),
        (
            "POST",
            "/internal/services/svc1/applications/app1",
            r#"{"application":{"state":"active","plan_id":"plan_prod","plan_name":"Production"}}"#,
            201,
        ),
        (
            "POST",
            "/internal/services/svc1/applications/app1/keys/",
            r#"{"application_key":{"value":"key1"}}"#,
            201,
        ),
        (
            "PUT",
            "/internal/services/svc1/applications/app3/key/ukey1",
            "{}",
            200,
        ),
        (
            "POST",
            "/internal/services/svc1/applications/app4",
            r#"{"application":{"state":"suspended","plan_id":"plan_prod","plan_name":"Production"}}"#,
            201,
        ),
        (
            "POST",
            "/internal/services/",
            r#"{"service":{"id":"svc2","provider_key":"pk1","backend_version":"oauth","state":"active","default_service":false}}"#,
            201,
        ),
        (
            "POST",
            "/internal/services/svc2/applications/oapp1",
            r#"{"application":{"state":"active","plan_id":"plan_oprod","plan_name":"Production","redirect_url":"https://example.com/cb"}}"#,
            201,
        ),
    ];
    for (method, path, body, status) in calls {
        let (got, v) = sim.json(method, path, body);
        assert_eq!(got, status, "{method} {path}: {v}");
    }
    let r = sim.get("/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bget_hello%5D=1");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        status_xml(
            None,
            None,
            "Production",
            &[Report {
                metric: "hits",
                period: "day",
                bounds: Some(("2026-11-24 00:00:00", "2026-11-25 00:00:00")),
                max: 1000,
                current: 1,
                exceeded: false
            }],
            ""
        )
    );
    let r =
        sim.get("/transactions/oauth_authorize.xml?provider_key=pk1&service_id=svc2&app_id=oapp1");
    assert_eq!(r.status, 200);
    // svc1 is pk1's default service: no service_id needed with the provider key.
    assert_eq!(
        sim.get("/transactions/authorize.xml?provider_key=pk1&app_id=app1&app_key=key1")
            .status,
        200
    );
    let (status, v) = sim.json("GET", "/internal/services/svc1", "");
    assert_eq!(status, 200);
    assert_eq!(v["service"]["default_service"], true);
}
