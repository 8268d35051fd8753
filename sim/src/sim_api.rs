//! The simulator's own API under `/_sim/` (outside apisonator's namespace): call counters,
//! received requests, usage and response codes per application, reset, faults and the clock.

use hyper::Method;
use serde_json::{Value, json};

use crate::clock::{Instant, Period, format_period_time, parse_transaction_time};
use crate::http::{Reply, query_param, segments};
use crate::monitor::Fault;
use crate::server::App;
use crate::store::{Store, TRACKED_CODES};

/// Answers one `/_sim/...` request.
pub async fn handle(
    app: &App,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    conn_id: u64,
) -> Reply {
    let Some(segments) = segments(path) else {
        return not_found();
    };
    let parts: Vec<&str> = segments.iter().map(String::as_str).skip(1).collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["calls"]) => Reply::json(200, &app.monitor().calls_json()),
        ("GET", ["requests"]) => requests(app, query),
        ("GET", ["services", sid, "applications", app_id, "usage"]) => {
            usage(&app.store(), sid, app_id)
        }
        ("GET", ["services", sid, "applications", app_id, "response_codes"]) => {
            response_codes(&app.store(), sid, app_id)
        }
        ("POST", ["reset"]) => {
            app.store().reset_counters();
            app.store().worker = crate::worker::Worker::default();
            app.monitor().reset();
            Reply::json(200, &json!({"status": "reset"}))
        }
        ("GET", ["faults"]) => Reply::json(200, &json!({"faults": app.monitor().faults()})),
        ("PUT", ["faults"]) => set_fault(app, body),
        ("DELETE", ["faults"]) => {
            app.monitor().clear_faults();
            Reply::json(200, &json!({"status": "cleared"}))
        }
        ("POST", ["faults", "refuse"]) => refuse(app, body, conn_id, false).await,
        ("POST", ["faults", "restart"]) => refuse(app, body, conn_id, true).await,
        ("GET", ["worker"]) => worker_reply(&app.store()),
        ("PUT", ["worker"]) => set_worker(&mut app.store(), body),
        ("GET", ["clock"]) => clock_reply(&app.store()),
        ("PUT", ["clock"]) => set_clock(&mut app.store(), body),
        ("DELETE", ["clock"]) => {
            let mut store = app.store();
            store.clock.unfreeze();
            clock_reply(&store)
        }
        _ => not_found(),
    }
}

fn not_found() -> Reply {
    Reply::json(404, &json!({"status": "not_found", "error": "Not found"}))
}

fn bad_request(message: impl Into<String>) -> Reply {
    Reply::json(400, &json!({"status": "error", "error": message.into()}))
}

fn parse_json(body: &[u8]) -> Result<Value, Reply> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON: {e}")))
}

fn requests(app: &App, query: &str) -> Reply {
    let limit = match query_param(query, "limit") {
        None => 100,
        Some(n) => match n.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return bad_request("limit must be a non-negative integer"),
        },
    };
    let monitor = app.monitor();
    Reply::json(200, &json!(monitor.requests(limit)))
}

/// Unknown service or application, as apisonator's internal API says it.
fn lookup_error(store: &Store, sid: &str, app_id: &str) -> Option<Reply> {
    if store.service(sid).is_none() {
        return Some(Reply::json(
            404,
            &json!({"status": "not_found", "error": "service not found"}),
        ));
    }
    let known = store
        .data(sid)
        .is_some_and(|d| d.applications.contains_key(app_id));
    (!known).then(|| {
        Reply::json(
            404,
            &json!({"status": "not_found", "error": "application not found"}),
        )
    })
}

/// Every metric's value in every current period, not only metrics with limits.
fn usage(store: &Store, sid: &str, app_id: &str) -> Reply {
    if let Some(error) = lookup_error(store, sid, app_id) {
        return error;
    }
    let now = store.clock.now().secs;
    let mut metrics = serde_json::Map::new();
    if let Some(data) = store.data(sid) {
        for metric in data.metrics.ordered() {
            let mut periods = serde_json::Map::new();
            for period in Period::ALL.iter().rev() {
                periods.insert(
                    period.name().into(),
                    data.current_value(app_id, &metric.id, *period, now).into(),
                );
            }
            metrics.insert(metric.name.clone(), periods.into());
        }
    }
    Reply::json(200, &json!({"metrics": metrics}))
}

