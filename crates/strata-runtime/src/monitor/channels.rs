//! The alert channels: webhooks (a Slack-compatible body or the generic JSON
//! body), e-mail over SMTP, and a command that reads the alert on stdin.
//! `${ENV}` references in addresses and passwords are expanded here, at send
//! time, and never logged.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use strata_project::{AlertRule, Smtp, SmtpTls, WebhookFormat, expand_env};
use tokio::io::AsyncWriteExt;

use super::alerts::{Alert, Notifier};

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends alerts through the channels a rule names.
pub struct Channels {
    smtp: Option<Smtp>,
    http: reqwest::Client,
    /// Folder commands run in (the project).
    workdir: std::path::PathBuf,
}

impl Channels {
    /// Channels using `smtp` for e-mail, running commands in `workdir`.
    pub fn new(smtp: Option<Smtp>, workdir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            smtp,
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
            workdir: workdir.into(),
        }
    }

    async fn webhook(&self, url: &str, format: WebhookFormat, alert: &Alert) -> Result<(), String> {
        let url =
            expand_env(url).map_err(|v| format!("webhook: environment variable {v} is not set"))?;
        let body = match format {
            WebhookFormat::Slack => slack_body(alert),
            WebhookFormat::Json => serde_json::to_value(alert).map_err(|e| e.to_string())?,
        };
        let shown = shown_url(&url);
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("webhook {shown}: {}", without_url(e)))?;
        if !resp.status().is_success() {
            return Err(format!("webhook {shown} answered {}", resp.status()));
        }
        Ok(())
    }

    async fn email(&self, to: &[String], alert: &Alert) -> Result<(), String> {
        let smtp = self.smtp.as_ref().ok_or("e-mail: no [smtp] configured")?;
        let env = |s: &str| {
            expand_env(s).map_err(|v| format!("smtp: environment variable {v} is not set"))
        };
        let host = env(&smtp.host)?;
        let mut builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                .map_err(|e| format!("smtp {host}: {e}"))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                .map_err(|e| format!("smtp {host}: {e}"))?,
        }
        .port(smtp.port)
        .timeout(Some(TIMEOUT));
        if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(env(u)?, env(p)?));
        }
        let transport = builder.build();
        let from = env(&smtp.from)?
            .parse()
            .map_err(|e| format!("smtp from `{}`: {e}", smtp.from))?;
        let mut msg = Message::builder().from(from).subject(subject(alert));
        for t in to {
            let t = env(t)?;
            msg = msg.to(t
                .parse()
                .map_err(|e| format!("e-mail address `{t}`: {e}"))?);
        }
        let msg = msg
            .header(ContentType::TEXT_PLAIN)
            .body(text_body(alert))
            .map_err(|e| format!("e-mail: {e}"))?;
        transport
            .send(msg)
            .await
            .map_err(|e| format!("smtp {host}:{}: {e}", smtp.port))?;
        Ok(())
    }

    async fn command(&self, cmd: &str, alert: &Alert) -> Result<(), String> {
        let body = serde_json::to_vec(alert).map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&self.workdir)
            .env("STRATA_ALERT_RULE", &alert.rule)
            .env("STRATA_ALERT_STATUS", &alert.status)
            .env("STRATA_ALERT_KIND", &alert.kind)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("command `{cmd}`: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&body)
                .await
                .map_err(|e| format!("command `{cmd}`: writing the alert: {e}"))?;
        }
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| format!("command `{cmd}` took over {}s", TIMEOUT.as_secs()))?
            .map_err(|e| format!("command `{cmd}`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "command `{cmd}` exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Notifier for Channels {
    async fn notify(&self, rule: &AlertRule, alert: &Alert) -> Result<(), String> {
        let mut errors = vec![];
        let mut delivered = 0;
        if let Some(url) = &rule.webhook {
            match self.webhook(url, rule.format, alert).await {
                Ok(()) => delivered += 1,
                Err(e) => errors.push(e),
            }
        }
        if !rule.email.is_empty() {
            match self.email(&rule.email, alert).await {
                Ok(()) => delivered += 1,
                Err(e) => errors.push(e),
            }
        }
        if let Some(cmd) = &rule.command {
            match self.command(cmd, alert).await {
                Ok(()) => delivered += 1,
                Err(e) => errors.push(e),
            }
        }
        // Delivered through at least one channel counts as sent (so the
        // others are not spammed with retries); the failures are reported.
        match (errors.is_empty(), delivered) {
            (true, _) => Ok(()),
            (false, 0) => Err(errors.join("; ")),
            (false, _) => {
                tracing::warn!("alert `{}`: {}", rule.name, errors.join("; "));
                Ok(())
            }
        }
    }
}

/// `[FIRING] shop | sla_missed | bronze.orders` (ASCII, so mail clients show it as is).
pub fn subject(a: &Alert) -> String {
    format!(
        "[{}{}] {} | {} | {}",
        a.status.to_uppercase(),
        if a.repeat { ", repeated" } else { "" },
        a.project,
        a.kind,
        a.subject
    )
}

/// The plain-text body of e-mails.
pub fn text_body(a: &Alert) -> String {
    let mut s = format!("{}\n\n", a.summary);
    s.push_str(&format!("rule:      {}\n", a.rule));
    s.push_str(&format!("kind:      {}\n", a.kind));
    s.push_str(&format!("subject:   {}\n", a.subject));
    s.push_str(&format!("severity:  {}\n", a.severity));
    s.push_str(&format!("status:    {}\n", a.status));
    s.push_str(&format!("opened at: {}\n", a.opened_at));
    if let Some(r) = &a.resolved_at {
        s.push_str(&format!("resolved:  {r}\n"));
    }
    s.push_str(&format!("incident:  {}\n\n", a.incident_id));
    if let Ok(d) = serde_json::to_string_pretty(&a.details) {
        s.push_str(&d);
        s.push('\n');
    }
    s
}

/// The body Slack's incoming webhooks take: `text` (the notification and
/// fallback) plus Block Kit `blocks` (a header, a section with fields, a context line).
pub fn slack_body(a: &Alert) -> serde_json::Value {
    let mark = match (a.status.as_str(), a.severity.as_str()) {
        ("resolved", _) => ":large_green_circle:",
        (_, "error") => ":red_circle:",
        _ => ":large_orange_circle:",
    };
    let header: String = format!("{} {}: {}", a.status.to_uppercase(), a.kind, a.subject)
        .chars()
        .take(150)
        .collect();
    let field =
        |k: &str, v: &str| serde_json::json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")});
    serde_json::json!({
        "text": format!("{mark} {}", subject(a)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": format!("{mark} {}", a.summary)},
             "fields": [
                field("Project", &a.project),
                field("Rule", &a.rule),
                field("Severity", &a.severity),
                field("Opened", &a.opened_at),
             ]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("incident `{}`{}", a.incident_id, if a.repeat { " · repeated" } else { "" })}
            ]}
        ]
    })
}

/// The URL without its path and query (which may hold a token).
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "(bad URL)".into(),
    }
}

fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}
