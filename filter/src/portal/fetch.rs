//! Following the admin portal: one VM per Envoy fetches the services' proxy configs, checks each
//! new version with the same compiler as a local configuration, and publishes the result in shared
//! data under a generation number ([`publication`](super::publication)); every VM adopts a new
//! generation on its next tick ([`adoption`](super::adoption)).
//!
//! * One fetcher per Envoy: the VM holding the lease (shared data, renewed every tick, taken over
//!   when its holder stops renewing); the reporter singleton takes it whenever it runs, so that
//!   no worker spends request time on the portal. The lease is per `portal` settings, and only VMs of the most
//!   recently loaded settings fetch, so a configuration update (a new pin) takes effect at once and
//!   VMs of the old configuration, still draining, stop publishing.
//! * A round asks the account's latest proxy configs page by page (500 per page) and each pinned
//!   service's version. A round that fails (portal unreachable, slow, 4xx/5xx, not JSON) changes
//!   nothing: the last good configuration keeps serving and the next round catches up.
//! * A service's new version that does not compile is rejected alone: its last good version keeps
//!   serving, the others update. A pin to a version the portal does not have is the same: an
//!   error, and the service keeps its current version. Each is logged once and counted.
//! * A VM loaded after a publication starts from the published configuration, so a new pin never
//!   leaves requests without one; a VM taking the lease over starts its rounds from it too.
//! * A round costs little when little changed: answers are only skimmed ([`page`](super::page)),
//!   a version already serving is neither parsed nor compiled again, and only new versions are
//!   written to shared data.

use base64::Engine;

use std::rc::Rc;

use crate::config::json::{Json, Number};
use crate::config::{Config, ConfigError};
use crate::host::Host;
use crate::stats::Stat;

use super::format;
use super::page::{self, Item};
use super::publication::{self, Live};
use super::settings::PortalSettings;

#[cfg(test)]
mod tests;

/// Porta's largest page.
const PER_PAGE: usize = 500;

type Env = fn(&str) -> Option<String>;

/// The fetcher of one VM (only the lease holder's sends anything).
pub struct Fetcher {
    settings: PortalSettings,
    fingerprint: u64,
    /// The configuration without `portal` and without local services: what fetched services join.
    base: Json,
    prefix: String,
    nonce: u32,
    env: Env,
    next_round_ms: u64,
    round: Option<Round>,
    /// The last good version of every service, in the portal's order.
    live: Vec<Live>,
    /// The publication `live` is: another VM's, when it is newer, is read before a round.
    live_generation: u64,
    /// The pages of the last good round.
    pages: Vec<Page>,
    /// Takes the lease even while a worker holds it: the reporter singleton, whose thread serves
    /// no request, does the parsing and checking instead of a worker.
    preempts: bool,
    /// Rejected versions and missing pins already logged.
    logged: Vec<(String, u64)>,
    /// Until this fetcher publishes once, what serves may come from other settings (a previous
    /// configuration): its first good round publishes even when no version changed.
    stale_base: bool,
    /// Live versions changed by the last publication, for the gauges.
    pub changed: Vec<(String, u64)>,
}

#[derive(Default)]
struct Round {
    pending: Vec<(u32, Ask)>,
    fetched: Vec<Live>,
    pages: Vec<Page>,
    failure: Option<String>,
}

/// A page of an answer: its bytes, and the services read from them. A page whose bytes are those
/// of the last good round is not parsed again.
struct Page {
    number: usize,
    body: Vec<u8>,
    services: Vec<Live>,
}

#[derive(Clone)]
enum Ask {
    Page(usize),
    Pin(String, u64),
}

