//! The writer's small writes: accounts, lists, fields, tags and export tasks. Called only from
//! the writer thread (see `writer.rs`), inside its transaction.

use crate::error::{Error, ErrorCode, Result};
use crate::model::Timestamp;
use crate::store::catalog_cleanup::{self, Kind};
use crate::store::db::{Account, AccountRecord, ExportTask};
use crate::store::writer::UpsertedAccount;
use rusqlite::{Connection, OptionalExtension, params};

pub fn create_export_task(
    conn: &Connection,
    task: &ExportTask,
    max_unfinished: usize,
) -> Result<()> {
    if crate::store::db::unfinished_export_count(conn, task.account_id)? >= max_unfinished {
        return Err(Error::Overloaded(
            "this account's earlier exports are still being written",
        ));
    }
    conn.prepare_cached(
        "INSERT INTO export_tasks (uuid, account_id, status, request, notify_url, base_url, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        task.uuid,
        task.account_id,
        task.status,
        task.request,
        task.notify_url,
        task.base_url,
        Timestamp::now().0
    ])?;
    Ok(())
}

pub fn expire_export_tasks(conn: &Connection, created_before: i64) -> Result<Vec<String>> {
    let tokens: Vec<String> = conn
        .prepare_cached(
            "SELECT file_token FROM export_tasks WHERE created_at < ?1 AND file_token IS NOT NULL",
        )?
        .query_map([created_before], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    conn.prepare_cached("DELETE FROM export_tasks WHERE created_at < ?1")?
        .execute([created_before])?;
    Ok(tokens)
}

pub fn forget_export_task(conn: &Connection, uuid: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM export_tasks WHERE uuid = ?1")?
        .execute([uuid])?;
    Ok(())
}

/// createList's arguments, checked.
pub struct NewList {
    pub account_id: i64,
    pub title: String,
    pub before_subscribe_url: String,
    pub after_subscribe_url: String,
}

/// updateList's arguments, checked; `None` leaves a value as it is.
pub struct ListUpdate {
    pub account_id: i64,
    pub list_id: i64,
    pub title: Option<String>,
    pub before_subscribe_url: Option<String>,
    pub after_subscribe_url: Option<String>,
}

/// createField's arguments, checked.
pub struct NewField {
    pub account_id: i64,
    pub name: String,
    pub kind: String,
    pub public_name: String,
}

/// updateField's arguments, checked; no public name leaves it as it is.
pub struct FieldUpdate {
    pub account_id: i64,
    pub field_id: i64,
    pub name: String,
    pub public_name: Option<String>,
}

/// Refuses a title another list of the account (other than `except`) already has.
fn check_title_free(conn: &Connection, account_id: i64, title: &str, except: i64) -> Result<()> {
    let taken = conn
        .prepare_cached("SELECT 1 FROM lists WHERE account_id = ?1 AND title = ?2 AND id <> ?3")?
        .exists(params![account_id, title, except])?;
    if taken {
        return Err(Error::invalid_arg(format!(
            "title: a list titled \"{title}\" already exists"
        )));
    }
    Ok(())
}

/// What an id names, for checking that it belongs to the account.
#[derive(Clone, Copy)]
enum Owned {
    List,
    Field,
    Tag,
}

/// Refuses an id that is not one of the account's (another account's ids look the same as ids
/// that do not exist: `invalid_arg`, naming the parameter).
fn check_owned(conn: &Connection, account_id: i64, what: Owned, id: i64) -> Result<()> {
    let (sql, refusal) = match what {
        Owned::List => (
            "SELECT 1 FROM lists WHERE id = ?1 AND account_id = ?2",
            "list_id: no list",
        ),
        Owned::Field => (
            "SELECT 1 FROM fields WHERE id = ?1 AND account_id = ?2",
            "id: no field",
        ),
        Owned::Tag => (
            "SELECT 1 FROM tags WHERE id = ?1 AND account_id = ?2",
            "id: no tag",
        ),
    };
    if !conn.prepare_cached(sql)?.exists(params![id, account_id])? {
        return Err(Error::invalid_arg(format!("{refusal} {id}")));
    }
    Ok(())
}

pub fn create_list(conn: &Connection, list: &NewList) -> Result<i64> {
    check_title_free(conn, list.account_id, &list.title, 0)?;
    conn.prepare_cached(
        "INSERT INTO lists (account_id, title, before_subscribe_url, after_subscribe_url)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        list.account_id,
        list.title,
        list.before_subscribe_url,
        list.after_subscribe_url
    ])?;
    Ok(conn.last_insert_rowid())
}

pub fn update_list(conn: &Connection, update: &ListUpdate) -> Result<()> {
    check_owned(conn, update.account_id, Owned::List, update.list_id)?;
    if let Some(title) = &update.title {
        check_title_free(conn, update.account_id, title, update.list_id)?;
    }
    conn.prepare_cached(
        "UPDATE lists SET title = coalesce(?2, title),
            before_subscribe_url = coalesce(?3, before_subscribe_url),
            after_subscribe_url = coalesce(?4, after_subscribe_url)
         WHERE id = ?1",
    )?
    .execute(params![
        update.list_id,
        update.title,
        update.before_subscribe_url,
        update.after_subscribe_url
    ])?;
    Ok(())
}

