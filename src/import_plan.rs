//! importContacts before the database: the call's columns (§5.1, §5.2) and each row checked on
//! its own (§5.3), in parallel with rayon. What needs the database's current state (who exists,
//! which lists exist, the status rule, tags already on a contact) is left to the writer.
//!
//! Pure: no I/O, so rows can be validated on any thread and give the same result on all.

use crate::model::{
    Availability, Email, EmailStatus, MAX_TAGS_PER_CONTACT, Phone, PhoneStatus, Timestamp,
    comma_items, normalise_tags, parse_flag,
};
use crate::params::{DataRows, Key, Param, Params};
use crate::store::apply_import::{NewContact, new_contact};
use rayon::prelude::*;
use std::collections::HashSet;

pub const MAX_ROWS: usize = 500;
pub const MAX_FIELD_COLUMNS: usize = 50;
pub use crate::model::MAX_CELL_BYTES;
/// Below this many rows, validating on the calling thread beats handing the rows to rayon.
pub const PARALLEL_THRESHOLD: usize = 256;

/// One of a contact's two channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Phone,
}

impl Channel {
    pub fn code(self) -> i64 {
        match self {
            Channel::Email => 0,
            Channel::Phone => 1,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Phone => "phone",
        }
    }
}

/// What a column of `field_names` stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Email,
    Phone,
    Delete,
    Tags,
    Status(Channel),
    Availability(Channel),
    ListIds(Channel),
    SubscribeTimes(Channel),
    UnsubscribedListIds(Channel),
    ExcludedListIds(Channel),
    AddTime(Channel),
    RequestIp(Channel),
    ConfirmTime,
    ConfirmIp,
    /// A user field, by id.
    Field(i64),
}

impl Column {
    /// The system column of this name (already lower-cased), if it is one.
    pub fn system(name: &str) -> Option<Column> {
        use Channel::{Email as E, Phone as P};
        Some(match name {
            "email" => Column::Email,
            "phone" => Column::Phone,
            "delete" => Column::Delete,
            "tags" => Column::Tags,
            "email_status" => Column::Status(E),
            "phone_status" => Column::Status(P),
            "email_availability" => Column::Availability(E),
            "phone_availability" => Column::Availability(P),
            "email_list_ids" => Column::ListIds(E),
            "phone_list_ids" => Column::ListIds(P),
            "email_subscribe_times" => Column::SubscribeTimes(E),
            "phone_subscribe_times" => Column::SubscribeTimes(P),
            "email_unsubscribed_list_ids" => Column::UnsubscribedListIds(E),
            "phone_unsubscribed_list_ids" => Column::UnsubscribedListIds(P),
            "email_excluded_list_ids" => Column::ExcludedListIds(E),
            "phone_excluded_list_ids" => Column::ExcludedListIds(P),
            "email_add_time" => Column::AddTime(E),
            "phone_add_time" => Column::AddTime(P),
            "email_request_ip" => Column::RequestIp(E),
            "phone_request_ip" => Column::RequestIp(P),
            "email_confirm_time" => Column::ConfirmTime,
            "email_confirm_ip" => Column::ConfirmIp,
            _ => return None,
        })
    }
}

/// A user field of the account as import needs it.
#[derive(Clone, Debug)]
pub struct FieldName {
    pub id: i64,
    pub name: String,
}

/// The columns of one call: the index each has in `field_names`, in order.
#[derive(Debug)]
pub struct Columns {
    entries: Vec<(u64, String, Column)>,
}

