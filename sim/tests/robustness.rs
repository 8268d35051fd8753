//! Bad input gets apisonator's error, oversized input master's 400 `bad_request`, and nothing a
//! client sends stops the simulator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::{FIXTURES, Sim, error_xml, send_raw};

const NOT_VALID_DATA: (&str, &str) = ("not_valid_data", "all data must be valid UTF8");
const SYNTAX: &str = "request contains syntax errors, should not be repeated without modification";

#[test]
fn malformed_parameters() {
    for f in FIXTURES {
        let sim = f.start();
        let creds = f.creds(f.all_app, f.all_key);
        let cases = [
            (
                format!("{creds}&usage%5B%5D=1&usage%5B{}%5D=1", f.parent),
                400,
                "bad_request",
                SYNTAX.to_owned(),
            ),
            (
                format!("{creds}&usage={}&usage%5Bx%5D=1", f.parent),
                400,
                "bad_request",
                SYNTAX.to_owned(),
            ),
            (
                format!("{creds}&usage%5B{}%5D=1%", f.parent),
                400,
                "bad_request",
                "Invalid query parameters: invalid %-encoding".to_owned(),
            ),
            (
                format!("{creds}&a{}=1", "[b]".repeat(150)),
                400,
                "bad_request",
                SYNTAX.to_owned(),
            ),
            (
                format!("{creds}&app_key=%ff"),
                400,
                NOT_VALID_DATA.0,
                NOT_VALID_DATA.1.to_owned(),
            ),
            (
                format!("{creds}&usage%5B%ff%5D=1"),
                400,
                NOT_VALID_DATA.0,
                NOT_VALID_DATA.1.to_owned(),
            ),
            (
                format!("{creds}&referrer=%c3%28"),
                400,
                NOT_VALID_DATA.0,
                NOT_VALID_DATA.1.to_owned(),
            ),
            (
                format!("service_token={}&service_id=%ff", f.token),
                400,
                NOT_VALID_DATA.0,
                NOT_VALID_DATA.1.to_owned(),
            ),
        ];
        for endpoint in ["authorize", "authrep", "oauth_authorize", "oauth_authrep"] {
            for (query, status, code, message) in &cases {
                let r = sim.get(&format!("/transactions/{endpoint}.xml?{query}"));
                assert_eq!(
                    (r.status, r.text()),
                    (*status, error_xml(code, message)),
                    "{endpoint} {query}"
                );
            }
        }
        // Parameters are parsed before routing, as in Sinatra.
        let r = sim.get("/no/such/route?x=%zz");
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
        // A string `log` makes apisonator fail: 500.
        let r = sim.get(&format!(
            "{}&log=200",
            f.url("authrep", f.all_app, f.all_key, "")
        ));
        assert_eq!(
            (r.status, r.text()),
            (500, "Internal Server Error\n".to_owned())
        );
        // A transaction that is not a hash, too.
        let r = sim.post_form(
            "/transactions.xml",
            &format!(
                "service_token={}&service_id={}&transactions[0]=x",
                f.token, f.service
            ),
        );
        assert_eq!(r.status, 500);
        // Invalid UTF-8 in a transaction value: accepted, then refused by the job.
        let r = sim.post_form("/transactions.xml", &format!("service_token={}&service_id={}&transactions[0][app_id]={}&transactions[0][usage][{}]=1&transactions[0][timestamp]=%ff", f.token, f.service, f.all_app, f.parent));
        assert_eq!(r.status, 202);
        assert_eq!(sim.errors(f.service)["errors"][0]["code"], "not_valid_data");
        assert_eq!(sim.get("/status").status, 200);
    }
}

