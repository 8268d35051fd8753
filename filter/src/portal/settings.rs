//! The `portal` section: where the admin portal is and what to fetch from it.

use crate::config::ConfigError;
use crate::config::json::{FromJson, Json, Object, Path};
use crate::config::secret::Secret;

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

/// Any JSON value, read as it is (checked by [`parse`]).
struct Any(Json);

impl FromJson for Any {
    fn from_json(value: Json, _: &Path<'_>) -> Result<Self, ConfigError> {
        Ok(Any(value))
    }
}

pub fn parse(
    section: &Json,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PortalSettings, ConfigError> {
    let root = Path::Key(&Path::Root, "portal");
    let mut o = Object::new(section.clone(), &root, &FIELDS)?;
    let cluster: String = o.required("cluster")?;
    if cluster.is_empty() {
        return Err(at(
            "cluster",
            "the Envoy cluster of the admin portal".into(),
        ));
    }
    let authority: Option<String> = o.or_default("authority")?;
    let token: Secret = o.required("access_token")?;
    let access_token = token.resolve(env).map_err(|why| at("access_token", why))?;
    let environment: String = o.or("environment", "production".to_string())?;
    if !["staging", "production"].contains(&environment.as_str()) {
        return Err(at("environment", "`staging` or `production`".into()));
    }
    let services = match o.or_default::<Option<Any>>("services")?.map(|a| a.0) {
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
    let mut pins = Vec::new();
    match o.or_default::<Option<Any>>("versions")?.map(|a| a.0) {
        None => {}
        Some(Json::Object(versions)) => {
            for (id, version) in versions {
                match version {
                    Json::String(latest) if latest == "latest" => {}
                    Json::Number(crate::config::json::Number::Unsigned(v)) if v > 0 => {
                        pins.push((id, v))
                    }
                    _ => {
                        return Err(at(
                            &format!("versions.{id}"),
                            "`latest` or a version number".into(),
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(at(
                "versions",
                "an object: service id → `latest` or a version".into(),
            ));
        }
    }
    let refresh_interval_ms: u64 = o.or("refresh_interval_ms", 30_000)?;
    if !(200..=86_400_000).contains(&refresh_interval_ms) {
        return Err(at("refresh_interval_ms", "from 200 to 86400000".into()));
    }
    let timeout_ms: u64 = o.or("timeout_ms", 5_000)?;
    if !(10..=60_000).contains(&timeout_ms) {
        return Err(at("timeout_ms", "from 10 to 60000".into()));
    }
    Ok(PortalSettings {
        authority: authority.unwrap_or_else(|| cluster.clone()),
        cluster,
        access_token,
        environment,
        services,
        host: o.or_default("host")?,
        pins,
        refresh_interval_ms,
        timeout_ms,
        settings: o.or_default::<Option<Any>>("settings")?.map(|a| a.0),
        strict: o.or_default("strict")?,
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
