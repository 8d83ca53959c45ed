//! The request journal: the last N API calls, newest first, for a test to assert on what its
//! application sent (as WireMock's request journal). Bounded in entries and, per entry, in
//! bytes: `data` is kept whole up to 64 KiB and then cut with a marker, and the key is masked.

use crate::model::Timestamp;
use crate::params::{Key, Param, Params};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// The default number of calls kept.
pub const DEFAULT_CAPACITY: usize = 1000;
/// The most the kept calls' parameters may hold in memory; the oldest go first beyond it.
const MAX_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of values kept per entry for `data`, and for every other parameter together.
const DATA_BYTES: usize = 64 * 1024;
const OTHER_BYTES: usize = 64 * 1024;
/// What stands where the rest of a cut value or array was.
const CUT_MARKER: &str = "…cut at 64 KiB";

/// One recorded call. Its parameters are kept as the request carried them and decoded only
/// when listed (`RecordedParams`), so that recording costs an import call nothing measurable.
#[derive(Debug)]
pub struct JournalEntry {
    pub id: u64,
    /// When the call arrived.
    pub time: SystemTime,
    /// The login of the account whose key the call carried, once the key was valid.
    pub account: Option<String>,
    /// The method as in the path (`importContacts`, `async/exportContacts`).
    pub method: String,
    /// The parameters (none when the key was refused before decoding).
    pub params: Option<RecordedParams>,
    pub status: u16,
    /// The error code, or a summary of the result (an import's counters).
    pub outcome: Value,
    /// The answer's body as sent, up to 64 KiB (none for a dropped connection).
    pub answer: Vec<u8>,
    pub duration_ms: f64,
}

impl JournalEntry {
    fn footprint(&self) -> usize {
        self.params.as_ref().map_or(0, RecordedParams::footprint) + self.answer.capacity()
    }

    /// The entry as `/_local/requests` shows it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "time": Timestamp::wire_ms(self.time),
            "account": self.account,
            "method": self.method,
            "params": self.params.as_ref().map_or(Value::Null, RecordedParams::to_json),
            "status": self.status,
            "outcome": self.outcome,
            "answer": answer_json(&self.answer),
            "duration_ms": self.duration_ms,
        })
    }
}

/// Bytes of an answer the journal keeps.
pub const ANSWER_BYTES: usize = 64 * 1024;

/// An answer as JSON when it was kept whole; cut, as text with the marker.
fn answer_json(answer: &[u8]) -> Value {
    if answer.is_empty() {
        return Value::Null;
    }
    match serde_json::from_slice(answer) {
        Ok(value) => value,
        Err(_) => Value::String(format!("{}{CUT_MARKER}", String::from_utf8_lossy(answer))),
    }
}

/// A request body larger than this is decoded and cut when recorded, rather than kept whole.
pub const MAX_KEPT_BODY: usize = 256 * 1024;

/// A call's parameters as the journal keeps them.
#[derive(Debug)]
pub enum RecordedParams {
    /// The request as it arrived (query, form headers, body, compressed or not): recording
    /// costs the call a move, and the form is decoded and cut only when the journal is listed.
    Request(RecordedRequest),
    /// Decoded and cut when recorded: a body over `MAX_KEPT_BODY`.
    Bounded(BoundedParams),
}

/// What decoding a call's form again needs.
#[derive(Debug)]
pub struct RecordedRequest {
    pub target: String,
    /// Content-Type and Content-Encoding.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedParams {
    fn footprint(&self) -> usize {
        match self {
            RecordedParams::Request(request) => {
                request.body.capacity()
                    + request.target.len()
                    + request
                        .headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len())
                        .sum::<usize>()
            }
            RecordedParams::Bounded(bounded) => bounded.footprint(),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            RecordedParams::Request(request) => match crate::http::body::decode_recorded(request) {
                Some(params) => BoundedParams::new(params).to_json(),
                None => Value::Null,
            },
            RecordedParams::Bounded(bounded) => bounded.to_json(),
        }
    }
}

/// A call's parameters cut to the journal's bounds (`data` to 64 KiB of values, the others to
/// another 64 KiB together) and written as compact JSON at once, `api_key` masked: one string
/// per call, and the parameter tree freed as before, so that the allocator reuses it.
#[derive(Debug)]
pub struct BoundedParams {
    json: String,
}

