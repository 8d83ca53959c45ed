//! Double opt-in: the confirmations subscribe asks for (`double_optin=0`), kept as the outbox
//! of what the real service would have emailed, and confirming them as the person clicking
//! the link would (spec §7 subscribe, §9).

use crate::error::Result;
use crate::import_plan::Channel;
use crate::model::{EmailStatus, MembershipState, Timestamp};
use crate::store::contact_rows::{self, Db, select_found};
use crate::store::packed::Membership;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Outbox entries one listing answers at most.
pub const MAX_LISTED: i64 = 1000;

/// Records that `email` (contact `contact_id`) was invited to `list_ids`; answers the token of
/// its confirmation link.
pub fn record(
    db: &Db,
    account_id: i64,
    contact_id: i64,
    email: &str,
    list_ids: &[i64],
    now: Timestamp,
) -> Result<String> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let lists: Vec<String> = list_ids.iter().map(i64::to_string).collect();
    db.stmt(
        "INSERT INTO confirmations (token, account_id, contact_id, email, list_ids, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        token,
        account_id,
        contact_id,
        email,
        lists.join(","),
        now.0
    ])?;
    Ok(token)
}

/// Which confirmations to confirm.
#[derive(Clone, Debug)]
pub enum Selector {
    /// One link.
    Token(String),
    /// Every pending confirmation of an address (an email, or a phone whose contact's email
    /// was invited), in one account or in all.
    Address {
        account: Option<String>,
        email: Option<String>,
        phone: Option<String>,
    },
}

/// What confirming did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Confirmed {
    /// Tokens confirmed now.
    pub confirmed: Vec<String>,
    /// Tokens that were confirmed before (confirming twice is harmless).
    pub already_confirmed: Vec<String>,
}

impl Confirmed {
    pub fn found_nothing(&self) -> bool {
        self.confirmed.is_empty() && self.already_confirmed.is_empty()
    }
}

/// Confirms the selected confirmations: the contact's email memberships in the invited lists
/// go from `invited` to `active`, its email status becomes `active` (unless blocked), and the
/// confirm time and IP are set, as the real service leaves a contact whose link was clicked.
pub fn confirm(
    conn: &Connection,
    selector: &Selector,
    ip: &str,
    now: Timestamp,
) -> Result<Confirmed> {
    let db = Db::new(conn);
    let found: Vec<Pending> = match selector {
        Selector::Token(token) => conn
            .prepare_cached(
                "SELECT token, contact_id, email, list_ids, confirmed_at, account_id
                 FROM confirmations WHERE token = ?1",
            )?
            .query_map([token], read_pending)?
            .collect::<rusqlite::Result<_>>()?,
        Selector::Address {
            account,
            email,
            phone,
        } => conn
            .prepare_cached(
                "SELECT c.token, c.contact_id, c.email, c.list_ids, c.confirmed_at, c.account_id
                 FROM confirmations c JOIN accounts a ON a.id = c.account_id
                 WHERE (?1 IS NULL OR a.login = ?1)
                   AND (?2 IS NULL OR c.email = ?2)
                   AND (?3 IS NULL OR c.contact_id IN
                        (SELECT id FROM contacts WHERE phone = ?3))
                 ORDER BY c.rowid",
            )?
            .query_map(params![account, email, phone], read_pending)?
            .collect::<rusqlite::Result<_>>()?,
    };
    let mut outcome = Confirmed::default();
    for (token, contact_id, email, list_ids, confirmed_at, account_id) in found {
        if confirmed_at.is_some() {
            outcome.already_confirmed.push(token);
            continue;
        }
        let contact = db
            .stmt(concat!(select_found!(), " WHERE id = ?1"))?
            .query_row([contact_id], contact_rows::read_found)
            .optional()?;
        // A contact deleted since, or whose email changed, has nothing left to confirm; the
        // link still counts as clicked.
        if let Some(before) = contact.filter(|c| c.email.address.as_deref() == Some(&email)) {
            let mut after = before.clone();
            for list_id in list_ids.split(',').filter_map(|id| id.parse::<i64>().ok()) {
                if let Some(m) = after.memberships.get(Channel::Email, list_id)
                    && m.state == MembershipState::Invited
                {
                    let time = m.time;
                    after.memberships.put(Membership {
                        channel: Channel::Email,
                        list_id,
                        state: MembershipState::Active,
                        time,
                    });
                }
            }
            if after.email.status != Some(EmailStatus::Blocked.code()) {
                after.email.status = Some(EmailStatus::Active.code());
            }
            after.email.confirm_time = Some(now.0);
            after.email.confirm_ip = Some(ip.to_string());
            contact_rows::save_contact(&db, account_id, &before, &after)?;
        }
        conn.prepare_cached(
            "UPDATE confirmations SET confirmed_at = ?2, confirmed_ip = ?3 WHERE token = ?1",
        )?
        .execute(params![token, now.0, ip])?;
        outcome.confirmed.push(token);
    }
    db.finish()?;
    Ok(outcome)
}

/// token, contact id, email, list ids, confirmed at, account id.
type Pending = (String, i64, String, String, Option<i64>, i64);

fn read_pending(row: &rusqlite::Row) -> rusqlite::Result<Pending> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

/// One outbox entry, as `/_local/outbox` lists it (the link is added by the caller, who
/// knows the server's address).
#[derive(Clone, Debug, Serialize)]
pub struct OutboxEntry {
    pub token: String,
    pub to: String,
    pub account: String,
    pub contact_id: i64,
    pub list_ids: Vec<i64>,
    pub created: String,
    pub confirmed: Option<String>,
    pub confirmed_ip: Option<String>,
}

/// The newest confirmations first, of one address and/or one account when given.
pub fn outbox(
    conn: &Connection,
    email: Option<&str>,
    account: Option<&str>,
    pending_only: bool,
    limit: i64,
) -> Result<Vec<OutboxEntry>> {
    let mut statement = conn.prepare_cached(
        "SELECT c.token, c.email, a.login, c.contact_id, c.list_ids, c.created_at,
                c.confirmed_at, c.confirmed_ip
         FROM confirmations c JOIN accounts a ON a.id = c.account_id
         WHERE (?1 IS NULL OR c.email = ?1) AND (?2 IS NULL OR a.login = ?2)
           AND (?3 = 0 OR c.confirmed_at IS NULL)
         ORDER BY c.rowid DESC LIMIT ?4",
    )?;
    let rows = statement.query_map(
        params![email, account, pending_only, limit.clamp(0, MAX_LISTED)],
        |row| {
            let lists: String = row.get(4)?;
            Ok(OutboxEntry {
                token: row.get(0)?,
                to: row.get(1)?,
                account: row.get(2)?,
                contact_id: row.get(3)?,
                list_ids: lists.split(',').filter_map(|id| id.parse().ok()).collect(),
                created: Timestamp(row.get(5)?).wire(),
                confirmed: row.get::<_, Option<i64>>(6)?.map(|t| Timestamp(t).wire()),
                confirmed_ip: row.get(7)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
