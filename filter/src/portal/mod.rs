//! Services in the 3scale admin portal's own format (APIcast's), loaded beside Tollgate's JSON.
//!
//! An APIcast user already has every service as the portal publishes it: a proxy config's `content`,
//! a portal export `{"proxy_configs": [...]}`, or APIcast's configuration file `{"services": [...]}`.
//! The `apicast` section of Tollgate's configuration takes any of these as they are; [`load`] rewrites
//! each service into Tollgate's terms ([`format`]), layers the Tollgate-only settings given per service
//! id or `system_name`, and hands the result to the same compiler as a hand-written configuration. So
//! one set of rules decides what is valid, and errors still name a JSON path: the portal field the
//! rejected value came from (`apicast.config.services[0].proxy.proxy_rules[2].pattern`), or the
//! settings entry that set it.
//!
//! Whatever a service asks for that Tollgate does not do is named in one warning per service; with
//! `"strict": true` it refuses the configuration instead, so nobody runs with a policy silently gone.

pub mod adoption;
pub mod fetch;
mod format;
mod page;
pub mod publication;
pub mod settings;
#[cfg(test)]
mod tests;

use crate::config::json::Json;
use crate::config::{Config, ConfigError};

/// Envoy gauge: how many services of the loaded configuration carry something Tollgate ignores.
pub const UNSUPPORTED_GAUGE: &str = "tollgate.config.unsupported_services";

const SECTION: &str = "apicast";
const SECTION_FIELDS: [&str; 3] = ["config", "strict", "settings"];

/// A compiled configuration and what was left out of it.
#[derive(Debug)]
pub struct Loaded {
    /// None while a `portal` section has no local services to start from.
    pub config: Option<Config>,
    /// One line per service that asks for something Tollgate does not do.
    pub warnings: Vec<String>,
    /// The `portal` section, and the document its services join.
    pub portal: Option<(settings::PortalSettings, Json)>,
}

/// Tollgate's JSON with the portal's services written in: what [`load`] compiles.
#[derive(Debug)]
pub struct Converted {
    pub document: serde_json::Value,
    pub warnings: Vec<String>,
}

/// The one entry point of a configuration: Tollgate's JSON, with or without an `apicast` section.
/// `env` reads the VM's environment (secrets).
pub fn load(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let Ok(document) = serde_json::from_slice::<Json>(json) else {
        // Not JSON: the compiler words the syntax error.
        let config = Config::load(json, env)?;
        return Ok(Loaded {
            config: Some(config),
            warnings: Vec::new(),
            portal: None,
        });
    };
    let (document, portal) = take_portal(document, env)?;
    let starts_local = has_services(&document);
    if portal.is_some() && !starts_local {
        // Nothing to serve before the portal answers; the rest is checked now all the same.
        Config::load_tree(with_probe(document.clone()), env)?;
        return Ok(Loaded {
            config: None,
            warnings: Vec::new(),
            portal: portal.map(|settings| (settings, document)),
        });
    }
    let (config, warnings) = compile_layered(document.clone(), env)?;
    Ok(Loaded {
        config: Some(config),
        warnings,
        portal: portal.map(|settings| (settings, document)),
    })
}

/// Writes the `apicast` section's services in and compiles: the one way every document is compiled
/// (a local configuration, a fetched version being checked, a publication).
#[inline(never)]
fn compile_layered(
    document: Json,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let layered = layer(document)?;
    let config = Config::load_tree(layered.document, env).map_err(|e| layered.sources.remap(e))?;
    Ok((config, layered.warnings))
}

/// Removes and reads the `portal` section.
fn take_portal(
    document: Json,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Json, Option<settings::PortalSettings>), ConfigError> {
    let Json::Object(mut top) = document else {
        return Ok((document, None));
    };
    let Some(index) = top.iter().position(|(key, _)| key == "portal") else {
        return Ok((Json::Object(top), None));
    };
    let (_, section) = top.remove(index);
    let settings = settings::parse(&section, env)?;
    Ok((Json::Object(top), Some(settings)))
}

