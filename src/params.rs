//! PHP-style bracket parameters (`data[0][1]=x`, `field_names[]=email`, `fields[email]=a@b.c`)
//! decoded into a small tree (spec §1.2), or for an import call with its cells read as rows
//! (`data_rows.rs`). Pure: bytes in, tree or error out. Bounded: depth, parameter and node
//! counts are capped, and keys in any order cost O(n log n).

use std::collections::BTreeMap;

mod data_rows;
pub use data_rows::DataRows;
use data_rows::RowsBuilder;

/// The import's cells, the one parameter `from_urlencoded_rows` may read as rows.
const DATA: &str = "data";

/// Bracket nesting deeper than this is refused: no method needs more than two levels
/// (`data[row][column]`), and every level is a node a hostile key could multiply.
pub const MAX_DEPTH: usize = 2;

/// Parameters in one request, and nodes of their tree, beyond which it is refused (413). A
/// full importContacts call is 500 rows of at most about 75 columns: under 40,000 values.
pub const MAX_PARAMS: usize = 100_000;
pub const MAX_NODES: usize = 2 * MAX_PARAMS;

/// A key inside a bracket array. Numeric keys sort numerically and before names, so that
/// `data[10]` comes after `data[2]` whatever order the client sent them in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Index(u64),
    Name(String),
}

impl Key {
    /// A canonical decimal of at most 19 digits (no sign, no leading zero) is an index; anything
    /// else is a name.
    fn from_segment(segment: &str) -> Key {
        let bytes = segment.as_bytes();
        let canonical = match bytes {
            [] => false,
            [b'0'] => true,
            [b'0', ..] => false,
            _ => bytes.len() <= 19,
        };
        if canonical {
            let mut index: u64 = 0;
            for &byte in bytes {
                if !byte.is_ascii_digit() {
                    return Key::Name(segment.to_string());
                }
                // 19 digits cannot overflow a u64.
                index = index * 10 + u64::from(byte - b'0');
            }
            return Key::Index(index);
        }
        Key::Name(segment.to_string())
    }
}

/// One parameter: a plain value or a bracket array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    Value(String),
    Array(ParamArray),
}

/// The entries of a bracket array, ordered by key.
#[derive(Clone, Debug, Eq)]
pub struct ParamArray(Entries);

#[derive(Clone, Debug, Eq, PartialEq)]
enum Entries {
    /// A sorted vector while keys arrive in order, as clients nearly always send them
    /// (`data[0][0]`, `data[0][1]`, ...): every entry lands at the end or on the last entry,
    /// found without a search (form decoding was three quarters of an import call's time outside
    /// the writer while it used trees).
    InOrder(Vec<(Key, Param)>),
    /// A tree from the first key that arrives out of order, so that any order costs
    /// O(n log n): inserting into the middle of a vector made descending keys quadratic.
    Tree(BTreeMap<Key, Param>),
}

impl Default for ParamArray {
    fn default() -> ParamArray {
        ParamArray(Entries::InOrder(Vec::new()))
    }
}

