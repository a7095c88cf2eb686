//! Time grains of partitioned models: the size of one data interval, and the
//! arithmetic that splits a run's `[start, end)` into whole intervals.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

/// The size of one interval of a partitioned model (all in UTC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Grain {
    /// One hour.
    Hour,
    /// One day.
    Day,
    /// One calendar month.
    Month,
}

impl Grain {
    /// The name used in headers and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Hour => "hour",
            Grain::Day => "day",
            Grain::Month => "month",
        }
    }

    /// Parses `hour`, `day` or `month`.
    pub fn parse(s: &str) -> Option<Grain> {
        match s {
            "hour" => Some(Grain::Hour),
            "day" => Some(Grain::Day),
            "month" => Some(Grain::Month),
            _ => None,
        }
    }

    /// The start of the interval holding `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let midnight =
            |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
        match self {
            Grain::Hour => {
                t - Duration::minutes(i64::from(t.minute()))
                    - Duration::seconds(i64::from(t.second()))
                    - Duration::nanoseconds(i64::from(t.nanosecond()))
            }
            Grain::Day => midnight(t.date_naive()),
            Grain::Month => midnight(t.date_naive().with_day(1).unwrap_or(t.date_naive())),
        }
    }

    /// The start of the interval after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Grain::Hour => start + Duration::hours(1),
            Grain::Day => start + Duration::days(1),
            Grain::Month => start
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(start + Duration::days(31)),
        }
    }

    /// The start of the interval before the one starting at `start`.
    pub fn prev(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Grain::Hour => start - Duration::hours(1),
            Grain::Day => start - Duration::days(1),
            Grain::Month => start
                .checked_sub_months(chrono::Months::new(1))
                .unwrap_or(start - Duration::days(31)),
        }
    }

    /// The whole intervals that end within `(start, end]`, oldest first.
    ///
    /// For aligned bounds these are exactly the intervals inside
    /// `[start, end)`; a scheduled run covering `[yesterday 02:00, today
    /// 02:00)` gets yesterday's day.
    pub fn intervals(self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Interval> {
        let mut out = vec![];
        if end <= start {
            return out;
        }
        // The first interval ending after `start`.
        let mut s = self.floor(start);
        if self.next(s) <= start {
            s = self.next(s);
        }
        loop {
            let e = self.next(s);
            if e > end {
                break;
            }
            out.push(Interval { start: s, end: e });
            s = e;
        }
        out
    }

    /// The intervals a run over `[start, end)` processes, with `lookback`
    /// earlier intervals prepended (to pick up late-arriving data).
    pub fn run_intervals(
        self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        lookback: u32,
    ) -> Vec<Interval> {
        let mut out = self.intervals(start, end);
        let Some(first) = out.first().copied() else {
            return out;
        };
        let mut before = vec![];
        let mut s = first.start;
        for _ in 0..lookback {
            let p = self.prev(s);
            before.push(Interval { start: p, end: s });
            s = p;
        }
        before.reverse();
        before.append(&mut out);
        before
    }
}

/// One data interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

/// Parses a date or timestamp given on the command line or in config:
/// `2024-01-01`, `2024-01-01T06:00`, `2024-01-01T06:00:00Z`, `2024-01-01 06:00:00+02:00`.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%:z") {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).expect("time")
    }

    #[test]
    fn floors_and_steps() {
        assert_eq!(
            Grain::Hour.floor(t("2024-03-05T10:42:13Z")),
            t("2024-03-05T10:00")
        );
        assert_eq!(Grain::Day.floor(t("2024-03-05T10:42:13Z")), t("2024-03-05"));
        assert_eq!(
            Grain::Month.floor(t("2024-03-05T10:42:13Z")),
            t("2024-03-01")
        );
        assert_eq!(Grain::Month.next(t("2024-01-01")), t("2024-02-01"));
        assert_eq!(Grain::Month.prev(t("2024-03-01")), t("2024-02-01"));
    }

    #[test]
    fn intervals_are_those_ending_in_the_range() {
        let days = Grain::Day.intervals(t("2024-01-01"), t("2024-01-31"));
        assert_eq!(days.len(), 30);
        assert_eq!(days[0].start, t("2024-01-01"));
        assert_eq!(days[29].end, t("2024-01-31"));
        // A nightly schedule's interval holds yesterday.
        let y = Grain::Day.intervals(t("2024-01-01T02:00"), t("2024-01-02T02:00"));
        assert_eq!(
            y,
            vec![Interval {
                start: t("2024-01-01"),
                end: t("2024-01-02")
            }]
        );
        assert!(
            Grain::Day
                .intervals(t("2024-01-01"), t("2024-01-01T12:00"))
                .is_empty()
        );
        assert_eq!(
            Grain::Hour
                .intervals(t("2024-01-01"), t("2024-01-02"))
                .len(),
            24
        );
    }

    #[test]
    fn lookback_prepends_earlier_intervals() {
        let r = Grain::Day.run_intervals(t("2024-01-10"), t("2024-01-11"), 2);
        let starts: Vec<_> = r.iter().map(|i| i.start).collect();
        assert_eq!(
            starts,
            vec![t("2024-01-08"), t("2024-01-09"), t("2024-01-10")]
        );
    }

    #[test]
    fn parses_times() {
        assert_eq!(t("2024-01-01T02:00:00+02:00"), t("2024-01-01T00:00:00Z"));
        assert_eq!(t("2024-01-01 06:30"), t("2024-01-01T06:30:00Z"));
        assert!(parse_time("yesterday").is_none());
    }
}
