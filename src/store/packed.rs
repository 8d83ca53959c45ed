//! What a contact has besides its channels — list memberships, tags, user-field values — packed
//! into three BLOB columns of its own row. One row per contact instead of about ten B-tree
//! entries (a row and an index entry per membership, per tag, per value) made a contact's
//! storage less than half as large and its import about twice as fast; every read of these
//! parts already went through the contact. See ARCHITECTURE.md, "Storage".
//!
//! Encodings (an empty set is stored as NULL):
//! - memberships: per membership, ordered by channel then list id: one byte
//!   `channel * 16 + state`, the list id as a varint, the time as a zigzag varint;
//! - tags: the tag ids in ascending order, as varints;
//! - field values: per value, ordered by field id: the field id and the byte length as varints,
//!   then the UTF-8 text.

use crate::import_plan::Channel;
use crate::model::{MembershipState, Timestamp};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// One channel's membership in one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub channel: Channel,
    pub list_id: i64,
    pub state: MembershipState,
    pub time: Timestamp,
}

/// A contact's memberships, ordered by channel, then list id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memberships(Vec<Membership>);

impl Memberships {
    pub fn all(&self) -> &[Membership] {
        &self.0
    }

    /// One channel's memberships, by list id.
    pub fn of(&self, channel: Channel) -> impl Iterator<Item = &Membership> {
        self.0.iter().filter(move |m| m.channel == channel)
    }

    pub fn get(&self, channel: Channel, list_id: i64) -> Option<&Membership> {
        self.position(channel, list_id).ok().map(|at| &self.0[at])
    }

    /// Sets a membership's state and time, adding it if the channel is not in the list.
    pub fn put(&mut self, membership: Membership) {
        match self.position(membership.channel, membership.list_id) {
            Ok(at) => self.0[at] = membership,
            Err(at) => self.0.insert(at, membership),
        }
    }

    pub fn remove(&mut self, channel: Channel, list_id: i64) {
        if let Ok(at) = self.position(channel, list_id) {
            self.0.remove(at);
        }
    }

    /// Keeps only the memberships `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&Membership) -> bool) {
        self.0.retain(keep);
    }

    /// Whether a channel (or either, for `None`) is "in" the list: active or unsubscribed (§4).
    pub fn in_list(&self, list_id: i64, channel: Option<Channel>) -> bool {
        self.0.iter().any(|m| {
            m.list_id == list_id
                && channel.is_none_or(|c| c == m.channel)
                && matches!(
                    m.state,
                    MembershipState::Active | MembershipState::Unsubscribed
                )
        })
    }

    /// `in_list` on a stored column, without building the set: filtered export walks and counts
    /// test every contact of an account. `None` when the bytes are damaged.
    pub fn stored_in_list(
        column: ValueRef<'_>,
        list_id: i64,
        channel: Option<Channel>,
    ) -> Option<bool> {
        let mut bytes = match column {
            ValueRef::Null => return Some(false),
            ValueRef::Blob(bytes) => bytes,
            _ => return None,
        };
        let mut found = false;
        while let Some((&head, rest)) = bytes.split_first() {
            bytes = rest;
            let (channel_code, state) = (i64::from(head / 16), i64::from(head % 16));
            let list = take_varint(&mut bytes)? as i64;
            take_varint(&mut bytes)?;
            found |= list == list_id
                && channel.is_none_or(|c| c.code() == channel_code)
                && (state == MembershipState::Active.code()
                    || state == MembershipState::Unsubscribed.code());
        }
        Some(found)
    }

    fn position(&self, channel: Channel, list_id: i64) -> Result<usize, usize> {
        self.0
            .binary_search_by_key(&(channel.code(), list_id), |m| {
                (m.channel.code(), m.list_id)
            })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for m in &self.0 {
            out.push((m.channel.code() * 16 + m.state.code()) as u8);
            put_varint(out, m.list_id as u64);
            put_varint(out, zigzag(m.time.0));
        }
    }

    fn decode(mut bytes: &[u8]) -> Option<Memberships> {
        let mut all = Vec::new();
        while let Some((&head, rest)) = bytes.split_first() {
            bytes = rest;
            let channel = match head / 16 {
                0 => Channel::Email,
                1 => Channel::Phone,
                _ => return None,
            };
            let state = MembershipState::from_code(i64::from(head % 16))?;
            let list_id = take_varint(&mut bytes)? as i64;
            let time = Timestamp(unzigzag(take_varint(&mut bytes)?));
            all.push(Membership {
                channel,
                list_id,
                state,
                time,
            });
        }
        Some(Memberships(all))
    }
}

/// A contact's tag ids, ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagSet(Vec<i64>);

impl TagSet {
    pub fn ids(&self) -> &[i64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, tag_id: i64) -> bool {
        self.0.binary_search(&tag_id).is_ok()
    }

    pub fn insert(&mut self, tag_id: i64) {
        if let Err(at) = self.0.binary_search(&tag_id) {
            self.0.insert(at, tag_id);
        }
    }

