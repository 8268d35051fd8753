//! The error catalogue: every way Tollgate can refuse a request, with its default status.

/// Why a request was refused. Names are the stable `code` in error bodies and stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    AuthMissing,
    AuthFailed,
    AppInactive,
    MethodDisabled,
    LimitsExceeded,
    NoMatch,
    ServiceNotFound,
    NoRouteForPlan,
    BackendUnavailable,
    BackendMisconfigured,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::AuthMissing,
        Category::AuthFailed,
        Category::AppInactive,
        Category::MethodDisabled,
        Category::LimitsExceeded,
        Category::NoMatch,
        Category::ServiceNotFound,
        Category::NoRouteForPlan,
        Category::BackendUnavailable,
        Category::BackendMisconfigured,
    ];

    /// The stable code, as it appears in error bodies, stats and configuration keys.
    pub fn code(self) -> &'static str {
        match self {
            Category::AuthMissing => "auth_missing",
            Category::AuthFailed => "auth_failed",
            Category::AppInactive => "app_inactive",
            Category::MethodDisabled => "method_disabled",
            Category::LimitsExceeded => "limits_exceeded",
            Category::NoMatch => "no_match",
            Category::ServiceNotFound => "service_not_found",
            Category::NoRouteForPlan => "no_route_for_plan",
            Category::BackendUnavailable => "backend_unavailable",
            Category::BackendMisconfigured => "backend_misconfigured",
        }
    }

    pub fn from_code(code: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.code() == code)
    }

    pub fn default_status(self) -> u16 {
        match self {
            Category::AuthMissing => 401,
            Category::AuthFailed
            | Category::AppInactive
            | Category::MethodDisabled
            | Category::NoRouteForPlan => 403,
            Category::LimitsExceeded => 429,
            Category::NoMatch | Category::ServiceNotFound => 404,
            Category::BackendUnavailable => 503,
            Category::BackendMisconfigured => 500,
        }
    }

    pub fn default_message(self) -> &'static str {
        match self {
            Category::AuthMissing => "Authentication parameters missing",
            Category::AuthFailed => "Authentication failed",
            Category::AppInactive => "Application is not active",
            Category::MethodDisabled => "This method is not available on your plan",
            Category::LimitsExceeded => "Usage limits exceeded",
            Category::NoMatch => "No mapping rule matched",
            Category::ServiceNotFound => "Service not found",
            Category::NoRouteForPlan => "No endpoint for your plan",
            Category::BackendUnavailable => "Authorization service unavailable",
            Category::BackendMisconfigured => "Gateway misconfigured",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for category in Category::ALL {
            assert_eq!(Category::from_code(category.code()), Some(category));
        }
        assert_eq!(Category::from_code("nope"), None);
    }
}
