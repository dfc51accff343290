//! Digests: a summary of the domains mailed daily, weekly or monthly at a
//! local hour to the addresses of a schedule (for every domain or a
//! list): messages and pass rate against the period before, new sources,
//! the sources failing most (with their class), TLS-RPT failures, open
//! alerts and what the DNS checks found. A period without reports still
//! gets its digest: the silence is the news.
//!
//! `DigestSchedule` looks every `digests.interval_seconds` for schedules
//! whose newest send time has passed without its digest, and queues it
//! in the outbox. Only the newest missed send is caught up (a node down
//! for three weeks sends one weekly digest on start, not three); the
//! schedule's last period sent and the outbox's dedup key (schedule and
//! period) keep several nodes from queuing it twice.

pub mod content;
pub mod gather;
pub mod period;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::outbox::OutboxItem;
use crate::query::QueryError;
use crate::senders::SendersConfig;
use crate::store::digests as stored;
use crate::store::{NewOutboxItem, Store};
pub use content::Digest;
pub use period::{Frequency, Period, SendTime, Timing};

/// The `[digests]` section of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DigestsConfig {
    /// `serve` queues due digests (any node may; they never queue one twice).
    pub enabled: bool,
    /// How often due digests are looked for.
    pub interval_seconds: u64,
    /// New and failing sources listed per domain.
    pub top_sources: u32,
    /// Domains shown in one digest, busiest first (the totals count all).
    pub max_domains: u32,
}

impl Default for DigestsConfig {
    fn default() -> Self {
        DigestsConfig {
            enabled: true,
            interval_seconds: 60,
            top_sources: 5,
            max_domains: 50,
        }
    }
}

impl DigestsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_seconds == 0 || self.top_sources == 0 || self.max_domains == 0 {
            return Err(
                "digests.interval_seconds, digests.top_sources and digests.max_domains must \
                 be at least 1"
                    .to_string(),
            );
        }
        if self.top_sources > 100 || self.max_domains > 1000 {
            return Err(
                "digests.top_sources is at most 100 and digests.max_domains at most 1000"
                    .to_string(),
            );
        }
        Ok(())
    }
}

/// A digest schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: i64,
    pub name: String,
    pub recipients: Vec<String>,
    /// The domains it reports on; empty: every domain, new ones included.
    pub domains: Vec<String>,
    pub frequency: Frequency,
    /// An IANA time zone (`Europe/Berlin`, `UTC`).
    pub time_zone: String,
    /// The local hour it is sent at, 0 to 23.
    pub hour: i32,
    /// Weekly: the day it is sent (`monday` … `sunday`); otherwise null.
    pub weekday: Option<String>,
    pub enabled: bool,
    /// The first day of the newest period whose digest was queued.
    #[schema(value_type = Option<String>, format = Date)]
    pub last_period_start: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_sent_at: Option<DateTime<Utc>>,
    /// When the next digest is due (null when off).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_send_at: Option<DateTime<Utc>>,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Changes start the schedule over: sends before it are not caught up.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl Schedule {
    pub fn timing(&self) -> Option<Timing> {
        Some(Timing {
            frequency: self.frequency,
            time_zone: self.time_zone.parse().ok()?,
            hour: u32::try_from(self.hour).ok().filter(|hour| *hour < 24)?,
            weekday: self
                .weekday
                .as_deref()
                .and_then(period::parse_weekday)
                .unwrap_or(chrono::Weekday::Mon),
        })
    }

    /// The send whose digest is due at `now`: the newest send time, if it
    /// came after the schedule was made or changed and its period has not
    /// been sent.
    pub fn due(&self, now: DateTime<Utc>) -> Option<SendTime> {
        if !self.enabled {
            return None;
        }
        let send = self.timing()?.latest_send(now);
        let sent = self
            .last_period_start
            .is_some_and(|last| last >= send.period.first);
        (send.at > self.updated_at && !sent).then_some(send)
    }

    /// The schedule with `next_send_at` worked out at `now`.
    pub fn at(mut self, now: DateTime<Utc>) -> Schedule {
        self.next_send_at = match (self.enabled, self.timing()) {
            (true, Some(timing)) => Some(match self.due(now) {
                Some(send) => send.at,
                None => timing.next_send(now).at,
            }),
            _ => None,
        };
        self
    }

    /// The outbox dedup key of this schedule's digest for `period`.
    pub fn dedup_key(&self, period: &Period) -> String {
        format!(
            "digest:{}:{}:{}",
            self.id,
            self.frequency.key(),
            period.first
        )
    }
}