    pub fn remove(&mut self, tag_id: i64) {
        if let Ok(at) = self.0.binary_search(&tag_id) {
            self.0.remove(at);
        }
    }

    /// `contains` on a stored column, without building the set. `None` when the bytes are
    /// damaged.
    pub fn stored_contains(column: ValueRef<'_>, tag_id: i64) -> Option<bool> {
        let mut bytes = match column {
            ValueRef::Null => return Some(false),
            ValueRef::Blob(bytes) => bytes,
            _ => return None,
        };
        while !bytes.is_empty() {
            if take_varint(&mut bytes)? as i64 == tag_id {
                return Some(true);
            }
        }
        Some(false)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for id in &self.0 {
            put_varint(out, *id as u64);
        }
    }

    fn decode(mut bytes: &[u8]) -> Option<TagSet> {
        let mut ids = Vec::new();
        while !bytes.is_empty() {
            ids.push(take_varint(&mut bytes)? as i64);
        }
        ids.is_sorted().then_some(TagSet(ids))
    }
}

impl FromIterator<i64> for TagSet {
    fn from_iter<I: IntoIterator<Item = i64>>(ids: I) -> TagSet {
        let mut set = TagSet::default();
        for id in ids {
            set.insert(id);
        }
        set
    }
}

/// A contact's user-field values, by field id; a field without a value has no entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldValues(Vec<(i64, String)>);

impl FieldValues {
    pub fn all(&self) -> &[(i64, String)] {
        &self.0
    }

    pub fn get(&self, field_id: i64) -> Option<&str> {
        self.position(field_id).ok().map(|at| self.0[at].1.as_str())
    }

    /// Sets a value; an empty value clears it.
    pub fn set(&mut self, field_id: i64, value: &str) {
        match (self.position(field_id), value.is_empty()) {
            (Ok(at), true) => {
                self.0.remove(at);
            }
            (Ok(at), false) => value.clone_into(&mut self.0[at].1),
            (Err(_), true) => {}
            (Err(at), false) => self.0.insert(at, (field_id, value.to_string())),
        }
    }

    pub fn has(&self, field_id: i64) -> bool {
        self.position(field_id).is_ok()
    }

    fn position(&self, field_id: i64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&field_id, |(id, _)| *id)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for (id, value) in &self.0 {
            put_varint(out, *id as u64);
            put_varint(out, value.len() as u64);
            out.extend_from_slice(value.as_bytes());
        }
    }

    fn decode(mut bytes: &[u8]) -> Option<FieldValues> {
        let mut values = Vec::new();
        while !bytes.is_empty() {
            let id = take_varint(&mut bytes)? as i64;
            let len = usize::try_from(take_varint(&mut bytes)?).ok()?;
            let text = bytes.get(..len)?;
            values.push((id, std::str::from_utf8(text).ok()?.to_string()));
            bytes = &bytes[len..];
        }
        values
            .is_sorted_by_key(|(id, _)| *id)
            .then_some(FieldValues(values))
    }
}

/// Column values for the three packed sets: SQL NULL when empty, else a BLOB.
macro_rules! packed_column {
    ($set:ty, $what:literal) => {
        impl ToSql for $set {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                if self.0.is_empty() {
                    return Ok(ToSqlOutput::from(rusqlite::types::Null));
                }
                let mut bytes = Vec::with_capacity(16);
                self.encode(&mut bytes);
                Ok(ToSqlOutput::from(bytes))
            }
        }

        impl FromSql for $set {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                match value {
                    ValueRef::Null => Ok(<$set>::default()),
                    ValueRef::Blob(bytes) => <$set>::decode(bytes).ok_or_else(|| {
                        FromSqlError::Other(concat!("damaged packed ", $what).into())
                    }),
                    _ => Err(FromSqlError::InvalidType),
                }
            }
        }
    };
}