/// Deletes the list and every membership in it; the contacts stay.
pub fn delete_list(conn: &Connection, account_id: i64, list_id: i64) -> Result<()> {
    check_owned(conn, account_id, Owned::List, list_id)?;
    conn.prepare_cached("DELETE FROM lists WHERE id = ?1")?
        .execute([list_id])?;
    catalog_cleanup::record(conn, Kind::List, list_id, account_id)
}

/// Refuses a name another field of the account (other than `except`) already has, in any case.
fn check_field_name_free(
    conn: &Connection,
    account_id: i64,
    name: &str,
    except: i64,
) -> Result<()> {
    let taken = conn
        .prepare_cached(
            "SELECT 1 FROM fields WHERE account_id = ?1 AND name = ?2 COLLATE NOCASE AND id <> ?3",
        )?
        .exists(params![account_id, name, except])?;
    if taken {
        return Err(Error::invalid_arg(format!(
            "name: a field named \"{name}\" already exists"
        )));
    }
    Ok(())
}

pub fn create_field(conn: &Connection, field: &NewField) -> Result<i64> {
    check_field_name_free(conn, field.account_id, &field.name, 0)?;
    let view_pos: i64 = conn
        .prepare_cached("SELECT coalesce(max(view_pos), 0) + 1 FROM fields WHERE account_id = ?1")?
        .query_row([field.account_id], |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO fields (account_id, name, type, public_name, is_visible, view_pos)
         VALUES (?1, ?2, ?3, ?4, 1, ?5)",
    )?
    .execute(params![
        field.account_id,
        field.name,
        field.kind,
        field.public_name,
        view_pos
    ])?;
    Ok(conn.last_insert_rowid())
}

pub fn update_field(conn: &Connection, update: &FieldUpdate) -> Result<i64> {
    check_owned(conn, update.account_id, Owned::Field, update.field_id)?;
    check_field_name_free(conn, update.account_id, &update.name, update.field_id)?;
    conn.prepare_cached(
        "UPDATE fields SET name = ?2, public_name = coalesce(?3, public_name) WHERE id = ?1",
    )?
    .execute(params![update.field_id, update.name, update.public_name])?;
    Ok(update.field_id)
}

/// Deletes the field and every value of it.
pub fn delete_field(conn: &Connection, account_id: i64, field_id: i64) -> Result<()> {
    check_owned(conn, account_id, Owned::Field, field_id)?;
    conn.prepare_cached("DELETE FROM fields WHERE id = ?1")?
        .execute([field_id])?;
    catalog_cleanup::record(conn, Kind::Field, field_id, account_id)
}

/// Deletes the tag; it leaves every contact that had it.
pub fn delete_tag(conn: &Connection, account_id: i64, tag_id: i64) -> Result<()> {
    check_owned(conn, account_id, Owned::Tag, tag_id)?;
    conn.prepare_cached("DELETE FROM tags WHERE id = ?1")?
        .execute([tag_id])?;
    catalog_cleanup::record(conn, Kind::Tag, tag_id, account_id)
}

pub fn update_export_task(
    conn: &Connection,
    uuid: &str,
    status: &str,
    file_token: Option<String>,
    error: Option<String>,
) -> Result<()> {
    let updated = conn
        .prepare_cached(
            "UPDATE export_tasks SET status = ?2, file_token = ?3, error = ?4 WHERE uuid = ?1",
        )?
        .execute(params![uuid, status, file_token, error])?;
    if updated == 0 {
        return Err(Error::invalid_arg(format!(
            "export task {uuid} no longer exists"
        )));
    }
    Ok(())
}

pub fn upsert_account(
    conn: &Connection,
    login: &str,
    api_key: Option<String>,
    contact_limit: Option<i64>,
) -> Result<UpsertedAccount> {
    if let Some(key) = &api_key {
        let holder: Option<String> = conn
            .prepare_cached("SELECT login FROM accounts WHERE api_key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?;
        if holder.is_some_and(|holder| holder != login) {
            return Err(Error::api(
                ErrorCode::InvalidArg,
                format!("that key already belongs to another account than \"{login}\""),
            ));
        }
    }
    let existing: Option<(i64, String, Option<i64>)> = conn
        .prepare_cached("SELECT id, api_key, contact_limit FROM accounts WHERE login = ?1")?
        .query_row([login], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let (id, key, limit, created) = match existing {
        Some((id, old_key, old_limit)) => {
            let key = api_key.unwrap_or(old_key);
            let limit = contact_limit.or(old_limit);
            conn.prepare_cached(
                "UPDATE accounts SET api_key = ?2, contact_limit = ?3 WHERE id = ?1",
            )?
            .execute(params![id, key, limit])?;
            (id, key, limit, false)
        }
        None => {
            let key = api_key.unwrap_or_else(new_api_key);
            conn.prepare_cached(
                "INSERT INTO accounts (login, api_key, contact_limit) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![login, key, contact_limit])?;
            (conn.last_insert_rowid(), key, contact_limit, true)
        }
    };
    Ok(UpsertedAccount {
        record: AccountRecord {
            account: Account {
                id,
                login: login.to_string(),
                contact_limit: limit,
            },
            api_key: key,
        },
        created,
    })
}

/// A fresh key: 128 random bits, as 32 hex digits.
pub fn new_api_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
