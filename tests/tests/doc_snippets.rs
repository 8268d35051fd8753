//! Every YAML and JSON snippet of the README and `docs/` is valid where it belongs: each is put into the demo's
//! Envoy configuration (`envoy/demo.yaml`) at the place its shape says (a filter configuration, a part of one, a
//! route, a route's fields, an HTTP filter, the wasm VM's settings), and the result must pass `envoy --mode validate`,
//! which also has the built module check its filter configuration. A snippet of no known shape fails the test, so a
//! new one cannot go unchecked.

use serde_json::{Map, Value, json};
use tollgate_e2e::{Envoy, wasm_path, workspace_root, yaml_documents};

/// A fenced `yaml` or `json` block.
#[derive(Debug, Clone)]
struct Snippet {
    at: String,
    lang: String,
    text: String,
}

fn snippets() -> Vec<Snippet> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut found = Vec::new();
    for file in files {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut open: Option<(usize, usize, String, Vec<&str>)> = None;
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            match (&mut open, trimmed.strip_prefix("```")) {
                (None, Some(lang)) => {
                    open = Some((number + 1, indent, lang.to_owned(), Vec::new()))
                }
                (Some(_), Some("")) => {
                    let (start, _, lang, lines) = open.take().unwrap();
                    if lang == "yaml" || lang == "json" {
                        found.push(Snippet {
                            at: format!("{name}:{start}"),
                            lang,
                            text: lines.join("\n"),
                        });
                    }
                }
                (Some((_, indent, _, lines)), _) => {
                    lines.push(line.get(*indent..).unwrap_or(line.trim_start()))
                }
                (None, None) => {}
            }
        }
    }
    found
}

/// The snippet's value: JSON (a `"key": value` fragment is read as an object) or YAML.
fn parse(snippet: &Snippet) -> Value {
    if snippet.lang == "json" {
        serde_json::from_str(&snippet.text)
            .or_else(|_| serde_json::from_str(&format!("{{{}}}", snippet.text)))
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}\n{}", snippet.at, snippet.text))
    } else {
        let mut documents = yaml_documents(&snippet.text);
        assert_eq!(documents.len(), 1, "{}: one YAML document", snippet.at);
        documents.remove(0)
    }
}

/// The demo's Envoy configuration, with the module's absolute path.
fn base() -> Value {
    let yaml = std::fs::read_to_string(workspace_root().join("envoy/demo.yaml")).unwrap();
    let mut config = yaml_documents(&yaml).remove(0);
    *wasm_config(&mut config)
        .pointer_mut("/vm_config/code/local/filename")
        .unwrap() = json!(wasm_path().display().to_string());
    config
}

fn manager(config: &mut Value) -> &mut Value {
    config
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .unwrap()
}

fn routes(config: &mut Value) -> &mut Vec<Value> {
    manager(config)
        .pointer_mut("/route_config/virtual_hosts/0/routes")
        .unwrap()
        .as_array_mut()
        .unwrap()
}

fn http_filters(config: &mut Value) -> &mut Vec<Value> {
    manager(config)["http_filters"].as_array_mut().unwrap()
}

fn wasm_config(config: &mut Value) -> &mut Value {
    let tollgate = http_filters(config)
        .iter_mut()
        .find(|filter| filter["name"] == "tollgate")
        .unwrap();
    &mut tollgate["typed_config"]["config"]
}

fn filter_config(config: &mut Value) -> Value {
    let text = wasm_config(config)["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    serde_json::from_str(&text).unwrap()
}

fn set_filter_config(config: &mut Value, filter: &Value) {
    wasm_config(config)["configuration"]["value"] = json!(filter.to_string());
}

/// Merges `patch` into `target`, objects field by field.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// The names of the environment variables a filter configuration's secrets come from.
fn env_secrets(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(fields) if fields.len() == 1 && fields.contains_key("env") => {
            found.extend(fields["env"].as_str().map(str::to_owned));
        }
        Value::Object(fields) => fields.values().for_each(|v| env_secrets(v, found)),
        Value::Array(items) => items.iter().for_each(|v| env_secrets(v, found)),
        _ => {}
    }
}

