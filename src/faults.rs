//! Faults on purpose (`/_local/faults`): rules that make the next matching API calls fail, or
//! answer late, so that a client's retry and error paths can be tested, which the real service
//! cannot be asked to exercise.
//!
//! A rule matches a method (as in the path: `importContacts`, `async/exportContacts`, or `*`)
//! and optionally an account login. The first rule with firings left decides the call. An
//! injected failure is answered before the call runs, so it writes nothing.

use crate::error::ErrorCode;
use serde::Serialize;
use serde_json::Value;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The longest delay a rule may ask for: beyond it the client's own timeout is what is tested.
const MAX_DELAY_MS: u64 = 120_000;
/// Rules kept at once.
const MAX_RULES: usize = 1000;
/// HTTP statuses a rule may answer with, as a proxy or a failing server would.
const HTTP_STATUSES: [u16; 4] = [500, 502, 503, 504];

/// What a rule does to a call it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Run the call normally (after the delay).
    None,
    /// Answer this API error, in the envelope, without running the call.
    Api(ErrorCode),
    /// Answer this HTTP status without running the call.
    Http(u16),
    /// Close the connection without any answer.
    Drop,
}

/// What the server does with one matched call.
#[derive(Clone, Debug)]
pub struct Injected {
    pub rule_id: u64,
    pub delay: Duration,
    pub failure: Failure,
}

/// One rule, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    pub id: u64,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Firings left; None: every matching call.
    pub times: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub delay_ms: u64,
    pub drop_connection: bool,
    /// How many calls the rule has decided.
    pub fired: u64,
}

impl Rule {
    fn failure(&self) -> Failure {
        if self.drop_connection {
            Failure::Drop
        } else if let Some(status) = self.http_status {
            Failure::Http(status)
        } else if let Some(code) = self.error.and_then(ErrorCode::from_wire) {
            Failure::Api(code)
        } else {
            Failure::None
        }
    }

    fn matches(&self, method: &str, account: Option<&str>) -> bool {
        let method_matches = self.method == "*" || self.method == method;
        let account_matches = match &self.account {
            None => true,
            Some(login) => account == Some(login.as_str()),
        };
        method_matches && account_matches && self.times != Some(0)
    }
}

/// The rules in force.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    next_id: Mutex<u64>,
    /// Whether any rule exists: a call looks at this alone when there is none.
    any: AtomicBool,
}

impl Faults {
    /// Adds a rule from its JSON description; the reason when it is not a valid one.
    pub fn add(&self, body: &Value) -> Result<Rule, String> {
        let mut rule = parse_rule(body)?;
        let mut rules = self.lock();
        if rules.len() >= MAX_RULES {
            return Err(format!("at most {MAX_RULES} rules; delete some first"));
        }
        let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        rule.id = *next;
        rules.push(rule.clone());
        self.any.store(true, Ordering::Release);
        Ok(rule)
    }

    pub fn list(&self) -> Vec<Rule> {
        self.lock().clone()
    }

    /// Removes rule `id` (every rule when None); answers how many went.
    pub fn remove(&self, id: Option<u64>) -> usize {
        let mut rules = self.lock();
        let before = rules.len();
        rules.retain(|rule| id.is_some_and(|id| rule.id != id));
        self.any.store(!rules.is_empty(), Ordering::Release);
        before - rules.len()
    }

