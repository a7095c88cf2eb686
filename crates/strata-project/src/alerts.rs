//! `[alerts.NAME]`, `[smtp]` and `[monitoring]`: who hears about what, and
//! through which channel.
//!
//! Channel addresses and passwords may hold `${ENV}` references. They are kept
//! as written and expanded only when an alert is sent, so commands that send
//! nothing (`strata sql`, `strata validate`) work without the secrets, and the
//! secrets never reach the state store or a log.

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Errors, LocatedError, did_you_mean};

/// What an alert rule reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertOn {
    /// A run ended failed.
    RunFailed,
    /// A table's latest task failed (after its retries).
    TaskFailed,
    /// A check's latest result failed (filtered by the rule's `severity`).
    CheckFailed,
    /// A table or data product is staler than its `freshness` SLA.
    SlaMissed,
    /// Rows added or duration left the range learnt from earlier runs.
    Anomaly,
    /// A source's columns changed (added, missing or retyped).
    SchemaChanged,
    /// A task took longer than the rule's `max_duration`.
    DurationOver,
}

impl AlertOn {
    /// Every kind, in display order.
    pub const ALL: [AlertOn; 7] = [
        AlertOn::RunFailed,
        AlertOn::TaskFailed,
        AlertOn::CheckFailed,
        AlertOn::SlaMissed,
        AlertOn::Anomaly,
        AlertOn::SchemaChanged,
        AlertOn::DurationOver,
    ];

    /// The name used in `on = [...]`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertOn::RunFailed => "run_failed",
            AlertOn::TaskFailed => "task_failed",
            AlertOn::CheckFailed => "check_failed",
            AlertOn::SlaMissed => "sla_missed",
            AlertOn::Anomaly => "anomaly",
            AlertOn::SchemaChanged => "schema_changed",
            AlertOn::DurationOver => "duration_over",
        }
    }

    /// Parses a name used in `on = [...]`.
    pub fn parse(s: &str) -> Option<AlertOn> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The body of webhook posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Slack's incoming-webhook body: `text` plus `blocks`.
    Slack,
    /// Every field of the alert as one JSON object.
    Json,
}

/// One `[alerts.NAME]` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Its name.
    pub name: String,
    /// What it reacts to.
    pub on: Vec<AlertOn>,
    /// For `check_failed`: only checks of this severity or worse (`warn`
    /// takes both, `error` only errors). Default `warn`.
    pub min_severity: String,
    /// Which tables it covers (a selection expression, as `strata run --select`).
    pub select: Option<String>,
    /// Only tables owned by this owner: models with `owner = …` and the models of
    /// data products with that owner.
    pub owner: Option<String>,
    /// A webhook URL (may hold `${ENV}`).
    pub webhook: Option<String>,
    /// The webhook body.
    pub format: WebhookFormat,
    /// E-mail recipients (through `[smtp]`).
    pub email: Vec<String>,
    /// A command run through `sh -c` with the alert as JSON on stdin.
    pub command: Option<String>,
    /// Re-send a still-firing incident after this many seconds (default 4h).
    pub repeat_after_seconds: i64,
    /// Send a message when an incident clears (default true).
    pub send_resolved: bool,
    /// For `duration_over`: the longest a task may take, in seconds.
    pub max_duration_seconds: Option<i64>,
}

/// How to talk to the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (only for a relay on the same host or network).
    None,
    /// Upgrade with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// `[smtp]`: the mail server.
#[derive(Debug, Clone, PartialEq)]
pub struct Smtp {
    /// Host name.
    pub host: String,
    /// Port (default 587 with STARTTLS, 465 with TLS, 25 without).
    pub port: u16,
    /// Transport security (default STARTTLS).
    pub tls: SmtpTls,
    /// User name for AUTH (may hold `${ENV}`).
    pub username: Option<String>,
    /// Password for AUTH (may hold `${ENV}`).
    pub password: Option<String>,
    /// The sender address.
    pub from: String,
}

/// `[monitoring]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitoring {
    /// Volume and duration anomaly detection (default on).
    pub anomaly_detection: bool,
    /// Earlier runs each table's normal range is learnt from (default 14).
    pub anomaly_window: usize,
    /// Runs needed before a table is judged (default 7).
    pub anomaly_min_history: usize,
    /// Robust z-score above which a value is an anomaly (default 3.5).
    pub anomaly_threshold: f64,
    /// How often `strata serve` evaluates freshness and alerts, in seconds (default 60).
    pub evaluate_every_seconds: i64,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            anomaly_detection: true,
            anomaly_window: 14,
            anomaly_min_history: 7,
            anomaly_threshold: 3.5,
            evaluate_every_seconds: 60,
        }
    }
}