impl PartialEq for ParamArray {
    fn eq(&self, other: &ParamArray) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl ParamArray {
    pub fn len(&self) -> usize {
        match &self.0 {
            Entries::InOrder(entries) => entries.len(),
            Entries::Tree(entries) => entries.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &Key) -> Option<&Param> {
        match &self.0 {
            Entries::InOrder(entries) => entries
                .binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .map(|at| &entries[at].1),
            Entries::Tree(entries) => entries.get(key),
        }
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_> {
        match &self.0 {
            Entries::InOrder(entries) => Iter::InOrder(entries.iter()),
            Entries::Tree(entries) => Iter::Tree(entries.iter()),
        }
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Param> {
        self.iter().map(|(_, param)| param)
    }

    /// The entry at `key`, created empty (an empty value) when missing; true when created.
    fn entry(&mut self, key: Key) -> (&mut Param, bool) {
        /// Where an in-order vector has the key, or whether it can be appended.
        enum Place {
            At(usize),
            End,
            OutOfOrder,
        }
        if let Entries::InOrder(entries) = &self.0 {
            let place = match entries.last() {
                None => Place::End,
                Some((last, _)) if *last < key => Place::End,
                Some((last, _)) if *last == key => Place::At(entries.len() - 1),
                Some(_) => match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
                    Ok(at) => Place::At(at),
                    Err(_) => Place::OutOfOrder,
                },
            };
            match place {
                Place::OutOfOrder => {
                    // A new key before the last one: from now on, a tree.
                    let Entries::InOrder(entries) =
                        std::mem::replace(&mut self.0, Entries::Tree(BTreeMap::new()))
                    else {
                        unreachable!("matched as in order just above")
                    };
                    self.0 = Entries::Tree(entries.into_iter().collect());
                }
                Place::At(at) => {
                    let Entries::InOrder(entries) = &mut self.0 else {
                        unreachable!("matched as in order just above")
                    };
                    return (&mut entries[at].1, false);
                }
                Place::End => {
                    let Entries::InOrder(entries) = &mut self.0 else {
                        unreachable!("matched as in order just above")
                    };
                    entries.push((key, Param::Value(String::new())));
                    let last = entries.last_mut().expect("just pushed");
                    return (&mut last.1, true);
                }
            }
        }
        let Entries::Tree(entries) = &mut self.0 else {
            unreachable!("an array out of order was made a tree just above")
        };
        let created = !entries.contains_key(&key);
        (
            entries.entry(key).or_insert(Param::Value(String::new())),
            created,
        )
    }

    /// The index after the highest numeric key (what `name[]` appends at, as in PHP). Numeric
    /// keys sort before names, so it is found by a search, not a walk past every name.
    fn next_index(&self) -> u64 {
        let highest = match &self.0 {
            Entries::InOrder(entries) => {
                let indexes = entries.partition_point(|(key, _)| matches!(key, Key::Index(_)));
                indexes.checked_sub(1).map(|at| &entries[at].0)
            }
            Entries::Tree(entries) => entries
                .range(..Key::Name(String::new()))
                .next_back()
                .map(|(key, _)| key),
        };
        match highest {
            Some(Key::Index(index)) => index.saturating_add(1),
            _ => 0,
        }
    }
}

impl ParamArray {
    /// Keeps the entries, in key order, whose values fit in `budget` bytes all together, and
    /// takes what they use from it; true when some were dropped. (The journal keeps `data` up
    /// to 64 KiB this way: a walk over lengths, no copy.)
    pub fn keep_within(&mut self, budget: &mut usize) -> bool {
        let mut fits = |param: &Param| {
            let bytes = param.value_bytes();
            let fits = bytes <= *budget;
            if fits {
                *budget -= bytes;
            }
            fits
        };
        match &mut self.0 {
            Entries::InOrder(entries) => {
                let kept = entries.iter().take_while(|(_, p)| fits(p)).count();
                let cut = kept < entries.len();
                entries.truncate(kept);
                cut
            }
            Entries::Tree(entries) => {
                let first_out = entries
                    .iter()
                    .find(|(_, p)| !fits(p))
                    .map(|(k, _)| k.clone());
                match first_out {
                    Some(key) => {
                        entries.split_off(&key);
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

impl Param {
    /// The bytes of every value in this parameter.
    pub fn value_bytes(&self) -> usize {
        match self {
            Param::Value(text) => text.len(),
            Param::Array(entries) => entries.values().map(Param::value_bytes).sum(),
        }
    }
}

/// The entries of a `ParamArray` in key order.
pub enum Iter<'a> {
    InOrder(std::slice::Iter<'a, (Key, Param)>),
    Tree(std::collections::btree_map::Iter<'a, Key, Param>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Key, &'a Param);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::InOrder(entries) => entries.next().map(|(key, param)| (key, param)),
            Iter::Tree(entries) => entries.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::InOrder(entries) => entries.size_hint(),
            Iter::Tree(entries) => entries.size_hint(),
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::InOrder(entries) => entries.next_back().map(|(key, param)| (key, param)),
            Iter::Tree(entries) => entries.next_back(),
        }
    }
}

impl<'a> IntoIterator for &'a ParamArray {
    type Item = (&'a Key, &'a Param);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<(Key, Param)> for ParamArray {
    /// Entries in any order; a later one replaces an earlier one at the same key.
    fn from_iter<I: IntoIterator<Item = (Key, Param)>>(entries: I) -> ParamArray {
        let mut array = ParamArray::default();
        for (key, param) in entries {
            *array.entry(key).0 = param;
        }
        array
    }
}

impl Param {
    /// The value of a plain parameter; an array has none.
    pub fn as_value(&self) -> Option<&str> {
        match self {
            Param::Value(value) => Some(value),
            Param::Array(_) => None,
        }
    }

    pub fn as_array(&self) -> Option<&ParamArray> {
        match self {
            Param::Array(entries) => Some(entries),
            Param::Value(_) => None,
        }
    }
}

/// Why a request's parameters could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ParamError {
    NotUtf8,
    TooDeep(String),
    /// More than `MAX_PARAMS` parameters or `MAX_NODES` nodes.
    TooMany,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamError::NotUtf8 => f.write_str("parameters are not valid UTF-8 after decoding"),
            ParamError::TooDeep(name) => {
                write!(
                    f,
                    "parameter \"{name}\" is nested more than {MAX_DEPTH} levels deep"
                )
            }
            ParamError::TooMany => write!(
                f,
                "more than {MAX_PARAMS} parameters (or {MAX_NODES} array entries) in one request"
            ),
        }
    }
}

/// All parameters of a request, by top-level name.
#[derive(Clone, Debug, Default)]
pub struct Params {
    entries: BTreeMap<String, Param>,
    /// `data` when read as rows (`from_urlencoded_rows`); then `entries` has no `data`.
    rows: Option<DataRows>,
    /// Parameters inserted and tree nodes made so far, held to `MAX_PARAMS` and `MAX_NODES`.
    inserted: usize,
    nodes: usize,
}

impl PartialEq for Params {
    fn eq(&self, other: &Params) -> bool {
        self.entries == other.entries && self.rows == other.rows
    }
}

impl Eq for Params {}

impl Params {
    /// Decodes an `application/x-www-form-urlencoded` string (also a query string).
    pub fn from_urlencoded(input: &[u8]) -> Result<Params, ParamError> {
        Params::decode_urlencoded(input, false)
    }

    /// `from_urlencoded` for an import call's form: `data[row][column]` cells are read as
    /// `DataRows` (`data_rows`) while their keys are canonical and their rows in order. The
    /// same parameters either way: `with_tree` gives back the other's result.
    pub fn from_urlencoded_rows(input: &[u8]) -> Result<Params, ParamError> {
        Params::decode_urlencoded(input, true)
    }

    fn decode_urlencoded(input: &[u8], read_rows: bool) -> Result<Params, ParamError> {
        let mut params = Params::default();
        // `data` is read as rows while no key has made it anything else.
        let mut rows = read_rows.then(|| RowsBuilder::with_capacity(input.len()));
        let decoded = params.decode_pairs(input, &mut rows);
        // A value read as rows that is not UTF-8 came before whatever else failed.
        let rows = rows.map(RowsBuilder::finish).transpose()?;
        decoded?;
        params.rows = rows.filter(|rows| !rows.is_empty());
        Ok(params)
    }

    /// Decodes every pair of `input` into these parameters, `data[row][column]` ones into
    /// `rows` while it is there.
    fn decode_pairs(
        &mut self,
        input: &[u8],
        rows: &mut Option<RowsBuilder>,
    ) -> Result<(), ParamError> {
        // One buffer for every key: keys are dropped once placed, values are kept.
        let mut key = Vec::new();
        // The array the last bracket key went into, held out of `entries` while the keys after
        // it name it too: thousands of `data[i][j]` keys decoded as a tree (when not read as
        // rows, as the journal's) then skip the map.
        let mut hot: Option<(String, Param)> = None;
        let mut start = 0;
        let ends = memchr::memchr_iter(b'&', input).chain(std::iter::once(input.len()));
        for end in ends {
            let pair = &input[start..end];
            start = end + 1;
            if pair.is_empty() {
                continue;
            }
            let (raw_key, raw_value) = match memchr::memchr(b'=', pair) {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            // A key with an empty name goes the general way, which counts it and drops it.
            let indexed = index_key(raw_key).filter(|(name, _, _)| !name.is_empty());
            if let Some((name, indexes, depth)) = indexed
                && name == DATA.as_bytes()
                && let Some(building) = rows.as_mut()
            {
                if let (2, [Segment::Index(row), Segment::Index(column)]) = (depth, indexes)
                    && let Some(made) = building.add(row, column, raw_value)?
                {
                    self.count_parameter()?;
                    self.count_nodes(made)?;
                    continue;
                }
                self.rows_made_tree(rows.take())?;
            }
            // A name that is not UTF-8 goes the general way too, which refuses it.
            if let Some((name, indexes, depth)) = indexed
                && let Ok(name) = std::str::from_utf8(name)
            {
                let value = percent_decode(raw_value)?;
                if hot.as_ref().is_none_or(|(hot_name, _)| hot_name != name) {
                    self.put_back(hot.take());
                    let root = self
                        .entries
                        .remove(name)
                        .unwrap_or_else(|| Param::Array(ParamArray::default()));
                    hot = Some((name.to_string(), root));
                }
                let (_, root) = hot.as_mut().expect("held just above");
                self.count_parameter()?;
                let made = insert_path(root, &indexes[..depth], value);
                self.count_nodes(made)?;
                continue;
            }
            self.put_back(hot.take());
            key.clear();
            percent_decode_into(raw_key, &mut key);
            let key = std::str::from_utf8(&key).map_err(|_| ParamError::NotUtf8)?;
            if rows.is_some() && key_target(key).0 == DATA {
                self.rows_made_tree(rows.take())?;
            }
            self.insert(key, percent_decode(raw_value)?)?;
        }
        self.put_back(hot);
        Ok(())
    }

    /// Puts what was read as rows into `entries` as the tree, for a `data` key that is not a
    /// row's cell in order: `data` is a tree from then on.
    fn rows_made_tree(&mut self, rows: Option<RowsBuilder>) -> Result<(), ParamError> {
        if let Some(rows) = rows.filter(|rows| !rows.is_empty()) {
            self.rows = Some(rows.finish()?);
            self.rows_into_tree();
        }
        Ok(())
    }

    /// `data` read as rows, if it was (`from_urlencoded_rows`).
    pub fn data_rows(&self) -> Option<&DataRows> {
        self.rows.as_ref()
    }

    /// These parameters with `data` as a tree, as `from_urlencoded` gives them.
    pub fn with_tree(mut self) -> Params {
        self.rows_into_tree();
        self
    }

    /// Puts `data` read as rows into `entries` as the tree.
    fn rows_into_tree(&mut self) {
        if let Some(rows) = self.rows.take() {
            self.entries.insert(DATA.to_string(), rows.into_param());
        }
    }

    /// Returns the array `decode_pairs` held out of the map.
    fn put_back(&mut self, held: Option<(String, Param)>) {
        if let Some((name, root)) = held {
            self.entries.insert(name, root);
        }
    }

    /// Counts one more parameter, refusing the request past `MAX_PARAMS`.
    fn count_parameter(&mut self) -> Result<(), ParamError> {
        self.inserted += 1;
        if self.inserted > MAX_PARAMS {
            return Err(ParamError::TooMany);
        }
        Ok(())
    }

    /// Counts the nodes an insert made, refusing the request past `MAX_NODES`.
    fn count_nodes(&mut self, made: usize) -> Result<(), ParamError> {
        self.nodes += made;
        if self.nodes > MAX_NODES {
            return Err(ParamError::TooMany);
        }
        Ok(())
    }

    /// Adds one `key=value` pair, the key in bracket notation. A later pair replaces an earlier
    /// one at the same place, as in PHP.
    pub fn insert(&mut self, key: &str, value: String) -> Result<(), ParamError> {
        let (name, path) = split_key(key);
        let mut segments = [Segment::Append; MAX_DEPTH + 1];
        for (segment, text) in segments.iter_mut().zip(&path.segments[..path.len]) {
            if !text.is_empty() {
                *segment = Segment::Text(text);
            }
        }
        self.insert_at(name, &segments[..path.len], value)
    }

    /// `insert` with the key already split into its name and bracket segments.
    fn insert_at(&mut self, name: &str, path: &[Segment], value: String) -> Result<(), ParamError> {
        self.count_parameter()?;
        if name.is_empty() {
            return Ok(());
        }
        if path.len() > MAX_DEPTH {
            return Err(ParamError::TooDeep(name.chars().take(64).collect()));
        }
        if path.is_empty() {
            self.entries.insert(name.to_string(), Param::Value(value));
            return Ok(());
        }
        // Looked up before inserting: a 500-row call names `data` thousands of times.
        let root = match self.entries.get_mut(name) {
            Some(root) => root,
            None => self
                .entries
                .entry(name.to_string())
                .or_insert(Param::Array(ParamArray::default())),
        };
        let made = insert_path(root, path, value);
        self.count_nodes(made)
    }

    /// Merges `other` over `self`: a top-level name present in `other` replaces the one here.
    pub fn overlay(&mut self, other: Params) {
        if other.rows.is_some() {
            self.entries.remove(DATA);
            self.rows = other.rows;
        } else if other.entries.contains_key(DATA) {
            self.rows = None;
        }
        self.entries.extend(other.entries);
        self.inserted += other.inserted;
        self.nodes += other.nodes;
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.entries.get(name)
    }

    /// The top-level parameter `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Param> {
        self.entries.get_mut(name)
    }

    /// Removes the top-level parameter `name`.
    pub fn remove(&mut self, name: &str) -> Option<Param> {
        self.entries.remove(name)
    }

    /// Every top-level parameter, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.entries
            .iter()
            .map(|(name, param)| (name.as_str(), param))
    }

    /// The value of a plain parameter, if present and not an array.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Param::as_value)
    }
}

/// One bracket segment of a key.
#[derive(Clone, Copy)]
enum Segment<'a> {
    /// `[]`: after the highest index so far.
    Append,
    /// `[text]`: an index if `text` is a canonical decimal, a name otherwise.
    Text(&'a str),
    /// A canonical decimal already read as one (`index_key`).
    Index(u64),
}

/// Entries a nested array has room for when made.
const NESTED_CAPACITY: usize = 8;

/// Places `value` at `path` under `node`; returns how many nodes it made.
fn insert_path(node: &mut Param, path: &[Segment], value: String) -> usize {
    if !matches!(node, Param::Array(_)) {
        // Room for a row of the usual import from the start, rather than growing twice.
        *node = Param::Array(ParamArray(Entries::InOrder(Vec::with_capacity(
            NESTED_CAPACITY,
        ))));
    }
    let Param::Array(entries) = node else {
        unreachable!("node was made an array just above")
    };
    let key = match path[0] {
        // `name[]` appends after the highest index so far, as PHP does.
        Segment::Append => Key::Index(entries.next_index()),
        Segment::Text(text) => Key::from_segment(text),
        Segment::Index(index) => Key::Index(index),
    };
    let (slot, created) = entries.entry(key);
    let made = usize::from(created);
    if path.len() == 1 {
        *slot = Param::Value(value);
        made
    } else {
        made + insert_path(slot, &path[1..], value)
    }
}

/// The top-level name a key puts its value under, and whether it makes that name an array
/// (as `Params::insert` reads it).
pub fn key_target(key: &str) -> (&str, bool) {
    let (name, path) = split_key(key);
    (name, path.len > 0)
}

/// A raw (still percent-encoded) key that is a plain name followed by one or two canonical
/// decimal indexes, `data[12][3]` or `data%5B12%5D%5B3%5D`, read without decoding it: such keys
/// are nearly all of an import call's thousands, and decoding and splitting each one was a
/// third of reading the form. Any other key (escapes in the name, other segments, text after
/// the last bracket) is `None`, and goes the general way, which reads these alike. The name is
/// left as bytes: `data` is told by them, and any other name is checked as UTF-8 by the caller.
fn index_key(raw: &[u8]) -> Option<(&[u8], [Segment<'static>; MAX_DEPTH], usize)> {
    /// `[` or `%5B`/`%5b` (or `]`, `%5D`, `%5d`) at the start of `rest`: the bytes after it.
    fn bracket(rest: &[u8], plain: u8, escaped: u8) -> Option<&[u8]> {
        match rest {
            [b, after @ ..] if *b == plain => Some(after),
            [b'%', b'5', e, after @ ..] if e.to_ascii_uppercase() == escaped => Some(after),
            _ => None,
        }
    }
    let name_end = raw
        .iter()
        .position(|b| matches!(b, b'%' | b'+' | b'[' | b']'))?;
    let name = &raw[..name_end];
    let mut rest = &raw[name_end..];
    let mut indexes = [Segment::Append; MAX_DEPTH];
    let mut count = 0;
    while !rest.is_empty() {
        if count == indexes.len() {
            return None;
        }
        let inner = bracket(rest, b'[', b'B')?;
        let digits = inner.iter().take_while(|b| b.is_ascii_digit()).count();
        let canonical = match &inner[..digits] {
            [] => false,
            [b'0'] => true,
            [b'0', ..] => false,
            _ => digits <= 19,
        };
        if !canonical {
            return None;
        }
        // 19 digits cannot overflow a u64.
        let index = inner[..digits]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        rest = bracket(&inner[digits..], b']', b'D')?;
        indexes[count] = Segment::Index(index);
        count += 1;
    }
    // A key with no bracket at all is a plain name, which the general way reads as cheaply.
    if count == 0 {
        return None;
    }
    Some((name, indexes, count))
}

/// The bracket segments of a key, without allocating: one more than `MAX_DEPTH` is kept so
/// that a deeper key can be refused.
struct Segments<'a> {
    segments: [&'a str; MAX_DEPTH + 1],
    len: usize,
}

/// Splits `name[a][b]` into `name` and `["a", "b"]`. A key whose brackets do not close is a plain
/// name, and text after the last `]` is ignored, both as in PHP.
fn split_key(key: &str) -> (&str, Segments<'_>) {
    let mut path = Segments {
        segments: [""; MAX_DEPTH + 1],
        len: 0,
    };
    // Brackets are ASCII, so their byte positions are character boundaries. (A plain search:
    // keys are short, and memchr's set-up cost more than it saved.)
    let Some(open) = key.bytes().position(|b| b == b'[') else {
        return (key, path);
    };
    let name = &key[..open];
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.bytes().position(|b| b == b']') else {
            break;
        };
        path.segments[path.len] = &inner[..close];
        path.len += 1;
        rest = &inner[close + 1..];
        if path.len > MAX_DEPTH {
            break;
        }
    }
    if path.len == 0 {
        return (key, path);
    }
    (name, path)
}

/// Percent-decodes form bytes (`+` is a space). A `%` not followed by two hex digits stays as
/// it is; the result must be UTF-8.
pub fn percent_decode(input: &[u8]) -> Result<String, ParamError> {
    let mut out = Vec::with_capacity(input.len());
    percent_decode_into(input, &mut out);
    String::from_utf8(out).map_err(|_| ParamError::NotUtf8)
}

/// `percent_decode` into `out`, without the UTF-8 check. The output is never longer than the
/// input, so it is written into room made for the whole input, byte by byte, and cut to length:
/// an import's values are short, and copying their plain runs with `memcpy` (or pushing each
/// byte with a capacity check) cost about twice as much.
pub fn percent_decode_into(input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + input.len(), 0);
    let room = &mut out[start..];
    let mut written = 0;
    let mut read = 0;
    while let Some(&byte) = input.get(read) {
        read += 1;
        room[written] = match byte {
            b'+' => b' ',
            b'%' => match (
                input.get(read).and_then(hex_value),
                input.get(read + 1).and_then(hex_value),
            ) {
                (Some(high), Some(low)) => {
                    read += 2;
                    high << 4 | low
                }
                // A `%` not followed by two hex digits stays as it is.
                _ => b'%',
            },
            plain => plain,
        };
        written += 1;
    }
    out.truncate(start + written);
}

fn hex_value(byte: &u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &str) -> Params {
        Params::from_urlencoded(input.as_bytes()).expect("decodes")
    }

    fn value(v: &str) -> Param {
        Param::Value(v.to_string())
    }

    fn array(entries: Vec<(Key, Param)>) -> Param {
        Param::Array(entries.into_iter().collect())
    }

    fn check(input: &str, name: &str, expected: Param) {
        assert_eq!(decode(input).get(name), Some(&expected), "{input}");
    }

    #[test]
    fn rows_overlaid_replace_the_data_they_are_laid_over() {
        let mut query = decode("data[0][0]=q&data[0][1]=r&a=1");
        query.overlay(Params::from_urlencoded_rows(b"data[0][0]=b").unwrap());
        assert_eq!(query.get("data"), None);
        assert_eq!(query.data_rows().map(DataRows::len), Some(1));
        assert_eq!(query.with_tree(), decode("a=1&data[0][0]=b"));
        let mut rows = Params::from_urlencoded_rows(b"data[0][0]=q").unwrap();
        rows.overlay(decode("data[1][0]=b"));
        assert_eq!(rows.data_rows(), None);
        assert_eq!(rows, decode("data[1][0]=b"));
    }

    #[test]
    fn plain_values() {
        check("a=1&b=2", "a", value("1"));
        check("a=x+y%20z", "a", value("x y z"));
        check("flag", "flag", value(""));
        check("a=1&a=2", "a", value("2"));
        check("a=%zz%4", "a", value("%zz%4"));
        check("a=%41", "a", value("A"));
        check("a=%", "a", value("%"));
        check("a=%4", "a", value("%4"));
        check("a=caf%C3%A9", "a", value("café"));
    }

    #[test]
    fn bracket_arrays() {
        use Key::*;
        check(
            "f[]=email&f[]=phone",
            "f",
            array(vec![(Index(0), value("email")), (Index(1), value("phone"))]),
        );
        check(
            "d%5B0%5D%5B1%5D=x",
            "d",
            array(vec![(Index(0), array(vec![(Index(1), value("x"))]))]),
        );
        check(
            "d[10]=b&d[2]=a",
            "d",
            array(vec![(Index(2), value("a")), (Index(10), value("b"))]),
        );
        check(
            "d[5]=a&d[]=b",
            "d",
            array(vec![(Index(5), value("a")), (Index(6), value("b"))]),
        );
        check(
            "fields[email]=a@b.c",
            "fields",
            array(vec![(Name("email".into()), value("a@b.c"))]),
        );
        check(
            "d[007]=x",
            "d",
            array(vec![(Name("007".into()), value("x"))]),
        );
        check(
            "d[99999999999999999999999]=x",
            "d",
            array(vec![(Name("99999999999999999999999".into()), value("x"))]),
        );
        check("a[b=1", "a[b", value("1"));
        check("a[b]c=1", "a", array(vec![(Name("b".into()), value("1"))]));
        check("a=1&a[0]=2", "a", array(vec![(Index(0), value("2"))]));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Params::from_urlencoded(b"a=%ff%fe"),
            Err(ParamError::NotUtf8)
        );
        assert_eq!(Params::from_urlencoded(b"%ff=1"), Err(ParamError::NotUtf8));
        let deep = format!("x{}=1", "[0]".repeat(5000));
        assert!(matches!(
            Params::from_urlencoded(deep.as_bytes()),
            Err(ParamError::TooDeep(_))
        ));
    }

