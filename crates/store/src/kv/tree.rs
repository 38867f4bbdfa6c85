//! A tree: byte keys in order, read and written alone or in batches, iterated from either end.

use super::*;

/// One named tree: keys in byte order.
#[derive(Clone)]
pub enum Tree {
    Sled(sled::Tree),
    Pg(pg::Tree),
    Redb(redb::Tree),
}

/// Writes applied to one tree atomically; the last write to a key wins.
#[derive(Clone, Default, Debug)]
pub struct Batch {
    pub(crate) ops: Vec<(IVec, Option<IVec>)>,
}

impl Batch {
    pub fn insert<K: Into<IVec>, V: Into<IVec>>(&mut self, key: K, value: V) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove<K: Into<IVec>>(&mut self, key: K) {
        self.ops.push((key.into(), None));
    }

    /// The batch's final write per key, in key order.
    pub(crate) fn settled(&self) -> std::collections::BTreeMap<IVec, Option<IVec>> {
        self.ops.iter().cloned().collect()
    }
}

impl Tree {
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.get(key.as_ref()),
            Tree::Pg(t) => t.get(key.as_ref()),
            Tree::Redb(t) => t.get(key.as_ref()),
        }
    }

    pub fn insert<K: AsRef<[u8]>, V: Into<IVec>>(&self, key: K, value: V) -> Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.insert(key.as_ref(), value.into()),
            Tree::Pg(t) => t.insert(key.as_ref(), value.into()),
            Tree::Redb(t) => t.insert(key.as_ref(), value.into()),
        }
    }

    pub fn remove<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.remove(key.as_ref()),
            Tree::Pg(t) => t.remove(key.as_ref()),
            Tree::Redb(t) => t.remove(key.as_ref()),
        }
    }

    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> Result<bool> {
        match self {
            Tree::Sled(t) => t.contains_key(key.as_ref()),
            Tree::Pg(t) => t.get(key.as_ref()).map(|v| v.is_some()),
            Tree::Redb(t) => t.get(key.as_ref()).map(|v| v.is_some()),
        }
    }

    pub fn iter(&self) -> Iter {
        match self {
            Tree::Sled(t) => Iter::Sled(t.range(Bound::Unbounded, Bound::Unbounded)),
            Tree::Pg(t) => {
                Iter::Pg(t.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded))
            }
            Tree::Redb(t) => {
                Iter::Redb(t.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded))
            }
        }
    }

    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        match self {
            Tree::Sled(t) => {
                let (lo, hi) = (range.start_bound(), range.end_bound());
                Iter::Sled(t.range(lo.map(AsRef::as_ref), hi.map(AsRef::as_ref)))
            }
            Tree::Pg(t) => {
                let own = |b: std::ops::Bound<&K>| b.map(|k| k.as_ref().to_vec());
                Iter::Pg(t.range(own(range.start_bound()), own(range.end_bound())))
            }
            Tree::Redb(t) => {
                let (lo, hi) = (range.start_bound(), range.end_bound());
                Iter::Redb(t.range(lo.map(AsRef::as_ref), hi.map(AsRef::as_ref)))
            }
        }
    }

    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Iter {
        match self {
            Tree::Sled(t) => Iter::Sled(t.scan_prefix(prefix.as_ref())),
            Tree::Pg(t) => {
                use std::ops::Bound::{Excluded, Included, Unbounded};
                let prefix = prefix.as_ref().to_vec();
                let end = prefix_end(&prefix).map_or(Unbounded, Excluded);
                Iter::Pg(t.range(Included(prefix), end))
            }
            Tree::Redb(t) => {
                use std::ops::Bound::{Excluded, Included, Unbounded};
                let prefix = prefix.as_ref();
                let end = prefix_end(prefix);
                let end = end.as_deref().map_or(Unbounded, Excluded);
                Iter::Redb(t.range(Included(prefix), end))
            }
        }
    }

    pub fn first(&self) -> Result<Option<(IVec, IVec)>> {
        self.iter().next().transpose()
    }

    pub fn last(&self) -> Result<Option<(IVec, IVec)>> {
        self.iter().next_back().transpose()
    }

    /// How many entries (a scan on either engine).
    pub fn len(&self) -> usize {
        match self {
            Tree::Sled(t) => t.len(),
            Tree::Pg(t) => t.count().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot count a tree");
                0
            }),
            Tree::Redb(t) => t.count().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot count a tree");
                0
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Tree::Sled(t) => t.is_empty(),
            Tree::Pg(_) | Tree::Redb(_) => self.first().map_or_else(
                |e| {
                    tracing::warn!(error = %e, "cannot read a tree");
                    true
                },
                |f| f.is_none(),
            ),
        }
    }

    pub fn apply_batch(&self, batch: Batch) -> Result<()> {
        match self {
            Tree::Sled(t) => t.apply_batch(&batch),
            Tree::Pg(t) => t.apply_batch(&batch),
            Tree::Redb(t) => t.apply_batch(&batch),
        }
    }

    /// Makes this tree's writes durable (see `Db::flush`).
    pub fn flush(&self) -> Result<usize> {
        match self {
            Tree::Sled(t) => t.flush(),
            Tree::Pg(_) => Ok(0),
            Tree::Redb(t) => t.db().flush(),
        }
    }

    pub fn clear(&self) -> Result<()> {
        match self {
            Tree::Sled(t) => t.clear(),
            Tree::Pg(t) => t.clear(),
            Tree::Redb(t) => t.clear(),
        }
    }

    /// Sets `key` to `new` if it holds `old` (None: absent / remove), atomically.
    pub fn compare_and_swap<K, OV, NV>(
        &self,
        key: K,
        old: Option<OV>,
        new: Option<NV>,
    ) -> Result<std::result::Result<(), CompareAndSwapError>>
    where
        K: AsRef<[u8]>,
        OV: AsRef<[u8]>,
        NV: Into<IVec>,
    {
        match self {
            Tree::Sled(t) => t.compare_and_swap(
                key.as_ref(),
                old.as_ref().map(AsRef::as_ref),
                new.map(Into::into),
            ),
            Tree::Pg(_) | Tree::Redb(_) => {
                let old = old.map(|o| o.as_ref().to_vec());
                let new: Option<IVec> = new.map(Into::into);
                let key = key.as_ref();
                self.transaction::<_, _, std::convert::Infallible>(|tx| {
                    let current = tx.get(key)?;
                    if current.as_deref() != old.as_deref() {
                        return Ok(Err(CompareAndSwapError {
                            current,
                            proposed: new.clone(),
                        }));
                    }
                    match &new {
                        Some(v) => tx.insert(key, v.clone())?,
                        None => drop(tx.remove(key)?),
                    };
                    Ok(Ok(()))
                })
                .map_err(storage_error)
            }
        }
    }

    /// Replaces the value under `key` with what `f` makes of it (None removes), atomically;
    /// returns the new value.
    pub fn update_and_fetch<K, V, F>(&self, key: K, mut f: F) -> Result<Option<IVec>>
    where
        K: AsRef<[u8]>,
        F: FnMut(Option<&[u8]>) -> Option<V>,
        IVec: From<V>,
    {
        match self {
            Tree::Sled(t) => t.update_and_fetch(key.as_ref(), |old| f(old).map(IVec::from)),
            Tree::Pg(_) | Tree::Redb(_) => {
                let key = key.as_ref();
                let f = std::cell::RefCell::new(&mut f);
                self.transaction::<_, _, std::convert::Infallible>(|tx| {
                    let current = tx.get(key)?;
                    let new = (f.borrow_mut())(current.as_deref()).map(IVec::from);
                    match &new {
                        Some(v) => tx.insert(key, v.clone())?,
                        None => drop(tx.remove(key)?),
                    };
                    Ok(new)
                })
                .map_err(storage_error)
            }
        }
    }

    /// Tells the other processes that `topics` changed (see `Db::announce`).
    pub fn announce(&self, topics: &[&str]) {
        if let Tree::Pg(t) = self {
            t.db().announce(topics);
        }
    }

    pub fn name(&self) -> IVec {
        match self {
            Tree::Sled(t) => t.name(),
            Tree::Pg(t) => t.name(),
            Tree::Redb(t) => t.name(),
        }
    }

    /// Runs `f` as one transaction over this tree.
    pub fn transaction<F, A, E>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&TransactionalTree) -> ConflictableTransactionResult<A, E>,
    {
        match self {
            Tree::Sled(t) => {
                sled::transaction(&[t], |txs| f(&TransactionalTree::Sled(txs[0].clone())))
            }
            Tree::Pg(t) => {
                pg::transaction(t.db(), |state| f(&TransactionalTree::Pg(t.in_tx(state))))
            }
            Tree::Redb(t) => {
                redb::transaction(t.db(), |tx| f(&TransactionalTree::Redb(t.in_tx(tx))))
            }
        }
    }
}

/// Entries of a tree in key order (either end first).
pub enum Iter {
    Sled(sled::Iter),
    Pg(pg::Iter),
    Redb(redb::Iter),
}

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(i) => i.next(),
            Iter::Pg(i) => i.next(),
            Iter::Redb(i) => i.next(),
        }
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(i) => i.next_back(),
            Iter::Pg(i) => i.next_back(),
            Iter::Redb(i) => i.next_back(),
        }
    }
}

impl Iter {
    pub fn keys(self) -> impl DoubleEndedIterator<Item = Result<IVec>> {
        self.map(|r| r.map(|(k, _)| k))
    }

    pub fn values(self) -> impl DoubleEndedIterator<Item = Result<IVec>> {
        self.map(|r| r.map(|(_, v)| v))
    }
}