/// Whether the document has services of its own (local ones, or an `apicast` section).
fn has_services(document: &Json) -> bool {
    let Json::Object(top) = document else {
        return true;
    };
    let local = !matches!(format::get(top, "services"), None | Some(Json::Array(_)))
        || matches!(format::get(top, "services"), Some(Json::Array(list)) if !list.is_empty());
    local || format::get(top, SECTION).is_some()
}

/// The document with one stand-in service, to check every other section before the portal's
/// services arrive. Never served.
fn with_probe(document: Json) -> Json {
    const PROBE: &str = r#"{"id": "portal-probe", "service_token": "probe", "credentials": {"kind": "user_key"},
        "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits"}]}"#;
    let Json::Object(mut top) = document else {
        return document;
    };
    let probe = serde_json::from_slice::<Json>(PROBE.as_bytes()).unwrap_or(Json::Null);
    top.retain(|(key, _)| key != "services");
    top.push(("services".into(), Json::Array(vec![probe])));
    Json::Object(top)
}

/// The configuration as Tollgate's own JSON (for review), after checking that it compiles.
pub fn convert(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Converted, ConfigError> {
    let loaded = load(json, env)?;
    let document = serde_json::from_slice::<Json>(json).map_err(|e| ConfigError {
        path: ".".into(),
        reason: e.to_string(),
    })?;
    let (document, _) = take_portal(document, env)?;
    let layered = layer(document)?;
    Ok(Converted {
        document: to_value(layered.document),
        warnings: loaded.warnings,
    })
}

struct Layered {
    document: Json,
    warnings: Vec<String>,
    sources: Sources,
}

/// Where each service written in came from, to word the compiler's errors in the portal's terms.
#[derive(Default)]
struct Sources {
    /// Services of Tollgate's own `services` array, before the portal's.
    native: usize,
    services: Vec<Source>,
}

struct Source {
    path: String,
    /// Fields set by `apicast.settings.<key>`: (field, key).
    settings: Vec<(String, String)>,
}

fn layer(document: Json) -> Result<Layered, ConfigError> {
    let Json::Object(mut top) = document else {
        return Ok(plain(document));
    };
    let Some(index) = top.iter().position(|(key, _)| key == SECTION) else {
        return Ok(plain(Json::Object(top)));
    };
    let (_, section) = top.remove(index);
    let section = format::members(&section, SECTION)?;
    if let Some((key, _)) = section
        .iter()
        .find(|(key, _)| !SECTION_FIELDS.contains(&key.as_str()))
    {
        return Err(at(
            format!("{SECTION}.{key}"),
            format!("unknown field `{key}`, expected one of `config`, `strict`, `settings`"),
        ));
    }
    let config = format::get(section, "config").ok_or_else(|| {
        at(
            format!("{SECTION}.config"),
            "required: an APIcast configuration",
        )
    })?;
    let strict = match format::get(section, "strict") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(strict)) => *strict,
        Some(_) => return Err(at(format!("{SECTION}.strict"), "true or false")),
    };
    let mut translated = Vec::new();
    let provider_key = match config {
        Json::Object(members) => match format::get(members, "provider_key") {
            Some(Json::String(key)) => Some(key.as_str()),
            _ => None,
        },
        _ => None,
    };
    for (content, path) in contents(config, &format!("{SECTION}.config"))? {
        translated.push((format::service(content, &path, provider_key)?, path));
    }
    let mut sources: Vec<Source> = translated
        .iter()
        .map(|(_, path)| Source {
            path: path.clone(),
            settings: Vec::new(),
        })
        .collect();
    if let Some(settings) = format::get(section, "settings") {
        apply_settings(settings, &mut translated, &mut sources)?;
    }
    let mut warnings = Vec::new();
    for (service, path) in &translated {
        if service.unsupported.is_empty() {
            continue;
        }
        let what = service.unsupported.join(", ");
        if strict {
            return Err(at(
                path.clone(),
                format!("not supported by Tollgate (`strict`): {what}"),
            ));
        }
        warnings.push(format!(
            "service {}: ignored, not supported: {what}",
            service.id
        ));
    }
    let services = top.iter_mut().find(|(key, _)| key == "services");
    let native = match services {
        Some((_, Json::Array(list))) => {
            let native = list.len();
            list.extend(translated.into_iter().map(|(s, _)| Json::Object(s.service)));
            native
        }
        // Not an array: the compiler refuses it with its own words.
        Some(_) => 0,
        None => {
            let list = translated.into_iter().map(|(s, _)| Json::Object(s.service));
            top.push(("services".into(), Json::Array(list.collect())));
            0
        }
    };
    Ok(Layered {
        document: Json::Object(top),
        warnings,
        sources: Sources {
            native,
            services: sources,
        },
    })
}