packed_column!(Memberships, "memberships");
packed_column!(TagSet, "tags");
packed_column!(FieldValues, "field values");

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn blob(value: &impl ToSql) -> Option<Vec<u8>> {
        match value.to_sql().unwrap() {
            ToSqlOutput::Owned(rusqlite::types::Value::Blob(bytes)) => Some(bytes),
            ToSqlOutput::Owned(rusqlite::types::Value::Null) => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn back<T: FromSql>(bytes: &Option<Vec<u8>>) -> FromSqlResult<T> {
        match bytes {
            Some(bytes) => T::column_result(ValueRef::Blob(bytes)),
            None => T::column_result(ValueRef::Null),
        }
    }

    #[test]
    fn empty_sets_are_null() {
        assert_eq!(blob(&Memberships::default()), None);
        assert_eq!(blob(&TagSet::default()), None);
        assert_eq!(blob(&FieldValues::default()), None);
        assert_eq!(back::<TagSet>(&None).unwrap(), TagSet::default());
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics() {
        // An unknown channel, an unknown state, a varint cut short.
        for bytes in [vec![0x20, 1, 1], vec![0x07, 1, 1], vec![0, 0xff]] {
            assert!(back::<Memberships>(&Some(bytes)).is_err());
        }
        // Unsorted ids, a varint cut short.
        for bytes in [vec![5, 3], vec![0x80]] {
            assert!(back::<TagSet>(&Some(bytes)).is_err());
        }
        // Invalid UTF-8, a length past the end, unsorted ids.
        for bytes in [vec![1, 2, 0xff, 0xfe], vec![1, 5, b'a'], vec![2, 0, 1, 0]] {
            assert!(back::<FieldValues>(&Some(bytes)).is_err());
        }
        assert!(back::<TagSet>(&Some(vec![])).is_ok());
    }

    #[test]
    fn stored_tests_agree_with_the_sets() {
        let mut set = Memberships::default();
        for (channel, list_id, state) in [
            (Channel::Email, 3, MembershipState::Active),
            (Channel::Email, 4, MembershipState::Excluded),
            (Channel::Phone, 5, MembershipState::Unsubscribed),
        ] {
            set.put(Membership {
                channel,
                list_id,
                state,
                time: Timestamp(1),
            });
        }
        let bytes = blob(&set).unwrap();
        for list_id in [3, 4, 5, 6] {
            for channel in [None, Some(Channel::Email), Some(Channel::Phone)] {
                assert_eq!(
                    Memberships::stored_in_list(ValueRef::Blob(&bytes), list_id, channel),
                    Some(set.in_list(list_id, channel)),
                    "list {list_id} {channel:?}"
                );
            }
        }
        let tags: TagSet = [2, 300].into_iter().collect();
        let bytes = blob(&tags).unwrap();
        for tag in [2, 3, 300] {
            assert_eq!(
                TagSet::stored_contains(ValueRef::Blob(&bytes), tag),
                Some(tags.contains(tag))
            );
        }
        assert_eq!(TagSet::stored_contains(ValueRef::Null, 2), Some(false));
        assert_eq!(TagSet::stored_contains(ValueRef::Blob(&[0x80]), 2), None);
        assert_eq!(
            Memberships::stored_in_list(ValueRef::Blob(&[0, 1]), 1, None),
            None
        );
    }

    #[test]
    fn memberships_keep_order_and_replace() {
        let mut set = Memberships::default();
        let at = |channel, list_id, state, time| Membership {
            channel,
            list_id,
            state,
            time: Timestamp(time),
        };
        set.put(at(Channel::Phone, 3, MembershipState::Active, 10));
        set.put(at(Channel::Email, 9, MembershipState::Excluded, -5));
        set.put(at(Channel::Email, 2, MembershipState::Active, 1));
        set.put(at(Channel::Email, 9, MembershipState::Unsubscribed, 7));
        let lists: Vec<(Channel, i64)> = set.all().iter().map(|m| (m.channel, m.list_id)).collect();
        assert_eq!(
            lists,
            [
                (Channel::Email, 2),
                (Channel::Email, 9),
                (Channel::Phone, 3)
            ]
        );
        assert!(set.in_list(9, Some(Channel::Email)));
        assert!(!set.in_list(9, Some(Channel::Phone)));
        assert!(set.in_list(3, None));
        set.remove(Channel::Email, 2);
        assert_eq!(set.of(Channel::Email).count(), 1);
    }

    fn membership() -> impl Strategy<Value = Membership> {
        (any::<bool>(), 0i64..i64::MAX, 0i64..4, any::<i64>()).prop_map(
            |(phone, list_id, state, time)| Membership {
                channel: if phone {
                    Channel::Phone
                } else {
                    Channel::Email
                },
                list_id,
                state: MembershipState::from_code(state).unwrap(),
                time: Timestamp(time),
            },
        )
    }

    proptest! {
        #[test]
        fn every_set_survives_its_column(
            memberships in proptest::collection::vec(membership(), 0..8),
            tags in proptest::collection::vec(0i64..i64::MAX, 0..12),
            fields in proptest::collection::vec((0i64..i64::MAX, ".{0,40}"), 0..6),
        ) {
            let mut m = Memberships::default();
            memberships.into_iter().for_each(|x| m.put(x));
            let t: TagSet = tags.into_iter().collect();
            let mut f = FieldValues::default();
            fields.iter().for_each(|(id, v)| f.set(*id, v));
            prop_assert_eq!(back::<Memberships>(&blob(&m)).unwrap(), m);
            prop_assert_eq!(back::<TagSet>(&blob(&t)).unwrap(), t);
            prop_assert_eq!(back::<FieldValues>(&blob(&f)).unwrap(), f);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let bytes = Some(bytes);
            let _ = back::<Memberships>(&bytes);
            let _ = back::<TagSet>(&bytes);
            let _ = back::<FieldValues>(&bytes);
        }
    }
}
