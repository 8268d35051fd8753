//! Secrets in the configuration: inline, or read from an environment variable of the wasm VM so that
//! they do not show in Envoy's `/config_dump` (Envoy `vm_config.environment_variables`, Istio
//! `vmConfig.env`).

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::fmt;

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

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a string or {"env": "VARIABLE_NAME"}"#)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::Inline(value.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut name: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "env" {
                return Err(de::Error::unknown_field(&key, &["env"]));
            }
            if name.is_some() {
                return Err(de::Error::duplicate_field("env"));
            }
            name = Some(map.next_value()?);
        }
        name.map(Secret::Env)
            .ok_or_else(|| de::Error::missing_field("env"))
    }
}