fn plain(document: Json) -> Layered {
    Layered {
        document,
        warnings: Vec::new(),
        sources: Sources::default(),
    }
}

/// Every service `content` of an APIcast configuration, with its JSON path.
fn contents<'a>(config: &'a Json, base: &str) -> Result<Vec<(&'a Json, String)>, ConfigError> {
    let list = |items: &'a [Json], base: String| -> Result<Vec<(&'a Json, String)>, ConfigError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.extend(contents(item, &format!("{base}[{i}]"))?);
        }
        Ok(out)
    };
    match config {
        Json::Array(items) => list(items, base.to_string()),
        Json::Object(members) => {
            if let Some(items) = format::get(members, "proxy_configs") {
                let Json::Array(items) = items else {
                    return Err(at(format!("{base}.proxy_configs"), "an array"));
                };
                return list(items, format!("{base}.proxy_configs"));
            }
            if let Some(wrapped) = format::get(members, "proxy_config") {
                let inner_at = format!("{base}.proxy_config");
                let inner = format::members(wrapped, &inner_at)?;
                let content = format::get(inner, "content")
                    .ok_or_else(|| at(format!("{inner_at}.content"), "required: the service"))?;
                return Ok(vec![(content, format!("{inner_at}.content"))]);
            }
            if let Some(Json::Array(items)) = format::get(members, "services") {
                return list(items, format!("{base}.services"));
            }
            if format::get(members, "proxy").is_some() || format::get(members, "id").is_some() {
                return Ok(vec![(config, base.to_string())]);
            }
            Err(not_apicast(base))
        }
        _ => Err(not_apicast(base)),
    }
}

fn not_apicast(base: &str) -> ConfigError {
    at(
        base.to_string(),
        "not an APIcast configuration: expected {\"services\": [...]}, a portal export \
         {\"proxy_configs\": [...]}, a {\"proxy_config\": ...}, a service, or an array of them",
    )
}

/// Layers `settings` (service id or system_name → Tollgate service fields). A key matching a
/// system_name applies first, then one matching the id, so the id is the more specific.
fn apply_settings(
    settings: &Json,
    translated: &mut [(format::Translated, String)],
    sources: &mut [Source],
) -> Result<(), ConfigError> {
    let base = format!("{SECTION}.settings");
    let entries = format::members(settings, &base)?;
    for by_id in [false, true] {
        for (key, fields) in entries {
            let key_at = format!("{base}.{key}");
            let fields = format::members(fields, &key_at)?;
            if let Some((field, _)) = fields.iter().find(|(f, _)| f == "id") {
                return Err(at(
                    format!("{key_at}.{field}"),
                    "the id comes from the portal",
                ));
            }
            let targets = translated
                .iter_mut()
                .zip(sources.iter_mut())
                .filter(|((s, _), _)| {
                    if by_id {
                        s.id == *key
                    } else {
                        s.system_name.as_deref() == Some(key.as_str()) && s.id != *key
                    }
                });
            for ((service, _), source) in targets {
                for (field, value) in fields {
                    service.service.retain(|(own, _)| own != field);
                    service.service.push((field.clone(), value.clone()));
                    source.settings.retain(|(own, _)| own != field);
                    source.settings.push((field.clone(), key.clone()));
                }
            }
        }
    }
    for (key, _) in entries {
        let known = translated
            .iter()
            .any(|(s, _)| s.id == *key || s.system_name.as_deref() == Some(key.as_str()));
        if !known {
            return Err(at(
                format!("{base}.{key}"),
                "no service of `apicast.config` has this id or system_name",
            ));
        }
    }
    Ok(())
}

