//! Trees that caches above the store are built from (the edge's host lookups, the credential
//! cache), and the generation counters those caches are tagged with.
//!
//! A `Watched` tree has no write methods of its own. A write takes `write()`, a guard that bumps
//! the tree's generations when it is dropped, after the write; so a new write path cannot forget
//! to invalidate the caches, it can only decline to, by name (`Written::keep_caches`), where a
//! write provably leaves every cached answer true.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A counter a cache tags its entries with; an entry whose tag is behind is ignored.
#[derive(Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// A tree and the generations its writes move.
#[derive(Clone)]
pub(crate) struct Watched {
    tree: crate::kv::Tree,
    generations: Vec<Generation>,
}

impl Watched {
    pub fn new(tree: crate::kv::Tree, generations: &[&Generation]) -> Watched {
        Watched {
            tree,
            generations: generations.iter().map(|g| (*g).clone()).collect(),
        }
    }

    /// The tree, for reading. (Writing through it would leave the caches stale; use `write`.)
    pub fn read(&self) -> &crate::kv::Tree {
        &self.tree
    }

    /// The tree, for writing: the caches built from it drop what they hold once the guard goes.
    pub fn write(&self) -> Written<'_> {
        Written {
            watched: self,
            bump: true,
        }
    }
}

/// A write to a watched tree under way; dropping it bumps the tree's generations.
pub(crate) struct Written<'a> {
    watched: &'a Watched,
    bump: bool,
}

impl Written<'_> {
    /// Ends the write without invalidating the caches, for a write that changed nothing a cache
    /// may hold: `why` says what makes that so (e.g. only new records under new keys were added,
    /// and the caches hold only records they found).
    pub fn keep_caches(mut self, why: &'static str) {
        let _ = why;
        self.bump = false;
    }
}

impl std::ops::Deref for Written<'_> {
    type Target = crate::kv::Tree;

    fn deref(&self) -> &crate::kv::Tree {
        &self.watched.tree
    }
}

impl Drop for Written<'_> {
    fn drop(&mut self) {
        if self.bump {
            for generation in &self.watched.generations {
                generation.bump();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_bumps_once_it_is_done_unless_it_keeps_the_caches() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (hosts, credentials) = (Generation::default(), Generation::default());
        let tree = Watched::new(
            crate::kv::Tree::Sled(db.open_tree("t").unwrap()),
            &[&hosts, &credentials],
        );
        {
            let w = tree.write();
            w.insert(b"k", b"v").unwrap();
            assert_eq!(hosts.get(), 0, "not before the write is over");
        }
        assert_eq!((hosts.get(), credentials.get()), (1, 1));
        let w = tree.write();
        w.insert(b"k2", b"v").unwrap();
        w.keep_caches("a test");
        assert_eq!((hosts.get(), credentials.get()), (1, 1));
        assert_eq!(tree.read().len(), 2);
    }
}
