//! A deleted list is taken off contacts in the background; a crash in the middle of that
//! clean-up loses nothing: after a restart it resumes where it stopped, and the answers never
//! show the deleted list, before, during or after.

use crate::support::http_client::{Client, form};
use crate::support::{served, start};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::time::{Duration, Instant};
use unisender_local::store::packed::Memberships;

const KEY: &str = "cleanup-key-0123456";

fn call(client: &mut Client, method: &str, pairs: &[(&str, &str)]) -> Value {
    let mut all = vec![("api_key", KEY)];
    all.extend_from_slice(pairs);
    let reply = client.post_form(&format!("/en/api/{method}"), &form(&all));
    assert_eq!(reply.status, 200, "{method}");
    reply.json()
}

/// Every contact's email_list_ids, page by page.
fn exported_lists(client: &mut Client) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let offset = all.len().to_string();
        let page = call(
            client,
            "exportContacts",
            &[
                ("field_names[0]", "email_list_ids"),
                ("offset", &offset),
                ("limit", "1000"),
            ],
        )["result"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[0].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

fn read_only(db: &std::path::Path) -> Connection {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// Stops the server however the test ends, so that a failed assertion leaves no process behind.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        served::terminate(&mut self.0);
    }
}

#[test]
fn a_crash_during_a_list_clean_up_resumes_after_a_restart_and_answers_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cleanup.db");
    let server = start(&mut served::serving(&db, &format!("c:{KEY}")));
    let mut client = Client::new(server.address);
    let mut first = Stopped(server.child);
    let kept = call(&mut client, "createList", &[("title", "Kept")])["result"]["id"].to_string();
    let gone = call(&mut client, "createList", &[("title", "Gone")])["result"]["id"].to_string();
    let both = format!("{kept},{gone}");
    let contacts = 30_000;
    for batch in 0..contacts / 500 {
        let mut owned = vec![
            ("field_names[0]".to_string(), "email".to_string()),
            ("field_names[1]".to_string(), "email_list_ids".to_string()),
        ];
        for row in 0..500 {
            owned.push((
                format!("data[{row}][0]"),
                format!("u{batch}x{row}@example.com"),
            ));
            owned.push((format!("data[{row}][1]"), both.clone()));
        }
        let pairs: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            call(&mut client, "importContacts", &pairs)["result"]["inserted"],
            500
        );
    }
    call(&mut client, "deleteList", &[("list_id", &gone)]);
    // The list is gone from every answer at once.
    assert_eq!(
        call(&mut client, "getContactCount", &[("list_id", &gone)])["code"],
        "invalid_arg"
    );
    // Kill the server while its clean-up is part way.
    let probe = read_only(&db);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done_before_kill = loop {
        let after: Option<i64> = probe
            .query_row("SELECT after_id FROM catalog_deletions", [], |r| r.get(0))
            .ok();
        match after {
            Some(after) if after > 0 => break after,
            None => panic!("the clean-up finished before it could be interrupted"),
            _ => {}
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    };
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    drop(probe);
    assert!(done_before_kill < contacts as i64, "interrupted part way");

    // Restarted: the clean-up resumes from where it stopped, and the answers never show the list.
    let server = start(&mut served::serving(&db, &format!("c:{KEY}")));
    let mut client = Client::new(server.address);
    let _second = Stopped(server.child);
    let lists = exported_lists(&mut client);
    assert_eq!(lists.len(), contacts);
    assert!(lists.iter().all(|l| *l == kept), "{:?}", &lists[..3]);
    assert_eq!(
        call(&mut client, "getContactCount", &[("list_id", &kept)])["result"]["count"],
        contacts
    );
    let probe = read_only(&db);
    let deadline = Instant::now() + Duration::from_secs(60);
    while probe
        .query_row("SELECT count(*) FROM catalog_deletions", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
        > 0
    {
        assert!(Instant::now() < deadline, "the clean-up finishes");
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone: i64 = gone.parse().unwrap();
    let mut statement = probe.prepare("SELECT memberships FROM contacts").unwrap();
    let carrying = statement
        .query_map([], |r| r.get::<_, Memberships>(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|m| m.all().iter().any(|m| m.list_id == gone))
        .count();
    assert_eq!(carrying, 0, "no contact carries the deleted list");
    let counts: i64 = probe
        .query_row(
            "SELECT count(*) FROM block_counts WHERE facet / 8 = ?1 AND facet % 8 < 3",
            [gone],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(counts, 0, "nor does any count");
    let check: String = probe
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
