//! The request journal: the last N API calls, newest first, for a test to assert on what its
//! application sent (as WireMock's request journal). Bounded in entries and, per entry, in
//! bytes: `data` is kept whole up to 64 KiB and then cut with a marker, and the key is masked.

use crate::params::{Key, Param, Params};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// The default number of calls kept.
pub const DEFAULT_CAPACITY: usize = 1000;
/// Bytes of values kept per entry for `data`, and for every other parameter together.
const DATA_BYTES: usize = 64 * 1024;
const OTHER_BYTES: usize = 64 * 1024;
/// What stands where the rest of a cut value or array was.
const CUT_MARKER: &str = "…cut at 64 KiB";

/// One recorded call.
#[derive(Clone, Debug, Serialize)]
pub struct JournalEntry {
    pub id: u64,
    /// When the call arrived, `YYYY-MM-DD hh:mm:ss.mmm` UTC.
    pub time: String,
    /// The login of the account whose key the call carried, once the key was valid.
    pub account: Option<String>,
    /// The method as in the path (`importContacts`, `async/exportContacts`).
    pub method: String,
    /// The decoded parameters, `api_key` masked to its last four characters.
    pub params: Value,
    pub status: u16,
    /// The error code, or a summary of the result (an import's counters).
    pub outcome: Value,
    pub duration_ms: f64,
}

/// Which entries to list.
#[derive(Debug, Default)]
pub struct JournalFilter {
    pub method: Option<String>,
    pub account: Option<String>,
    /// Only entries after this id.
    pub since_id: Option<u64>,
    pub limit: Option<usize>,
}

pub struct Journal {
    capacity: usize,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    next_id: u64,
    entries: VecDeque<Arc<JournalEntry>>,
}

impl Journal {
    /// A journal keeping the last `capacity` calls (0 keeps none).
    pub fn new(capacity: usize) -> Journal {
        Journal {
            capacity,
            ring: Mutex::new(Ring {
                next_id: 1,
                entries: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Records a call (its `id` is given here); the oldest goes when the journal is full.
    pub fn record(&self, mut entry: JournalEntry) {
        if self.capacity == 0 {
            return;
        }
        let mut ring = self.lock();
        entry.id = ring.next_id;
        ring.next_id += 1;
        if ring.entries.len() == self.capacity {
            ring.entries.pop_front();
        }
        ring.entries.push_back(Arc::new(entry));
    }

    /// The entries that pass `filter`, newest first.
    pub fn list(&self, filter: &JournalFilter) -> Vec<Arc<JournalEntry>> {
        let ring = self.lock();
        ring.entries
            .iter()
            .rev()
            .filter(|e| filter.method.as_ref().is_none_or(|m| &e.method == m))
            .filter(|e| filter.account.is_none() || e.account == filter.account)
            .filter(|e| filter.since_id.is_none_or(|since| e.id > since))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Forgets every entry; answers how many there were. Ids go on from where they were.
    pub fn clear(&self) -> usize {
        let mut ring = self.lock();
        let count = ring.entries.len();
        ring.entries.clear();
        count
    }
}

/// A key as the journal and the log show it: its last four characters.
pub fn masked_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let shown: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("…{shown}")
}

/// The parameters as JSON: arrays as objects by key, `api_key` masked, `data` kept up to 64 KiB
/// of values and the rest of the parameters up to another 64 KiB, each cut with a marker.
pub fn render_params(params: &Params) -> Value {
    let mut other_budget = OTHER_BYTES;
    let mut rendered = Map::new();
    for (name, param) in params.iter() {
        let value = match (name, param) {
            ("api_key", Param::Value(key)) => Value::String(masked_key(key)),
            ("data", _) => render(param, &mut { DATA_BYTES }),
            _ => render(param, &mut other_budget),
        };
        rendered.insert(name.to_string(), value);
    }
    Value::Object(rendered)
}

/// One parameter within `budget` bytes of values; what does not fit becomes the marker.
fn render(param: &Param, budget: &mut usize) -> Value {
    match param {
        Param::Value(text) if text.len() <= *budget => {
            *budget -= text.len();
            Value::String(text.clone())
        }
        Param::Value(text) => {
            let mut end = (*budget).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            *budget = 0;
            Value::String(format!("{}{CUT_MARKER}", &text[..end]))
        }
        Param::Array(entries) => {
            let mut object = Map::new();
            for (key, entry) in entries {
                if *budget == 0 {
                    object.insert("…".into(), Value::String(CUT_MARKER.into()));
                    break;
                }
                let key = match key {
                    Key::Index(index) => index.to_string(),
                    Key::Name(name) => name.clone(),
                };
                object.insert(key, render(entry, budget));
            }
            Value::Object(object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: &str, account: &str) -> JournalEntry {
        JournalEntry {
            id: 0,
            time: String::new(),
            account: Some(account.into()),
            method: method.into(),
            params: Value::Null,
            status: 200,
            outcome: Value::Null,
            duration_ms: 0.0,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_filters() {
        let journal = Journal::new(3);
        for (method, account) in [("a", "x"), ("b", "y"), ("a", "y"), ("c", "x")] {
            journal.record(entry(method, account));
        }
        let ids = |filter: &JournalFilter| -> Vec<u64> {
            journal.list(filter).iter().map(|e| e.id).collect()
        };
        assert_eq!(ids(&JournalFilter::default()), [4, 3, 2]);
        let by_method = JournalFilter {
            method: Some("a".into()),
            ..JournalFilter::default()
        };
        assert_eq!(ids(&by_method), [3]);
        let recent = JournalFilter {
            since_id: Some(2),
            limit: Some(1),
            ..JournalFilter::default()
        };
        assert_eq!(ids(&recent), [4]);
        assert_eq!(journal.clear(), 3);
        journal.record(entry("d", "x"));
        assert_eq!(ids(&JournalFilter::default()), [5]);
    }

    #[test]
    fn keys_are_masked_and_data_is_cut() {
        let mut form = String::from("api_key=secret-key-1234&title=T");
        for row in 0..2000 {
            form.push_str(&format!("&data[{row}][0]={}", "x".repeat(40)));
        }
        let params = Params::from_urlencoded(form.as_bytes()).unwrap();
        let rendered = render_params(&params);
        assert_eq!(rendered["api_key"], "…1234");
        assert_eq!(rendered["title"], "T");
        let data = rendered["data"].as_object().unwrap();
        assert!(data.len() < 2000 && data.len() > 1000, "{}", data.len());
        assert_eq!(data["…"], CUT_MARKER);
        assert!(!rendered.to_string().contains("secret-key"));
    }
}