impl Columns {
    /// Reads `field_names` against the account's user fields (§5.2's column errors).
    pub fn parse(field_names: &Param, user_fields: &[FieldName]) -> Result<Columns, String> {
        let names = match field_names {
            Param::Array(names) => names,
            Param::Value(_) => {
                return Err("field_names must be an array: field_names[0]=email".into());
            }
        };
        let mut entries = Vec::with_capacity(names.len());
        let mut seen = HashSet::new();
        let mut field_columns = 0;
        for (key, name) in names {
            let Key::Index(index) = key else {
                return Err(format!(
                    "field_names has a non-numeric index \"{}\"",
                    key_text(key)
                ));
            };
            let Some(name) = name.as_value() else {
                return Err(format!("field_names[{index}] must be a column name"));
            };
            let lower = name.trim().to_lowercase();
            let column = match Column::system(&lower) {
                Some(column) => column,
                None => match user_fields.iter().find(|f| f.name.to_lowercase() == lower) {
                    Some(field) => {
                        field_columns += 1;
                        Column::Field(field.id)
                    }
                    None => {
                        return Err(format!(
                            "field_names[{index}]: \"{name}\" is neither a system column nor a user field"
                        ));
                    }
                },
            };
            if !seen.insert(column) {
                return Err(format!("field_names: column \"{name}\" appears twice"));
            }
            entries.push((*index, name.to_string(), column));
        }
        if entries.is_empty() {
            return Err("field_names is empty".into());
        }
        if !seen.contains(&Column::Email) && !seen.contains(&Column::Phone) {
            return Err("field_names must have an email or a phone column".into());
        }
        if field_columns > MAX_FIELD_COLUMNS {
            return Err(format!(
                "field_names has {field_columns} user-field columns, more than {MAX_FIELD_COLUMNS}"
            ));
        }
        Ok(Columns { entries })
    }

    fn position(&self, index: u64) -> Option<usize> {
        self.entries
            .binary_search_by_key(&index, |entry| entry.0)
            .ok()
    }

    /// The user fields this call writes.
    pub fn field_ids(&self) -> Vec<i64> {
        self.entries
            .iter()
            .filter_map(|(_, _, column)| match column {
                Column::Field(id) => Some(*id),
                _ => None,
            })
            .collect()
    }
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Index(index) => index.to_string(),
        Key::Name(name) => name.chars().take(64).collect(),
    }
}

/// A row's problem or notice, as it goes into the answer's `log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowNote {
    pub code: &'static str,
    pub message: String,
}

impl RowNote {
    pub fn new(code: &'static str, message: impl Into<String>) -> RowNote {
        RowNote {
            code,
            message: message.into(),
        }
    }
}

/// What a list column of one channel says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListChanges {
    /// Whether the row has any list column of this channel (matters with `overwrite_lists`).
    pub given: bool,
    pub subscribed: Vec<(i64, Option<Timestamp>)>,
    pub unsubscribed: Vec<i64>,
    pub excluded: Vec<i64>,
}

impl ListChanges {
    pub fn list_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.subscribed
            .iter()
            .map(|(id, _)| *id)
            .chain(self.unsubscribed.iter().copied())
            .chain(self.excluded.iter().copied())
    }
}

/// What a row sets on one channel; `None` is "not given".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelChanges {
    /// The status's stored code (email and phone share the codes of the statuses import sets).
    pub status: Option<i64>,
    pub availability: Option<Availability>,
    pub add_time: Option<Timestamp>,
    pub request_ip: Option<String>,
    pub confirm_time: Option<Timestamp>,
    pub confirm_ip: Option<String>,
    pub lists: ListChanges,
}

/// A valid row, ready for the writer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowChanges {
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub delete: bool,
    pub email_changes: ChannelChanges,
    pub phone_changes: ChannelChanges,
    /// `None`: no tags cell; `Some(empty)`: an empty cell.
    pub tags: Option<Vec<String>>,
    /// Present user-field cells; an empty value clears the field.
    pub fields: Vec<(i64, String)>,
}

/// The outcome of checking one row on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Apply(Box<RowChanges>),
    Reject(RowNote),
    /// Skipped: its address appeared in an earlier row of the call.
    Duplicate(RowNote),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRow {
    /// The row's own index in `data`.
    pub index: u64,
    pub verdict: Verdict,
    /// An applied row's contact were it new (none for a delete), built here rather than by the
    /// writer, which uses it when the row's addresses turn out to be free.
    pub as_new: Option<Box<NewContact>>,
}

/// One row of `data`: its index, and its cell for each column in order (`None`: absent).
pub type RowCells<'a> = (u64, Vec<Option<&'a str>>);

