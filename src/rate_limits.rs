//! The real service's documented rate limits, off by default (`--rate-limits real`,
//! `POST /_local/rate-limits`): 1200 calls per minute per API key for every method, and 20 per
//! minute for exportContacts (both forms together). Over a limit a call is answered
//! `api_call_limit_exceeded_for_api_key`, as the real service answers, and runs not at all.
//!
//! Windows slide: a call is refused while the key already made `calls` calls in the last
//! `window`. The numbers can be changed at run time, so that a test can see a refusal and the
//! recovery after it in a second rather than a minute.

use crate::error::{Error, ErrorCode};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The limits in force.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub enabled: bool,
    /// Calls per window per key, every method counted.
    pub calls: u32,
    /// exportContacts and async/exportContacts calls per window per key.
    pub export_calls: u32,
    pub window_seconds: f64,
}

impl Limits {
    /// The real service's limits.
    pub const REAL: Limits = Limits {
        enabled: true,
        calls: 1200,
        export_calls: 20,
        window_seconds: 60.0,
    };

    pub const OFF: Limits = Limits {
        enabled: false,
        ..Limits::REAL
    };

    /// Whether the numbers make sense; the reason when not.
    pub fn check(&self) -> Result<(), String> {
        if self.calls == 0 || self.calls > 1_000_000 || self.export_calls > 1_000_000 {
            return Err("calls is 1 to 1000000 and export_calls 0 to 1000000".into());
        }
        if !(self.window_seconds > 0.0 && self.window_seconds <= 86_400.0) {
            return Err("window_seconds is more than 0 and at most 86400".into());
        }
        Ok(())
    }
}

/// When each key's recent calls were made.
#[derive(Default)]
struct Recent {
    calls: VecDeque<Instant>,
    exports: VecDeque<Instant>,
}

pub struct RateLimits {
    /// Read by every call; the rest is only looked at when it is set.
    enabled: AtomicBool,
    limits: Mutex<Limits>,
    recent: Mutex<HashMap<String, Recent>>,
}

impl RateLimits {
    pub fn new(limits: Limits) -> RateLimits {
        RateLimits {
            enabled: AtomicBool::new(limits.enabled),
            limits: Mutex::new(limits),
            recent: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts new limits in force; counting starts again.
    pub fn set(&self, limits: Limits) -> Result<(), String> {
        limits.check()?;
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.enabled.store(limits.enabled, Ordering::Release);
        Ok(())
    }

    /// Counts a call of `method` by the account `login`, or refuses it when over a limit (a
    /// refused call is not counted, as the real service's windows count served calls).
    pub fn admit(&self, login: &str, method: &str) -> Result<(), Error> {
        if !self.enabled.load(Ordering::Acquire) {
            return Ok(());
        }
        let limits = self.limits();
        let window = Duration::from_secs_f64(limits.window_seconds);
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let recent = recent.entry(login.to_string()).or_default();
        forget_before(&mut recent.calls, now, window);
        forget_before(&mut recent.exports, now, window);
        let export = matches!(method, "exportContacts" | "async/exportContacts");
        let over = if recent.calls.len() >= limits.calls as usize {
            Some(format!(
                "{} calls per {} seconds",
                limits.calls, limits.window_seconds
            ))
        } else if export && recent.exports.len() >= limits.export_calls as usize {
            Some(format!(
                "{} exportContacts calls per {} seconds",
                limits.export_calls, limits.window_seconds
            ))
        } else {
            None
        };
        if let Some(limit) = over {
            return Err(Error::api(
                ErrorCode::ApiCallLimitExceeded,
                format!(
                    "{} (at most {limit})",
                    ErrorCode::ApiCallLimitExceeded.stock_message()
                ),
            ));
        }
        recent.calls.push_back(now);
        if export {
            recent.exports.push_back(now);
        }
        Ok(())
    }
}

fn forget_before(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|at| now.duration_since(*at) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_refuses_the_call_after_the_last_allowed_and_recovers() {
        let limits = RateLimits::new(Limits {
            calls: 3,
            export_calls: 1,
            window_seconds: 0.2,
            ..Limits::REAL
        });
        assert!(limits.admit("a", "exportContacts").is_ok());
        assert!(limits.admit("a", "async/exportContacts").is_err());
        assert!(limits.admit("a", "getLists").is_ok());
        assert!(limits.admit("a", "getLists").is_ok());
        let refused = limits.admit("a", "getLists").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("api_call_limit_exceeded_for_api_key")
        );
        assert!(limits.admit("b", "getLists").is_ok(), "per key");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limits.admit("a", "getLists").is_ok());
    }

    #[test]
    fn off_admits_everything() {
        let limits = RateLimits::new(Limits::OFF);
        for _ in 0..5000 {
            assert!(limits.admit("a", "exportContacts").is_ok());
        }
    }
}