/// Queues digests, on a clock that tests set.
#[derive(Clone)]
pub struct DigestSchedule {
    store: Store,
    config: Arc<DigestsConfig>,
    senders: Arc<SendersConfig>,
    clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

impl DigestSchedule {
    pub fn new(store: Store, config: &DigestsConfig, senders: &SendersConfig) -> Self {
        DigestSchedule {
            store,
            config: Arc::new(config.clone()),
            senders: Arc::new(senders.clone()),
            clock: Arc::new(Utc::now),
        }
    }

    /// The same schedule reading the time from `clock`.
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The digest `schedule` would send for `period`, made at `now`.
    pub async fn digest(
        &self,
        schedule: &Schedule,
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<Digest, QueryError> {
        gather::digest(
            &self.store,
            &self.config,
            &self.senders,
            schedule,
            period,
            now,
        )
        .await
    }

    /// The outbox row of `digest` for `schedule` (`dedup_key`: none for
    /// a digest sent by hand).
    fn item(schedule: &Schedule, digest: &Digest, dedup_key: Option<String>) -> NewOutboxItem {
        OutboxItem::Mail(digest.mail(schedule.recipients.clone())).queued(dedup_key)
    }

    /// Queues every digest due at `now`; returns how many were queued.
    pub async fn send_due(&self, now: DateTime<Utc>) -> Result<u64, QueryError> {
        let mut queued = 0;
        for schedule in stored::schedules(self.store.db()).await? {
            let Some(send) = schedule.due(now) else {
                continue;
            };
            let digest = self.digest(&schedule, send.period, now).await?;
            let item = Self::item(&schedule, &digest, Some(schedule.dedup_key(&send.period)));
            if stored::mark_sent_and_queue(self.store.db(), schedule.id, &send.period, &item, now)
                .await?
            {
                tracing::info!(schedule = schedule.id, period = %send.period.describe(), "digests: queued");
                crate::metrics::count("dmarcd_digests_queued_total", &[], 1);
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Queues `schedule`'s digest for its newest period now, whatever was
    /// sent ("send now"); returns the outbox id.
    pub async fn send_now(&self, schedule: &Schedule) -> Result<Option<i64>, QueryError> {
        let now = (self.clock)();
        let Some(timing) = schedule.timing() else {
            return Ok(None);
        };
        let period = timing.latest_send(now).period;
        let digest = self.digest(schedule, period, now).await?;
        Ok(
            stored::queue_by_hand(self.store.db(), &Self::item(schedule, &digest, None), now)
                .await?,
        )
    }

    /// The HTML of `schedule`'s digest for its newest period ("preview").
    pub async fn preview(&self, schedule: &Schedule) -> Result<Option<Digest>, QueryError> {
        let now = (self.clock)();
        let Some(timing) = schedule.timing() else {
            return Ok(None);
        };
        let period = timing.latest_send(now).period;
        Ok(Some(self.digest(schedule, period, now).await?))
    }

    /// Queues due digests at once (a node that was down catches up on
    /// start), then every `interval_seconds` until `stopped`.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.config.interval_seconds);
        loop {
            if let Err(error) = self.send_due((self.clock)()).await {
                tracing::warn!(%error, "digests: cannot queue the due digests");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
        }
    }
}
