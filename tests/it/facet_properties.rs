//! The per-block facet counts always agree with the contacts' packed rows, and the calls that
//! use them (getContactCount, filtered exportContacts pages at any offset) answer exactly what
//! a walk over every contact would: random imports, subscribes, unsubscribes, excludes, list and
//! tag deletions and restarts, in two accounts.

use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use unisender_local::app::App;
use unisender_local::exports::export_dir;
use unisender_local::http::routes;
use unisender_local::http::wire::{Body, HttpRequest};
use unisender_local::store::db::Durability;
use unisender_local::store::writer::Command;
use unisender_local::store::{Store, facets};

const KEYS: [&str; 2] = ["facet-key-aaaaaaaa", "facet-key-bbbbbbbb"];
const TAGS: [&str; 3] = ["red", "green", "blue"];

fn open(db: &std::path::Path, first: bool) -> App {
    let store = Arc::new(Store::open(db, Durability::Relaxed).expect("opens"));
    if first {
        for (n, key) in KEYS.iter().enumerate() {
            store
                .writer()
                .submit(|reply| Command::UpsertAccount {
                    login: format!("a{n}"),
                    api_key: Some(key.to_string()),
                    contact_limit: None,
                    reply,
                })
                .expect("an account");
        }
    }
    App::new(
        store,
        export_dir(db),
        SocketAddr::from(([127, 0, 0, 1], 1)),
        "http://127.0.0.1:1".into(),
        Default::default(),
        unisender_local::app::ControlOptions::quiet(),
    )
}