    /// What to do with a call of `method` by `account`, counting the firing.
    pub fn take(&self, method: &str, account: Option<&str>) -> Option<Injected> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut rules = self.lock();
        let rule = rules
            .iter_mut()
            .find(|rule| rule.matches(method, account))?;
        rule.fired += 1;
        if let Some(times) = &mut rule.times {
            *times -= 1;
        }
        Some(Injected {
            rule_id: rule.id,
            delay: Duration::from_millis(rule.delay_ms),
            failure: rule.failure(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Reads `{method, account?, times?, error?, http_status?, delay_ms?, drop_connection?}`.
fn parse_rule(body: &Value) -> Result<Rule, String> {
    let object = body
        .as_object()
        .ok_or("the body must be a JSON object describing the rule")?;
    const KNOWN: [&str; 7] = [
        "method",
        "account",
        "times",
        "error",
        "http_status",
        "delay_ms",
        "drop_connection",
    ];
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "unknown property \"{unknown}\"; a rule has {}",
            KNOWN.join(", ")
        ));
    }
    let text = |name: &str| -> Result<Option<String>, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(format!("{name} must be a non-empty string")),
        }
    };
    let number = |name: &str| -> Result<Option<u64>, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{name} must be a whole number ≥ 0")),
        }
    };
    let method = text("method")?.ok_or("method is missing (a method name, or \"*\")")?;
    let valid_method = method == "*"
        || (method.len() <= 64
            && method
                .strip_prefix("async/")
                .unwrap_or(&method)
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if !valid_method {
        return Err(format!("method \"{method}\" is not a method name or \"*\""));
    }
    let times = number("times")?;
    if times == Some(0) {
        return Err("times must be at least 1 (leave it out for every call)".into());
    }
    let error = match text("error")? {
        None => None,
        Some(code) => Some(
            ErrorCode::from_wire(&code)
                .ok_or_else(|| {
                    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.wire()).collect();
                    format!("error \"{code}\" is not one of {}", all.join(", "))
                })?
                .wire(),
        ),
    };
    let http_status = match number("http_status")? {
        None => None,
        Some(status) => Some(
            HTTP_STATUSES
                .into_iter()
                .find(|s| u64::from(*s) == status)
                .ok_or(format!(
                    "http_status must be one of 500, 502, 503, 504, not {status}"
                ))?,
        ),
    };
    let delay_ms = number("delay_ms")?.unwrap_or(0);
    if delay_ms > MAX_DELAY_MS {
        return Err(format!("delay_ms is at most {MAX_DELAY_MS}"));
    }
    let drop_connection = match object.get("drop_connection") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("drop_connection must be true or false".into()),
    };
    let outcomes = usize::from(error.is_some())
        + usize::from(http_status.is_some())
        + usize::from(drop_connection);
    if outcomes > 1 {
        return Err("give one of error, http_status and drop_connection, not several".into());
    }
    if outcomes == 0 && delay_ms == 0 {
        return Err("a rule needs error, http_status, drop_connection or delay_ms".into());
    }
    Ok(Rule {
        id: 0,
        method,
        account: text("account")?,
        times,
        error,
        http_status,
        delay_ms,
        drop_connection,
        fired: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rule_fires_its_times_then_stays_listed_without_firing() {
        let faults = Faults::default();
        let rule = faults
            .add(&json!({"method": "importContacts", "times": 2, "error": "invalid_arg"}))
            .unwrap();
        assert_eq!(faults.take("getLists", Some("a")).map(|i| i.rule_id), None);
        for _ in 0..2 {
            let injected = faults.take("importContacts", Some("a")).unwrap();
            assert_eq!(injected.failure, Failure::Api(ErrorCode::InvalidArg));
        }
        assert!(faults.take("importContacts", Some("a")).is_none());
        assert_eq!(faults.list()[0].fired, 2);
        assert_eq!(faults.remove(Some(rule.id)), 1);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn rules_match_by_account_and_star() {
        let faults = Faults::default();
        faults
            .add(&json!({"method": "*", "account": "b", "http_status": 503}))
            .unwrap();
        assert!(faults.take("getLists", Some("a")).is_none());
        assert!(faults.take("getLists", None).is_none());
        let injected = faults.take("async/exportContacts", Some("b")).unwrap();
        assert_eq!(injected.failure, Failure::Http(503));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let faults = Faults::default();
        for bad in [
            json!([]),
            json!({}),
            json!({"method": "getLists"}),
            json!({"method": "getLists", "error": "nope"}),
            json!({"method": "getLists", "http_status": 404}),
            json!({"method": "getLists", "times": 0, "delay_ms": 5}),
            json!({"method": "getLists", "delay_ms": -1}),
            json!({"method": "getLists", "error": "invalid_arg", "drop_connection": true}),
            json!({"method": "../x", "delay_ms": 1}),
            json!({"method": "getLists", "delay_ms": 1, "colour": "red"}),
            json!({"method": "getLists", "delay_ms": 500_000}),
        ] {
            assert!(faults.add(&bad).is_err(), "{bad}");
        }
        assert!(faults.list().is_empty());
    }
}
