//! From conditions to notifications, without alert fatigue: one incident per
//! rule and subject, re-sent only after `repeat_after`, one "resolved" message
//! when the condition clears, nothing sent while the rule is silenced.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use strata_project::{AlertOn, AlertRule, Project};
use strata_state::{Incident, StateStore};

use super::{Condition, Health};
use crate::rfc3339;

/// One notification, as sent to every channel (the generic JSON body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The project.
    pub project: String,
    /// The rule (`[alerts.NAME]`).
    pub rule: String,
    /// The incident's id (the same for its firing, repeated and resolved messages).
    pub incident_id: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// A reminder of an incident already sent.
    pub repeat: bool,
    /// `run_failed`, `task_failed`, `check_failed`, `sla_missed`, `anomaly`,
    /// `schema_changed` or `duration_over`.
    pub kind: String,
    /// What it is about.
    pub subject: String,
    /// `error`, `warn` or `info`.
    pub severity: String,
    /// One line for people.
    pub summary: String,
    /// The tables concerned.
    pub tables: Vec<String>,
    /// Every detail of the condition.
    pub details: serde_json::Value,
    /// RFC 3339: when the incident opened.
    pub opened_at: String,
    /// RFC 3339: when it cleared (resolved messages only).
    pub resolved_at: Option<String>,
    /// RFC 3339: when this message was made.
    pub sent_at: String,
}

/// Delivers alerts to a rule's channels.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `alert` to every channel of `rule`; `Err` lists what failed.
    async fn notify(&self, rule: &AlertRule, alert: &Alert) -> Result<(), String>;
}

/// What reconciling did with one incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// The alert (sent, or held back by a silence).
    pub alert: Alert,
    /// Delivered to the channels.
    pub sent: bool,
    /// Held back by a silence.
    pub silenced: bool,
    /// The delivery error, if any.
    pub error: Option<String>,
}

/// The tables a rule covers (None: all).
pub fn rule_tables(
    rule: &AlertRule,
    project: &Project,
    graph: &strata_graph::Graph,
) -> Result<Option<BTreeSet<String>>, String> {
    let mut sets: Vec<BTreeSet<String>> = vec![];
    if let Some(sel) = &rule.select {
        sets.push(
            graph
                .select(sel)
                .map_err(|e| format!("alert `{}`: select: {e}", rule.name))?,
        );
    }
    if let Some(owner) = &rule.owner {
        let mut s: BTreeSet<String> = project
            .models
            .values()
            .filter(|m| m.config.owner.as_deref() == Some(owner))
            .map(|m| m.name.clone())
            .collect();
        for p in project.products.values() {
            if p.owner.as_deref() == Some(owner) {
                s.extend(p.models.iter().cloned());
            }
        }
        sets.push(s);
    }
    Ok(sets
        .into_iter()
        .reduce(|a, b| a.intersection(&b).cloned().collect()))
}

/// The conditions of `health` that `rule` reacts to, plus its own
/// `duration_over` conditions.
pub fn rule_conditions(
    rule: &AlertRule,
    health: &Health,
    covered: Option<&BTreeSet<String>>,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = health
        .conditions
        .iter()
        .filter(|c| rule.on.contains(&c.kind))
        .filter(|c| {
            c.kind != AlertOn::CheckFailed || rule.min_severity == "warn" || c.severity == "error"
        })
        .cloned()
        .collect();
    if let (true, Some(max)) = (
        rule.on.contains(&AlertOn::DurationOver),
        rule.max_duration_seconds,
    ) {
        for (table, t) in &health.latest {
            let Some(d) = t.duration() else { continue };
            if t.status == "success" && d.num_seconds() > max {
                let mut fields = serde_json::Map::new();
                fields.insert("run_id".into(), t.run_id.clone().into());
                fields.insert("task".into(), t.task.clone().into());
                fields.insert(
                    "duration_seconds".into(),
                    (d.num_milliseconds() as f64 / 1000.0).into(),
                );
                fields.insert("max_duration_seconds".into(), max.into());
                out.push(Condition {
                    kind: AlertOn::DurationOver,
                    subject: table.clone(),
                    severity: "warn".into(),
                    summary: format!(
                        "{} took {}, over the {} limit of alert `{}`",
                        t.task,
                        super::human_seconds(d.num_seconds()),
                        super::human_seconds(max),
                        rule.name
                    ),
                    tables: vec![table.clone()],
                    fields,
                });
            }
        }
    }
    if let Some(tables) = covered {
        out.retain(|c| c.tables.iter().any(|t| tables.contains(t)));
    }
    out
}

fn alert_of(project: &str, inc: &Incident, tables: Vec<String>, now: &str, repeat: bool) -> Alert {
    let details: serde_json::Value =
        serde_json::from_str(&inc.details).unwrap_or(serde_json::Value::Null);
    Alert {
        project: project.to_string(),
        rule: inc.rule.clone(),
        incident_id: inc.id.clone(),
        status: if inc.status == "resolved" {
            "resolved".into()
        } else {
            "firing".into()
        },
        repeat,
        kind: inc.kind.clone(),
        subject: inc.subject.clone(),
        severity: details
            .get("severity")
            .and_then(|s| s.as_str())
            .unwrap_or("warn")
            .to_string(),
        summary: inc.summary.clone(),
        tables,
        details,
        opened_at: inc.opened_at.clone(),
        resolved_at: inc.resolved_at.clone(),
        sent_at: now.to_string(),
    }
}

