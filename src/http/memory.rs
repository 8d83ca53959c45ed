//! One budget for the request bytes the server holds at once: connection buffers, bodies as
//! read, bodies once decompressed, and their decoded parameters. Without it twenty clients each
//! sending a 32 MiB body held 900 MB; with it the server refuses the next body (503
//! `retry_later`) rather than grow past the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The default budget: room for a few of the largest bodies §1.3 allows, decoded, at once, while
/// the allocator's retained memory keeps the whole process within 512 MiB above idle.
pub const DEFAULT_BUDGET: usize = 192 * 1024 * 1024;

/// Bytes that may be held, shared by every connection.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    limit: usize,
    held: Arc<AtomicUsize>,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            held: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// An empty reservation against this budget, to grow as bytes arrive.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: Some(self.clone()),
            amount: 0,
        }
    }

    /// Bytes held now, across every reservation.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Part of the budget held by one buffer or body; given back when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    /// None for a request built outside a connection (tests, fuzzing): nothing is counted.
    budget: Option<MemoryBudget>,
    amount: usize,
}

/// The budget had no room for what a request needs.
#[derive(Debug, PartialEq, Eq)]
pub struct OverBudget;

impl Reservation {
    /// Holds `total` bytes in all: more are taken from the budget, or some are given back.
    pub fn resize(&mut self, total: usize) -> Result<(), OverBudget> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if total > self.amount {
            if !budget.try_take(total - self.amount) {
                return Err(OverBudget);
            }
        } else {
            budget.give_back(self.amount - total);
        }
        self.amount = total;
        Ok(())
    }

    /// Holds `more` bytes beyond what is held now.
    pub fn grow(&mut self, more: usize) -> Result<(), OverBudget> {
        self.resize(self.amount.saturating_add(more))
    }

    pub fn amount(&self) -> usize {
        self.amount
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.amount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_give_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut first = budget.reservation();
        let mut second = budget.reservation();
        assert_eq!(first.grow(60), Ok(()));
        assert_eq!(second.grow(50), Err(OverBudget));
        assert_eq!(second.grow(40), Ok(()));
        assert_eq!(budget.held(), 100);
        assert_eq!(first.resize(10), Ok(()));
        assert_eq!(budget.held(), 50);
        drop(first);
        drop(second);
        assert_eq!(budget.held(), 0);
        let mut unbudgeted = Reservation::default();
        assert_eq!(unbudgeted.grow(usize::MAX), Ok(()));
    }
}