/// A call's `data`: read as rows from its form (`Params::from_urlencoded_rows`), or a tree.
#[derive(Clone, Copy)]
pub enum Data<'a> {
    Rows(&'a DataRows),
    Tree(&'a Param),
}

impl<'a> Data<'a> {
    /// The call's `data`, if it has one.
    pub fn of(params: &'a Params) -> Option<Data<'a>> {
        match params.data_rows() {
            Some(rows) => Some(Data::Rows(rows)),
            None => params.get("data").map(Data::Tree),
        }
    }

    /// How many rows there are, when `data` is an array of them.
    pub fn row_count(self) -> Option<usize> {
        match self {
            Data::Rows(rows) => Some(rows.len()),
            Data::Tree(tree) => tree.as_array().map(|rows| rows.len()),
        }
    }

    /// The rows of cells, checking the shape (§5.2's row and cell errors).
    pub fn split(self, columns: &Columns) -> Result<Vec<RowCells<'a>>, String> {
        match self {
            Data::Rows(rows) => split_data_rows(rows, columns),
            Data::Tree(tree) => split_rows(tree, columns),
        }
    }
}

/// Reads `data` into rows of cells, checking the shape (§5.2's row and cell errors).
fn split_rows<'a>(data: &'a Param, columns: &Columns) -> Result<Vec<RowCells<'a>>, String> {
    let rows = match data {
        Param::Array(rows) => rows,
        Param::Value(_) => return Err("data must be an array of rows: data[0][0]=...".into()),
    };
    if rows.len() > MAX_ROWS {
        return Err(format!(
            "data has {} rows, more than {MAX_ROWS}",
            rows.len()
        ));
    }
    let mut out = Vec::with_capacity(rows.len());
    for (key, row) in rows {
        let Key::Index(index) = key else {
            return Err(format!(
                "data has a non-numeric row index \"{}\"",
                key_text(key)
            ));
        };
        let Param::Array(cells) = row else {
            return Err(format!("data[{index}] must be an array of cells"));
        };
        let mut row_cells = vec![None; columns.entries.len()];
        for (cell_key, cell) in cells {
            let position = match cell_key {
                Key::Index(col) => columns.position(*col),
                Key::Name(_) => None,
            };
            let Some(position) = position else {
                return Err(format!(
                    "data[{index}][{}] is beyond the columns of field_names",
                    key_text(cell_key)
                ));
            };
            let Some(value) = cell.as_value() else {
                return Err(format!(
                    "data[{index}][{}] must be a value",
                    key_text(cell_key)
                ));
            };
            row_cells[position] = Some(value);
        }
        out.push((*index, row_cells));
    }
    Ok(out)
}

/// `split_rows` for `data` read as rows (`Params::from_urlencoded_rows`): the same rows, or the
/// same error. Such rows are arrays of cells with numeric indexes by how they were read, so
/// only the row count and the columns can be wrong.
fn split_data_rows<'a>(data: &'a DataRows, columns: &Columns) -> Result<Vec<RowCells<'a>>, String> {
    if data.len() > MAX_ROWS {
        return Err(format!(
            "data has {} rows, more than {MAX_ROWS}",
            data.len()
        ));
    }
    let mut out = Vec::with_capacity(data.len());
    for (index, cells) in data.rows() {
        let mut row_cells = vec![None; columns.entries.len()];
        for (column, value) in cells {
            let Some(position) = columns.position(column) else {
                return Err(format!(
                    "data[{index}][{column}] is beyond the columns of field_names"
                ));
            };
            row_cells[position] = Some(value);
        }
        out.push((index, row_cells));
    }
    Ok(out)
}

/// Checks every row on its own, then marks duplicates. `parallel` chooses rayon or this thread;
/// the result is the same either way. `now` is the call's time, the default of its add and
/// subscribe times.
pub fn plan_rows(
    columns: &Columns,
    rows: &[RowCells],
    parallel: bool,
    now: Timestamp,
) -> Vec<PlannedRow> {
    let check = |(index, cells): &RowCells| {
        let verdict = check_row(columns, cells);
        let as_new = match &verdict {
            Verdict::Apply(changes) => new_contact(changes, now),
            _ => None,
        };
        PlannedRow {
            index: *index,
            verdict,
            as_new,
        }
    };
    let mut planned: Vec<PlannedRow> = if parallel {
        rows.par_iter().map(check).collect()
    } else {
        rows.iter().map(check).collect()
    };
    mark_duplicates(&mut planned);
    planned
}

