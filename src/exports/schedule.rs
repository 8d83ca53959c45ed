//! The queue of export tasks, served by account in turn: an account that queued forty exports
//! makes another account's one export wait for at most one of them per worker, not for all.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Default)]
pub struct Schedule {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    /// Each account's waiting tasks, oldest first.
    waiting: HashMap<i64, VecDeque<String>>,
    /// Accounts with waiting tasks, in the order they are served.
    turns: VecDeque<i64>,
    /// Accounts one of whose tasks is being written: one at a time per account.
    running: HashSet<i64>,
}

impl Schedule {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn push(&self, account_id: i64, uuid: String) {
        let mut state = self.lock();
        let queue = state.waiting.entry(account_id).or_default();
        queue.push_back(uuid);
        if queue.len() == 1 {
            state.turns.push_back(account_id);
        }
        self.ready.notify_one();
    }

    /// The next task of the first account in turn that has none running; waits for one.
    pub fn take(&self) -> (i64, String) {
        let mut state = self.lock();
        loop {
            let State {
                waiting,
                turns,
                running,
            } = &mut *state;
            if let Some(at) = turns.iter().position(|account| !running.contains(account)) {
                let account = turns.remove(at).expect("position found just above");
                let queue = waiting.get_mut(&account).expect("an account in turn waits");
                let uuid = queue.pop_front().expect("an account in turn has a task");
                if queue.is_empty() {
                    waiting.remove(&account);
                } else {
                    // Its next task waits behind every other account's.
                    turns.push_back(account);
                }
                running.insert(account);
                return (account, uuid);
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner());
        }
    }

    /// The account's task is written; its next one may be taken.
    pub fn done(&self, account_id: i64) {
        self.lock().running.remove(&account_id);
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_served_in_turn() {
        let schedule = Schedule::default();
        for n in 0..3 {
            schedule.push(1, format!("a{n}"));
        }
        schedule.push(2, "b0".into());
        let mut order = Vec::new();
        for _ in 0..4 {
            let (account, uuid) = schedule.take();
            schedule.done(account);
            order.push(uuid);
        }
        assert_eq!(order, ["a0", "b0", "a1", "a2"]);
    }

    #[test]
    fn an_account_runs_one_task_at_a_time() {
        let schedule = Schedule::default();
        schedule.push(1, "a0".into());
        schedule.push(1, "a1".into());
        schedule.push(2, "b0".into());
        let (first, _) = schedule.take();
        let (second, uuid) = schedule.take();
        assert_eq!((first, second, uuid.as_str()), (1, 2, "b0"));
        schedule.done(1);
        assert_eq!(schedule.take(), (1, "a1".to_string()));
    }
}
