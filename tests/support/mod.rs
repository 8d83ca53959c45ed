//! The harness of the integration tests: the real binary serving a database in a temporary
//! directory on 127.0.0.1:0, a client for it, and a read-only look into its database.

pub mod attack;
pub mod http_client;
pub mod served;

pub use served::{binary, path, run_ok, serving, start, terminate};

use http_client::{Client, Reply, form};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Value, json};
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, ExitStatus};
use unisender_local::import_plan::Channel;
use unisender_local::model::{Availability, EmailStatus, PhoneStatus};
use unisender_local::store::packed::{FieldValues, Memberships, TagSet};

pub const KEY: &str = "test-key-0123456789";
pub const OTHER_KEY: &str = "other-key-9876543210";

pub struct TestServer {
    child: Option<Child>,
    pub address: SocketAddr,
    /// Holds the database's directory for as long as the server lives.
    _dir: tempfile::TempDir,
    pub db: PathBuf,
    _stdout: BufReader<ChildStdout>,
    /// What the server printed on stdout after the listening line, read at start.
    pub first_line: String,
}

impl TestServer {
    /// A server with two accounts, `test` (KEY) and `other` (OTHER_KEY).
    pub fn start() -> TestServer {
        TestServer::start_with(&[
            "--account",
            &format!("test:{KEY}"),
            "--account",
            &format!("other:{OTHER_KEY}"),
        ])
    }

    pub fn start_with(extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("creates a temp dir");
        let db = dir.path().join("test.db");
        TestServer::start_on(dir, db, extra)
    }

