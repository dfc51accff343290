//! One memory budget for the message data all SMTP sessions hold at once.
//! Without it, 20 connections each trickling 60 MiB of unfinished DATA
//! took the process past 1.2 GB, and the defaults (512 connections of up
//! to 64 MiB) allowed 32 GiB. A session reserves what its buffer holds
//! before it grows; when the budget is spent, new data is refused with a
//! temporary `452 4.3.1` (RFC 3463: mail system full), and the sender
//! tries again later.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The bytes of message data held by every session, and the most allowed.
#[derive(Debug)]
pub struct DataBudget {
    limit: usize,
    used: AtomicUsize,
}

impl DataBudget {
    pub fn new(limit: usize) -> Arc<DataBudget> {
        Arc::new(DataBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes not reserved by any session.
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.used.load(Ordering::Acquire))
    }

    /// Bytes reserved by all sessions.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One session's share of the budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<DataBudget>,
    bytes: usize,
}

impl Reservation {
    pub fn new(budget: Arc<DataBudget>) -> Reservation {
        Reservation { budget, bytes: 0 }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `total` bytes in all (more than now); false, holding what it
    /// held, when the budget cannot spare the difference.
    pub fn grow_to(&mut self, total: usize) -> bool {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return true;
        }
        if !self.budget.try_take(more) {
            return false;
        }
        self.bytes = total;
        true
    }

    /// Gives everything back.
    pub fn release(&mut self) {
        self.budget.give_back(self.bytes);
        self.bytes = 0;
    }

    pub fn budget(&self) -> &DataBudget {
        &self.budget
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_one_limit_and_give_back_when_dropped() {
        let budget = DataBudget::new(100);
        let mut first = Reservation::new(Arc::clone(&budget));
        let mut second = Reservation::new(Arc::clone(&budget));
        assert!(first.grow_to(60));
        assert!(!second.grow_to(50), "60 + 50 is past 100");
        assert!(second.grow_to(40));
        assert_eq!(budget.available(), 0);
        drop(first);
        assert_eq!(budget.available(), 60);
        second.release();
        assert_eq!(budget.used(), 0);
    }
}