fn call(app: &App, account: usize, method: &str, pairs: &[(String, String)]) -> Value {
    let mut body = format!("api_key={}", KEYS[account]);
    for (name, value) in pairs {
        body.push('&');
        body.push_str(&urlencode(name));
        body.push('=');
        body.push_str(&urlencode(value));
    }
    let request = HttpRequest {
        method: "POST".into(),
        target: format!("/en/api/{method}"),
        headers: vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into_bytes(),
        memory: Default::default(),
        peer: None,
    };
    let answer = routes::handle(app, 32 * 1024 * 1024, request);
    let Body::Bytes(bytes) = answer.body else {
        panic!("a JSON body")
    };
    serde_json::from_slice(&bytes).expect("JSON")
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn pairs(items: &[(&str, String)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    /// Rows of (email number, with a phone, lists (bits of the account's lists), tags (bits),
    /// status, delete); overwrite lists; overwrite tags.
    Import(usize, Vec<(u8, bool, u8, u8, u8, bool)>, bool, bool),
    Subscribe(usize, u8, u8, bool),
    Unsubscribe(usize, u8, u8, bool),
    CreateList(usize),
    DeleteList(usize, u8),
    DeleteTag(usize, u8),
    /// Moves the next contact id hundreds of ids on (a row of no account's), so that contacts
    /// spread over several blocks of 1024.
    Jump,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let account = 0usize..2;
    let row = (
        0u8..12,
        any::<bool>(),
        0u8..8,
        0u8..8,
        0u8..3,
        prop::bool::weighted(0.1),
    );
    prop_oneof![
        6 => (account.clone(), prop::collection::vec(row, 1..8), any::<bool>(), any::<bool>())
            .prop_map(|(a, rows, l, t)| Op::Import(a, rows, l, t)),
        2 => (account.clone(), 0u8..12, 0u8..8, any::<bool>()).prop_map(|(a, e, l, d)| Op::Subscribe(a, e, l, d)),
        2 => (account.clone(), 0u8..12, 0u8..3, any::<bool>()).prop_map(|(a, e, l, x)| Op::Unsubscribe(a, e, l, x)),
        1 => account.clone().prop_map(Op::CreateList),
        1 => (account.clone(), 0u8..3).prop_map(|(a, l)| Op::DeleteList(a, l)),
        1 => (account, 0u8..3).prop_map(|(a, t)| Op::DeleteTag(a, t)),
        2 => Just(Op::Jump),
        1 => Just(Op::Restart),
    ]
}

/// The account's lists, by id.
fn lists(app: &App, account: usize) -> Vec<i64> {
    call(app, account, "getLists", &[])["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect()
}

fn chosen(ids: &[i64], bits: u8) -> String {
    ids.iter()
        .enumerate()
        .filter(|(n, _)| bits & (1 << n) != 0)
        .map(|(_, id)| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn apply(app: &App, op: &Op) {
    match op {
        Op::Import(account, rows, overwrite_lists, overwrite_tags) => {
            let ids = lists(app, *account);
            let items = vec![
                ("field_names[0]", "email".to_string()),
                ("field_names[1]", "phone".to_string()),
                ("field_names[2]", "email_list_ids".to_string()),
                ("field_names[3]", "tags".to_string()),
                ("field_names[4]", "email_status".to_string()),
                ("field_names[5]", "delete".to_string()),
                ("overwrite_lists", u8::from(*overwrite_lists).to_string()),
                ("overwrite_tags", u8::from(*overwrite_tags).to_string()),
            ];
            let mut names = Vec::new();
            for (r, (email, phone, list_bits, tag_bits, status, delete)) in rows.iter().enumerate()
            {
                let tags: Vec<&str> = TAGS
                    .iter()
                    .enumerate()
                    .filter(|(n, _)| tag_bits & (1 << n) != 0)
                    .map(|(_, t)| *t)
                    .collect();
                let cells = [
                    format!("p{email}@example.com"),
                    if *phone {
                        format!("+7900000{email:04}")
                    } else {
                        String::new()
                    },
                    chosen(&ids, *list_bits),
                    tags.join(","),
                    ["new", "active", "unsubscribed"][*status as usize].to_string(),
                    u8::from(*delete).to_string(),
                ];
                for (c, cell) in cells.into_iter().enumerate() {
                    names.push((format!("data[{r}][{c}]"), cell));
                }
            }
            let mut all = pairs(&items);
            all.extend(names);
            call(app, *account, "importContacts", &all);
        }
        Op::Subscribe(account, email, list_bits, confirmed) => {
            let ids = lists(app, *account);
            let list_ids = chosen(&ids, *list_bits);
            if list_ids.is_empty() {
                return;
            }
            call(
                app,
                *account,
                "subscribe",
                &pairs(&[
                    ("list_ids", list_ids),
                    ("fields[email]", format!("p{email}@example.com")),
                    ("double_optin", if *confirmed { "3" } else { "0" }.into()),
                ]),
            );
        }
        Op::Unsubscribe(account, email, list, exclude) => {
            let ids = lists(app, *account);
            let Some(list) = ids.get(*list as usize) else {
                return;
            };
            call(
                app,
                *account,
                if *exclude { "exclude" } else { "unsubscribe" },
                &pairs(&[
                    ("contact_type", "email".into()),
                    ("contact", format!("p{email}@example.com")),
                    ("list_ids", list.to_string()),
                ]),
            );
        }
        Op::CreateList(account) => {
            let n = lists(app, *account).len();
            call(
                app,
                *account,
                "createList",
                &pairs(&[("title", format!("L{n}-{}", rand_suffix()))]),
            );
        }
        Op::DeleteList(account, n) => {
            if let Some(list) = lists(app, *account).get(*n as usize) {
                call(
                    app,
                    *account,
                    "deleteList",
                    &pairs(&[("list_id", list.to_string())]),
                );
            }
        }
        Op::DeleteTag(account, n) => {
            let tags = call(app, *account, "getTags", &[])["result"].clone();
            if let Some(tag) = tags.as_array().unwrap().get(*n as usize) {
                call(
                    app,
                    *account,
                    "deleteTag",
                    &pairs(&[("id", tag["id"].to_string())]),
                );
            }
        }
        Op::Jump => {
            let conn = rusqlite::Connection::open(app.store.path()).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
            conn.execute(
                "INSERT INTO contacts (id, account_id, email)
                 VALUES ((SELECT coalesce(max(id), 0) + 700 FROM contacts), 999999, NULL)",
                [],
            )
            .unwrap();
        }
        Op::Restart => unreachable!("handled by the caller"),
    }
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}

/// Every contact of the account, by the unfiltered export (which uses no facet count).
fn all_contacts(app: &App, account: usize) -> Vec<Value> {
    let columns = [
        "email",
        "email_status",
        "email_list_ids",
        "email_unsubscribed_list_ids",
        "phone",
        "phone_list_ids",
        "phone_unsubscribed_list_ids",
        "tags",
    ];
    let mut items: Vec<(String, String)> = columns
        .iter()
        .enumerate()
        .map(|(n, c)| (format!("field_names[{n}]"), c.to_string()))
        .collect();
    items.push(("limit".into(), "1000".into()));
    call(app, account, "exportContacts", &items)["result"]["data"]
        .as_array()
        .unwrap()
        .clone()
}

fn has(cell: &Value, id: &str) -> bool {
    cell.as_str().unwrap().split(',').any(|x| x == id)
}

fn check(app: &App) -> Result<(), TestCaseError> {
    // The stored counts of the live accounts are the counts of their rows.
    let (expected, stored, live) = app
        .store
        .read(|conn| {
            // One snapshot for both: the writer may be cleaning up deletions meanwhile.
            let snapshot = conn.unchecked_transaction()?;
            let conn = &*snapshot;
            let live: Vec<i64> = conn
                .prepare("SELECT id FROM accounts")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let keep = |m: BTreeMap<(i64, i64, i64), i64>| -> BTreeMap<(i64, i64, i64), i64> {
                m.into_iter()
                    .filter(|((a, _, _), _)| live.contains(a))
                    .collect()
            };
            Ok((
                keep(facets::count_all(conn)?),
                keep(facets::stored(conn)?),
                live,
            ))
        })
        .unwrap();
    prop_assert!(!live.is_empty());
    // Counts of deleted lists and tags may stay behind at zero or below until cleaned; every
    // count of a live facet must be exact.
    for (key, count) in &expected {
        prop_assert_eq!(stored.get(key), Some(count), "facet {:?}", key);
    }
    for account in 0..2 {
        let contacts = all_contacts(app, account);
        for list in lists(app, account) {
            let id = list.to_string();
            let in_list = |c: &Value, email: bool, phone: bool| {
                (email && (has(&c[2], &id) || has(&c[3], &id)))
                    || (phone && (has(&c[5], &id) || has(&c[6], &id)))
            };
            for (kind, email, phone) in [
                (None, true, true),
                (Some("address"), true, false),
                (Some("phone"), false, true),
            ] {
                let expected = contacts.iter().filter(|c| in_list(c, email, phone)).count();
                let mut items = vec![("list_id".to_string(), id.clone())];
                if let Some(kind) = kind {
                    items.push(("params[type]".into(), kind.into()));
                }
                let answer = call(app, account, "getContactCount", &items);
                prop_assert_eq!(
                    answer["result"]["count"].as_u64(),
                    Some(expected as u64),
                    "{}",
                    answer
                );
            }
            let members: Vec<&Value> = contacts.iter().filter(|c| in_list(c, true, true)).collect();
            for offset in [0, 1, 3, 7] {
                let page = call(
                    app,
                    account,
                    "exportContacts",
                    &pairs(&[
                        ("list_id", id.clone()),
                        ("field_names[0]", "email".into()),
                        ("offset", offset.to_string()),
                        ("limit", "3".into()),
                    ]),
                )["result"]["data"]
                    .clone();
                let expected: Vec<Value> = members
                    .iter()
                    .skip(offset)
                    .take(3)
                    .map(|c| serde_json::json!([c[0]]))
                    .collect();
                prop_assert_eq!(page, Value::from(expected), "list {} offset {}", id, offset);
            }
        }
        for tag in TAGS {
            let tagged: Vec<&Value> = contacts
                .iter()
                .filter(|c| c[7].as_str().unwrap().split(',').any(|t| t == tag))
                .collect();
            let page = call(
                app,
                account,
                "exportContacts",
                &pairs(&[
                    ("tag", tag.into()),
                    ("field_names[0]", "email".into()),
                    ("offset", "2".into()),
                    ("limit", "4".into()),
                ]),
            )["result"]["data"]
                .clone();
            let expected: Vec<Value> = tagged
                .iter()
                .skip(2)
                .take(4)
                .map(|c| serde_json::json!([c[0]]))
                .collect();
            prop_assert_eq!(page, Value::from(expected), "tag {}", tag);
        }
        let active: Vec<&Value> = contacts.iter().filter(|c| c[1] == "active").collect();
        let page = call(
            app,
            account,
            "exportContacts",
            &pairs(&[
                ("email_status", "active".into()),
                ("field_names[0]", "email".into()),
                ("offset", "1".into()),
                ("limit", "5".into()),
            ]),
        )["result"]["data"]
            .clone();
        let expected: Vec<Value> = active
            .iter()
            .skip(1)
            .take(5)
            .map(|c| serde_json::json!([c[0]]))
            .collect();
        prop_assert_eq!(page, Value::from(expected), "email_status");
    }
    Ok(())
}

/// Once the writer has finished the deletions, no contact and no count mentions a deleted
/// list or tag.
fn cleaned_up(app: &App) -> Result<(), TestCaseError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left: i64 = app
            .store
            .read(|conn| {
                Ok(conn.query_row("SELECT count(*) FROM catalog_deletions", [], |r| r.get(0))?)
            })
            .unwrap();
        if left == 0 {
            break;
        }
        prop_assert!(
            std::time::Instant::now() < deadline,
            "the clean-up finishes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let stale = app
        .store
        .read(|conn| {
            let exists = |kind: i64, id: i64| -> rusqlite::Result<bool> {
                let table = if kind < 3 { "lists" } else { "tags" };
                conn.query_row(
                    &format!("SELECT count(*) FROM {table} WHERE id = ?1"),
                    [id],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n > 0)
            };
            let mut stale = Vec::new();
            let counted = facets::count_all(conn)?;
            let stored = conn
                .prepare("SELECT account_id, facet, block, contacts FROM block_counts")?
                .query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<((i64, i64, i64), i64)>>>()?;
            let live: Vec<i64> = conn
                .prepare("SELECT id FROM accounts")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for ((account, facet, _), _) in counted.into_iter().chain(stored) {
                let (id, kind) = (facet / 8, facet % 8);
                if live.contains(&account) && kind <= 3 && !exists(kind, id)? {
                    stale.push((account, facet));
                }
            }
            Ok(stale)
        })
        .unwrap();
    prop_assert!(stale.is_empty(), "deleted ids left behind: {:?}", stale);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn facet_counts_and_the_calls_using_them_match_the_rows(ops in prop::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("f.db");
        let mut app = open(&db, true);
        for account in 0..2 {
            for title in ["one", "two", "three"] {
                call(&app, account, "createList", &pairs(&[("title", title.into())]));
            }
        }
        for op in &ops {
            if let Op::Restart = op {
                app.store.close();
                drop(app);
                app = open(&db, false);
            } else {
                apply(&app, op);
            }
        }
        check(&app)?;
        cleaned_up(&app)?;
        app.store.close();
    }
}
