//! When a digest is sent and which days it reports on. PURE: a schedule's
//! timing and an instant in, the newest send time at or before it out.
//!
//! A digest is sent at `hour` o'clock in its time zone: every day
//! (daily), on one weekday (weekly) or on the 1st (monthly). It reports
//! on the days before that send day: the day before, the 7 days before,
//! the month before. Days are report days as the dashboard counts them
//! (reports' UTC days): a digest sent on Monday 2026-03-09 in Berlin
//! covers the report days 2026-03-02 to 2026-03-08.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// How often a digest is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
}

impl Frequency {
    pub const ALL: [Frequency; 3] = [Frequency::Daily, Frequency::Weekly, Frequency::Monthly];

    pub fn key(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }

    pub fn parse(text: &str) -> Option<Frequency> {
        Frequency::ALL.into_iter().find(|f| f.key() == text)
    }

    /// In words, for subjects and pages ("Weekly").
    pub fn label(self) -> &'static str {
        match self {
            Frequency::Daily => "Daily",
            Frequency::Weekly => "Weekly",
            Frequency::Monthly => "Monthly",
        }
    }
}

/// When a schedule sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub frequency: Frequency,
    pub time_zone: Tz,
    /// Local hour, 0 to 23.
    pub hour: u32,
    /// The weekday of a weekly digest (ignored otherwise).
    pub weekday: Weekday,
}

/// The days a digest reports on: `first` up to, not including, `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub first: NaiveDate,
    pub end: NaiveDate,
}

impl Period {
    /// The last day in the period.
    pub fn last(&self) -> NaiveDate {
        self.end.pred_opt().unwrap_or(self.end)
    }

    /// The period just before, of the same kind (the month before a
    /// month, the 7 days before 7 days).
    pub fn previous(&self, frequency: Frequency) -> Period {
        let first = match frequency {
            Frequency::Monthly => self.first - Months::new(1),
            _ => self.first - (self.end - self.first),
        };
        Period {
            first,
            end: self.first,
        }
    }

    /// The first day's start, UTC (report days are UTC days).
    pub fn start_utc(&self) -> DateTime<Utc> {
        midnight(self.first)
    }

    pub fn end_utc(&self) -> DateTime<Utc> {
        midnight(self.end)
    }

    /// "2026-03-02 to 2026-03-08", or one day.
    pub fn describe(&self) -> String {
        if self.first == self.last() {
            self.first.to_string()
        } else {
            format!("{} to {}", self.first, self.last())
        }
    }
}

/// Midnight UTC of `day`.
pub fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// A send: when, and the days it reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendTime {
    pub at: DateTime<Utc>,
    pub period: Period,
}

impl Timing {
    fn sends_on(&self, day: NaiveDate) -> bool {
        match self.frequency {
            Frequency::Daily => true,
            Frequency::Weekly => day.weekday() == self.weekday,
            Frequency::Monthly => day.day() == 1,
        }
    }

    /// The instant of `hour` o'clock on local `day`. A time the clocks
    /// skip (spring forward) is sent at the first instant after the gap;
    /// one they repeat (fall back), the first time round.
    fn instant(&self, day: NaiveDate) -> DateTime<Utc> {
        let mut local = day.and_hms_opt(self.hour, 0, 0).expect("hour is 0 to 23");
        // A gap is at most a few hours; step past it.
        for _ in 0..6 {
            if let Some(at) = self.time_zone.from_local_datetime(&local).earliest() {
                return at.with_timezone(&Utc);
            }
            local += chrono::Duration::hours(1);
        }
        midnight(day)
    }

    /// The period a digest sent on `day` reports on.
    fn period_sent_on(&self, day: NaiveDate) -> Period {
        let first = match self.frequency {
            Frequency::Daily => day - Days::new(1),
            Frequency::Weekly => day - Days::new(7),
            Frequency::Monthly => day - Months::new(1),
        };
        Period { first, end: day }
    }