/// A later row whose email (or else phone) appeared in an earlier valid row is skipped.
fn mark_duplicates(rows: &mut [PlannedRow]) {
    // foldhash: hashing the call's addresses with SipHash was a twentieth of checking it.
    let mut emails = foldhash::HashSet::with_capacity_and_hasher(rows.len(), Default::default());
    let mut phones = foldhash::HashSet::with_capacity_and_hasher(rows.len(), Default::default());
    for row in rows.iter_mut() {
        let Verdict::Apply(changes) = &row.verdict else {
            continue;
        };
        let email_seen = changes.email.as_ref().is_some_and(|e| emails.contains(e));
        let phone_seen = changes.phone.as_ref().is_some_and(|p| phones.contains(p));
        if email_seen || phone_seen {
            row.as_new = None;
        }
        if email_seen {
            row.verdict =
                Verdict::Duplicate(RowNote::new("duplicate_email", "Duplicate email address"));
        } else if phone_seen {
            row.verdict = Verdict::Duplicate(RowNote::new(
                "duplicate_phone",
                "Duplicate telephone number",
            ));
        } else {
            emails.extend(changes.email.clone());
            phones.extend(changes.phone.clone());
        }
    }
}

/// Checks one row's cells; the first problem found rejects the row.
fn check_row(columns: &Columns, cells: &[Option<&str>]) -> Verdict {
    match build_changes(columns, cells) {
        Ok(changes) => Verdict::Apply(Box::new(changes)),
        Err(note) => Verdict::Reject(note),
    }
}

