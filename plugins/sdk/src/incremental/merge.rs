//! [`OrderedMerge`]: several time-ordered queries read page by page as one
//! stream of [`Group`]s, merged by record id.

use std::collections::VecDeque;

use crate::time::Timestamp;

/// A record [`OrderedMerge`] can place and combine.
pub trait Ordered {
    /// Modification time, at the granularity of the source's time filter
    /// (truncate to seconds for one-second filters). `None` sorts first.
    fn order_at(&self) -> Option<Timestamp>;
    /// The source's id of the record; records with equal ids are merged.
    fn merge_id(&self) -> &str;
    /// Folds in the same record as found by another query (union of labels,
    /// IPs, ...). `other` came from a later query.
    fn merge_from(&mut self, other: Self);
}

/// One page of one query, as the adapter fetched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The records, in the source's order.
    pub items: Vec<T>,
    /// Whether the query has more pages.
    pub more: bool,
}

/// Records of one instant, merged by id and sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<T> {
    /// The instant (the order key all of them share, after clamping).
    pub at: Option<Timestamp>,
    /// The merged records.
    pub items: Vec<T>,
    /// Pages fetched since the previous group: the caller checkpoints when
    /// this is non-zero, which makes checkpoints page by page.
    pub pages_fetched: u32,
}

struct Stream<T> {
    buffer: VecDeque<T>,
    exhausted: bool,
    /// Order key of the last group taken from this stream. A source that
    /// returns a record out of order has it placed here, never earlier, so
    /// groups (and the watermark) only move forward.
    position: Option<Timestamp>,
}

/// Reads several queries, each ordered by modification time, as one stream
/// of [`Group`]s in time order, merging records with equal ids. Memory: one
/// page per query plus one group.
///
/// ```
/// use sr_adapter_sdk::incremental::{OrderedMerge, Ordered, Page};
/// use sr_adapter_sdk::time::Timestamp;
///
/// #[derive(Debug)]
/// struct Rec { id: String, at: Timestamp, labels: Vec<String> }
/// impl Ordered for Rec {
///     fn order_at(&self) -> Option<Timestamp> { Some(self.at) }
///     fn merge_id(&self) -> &str { &self.id }
///     fn merge_from(&mut self, other: Self) { self.labels.extend(other.labels) }
/// }
/// let rec = |id: &str, s: i64, label: &str| Rec {
///     id: id.into(), at: Timestamp::from_unix_seconds(s), labels: vec![label.into()],
/// };
/// let mut pages = vec![
///     vec![Page { items: vec![rec("1", 10, "a"), rec("2", 20, "a")], more: false }],
///     vec![Page { items: vec![rec("2", 20, "b")], more: false }],
/// ];
/// let mut merge = OrderedMerge::new(2);
/// let mut fetch = |query: usize| Ok::<_, ()>(pages[query].remove(0));
/// let first = merge.next_group(&mut fetch).unwrap().unwrap();
/// assert_eq!(first.items[0].labels, ["a"]);
/// let second = merge.next_group(&mut fetch).unwrap().unwrap();
/// assert_eq!(second.items[0].labels, ["a", "b"]);
/// assert!(merge.next_group(&mut fetch).unwrap().is_none());
/// ```
pub struct OrderedMerge<T> {
    streams: Vec<Stream<T>>,
    pages_fetched: u32,
}

impl<T: Ordered> OrderedMerge<T> {
    /// A merge over `queries` queries, numbered from 0.
    pub fn new(queries: usize) -> Self {
        Self {
            streams: (0..queries)
                .map(|_| Stream {
                    buffer: VecDeque::new(),
                    exhausted: false,
                    position: None,
                })
                .collect(),
            pages_fetched: 0,
        }
    }