/// The demo's configuration with the snippet in its place, or why the snippet has no known place.
fn place(snippet: &Snippet, value: &Value) -> Result<Value, String> {
    let mut config = base();
    let object = value.as_object().cloned().unwrap_or_default();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let items = value.as_array().cloned().unwrap_or_default();
    if ["services", "apicast", "portal"]
        .iter()
        .any(|key| object.contains_key(*key))
    {
        set_filter_config(&mut config, value);
    } else if keys == ["plans"] {
        let mut filter = filter_config(&mut config);
        filter["services"][0]["plans"] = value["plans"].clone();
        set_filter_config(&mut config, &filter);
    } else if keys == ["errors"] {
        let mut filter = filter_config(&mut config);
        filter["errors"] = value["errors"].clone();
        set_filter_config(&mut config, &filter);
    } else if keys == ["stats_config"] {
        merge(&mut config, value);
    } else if keys == ["vm_config"] {
        merge(
            &mut wasm_config(&mut config)["vm_config"],
            &value["vm_config"],
        );
    } else if !keys.is_empty()
        && keys
            .iter()
            .all(|key| ["metadata", "typed_per_filter_config"].contains(key))
    {
        let mut route =
            json!({ "match": { "prefix": "/snippet/" }, "route": { "cluster": "production" } });
        merge(&mut route, value);
        routes(&mut config).insert(0, route);
    } else if !items.is_empty() && items.iter().all(|item| item.get("match").is_some()) {
        for item in &items {
            check_host_rewrite(snippet, item)?;
        }
        routes(&mut config).splice(0..0, items);
    } else if !items.is_empty() && items.iter().all(|item| item.get("name").is_some()) {
        let filters = http_filters(&mut config);
        let router = filters.len() - 1;
        filters.splice(router..router, items);
    } else {
        return Err(format!(
            "{}: a snippet of no known shape (teach tests/tests/doc_snippets.rs where it goes):\n{}",
            snippet.at, snippet.text
        ));
    }
    Ok(config)
}

/// A route that takes the Host from a header must not remove that header: Envoy removes headers first.
fn check_host_rewrite(snippet: &Snippet, route: &Value) -> Result<(), String> {
    let Some(header) = route.pointer("/route/host_rewrite_header") else {
        return Ok(());
    };
    let removed = route["request_headers_to_remove"]
        .as_array()
        .is_some_and(|removed| removed.contains(header));
    if removed {
        return Err(format!(
            "{}: the route removes {header}, which Envoy does before the Host rewrite reads it",
            snippet.at
        ));
    }
    Ok(())
}

/// Validates the demo with the snippet in place; every `{"env": ...}` secret is given a value through Envoy's
/// environment (`host_env_keys`).
fn validate(snippet: &Snippet) -> Result<(), String> {
    let mut config = place(snippet, &parse(snippet))?;
    let mut variables = Vec::new();
    env_secrets(&filter_config(&mut config), &mut variables);
    let vm = &mut wasm_config(&mut config)["vm_config"];
    if let Some(keys) = vm.pointer("/environment_variables/host_env_keys") {
        variables.extend(
            keys.as_array()
                .unwrap()
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned)),
        );
    }
    if !variables.is_empty() {
        let mut keys = variables.clone();
        keys.sort();
        keys.dedup();
        let environment = vm
            .as_object_mut()
            .unwrap()
            .entry("environment_variables")
            .or_insert_with(|| Value::Object(Map::new()));
        environment["host_env_keys"] = json!(keys);
    }
    let env: Vec<(&str, &str)> = variables
        .iter()
        .map(|name| (name.as_str(), "from-the-environment"))
        .collect();
    Envoy::validate_in(&config.to_string(), None, &env)
        .map_err(|error| format!("{}:\n{}\n{error}", snippet.at, snippet.text))
}

#[test]
fn every_config_snippet_in_the_docs_is_valid_where_it_belongs() {
    let snippets = snippets();
    assert!(
        snippets.len() >= 10,
        "only {} snippets found",
        snippets.len()
    );
    let failures: Vec<String> = snippets
        .iter()
        .filter_map(|snippet| validate(snippet).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_broken_snippet_is_caught_by_the_same_check() {
    let snippets = snippets();
    let find = |needle: &str| {
        snippets
            .iter()
            .find(|s| s.text.contains(needle))
            .unwrap_or_else(|| panic!("no snippet holds {needle}"))
            .clone()
    };
    let mut routing = find("host_rewrite_header: x-tollgate-host");
    routing.text = routing.text.replace(
        "[x-tollgate-cluster]",
        "[x-tollgate-cluster, x-tollgate-host]",
    );
    assert!(validate(&routing).is_err(), "the Host rewrite turned off");
    let mut typo = find("host_rewrite_header: x-tollgate-host");
    typo.text = typo.text.replace("cluster_header:", "clusterheader:");
    assert!(validate(&typo).is_err(), "an unknown route field");
    let mut config = find("\"services\"");
    config.text = config
        .text
        .replacen("\"referrer\": false", "\"referer\": false", 1);
    assert!(validate(&config).is_err(), "an unknown filter config field");
    let unknown = Snippet {
        at: "here".into(),
        lang: "yaml".into(),
        text: "clusters: []".into(),
    };
    assert!(validate(&unknown).is_err(), "a snippet of no known shape");
}
