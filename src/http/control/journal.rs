//! `/_local/requests`: the request journal, listed and cleared.

use super::{Routed, answer, invalid, not_allowed};
use crate::app::App;
use crate::journal::JournalFilter;
use crate::params::Params;
use serde_json::{Value, json};

pub(super) fn handle(app: &App, method: &str, path: &str, query: &Params) -> Routed {
    if path != "/_local/requests" {
        return None;
    }
    Some(match method {
        "GET" => match journal_filter(query) {
            Ok(filter) => {
                let entries: Vec<Value> = app
                    .journal
                    .list(&filter)
                    .iter()
                    .map(|entry| entry.to_json())
                    .collect();
                answer(200, &json!({"requests": entries}))
            }
            Err(why) => invalid(&why),
        },
        "DELETE" => answer(200, &json!({"deleted": app.journal.clear()})),
        _ => not_allowed("GET or DELETE"),
    })
}

fn journal_filter(query: &Params) -> Result<JournalFilter, String> {
    let text = |name: &str| query.value(name).filter(|v| !v.is_empty());
    let number = |name: &str| -> Result<Option<u64>, String> {
        text(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{name} must be a whole number, not \"{v}\""))
            })
            .transpose()
    };
    Ok(JournalFilter {
        method: text("method").map(str::to_string),
        account: text("account").map(str::to_string),
        since_id: number("since_id")?,
        limit: number("limit")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    })
}