    /// The newest send at or before `now`.
    pub fn latest_send(&self, now: DateTime<Utc>) -> SendTime {
        let mut day = now.with_timezone(&self.time_zone).date_naive();
        // A month back always holds a send day of every frequency.
        for _ in 0..64 {
            if self.sends_on(day) {
                let at = self.instant(day);
                if at <= now {
                    return SendTime {
                        at,
                        period: self.period_sent_on(day),
                    };
                }
            }
            day = day.pred_opt().expect("dates this old are never asked for");
        }
        unreachable!("every frequency sends at least monthly")
    }

    /// The first send after `now`.
    pub fn next_send(&self, now: DateTime<Utc>) -> SendTime {
        let mut day = now.with_timezone(&self.time_zone).date_naive();
        for _ in 0..64 {
            if self.sends_on(day) {
                let at = self.instant(day);
                if at > now {
                    return SendTime {
                        at,
                        period: self.period_sent_on(day),
                    };
                }
            }
            day = day.succ_opt().expect("dates this far are never asked for");
        }
        unreachable!("every frequency sends at least monthly")
    }
}

/// A weekday from its English name or three-letter abbreviation.
pub fn parse_weekday(text: &str) -> Option<Weekday> {
    text.parse().ok()
}

/// The lowercase English name of a weekday ("monday").
pub fn weekday_key(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin(frequency: Frequency, hour: u32) -> Timing {
        Timing {
            frequency,
            time_zone: chrono_tz::Europe::Berlin,
            hour,
            weekday: Weekday::Mon,
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_weekly_digest_goes_out_on_its_weekday_at_the_local_hour_for_the_7_days_before() {
        let timing = berlin(Frequency::Weekly, 8);
        // Monday 2026-03-09 08:00 in Berlin is 07:00 UTC (CET, +1).
        let send = timing.latest_send(utc("2026-03-09T07:00:00Z"));
        assert_eq!(send.at, utc("2026-03-09T07:00:00Z"));
        assert_eq!(send.period.first, day("2026-03-02"));
        assert_eq!(send.period.last(), day("2026-03-08"));
        // A second earlier, the newest send was the Monday before.
        let before = timing.latest_send(utc("2026-03-09T06:59:59Z"));
        assert_eq!(before.at, utc("2026-03-02T07:00:00Z"));
        assert_eq!(before.period.end, day("2026-03-02"));
        assert_eq!(timing.next_send(utc("2026-03-09T06:59:59Z")).at, send.at);
        // In summer time (CEST, +2) the same local hour is 06:00 UTC.
        assert_eq!(
            timing.latest_send(utc("2026-07-10T12:00:00Z")).at,
            utc("2026-07-06T06:00:00Z")
        );
    }

    #[test]
    fn a_monthly_digest_goes_out_on_the_first_for_the_month_before() {
        let timing = berlin(Frequency::Monthly, 6);
        let send = timing.latest_send(utc("2026-03-17T12:00:00Z"));
        assert_eq!(send.at, utc("2026-03-01T05:00:00Z"));
        assert_eq!(send.period.first, day("2026-02-01"));
        assert_eq!(send.period.end, day("2026-03-01"));
        assert_eq!(
            send.period.previous(Frequency::Monthly),
            Period {
                first: day("2026-01-01"),
                end: day("2026-02-01")
            }
        );
    }

    #[test]
    fn a_daily_digest_reports_on_the_day_before_and_compares_with_the_day_before_that() {
        let timing = berlin(Frequency::Daily, 0);
        // Midnight in Berlin is 23:00 UTC the day before.
        let send = timing.latest_send(utc("2026-03-09T23:30:00Z"));
        assert_eq!(send.at, utc("2026-03-09T23:00:00Z"));
        assert_eq!(send.period.first, day("2026-03-09"));
        assert_eq!(send.period.describe(), "2026-03-09");
        assert_eq!(
            send.period.previous(Frequency::Daily).first,
            day("2026-03-08")
        );
    }

    #[test]
    fn an_hour_the_clocks_skip_sends_right_after_the_gap() {
        // 2026-03-29 02:00 does not exist in Berlin: 03:00 CEST = 01:00 UTC.
        let timing = berlin(Frequency::Daily, 2);
        assert_eq!(
            timing.latest_send(utc("2026-03-29T12:00:00Z")).at,
            utc("2026-03-29T01:00:00Z")
        );
    }
}