fn build_changes(columns: &Columns, cells: &[Option<&str>]) -> Result<RowChanges, RowNote> {
    for ((_, name, _), cell) in columns.entries.iter().zip(cells) {
        if cell.is_some_and(|value| value.len() > MAX_CELL_BYTES) {
            return Err(RowNote::new(
                "value_too_long",
                format!("The value of column \"{name}\" is longer than 64 KiB"),
            ));
        }
    }
    let mut changes = RowChanges::default();
    let mut times: [Option<&str>; 2] = [None, None];
    for ((_, name, column), cell) in columns.entries.iter().zip(cells) {
        let Some(raw) = *cell else { continue };
        let value = crate::model::trim(raw);
        match *column {
            Column::Email if !value.is_empty() => {
                let email = Email::parse(value)
                    .ok_or_else(|| RowNote::new("invalid_email", "Invalid email format"))?;
                changes.email = Some(email);
            }
            Column::Phone if !value.is_empty() => {
                let phone = Phone::parse(value).ok_or_else(|| {
                    RowNote::new(
                        "invalid_phone",
                        "Invalid phone number: 7 to 15 digits expected",
                    )
                })?;
                changes.phone = Some(phone);
            }
            Column::Email | Column::Phone => {}
            Column::Delete => {
                changes.delete = parse_delete(value).ok_or_else(|| {
                    RowNote::new(
                        "invalid_delete",
                        format!("delete must be 0, 1 or empty, not \"{value}\""),
                    )
                })?;
            }
            Column::Tags => {
                let tags = normalise_tags(value);
                if tags.len() > MAX_TAGS_PER_CONTACT {
                    return Err(too_many_tags());
                }
                changes.tags = Some(tags);
            }
            Column::Status(channel) if !value.is_empty() => {
                let code = match channel {
                    Channel::Email => EmailStatus::parse_importable(value).map(EmailStatus::code),
                    Channel::Phone => PhoneStatus::parse_importable(value).map(PhoneStatus::code),
                };
                channel_of(&mut changes, channel).status = Some(code.ok_or_else(|| {
                    RowNote::new(
                        "invalid_status",
                        format!("{name}: invalid status \"{value}\""),
                    )
                })?);
            }
            Column::Availability(channel) if !value.is_empty() => {
                let availability = Availability::from_wire(value).ok_or_else(|| {
                    RowNote::new(
                        "invalid_availability",
                        format!("{name}: invalid availability \"{value}\""),
                    )
                })?;
                channel_of(&mut changes, channel).availability = Some(availability);
            }
            Column::ListIds(channel) => {
                let lists = &mut channel_of(&mut changes, channel).lists;
                lists.given = true;
                lists.subscribed = parse_list_ids(name, value, |id| (id, None))?;
            }
            Column::UnsubscribedListIds(channel) => {
                let lists = &mut channel_of(&mut changes, channel).lists;
                lists.given = true;
                lists.unsubscribed = parse_list_ids(name, value, |id| id)?;
            }
            Column::ExcludedListIds(channel) => {
                let lists = &mut channel_of(&mut changes, channel).lists;
                lists.given = true;
                lists.excluded = parse_list_ids(name, value, |id| id)?;
            }
            Column::SubscribeTimes(channel) => {
                channel_of(&mut changes, channel).lists.given = true;
                times[channel.code() as usize] = Some(value);
            }
            Column::AddTime(channel) if !value.is_empty() => {
                channel_of(&mut changes, channel).add_time = Some(parse_time(name, value)?);
            }
            Column::ConfirmTime if !value.is_empty() => {
                changes.email_changes.confirm_time = Some(parse_time(name, value)?);
            }
            Column::RequestIp(channel) if !value.is_empty() => {
                channel_of(&mut changes, channel).request_ip = Some(value.to_string());
            }
            Column::ConfirmIp if !value.is_empty() => {
                changes.email_changes.confirm_ip = Some(value.to_string());
            }
            Column::Status(_)
            | Column::Availability(_)
            | Column::AddTime(_)
            | Column::ConfirmTime
            | Column::RequestIp(_)
            | Column::ConfirmIp => {}
            // User-field values are kept exactly as sent, surrounding spaces included.
            Column::Field(id) => changes.fields.push((id, raw.to_string())),
        }
    }
    if changes.email.is_none() && changes.phone.is_none() {
        return Err(RowNote::new(
            "no_address",
            "The row has neither an email nor a phone",
        ));
    }
    for channel in [Channel::Email, Channel::Phone] {
        let lists = &mut channel_of(&mut changes, channel).lists;
        attach_times(lists, times[channel.code() as usize], channel)?;
        if let Some(twice) = first_repeated(lists.list_ids()) {
            return Err(RowNote::new(
                "invalid_list_id",
                format!(
                    "List {twice} is given twice in the {} list columns",
                    channel.prefix()
                ),
            ));
        }
    }
    // Not imported, as the real service documents for info@, sales@, no-reply@, all@ ...; a
    // delete row may still remove such a contact.
    if !changes.delete && changes.email.as_ref().is_some_and(Email::is_role_address) {
        return Err(RowNote::new(
            "role_address",
            "Role addresses (such as info@, sales@, no-reply@, all@) are not imported",
        ));
    }
    Ok(changes)
}

fn channel_of(changes: &mut RowChanges, channel: Channel) -> &mut ChannelChanges {
    match channel {
        Channel::Email => &mut changes.email_changes,
        Channel::Phone => &mut changes.phone_changes,
    }
}

pub fn too_many_tags() -> RowNote {
    RowNote::new(
        "too_many_tags",
        format!("A contact may have at most {MAX_TAGS_PER_CONTACT} tags"),
    )
}

