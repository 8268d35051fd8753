//! What apisonator answers: `<status>` documents (200 / 409) and `<error>` documents (4xx).
//!
//! Parsed with quick-xml's streaming reader on every backend answer, so there is no DOM: one pass,
//! a fixed-size element path, one reused text buffer, and owned strings only for what is kept.
//! Element order and whitespace do not matter; unknown elements are skipped so that newer
//! apisonator sections (or `<app_keys>`) never break parsing.

use std::fmt;

use quick_xml::Reader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::hierarchy::Hierarchy;
use super::time::parse_timestamp;

/// The period of a usage limit. Ordered from shortest to longest, which is how ties between
/// equally constraining limits are broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
    Eternity,
}

impl Period {
    pub const ALL: [Period; 7] = [
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
        Period::Eternity,
    ];

    /// The name 3scale uses in `period="…"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
            Period::Eternity => "eternity",
        }
    }

    pub fn parse(name: &str) -> Option<Period> {
        Period::ALL
            .into_iter()
            .find(|period| period.as_str() == name)
    }
}

/// One usage limit of the application's plan and where the application stands against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageReport {
    pub metric: String,
    pub period: Period,
    /// Start of the current period in UNIX seconds; `None` for eternity.
    pub period_start: Option<u64>,
    /// End of the current period in UNIX seconds; `None` for eternity.
    pub period_end: Option<u64>,
    pub max_value: u64,
    /// On an authorized call with usage this already includes that usage.
    pub current_value: u64,
    /// The stored value alone is over the limit (`exceeded="true"`).
    pub exceeded: bool,
}

/// A parsed `<status>` document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthStatus {
    pub authorized: bool,
    /// Human text (`usage limits are exceeded`), not a code; may quote credentials.
    pub reason: Option<String>,
    /// The application plan's name, unescaped: the key of plan routing.
    pub plan: Option<String>,
    pub usage_reports: Vec<UsageReport>,
    pub hierarchy: Hierarchy,
}

/// Why a body is not a usable `<status>` document. Carries no body content, so it can be logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// Not well-formed XML (garbage, bad UTF-8, mismatched tags) at this byte offset.
    Syntax { offset: u64 },
    /// The document ended before its root element closed (truncated or empty).
    Truncated,
    /// Well-formed, but the root element is not `<status>`.
    NotStatus,
    /// A required element or attribute is missing or holds an invalid value.
    Invalid(&'static str),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Syntax { offset } => write!(f, "malformed XML at byte {offset}"),
            AnswerError::Truncated => f.write_str("truncated or empty document"),
            AnswerError::NotStatus => f.write_str("not a <status> document"),
            AnswerError::Invalid(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for AnswerError {}

/// An `<error code="…">message</error>` document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    pub code: String,
    /// Human text; may quote credentials (`user key "K" is invalid`), so never log it verbatim.
    pub message: String,
}

/// Parses a `<status>` document (the body of a 200 or 409 answer).
pub fn parse_status(body: &[u8]) -> Result<AuthStatus, AnswerError> {
    let mut reader = xml_reader(body);
    let mut parser = StatusParser::default();
    loop {
        let event = reader.read_event().map_err(|_| AnswerError::Syntax {
            offset: reader.error_position(),
        })?;
        if parser.feed(event)? {
            return parser.finish();
        }
    }
}

/// Parses an `<error>` document; `None` when the body is empty (as under `no_body`), is not an
/// `<error>` element with a `code`, or is not well-formed.
pub fn parse_error(body: &[u8]) -> Option<BackendError> {
    let mut reader = xml_reader(body);
    let mut code = None;
    let mut message = String::new();
    let mut depth = 0usize;
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => {
                if depth == 0 {
                    if start.name().as_ref() != "error" {
                        return None;
                    }
                    code = Some(attribute(&start, "code").ok()??).filter(|c| !c.is_empty());
                }
                depth += 1;
            }
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    let message = message.trim().to_owned();
                    return code.map(|code| BackendError { code, message });
                }
            }
            // Text around the root element: not an XML answer.
            Event::Text(text) if depth == 0 && !text.trim_ascii().is_empty() => return None,
            Event::Text(text) if depth > 0 => message.push_str(&text),
            Event::CData(data) if depth > 0 => message.push_str(&data),
            Event::GeneralRef(reference) if depth > 0 => push_reference(&mut message, &reference),
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// A reader tuned for apisonator: self-closing elements arrive as start + end, and a raw `&`
/// (GA's unescaped `redirect_url`) stays text instead of failing the whole document.
fn xml_reader(body: &[u8]) -> Reader<&[u8]> {
    let mut reader = Reader::from_reader(body);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.allow_dangling_amp = true;
    reader
}

