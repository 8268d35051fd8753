//! `POST /transactions.xml`: batch reports.
//!
//! apisonator checks the request synchronously (caller, `transactions` shape) and answers 202;
//! everything about the transactions themselves (applications, metrics, values, timestamps) is
//! checked later by a background job that applies all of the batch or none of it and stores its
//! error for `GET /internal/services/<id>/errors/`. The simulator runs that job before answering.

use crate::clock::{Instant, format_error_time, parse_transaction_time};
use crate::errors::ApiError;
use crate::extensions::Extensions;
use crate::params::{Hash, Param};
use crate::store::{ServiceData, Store, StoredError};
use crate::transactor::{load_service, provider_key_error, provider_key_from_token};
use crate::usage::{ProcessedUsage, process_usage};

/// Transactions may be up to a day old…
const MAX_AGE_SECS: i64 = 86_400;
/// …and up to an hour in the future.
const MAX_AHEAD_SECS: i64 = 3_600;

/// How the report endpoint answers.
#[derive(Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    /// 202, empty body (whatever the background job found).
    Accepted,
    Error(ApiError),
    /// apisonator's unhandled exceptions on malformed transactions: 500.
    InternalError,
}

/// The synchronous part of a report, then the job.
pub fn report(
    store: &mut Store,
    params: &Hash,
    media_type: Option<&str>,
    extensions: &Extensions,
) -> ReportOutcome {
    if let Some(media_type) = media_type
        && !media_type.is_empty()
        && media_type != "application/x-www-form-urlencoded"
        && media_type != "multipart/form-data"
    {
        return ReportOutcome::Error(ApiError::ContentTypeInvalid(media_type.to_owned()));
    }
    let token = params.str("service_token");
    let service_id = params.str("service_id");
    let given_key = params.str("provider_key");
    if given_key.is_none() && token.is_none_or(str::is_empty) {
        return ReportOutcome::Error(ApiError::ProviderKeyOrServiceTokenRequired);
    }
    let top_level_valid = [
        "provider_key",
        "service_token",
        "service_id",
        "transactions",
    ]
    .iter()
    .all(|k| !matches!(params.get(k), Some(Param::Str(t)) if !t.valid_utf8));
    if !top_level_valid {
        return ReportOutcome::Error(ApiError::NotValidData);
    }
    let provider_key = match given_key {
        Some(key) => Some(key.to_owned()),
        None => provider_key_from_token(store, token, service_id),
    };
    let Some(provider_key) = provider_key.filter(|k| !k.is_empty()) else {
        return ReportOutcome::Error(provider_key_error(token, service_id));
    };
    let transactions = match check_transactions(params.get("transactions")) {
        Ok(t) => t,
        Err(outcome) => return outcome,
    };
    let service_id = match load_service(store, service_id, &provider_key) {
        Ok(service) => service.id.clone(),
        Err(e) => return ReportOutcome::Error(e),
    };
    let mut batch = Vec::with_capacity(transactions.len());
    for (_, transaction) in transactions.iter() {
        let Param::Hash(transaction) = transaction else {
            return ReportOutcome::InternalError;
        };
        match without_zero_usage(transaction) {
            Ok(Some(kept)) => batch.push(kept),
            Ok(None) => {}
            Err(()) => return ReportOutcome::InternalError,
        }
    }
    if !batch.is_empty() {
        let now = store.clock.now();
        if store.worker.is_async() {
            store
                .worker
                .queue(service_id, batch, extensions.flat_usage, now);
        } else {
            apply(store, &service_id, &batch, extensions.flat_usage, now);
        }
    }
    ReportOutcome::Accepted
}

/// The background job of one accepted batch: all of it applied, or none and its error stored.
fn apply(store: &mut Store, service_id: &str, batch: &[Hash], flat_usage: bool, at: Instant) {
    let data = store.data_mut(service_id);
    if let Err(error) = run_job(data, batch, flat_usage, at) {
        data.store_error(StoredError {
            code: error.code().to_owned(),
            message: error.message(),
            timestamp: format_error_time(at.secs),
            context_info: serde_json::json!({}),
        });
    }
}

/// Runs the worker's due jobs (asynchronous mode).
pub fn run_due_jobs(store: &mut Store) {
    for job in store.worker.due() {
        apply(
            store,
            &job.service_id,
            &job.batch,
            job.flat_usage,
            job.accepted_at,
        );
    }
}

/// Back to synchronous mode: whatever waits is applied now.
pub fn drain_jobs(store: &mut Store) {
    for job in store.worker.reset() {
        apply(
            store,
            &job.service_id,
            &job.batch,
            job.flat_usage,
            job.accepted_at,
        );
    }
}