impl Fetcher {
    /// `base` is the loaded configuration's document without its `portal` section.
    pub fn new(
        settings: PortalSettings,
        base: Json,
        prefix: &str,
        nonce: u32,
        env: Env,
        host: &impl Host,
    ) -> Fetcher {
        let fingerprint = fnv(settings.identity().as_bytes());
        let fetcher = Fetcher {
            settings,
            fingerprint,
            base: without(base, &["services", "apicast"]),
            prefix: prefix.to_string(),
            nonce,
            env,
            next_round_ms: 0,
            round: None,
            live: Vec::new(),
            live_generation: 0,
            pages: Vec::new(),
            preempts: false,
            logged: Vec::new(),
            stale_base: true,
            changed: Vec::new(),
        };
        let _ = host.set(&fetcher.key("settings"), &fingerprint.to_le_bytes(), None);
        fetcher
    }

    fn key(&self, name: &str) -> String {
        format!("{}.portal.{name}", self.prefix)
    }

    /// Makes this the fetcher of its Envoy whenever it runs (the reporter singleton's).
    pub fn preempting(mut self) -> Fetcher {
        self.preempts = true;
        self
    }

    /// The shared-data prefix of the publications.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Renews or takes the lease, and starts a round when one is due.
    pub fn tick(&mut self, host: &impl Host) {
        let now = host.now_ms();
        if !self.holds_lease(host, now) || self.round.is_some() || now < self.next_round_ms {
            return;
        }
        self.next_round_ms = now + self.settings.refresh_interval_ms;
        self.catch_up(host);
        let mut round = Round::default();
        if self.follows_latest() {
            self.ask(host, &mut round, Ask::Page(1));
        }
        for (id, version) in self.settings.pins.clone() {
            self.ask(host, &mut round, Ask::Pin(id, version));
        }
        if round.pending.is_empty() {
            host.count(Stat::PortalErrors);
            return;
        }
        host.count(Stat::PortalFetches);
        self.round = Some(round);
    }

    /// Starts from the latest publication when it is not this fetcher's (it took the lease over,
    /// or its VM was loaded after it), so a round compares with what serves.
    fn catch_up(&mut self, host: &impl Host) {
        if publication::generation(host, &self.prefix) == self.live_generation {
            return;
        }
        if let Some((generation, live)) = publication::load(host, &self.prefix) {
            self.live = live;
            self.live_generation = generation;
        }
    }

    /// Whether any service follows `latest` (not every listed service is pinned).
    fn follows_latest(&self) -> bool {
        match &self.settings.services {
            None => true,
            Some(ids) => ids.iter().any(|id| !self.pinned(id)),
        }
    }

    fn pinned(&self, id: &str) -> bool {
        self.settings.pins.iter().any(|(pin, _)| pin == id)
    }

