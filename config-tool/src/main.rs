//! `tollgate-config`: Tollgate's configuration checked, converted and compared natively, by the same
//! compiler (and so with the same messages) as the module loaded in Envoy.

mod diff;

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
  tollgate-config --help            this text

FILE is the filter configuration (Envoy `configuration`, Istio `pluginConfig`), with or without an
`apicast` section. An APIcast configuration on its own ({\"services\": [...]}, a portal export
{\"proxy_configs\": [...]}, a {\"proxy_config\": ...} or one service) is read as the `config` of an
`apicast` section under a `backend` cluster named `3scale`, so its paths start with `apicast.config`.
Secrets given as {\"env\": \"NAME\"} are read from this process's environment, as the module reads the
VM's.

validate prints `valid: N service(s)` and any warning (one line per service asking for something
Tollgate does not do), or the error as Envoy would log it: `config error at PATH: reason`.

Exit status: 0 success (diff: whatever the differences), 1 an invalid configuration, 2 bad usage or
an unreadable file.

Examples:
  tollgate-config validate filter.json
  tollgate-config convert portal-export.json > tollgate.json
  tollgate-config diff yesterday.json today.json
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["validate", file] => validate(file),
        ["convert", file] => convert(file),
        ["diff", old, new] => compare(old, new),
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