impl Sources {
    /// Rewrites an error about a written-in service (`services[N]...`) to where its value came from.
    fn remap(&self, error: ConfigError) -> ConfigError {
        let Some(rest) = error.path.strip_prefix("services[") else {
            return error;
        };
        let Some((index, rest)) = rest.split_once(']') else {
            return error;
        };
        let Some(source) = index
            .parse::<usize>()
            .ok()
            .and_then(|i| i.checked_sub(self.native))
            .and_then(|i| self.services.get(i))
        else {
            return error;
        };
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        let field = rest.split(['.', '[']).next().unwrap_or_default();
        if let Some((_, key)) = source.settings.iter().find(|(f, _)| f == field) {
            return at(format!("{SECTION}.settings.{key}.{rest}"), error.reason);
        }
        match portal_field(rest) {
            Some(portal) if portal.is_empty() => at(source.path.clone(), error.reason),
            Some(portal) => at(format!("{}.{portal}", source.path), error.reason),
            None => at(
                source.path.clone(),
                format!("{} (Tollgate's `{rest}`)", error.reason),
            ),
        }
    }
}

/// The portal field a Tollgate service field was written from.
fn portal_field(rest: &str) -> Option<String> {
    if rest.is_empty() || rest == "id" {
        return Some(rest.to_string());
    }
    if let Some(rule) = rest.strip_prefix("mapping_rules") {
        let (index, field) = rule.split_once('.').unwrap_or((rule, ""));
        let field = match field {
            "method" => ".http_method",
            "metric" => ".metric_system_name",
            "" => "",
            _ => rule.get(index.len()..).unwrap_or_default(),
        };
        return Some(format!("proxy.proxy_rules{index}{field}"));
    }
    if let Some(hosts) = rest.strip_prefix("match.hosts") {
        return Some(format!("proxy.hosts{hosts}"));
    }
    if let Some(errors) = rest.strip_prefix("errors.") {
        let (category, field) = errors.split_once('.').unwrap_or((errors, ""));
        let category = match category {
            "app_inactive" | "method_disabled" => "auth_failed",
            other => other,
        };
        return Some(match field {
            "status" => format!("proxy.error_status_{category}"),
            "content_type" => format!("proxy.error_headers_{category}"),
            _ => format!("proxy.error_{category}"),
        });
    }
    let portal = match rest {
        "service_token" | "provider_key" => "backend_authentication_value",
        "upstream.secret_header.value" => "proxy.secret_token",
        "credentials.jwt.claim" => "proxy.jwt_claim_with_client_id",
        "credentials.params.user_key" | "credentials.headers.user_key" => "proxy.auth_user_key",
        "credentials.params.app_id" | "credentials.headers.app_id" => "proxy.auth_app_id",
        "credentials.params.app_key" | "credentials.headers.app_key" => "proxy.auth_app_key",
        _ if rest.starts_with("credentials.default") => "proxy.policy_chain",
        _ if rest.starts_with("credentials") => "proxy.credentials_location",
        _ => return None,
    };
    Some(portal.to_string())
}

fn at(path: String, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path,
        reason: reason.into(),
    }
}

fn to_value(json: Json) -> serde_json::Value {
    use crate::config::json::Number;
    use serde_json::Value;
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(Number::Unsigned(n)) => Value::from(n),
        Json::Number(Number::Negative(n)) => Value::from(n),
        Json::Number(Number::Float(f)) => Value::from(f),
        Json::String(s) => Value::String(s),
        Json::Array(items) => Value::Array(items.into_iter().map(to_value).collect()),
        Json::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(key, value)| (key, to_value(value)))
                .collect(),
        ),
    }
}

/// The shared-data key prefix a document without services of its own configures.
pub fn key_prefix(base: &Json) -> String {
    probe(base).map_or_else(
        || "tollgate.v1".to_string(),
        |config| config.cache.key_prefix,
    )
}

/// Whether the document configures the reporter singleton (which fetches in preference to the
/// workers: its thread serves no request).
pub fn is_reporter(base: &Json) -> bool {
    probe(base).is_some_and(|config| config.role == crate::config::Role::Reporter)
}

fn probe(base: &Json) -> Option<Config> {
    Config::load_tree(with_probe(base.clone()), &|_| None).ok()
}