/// The request-level checks of `transactions`.
fn check_transactions(transactions: Option<&Param>) -> Result<&Hash, ReportOutcome> {
    let error = |e| Err(ReportOutcome::Error(e));
    let transactions = match transactions {
        None | Some(Param::Nil) => return error(ApiError::TransactionsIsBlank),
        Some(Param::Str(t)) if t.value.is_empty() => return error(ApiError::TransactionsIsBlank),
        Some(Param::Array(a)) if a.is_empty() => return error(ApiError::TransactionsIsBlank),
        Some(Param::Hash(h)) if h.is_empty() => return error(ApiError::TransactionsIsBlank),
        Some(Param::Hash(h)) => h,
        Some(_) => return error(ApiError::TransactionsFormatInvalid),
    };
    if transactions.iter().any(|(_, t)| matches!(t, Param::Nil)) {
        return error(ApiError::TransactionsHasNilTransaction);
    }
    if transactions.iter().any(|(_, t)| {
        t.as_hash()
            .and_then(|h| h.get("user_id"))
            .is_some_and(Param::is_present)
    }) {
        return error(ApiError::EndUsersNoLongerSupported);
    }
    // `log.select!` on a string raises in apisonator; arrays of logs survive until the job.
    if transactions
        .iter()
        .any(|(_, t)| matches!(t.as_hash().and_then(|h| h.get("log")), Some(Param::Str(_))))
    {
        return Err(ReportOutcome::InternalError);
    }
    Ok(transactions)
}

/// Drops usage values of exactly "0", and the transaction if nothing is left. A transaction
/// without `usage` is kept (its application is still checked). `Err` for a non-hash usage.
fn without_zero_usage(transaction: &Hash) -> Result<Option<Hash>, ()> {
    let mut kept = transaction.clone();
    match transaction.get("usage") {
        None | Some(Param::Nil) => Ok(Some(kept)),
        Some(Param::Hash(usage)) => {
            let mut filtered = Hash::new();
            for (name, value) in usage.iter() {
                if !value.is_literal_zero() {
                    filtered.insert(name, value.clone());
                }
            }
            if filtered.is_empty() {
                return Ok(None);
            }
            kept.insert("usage", Param::Hash(filtered));
            Ok(Some(kept))
        }
        Some(_) => Err(()),
    }
}

/// A transaction ready to apply.
struct Ready {
    app_id: String,
    usage: ProcessedUsage,
    at: i64,
    response_code: Option<String>,
}

/// apisonator's `ReportJob` + `ProcessJob`: every transaction is checked before any is applied.
fn run_job(
    data: &mut ServiceData,
    batch: &[Hash],
    flat_usage: bool,
    now: Instant,
) -> Result<(), ApiError> {
    if !batch.iter().all(Hash::all_valid_utf8) {
        return Err(ApiError::NotValidData);
    }
    let mut app_ids = Vec::with_capacity(batch.len());
    for transaction in batch {
        app_ids.push(application_of(data, transaction)?);
    }
    // Transactions are processed grouped by application, in order of first appearance.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| app_ids.iter().position(|a| Some(a) == app_ids.get(i)));
    let mut ready = Vec::with_capacity(batch.len());
    for i in order {
        let (Some(transaction), Some(app_id)) = (batch.get(i), app_ids.get(i)) else {
            continue;
        };
        let Some(usage) = transaction
            .get("usage")
            .and_then(Param::as_hash)
            .filter(|u| !u.is_empty())
        else {
            continue;
        };
        let usage = process_usage(&data.metrics, usage, flat_usage)?;
        let at = transaction
            .str("timestamp")
            .and_then(parse_transaction_time)
            .filter(|&t| t != 0)
            .unwrap_or(now.secs);
        let response_code = transaction
            .get("log")
            .and_then(Param::as_hash)
            .and_then(|l| l.str("code"))
            .map(str::to_owned);
        ready.push(Ready {
            app_id: app_id.clone(),
            usage,
            at,
            response_code,
        });
    }
    for transaction in &ready {
        let ahead = transaction.at - now.secs;
        if ahead < -MAX_AGE_SECS {
            return Err(ApiError::TransactionTimestampTooOld);
        }
        if ahead > MAX_AHEAD_SECS {
            return Err(ApiError::TransactionTimestampTooNew);
        }
    }
    for transaction in ready {
        data.apply_usage(&transaction.app_id, &transaction.usage, transaction.at);
        if let Some(code) = transaction.response_code {
            data.stats
                .entry(transaction.app_id)
                .or_default()
                .record_response_code(&code);
        }
    }
    Ok(())
}

