//! apisonator's `<error code="…">` answers: codes, HTTP statuses and message texts.
//!
//! The code is the error class name underscored, the status its `http_code`, and the message the
//! exact text apisonator builds (quotes are not escaped; `&`, `<`, `>` are, by the XML builder).

/// An error apisonator reports with an `<error>` body (or stores as an integration error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    ProviderKeyOrServiceTokenRequired,
    ServiceIdMissing,
    ServiceTokenInvalid {
        token: String,
        service_id: String,
    },
    ProviderKeyInvalid(String),
    ProviderKeyInvalidOrServiceMissing(String),
    ServiceIdInvalid(String),
    ApplicationNotFound(String),
    UserKeyInvalid(String),
    AuthenticationError,
    MetricInvalid(String),
    /// `None` when the value was not a string or blank ("can not be empty").
    UsageValueInvalid {
        metric: String,
        value: Option<String>,
    },
    EndUsersNoLongerSupported,
    BadRequest(String),
    NotValidData,
    ContentTypeInvalid(String),
    TransactionsIsBlank,
    TransactionsFormatInvalid,
    TransactionsHasNilTransaction,
    TransactionTimestampTooOld,
    TransactionTimestampTooNew,
}

/// Rack/Sinatra's message for a parameter tree that cannot be built.
pub const SYNTAX_ERROR_MESSAGE: &str =
    "request contains syntax errors, should not be repeated without modification";
/// apisonator's message for a `%` not followed by two hex digits.
pub const INVALID_PERCENT_ENCODING_MESSAGE: &str = "Invalid query parameters: invalid %-encoding";

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::ProviderKeyOrServiceTokenRequired => "provider_key_or_service_token_required",
            ApiError::ServiceIdMissing => "service_id_missing",
            ApiError::ServiceTokenInvalid { .. } => "service_token_invalid",
            ApiError::ProviderKeyInvalid(_) => "provider_key_invalid",
            ApiError::ProviderKeyInvalidOrServiceMissing(_) => {
                "provider_key_invalid_or_service_missing"
            }
            ApiError::ServiceIdInvalid(_) => "service_id_invalid",
            ApiError::ApplicationNotFound(_) => "application_not_found",
            ApiError::UserKeyInvalid(_) => "user_key_invalid",
            ApiError::AuthenticationError => "authentication_error",
            ApiError::MetricInvalid(_) => "metric_invalid",
            ApiError::UsageValueInvalid { .. } => "usage_value_invalid",
            ApiError::EndUsersNoLongerSupported => "end_users_no_longer_supported",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotValidData => "not_valid_data",
            ApiError::ContentTypeInvalid(_) => "content_type_invalid",
            ApiError::TransactionsIsBlank => "transactions_is_blank",
            ApiError::TransactionsFormatInvalid => "transactions_format_invalid",
            ApiError::TransactionsHasNilTransaction => "transactions_has_nil_transaction",
            ApiError::TransactionTimestampTooOld => "transaction_timestamp_too_old",
            ApiError::TransactionTimestampTooNew => "transaction_timestamp_too_new",
        }
    }

    /// The HTTP status (GA: `not_valid_data` is 400, `service_id_invalid` 403).
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::ServiceIdMissing => 422,
            ApiError::ApplicationNotFound(_) | ApiError::MetricInvalid(_) => 404,
            ApiError::EndUsersNoLongerSupported
            | ApiError::BadRequest(_)
            | ApiError::NotValidData
            | ApiError::ContentTypeInvalid(_)
            | ApiError::TransactionsIsBlank
            | ApiError::TransactionsFormatInvalid
            | ApiError::TransactionsHasNilTransaction => 400,
            _ => 403,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::ProviderKeyOrServiceTokenRequired => {
                "Provider key or service token are required".into()
            }
            ApiError::ServiceIdMissing => "Service ID is missing".into(),
            ApiError::ServiceTokenInvalid { token, service_id } => {
                format!("service token \"{token}\" or service id \"{service_id}\" is invalid")
            }
            ApiError::ProviderKeyInvalid(key) => format!("provider key \"{key}\" is invalid"),
            ApiError::ProviderKeyInvalidOrServiceMissing(key) => {
                format!("provider key \"{key}\" invalid and/or service ID missing")
            }
            ApiError::ServiceIdInvalid(id) => format!("service id \"{id}\" is invalid"),
            ApiError::ApplicationNotFound(id) => {
                format!("application with id=\"{id}\" was not found")
            }
            ApiError::UserKeyInvalid(key) => format!("user key \"{key}\" is invalid"),
            ApiError::AuthenticationError => {
                "either app_id or user_key is allowed, not both".into()
            }
            ApiError::MetricInvalid(name) => format!("metric \"{name}\" is invalid"),
            ApiError::UsageValueInvalid {
                metric,
                value: Some(v),
            } => {
                format!("usage value \"{v}\" for metric \"{metric}\" is invalid")
            }
            ApiError::UsageValueInvalid {
                metric,
                value: None,
            } => {
                format!("usage value for metric \"{metric}\" can not be empty")
            }
            ApiError::EndUsersNoLongerSupported => {
                "End-users are no longer supported, do not specify the user_id parameter".into()
            }
            ApiError::BadRequest(message) => message.clone(),
            ApiError::NotValidData => "all data must be valid UTF8".into(),
            ApiError::ContentTypeInvalid(ct) => format!("invalid Content-Type: {ct}"),
            ApiError::TransactionsIsBlank => "transactions parameter is blank".into(),
            ApiError::TransactionsFormatInvalid => "transactions format is invalid".into(),
            ApiError::TransactionsHasNilTransaction => "transactions has a nil transaction".into(),
            ApiError::TransactionTimestampTooOld => {
                "reporting transactions older than 86400 seconds is not allowed".into()
            }
            ApiError::TransactionTimestampTooNew => {
                "reporting transactions more than 3600 seconds in the future is not allowed".into()
            }
        }
    }

    /// The `<error>` document.
    pub fn to_xml(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error code=\"{}\">{}</error>",
            self.code(),
            escape_text(&self.message())
        )
    }

    /// A syntax error in the request (malformed nested parameters, too deep).
    pub fn syntax() -> Self {
        ApiError::BadRequest(SYNTAX_ERROR_MESSAGE.into())
    }
}

