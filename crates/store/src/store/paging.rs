//! Keyset pages of the store's lists: where a page starts (`Seek`), what a request wants
//! (`Want`), and the page it gets (`Window`).

use super::*;

/// Where a page of a keyset-paged list starts (keys are index keys after the tenant's prefix,
/// i.e. entity ids, which are time-ordered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seek {
    First,
    /// The page after this key.
    After(Vec<u8>),
    /// The page before this key.
    Before(Vec<u8>),
    Last,
}

/// What a list handler fetches: by offset (Netlify's `page=`) or from a cursor.
#[derive(Clone, Debug)]
pub enum Want {
    /// Skip `offset` items: O(offset).
    Offset { offset: usize, limit: usize },
    /// Seek to a position: O(limit).
    Keyset { seek: Seek, limit: usize },
}

impl Want {
    pub fn limit(&self) -> usize {
        match self {
            Want::Offset { limit, .. } | Want::Keyset { limit, .. } => *limit,
        }
    }
}

/// One page of a list, in key order, and whether anything lies before or after it.
#[derive(Debug)]
pub struct Window<T> {
    pub items: Vec<T>,
    pub before: bool,
    pub after: bool,
}

impl<T> Window<T> {
    /// This window's place in the list, holding `items` (what its entries were read into).
    pub fn holding<U>(&self, items: Vec<U>) -> Window<U> {
        Window {
            items,
            before: self.before,
            after: self.after,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Window<U> {
        Window {
            items: self.items.into_iter().map(f).collect(),
            before: self.before,
            after: self.after,
        }
    }

    /// The window of an in-memory list already in key order (ascending, or descending if
    /// `desc`): small lists kept whole.
    pub fn of_sorted(
        items: Vec<T>,
        key: impl Fn(&T) -> &[u8],
        desc: bool,
        seek: &Seek,
        limit: usize,
    ) -> Self {
        let n = items.len();
        // True while an item comes before position `k` (or is at it, with `at`).
        let ahead = |i: &T, k: &[u8], at: bool| {
            let o = key(i).cmp(k);
            let o = if desc { o.reverse() } else { o };
            o.is_lt() || (at && o.is_eq())
        };
        let (start, end) = match seek {
            Seek::First => (0, limit.min(n)),
            Seek::Last => (n.saturating_sub(limit), n),
            Seek::After(k) => {
                let start = items.partition_point(|i| ahead(i, k, true));
                (start, (start + limit).min(n))
            }
            Seek::Before(k) => {
                let end = items.partition_point(|i| ahead(i, k, false));
                (end.saturating_sub(limit), end)
            }
        };
        let items: Vec<T> = items.into_iter().skip(start).take(end - start).collect();
        Window {
            items,
            before: start > 0,
            after: end < n,
        }
    }
}

/// One page of the entries of `tree` under `prefix`, as (key after the prefix, value), by
/// offset or by seeking (see `window`).
pub(crate) fn page(
    tree: &crate::kv::Tree,
    prefix: &[u8],
    want: &Want,
) -> StoreResult<Window<(Vec<u8>, crate::kv::IVec)>> {
    match want {
        Want::Keyset { seek, limit } => window(tree, prefix, seek, *limit),
        Want::Offset { offset, limit } => {
            by_offset(tree.scan_prefix(prefix), prefix, *offset, *limit)
        }
    }
}

/// The `limit` entries of `entries` (under `prefix`, in the order given) after the first
/// `offset`, as (key after the prefix, value).
fn by_offset(
    entries: impl Iterator<Item = crate::kv::Result<(crate::kv::IVec, crate::kv::IVec)>>,
    prefix: &[u8],
    offset: usize,
    limit: usize,
) -> StoreResult<Window<(Vec<u8>, crate::kv::IVec)>> {
    let items = entries
        .skip(offset)
        .take(limit)
        .map(|r| r.map(|(k, v)| (k[prefix.len()..].to_vec(), v)))
        .collect::<crate::kv::Result<Vec<_>>>()?;
    Ok(Window {
        items,
        before: offset > 0,
        after: false,
    })
}

/// `page`, greatest key (newest, for time-ordered keys) first: a cursor's `After` is toward
/// smaller keys.
pub(crate) fn page_desc(
    tree: &crate::kv::Tree,
    prefix: &[u8],
    want: &Want,
) -> StoreResult<Window<(Vec<u8>, crate::kv::IVec)>> {
    match want {
        Want::Keyset { seek, limit } => {
            let ascending = match seek {
                Seek::First => Seek::Last,
                Seek::Last => Seek::First,
                Seek::After(k) => Seek::Before(k.clone()),
                Seek::Before(k) => Seek::After(k.clone()),
            };
            let w = window(tree, prefix, &ascending, *limit)?;
            let mut items = w.items;
            items.reverse();
            Ok(Window {
                items,
                before: w.after,
                after: w.before,
            })
        }
        Want::Offset { offset, limit } => {
            by_offset(tree.scan_prefix(prefix).rev(), prefix, *offset, *limit)
        }
    }
}

/// One page of the entries of `tree` under `prefix`, as (key after the prefix, value): at most
/// `limit`, found by seeking, so a page costs O(limit + log n) at any depth.
pub(crate) fn window(
    tree: &crate::kv::Tree,
    prefix: &[u8],
    seek: &Seek,
    limit: usize,
) -> StoreResult<Window<(Vec<u8>, crate::kv::IVec)>> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let end = match crate::kv::prefix_end(prefix) {
        Some(e) => Excluded(e),
        None => Unbounded,
    };
    let start = Included(prefix.to_vec());
    let at = |k: &[u8]| [prefix, k].concat();
    let strip = |(k, v): (crate::kv::IVec, crate::kv::IVec)| (k[prefix.len()..].to_vec(), v);
    let take =
        |iter: &mut dyn Iterator<Item = crate::kv::Result<(crate::kv::IVec, crate::kv::IVec)>>| {
            iter.take(limit + 1)
                .map(|r| r.map(strip))
                .collect::<crate::kv::Result<Vec<_>>>()
        };
    let (mut items, before, after, backwards) = match seek {
        Seek::First => {
            let items = take(&mut tree.range((start, end)))?;
            let after = items.len() > limit;
            (items, false, after, false)
        }
        Seek::Last => {
            let items = take(&mut tree.range((start, end)).rev())?;
            let before = items.len() > limit;
            (items, before, false, true)
        }
        Seek::After(k) => {
            let from = at(k);
            let items = take(&mut tree.range((Excluded(from.clone()), end)))?;
            let after = items.len() > limit;
            let before = tree.range((start, Included(from))).next_back().is_some();
            (items, before, after, false)
        }
        Seek::Before(k) => {
            let to = at(k);
            let items = take(&mut tree.range((start, Excluded(to.clone()))).rev())?;
            let before = items.len() > limit;
            let after = tree.range((Included(to), end)).next().is_some();
            (items, before, after, true)
        }
    };
    items.truncate(limit);
    if backwards {
        items.reverse();
    }
    Ok(Window {
        items,
        before,
        after,
    })
}
