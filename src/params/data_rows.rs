//! An import call's cells (`data[row][column]=value`), read from its form into one string and a
//! list of ranges instead of a tree with a string per cell: building that tree, with its
//! allocations, and walking it again for the rows was about a third of decoding an import call's
//! form. Only keys of one canonical row and column index in order of
//! rows are read this way; any other `data` key turns what was read into the tree
//! (`into_param`), and decoding goes on as before, so the result is the same.

use super::{Entries, Key, Param, ParamArray, ParamError, percent_decode_into};
use std::ops::Range;

/// Cells by row and column: rows in index order, each row's cells in column order, a later
/// value at the same place replacing the earlier one (as in the tree).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataRows {
    /// Every value, one after another (a replaced value stays, unreferenced).
    text: String,
    /// Each row's index and where its cells begin in `cells`.
    rows: Vec<(u64, usize)>,
    /// Each cell's column and where its value lies in `text`.
    cells: Vec<(u64, Range<usize>)>,
}

/// `DataRows` being read: values are checked as UTF-8 all at once when it is finished
/// (checking each on its own was a tenth of reading them).
#[derive(Default)]
pub(super) struct RowsBuilder {
    text: Vec<u8>,
    rows: Vec<(u64, usize)>,
    cells: Vec<(u64, Range<usize>)>,
}

impl RowsBuilder {
    /// Room for the values of a form of `bytes` bytes, which decode to no more.
    pub(super) fn with_capacity(bytes: usize) -> RowsBuilder {
        RowsBuilder {
            text: Vec::with_capacity(bytes),
            ..RowsBuilder::default()
        }
    }

    /// Adds `data[row][column]=raw_value` (still percent-encoded): how many tree nodes it would
    /// have made (a new row, a new cell), or `None` with nothing added when `row` comes before
    /// the last row. A value that begins inside a character is not UTF-8 on its own, though the
    /// text could be once it is joined to the value before: refused here, as the tree refuses it.
    pub(super) fn add(
        &mut self,
        row: u64,
        column: u64,
        raw_value: &[u8],
    ) -> Result<Option<usize>, ParamError> {
        let mut made = 0;
        match self.rows.last() {
            Some(&(last, _)) if last == row => {}
            Some(&(last, _)) if last > row => return Ok(None),
            _ => {
                self.rows.push((row, self.cells.len()));
                made += 1;
            }
        }
        let start = self.text.len();
        percent_decode_into(raw_value, &mut self.text);
        if self.text.get(start).is_some_and(|&b| b & 0xC0 == 0x80) {
            return Err(ParamError::NotUtf8);
        }
        let range = start..self.text.len();
        let first = self.rows.last().map_or(0, |&(_, first)| first);
        match self.cells[first..].last() {
            // Columns nearly always come in order.
            None => {}
            Some((last, _)) if *last < column => {}
            Some(_) => {
                match self.cells[first..].binary_search_by_key(&column, |(column, _)| *column) {
                    Ok(at) => self.cells[first + at].1 = range,
                    Err(at) => {
                        self.cells.insert(first + at, (column, range));
                        made += 1;
                    }
                }
                return Ok(Some(made));
            }
        }
        self.cells.push((column, range));
        Ok(Some(made + 1))
    }

    /// The rows read; `NotUtf8` if a value is not UTF-8. Every value begins at a character of
    /// the text (`add`), so the text is valid exactly when each value is.
    pub(super) fn finish(self) -> Result<DataRows, ParamError> {
        Ok(DataRows {
            text: String::from_utf8(self.text).map_err(|_| ParamError::NotUtf8)?,
            rows: self.rows,
            cells: self.cells,
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl DataRows {
    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Each row's index and its cells as (column, value), in order.
    pub fn rows(&self) -> impl Iterator<Item = (u64, impl Iterator<Item = (u64, &str)>)> {
        self.rows.iter().enumerate().map(|(at, &(row, first))| {
            let end = self
                .rows
                .get(at + 1)
                .map_or(self.cells.len(), |&(_, next)| next);
            let cells = self.cells[first..end]
                .iter()
                .map(|(column, range)| (*column, &self.text[range.clone()]));
            (row, cells)
        })
    }

    /// The tree that decoding every key in turn builds from the same pairs.
    pub(super) fn into_param(self) -> Param {
        let rows = self
            .rows()
            .map(|(row, cells)| {
                let cells = cells
                    .map(|(column, value)| (Key::Index(column), Param::Value(value.to_string())))
                    .collect();
                (
                    Key::Index(row),
                    Param::Array(ParamArray(Entries::InOrder(cells))),
                )
            })
            .collect();
        Param::Array(ParamArray(Entries::InOrder(rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(rows: &DataRows) -> Vec<(u64, Vec<(u64, String)>)> {
        rows.rows()
            .map(|(row, cells)| (row, cells.map(|(c, v)| (c, v.to_string())).collect()))
            .collect()
    }

    #[test]
    fn cells_are_kept_in_column_order_and_a_later_value_replaces_an_earlier_one() {
        let mut rows = RowsBuilder::default();
        assert_eq!(rows.add(0, 1, b"b"), Ok(Some(2)));
        assert_eq!(rows.add(0, 0, b"a"), Ok(Some(1)));
        assert_eq!(rows.add(0, 1, b"B"), Ok(Some(0)));
        assert_eq!(rows.add(2, 0, b"c"), Ok(Some(2)));
        assert_eq!(rows.add(2, 0, b"%43"), Ok(Some(0)));
        assert_eq!(rows.add(1, 0, b"late"), Ok(None));
        let rows = rows.finish().unwrap();
        assert_eq!(
            cells(&rows),
            vec![
                (0, vec![(0, "a".into()), (1, "B".into())]),
                (2, vec![(0, "C".into())])
            ]
        );
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn values_are_utf8_each_on_its_own() {
        // "é" split over two values is valid text, but neither value is.
        let mut rows = RowsBuilder::default();
        assert_eq!(rows.add(0, 0, b"%C3"), Ok(Some(2)));
        assert_eq!(rows.add(0, 1, b"%A9"), Err(ParamError::NotUtf8));
        let mut rows = RowsBuilder::default();
        assert_eq!(rows.add(0, 0, b"%C3"), Ok(Some(2)));
        assert_eq!(rows.add(0, 1, b"a"), Ok(Some(1)));
        assert_eq!(rows.finish().map(|_| ()), Err(ParamError::NotUtf8));
        let mut rows = RowsBuilder::default();
        assert_eq!(rows.add(0, 0, b"caf%C3%A9"), Ok(Some(2)));
        assert_eq!(
            cells(&rows.finish().unwrap()),
            vec![(0, vec![(0, "café".into())])]
        );
    }
}
