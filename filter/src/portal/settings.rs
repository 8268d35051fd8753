//! The `portal` section: where the admin portal is and what to fetch from it.

use crate::config::ConfigError;
use crate::config::json::{FromJson, Json, Path};
use crate::config::secret::Secret;

use super::format;

const FIELDS: [&str; 11] = [
    "cluster",
    "authority",
    "access_token",
    "environment",
    "services",
    "host",
    "versions",
    "refresh_interval_ms",
    "timeout_ms",
    "settings",
    "strict",
];

/// The `portal` section, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalSettings {
    pub cluster: String,
    pub authority: String,
    /// Resolved from its secret: never logged.
    pub access_token: String,
    pub environment: String,
    /// Only these service ids; None for every service of the account.
    pub services: Option<Vec<String>>,
    /// Only services whose hosts include this one (the portal filters).
    pub host: Option<String>,
    /// Service id → pinned version; the others follow `latest`.
    pub pins: Vec<(String, u64)>,
    pub refresh_interval_ms: u64,
    pub timeout_ms: u64,
    /// Layered on every fetched service, as `apicast.settings`.
    pub settings: Option<Json>,
    pub strict: bool,
}

impl PortalSettings {
    /// What identifies a fetch, as text: every setting but the token (a secret).
    pub fn identity(&self) -> String {
        let mut text = format!(
            "{} {} {} {} {} {}",
            self.cluster,
            self.authority,
            self.environment,
            self.host.as_deref().unwrap_or("*"),
            self.refresh_interval_ms,
            self.strict
        );
        for id in self.services.iter().flatten() {
            text.push_str(&format!(" s{id}"));
        }
        for (id, version) in &self.pins {
            text.push_str(&format!(" p{id}={version}"));
        }
        if let Some(settings) = &self.settings {
            super::fetch::write(settings, &mut text);
        }
        text
    }
}

pub fn parse(
    section: &Json,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PortalSettings, ConfigError> {
    let members = format::members(section, "portal")?;
    for (index, (key, _)) in members.iter().enumerate() {
        if !FIELDS.contains(&key.as_str()) {
            return Err(at(
                key,
                format!(
                    "unknown field `{key}`, expected one of {}",
                    FIELDS.join(", ")
                ),
            ));
        }
        if members
            .iter()
            .take(index)
            .any(|(earlier, _)| earlier == key)
        {
            return Err(at(key, format!("duplicate field `{key}`")));
        }
    }
    let text = |name: &str| -> Result<Option<String>, ConfigError> {
        match format::get(members, name) {
            None => Ok(None),
            Some(Json::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(at(name, "a non-empty string".into())),
        }
    };
    let number = |name: &str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
        match format::get(members, name) {
            None => Ok(default),
            Some(value) => {
                let path = Path::Key(&Path::Root, name);
                let n = u64::from_json(value.clone(), &path).map_err(|e| at(name, e.reason))?;
                if !(min..=max).contains(&n) {
                    return Err(at(name, format!("from {min} to {max}")));
                }
                Ok(n)
            }
        }
    };
    let cluster = text("cluster")?.ok_or_else(|| {
        at(
            "cluster",
            "required: the Envoy cluster of the admin portal".into(),
        )
    })?;
    let authority = text("authority")?.unwrap_or_else(|| cluster.clone());
    let token = format::get(members, "access_token").ok_or_else(|| {
        at(
            "access_token",
            "required: an access token of the admin portal".into(),
        )
    })?;
    let token_path = Path::Key(&Path::Root, "portal");
    let access_token = Secret::from_json(token.clone(), &Path::Key(&token_path, "access_token"))
        .and_then(|secret| secret.resolve(env).map_err(|why| at("access_token", why)))?;
    let environment = text("environment")?.unwrap_or_else(|| "production".into());
    if !["staging", "production"].contains(&environment.as_str()) {
        return Err(at("environment", "`staging` or `production`".into()));
    }
    let services = match format::get(members, "services") {
        None => None,
        Some(Json::String(all)) if all == "all" => None,
        Some(Json::Array(ids)) if !ids.is_empty() => Some(
            ids.iter()
                .map(id_text)
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| at("services", "service ids (numbers)".into()))?,
        ),
        Some(_) => {
            return Err(at(
                "services",
                "`all` or a non-empty list of service ids".into(),
            ));
        }
    };
    let pins = match format::get(members, "versions") {
        None => Vec::new(),
        Some(Json::Object(pins)) => pins
            .iter()
            .filter_map(|(id, version)| match version {
                Json::String(latest) if latest == "latest" => None,
                other => Some((id, other)),
            })
            .map(|(id, version)| {
                let path = format!("versions.{id}");
                let version = u64::from_json(version.clone(), &Path::Root)
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| at(&path, "`latest` or a version number".into()))?;
                Ok((id.clone(), version))
            })
            .collect::<Result<_, ConfigError>>()?,
        Some(_) => {
            return Err(at(
                "versions",
                "an object: service id → `latest` or a version".into(),
            ));
        }
    };
    let strict = match format::get(members, "strict") {
        None => false,
        Some(Json::Bool(strict)) => *strict,
        Some(_) => return Err(at("strict", "true or false".into())),
    };
    Ok(PortalSettings {
        cluster,
        authority,
        access_token,
        environment,
        services,
        host: text("host")?,
        pins,
        refresh_interval_ms: number("refresh_interval_ms", 30_000, 200, 86_400_000)?,
        timeout_ms: number("timeout_ms", 5_000, 10, 60_000)?,
        settings: format::get(members, "settings").cloned(),
        strict,
    })
}

fn id_text(value: &Json) -> Option<String> {
    match value {
        Json::Number(crate::config::json::Number::Unsigned(n)) => Some(n.to_string()),
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn at(field: &str, reason: String) -> ConfigError {
    ConfigError {
        path: format!("portal.{field}"),
        reason,
    }
}