/// Compares every rule's conditions with its open incidents at `now`, sends
/// what is due through `notifier` and records the incidents.
pub async fn reconcile(
    store: &StateStore,
    project: &Project,
    graph: &strata_graph::Graph,
    health: &Health,
    now: DateTime<Utc>,
    notifier: &dyn Notifier,
) -> Result<Vec<Delivery>, strata_state::Error> {
    let now_s = rfc3339(now);
    let silenced: BTreeSet<String> = store
        .active_silences(&now_s)
        .await?
        .into_iter()
        .map(|s| s.rule)
        .collect();
    let mut open: BTreeMap<(String, String, String), Incident> = store
        .open_incidents()
        .await?
        .into_iter()
        .map(|i| ((i.rule.clone(), i.kind.clone(), i.subject.clone()), i))
        .collect();
    let mut out = vec![];
    for rule in project.alerts.values() {
        let covered = match rule_tables(rule, project, graph) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        let quiet = silenced.contains(&rule.name);
        let mut holding = BTreeSet::new();
        for c in rule_conditions(rule, health, covered.as_ref()) {
            let key = (
                rule.name.clone(),
                c.kind.as_str().to_string(),
                c.subject.clone(),
            );
            holding.insert(key.clone());
            let mut details = serde_json::Value::Object(c.fields.clone());
            details["severity"] = c.severity.clone().into();
            let details = details.to_string();
            let (mut inc, repeat) = if c.kind == AlertOn::SchemaChanged {
                // A one-off event: sent once, never repeated nor resolved.
                if store.incident_exists(&rule.name, &c.subject).await? {
                    continue;
                }
                (new_incident(rule, &c, details, &now_s, "event"), false)
            } else if let Some(existing) = open.remove(&key) {
                let due = match existing
                    .last_sent_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                {
                    None => true,
                    Some(t) => {
                        (now - t.with_timezone(&Utc)).num_seconds() >= rule.repeat_after_seconds
                    }
                };
                let mut inc = existing;
                inc.summary = c.summary.clone();
                inc.details = details;
                if !due {
                    store.save_incident(&inc).await?;
                    continue;
                }
                let repeat = inc.sends > 0;
                (inc, repeat)
            } else {
                (new_incident(rule, &c, details, &now_s, "firing"), false)
            };
            let alert = alert_of(&project.name, &inc, c.tables.clone(), &now_s, repeat);
            out.push(deliver(store, rule, &mut inc, alert, quiet, &now_s, notifier).await?);
        }
        // Incidents of this rule whose condition is gone.
        let cleared: Vec<(String, String, String)> = open
            .keys()
            .filter(|k| k.0 == rule.name && !holding.contains(*k))
            .cloned()
            .collect();
        for k in cleared {
            let Some(mut inc) = open.remove(&k) else {
                continue;
            };
            inc.status = "resolved".into();
            inc.resolved_at = Some(now_s.clone());
            if rule.send_resolved && inc.sends > 0 {
                inc.summary = format!("resolved: {}", inc.summary);
                let alert = alert_of(&project.name, &inc, vec![], &now_s, false);
                out.push(deliver(store, rule, &mut inc, alert, quiet, &now_s, notifier).await?);
            } else {
                store.save_incident(&inc).await?;
            }
        }
    }
    // Incidents of rules no longer configured are closed without a message.
    for (_, mut inc) in open {
        if !project.alerts.contains_key(&inc.rule) {
            inc.status = "resolved".into();
            inc.resolved_at = Some(now_s.clone());
            store.save_incident(&inc).await?;
        }
    }
    Ok(out)
}

fn new_incident(
    rule: &AlertRule,
    c: &Condition,
    details: String,
    now: &str,
    status: &str,
) -> Incident {
    Incident {
        id: uuid::Uuid::new_v4().simple().to_string(),
        rule: rule.name.clone(),
        kind: c.kind.as_str().to_string(),
        subject: c.subject.clone(),
        status: status.to_string(),
        summary: c.summary.clone(),
        details,
        opened_at: now.to_string(),
        last_sent_at: None,
        sends: 0,
        resolved_at: None,
        last_error: None,
    }
}

async fn deliver(
    store: &StateStore,
    rule: &AlertRule,
    inc: &mut Incident,
    alert: Alert,
    quiet: bool,
    now: &str,
    notifier: &dyn Notifier,
) -> Result<Delivery, strata_state::Error> {
    let mut d = Delivery {
        alert,
        sent: false,
        silenced: quiet,
        error: None,
    };
    if !quiet {
        match notifier.notify(rule, &d.alert).await {
            Ok(()) => {
                d.sent = true;
                inc.sends += 1;
                inc.last_sent_at = Some(now.to_string());
                inc.last_error = None;
            }
            Err(e) => {
                tracing::warn!("alert `{}` not delivered: {e}", rule.name);
                inc.last_error = Some(e.clone());
                d.error = Some(e);
            }
        }
    }
    store.save_incident(inc).await?;
    Ok(d)
}
