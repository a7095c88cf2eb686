//! `[schedules.NAME]`: cron schedules with a time zone, and file-arrival sensors.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use toml::Spanned;

use crate::config::RawSchedule;
use crate::error::{Errors, LocatedError, did_you_mean};
use crate::source::Source;

/// What starts a schedule's runs.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// A cron expression read in a time zone. A tick's run covers the data
    /// interval from the previous tick to this one.
    Cron {
        /// The expression as written.
        expr: String,
        /// Parsed.
        cron: Box<Cron>,
        /// The zone it is read in.
        timezone: chrono_tz::Tz,
        /// The first tick considered for catch-up.
        start: Option<DateTime<Utc>>,
    },
    /// New files of a source: polled every `poll_seconds`.
    NewFiles {
        /// The source's name.
        source: String,
        /// Seconds between polls.
        poll_seconds: i64,
    },
}

/// One resolved `[schedules.NAME]`.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// Clock or sensor.
    pub trigger: Trigger,
    /// The selection expression of its runs.
    pub select: String,
    /// After downtime, run every missed tick (oldest first) instead of only the latest.
    pub catchup: bool,
    /// Runs of this schedule queued or running at once.
    pub max_active_runs: u32,
}

impl Schedule {
    /// The first tick strictly after `t`, or `None` for a sensor or a cron
    /// expression that never fires again.
    pub fn next_tick(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Trigger::Cron { cron, timezone, .. } = &self.trigger else {
            return None;
        };
        cron.find_next_occurrence(&t.with_timezone(timezone), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The last tick at or before `t`.
    pub fn prev_tick(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Trigger::Cron { cron, timezone, .. } = &self.trigger else {
            return None;
        };
        cron.find_previous_occurrence(&t.with_timezone(timezone), true)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// Ticks in `(after, until]`, oldest first, at most `limit` of them (the newest kept).
    pub fn ticks_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = std::collections::VecDeque::new();
        let mut t = after;
        while let Some(n) = self.next_tick(t) {
            if n > until {
                break;
            }
            out.push_back(n);
            if out.len() > limit {
                out.pop_front();
            }
            t = n;
        }
        out.into()
    }
}

/// Parses a cron expression: 5 fields, or 6 with seconds first, or a nickname (`@daily`).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// Resolves one `[schedules.NAME]` table.
pub(crate) fn resolve(
    name: &str,
    spanned: &Spanned<RawSchedule>,
    sources: &BTreeMap<String, Source>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> LocatedError,
) -> Result<Schedule, Errors> {
    let mut errors = Errors::default();
    let raw = spanned.get_ref();
    let whole = spanned.span();
    let timezone = match &raw.timezone {
        None => chrono_tz::UTC,
        Some(tz) => match tz.get_ref().parse::<chrono_tz::Tz>() {
            Ok(z) => z,
            Err(_) => {
                let help = match did_you_mean(
                    tz.get_ref(),
                    chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()),
                ) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "use an IANA zone name such as Europe/Berlin or UTC".into(),
                };
                errors.push(
                    at(tz.span(), format!("unknown time zone `{}`", tz.get_ref())).with_help(help),
                );
                chrono_tz::UTC
            }
        },
    };
    let start = match &raw.start {
        None => None,
        Some(s) => match crate::grain::parse_time(s.get_ref()) {
            Some(t) => Some(t),
            None => {
                errors.push(
                    at(s.span(), format!("bad start `{}`", s.get_ref()))
                        .with_help("write a date or time: 2024-01-01 or 2024-01-01T02:00:00Z"),
                );
                None
            }
        },
    };
    let trigger = match (&raw.cron, &raw.on_new_files) {
        (Some(c), None) => match parse_cron(c.get_ref()) {
            Ok(cron) => Some(Trigger::Cron {
                expr: c.get_ref().clone(),
                cron: Box::new(cron),
                timezone,
                start,
            }),
            Err(e) => {
                errors.push(
                    at(
                        c.span(),
                        format!("bad cron expression `{}`: {e}", c.get_ref()),
                    )
                    .with_help(
                        "write minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\"",
                    ),
                );
                None
            }
        },
        (None, Some(src)) => {
            if !sources.contains_key(src.get_ref()) {
                let help = match did_you_mean(src.get_ref(), sources.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "name a source declared as [sources.NAME]".into(),
                };
                errors.push(
                    at(src.span(), format!("unknown source `{}`", src.get_ref())).with_help(help),
                );
            }
            let poll_seconds = match &raw.poll {
                None => 60,
                Some(p) => match crate::check::parse_duration(p.get_ref()) {
                    Some(s) if s > 0 => s,
                    _ => {
                        errors.push(
                            at(p.span(), format!("bad poll interval `{}`", p.get_ref()))
                                .with_help("write a number and a unit: 30s, 5m"),
                        );
                        60
                    }
                },
            };
            Some(Trigger::NewFiles {
                source: src.get_ref().clone(),
                poll_seconds,
            })
        }
        (Some(_), Some(src)) => {
            errors.push(
                at(
                    src.span(),
                    format!("schedule `{name}` has both `cron` and `on_new_files`"),
                )
                .with_help("make two schedules: one on the clock, one on new files"),
            );
            None
        }
        (None, None) => {
            errors.push(
                at(
                    whole,
                    format!("schedule `{name}` has neither `cron` nor `on_new_files`"),
                )
                .with_help("add cron = \"0 2 * * *\" or on_new_files = \"SOURCE\""),
            );
            None
        }
    };
    if let Some(p) = &raw.poll
        && raw.on_new_files.is_none()
    {
        errors.push(
            at(p.span(), "`poll` only applies to sensors".into())
                .with_help("add on_new_files = \"SOURCE\" or remove `poll`"),
        );
    }
    if raw.max_active_runs == Some(0) {
        errors.push(at(
            spanned.span(),
            format!("schedule `{name}`: max_active_runs must be at least 1"),
        ));
    }
    let select = match (&raw.select, &trigger) {
        (Some(s), _) => s.get_ref().clone(),
        (None, Some(Trigger::NewFiles { source, .. })) => format!("bronze.{source}+"),
        (None, _) => String::new(),
    };
    let trigger = errors.is_empty().then_some(trigger).flatten();
    match trigger {
        Some(trigger) => Ok(Schedule {
            name: name.to_string(),
            trigger,
            select,
            catchup: raw.catchup.unwrap_or(true),
            max_active_runs: raw.max_active_runs.unwrap_or(1),
        }),
        None => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expr: &str, tz: &str) -> Schedule {
        Schedule {
            name: "s".into(),
            trigger: Trigger::Cron {
                expr: expr.into(),
                cron: Box::new(parse_cron(expr).expect("cron")),
                timezone: tz.parse().expect("tz"),
                start: None,
            },
            select: String::new(),
            catchup: true,
            max_active_runs: 1,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        crate::grain::parse_time(s).expect("time")
    }

    #[test]
    fn ticks_follow_the_time_zone() {
        let s = cron("0 2 * * *", "Europe/Berlin");
        // 02:00 in Berlin is 01:00 UTC in winter, 00:00 UTC in summer.
        assert_eq!(
            s.next_tick(t("2024-01-10T00:00:00Z")),
            Some(t("2024-01-10T01:00:00Z"))
        );
        assert_eq!(
            s.next_tick(t("2024-07-10T00:30:00Z")),
            Some(t("2024-07-11T00:00:00Z"))
        );
        assert_eq!(
            s.prev_tick(t("2024-01-10T01:00:00Z")),
            Some(t("2024-01-10T01:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_days_fire_once() {
        let s = cron("30 2 * * *", "Europe/Berlin");
        // 2024-03-31: 02:30 does not exist in Berlin (clocks jump 02:00 → 03:00).
        let spring = s.ticks_between(t("2024-03-30T12:00:00Z"), t("2024-04-01T12:00:00Z"), 10);
        assert_eq!(spring.len(), 2, "{spring:?}");
        // It fires once, at the first valid time after the gap (03:00 CEST).
        assert_eq!(spring[0], t("2024-03-31T01:00:00Z"), "{spring:?}");
        // 2024-10-27: 02:30 happens twice; the schedule fires once that day.
        let autumn = s.ticks_between(t("2024-10-26T12:00:00Z"), t("2024-10-28T12:00:00Z"), 10);
        assert_eq!(autumn.len(), 2, "{autumn:?}");
        assert_eq!(autumn[0], t("2024-10-27T00:30:00Z"), "{autumn:?}");
        assert_eq!(autumn[1], t("2024-10-28T01:30:00Z"), "{autumn:?}");
    }

    #[test]
    fn ticks_between_keeps_the_newest() {
        let s = cron("0 * * * *", "UTC");
        let all = s.ticks_between(t("2024-01-01"), t("2024-01-02"), 1000);
        assert_eq!(all.len(), 24);
        let last = s.ticks_between(t("2024-01-01"), t("2024-01-02"), 2);
        assert_eq!(last, vec![t("2024-01-01T23:00"), t("2024-01-02")]);
    }
}