    #[test]
    fn overlay_replaces_whole_names() {
        let mut query = decode("a=1&d[0]=q&keep=yes");
        query.overlay(decode("a=2&d[1]=b"));
        assert_eq!(query.value("a"), Some("2"));
        assert_eq!(query.value("keep"), Some("yes"));
        assert_eq!(
            query.get("d"),
            Some(&array(vec![(Key::Index(1), value("b"))]))
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// `from_urlencoded_rows` gives what `from_urlencoded` gives, counts included, once its
    /// rows are a tree, and never holds `data` both ways; answers whether it read rows.
    fn same_as_rows(body: &str) -> Result<bool, TestCaseError> {
        let tree = Params::from_urlencoded(body.as_bytes());
        let rows = Params::from_urlencoded_rows(body.as_bytes());
        match (&tree, &rows) {
            (Ok(tree), Ok(rows)) => {
                prop_assert_eq!(
                    (rows.inserted, rows.nodes),
                    (tree.inserted, tree.nodes),
                    "{}",
                    body
                );
                prop_assert!(rows.get("data").is_none() || rows.data_rows().is_none());
                prop_assert_eq!(&rows.clone().with_tree(), tree, "{}", body);
                Ok(rows.data_rows().is_some())
            }
            (Err(tree), Err(rows)) => {
                prop_assert_eq!(tree, rows, "{}", body);
                Ok(false)
            }
            _ => Err(TestCaseError::fail(format!(
                "{body}: {tree:?} against {rows:?}"
            ))),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// No input makes the decoder panic: it answers a tree or an error.
        #[test]
        fn decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Params::from_urlencoded(&bytes);
        }

        /// Bracket-shaped noise, the decoder's hardest input, never panics either.
        #[test]
        fn bracket_noise_never_panics(key in "[a-z\\[\\]%0-9]{0,40}", value in ".{0,20}") {
            let mut params = Params::default();
            let _ = params.insert(&key, value);
        }

        /// The index rule, checked against its plain definition: a canonical decimal that fits
        /// in 19 digits is an index, anything else a name.
        #[test]
        fn segments_are_indexes_exactly_when_canonical(segment in "[0-9]{0,21}|[0-9a+ -]{0,6}") {
            let canonical = !segment.is_empty()
                && segment.len() <= 19
                && segment.bytes().all(|b| b.is_ascii_digit())
                && (segment == "0" || !segment.starts_with('0'));
            let expected = if canonical {
                Key::Index(segment.parse().unwrap())
            } else {
                Key::Name(segment.clone())
            };
            prop_assert_eq!(Key::from_segment(&segment), expected);
        }

        /// Keys read without decoding (`index_key`) give the tree that decoding every key
        /// gives, whatever pieces of bracket syntax and escapes they are made of.
        #[test]
        fn index_keys_read_as_decoded_keys(
            keys in prop::collection::vec(
                (
                    prop::sample::select(vec!["data", "d", "%64ata", "da+", "", "x]"]),
                    prop::collection::vec(
                        (
                            prop::sample::select(vec!["[", "%5B", "%5b", "%5", "]"]),
                            prop::sample::select(vec![
                                "0", "1", "12", "01", "00", "", "x", "99999999999999999999",
                                "1%30", "[",
                            ]),
                            prop::sample::select(vec!["]", "%5D", "%5d", "%5", "", "["]),
                        ),
                        0..4,
                    ),
                    prop::sample::select(vec!["", "", "", "x", "]", "[0]"]),
                )
                    .prop_map(|(name, segments, tail)| {
                        let segments: String =
                            segments.iter().map(|(o, i, c)| format!("{o}{i}{c}")).collect();
                        format!("{name}{segments}{tail}")
                    }),
                1..12,
            ),
            values in prop::collection::vec("[a-z%+0-9]{0,4}", 12),
        ) {
            let body: Vec<String> = keys
                .iter()
                .zip(&values)
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            let body = body.join("&");
            let mut reference = Params::default();
            let mut reference_error = None;
            for pair in body.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decoded = percent_decode(key.as_bytes())
                    .and_then(|key| Ok((key, percent_decode(value.as_bytes())?)));
                if let Err(e) = decoded.and_then(|(key, value)| reference.insert(&key, value)) {
                    reference_error = Some(e);
                    break;
                }
            }
            match (Params::from_urlencoded(body.as_bytes()), reference_error) {
                (Ok(fast), None) => prop_assert_eq!(fast, reference, "{}", body),
                (Err(fast), Some(reference)) => prop_assert_eq!(fast, reference, "{}", body),
                (fast, reference) => prop_assert!(false, "{body}: {fast:?} against {reference:?}"),
            }
            same_as_rows(&body)?;
        }

        /// An import's form read as rows gives the parameters, counts and errors of the tree,
        /// whatever the order of its rows and cells, repeated cells, and other `data` keys
        /// among them.
        #[test]
        fn import_rows_read_as_the_tree(
            pairs in prop::collection::vec(
                (
                    prop_oneof![
                        8 => (0u8..4, 0u8..4).prop_map(|(r, c)| format!("data[{r}][{c}]")),
                        2 => (0u8..4, 0u8..4).prop_map(|(r, c)| format!("data%5B{r}%5D%5B{c}%5D")),
                        1 => prop::sample::select(vec![
                            "data", "data[0]", "data[x][0]", "data[0][]", "%64ata[1][1]",
                            "data[01][0]", "data[0][1][2]", "api_key", "field_names[0]",
                            "[0][0]", "data[1][1]x",
                        ]).prop_map(str::to_string),
                    ],
                    prop_oneof![
                        6 => "[a-z0-9@.]{0,6}".boxed(),
                        1 => "[a-z%+0-9]{0,4}".boxed(),
                        1 => Just("%ff".to_string()).boxed(),
                    ],
                ),
                0..24,
            ),
        ) {
            let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let read_as_rows = same_as_rows(&body.join("&"))?;
            // Plain `data[r][c]` keys alone, rows in order, valid values: read as rows.
            let cell = |key: &str| {
                let inner = key.strip_prefix("data[")?.strip_suffix(']')?;
                let (row, column) = inner.split_once("][")?;
                let canonical = |index: &str| index == "0" || !index.starts_with('0');
                if !canonical(row) || !canonical(column) {
                    return None;
                }
                Some((row.parse::<u8>().ok()?, column.parse::<u8>().ok()?))
            };
            let rows: Option<Vec<u8>> = pairs
                .iter()
                .map(|(key, value)| cell(key.replace("%5B", "[").replace("%5D", "]").as_str())
                    .filter(|_| !value.contains('%'))
                    .map(|(row, _)| row))
                .collect();
            if let Some(rows) = rows.filter(|rows| !rows.is_empty()) {
                prop_assert_eq!(read_as_rows, rows.windows(2).all(|w| w[0] <= w[1]), "{:?}", pairs);
            }
        }

        /// Percent decoding, checked against a byte-at-a-time reference on escape-heavy input.
        #[test]
        fn percent_decoding_matches_the_reference(input in "[%+a-fA-F0-9gz=]{0,24}") {
            let bytes = input.as_bytes();
            let mut expected = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                let hex = |b: u8| (b as char).to_digit(16);
                match bytes[i] {
                    b'+' => expected.push(b' '),
                    b'%' if i + 2 < bytes.len() => {
                        match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                            (Some(h), Some(l)) => {
                                expected.push((h * 16 + l) as u8);
                                i += 2;
                            }
                            _ => expected.push(b'%'),
                        }
                    }
                    byte => expected.push(byte),
                }
                i += 1;
            }
            let mut decoded = Vec::new();
            percent_decode_into(bytes, &mut decoded);
            prop_assert_eq!(decoded, expected);
        }

        /// Any value, percent-encoded, decodes to itself.
        #[test]
        fn encoded_values_decode_to_themselves(value in any::<String>()) {
            let encoded: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
            let params = Params::from_urlencoded(format!("v={encoded}").as_bytes()).unwrap();
            prop_assert_eq!(params.value("v"), Some(value.as_str()));
        }
    }
}