    /// The next group, fetching pages with `fetch(query)` as needed; `None`
    /// once every query is exhausted. An error from `fetch` is returned
    /// as is: the run must then fail (its pages are incomplete).
    ///
    /// A page with no items ends its query even if it claims more, so a
    /// source that keeps answering empty pages cannot loop a run forever.
    pub fn next_group<E>(
        &mut self,
        mut fetch: impl FnMut(usize) -> Result<Page<T>, E>,
    ) -> Result<Option<Group<T>>, E> {
        for index in 0..self.streams.len() {
            self.fill(index, &mut fetch)?;
        }
        let Some(at) = self
            .streams
            .iter()
            .filter_map(|s| s.buffer.front().map(|head| effective(head, s.position)))
            .min()
        else {
            return Ok(None);
        };
        let mut taken: Vec<T> = Vec::new();
        for index in 0..self.streams.len() {
            loop {
                let stream = &mut self.streams[index];
                match stream.buffer.front() {
                    Some(head) if effective(head, stream.position) == at => {
                        let Some(item) = stream.buffer.pop_front() else {
                            break;
                        };
                        stream.position = stream.position.max(at);
                        taken.push(item);
                    }
                    Some(_) => break,
                    // The instant may go on in the next page.
                    None if !stream.exhausted => self.fill(index, &mut fetch)?,
                    None => break,
                }
            }
        }
        // Sort by id (stable: query order kept among equal ids) and fold
        // equal ids into the first.
        taken.sort_by(|a, b| a.merge_id().cmp(b.merge_id()));
        let mut items: Vec<T> = Vec::with_capacity(taken.len());
        for item in taken {
            match items.last_mut() {
                Some(last) if last.merge_id() == item.merge_id() => last.merge_from(item),
                _ => items.push(item),
            }
        }
        let pages_fetched = std::mem::take(&mut self.pages_fetched);
        Ok(Some(Group {
            at,
            items,
            pages_fetched,
        }))
    }

    fn fill<E>(
        &mut self,
        index: usize,
        fetch: &mut impl FnMut(usize) -> Result<Page<T>, E>,
    ) -> Result<(), E> {
        let stream = &mut self.streams[index];
        if !stream.buffer.is_empty() || stream.exhausted {
            return Ok(());
        }
        let page = fetch(index)?;
        self.pages_fetched = self.pages_fetched.saturating_add(1);
        stream.exhausted = !page.more || page.items.is_empty();
        stream.buffer.extend(page.items);
        Ok(())
    }
}