/// `[alerts.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    /// What it reacts to.
    pub on: Spanned<Vec<String>>,
    /// Selection expression.
    pub select: Option<String>,
    /// Owner filter.
    pub owner: Option<String>,
    /// `warn` (default) or `error`.
    pub severity: Option<Spanned<String>>,
    /// Webhook URL.
    pub webhook: Option<String>,
    /// `slack` (default) or `json`.
    pub format: Option<Spanned<String>>,
    /// Recipients.
    pub email: Option<Vec<String>>,
    /// Command.
    pub command: Option<String>,
    /// Repeat interval (`"4h"`).
    pub repeat_after: Option<Spanned<String>>,
    /// Send resolved messages.
    pub send_resolved: Option<bool>,
    /// Threshold for `duration_over`.
    pub max_duration: Option<Spanned<String>>,
}

/// `[smtp]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// Host.
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    pub tls: Option<Spanned<String>>,
    /// User.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Sender.
    pub from: String,
}

/// `[monitoring]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitoring {
    /// On or off.
    pub anomaly_detection: Option<bool>,
    /// Window.
    pub anomaly_window: Option<usize>,
    /// Minimum history.
    pub anomaly_min_history: Option<usize>,
    /// Threshold.
    pub anomaly_threshold: Option<f64>,
    /// Evaluation period (`"60s"`).
    pub evaluate_every: Option<Spanned<String>>,
}

/// The keys allowed under `[alerts.NAME]`.
pub const ALERT_KEYS: &[&str] = &[
    "on",
    "select",
    "owner",
    "severity",
    "webhook",
    "format",
    "email",
    "command",
    "repeat_after",
    "send_resolved",
    "max_duration",
];
/// The keys allowed under `[smtp]`.
pub const SMTP_KEYS: &[&str] = &["host", "port", "tls", "username", "password", "from"];
/// The keys allowed under `[monitoring]`.
pub const MONITORING_KEYS: &[&str] = &[
    "anomaly_detection",
    "anomaly_window",
    "anomaly_min_history",
    "anomaly_threshold",
    "evaluate_every",
];

type At<'a> = &'a dyn Fn(std::ops::Range<usize>, String) -> LocatedError;

fn duration(v: &Spanned<String>, what: &str, at: At<'_>, errors: &mut Errors) -> Option<i64> {
    match crate::check::parse_duration(v.get_ref()) {
        Some(s) if s > 0 => Some(s),
        _ => {
            errors.push(
                at(v.span(), format!("bad {what} `{}`", v.get_ref()))
                    .with_help("write a number and a unit: 90s, 30m, 4h, 1d"),
            );
            None
        }
    }
}