impl BoundedParams {
    /// Cuts the call's parameters (a walk over value lengths) and writes what is kept.
    pub fn new(params: Params) -> BoundedParams {
        let mut params = params.with_tree();
        let mut data_cut = false;
        match params.get_mut("data") {
            Some(Param::Array(rows)) => data_cut = rows.keep_within(&mut { DATA_BYTES }),
            Some(Param::Value(text)) if text.len() > DATA_BYTES => {
                truncate_at_char(text, DATA_BYTES);
                data_cut = true;
            }
            _ => {}
        }
        let mut budget = OTHER_BYTES;
        let too_large: Vec<String> = params
            .iter()
            .filter(|(name, _)| *name != "data")
            .filter_map(|(name, param)| {
                let bytes = param.value_bytes();
                if bytes <= budget {
                    budget -= bytes;
                    None
                } else {
                    Some(name.to_string())
                }
            })
            .collect();
        for name in &too_large {
            params.remove(name);
        }
        let view = ParamsJson {
            params: &params,
            data_cut,
            others_cut: !too_large.is_empty(),
        };
        BoundedParams {
            json: serde_json::to_string(&view).unwrap_or_default(),
        }
    }

    fn footprint(&self) -> usize {
        self.json.capacity()
    }

    /// Arrays as objects by key, `api_key` masked, a marker where something was cut.
    pub fn to_json(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

/// The parameters as the journal writes them.
struct ParamsJson<'a> {
    params: &'a Params,
    data_cut: bool,
    others_cut: bool,
}

impl Serialize for ParamsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, param) in self.params.iter() {
            match (name, param) {
                ("api_key", Param::Value(key)) => map.serialize_entry(name, &masked_key(key))?,
                ("data", _) if self.data_cut => {
                    map.serialize_entry(name, &ParamJson { param, cut: true })?
                }
                _ => map.serialize_entry(name, &ParamJson { param, cut: false })?,
            }
        }
        if self.others_cut {
            map.serialize_entry("…", CUT_MARKER)?;
        }
        map.end()
    }
}

/// One parameter: a value as a string, an array as an object by key; `cut` adds the marker.
struct ParamJson<'a> {
    param: &'a Param,
    cut: bool,
}

impl Serialize for ParamJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.param {
            Param::Value(text) if self.cut => {
                serializer.serialize_str(&format!("{text}{CUT_MARKER}"))
            }
            Param::Value(text) => serializer.serialize_str(text),
            Param::Array(entries) => {
                let mut map = serializer.serialize_map(None)?;
                for (key, entry) in entries {
                    let entry = ParamJson {
                        param: entry,
                        cut: false,
                    };
                    match key {
                        Key::Index(index) => map.serialize_entry(index, &entry)?,
                        Key::Name(name) => map.serialize_entry(name, &entry)?,
                    }
                }
                if self.cut {
                    map.serialize_entry("…", CUT_MARKER)?;
                }
                map.end()
            }
        }
    }
}

fn truncate_at_char(text: &mut String, bytes: usize) {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
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
    /// The kept entries' parameters' footprint.
    bytes: usize,
}

impl Journal {
    /// A journal keeping the last `capacity` calls (0 keeps none).
    pub fn new(capacity: usize) -> Journal {
        Journal {
            capacity,
            ring: Mutex::new(Ring {
                next_id: 1,
                entries: VecDeque::new(),
                bytes: 0,
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
        ring.bytes += entry.footprint();
        ring.entries.push_back(Arc::new(entry));
        while ring.entries.len() > self.capacity
            || (ring.bytes > MAX_BYTES && ring.entries.len() > 1)
        {
            if let Some(oldest) = ring.entries.pop_front() {
                ring.bytes -= oldest.footprint();
            }
        }
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
    /// Calls kept now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) -> usize {
        let mut ring = self.lock();
        let count = ring.entries.len();
        ring.entries.clear();
        ring.bytes = 0;
        count
    }
}

/// A key as the journal and the log show it: its last four characters.
pub fn masked_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let shown: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("…{shown}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: &str, account: &str) -> JournalEntry {
        JournalEntry {
            id: 0,
            time: SystemTime::now(),
            account: Some(account.into()),
            method: method.into(),
            params: None,
            status: 200,
            outcome: Value::Null,
            answer: Vec::new(),
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
        let rendered = BoundedParams::new(params).to_json();
        assert_eq!(rendered["api_key"], "…1234");
        assert_eq!(rendered["title"], "T");
        let data = rendered["data"].as_object().unwrap();
        assert!(data.len() < 2000 && data.len() > 1000, "{}", data.len());
        assert_eq!(data["…"], CUT_MARKER);
        assert!(!rendered.to_string().contains("secret-key"));
    }
}
