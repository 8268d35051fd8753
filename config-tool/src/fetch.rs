//! `fetch`: the services of an account, as the admin portal publishes them, into one file that records
//! each service's version: a portal export (`{"proxy_configs": [...]}`) that `validate`, `convert` and
//! `diff` read as is, for people who keep their configuration in git.

use base64::Engine;
use serde_json::{Value, json};

/// Porta's largest page.
const PER_PAGE: usize = 500;

/// What to fetch.
pub struct Fetch {
    /// `https://ACCOUNT-admin.3scale.net` (or the simulator's `http://127.0.0.1:PORT`).
    pub portal: String,
    pub token: String,
    pub environment: String,
    /// Service id → version (`None`: latest); empty for every service's latest.
    pub services: Vec<(String, Option<u64>)>,
    pub host: Option<String>,
}

impl Fetch {
    /// The proxy configs, in the portal's order (pinned services last, in the order given).
    pub fn run(&self) -> Result<Value, String> {
        let mut configs = Vec::new();
        let latest_wanted =
            self.services.is_empty() || self.services.iter().any(|(_, v)| v.is_none());
        if latest_wanted {
            for config in self.latest()? {
                let id = config["proxy_config"]["content"]["id"]
                    .to_string()
                    .trim_matches('"')
                    .to_string();
                let wanted = self.services.is_empty()
                    || self.services.iter().any(|(s, v)| *s == id && v.is_none());
                if wanted {
                    configs.push(config);
                }
            }
        }
        for (id, version) in &self.services {
            if let Some(version) = version {
                let path = format!(
                    "/admin/api/services/{id}/proxy/configs/{}/{version}.json",
                    self.environment
                );
                configs.push(self.get(&path)?);
            }
        }
        for (id, version) in &self.services {
            let found = configs.iter().any(|c| {
                c["proxy_config"]["content"]["id"]
                    .to_string()
                    .trim_matches('"')
                    == id
            });
            if !found {
                let which = version.map_or("latest".to_string(), |v| format!("version {v}"));
                return Err(format!("service {id}: no {which} in {}", self.environment));
            }
        }
        Ok(json!({"proxy_configs": configs}))
    }

    fn latest(&self) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        for page in 1.. {
            let mut path = format!(
                "/admin/api/account/proxy_configs/{}.json?version=latest&page={page}&per_page={PER_PAGE}",
                self.environment
            );
            if let Some(host) = &self.host {
                path.push_str("&host=");
                path.extend(form_urlencoded_byte_serialize(host));
            }
            let answer = self.get(&path)?;
            let items = answer["proxy_configs"]
                .as_array()
                .ok_or_else(|| format!("{path}: not a list of proxy configs"))?;
            all.extend(items.iter().cloned());
            if items.len() < PER_PAGE {
                break;
            }
        }
        Ok(all)
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.portal.trim_end_matches('/'));
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("tollgate:{}", self.token));
        let response = ureq::get(&url)
            .set("Authorization", &format!("Basic {credentials}"))
            .set("Accept", "application/json")
            .call()
            .map_err(|e| match e {
                ureq::Error::Status(status, _) => format!("{path}: the portal answered {status}"),
                ureq::Error::Transport(t) => format!("{path}: {t}"),
            })?;
        let text = response.into_string().map_err(|e| format!("{path}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON ({e})"))
    }
}

fn form_urlencoded_byte_serialize(text: &str) -> impl Iterator<Item = char> + '_ {
    text.bytes().flat_map(|b| {
        let keep = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        let encoded = if keep {
            vec![b as char]
        } else {
            format!("%{b:02X}").chars().collect()
        };
        encoded.into_iter()
    })
}
