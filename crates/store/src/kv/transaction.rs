//! Transactions over several trees: serializable, all or nothing, on every engine.

use super::*;

/// A tree inside a transaction: reads see the transaction's own writes, which all land at once
/// when the closure returns Ok.
#[derive(Clone)]
pub enum TransactionalTree {
    Sled(sled::TxTree),
    Pg(pg::TxTree),
    Redb(redb::TxTree),
}

impl TransactionalTree {
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> UnabortableTransactionResult<Option<IVec>> {
        match self {
            TransactionalTree::Sled(t) => t.get(key.as_ref()),
            TransactionalTree::Pg(t) => t.get(key.as_ref()),
            TransactionalTree::Redb(t) => t.get(key.as_ref()),
        }
    }

    /// Sets `key` (a blind write: read it first if the old value matters; on PostgreSQL the
    /// write costs no round trip until the commit).
    pub fn insert<K, V>(&self, key: K, value: V) -> UnabortableTransactionResult<()>
    where
        K: AsRef<[u8]> + Into<IVec>,
        V: Into<IVec>,
    {
        match self {
            TransactionalTree::Sled(t) => t.insert(key.as_ref(), &value.into()),
            TransactionalTree::Pg(t) => {
                t.write(key.into(), Some(value.into()));
                Ok(())
            }
            TransactionalTree::Redb(t) => t.insert(key.as_ref(), Some(&value.into())).map(drop),
        }
    }

    pub fn remove<K>(&self, key: K) -> UnabortableTransactionResult<Option<IVec>>
    where
        K: AsRef<[u8]> + Into<IVec>,
    {
        match self {
            TransactionalTree::Sled(t) => t.remove(key.as_ref()),
            TransactionalTree::Pg(t) => t.insert(key.into(), None),
            TransactionalTree::Redb(t) => t.insert(key.as_ref(), None),
        }
    }

    pub fn apply_batch(&self, batch: &Batch) -> UnabortableTransactionResult<()> {
        match self {
            TransactionalTree::Sled(t) => t.apply_batch(batch),
            TransactionalTree::Pg(t) => {
                for (k, v) in batch.settled() {
                    t.write(k, v);
                }
                Ok(())
            }
            TransactionalTree::Redb(t) => {
                for (k, v) in batch.settled() {
                    t.insert(&k, v.as_deref())?;
                }
                Ok(())
            }
        }
    }
}

/// Several trees in one transaction: `(&a, &b).transaction(|(a, b)| ...)`, as with sled.
pub trait Transactional<E> {
    type View;

    fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>;
}

/// The error of a transaction over trees of two engines (a bug: a store opens one database).
fn mixed<A, E>() -> TransactionResult<A, E> {
    Err(TransactionError::Storage(Error::Unsupported(
        "a transaction over trees of two databases".into(),
    )))
}

macro_rules! transactional_tuple {
    ($($t:ident),+) => {
        impl<'a, E> Transactional<E> for ($(transactional_tuple!(@tree 'a $t),)+) {
            type View = ($(transactional_tuple!(@view $t),)+);

            fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
            where
                F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>,
            {
                let ($($t,)+) = *self;
                if let ($(Tree::Sled($t),)+) = ($($t,)+) {
                    return sled::transaction(&[$($t),+], |txs| {
                        let mut txs = txs.iter().cloned().map(TransactionalTree::Sled);
                        f(&($(transactional_tuple!(@next txs $t),)+))
                    });
                }
                if let ($(Tree::Pg($t),)+) = ($($t,)+) {
                    let db = transactional_tuple!(@first $($t),+).db();
                    return pg::transaction(db, |state| {
                        f(&($(TransactionalTree::Pg($t.in_tx(state)),)+))
                    });
                }
                if let ($(Tree::Redb($t),)+) = ($($t,)+) {
                    let db = transactional_tuple!(@first $($t),+).db();
                    return redb::transaction(db, |tx| {
                        f(&($(TransactionalTree::Redb($t.in_tx(tx)),)+))
                    });
                }
                mixed()
            }
        }
    };
    (@view $t:ident) => { TransactionalTree };
    (@next $txs:ident $t:ident) => {
        $txs.next().expect("one transactional tree per tree")
    };
    (@tree $l:lifetime $t:ident) => { &$l Tree };
    (@first $first:ident $(, $rest:ident)*) => { $first };
}

transactional_tuple!(a, b);
transactional_tuple!(a, b, c);
transactional_tuple!(a, b, c, d);
transactional_tuple!(a, b, c, d, e);
transactional_tuple!(a, b, c, d, e, g);
transactional_tuple!(a, b, c, d, e, g, h);
transactional_tuple!(a, b, c, d, e, g, h, i);

impl<E> Transactional<E> for [&Tree] {
    type View = Vec<TransactionalTree>;

    fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>,
    {
        let sled = all(self, |t| match t {
            Tree::Sled(t) => Some(t),
            _ => None,
        });
        if let Some(trees) = sled {
            return sled::transaction(&trees, |v| {
                f(&v.iter().cloned().map(TransactionalTree::Sled).collect())
            });
        }
        let pg = all(self, |t| match t {
            Tree::Pg(t) => Some(t),
            _ => None,
        });
        if let Some(trees) = pg {
            return pg::transaction(trees[0].db(), |state| {
                f(&trees
                    .iter()
                    .map(|t| TransactionalTree::Pg(t.in_tx(state)))
                    .collect())
            });
        }
        let redb = all(self, |t| match t {
            Tree::Redb(t) => Some(t),
            _ => None,
        });
        match redb {
            Some(trees) => redb::transaction(trees[0].db(), |tx| {
                f(&trees
                    .iter()
                    .map(|t| TransactionalTree::Redb(t.in_tx(tx)))
                    .collect())
            }),
            None => mixed(),
        }
    }
}

/// Every tree's engine-specific tree, if there are some and all are of the engine `pick` takes.
fn all<'a, T>(trees: &[&'a Tree], pick: impl Fn(&'a Tree) -> Option<&'a T>) -> Option<Vec<&'a T>> {
    let picked: Option<Vec<&T>> = trees.iter().map(|t| pick(t)).collect();
    picked.filter(|p| !p.is_empty())
}

/// A failed one-tree transaction (which never aborts) as a store error.
pub(super) fn storage_error<E>(e: TransactionError<E>) -> Error {
    match e {
        TransactionError::Storage(e) => e,
        TransactionError::Abort(_) => Error::ReportableBug("an unabortable change aborted".into()),
    }
}