fn parse_delete(value: &str) -> Option<bool> {
    match value {
        "" | "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// The first id that appeared before it. A row names a few lists, and comparing each with the
/// ones before costs less than hashing them; a long cell is hashed.
fn first_repeated(ids: impl Iterator<Item = i64>) -> Option<i64> {
    let mut seen = [0i64; 16];
    let mut count = 0;
    let mut hashed: HashSet<i64> = HashSet::new();
    for id in ids {
        if count < seen.len() {
            if seen[..count].contains(&id) {
                return Some(id);
            }
            seen[count] = id;
            count += 1;
            continue;
        }
        if hashed.is_empty() {
            hashed.extend(&seen);
        }
        if !hashed.insert(id) {
            return Some(id);
        }
    }
    None
}

/// The list ids of a cell, each made an entry by `entry`.
fn parse_list_ids<T>(
    column: &str,
    value: &str,
    entry: impl Fn(i64) -> T,
) -> Result<Vec<T>, RowNote> {
    comma_items(value)
        .map(|item| {
            item.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .map(&entry)
                .ok_or_else(|| {
                    RowNote::new(
                        "invalid_list_id",
                        format!("{column}: \"{item}\" is not a list id"),
                    )
                })
        })
        .collect()
}

fn parse_time(column: &str, value: &str) -> Result<Timestamp, RowNote> {
    Timestamp::parse(value).ok_or_else(|| {
        RowNote::new(
            "invalid_time",
            format!("{column}: \"{value}\" is not a time"),
        )
    })
}

/// Pairs `*_subscribe_times` with `*_list_ids`: same count and order, or no times at all.
fn attach_times(
    lists: &mut ListChanges,
    times: Option<&str>,
    channel: Channel,
) -> Result<(), RowNote> {
    let Some(times) = times.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let invalid = |why: String| {
        RowNote::new(
            "invalid_subscribe_times",
            format!("{}_subscribe_times: {why}", channel.prefix()),
        )
    };
    // Parsed into the list entries as read; a count that differs undoes them.
    let mut count = 0;
    for item in times.split(',') {
        let time = Timestamp::parse(item)
            .ok_or_else(|| invalid(format!("\"{}\" is not a time", item.trim())))?;
        if let Some((_, slot)) = lists.subscribed.get_mut(count) {
            *slot = Some(time);
        }
        count += 1;
    }
    if count != lists.subscribed.len() {
        return Err(invalid(format!(
            "{count} times for {} list ids",
            lists.subscribed.len()
        )));
    }
    Ok(())
}

/// The call-wide flags of importContacts.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportFlags {
    pub overwrite_tags: bool,
    pub overwrite_lists: bool,
    pub test_mode: bool,
}

impl ImportFlags {
    /// Reads the three flags, naming the one that is not a flag.
    pub fn parse(params: &Params) -> Result<ImportFlags, String> {
        let flag = |name: &str| match params.get(name) {
            None => Ok(false),
            Some(param) => param
                .as_value()
                .and_then(parse_flag)
                .ok_or_else(|| format!("{name} must be 0 or 1")),
        };
        Ok(ImportFlags {
            overwrite_tags: flag("overwrite_tags")?,
            overwrite_lists: flag("overwrite_lists")?,
            test_mode: flag("test_mode")?,
        })
    }
}

/// A whole call, checked and ready for the writer.
#[derive(Debug)]
pub struct ImportPlan {
    pub account_id: i64,
    pub flags: ImportFlags,
    /// When the call was read: the default of its rows' add and subscribe times.
    pub now: Timestamp,
    /// The user fields the call writes; the writer checks they still exist.
    pub field_ids: Vec<i64>,
    pub rows: Vec<PlannedRow>,
}

impl ImportPlan {
    /// How many rows the call carries, for sizing the writer's batches.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_list_id_given_again_is_named() {
        assert_eq!(first_repeated([3, 1, 2].into_iter()), None);
        assert_eq!(first_repeated([3, 1, 2, 1, 3].into_iter()), Some(1));
        // Past the ids compared one by one, the rest are hashed with them.
        let long: Vec<i64> = (1..=40).chain([17, 40]).collect();
        assert_eq!(first_repeated(long.into_iter()), Some(17));
        let long: Vec<i64> = (1..=40).chain([39]).collect();
        assert_eq!(first_repeated(long.into_iter()), Some(39));
        assert_eq!(first_repeated(1..=100), None);
    }

    const COLUMNS: [&str; 12] = [
        "email",
        "phone",
        "tags",
        "email_status",
        "phone_availability",
        "email_list_ids",
        "email_subscribe_times",
        "email_excluded_list_ids",
        "email_add_time",
        "delete",
        "City",
        "email_confirm_ip",
    ];

    fn columns() -> Columns {
        let names = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, name)| (Key::Index(i as u64), Param::Value(name.to_string())))
            .collect();
        let fields = [FieldName {
            id: 7,
            name: "city".into(),
        }];
        Columns::parse(&Param::Array(names), &fields).expect("valid columns")
    }

    /// Cells drawn from values that are valid, invalid, empty or absent for some column, and
    /// addresses from a small pool so that duplicates are frequent.
    fn cell() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some(String::new())),
            (0..6u8).prop_map(|i| Some(format!("user{i}@example.com"))),
            (0..6u8).prop_map(|i| Some(format!("+1555000000{i}"))),
            prop::sample::select(vec![
                "bad",
                "new",
                "active",
                "invited",
                "1",
                "2",
                "0",
                "1,2",
                "2,2",
                "x",
                "2023-01-01",
                "2023-01-01,2023-01-02",
                "nope",
                "a,b,c",
                "spam_folder",
                "a,b,c,d,e,f,g,h,i,j,k",
            ])
            .prop_map(|s| Some(s.to_string())),
        ]
    }

    fn rows() -> impl Strategy<Value = Vec<Vec<Option<String>>>> {
        prop::collection::vec(prop::collection::vec(cell(), COLUMNS.len()), 0..120)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// §5.6: the result is the same whatever number of threads validated the rows.
        #[test]
        fn parallel_validation_equals_sequential(rows in rows()) {
            let columns = columns();
            let cells: Vec<(u64, Vec<Option<&str>>)> = rows
                .iter()
                .enumerate()
                .map(|(i, row)| (i as u64 * 3, row.iter().map(|c| c.as_deref()).collect()))
                .collect();
            let sequential = plan_rows(&columns, &cells, false, Timestamp(1_700_000_000));
            let parallel = plan_rows(&columns, &cells, true, Timestamp(1_700_000_000));
            prop_assert_eq!(sequential, parallel);
        }
    }

    fn check(cells: &[(&str, &str)], expected: &str) {
        let columns = columns();
        let mut row = vec![None; COLUMNS.len()];
        for (name, value) in cells {
            let at = COLUMNS
                .iter()
                .position(|c| c == name)
                .expect("a test column");
            row[at] = Some(*value);
        }
        let planned = plan_rows(&columns, &[(0, row)], false, Timestamp(1_700_000_000));
        let got = match &planned[0].verdict {
            Verdict::Apply(_) => "apply",
            Verdict::Reject(note) | Verdict::Duplicate(note) => note.code,
        };
        assert_eq!(got, expected, "{cells:?}");
    }

    #[test]
    fn row_checks() {
        check(&[("email", "a@b.cd")], "apply");
        check(&[("email", "a@b")], "invalid_email");
        check(&[("email", "")], "no_address");
        check(&[("phone", "123")], "invalid_phone");
        check(
            &[("email", "a@b.cd"), ("email_status", "blocked")],
            "invalid_status",
        );
        check(&[("email", "a@b.cd"), ("email_status", "")], "apply");
        check(
            &[("email", "a@b.cd"), ("phone_availability", "x")],
            "invalid_availability",
        );
        check(
            &[("email", "a@b.cd"), ("email_list_ids", "1,x")],
            "invalid_list_id",
        );
        check(
            &[
                ("email", "a@b.cd"),
                ("email_list_ids", "1"),
                ("email_excluded_list_ids", "1"),
            ],
            "invalid_list_id",
        );
        check(
            &[
                ("email", "a@b.cd"),
                ("email_list_ids", "1,2"),
                ("email_subscribe_times", "2023-01-01"),
            ],
            "invalid_subscribe_times",
        );
        check(
            &[
                ("email", "a@b.cd"),
                ("email_list_ids", "1"),
                ("email_subscribe_times", "2023-01-01"),
            ],
            "apply",
        );
        check(
            &[("email", "a@b.cd"), ("email_add_time", "x")],
            "invalid_time",
        );
        check(&[("email", "a@b.cd"), ("delete", "x")], "invalid_delete");
        check(
            &[("email", "a@b.cd"), ("tags", "a,b,c,d,e,f,g,h,i,j,k")],
            "too_many_tags",
        );
        check(
            &[("email", "a@b.cd"), ("tags", "a,b,c,d,e,f,g,h,i,j,J")],
            "apply",
        );
        check(
            &[
                ("email", "a@b.cd"),
                ("City", &"x".repeat(MAX_CELL_BYTES + 1)),
            ],
            "value_too_long",
        );
    }
}
