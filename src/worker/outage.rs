//! How the workers of one process live through a database outage: each
//! waits longer between polls while the store fails (doubling from the
//! poll interval up to `worker.max_retry_interval_ms`), and the log gets
//! one error when the outage starts and one line when it ends, not one
//! per worker and poll.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An outage in progress, as the workers saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub started: Instant,
    /// Polls that failed since it started, by every worker.
    pub failed_polls: u64,
}

/// Shared by the workers of a process.
#[derive(Debug, Default)]
pub struct OutageLog {
    current: Mutex<Option<Outage>>,
}

impl OutageLog {
    /// Records a poll that failed; true for the first of an outage (the
    /// one to log).
    pub fn failed(&self) -> bool {
        let mut current = self.lock();
        match current.as_mut() {
            Some(outage) => {
                outage.failed_polls += 1;
                false
            }
            None => {
                *current = Some(Outage {
                    started: Instant::now(),
                    failed_polls: 1,
                });
                true
            }
        }
    }

    /// Records a poll that reached the store; the outage it ends, if any.
    pub fn reached(&self) -> Option<Outage> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The pause after `failures` polls in a row failed: `idle`, doubled for
/// each failure after the first, at most `most`.
pub fn backoff(idle: Duration, failures: u32, most: Duration) -> Duration {
    let doubled = idle.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)));
    doubled.min(most.max(idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_told_once_when_it_starts_and_once_when_it_ends() {
        let log = OutageLog::default();
        assert_eq!(log.reached(), None, "no outage, nothing to tell");
        assert!(log.failed(), "the first failure starts the outage");
        assert!(!log.failed());
        assert!(!log.failed());
        let ended = log.reached().unwrap();
        assert_eq!(ended.failed_polls, 3);
        assert_eq!(log.reached(), None);
        assert!(log.failed(), "a new outage");
    }

    #[test]
    fn polls_back_off_by_doubling_up_to_the_most() {
        let second = Duration::from_secs(1);
        let most = Duration::from_secs(30);
        let pauses: Vec<u64> = (1..=7)
            .map(|failures| backoff(second, failures, most).as_secs())
            .collect();
        assert_eq!(pauses, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(second, 1000, most), most);
    }
}
