//! Calls that must stay cheap as an account grows: getContactCount by list, exportContacts
//! pages deep into a list, a tag or a status jumped to directly, and catalog deletes (how long
//! other writes wait while the writer takes a deleted list, tag or field off every contact).
//! Beside the counts, the walk the server used to make, over the same database.
//!
//! `cargo bench --bench scale` (1,000,000 contacts in one account; `--contacts 10000000` for
//! ten million; `--quick` for 100,000). The contacts are imported over HTTP by four clients, in
//! the import benchmark's shape: email and phone, two lists, two tags, a status. Prints one
//! JSON object per measure.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/http_client.rs"]
mod http_client;

use common::*;

use http_client::{Client, encode};
use std::time::Instant;
use unisender_local::server::Server;
use unisender_local::store::packed::{Memberships, TagSet};

const ROWS: usize = 500;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn import_body(lists: (i64, i64), call: usize) -> String {
    let mut body = format!("api_key={KEY}");
    for (i, column) in [
        "email",
        "phone",
        "email_list_ids",
        "tags",
        "email_status",
        "City",
    ]
    .iter()
    .enumerate()
    {
        body.push_str(&format!("&field_names%5B{i}%5D={column}"));
    }
    for row in 0..ROWS {
        let n = call * ROWS + row;
        let cells = [
            format!("user{n}@example.com"),
            format!("+1{n:010}"),
            format!("{},{}", lists.0, lists.1),
            format!("tag{},group{}", n % 5, n % 3),
            ["new", "active"][n % 2].to_string(),
            format!("City {}", n % 97),
        ];
        for (col, cell) in cells.iter().enumerate() {
            body.push_str(&format!("&data%5B{row}%5D%5B{col}%5D={}", encode(cell)));
        }
    }
    body
}

/// Runs `delete` and then one-row imports every 5 ms until the writer has taken the deleted id
/// off every contact; answers the slowest of those imports and how long the clean-up took.
fn delete_and_watch(
    server: &Server,
    db: &std::path::Path,
    name: &str,
    delete: impl FnOnce(&mut Client),
) {
    let mut client = Client::new(server.address());
    let started = Instant::now();
    delete(&mut client);
    report(
        &format!("{name}_answer_ms"),
        started.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    let (waits, took) = writes_while(
        &mut client,
        db,
        "SELECT count(*) FROM catalog_deletions",
        name,
    );
    let slowest = waits.last().copied().unwrap_or(0.0);
    report(&format!("{name}_cleanup_s"), took, "s");
    report(
        &format!("{name}_slowest_write_during_cleanup_ms"),
        slowest,
        "ms",
    );
}

fn main() {
    let contacts = size_arg("--contacts", 100_000, 1_000_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("scale.db");
    let server = server(db.clone());
    let mut client = Client::new(server.address());
    let mut create = |method: &str, form: &str| {
        post(
            &mut client,
            &format!("/en/api/{method}"),
            &format!("api_key={KEY}&{form}"),
        )["result"]["id"]
            .as_i64()
            .expect("an id")
    };
    let lists = (
        create("createList", "title=One"),
        create("createList", "title=Two"),
    );
    let field = create("createField", "name=City&type=string");

    let calls = contacts.div_ceil(ROWS);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..4 {
            let address = server.address();
            scope.spawn(move || {
                let mut http = Client::new(address);
                for call in (client..calls).step_by(4) {
                    post(
                        &mut http,
                        "/en/api/importContacts",
                        &import_body(lists, call),
                    );
                }
            });
        }
    });
    report(
        "fill_contacts_per_s",
        (calls * ROWS) as f64 / started.elapsed().as_secs_f64(),
        "contacts/s",
    );
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(db.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    report(
        "database_bytes_per_contact",
        size as f64 / (calls * ROWS) as f64,
        "bytes",
    );

    let n = calls * ROWS;
    let mut client = Client::new(server.address());
    let count_body = format!("api_key={KEY}&list_id={}", lists.0);
    let counted = post(&mut client, "/en/api/getContactCount", &count_body)["result"]["count"]
        .as_u64()
        .unwrap();
    assert_eq!(counted as usize, n);
    report(
        &format!("count_by_list_{n}_ms"),
        median_ms(11, || {
            post(&mut client, "/en/api/getContactCount", &count_body);
        }),
        "ms",
    );
    // The walk getContactCount used to make: every contact's packed lists tested.
    let reader =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    report(
        &format!("count_by_list_{n}_by_walking_ms"),
        median_ms(3, || {
            let mut statement = reader
                .prepare_cached(
                    "SELECT memberships FROM contacts WHERE account_id = 1 AND memberships IS NOT NULL",
                )
                .unwrap();
            let mut rows = statement.query([]).unwrap();
            let mut count = 0;
            while let Some(row) = rows.next().unwrap() {
                if Memberships::stored_in_list(row.get_ref(0).unwrap(), lists.0, None).unwrap() {
                    count += 1;
                }
            }
            assert_eq!(count, n);
        }),
        "ms",
    );

    let deep = n - 2000;
    for (name, filter) in [
        ("list", format!("list_id={}", lists.0)),
        ("tag", "tag=tag3".to_string()),
        ("email_status", "email_status=active".to_string()),
    ] {
        let offset = match name {
            "list" => deep,
            "tag" => n / 5 - 2000,
            _ => n / 2 - 2000,
        };
        let body = format!(
            "api_key={KEY}&{filter}&offset={offset}&limit=1000&field_names%5B0%5D=email&field_names%5B1%5D=tags"
        );
        let rows = post(&mut client, "/en/api/exportContacts", &body)["result"]["data"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(rows, 1000, "{name}");
        report(
            &format!("export_by_{name}_deep_page_{n}_ms"),
            median_ms(11, || {
                post(&mut client, "/en/api/exportContacts", &body);
            }),
            "ms",
        );
    }
    // The walk a deep page by tag used to be: every contact before the offset tested.
    let tag3: i64 = reader
        .query_row("SELECT id FROM tags WHERE name = 'tag3'", [], |r| r.get(0))
        .unwrap();
    report(
        &format!("export_by_tag_deep_page_{n}_by_walking_ms"),
        median_ms(3, || {
            let mut statement = reader
                .prepare_cached("SELECT tag_ids FROM contacts WHERE account_id = 1 ORDER BY id")
                .unwrap();
            let mut rows = statement.query([]).unwrap();
            let mut seen = 0;
            while let Some(row) = rows.next().unwrap() {
                if TagSet::stored_contains(row.get_ref(0).unwrap(), tag3).unwrap() {
                    seen += 1;
                    if seen >= n / 5 {
                        break;
                    }
                }
            }
        }),
        "ms",
    );

    let tag_id = tag3;
    delete_and_watch(&server, &db, "delete_list", |client| {
        post(
            client,
            "/en/api/deleteList",
            &format!("api_key={KEY}&list_id={}", lists.1),
        );
    });
    delete_and_watch(&server, &db, "delete_tag", |client| {
        post(
            client,
            "/en/api/deleteTag",
            &format!("api_key={KEY}&id={tag_id}"),
        );
    });
    delete_and_watch(&server, &db, "delete_field", |client| {
        post(
            client,
            "/en/api/deleteField",
            &format!("api_key={KEY}&id={field}"),
        );
    });
    server.stop();
}