/// Resolves one `[alerts.NAME]` table.
pub(crate) fn resolve_alert(
    name: &str,
    spanned: &Spanned<RawAlert>,
    has_smtp: bool,
    at: At<'_>,
) -> Result<AlertRule, Errors> {
    let mut errors = Errors::default();
    let raw = spanned.get_ref();
    let mut on = vec![];
    for k in raw.on.get_ref() {
        match AlertOn::parse(k) {
            Some(a) => on.push(a),
            None => {
                let help = match did_you_mean(k, AlertOn::ALL.iter().map(|a| a.as_str())) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("use any of {}", AlertOn::ALL.map(|a| a.as_str()).join(", ")),
                };
                errors.push(
                    at(
                        raw.on.span(),
                        format!("alert `{name}`: unknown event `{k}`"),
                    )
                    .with_help(help),
                );
            }
        }
    }
    if raw.on.get_ref().is_empty() {
        errors.push(
            at(raw.on.span(), format!("alert `{name}` reacts to nothing"))
                .with_help("list events: on = [\"run_failed\", \"check_failed\"]"),
        );
    }
    let min_severity = match &raw.severity {
        None => "warn".to_string(),
        Some(s) if matches!(s.get_ref().as_str(), "warn" | "error") => s.get_ref().clone(),
        Some(s) => {
            errors.push(
                at(s.span(), format!("unknown severity `{}`", s.get_ref()))
                    .with_help("use warn (warnings and errors) or error"),
            );
            "warn".into()
        }
    };
    let format = match raw
        .format
        .as_ref()
        .map(|f| (f.get_ref().as_str(), f.span()))
    {
        None | Some(("slack", _)) => WebhookFormat::Slack,
        Some(("json", _)) => WebhookFormat::Json,
        Some((other, span)) => {
            errors.push(
                at(span, format!("unknown webhook format `{other}`"))
                    .with_help("use slack or json"),
            );
            WebhookFormat::Slack
        }
    };
    let email = raw.email.clone().unwrap_or_default();
    if raw.webhook.is_none() && email.is_empty() && raw.command.is_none() {
        errors.push(
            at(spanned.span(), format!("alert `{name}` has no channel"))
                .with_help("give a webhook = \"https://…\", email = [\"…\"] or command = \"…\""),
        );
    }
    if !email.is_empty() && !has_smtp {
        errors.push(
            at(
                spanned.span(),
                format!("alert `{name}` sends e-mail but there is no [smtp]"),
            )
            .with_help("add [smtp] with host and from"),
        );
    }
    let repeat_after_seconds = raw
        .repeat_after
        .as_ref()
        .and_then(|r| duration(r, "repeat_after", at, &mut errors))
        .unwrap_or(4 * 3600);
    let max_duration_seconds = raw
        .max_duration
        .as_ref()
        .and_then(|r| duration(r, "max_duration", at, &mut errors));
    if on.contains(&AlertOn::DurationOver) && max_duration_seconds.is_none() {
        errors.push(
            at(
                spanned.span(),
                format!("alert `{name}`: duration_over needs max_duration"),
            )
            .with_help("add max_duration = \"30m\""),
        );
    }
    errors.into_result(AlertRule {
        name: name.to_string(),
        on,
        min_severity,
        select: raw.select.clone(),
        owner: raw.owner.clone(),
        webhook: raw.webhook.clone(),
        format,
        email,
        command: raw.command.clone(),
        repeat_after_seconds,
        send_resolved: raw.send_resolved.unwrap_or(true),
        max_duration_seconds,
    })
}

/// Resolves `[smtp]`.
pub(crate) fn resolve_smtp(spanned: &Spanned<RawSmtp>, at: At<'_>) -> Result<Smtp, Errors> {
    let mut errors = Errors::default();
    let raw = spanned.get_ref();
    let tls = match raw.tls.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
        None | Some(("starttls", _)) => SmtpTls::StartTls,
        Some(("tls", _)) => SmtpTls::Tls,
        Some(("none", _)) => SmtpTls::None,
        Some((other, span)) => {
            errors.push(
                at(span, format!("unknown tls `{other}`")).with_help("use starttls, tls or none"),
            );
            SmtpTls::StartTls
        }
    };
    let port = raw.port.unwrap_or(match tls {
        SmtpTls::None => 25,
        SmtpTls::StartTls => 587,
        SmtpTls::Tls => 465,
    });
    errors.into_result(Smtp {
        host: raw.host.clone(),
        port,
        tls,
        username: raw.username.clone(),
        password: raw.password.clone(),
        from: raw.from.clone(),
    })
}

/// Resolves `[monitoring]`.
pub(crate) fn resolve_monitoring(
    spanned: &Spanned<RawMonitoring>,
    at: At<'_>,
) -> Result<Monitoring, Errors> {
    let mut errors = Errors::default();
    let raw = spanned.get_ref();
    let d = Monitoring::default();
    let threshold = raw.anomaly_threshold.unwrap_or(d.anomaly_threshold);
    if threshold <= 0.0 || !threshold.is_finite() {
        errors.push(
            at(
                spanned.span(),
                format!("anomaly_threshold must be above 0, not {threshold}"),
            )
            .with_help("3.5 is the usual robust z-score cut-off"),
        );
    }
    let window = raw.anomaly_window.unwrap_or(d.anomaly_window);
    let min_history = raw.anomaly_min_history.unwrap_or(d.anomaly_min_history);
    if min_history < 3 || min_history > window {
        errors.push(
            at(
                spanned.span(),
                format!(
                    "anomaly_min_history must be between 3 and anomaly_window ({window}), not {min_history}"
                ),
            )
            .with_help("a range learnt from fewer than 3 runs is noise"),
        );
    }
    let every = raw
        .evaluate_every
        .as_ref()
        .and_then(|e| duration(e, "evaluate_every", at, &mut errors))
        .unwrap_or(d.evaluate_every_seconds);
    errors.into_result(Monitoring {
        anomaly_detection: raw.anomaly_detection.unwrap_or(true),
        anomaly_window: window,
        anomaly_min_history: min_history,
        anomaly_threshold: threshold,
        evaluate_every_seconds: every,
    })
}