    fn holds_lease(&self, host: &impl Host, now: u64) -> bool {
        let current = host.get(&self.key("settings")).map(|(v, _)| v);
        if current.as_deref() != Some(&self.fingerprint.to_le_bytes()[..]) {
            return false;
        }
        let key = format!("{}.{:x}", self.key("lease"), self.fingerprint);
        let held = host.get(&key);
        let (holder, until, cas) = match &held {
            Some((value, cas)) if value.len() == 12 => {
                let holder = value
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes);
                let until = value
                    .get(4..)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes);
                (holder, until, Some(*cas))
            }
            Some((_, cas)) => (0, 0, Some(*cas)),
            None => (0, 0, None),
        };
        if holder != self.nonce && until > now && !self.preempts {
            return false;
        }
        let mut value = self.nonce.to_le_bytes().to_vec();
        let ttl = 3 * self.settings.refresh_interval_ms.max(1000) + self.settings.timeout_ms;
        value.extend_from_slice(&(now + ttl).to_le_bytes());
        host.set(&key, &value, cas).is_ok()
    }

    fn ask(&self, host: &impl Host, round: &mut Round, ask: Ask) {
        let env = &self.settings.environment;
        let path = match &ask {
            Ask::Page(page) => {
                let host_filter = self
                    .settings
                    .host
                    .as_ref()
                    .map(|h| {
                        format!(
                            "&host={}",
                            form_urlencoded::byte_serialize(h.as_bytes()).collect::<String>()
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "/admin/api/account/proxy_configs/{env}.json?version=latest&page={page}&per_page={PER_PAGE}{host_filter}"
                )
            }
            Ask::Pin(id, version) => {
                format!("/admin/api/services/{id}/proxy/configs/{env}/{version}.json")
            }
        };
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("tollgate:{}", self.settings.access_token));
        let authorization = format!("Basic {credentials}");
        let headers = [
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", self.settings.authority.as_str()),
            ("authorization", authorization.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = std::time::Duration::from_millis(self.settings.timeout_ms);
        match host.dispatch(&self.settings.cluster, &headers, None, timeout) {
            Ok(token) => round.pending.push((token, ask)),
            Err(error) => {
                round.failure.get_or_insert(format!(
                    "Envoy refused the call to cluster `{}` ({error:?})",
                    self.settings.cluster
                ));
            }
        }
    }

    /// Takes a callout answer; false when it is not the fetcher's.
    pub fn on_response(
        &mut self,
        host: &impl Host,
        token: u32,
        headers: usize,
        body_size: usize,
    ) -> bool {
        let Some(mut round) = self.round.take() else {
            return false;
        };
        let Some(index) = round.pending.iter().position(|(t, _)| *t == token) else {
            self.round = Some(round);
            return false;
        };
        let (_, ask) = round.pending.swap_remove(index);
        let response = host.callout_response(headers, body_size);
        match (&ask, response.status) {
            (Ask::Page(number), Some(200)) => match self.page(*number, &response.body) {
                Some(configs) => {
                    if configs.len() >= PER_PAGE {
                        self.ask(host, &mut round, Ask::Page(number + 1));
                    }
                    round.fetched.extend(configs.iter().cloned());
                    round.pages.push(Page {
                        number: *number,
                        body: response.body,
                        services: configs,
                    });
                }
                None => {
                    round
                        .failure
                        .get_or_insert("the portal's answer is not a list of proxy configs".into());
                }
            },
            (Ask::Pin(_, _), Some(200)) => {
                match page::proxy_config(&response.body).map(|item| self.live_of(item)) {
                    Some(config) => round.fetched.push(config),
                    None => {
                        round
                            .failure
                            .get_or_insert("the portal's answer is not a proxy config".into());
                    }
                }
            }
            (Ask::Pin(id, version), Some(404)) => self.missing_pin(host, id, *version),
            (_, status) => {
                round.failure.get_or_insert(match status {
                    Some(status) => format!("the portal answered {status}"),
                    None => "no answer from the portal (unreachable or timed out)".into(),
                });
            }
        }
        if round.pending.is_empty() {
            self.finish(host, round);
        } else {
            self.round = Some(round);
        }
        true
    }

    fn missing_pin(&mut self, host: &impl Host, id: &str, version: u64) {
        host.count(Stat::PortalRejections);
        if self.log_once(id, version) {
            let current = self
                .live
                .iter()
                .find(|l| l.id == id)
                .map_or("nothing".into(), |l| format!("v{}", l.version));
            log::error!(
                "tollgate: portal: service {id} {} has no version {version}: the pin is ignored and {current} keeps serving",
                self.settings.environment
            );
        }
    }

    fn log_once(&mut self, id: &str, version: u64) -> bool {
        let key = (id.to_string(), version);
        let first = !self.logged.contains(&key);
        if first {
            self.logged.push(key);
        }
        first
    }

    fn finish(&mut self, host: &impl Host, round: Round) {
        if let Some(failure) = round.failure {
            host.count(Stat::PortalErrors);
            log::warn!(
                "tollgate: portal: fetch failed: {failure}; the last good configuration keeps serving"
            );
            return;
        }
        self.pages = round.pages;
        let mut next: Vec<Live> = Vec::new();
        for fetched in round.fetched {
            let wanted = self
                .settings
                .services
                .as_ref()
                .is_none_or(|ids| ids.contains(&fetched.id));
            let pinned_elsewhere = self.pinned(&fetched.id)
                && !self
                    .settings
                    .pins
                    .iter()
                    .any(|(id, v)| *id == fetched.id && *v == fetched.version);
            if !wanted || pinned_elsewhere || next.iter().any(|l| l.id == fetched.id) {
                continue;
            }
            let previous = self.live.iter().find(|l| l.id == fetched.id).cloned();
            if previous
                .as_ref()
                .is_some_and(|p| p.version == fetched.version)
            {
                next.extend(previous);
                continue;
            }
            match self.check(&fetched.content) {
                Ok(()) => next.push(fetched),
                Err(error) => {
                    host.count(Stat::PortalRejections);
                    if self.log_once(&fetched.id, fetched.version) {
                        let keeps = previous
                            .as_ref()
                            .map_or("nothing".into(), |p| format!("v{}", p.version));
                        log::error!(
                            "tollgate: portal: service {} {} v{} rejected ({error}); {keeps} keeps serving",
                            fetched.id,
                            self.settings.environment,
                            fetched.version
                        );
                    }
                    next.extend(previous);
                }
            }
        }
        // Pinned services whose pin was not found keep their version.
        for live in &self.live {
            if self.pinned(&live.id) && !next.iter().any(|l| l.id == live.id) {
                next.push(live.clone());
            }
        }
        self.publish(host, next);
    }

    /// Whether `content` compiles as a service of this configuration.
    fn check(&self, content: &Json) -> Result<(), ConfigError> {
        self.compile(vec![content.clone()]).map(|_| ())
    }

    /// `contents` compiled as the services of this configuration, with what they ask for that
    /// Tollgate does not do.
    pub fn compile(&self, contents: Vec<Json>) -> Result<(Config, Vec<String>), ConfigError> {
        super::compile_layered(self.document(contents), &self.env)
    }

    /// The services of page `number`: those of the last good round when its bytes are the same.
    fn page(&self, number: usize, body: &[u8]) -> Option<Vec<Live>> {
        match self
            .pages
            .iter()
            .find(|page| page.number == number && page.body == body)
        {
            Some(page) => Some(page.services.clone()),
            None => self.proxy_configs(body),
        }
    }

    /// The services of a page, each version already serving taken as it is.
    fn proxy_configs(&self, body: &[u8]) -> Option<Vec<Live>> {
        let items = page::proxy_configs(body)?;
        Some(items.into_iter().map(|item| self.live_of(item)).collect())
    }

    fn live_of(&self, item: Item) -> Live {
        if let Some(live) = self
            .live
            .iter()
            .find(|l| l.id == item.id && l.version == item.version)
        {
            return live.clone();
        }
        let mut content = item.content;
        content.retain(|(key, _)| key != VERSION_FIELD);
        content.push((
            VERSION_FIELD.into(),
            Json::Number(Number::Unsigned(item.version)),
        ));
        Live {
            id: item.id,
            version: item.version,
            content: Rc::new(Json::Object(content)),
        }
    }

    fn document(&self, contents: Vec<Json>) -> Json {
        // Only the settings of services present: the others are not an error here.
        let names: Vec<String> = contents
            .iter()
            .filter_map(|c| match c {
                Json::Object(fields) => Some(fields),
                _ => None,
            })
            .flat_map(|fields| {
                let system_name = match format::get(fields, "system_name") {
                    Some(Json::String(name)) => Some(name.clone()),
                    _ => None,
                };
                id_of(fields).into_iter().chain(system_name)
            })
            .collect();
        let mut section = vec![("config".to_string(), Json::Array(contents))];
        if let Some(Json::Object(settings)) = &self.settings.settings {
            let relevant = settings
                .iter()
                .filter(|(key, _)| names.contains(key))
                .cloned();
            section.push(("settings".into(), Json::Object(relevant.collect())));
        }
        section.push(("strict".into(), Json::Bool(self.settings.strict)));
        let Json::Object(mut members) = self.base.clone() else {
            return Json::Null;
        };
        members.push(("apicast".into(), Json::Object(section)));
        Json::Object(members)
    }

    fn publish(&mut self, host: &impl Host, next: Vec<Live>) {
        let unchanged = next.len() == self.live.len()
            && next.iter().all(|n| {
                self.live
                    .iter()
                    .any(|l| l.id == n.id && l.version == n.version)
            });
        if (unchanged && !self.stale_base) || next.is_empty() {
            return;
        }
        if let Err(error) = self.check_together(&next) {
            host.count(Stat::PortalRejections);
            log::error!(
                "tollgate: portal: the fetched services do not compile together ({error}); nothing changes"
            );
            return;
        }
        let Some(generation) = publication::publish(host, &self.prefix, &next, &self.live) else {
            log::error!("tollgate: portal: cannot publish in shared data; nothing changes");
            return;
        };
        self.live_generation = generation;
        self.stale_base = false;
        self.log_changes(&next);
        self.live = next;
    }

    /// Each new version was checked alone: together they can only be too many. Versions this
    /// fetcher did not check (another configuration published them) are compiled with this one.
    fn check_together(&self, next: &[Live]) -> Result<(), ConfigError> {
        if next.len() > crate::config::MAX_SERVICES {
            return Err(ConfigError {
                path: "services".into(),
                reason: format!(
                    "{} services; at most {} per filter configuration",
                    next.len(),
                    crate::config::MAX_SERVICES
                ),
            });
        }
        if self.stale_base {
            self.compile(next.iter().map(|l| (*l.content).clone()).collect())?;
        }
        Ok(())
    }

    fn log_changes(&mut self, next: &[Live]) {
        let env = &self.settings.environment;
        for live in next {
            let before = self.live.iter().find(|l| l.id == live.id);
            if before.is_none_or(|b| b.version != live.version) {
                let from = before.map_or("none".into(), |b| format!("v{}", b.version));
                log::info!(
                    "tollgate: service {} {env} {from} -> v{}",
                    live.id,
                    live.version
                );
                self.changed.push((live.id.clone(), live.version));
            }
        }
        for gone in self
            .live
            .iter()
            .filter(|l| !next.iter().any(|n| n.id == l.id))
        {
            log::info!(
                "tollgate: service {} {env} v{} -> removed",
                gone.id,
                gone.version
            );
            self.changed.push((gone.id.clone(), 0));
        }
    }
}

/// Each published content carries its version under this field, which APIcast's format ignores.
const VERSION_FIELD: &str = "x_tollgate_version";

fn id_of(fields: &[(String, Json)]) -> Option<String> {
    match format::get(fields, "id")? {
        Json::Number(Number::Unsigned(n)) => Some(n.to_string()),
        Json::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn without(document: Json, keys: &[&str]) -> Json {
    match document {
        Json::Object(members) => Json::Object(
            members
                .into_iter()
                .filter(|(k, _)| !keys.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

/// FNV-1a: a stable fingerprint of the settings (not a secret: the token is not in them).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// JSON text of a tree (compact).
pub fn write(json: &Json, out: &mut String) {
    match json {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(Number::Unsigned(n)) => out.push_str(&n.to_string()),
        Json::Number(Number::Negative(n)) => out.push_str(&n.to_string()),
        // Nothing in a service takes a fraction (ids, statuses and deltas are integers): writing
        // one as text keeps it refused by the compiler without linking float formatting (~30 KB).
        Json::Number(Number::Float(_)) => out.push_str("\"a number with a fraction\""),
        Json::String(s) => string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(key, out);
                out.push(':');
                write(value, out);
            }
            out.push('}');
        }
    }
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}