/// Stored response codes (eternity totals), only those apisonator tracks and has seen.
fn response_codes(store: &Store, sid: &str, app_id: &str) -> Reply {
    if let Some(error) = lookup_error(store, sid, app_id) {
        return error;
    }
    let mut codes = serde_json::Map::new();
    if let Some(stats) = store.data(sid).and_then(|d| d.stats.get(app_id)) {
        for (code, count) in TRACKED_CODES.iter().zip(stats.codes) {
            if count > 0 {
                codes.insert((*code).into(), count.into());
            }
        }
    }
    Reply::json(200, &json!({"codes": codes}))
}

fn set_fault(app: &App, body: &[u8]) -> Reply {
    let fault: Fault = match serde_json::from_slice(body) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("invalid fault: {e}")),
    };
    if let Err(message) = fault.validate() {
        return bad_request(message);
    }
    app.monitor().set_fault(fault.clone());
    Reply::json(200, &json!({"status": "set", "fault": fault}))
}

/// `refuse` (every connection closed at once) or `restart` (graceful: answers in progress are sent).
async fn refuse(app: &App, body: &[u8], conn_id: u64, graceful: bool) -> Reply {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    let Some(for_ms) = value.get("for_ms").and_then(Value::as_u64) else {
        return bad_request("for_ms (milliseconds) is required");
    };
    let done = if graceful {
        app.restart(for_ms, conn_id).await
    } else {
        app.refuse(for_ms, conn_id).await
    };
    if done {
        let status = if graceful { "restarting" } else { "refusing" };
        Reply::json(200, &json!({"status": status, "for_ms": for_ms}))
    } else {
        Reply::json(
            500,
            &json!({"status": "error", "error": "the listener is not running"}),
        )
    }
}

fn worker_reply(store: &Store) -> Reply {
    Reply::json(
        200,
        &json!({
            "delay_ms": store.worker.delay.as_millis() as u64,
            "paused": store.worker.paused,
            "queued": store.worker.queued(),
        }),
    )
}

/// `{"delay_ms": N, "paused": bool}`, both optional: the worker's lag, or a paused worker. Resuming
/// runs what is due; `{"delay_ms": 0, "paused": false}` is synchronous again (everything waiting is
/// applied).
fn set_worker(store: &mut Store, body: &[u8]) -> Reply {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    let known = ["delay_ms", "paused"];
    if let Some(field) = value
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        return bad_request(format!("unknown field {field}: use delay_ms and paused"));
    }
    if let Some(delay) = value.get("delay_ms") {
        let Some(ms) = delay.as_u64() else {
            return bad_request("delay_ms must be a number of milliseconds");
        };
        store.worker.delay = std::time::Duration::from_millis(ms);
    }
    if let Some(paused) = value.get("paused") {
        let Some(paused) = paused.as_bool() else {
            return bad_request("paused must be true or false");
        };
        store.worker.paused = paused;
    }
    if store.worker.is_async() {
        crate::report::run_due_jobs(store);
    } else {
        crate::report::drain_jobs(store);
    }
    worker_reply(store)
}

fn clock_reply(store: &Store) -> Reply {
    let now = store.clock.now();
    Reply::json(
        200,
        &json!({
            "now": format_period_time(now.secs),
            "epoch": now.secs,
            "frozen": store.clock.is_frozen(),
        }),
    )
}

/// `{"now": "YYYY-MM-DD HH:MM:SS" | epoch}` freezes the clock there; `{"advance_s": N}` moves it.
fn set_clock(store: &mut Store, body: &[u8]) -> Reply {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    let now = match value.get("now") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(secs) => Some(secs),
            None => return bad_request("now must be whole seconds"),
        },
        Some(Value::String(s)) => match parse_transaction_time(s) {
            Some(secs) => Some(secs),
            None => return bad_request(format!("cannot parse time {s:?}")),
        },
        Some(_) => return bad_request("now must be a time string or epoch seconds"),
    };
    let advance = match value.get("advance_s") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(secs) => Some(secs),
            None => return bad_request("advance_s must be whole seconds"),
        },
    };
    if now.is_none() && advance.is_none() {
        return bad_request("give now and/or advance_s");
    }
    if let Some(secs) = now {
        store.clock.freeze(Instant::from_secs(secs));
    }
    if let Some(secs) = advance {
        store.clock.advance(secs);
    }
    clock_reply(store)
}
