//! Application credentials: which kinds a service accepts, where they are found in a request.

/// The credentials that identify an application to 3scale.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// `backend_version` 1: one key identifies the application.
    UserKey(String),
    /// `backend_version` 2 (`app_key` optional) and OpenID Connect (the client id, never a key).
    AppId { app_id: String, app_key: Option<String> },
}