/// The unescaped value of attribute `name`: `Ok(None)` when absent, `Err` when any attribute of
/// the element is malformed or repeated (so the answer does not depend on which one is asked).
fn attribute(start: &BytesStart<'_>, name: &str) -> Result<Option<String>, AnswerError> {
    let mut found = None;
    for attr in start.attributes() {
        let attr = attr.map_err(|_| AnswerError::Invalid("attribute"))?;
        if attr.key.as_ref() == name {
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|_| AnswerError::Invalid("attribute"))?;
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

/// Appends what an entity or character reference stands for; unknown references are kept as
/// written rather than failing the answer.
fn push_reference(text: &mut String, reference: &BytesRef<'_>) {
    if let Ok(Some(ch)) = reference.resolve_char_ref() {
        text.push(ch);
    } else if let Some(resolved) = resolve_xml_entity(reference) {
        text.push_str(resolved);
    } else {
        text.push('&');
        text.push_str(reference);
        text.push(';');
    }
}

/// The elements of a `<status>` document that carry meaning, by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Status,
    Authorized,
    Reason,
    Plan,
    UsageReports,
    UsageReport,
    PeriodStart,
    PeriodEnd,
    MaxValue,
    CurrentValue,
    Hierarchy,
    Metric,
}

impl Tag {
    /// What element `name` means inside `parent`; `None` for elements Tollgate skips.
    fn child(parent: Tag, name: &str) -> Option<Tag> {
        let tag = match (parent, name) {
            (Tag::Status, "authorized") => Tag::Authorized,
            (Tag::Status, "reason") => Tag::Reason,
            (Tag::Status, "plan") => Tag::Plan,
            (Tag::Status, "usage_reports") => Tag::UsageReports,
            (Tag::Status, "hierarchy") => Tag::Hierarchy,
            (Tag::UsageReports, "usage_report") => Tag::UsageReport,
            (Tag::UsageReport, "period_start") => Tag::PeriodStart,
            (Tag::UsageReport, "period_end") => Tag::PeriodEnd,
            (Tag::UsageReport, "max_value") => Tag::MaxValue,
            (Tag::UsageReport, "current_value") => Tag::CurrentValue,
            (Tag::Hierarchy, "metric") => Tag::Metric,
            _ => return None,
        };
        Some(tag)
    }

    /// Elements whose text content is a value.
    fn holds_text(self) -> bool {
        matches!(
            self,
            Tag::Authorized
                | Tag::Reason
                | Tag::Plan
                | Tag::PeriodStart
                | Tag::PeriodEnd
                | Tag::MaxValue
                | Tag::CurrentValue
        )
    }
}

/// The deepest meaningful path: status / usage_reports / usage_report / max_value.
const MAX_DEPTH: usize = 4;

/// A usage report whose child elements are still being read.
struct PendingReport {
    metric: String,
    period: Period,
    exceeded: bool,
    period_start: Option<u64>,
    period_end: Option<u64>,
    max_value: Option<u64>,
    current_value: Option<u64>,
}

impl PendingReport {
    fn from_start(start: &BytesStart<'_>) -> Result<Self, AnswerError> {
        let metric =
            attribute(start, "metric")?.ok_or(AnswerError::Invalid("usage_report metric"))?;
        let period = attribute(start, "period")?
            .and_then(|name| Period::parse(&name))
            .ok_or(AnswerError::Invalid("usage_report period"))?;
        let exceeded = attribute(start, "exceeded")?.is_some_and(|value| value == "true");
        Ok(Self {
            metric,
            period,
            exceeded,
            period_start: None,
            period_end: None,
            max_value: None,
            current_value: None,
        })
    }

    fn finish(self) -> Result<UsageReport, AnswerError> {
        Ok(UsageReport {
            metric: self.metric,
            period: self.period,
            period_start: self.period_start,
            period_end: self.period_end,
            max_value: self
                .max_value
                .ok_or(AnswerError::Invalid("usage_report max_value"))?,
            current_value: self
                .current_value
                .ok_or(AnswerError::Invalid("usage_report current_value"))?,
            exceeded: self.exceeded,
        })
    }
}

/// Streaming state of [`parse_status`].
#[derive(Default)]
struct StatusParser {
    path: [Option<Tag>; MAX_DEPTH],
    depth: usize,
    /// Depth inside an element Tollgate skips (`<application>`, `<app_keys>`, unknown ones).
    skipped: usize,
    text: String,
    authorized: Option<bool>,
    report: Option<PendingReport>,
    status: AuthStatus,
}

impl StatusParser {
    /// Consumes one event; `Ok(true)` once the root element has closed.
    fn feed(&mut self, event: Event<'_>) -> Result<bool, AnswerError> {
        match event {
            Event::Start(start) => self.start(&start)?,
            Event::End(_) => return self.end(),
            // Not produced with `expand_empty_elements`, but equivalent to start + end.
            Event::Empty(start) => {
                self.start(&start)?;
                return self.end();
            }
            Event::Text(text) => self.text(&text)?,
            Event::CData(data) => self.text(&data)?,
            Event::GeneralRef(reference) => {
                if self.collecting() {
                    push_reference(&mut self.text, &reference);
                }
            }
            Event::Eof => return Err(AnswerError::Truncated),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
        Ok(false)
    }

    fn finish(self) -> Result<AuthStatus, AnswerError> {
        let authorized = self
            .authorized
            .ok_or(AnswerError::Invalid("authorized (missing)"))?;
        Ok(AuthStatus {
            authorized,
            ..self.status
        })
    }

    fn current(&self) -> Option<Tag> {
        self.depth
            .checked_sub(1)
            .and_then(|top| self.path.get(top).copied().flatten())
    }

    fn collecting(&self) -> bool {
        self.skipped == 0 && self.current().is_some_and(Tag::holds_text)
    }

    fn start(&mut self, start: &BytesStart<'_>) -> Result<(), AnswerError> {
        if self.skipped > 0 {
            self.skipped += 1;
            return Ok(());
        }
        let name = start.name();
        let tag = match self.current() {
            None if name.as_ref() == "status" => Tag::Status,
            None => return Err(AnswerError::NotStatus),
            Some(parent) => match Tag::child(parent, name.as_ref()) {
                Some(tag) => tag,
                None => {
                    self.skipped = 1;
                    return Ok(());
                }
            },
        };
        let slot = self
            .path
            .get_mut(self.depth)
            .ok_or(AnswerError::Invalid("nesting"))?;
        *slot = Some(tag);
        self.depth += 1;
        self.open(tag, start)
    }

    fn open(&mut self, tag: Tag, start: &BytesStart<'_>) -> Result<(), AnswerError> {
        match tag {
            Tag::UsageReport => self.report = Some(PendingReport::from_start(start)?),
            Tag::Metric => self.record_children(start)?,
            tag if tag.holds_text() => self.text.clear(),
            _ => {}
        }
        Ok(())
    }

    /// `<metric name="hits" children="get_hello disabled_m"/>`
    fn record_children(&mut self, start: &BytesStart<'_>) -> Result<(), AnswerError> {
        let parent =
            attribute(start, "name")?.ok_or(AnswerError::Invalid("hierarchy metric name"))?;
        let children = attribute(start, "children")?.unwrap_or_default();
        for child in children.split_ascii_whitespace() {
            self.status.hierarchy.add(&parent, child);
        }
        Ok(())
    }

    fn end(&mut self) -> Result<bool, AnswerError> {
        if self.skipped > 0 {
            self.skipped -= 1;
            return Ok(false);
        }
        let tag = self.current().ok_or(AnswerError::Invalid("nesting"))?;
        self.close(tag)?;
        self.depth -= 1;
        Ok(self.depth == 0)
    }

    fn close(&mut self, tag: Tag) -> Result<(), AnswerError> {
        match tag {
            Tag::Authorized => {
                self.authorized = Some(match self.text.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(AnswerError::Invalid("authorized")),
                });
            }
            Tag::Reason => self.status.reason = Some(self.text.trim().to_owned()),
            Tag::Plan => self.status.plan = Some(std::mem::take(&mut self.text)),
            Tag::UsageReport => {
                let report = self
                    .report
                    .take()
                    .ok_or(AnswerError::Invalid("usage_report"))?;
                self.status.usage_reports.push(report.finish()?);
            }
            Tag::PeriodStart => {
                let start =
                    parse_timestamp(&self.text).ok_or(AnswerError::Invalid("period_start"))?;
                self.pending_report()?.period_start = Some(start);
            }
            Tag::PeriodEnd => {
                let end = parse_timestamp(&self.text).ok_or(AnswerError::Invalid("period_end"))?;
                self.pending_report()?.period_end = Some(end);
            }
            Tag::MaxValue => {
                let value = parse_count(&self.text).ok_or(AnswerError::Invalid("max_value"))?;
                self.pending_report()?.max_value = Some(value);
            }
            Tag::CurrentValue => {
                let value = parse_count(&self.text).ok_or(AnswerError::Invalid("current_value"))?;
                self.pending_report()?.current_value = Some(value);
            }
            Tag::Status | Tag::UsageReports | Tag::Hierarchy | Tag::Metric => {}
        }
        Ok(())
    }

    fn pending_report(&mut self) -> Result<&mut PendingReport, AnswerError> {
        self.report
            .as_mut()
            .ok_or(AnswerError::Invalid("usage_report"))
    }

    fn text(&mut self, text: &str) -> Result<(), AnswerError> {
        if self.collecting() {
            self.text.push_str(text);
        } else if self.depth == 0 && self.skipped == 0 && !text.trim_ascii().is_empty() {
            // Text around the root element: this is not an XML answer (e.g. a proxy's page).
            return Err(AnswerError::NotStatus);
        }
        Ok(())
    }
}

/// A counter value: ASCII digits, surrounding whitespace allowed.
fn parse_count(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    /// Authorized, with plan and usage reports (authorize, 200) [observed].
    pub(crate) const AUTHORIZED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Production</plan><usage_reports><usage_report metric="hits" period="month"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>20000</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="day"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>1000</max_value><current_value>0</current_value></usage_report><usage_report metric="get_hello" period="hour"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>100</max_value><current_value>0</current_value></usage_report><usage_report metric="disabled_m" period="eternity"><max_value>0</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#;

    /// All seven periods, plan `All & <Periods>` [observed].
    pub(crate) const ALL_PERIODS: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>All &amp; &lt;Periods&gt;</plan><usage_reports><usage_report metric="hits" period="eternity"><max_value>130</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="year"><period_start>2026-01-01 00:00:00 +0000</period_start><period_end>2027-01-01 00:00:00 +0000</period_end><max_value>101</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="month"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>146</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="week"><period_start>2026-11-23 00:00:00 +0000</period_start><period_end>2026-11-30 00:00:00 +0000</period_end><max_value>138</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="day"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>131</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="hour"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>135</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="minute"><period_start>2026-11-24 18:10:00 +0000</period_start><period_end>2026-11-24 18:11:00 +0000</period_end><max_value>148</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#;

    /// Plan without limits [observed].
    pub(crate) const UNLIMITED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Unlimited</plan></status>"#;

    /// Denied: minute limit 2, `usage[hits]=3` (409) [observed].
    pub(crate) const LIMITS_EXCEEDED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan><usage_reports><usage_report metric="hits" period="minute"><period_start>2026-11-24 18:09:00 +0000</period_start><period_end>2026-11-24 18:10:00 +0000</period_end><max_value>2</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#;

    /// Denied: stored usage already over the limit (409) [observed].
    pub(crate) const EXCEEDED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan><usage_reports><usage_report metric="hits" period="minute" exceeded="true"><period_start>2026-11-24 18:10:00 +0000</period_start><period_end>2026-11-24 18:11:00 +0000</period_end><max_value>2</max_value><current_value>3</current_value></usage_report></usage_reports></status>"#;

    /// oauth_authrep success with GA's unescaped `&` in `redirect_url` [observed].
    pub(crate) const OAUTH_GA: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><application><id>client1</id><key>secret1</key><redirect_url>https://example.com/cb?a=1&b=2</redirect_url></application><plan>Gold</plan><usage_reports><usage_report metric="hits" period="day"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>100</max_value><current_value>1</current_value></usage_report></usage_reports></status>"#;

    /// The authorized body with the observed `app_keys` and `hierarchy` extensions appended.
    pub(crate) fn with_extensions() -> String {
        AUTHORIZED.replace(
            "</usage_reports></status>",
            r#"</usage_reports><app_keys app="app1" svc="svc1"><key id="key1"/></app_keys><hierarchy><metric name="hits" children="get_hello disabled_m"/><metric name="hits" children="get_hello disabled_m"/><metric name="get_hello" children=""/><metric name="disabled_m" children=""/></hierarchy></status>"#,
        )
    }

    fn status_with_reason(reason: &str) -> String {
        format!(
            "{DECL}<status><authorized>false</authorized><reason>{reason}</reason><plan>Production</plan></status>"
        )
    }

    fn fixtures() -> Vec<String> {
        let mut all: Vec<String> = [
            AUTHORIZED,
            ALL_PERIODS,
            UNLIMITED,
            LIMITS_EXCEEDED,
            EXCEEDED,
            OAUTH_GA,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.push(with_extensions());
        all
    }

    #[test]
    fn authorized_with_reports() {
        let status = parse_status(AUTHORIZED.as_bytes()).unwrap();
        assert!(status.authorized);
        assert_eq!(status.reason, None);
        assert_eq!(status.plan.as_deref(), Some("Production"));
        assert!(status.hierarchy.is_empty());
        assert_eq!(status.usage_reports.len(), 4);
        assert_eq!(
            status.usage_reports[0],
            UsageReport {
                metric: "hits".into(),
                period: Period::Month,
                period_start: Some(1_793_491_200),
                period_end: Some(1_796_083_200),
                max_value: 20_000,
                current_value: 0,
                exceeded: false,
            }
        );
        assert_eq!(status.usage_reports[2].metric, "get_hello");
        assert_eq!(status.usage_reports[2].period, Period::Hour);
        assert_eq!(status.usage_reports[2].period_end, Some(1_795_546_800));
        assert_eq!(
            status.usage_reports[3],
            UsageReport {
                metric: "disabled_m".into(),
                period: Period::Eternity,
                period_start: None,
                period_end: None,
                max_value: 0,
                current_value: 0,
                exceeded: false,
            }
        );
    }

    #[test]
    fn all_periods_and_escaped_plan() {
        let status = parse_status(ALL_PERIODS.as_bytes()).unwrap();
        assert_eq!(status.plan.as_deref(), Some("All & <Periods>"));
        let periods: Vec<_> = status.usage_reports.iter().map(|r| r.period).collect();
        assert_eq!(
            periods,
            vec![
                Period::Eternity,
                Period::Year,
                Period::Month,
                Period::Week,
                Period::Day,
                Period::Hour,
                Period::Minute
            ]
        );
        let maxima: Vec<_> = status.usage_reports.iter().map(|r| r.max_value).collect();
        assert_eq!(maxima, vec![130, 101, 146, 138, 131, 135, 148]);
        let week = &status.usage_reports[3];
        assert_eq!(
            week.period_end.unwrap() - week.period_start.unwrap(),
            7 * 86_400
        );
        let minute = &status.usage_reports[6];
        assert_eq!(
            minute.period_end.unwrap() - minute.period_start.unwrap(),
            60
        );
    }

    #[test]
    fn usage_reports_may_be_absent() {
        let status = parse_status(UNLIMITED.as_bytes()).unwrap();
        assert!(status.authorized);
        assert_eq!(status.plan.as_deref(), Some("Unlimited"));
        assert!(status.usage_reports.is_empty());
    }

    #[test]
    fn denials_keep_reason_and_exceeded() {
        let status = parse_status(LIMITS_EXCEEDED.as_bytes()).unwrap();
        assert!(!status.authorized);
        assert_eq!(status.reason.as_deref(), Some("usage limits are exceeded"));
        assert_eq!(status.plan.as_deref(), Some("Basic"));
        assert!(!status.usage_reports[0].exceeded);

        let status = parse_status(EXCEEDED.as_bytes()).unwrap();
        let report = &status.usage_reports[0];
        assert!(report.exceeded);
        assert_eq!((report.max_value, report.current_value), (2, 3));
    }

    #[test]
    fn ga_oauth_application_is_skipped_leniently() {
        let status = parse_status(OAUTH_GA.as_bytes()).unwrap();
        assert!(status.authorized);
        assert_eq!(status.plan.as_deref(), Some("Gold"));
        assert_eq!(status.usage_reports.len(), 1);
        assert_eq!(status.usage_reports[0].current_value, 1);
        // Also with an undefined entity or a half reference inside <application>.
        for redirect in ["https://x/cb?a=1&b=2;c", "https://x/cb?a=1&", "&&&"] {
            let body = OAUTH_GA.replace("https://example.com/cb?a=1&b=2", redirect);
            assert_eq!(
                parse_status(body.as_bytes()).unwrap().plan.as_deref(),
                Some("Gold")
            );
        }
    }

    #[test]
    fn extensions_hierarchy_is_deduplicated_and_app_keys_ignored() {
        let status = parse_status(with_extensions().as_bytes()).unwrap();
        assert_eq!(status.usage_reports.len(), 4);
        assert_eq!(status.hierarchy.len(), 2);
        assert_eq!(
            status.hierarchy.children("hits").collect::<Vec<_>>(),
            vec!["get_hello", "disabled_m"]
        );
        assert_eq!(
            status.hierarchy.ancestors("get_hello").collect::<Vec<_>>(),
            vec!["hits"]
        );
    }

    #[test]
    fn pretty_printed_and_reordered() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- the old docs/api.html style -->
<status>
  <usage_reports>
    <usage_report exceeded="true" period="day" metric="hits">
      <current_value> 5000 </current_value>
      <max_value>
        1000
      </max_value>
      <period_end>2010-04-27 00:00:00 +00:00</period_end>
      <period_start>2010-04-26 00:00:00 +00:00</period_start>
    </usage_report>
    <usage_report metric="hits" period="eternity"/>
  </usage_reports>
  <plan>Pro</plan>
  <reason>
    usage limits are exceeded
  </reason>
  <authorized>
    false
  </authorized>
</status>
"#;
        // A self-closing report lacks its values: refused.
        assert_eq!(
            parse_status(body.as_bytes()),
            Err(AnswerError::Invalid("usage_report max_value"))
        );
        let body = body.replace(
            r#"<usage_report metric="hits" period="eternity"/>"#,
            r#"<usage_report metric="hits" period="eternity"><max_value>1</max_value><current_value>0</current_value></usage_report>"#,
        );
        let status = parse_status(body.as_bytes()).unwrap();
        assert!(!status.authorized);
        assert_eq!(status.reason.as_deref(), Some("usage limits are exceeded"));
        assert_eq!(status.plan.as_deref(), Some("Pro"));
        let day = &status.usage_reports[0];
        assert_eq!(
            (day.max_value, day.current_value, day.exceeded),
            (1000, 5000, true)
        );
        assert_eq!(day.period_start, Some(1_272_240_000));
        assert_eq!(day.period_end, Some(1_272_326_400));
        assert_eq!(status.usage_reports[1].period, Period::Eternity);
    }

    #[test]
    fn text_forms_are_unescaped() {
        let body = format!(
            "{DECL}<status><authorized>true</authorized><plan><![CDATA[A&B]]> &#x43;&#68; &quot;x&apos; &unknown; tail & raw</plan></status>"
        );
        let status = parse_status(body.as_bytes()).unwrap();
        assert_eq!(
            status.plan.as_deref(),
            Some("A&B CD \"x' &unknown; tail & raw")
        );
    }

    #[test]
    fn plan_keeps_its_exact_text_and_may_be_absent_or_empty() {
        let body =
            format!("{DECL}<status><authorized>true</authorized><plan> Gold </plan></status>");
        assert_eq!(
            parse_status(body.as_bytes()).unwrap().plan.as_deref(),
            Some(" Gold ")
        );
        let body = format!("{DECL}<status><authorized>true</authorized><plan/></status>");
        assert_eq!(
            parse_status(body.as_bytes()).unwrap().plan.as_deref(),
            Some("")
        );
        let body = format!("{DECL}<status><authorized>true</authorized></status>");
        assert_eq!(parse_status(body.as_bytes()).unwrap().plan, None);
        let body = "<status><authorized>true</authorized><plan>Ünïcode ✓</plan></status>";
        assert_eq!(
            parse_status(body.as_bytes()).unwrap().plan.as_deref(),
            Some("Ünïcode ✓")
        );
    }

    #[test]
    fn unknown_elements_and_nested_markup_are_skipped() {
        let body = format!(
            "{DECL}<status><future a=\"1\"><status><authorized>false</authorized></status></future><authorized>true</authorized><plan>P<b>old</b>lan</plan><usage_reports><usage_report metric=\"m\" period=\"day\"><new_field>x</new_field><max_value>3</max_value><current_value>1</current_value></usage_report><other/></usage_reports></status>"
        );
        let status = parse_status(body.as_bytes()).unwrap();
        assert!(status.authorized);
        assert_eq!(status.plan.as_deref(), Some("Plan"));
        assert_eq!(status.usage_reports.len(), 1);
        assert_eq!(status.usage_reports[0].period_end, None);
    }

    #[test]
    fn rejection_reason_texts_are_unescaped_and_trimmed() {
        for (escaped, text) in [
            (
                "application key &quot;WRONG&quot; is invalid",
                r#"application key "WRONG" is invalid"#,
            ),
            (
                r#"application key "K" is invalid"#,
                r#"application key "K" is invalid"#,
            ),
            ("application key is missing", "application key is missing"),
            ("  application is not active\n", "application is not active"),
            (
                "referrer &quot;evil.com&quot; is not allowed",
                r#"referrer "evil.com" is not allowed"#,
            ),
        ] {
            let status = parse_status(status_with_reason(escaped).as_bytes()).unwrap();
            assert!(!status.authorized);
            assert_eq!(status.reason.as_deref(), Some(text));
        }
    }

    #[test]
    fn invalid_documents_are_refused() {
        let cases: &[(&str, AnswerError)] = &[
            ("", AnswerError::Truncated),
            ("   \n", AnswerError::Truncated),
            (DECL, AnswerError::Truncated),
            ("Internal Server Error\n", AnswerError::NotStatus),
            (
                "<html><body>502 Bad Gateway</body></html>",
                AnswerError::NotStatus,
            ),
            (
                r#"<error code="user_key_invalid">user key "x" is invalid</error>"#,
                AnswerError::NotStatus,
            ),
            (
                "<status></status>",
                AnswerError::Invalid("authorized (missing)"),
            ),
            (
                "<status><authorized>yes</authorized></status>",
                AnswerError::Invalid("authorized"),
            ),
            (
                "<status><authorized>TRUE</authorized></status>",
                AnswerError::Invalid("authorized"),
            ),
            (
                "garbage<status><authorized>true</authorized></status>",
                AnswerError::NotStatus,
            ),
            (
                r#"<status><authorized>true</authorized><usage_reports><usage_report period="day"><max_value>1</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#,
                AnswerError::Invalid("usage_report metric"),
            ),
            (
                r#"<status><authorized>true</authorized><usage_reports><usage_report metric="h" period="second"><max_value>1</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#,
                AnswerError::Invalid("usage_report period"),
            ),
            (
                r#"<status><authorized>true</authorized><usage_reports><usage_report metric="h" period="day"><max_value>-1</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#,
                AnswerError::Invalid("max_value"),
            ),
            (
                r#"<status><authorized>true</authorized><usage_reports><usage_report metric="h" period="day"><max_value>99999999999999999999</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#,
                AnswerError::Invalid("max_value"),
            ),
            (
                r#"<status><authorized>true</authorized><usage_reports><usage_report metric="h" period="day"><max_value>1</max_value></usage_report></usage_reports></status>"#,
                AnswerError::Invalid("usage_report current_value"),
            ),
            (
                r#"<status><authorized>true</authorized><usage_reports><usage_report metric="h" period="day"><period_end>tomorrow</period_end><max_value>1</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#,
                AnswerError::Invalid("period_end"),
            ),
            (
                r#"<status><authorized>true</authorized><hierarchy><metric children="a"/></hierarchy></status>"#,
                AnswerError::Invalid("hierarchy metric name"),
            ),
            (
                r#"<status><authorized>true</authorized><usage_reports><usage_report metric="a&bogus" period="day"></usage_report></usage_reports></status>"#,
                AnswerError::Invalid("attribute"),
            ),
            (
                r#"<status><authorized>true</authorized><usage_reports><usage_report metric="a" metric="b" period="day"></usage_report></usage_reports></status>"#,
                AnswerError::Invalid("attribute"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                parse_status(body.as_bytes()).as_ref(),
                Err(expected),
                "{body}"
            );
        }
    }

    #[test]
    fn malformed_xml_is_a_syntax_error() {
        for body in [
            "<status><authorized>true</authorised></status>",
            "<status><authorized>true</authorized><plan>a</plan</status>",
            "<status><authorized>true</authorized><!-- unclosed comment </status>",
            "<status><authorized>true</authorized><![CDATA[ unclosed </status>",
        ] {
            assert!(
                matches!(
                    parse_status(body.as_bytes()),
                    Err(AnswerError::Syntax { .. })
                ),
                "{body}"
            );
        }
        let mut bad_utf8 = b"<status><authorized>true</authorized><plan>".to_vec();
        bad_utf8.extend_from_slice(&[0xff, 0xfe]);
        bad_utf8.extend_from_slice(b"</plan></status>");
        assert!(matches!(
            parse_status(&bad_utf8),
            Err(AnswerError::Syntax { .. })
        ));
        for body in ["<<<>>>", "<>", "</status>", "<?xml", "<!DOCTYPE status>"] {
            assert!(parse_status(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn content_after_the_root_is_not_read() {
        let body = format!("{UNLIMITED}\n<trailing/>garbage");
        assert!(parse_status(body.as_bytes()).unwrap().authorized);
    }

    #[test]
    fn every_truncation_of_every_fixture_is_an_error() {
        for fixture in fixtures() {
            let bytes = fixture.as_bytes();
            assert!(parse_status(bytes).is_ok());
            for end in 0..bytes.len() {
                assert!(
                    parse_status(&bytes[..end]).is_err(),
                    "truncated at {end}: {}",
                    String::from_utf8_lossy(&bytes[..end])
                );
            }
        }
    }

    #[test]
    fn mutations_never_panic() {
        // A small xorshift keeps the run deterministic without a dev-dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = b"<>/&;=\"' \n\x00\xff#x";
        for fixture in fixtures() {
            let original = fixture.into_bytes();
            for _ in 0..2_000 {
                let mut bytes = original.clone();
                for _ in 0..(next() % 4 + 1) {
                    let position = (next() as usize) % bytes.len();
                    match next() % 3 {
                        0 => bytes[position] = interesting[(next() as usize) % interesting.len()],
                        1 => {
                            bytes.remove(position);
                        }
                        _ => bytes
                            .insert(position, interesting[(next() as usize) % interesting.len()]),
                    }
                }
                let _ = parse_status(&bytes);
                let _ = parse_error(&bytes);
            }
        }
    }

    #[test]
    fn error_documents() {
        let cases = [
            (
                r#"<?xml version="1.0" encoding="UTF-8"?><error code="provider_key_or_service_token_required">Provider key or service token are required</error>"#,
                "provider_key_or_service_token_required",
                "Provider key or service token are required",
            ),
            (
                r#"<?xml version="1.0" encoding="UTF-8"?><error code="service_token_invalid">service token "bad" or service id "svc1" is invalid</error>"#,
                "service_token_invalid",
                r#"service token "bad" or service id "svc1" is invalid"#,
            ),
            (
                r#"<?xml version="1.0" encoding="UTF-8"?><error code="application_not_found">application with id="nope" was not found</error>"#,
                "application_not_found",
                r#"application with id="nope" was not found"#,
            ),
            (
                r#"<?xml version="1.0" encoding="UTF-8"?><error code="user_key_invalid">user key "uk1" is invalid</error>"#,
                "user_key_invalid",
                r#"user key "uk1" is invalid"#,
            ),
            (
                r#"<?xml version="1.0" encoding="UTF-8"?><error code="service_id_missing">Service ID is missing</error>"#,
                "service_id_missing",
                "Service ID is missing",
            ),
            (
                r#"<?xml version="1.0" encoding="UTF-8"?><error code="content_type_invalid">invalid Content-Type: application/json</error>"#,
                "content_type_invalid",
                "invalid Content-Type: application/json",
            ),
            (
                r#"<?xml version="1.0" encoding="UTF-8"?><error code="transactions_is_blank">transactions parameter is blank</error>"#,
                "transactions_is_blank",
                "transactions parameter is blank",
            ),
            (
                r#"<?xml version="1.0" encoding="UTF-8"?><error code="bad_request">Invalid query parameters: invalid %-encoding</error>"#,
                "bad_request",
                "Invalid query parameters: invalid %-encoding",
            ),
            (
                "<error code=\"metric_invalid\">\n  metric &quot;a&amp;b&quot; is &lt;invalid&gt;\n</error>\n",
                "metric_invalid",
                "metric \"a&b\" is <invalid>",
            ),
            (r#"<error code="x"/>"#, "x", ""),
            (r#"<error code="x">a<b>c</b>d</error>"#, "x", "acd"),
        ];
        for (body, code, message) in cases {
            assert_eq!(
                parse_error(body.as_bytes()),
                Some(BackendError {
                    code: code.into(),
                    message: message.into()
                }),
                "{body}"
            );
        }
    }

    #[test]
    fn non_error_documents_are_none() {
        for body in [
            "",
            DECL,
            "Internal Server Error\n",
            "<error>no code</error>",
            "<error code=\"x\">truncated",
            "<error code=\"x\">x</errors>",
            "junk<error code=\"x\">x</error>",
            "<status><authorized>true</authorized></status>",
            "<error code='x' code='y'>dup</error>",
        ] {
            assert_eq!(parse_error(body.as_bytes()), None, "{body:?}");
        }
        let body = r#"<error code="application_not_found">application with id="nope" was not found</error>"#;
        for end in 0..body.len() {
            assert_eq!(parse_error(&body.as_bytes()[..end]), None);
        }
    }

    #[test]
    fn period_names_round_trip() {
        for period in Period::ALL {
            assert_eq!(Period::parse(period.as_str()), Some(period));
        }
        assert_eq!(Period::parse("second"), None);
        assert_eq!(Period::parse("Day"), None);
        assert!(Period::Minute < Period::Hour && Period::Year < Period::Eternity);
    }

    #[test]
    fn errors_display_without_content() {
        assert_eq!(
            AnswerError::Syntax { offset: 7 }.to_string(),
            "malformed XML at byte 7"
        );
        assert_eq!(
            AnswerError::Invalid("max_value").to_string(),
            "invalid max_value"
        );
    }
}
