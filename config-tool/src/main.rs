//! `tollgate-config`: Tollgate's configuration checked, converted and compared natively, by the same
//! compiler (and so with the same messages) as the module loaded in Envoy.

mod diff;
mod fetch;

use std::process::ExitCode;

use tollgate::config::ConfigError;
use tollgate::portal::{self, Loaded};

const HELP: &str = "\
tollgate-config: Tollgate's configuration, checked by the module's own compiler

Usage:
  tollgate-config validate FILE     check FILE as Envoy would load it
  tollgate-config convert FILE      print FILE as Tollgate's own JSON (APIcast services rewritten)
  tollgate-config diff OLD NEW      what changed between two configurations: services, mapping
                                    rules, credentials and error replies
  tollgate-config fetch PORTAL [options]
                                    the admin portal's proxy configs into one file that records each
                                    service's version (a portal export, which the other commands read)
  tollgate-config --help            this text

FILE is the filter configuration (Envoy `configuration`, Istio `pluginConfig`), with or without an
`apicast` section. An APIcast configuration on its own ({\"services\": [...]}, a portal export
{\"proxy_configs\": [...]}, a {\"proxy_config\": ...} or one service) is read as the `config` of an
`apicast` section under a `backend` cluster named `3scale`, so its paths start with `apicast.config`.
Secrets given as {\"env\": \"NAME\"} are read from this process's environment, as the module reads the
VM's.

validate prints `valid: N service(s)` and any warning (one line per service asking for something
Tollgate does not do), or the error as Envoy would log it: `config error at PATH: reason`.

fetch options:
  -o FILE                 write there (default: standard output)
  --environment ENV       staging or production (default production)
  --service ID[@VERSION]  only this service, at that version (default its latest); repeatable
  --host HOST             only services whose hosts include HOST
  --token-env NAME        the variable holding the access token (default THREESCALE_PORTAL_TOKEN);
                          the token is never taken from the command line
PORTAL is the admin portal's base URL, e.g. https://example-admin.3scale.net. fetch lists each
service and version on standard error, then validates what it wrote.

Exit status: 0 success (diff: whatever the differences), 1 an invalid configuration, 2 bad usage or
an unreadable file.

Examples:
  tollgate-config validate filter.json
  tollgate-config convert portal-export.json > tollgate.json
  tollgate-config diff yesterday.json today.json
  THREESCALE_PORTAL_TOKEN=... tollgate-config fetch https://example-admin.3scale.net -o services.json
  tollgate-config fetch https://example-admin.3scale.net --service 16@6 -o rollback.json
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["validate", file] => validate(file),
        ["convert", file] => convert(file),
        ["diff", old, new] => compare(old, new),
        ["fetch", portal, options @ ..] => fetch_command(portal, options),
        ["--help" | "-h" | "help"] => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{HELP}");
            ExitCode::from(2)
        }
    }
}

/// Why a command stopped: the file could not be read, or the configuration is invalid.
enum Failure {
    Unreadable(String),
    Invalid(ConfigError),
}

impl Failure {
    fn exit(self, file: &str) -> ExitCode {
        match self {
            Failure::Unreadable(why) => {
                eprintln!("{file}: {why}");
                ExitCode::from(2)
            }
            Failure::Invalid(error) => {
                eprintln!("{file}: {error}");
                ExitCode::from(1)
            }
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The file's bytes, an APIcast configuration on its own wrapped in an `apicast` section.
fn read(file: &str) -> Result<Vec<u8>, Failure> {
    let bytes = std::fs::read(file).map_err(|e| Failure::Unreadable(e.to_string()))?;
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return Ok(bytes);
    };
    let apicast_only = !top.contains_key("backend")
        && ["services", "proxy_configs", "proxy_config", "proxy"]
            .iter()
            .any(|key| top.contains_key(*key));
    if !apicast_only {
        return Ok(bytes);
    }
    let wrapped = serde_json::json!({
        "backend": {"cluster": "3scale"},
        "apicast": {"config": serde_json::Value::Object(top)},
    });
    Ok(wrapped.to_string().into_bytes())
}

fn load(file: &str) -> Result<Loaded, Failure> {
    portal::load(&read(file)?, &env).map_err(Failure::Invalid)
}

fn warn(file: &str, warnings: &[String]) {
    for warning in warnings {
        eprintln!("{file}: warning: {warning}");
    }
}

fn validate(file: &str) -> ExitCode {
    match load(file) {
        Ok(loaded) => {
            warn(file, &loaded.warnings);
            match &loaded.config {
                Some(config) => println!("valid: {} service(s)", config.services.len()),
                None => println!("valid: services from the admin portal"),
            }
            ExitCode::SUCCESS
        }
        Err(failure) => failure.exit(file),
    }
}

fn convert(file: &str) -> ExitCode {
    let converted =
        read(file).and_then(|bytes| portal::convert(&bytes, &env).map_err(Failure::Invalid));
    match converted {
        Ok(converted) => {
            warn(file, &converted.warnings);
            match serde_json::to_string_pretty(&converted.document) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => Failure::Unreadable(e.to_string()).exit(file),
            }
        }
        Err(failure) => failure.exit(file),
    }
}

fn compare(old: &str, new: &str) -> ExitCode {
    let before = match load(old).and_then(|l| served(l, old)) {
        Ok(config) => config,
        Err(failure) => return failure.exit(old),
    };
    let after = match load(new).and_then(|l| served(l, new)) {
        Ok(config) => config,
        Err(failure) => return failure.exit(new),
    };
    let changes = diff::changes(&before, &after);
    if changes.is_empty() {
        println!("no change in services, mapping rules, credentials or error replies");
    }
    for line in changes {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// The services a file serves by itself (a portal-only configuration has none to compare).
fn served(loaded: Loaded, file: &str) -> Result<tollgate::config::Config, Failure> {
    loaded.config.ok_or_else(|| {
        Failure::Unreadable(format!(
            "{file} has no services of its own (they come from the admin portal)"
        ))
    })
}

fn fetch_command(portal: &str, options: &[&str]) -> ExitCode {
    let mut fetch = fetch::Fetch {
        portal: portal.to_string(),
        token: String::new(),
        environment: "production".into(),
        services: Vec::new(),
        host: None,
    };
    let mut output = None;
    let mut token_env = "THREESCALE_PORTAL_TOKEN".to_string();
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let Some(value) = rest.next() else {
            eprint!("{HELP}");
            return ExitCode::from(2);
        };
        match *option {
            "-o" => output = Some(value.to_string()),
            "--environment" => fetch.environment = value.to_string(),
            "--host" => fetch.host = Some(value.to_string()),
            "--token-env" => token_env = value.to_string(),
            "--service" => {
                let (id, version) = match value.split_once('@') {
                    Some((id, version)) => match version.parse::<u64>() {
                        Ok(version) => (id, Some(version)),
                        Err(_) => {
                            return usage(&format!("--service {value}: the version is a number"));
                        }
                    },
                    None => (*value, None),
                };
                fetch.services.push((id.to_string(), version));
            }
            other => return usage(&format!("unknown option {other}")),
        }
    }
    if !["staging", "production"].contains(&fetch.environment.as_str()) {
        return usage("--environment is staging or production");
    }
    match std::env::var(&token_env) {
        Ok(token) if !token.is_empty() => fetch.token = token,
        _ => {
            return usage(&format!(
                "the access token is read from ${token_env}, which is not set"
            ));
        }
    }
    let export = match fetch.run() {
        Ok(export) => export,
        Err(why) => {
            eprintln!("fetch: {why}");
            return ExitCode::from(1);
        }
    };
    for config in export["proxy_configs"].as_array().into_iter().flatten() {
        let config = &config["proxy_config"];
        eprintln!(
            "service {} {} v{}",
            config["content"]["id"],
            config["environment"].as_str().unwrap_or_default(),
            config["version"]
        );
    }
    let text = match serde_json::to_string_pretty(&export) {
        Ok(text) => text + "\n",
        Err(e) => return Failure::Unreadable(e.to_string()).exit("fetch"),
    };
    match &output {
        Some(file) => {
            if let Err(e) = std::fs::write(file, &text) {
                return Failure::Unreadable(e.to_string()).exit(file);
            }
            validate(file)
        }
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("tollgate-config: {why}");
    eprint!("{HELP}");
    ExitCode::from(2)
}