/// XML text escaping as Ruby's Builder does it: `&`, `<`, `>` become entities, characters XML
/// cannot carry become `*`, quotes stay as they are.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('*'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn observed_error_bodies() {
        assert_eq!(
            ApiError::ProviderKeyOrServiceTokenRequired.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error code=\"provider_key_or_service_token_required\">Provider key or service token are required</error>"
        );
        assert_eq!(
            ApiError::ApplicationNotFound("nope".into()).to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error code=\"application_not_found\">application with id=\"nope\" was not found</error>"
        );
        assert_eq!(
            ApiError::ServiceTokenInvalid {
                token: "bad".into(),
                service_id: "svc1".into()
            }
            .message(),
            "service token \"bad\" or service id \"svc1\" is invalid"
        );
        assert_eq!(
            ApiError::ContentTypeInvalid("application/json".into()).to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error code=\"content_type_invalid\">invalid Content-Type: application/json</error>"
        );
    }

    #[test]
    fn statuses_follow_the_code_not_the_rfc() {
        assert_eq!(ApiError::ServiceIdInvalid("x".into()).http_status(), 403);
        assert_eq!(
            ApiError::UsageValueInvalid {
                metric: "m".into(),
                value: None
            }
            .http_status(),
            403
        );
        assert_eq!(ApiError::MetricInvalid("m".into()).http_status(), 404);
        assert_eq!(ApiError::ServiceIdMissing.http_status(), 422);
        assert_eq!(ApiError::NotValidData.http_status(), 400);
        assert_eq!(ApiError::TransactionsIsBlank.http_status(), 400);
    }

    #[test]
    fn usage_value_messages() {
        let e = ApiError::UsageValueInvalid {
            metric: "hits".into(),
            value: Some("-1".into()),
        };
        assert_eq!(
            e.message(),
            "usage value \"-1\" for metric \"hits\" is invalid"
        );
        let e = ApiError::UsageValueInvalid {
            metric: "hits".into(),
            value: None,
        };
        assert_eq!(
            e.message(),
            "usage value for metric \"hits\" can not be empty"
        );
    }

    #[test]
    fn escaping_like_builder() {
        assert_eq!(escape_text("a&b<c>\"d'"), "a&amp;b&lt;c&gt;\"d'");
        assert_eq!(escape_text("x\u{1}y\tz"), "x*y\tz");
        assert_eq!(escape_text("ünï"), "ünï");
        let e = ApiError::ApplicationNotFound("<a&b>".into());
        assert!(e.to_xml().contains("id=\"&lt;a&amp;b&gt;\""));
    }
}
