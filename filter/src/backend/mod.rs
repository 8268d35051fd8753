//! The 3scale Service Management API (apisonator): the calls Tollgate sends and the answers it
//! reads. Pure logic, no hostcalls: the glue dispatches what [`call`] builds and hands the
//! answers to [`answer`] (and to [`crate::verdict`]).

pub mod answer;
pub mod call;
pub mod hierarchy;
pub mod time;

pub use answer::{
    AnswerError, AuthStatus, BackendError, Period, UsageReport, parse_error, parse_status,
};
pub use call::{
    AuthCall, BackendAuth, Endpoint, REPORT_PARAM_BUDGET, ReportTransaction, options, report_body,
    report_param_count,
};
pub use hierarchy::Hierarchy;