/// `Application.extract_id!`: the application a transaction is for.
fn application_of(data: &ServiceData, transaction: &Hash) -> Result<String, ApiError> {
    let app_id = transaction.get("app_id").filter(|p| p.is_present());
    let user_key = transaction.get("user_key").filter(|p| p.is_present());
    let id = match (app_id, user_key) {
        (Some(_), Some(_)) => return Err(ApiError::AuthenticationError),
        (Some(id), None) => id.as_str().unwrap_or_default().to_owned(),
        (None, Some(key)) => {
            let key = key.as_str().unwrap_or_default();
            data.user_keys
                .get(key)
                .cloned()
                .ok_or_else(|| ApiError::UserKeyInvalid(key.to_owned()))?
        }
        (None, None) => String::new(),
    };
    if data.applications.contains_key(&id) {
        Ok(id)
    } else {
        Err(ApiError::ApplicationNotFound(id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::clock::Period;
    use crate::params::parse_nested_query;
    use crate::store::{Application, ServiceAttrs};

    const NOW: i64 = 1_795_543_791;

    fn store() -> Store {
        let mut s = Store::default();
        s.clock.freeze(Instant::from_secs(NOW));
        s.save_service(ServiceAttrs {
            id: "svc1".into(),
            provider_key: "pk1".into(),
            backend_version: Some("2".into()),
            ..Default::default()
        });
        s.add_token("tok1", "svc1");
        let d = s.data_mut("svc1");
        d.metrics.save("1", "hits", None);
        d.metrics.save("2", "get_hello", Some("1"));
        for id in ["app1", "app3"] {
            d.applications.insert(
                id.into(),
                Application {
                    id: id.into(),
                    state: "active".into(),
                    plan_id: Some("p".into()),
                    plan_name: Some("P".into()),
                    redirect_url: None,
                },
            );
        }
        d.user_keys.insert("uk1".into(), "app3".into());
        s
    }

    fn post(s: &mut Store, body: &str) -> ReportOutcome {
        let params = parse_nested_query(body.as_bytes()).unwrap();
        report(
            s,
            &params,
            Some("application/x-www-form-urlencoded"),
            &Extensions::default(),
        )
    }

    fn hits(s: &Store, app: &str, p: Period) -> i64 {
        s.data("svc1").unwrap().current_value(app, "1", p, NOW)
    }

    fn errors(s: &Store) -> Vec<String> {
        s.data("svc1")
            .unwrap()
            .errors
            .iter()
            .map(|e| e.code.clone())
            .collect()
    }

    #[test]
    fn observed_batch_is_applied() {
        let mut s = store();
        let body = "service_token=tok1&service_id=svc1&transactions%5B0%5D%5Bapp_id%5D=app1&transactions%5B0%5D%5Busage%5D%5Bhits%5D=2&transactions%5B0%5D%5Blog%5D%5Bcode%5D=200&transactions%5B1%5D%5Bapp_id%5D=app3&transactions%5B1%5D%5Busage%5D%5Bget_hello%5D=1&transactions%5B1%5D%5Btimestamp%5D=2026-11-24%2018%3A09%3A51";
        assert_eq!(post(&mut s, body), ReportOutcome::Accepted);
        assert_eq!(hits(&s, "app1", Period::Minute), 2);
        assert_eq!(
            hits(&s, "app3", Period::Eternity),
            1,
            "child usage counts on hits"
        );
        assert_eq!(s.data("svc1").unwrap().stats["app1"].codes[0], 1);
        assert!(errors(&s).is_empty());
    }

    #[test]
    fn one_invalid_transaction_voids_the_batch() {
        for (bad, code) in [
            (
                "transactions[1][app_id]=nope&transactions[1][usage][hits]=1",
                "application_not_found",
            ),
            (
                "transactions[1][user_key]=nope&transactions[1][usage][hits]=1",
                "user_key_invalid",
            ),
            (
                "transactions[1][app_id]=app1&transactions[1][user_key]=uk1&transactions[1][usage][hits]=1",
                "authentication_error",
            ),
            (
                "transactions[1][app_id]=app1&transactions[1][usage][nope]=1",
                "metric_invalid",
            ),
            (
                "transactions[1][app_id]=app1&transactions[1][usage][hits]=-1",
                "usage_value_invalid",
            ),
            (
                "transactions[1][app_id]=app1&transactions[1][usage][hits]=1&transactions[1][timestamp]=2026-11-23%2018:09:50",
                "transaction_timestamp_too_old",
            ),
            (
                "transactions[1][app_id]=app1&transactions[1][usage][hits]=1&transactions[1][timestamp]=2026-11-24%2019:09:52",
                "transaction_timestamp_too_new",
            ),
            (
                "transactions[1][app_id]=app1&transactions[1][usage][hits]=%ff",
                "not_valid_data",
            ),
            ("transactions[1][app_id]=nope", "application_not_found"),
        ] {
            let mut s = store();
            let body = format!(
                "provider_key=pk1&service_id=svc1&transactions[0][app_id]=app1&transactions[0][usage][hits]=5&{bad}"
            );
            assert_eq!(post(&mut s, &body), ReportOutcome::Accepted, "{bad}");
            assert_eq!(hits(&s, "app1", Period::Eternity), 0, "{bad}");
            assert_eq!(errors(&s), [code], "{bad}");
        }
    }

    #[test]
    fn timestamp_window_edges_are_accepted() {
        let mut s = store();
        let body = "provider_key=pk1&service_id=svc1&transactions[0][app_id]=app1&transactions[0][usage][hits]=1&transactions[0][timestamp]=2026-11-23%2018:09:51&transactions[1][app_id]=app1&transactions[1][usage][hits]=1&transactions[1][timestamp]=2026-11-24%2019:09:51&transactions[2][app_id]=app1&transactions[2][usage][hits]=1&transactions[2][timestamp]=0";
        assert_eq!(post(&mut s, body), ReportOutcome::Accepted);
        assert!(errors(&s).is_empty());
        assert_eq!(hits(&s, "app1", Period::Eternity), 3);
        assert_eq!(
            hits(&s, "app1", Period::Day),
            2,
            "yesterday's lands in yesterday's bucket"
        );
        assert_eq!(
            hits(&s, "app1", Period::Hour),
            1,
            "the next hour's in the next hour's"
        );
    }

    #[test]
    fn zero_usage_is_dropped_before_the_job() {
        let mut s = store();
        let body = "provider_key=pk1&service_id=svc1&transactions[0][app_id]=nope&transactions[0][usage][hits]=0";
        assert_eq!(post(&mut s, body), ReportOutcome::Accepted);
        assert!(errors(&s).is_empty(), "nothing left to check");
        let body = "provider_key=pk1&service_id=svc1&transactions[0][app_id]=app1&transactions[0][usage][hits]=0&transactions[0][usage][nope]=1";
        post(&mut s, body);
        assert_eq!(errors(&s), ["metric_invalid"]);
    }

    #[test]
    fn request_level_errors() {
        let mut s = store();
        let e = |s: &mut Store, b: &str| match post(s, b) {
            ReportOutcome::Error(e) => e.code().to_owned(),
            other => format!("{other:?}"),
        };
        assert_eq!(e(&mut s, ""), "provider_key_or_service_token_required");
        assert_eq!(
            e(&mut s, "provider_key=pk1&service_id=svc1"),
            "transactions_is_blank"
        );
        assert_eq!(
            e(&mut s, "provider_key=bad&service_id=svc1"),
            "transactions_is_blank",
            "checked before the service"
        );
        assert_eq!(
            e(&mut s, "provider_key=pk1&service_id=svc1&transactions=x"),
            "transactions_format_invalid"
        );
        assert_eq!(
            e(&mut s, "provider_key=pk1&service_id=svc1&transactions[]=x"),
            "transactions_format_invalid"
        );
        assert_eq!(
            e(&mut s, "provider_key=pk1&service_id=svc1&transactions[0]"),
            "transactions_has_nil_transaction"
        );
        assert_eq!(
            e(
                &mut s,
                "provider_key=pk1&service_id=svc1&transactions[0][user_id]=u&transactions[0][usage][hits]=1"
            ),
            "end_users_no_longer_supported"
        );
        assert_eq!(
            e(
                &mut s,
                "provider_key=bad&service_id=svc1&transactions[0][app_id]=app1"
            ),
            "provider_key_invalid"
        );
        assert_eq!(
            e(&mut s, "service_token=tok1&transactions[0][app_id]=app1"),
            "service_id_missing"
        );
        assert_eq!(
            e(
                &mut s,
                "service_token=bad&service_id=svc1&transactions[0][app_id]=app1"
            ),
            "service_token_invalid"
        );
        assert_eq!(
            e(&mut s, "provider_key=%ff&transactions[0][app_id]=app1"),
            "not_valid_data"
        );
        assert_eq!(
            e(&mut s, "provider_key=pk1&service_id=svc1&transactions[0]=x"),
            "InternalError"
        );
        assert_eq!(
            e(
                &mut s,
                "provider_key=pk1&service_id=svc1&transactions[0][usage]=1"
            ),
            "InternalError"
        );
        let params = parse_nested_query(b"provider_key=pk1").unwrap();
        let r = report(
            &mut s,
            &params,
            Some("application/json"),
            &Extensions::default(),
        );
        assert_eq!(
            r,
            ReportOutcome::Error(ApiError::ContentTypeInvalid("application/json".into()))
        );
    }
}
