//! Secrets in the configuration: inline, or read from an environment variable of the wasm VM so that
//! they do not show in Envoy's `/config_dump` (Envoy `vm_config.environment_variables`, Istio
//! `vmConfig.env`).

use std::fmt;

use super::ConfigError;
use super::json::{FromJson, Json, Object, Path, invalid_type};

/// `"token"` or `{"env": "VARIABLE"}`.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    Env(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret(inline, hidden)"),
            Secret::Env(name) => write!(f, "Secret(env {name})"),
        }
    }
}

impl Secret {
    /// The secret's value; `env` tells what the environment holds (injected so tests need no real
    /// environment). Errors name the missing variable, never a value.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let value = match self {
            Secret::Inline(value) => value.clone(),
            Secret::Env(name) => env(name).ok_or_else(|| {
                format!("environment variable `{name}` is not set in the VM (vm_config.environment_variables)")
            })?,
        };
        if value.is_empty() {
            return Err("the secret is empty".to_string());
        }
        Ok(value)
    }
}

/// A string is the secret itself; an object names the environment variable that holds it.
impl FromJson for Secret {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        match value {
            Json::String(value) => Ok(Secret::Inline(value)),
            Json::Object(_) => {
                let mut variable = Object::new(value, at, &["env"])?;
                variable.required("env").map(Secret::Env)
            }
            other => Err(invalid_type(
                &other,
                at,
                r#"a string or {"env": "VARIABLE_NAME"}"#,
            )),
        }
    }
}