#[test]
fn oversized_requests() {
    for f in FIXTURES {
        let sim = f.start();
        let many = format!("{}{}", f.creds(f.all_app, f.all_key), "&x=1".repeat(4096));
        let r = sim.get(&format!("/transactions/authrep.xml?{many}"));
        let count = many.matches('&').count() + 1;
        let expected = format!("total number of query parameters ({count}) exceeds limit (4096)");
        assert_eq!(
            (r.status, r.text()),
            (400, error_xml("bad_request", &expected))
        );
        let r = sim.post_form("/transactions.xml", &many);
        assert_eq!(r.status, 400);
        assert!(r.text().contains("exceeds limit (4096)"));
        let mut body = format!(
            "service_token={}&service_id={}&transactions[0][app_id]={}&transactions[0][usage][{}]=1&pad=",
            f.token, f.service, f.all_app, f.parent
        );
        body.push_str(&"a".repeat(4 * 1024 * 1024));
        let r = sim.post_form("/transactions.xml", &body);
        let expected = format!("total query size ({}) exceeds limit (4194304)", body.len());
        assert_eq!(
            (r.status, r.text()),
            (400, error_xml("bad_request", &expected))
        );
        // Just under the limits is fine.
        let fits = format!(
            "service_token={}&service_id={}&transactions[0][app_id]={}&transactions[0][usage][{}]=1{}",
            f.token,
            f.service,
            f.all_app,
            f.parent,
            "&x=1".repeat(4000)
        );
        assert_eq!(sim.post_form("/transactions.xml", &fits).status, 202);
        // A URI too long for the HTTP layer is refused there, and the simulator carries on.
        let r = sim.get(&format!(
            "/transactions/authrep.xml?x={}",
            "a".repeat(70_000)
        ));
        assert!(
            r.status == 414 || r.status == 431 || r.status == 400,
            "{}",
            r.status
        );
        assert_eq!(sim.get("/status").status, 200);
        assert_eq!(sim.usage_in(f.service, f.all_app, f.parent, "eternity"), 1);
    }
}

#[test]
fn broken_http_does_not_stop_it() {
    let mut sim = Sim::start(Some("other.json"));
    let inputs: [&[u8]; 8] = [
        b"\x00\x01\x02\xff\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /transactions.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
        b"POST /transactions.xml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /transactions/authrep.xml?\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /status HTTP/1.1\r\nHost: x\r\n3scale-options: \xff\xfe=%zz\r\nConnection: close\r\n\r\n",
        b"",
    ];
    for input in inputs {
        let _ = send_raw(&sim.addr, input);
    }
    // Half-written requests, then the client goes away.
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(&sim.addr).unwrap();
        use std::io::Write;
        let _ = s.write_all(b"GET /transactions/authrep.xml?service_id=");
    }
    assert!(sim.is_running());
    assert_eq!(sim.get("/status").status, 200);
}

#[test]
fn random_queries_never_crash_it() {
    let mut sim = Sim::start(Some("reference.json"));
    let pieces = [
        "service_token=tok1",
        "service_id=svc1",
        "provider_key=pk1",
        "app_id=app1",
        "app_key=key1",
        "user_key=ukey1",
        "usage[hits]=1",
        "usage[get_hello]=%23",
        "usage[]=x",
        "usage=1",
        "usage[hits][a]=1",
        "log[code]=200",
        "log[]=1",
        "user_id=",
        "referrer=*",
        "redirect_uri=",
        "no_body",
        "%ff=1",
        "a[=1",
        "]]=",
        "&&",
        "usage[disabled_m]=99999999999999999999999",
        "transactions[0][app_id]=app1",
        "transactions[0][usage][hits]=1",
        "transactions[]=1",
        "%",
        "+",
        "=",
    ];
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let endpoints = ["authorize", "authrep", "oauth_authorize", "oauth_authrep"];
    for _ in 0..400 {
        let n = (next() % 7) as usize;
        let query: Vec<&str> = (0..n)
            .map(|_| pieces[(next() % pieces.len() as u64) as usize])
            .collect();
        let query = query.join("&").replace('[', "%5B").replace(']', "%5D");
        let r = if next() % 4 == 0 {
            sim.post_form("/transactions.xml", &query)
        } else {
            sim.get(&format!(
                "/transactions/{}.xml?{query}",
                endpoints[(next() % 4) as usize]
            ))
        };
        assert!(
            matches!(r.status, 200 | 202 | 400 | 403 | 404 | 409 | 422 | 500),
            "{} for {query}",
            r.status
        );
        if r.status == 500 {
            assert_eq!(r.text(), "Internal Server Error\n");
        }
    }
    assert!(sim.is_running());
    assert_eq!(sim.get("/status").status, 200);
}