    pub fn start_on(dir: tempfile::TempDir, db: PathBuf, extra: &[&str]) -> TestServer {
        let served = start(
            binary()
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--durability",
                    "relaxed",
                    "--db",
                ])
                .arg(&db)
                .args(extra)
                .env_remove("UNISENDER_LOCAL_ACCOUNTS")
                // A line per request would bury the test output; `control.rs` tests the log.
                .env("UNISENDER_LOCAL_QUIET", "true"),
        );
        TestServer {
            child: Some(served.child),
            address: served.address,
            _dir: dir,
            db,
            _stdout: served.stdout,
            first_line: served.first_line,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(self.address)
    }

    /// POSTs `pairs` to `/en/api/{method}` with `key`, and returns the parsed answer.
    pub fn call_as(&self, key: &str, method: &str, pairs: &[(&str, &str)]) -> Value {
        let mut all = vec![("api_key", key)];
        all.extend_from_slice(pairs);
        let reply = self
            .client()
            .post_form(&format!("/en/api/{method}?format=json"), &form(&all));
        assert_eq!(
            reply.status,
            200,
            "{method}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    pub fn call(&self, method: &str, pairs: &[(&str, &str)]) -> Value {
        self.call_as(KEY, method, pairs)
    }

    /// A control-plane request (`/_local/...`) with a JSON body (none when empty).
    pub fn control(&self, method: &str, target: &str, json_body: &str) -> Reply {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            json_body.len()
        );
        self.raw(format!("{head}{json_body}").as_bytes())
    }

    /// A control-plane request that must succeed; its JSON answer.
    pub fn control_ok(&self, method: &str, target: &str, json_body: &str) -> Value {
        let reply = self.control(method, target, json_body);
        assert_eq!(
            reply.status,
            200,
            "{method} {target}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// Sends a raw request and returns the raw answer.
    pub fn raw(&self, request: &[u8]) -> Reply {
        self.client().send(request)
    }

    /// importContacts with these columns and rows (an empty string is an empty cell, `None`
    /// an absent one), plus extra parameters.
    pub fn import_sparse(
        &self,
        columns: &[&str],
        rows: &[Vec<Option<&str>>],
        extra: &[(&str, &str)],
    ) -> Value {
        let mut owned: Vec<(String, String)> = Vec::new();
        for (i, column) in columns.iter().enumerate() {
            owned.push((format!("field_names[{i}]"), column.to_string()));
        }
        for (r, row) in rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                if let Some(cell) = cell {
                    owned.push((format!("data[{r}][{c}]"), cell.to_string()));
                }
            }
        }
        let mut pairs: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.extend_from_slice(extra);
        self.call("importContacts", &pairs)
    }

    pub fn import(&self, columns: &[&str], rows: &[&[&str]], extra: &[(&str, &str)]) -> Value {
        let rows: Vec<Vec<Option<&str>>> = rows
            .iter()
            .map(|r| r.iter().map(|c| Some(*c)).collect())
            .collect();
        self.import_sparse(columns, &rows, extra)
    }

    /// The `result` of a successful call, failing the test on an error answer.
    pub fn ok(&self, method: &str, pairs: &[(&str, &str)]) -> Value {
        let answer = self.call(method, pairs);
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    /// Lists with these titles, created in order.
    pub fn create_lists<const N: usize>(&self, titles: [&str; N]) -> [i64; N] {
        titles.map(|title| self.create_list(title))
    }

    pub fn create_list(&self, title: &str) -> i64 {
        self.ok("createList", &[("title", title)])["id"]
            .as_i64()
            .expect("a list id")
    }

    pub fn create_field(&self, name: &str) -> i64 {
        self.ok("createField", &[("name", name), ("type", "string")])["id"]
            .as_i64()
            .expect("a field id")
    }

    /// A read-only connection to the server's database, for checking what was stored.
    pub fn db(&self) -> Connection {
        Connection::open_with_flags(&self.db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opens the db")
    }

    /// Everything stored about the contact with this email or phone, in wire terms.
    pub fn contact(&self, address: &str) -> Option<Value> {
        let conn = self.db();
        let id: Option<i64> = conn
            .query_row(
                "SELECT id FROM contacts WHERE email = ?1 OR phone = ?1",
                [address],
                |row| row.get(0),
            )
            .optional()
            .expect("queries contacts");
        id.map(|id| contact_view(&conn, id))
    }

    /// Every contact of every account, for comparing whole states.
    pub fn everything(&self) -> Value {
        let conn = self.db();
        let ids: Vec<i64> = conn
            .prepare("SELECT id FROM contacts ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let tags: Vec<String> = conn
            .prepare("SELECT account_id || ':' || name FROM tags ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        json!({"contacts": ids.iter().map(|id| contact_view(&conn, *id)).collect::<Vec<_>>(), "tags": tags})
    }

    pub fn contact_count(&self) -> i64 {
        self.db()
            .query_row("SELECT count(*) FROM contacts", [], |row| row.get(0))
            .unwrap()
    }

    /// The server's process id, to read its CPU time and memory.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        terminate(child)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            terminate(child);
        }
    }
}

/// A stored code in wire terms, through the server's own vocabulary (schema.sql lists the codes).
fn name<V: Copy>(
    from_code: fn(i64) -> Option<V>,
    wire: fn(V) -> &'static str,
    code: Option<i64>,
) -> Value {
    code.and_then(from_code)
        .map_or(Value::Null, |v| json!(wire(v)))
}

fn contact_view(conn: &Connection, id: i64) -> Value {
    let mut view = conn
        .query_row(
            "SELECT account_id, email, email_status, email_availability, email_add_time, email_request_ip,
                    email_confirm_time, email_confirm_ip, phone, phone_status, phone_availability,
                    phone_add_time, phone_request_ip FROM contacts WHERE id = ?1",
            [id],
            |row| {
                Ok(json!({
                    "id": id,
                    "account": row.get::<_, i64>(0)?,
                    "email": row.get::<_, Option<String>>(1)?,
                    "email_status": name(EmailStatus::from_code, EmailStatus::wire, row.get(2)?),
                    "email_availability": name(Availability::from_code, Availability::wire, row.get(3)?),
                    "email_add_time": row.get::<_, Option<i64>>(4)?,
                    "email_request_ip": row.get::<_, Option<String>>(5)?,
                    "email_confirm_time": row.get::<_, Option<i64>>(6)?,
                    "email_confirm_ip": row.get::<_, Option<String>>(7)?,
                    "phone": row.get::<_, Option<String>>(8)?,
                    "phone_status": name(PhoneStatus::from_code, PhoneStatus::wire, row.get(9)?),
                    "phone_availability": name(Availability::from_code, Availability::wire, row.get(10)?),
                    "phone_add_time": row.get::<_, Option<i64>>(11)?,
                    "phone_request_ip": row.get::<_, Option<String>>(12)?,
                }))
            },
        )
        .expect("reads the contact");
    let (memberships, tags, values): (Memberships, TagSet, FieldValues) = conn
        .query_row(
            "SELECT memberships, tag_ids, field_values FROM contacts WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("reads the packed parts");
    for (channel, key) in [
        (Channel::Email, "email_lists"),
        (Channel::Phone, "phone_lists"),
    ] {
        let lists: Vec<Value> = memberships
            .of(channel)
            .map(|m| json!([m.list_id, m.state.wire(), m.time.0]))
            .collect();
        view[key] = json!(lists);
    }
    let mut tags: Vec<String> = tags
        .ids()
        .iter()
        .map(|tag| {
            conn.query_row("SELECT name FROM tags WHERE id = ?1", [tag], |row| {
                row.get(0)
            })
            .expect("a stored tag id names a tag")
        })
        .collect();
    tags.sort();
    view["tags"] = json!(tags);
    let fields: Vec<(String, String)> = values
        .all()
        .iter()
        .map(|(field, value)| {
            let name: String = conn
                .query_row("SELECT name FROM fields WHERE id = ?1", [field], |row| {
                    row.get(0)
                })
                .expect("a stored field id names a field");
            (name, value.clone())
        })
        .collect();
    let fields: serde_json::Map<String, Value> =
        fields.into_iter().map(|(k, v)| (k, json!(v))).collect();
    view["fields"] = Value::Object(fields);
    view
}