fn effective<T: Ordered>(item: &T, position: Option<Timestamp>) -> Option<Timestamp> {
    item.order_at().max(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Rec {
        id: String,
        at: Option<Timestamp>,
        labels: Vec<String>,
    }

    impl Ordered for Rec {
        fn order_at(&self) -> Option<Timestamp> {
            self.at
        }
        fn merge_id(&self) -> &str {
            &self.id
        }
        fn merge_from(&mut self, other: Self) {
            for label in other.labels {
                if !self.labels.contains(&label) {
                    self.labels.push(label);
                }
            }
        }
    }

    fn rec(id: u32, second: i64, label: &str) -> Rec {
        Rec {
            id: id.to_string(),
            at: Some(Timestamp::from_unix_seconds(second)),
            labels: vec![label.to_string()],
        }
    }

    /// Splits each query's records into pages of `size`.
    fn paged(queries: Vec<Vec<Rec>>, size: usize) -> Vec<VecDeque<Page<Rec>>> {
        queries
            .into_iter()
            .map(|records| {
                let chunks: Vec<Vec<Rec>> = records.chunks(size).map(<[Rec]>::to_vec).collect();
                let n = chunks.len();
                let mut pages: VecDeque<Page<Rec>> = chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, items)| Page {
                        items,
                        more: i + 1 < n,
                    })
                    .collect();
                if pages.is_empty() {
                    pages.push_back(Page {
                        items: vec![],
                        more: false,
                    });
                }
                pages
            })
            .collect()
    }

    fn drain(queries: Vec<Vec<Rec>>, size: usize) -> Vec<Group<Rec>> {
        let mut pages = paged(queries, size);
        let mut merge = OrderedMerge::new(pages.len());
        let mut groups = Vec::new();
        while let Some(group) = merge
            .next_group(|q| pages[q].pop_front().ok_or("fetched past the end"))
            .unwrap()
        {
            groups.push(group);
        }
        groups
    }

    #[test]
    fn one_query_groups_by_instant_across_page_boundaries() {
        let records = vec![
            rec(1, 10, "a"),
            rec(2, 10, "a"),
            rec(3, 10, "a"),
            rec(4, 11, "a"),
            rec(5, 12, "a"),
        ];
        let groups = drain(vec![records], 2);
        let shape: Vec<(i64, Vec<&str>, u32)> = groups
            .iter()
            .map(|g| {
                (
                    g.at.unwrap().unix_seconds(),
                    g.items.iter().map(|r| r.id.as_str()).collect(),
                    g.pages_fetched,
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (10, vec!["1", "2", "3"], 2),
                // Taking 4 empties the buffer: the next page is read to see
                // whether second 11 goes on.
                (11, vec!["4"], 1),
                (12, vec!["5"], 0),
            ]
        );
    }

    #[test]
    fn several_queries_merge_by_id_in_time_order() {
        let a = vec![rec(1, 10, "a"), rec(2, 20, "a"), rec(3, 30, "a")];
        let b = vec![rec(2, 20, "b"), rec(4, 25, "b"), rec(3, 30, "b")];
        let c = vec![];
        let groups = drain(vec![a, b, c], 1);
        let flat: Vec<(String, Vec<String>)> = groups
            .into_iter()
            .flat_map(|g| g.items)
            .map(|r| (r.id, r.labels))
            .collect();
        let expected: Vec<(String, Vec<String>)> = vec![
            ("1".into(), vec!["a".into()]),
            ("2".into(), vec!["a".into(), "b".into()]),
            ("4".into(), vec!["b".into()]),
            ("3".into(), vec!["a".into(), "b".into()]),
        ];
        assert_eq!(flat, expected);
    }

    #[test]
    fn out_of_order_records_never_move_groups_backwards() {
        let records = vec![rec(1, 10, "a"), rec(2, 30, "a"), rec(3, 20, "a")];
        let groups = drain(vec![records], 1);
        let shape: Vec<(i64, usize)> = groups
            .iter()
            .map(|g| (g.at.unwrap().unix_seconds(), g.items.len()))
            .collect();
        // Record 3 (20) came after 30: it joins the group at 30.
        assert_eq!(shape, [(10, 1), (30, 2)]);
        let undated = Rec {
            id: "9".into(),
            at: None,
            labels: vec![],
        };
        let groups = drain(vec![vec![undated, rec(1, 5, "a")]], 5);
        assert_eq!(groups[0].at, None);
        assert_eq!(groups[1].at, Some(Timestamp::from_unix_seconds(5)));
    }

    #[test]
    fn fetch_errors_stop_the_merge() {
        let mut merge: OrderedMerge<Rec> = OrderedMerge::new(2);
        let mut calls = 0;
        let result = merge.next_group(|q| {
            calls += 1;
            if q == 1 {
                Err("page 1 of query 1 failed")
            } else {
                Ok(Page {
                    items: vec![rec(1, 1, "a")],
                    more: true,
                })
            }
        });
        assert_eq!(result.unwrap_err(), "page 1 of query 1 failed");
        assert_eq!(calls, 2);
    }

    #[test]
    fn empty_pages_end_a_query_even_when_more_is_claimed() {
        let mut merge: OrderedMerge<Rec> = OrderedMerge::new(1);
        let mut calls = 0;
        let group = merge
            .next_group(|_| {
                calls += 1;
                Ok::<_, ()>(Page {
                    items: vec![],
                    more: true,
                })
            })
            .unwrap();
        assert!(group.is_none());
        assert_eq!(calls, 1);
    }
}
