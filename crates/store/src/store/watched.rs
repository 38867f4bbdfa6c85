//! Trees that caches above the store are built from (the edge's host lookups, the credential
//! cache), and the generation counters those caches are tagged with.
//!
//! A `Watched` tree has no write methods of its own. A write takes `write()`, a guard that bumps
//! the tree's generations when it is dropped, after the write; so a new write path cannot forget
//! to invalidate the caches, it can only decline to, by name (`Written::keep_caches`), where a
//! write provably leaves every cached answer true.
//!
//! On PostgreSQL other nodes write too: a write also announces its generations' names to them
//! (`kv::Db::announce`), and each node bumps its own counters when it hears one. While a node
//! cannot hear (its listening connection is down, or not up yet), `get` moves the counter on
//! every call, so no cached entry is used until it hears again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A counter a cache tags its entries with; an entry whose tag is behind is ignored.
#[derive(Clone)]
pub(crate) struct Generation {
    /// Its name in announcements to other nodes.
    pub name: &'static str,
    count: Arc<AtomicU64>,
    db: crate::kv::Db,
}

impl Generation {
    pub fn new(name: &'static str, db: &crate::kv::Db) -> Generation {
        Generation {
            name,
            count: Arc::default(),
            db: db.clone(),
        }
    }

    pub fn get(&self) -> u64 {
        if !self.db.in_sync() {
            // Another node's change may have gone unheard: no entry tagged so far is used.
            return self.count.fetch_add(1, Ordering::AcqRel) + 1;
        }
        self.count.load(Ordering::Acquire)
    }

    pub fn bump(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
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
            if let crate::kv::Tree::Pg(_) = self.watched.tree {
                let names: Vec<&str> = self.watched.generations.iter().map(|g| g.name).collect();
                self.watched.tree.announce(&names);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_bumps_once_it_is_done_unless_it_keeps_the_caches() {
        let db = crate::kv::sled::temporary().unwrap();
        let kv = crate::kv::Db::Sled(db.clone());
        let (hosts, credentials) = (
            Generation::new("hosts", &kv),
            Generation::new("credentials", &kv),
        );
        let tree = Watched::new(
            crate::kv::Tree::Sled(db.open_tree(b"t").unwrap()),
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

    /// On PostgreSQL a node trusts its caches only while it hears the other nodes: before its
    /// listening connection is up, and again once that connection is lost, every `get` moves
    /// the generation (no entry tagged before is used); once it hears again, the generation
    /// holds still until a change. Another node's announcement moves it.
    #[test]
    fn a_node_that_cannot_hear_the_others_uses_no_cached_entry() {
        let Some(db) = crate::kv::tests::postgres("generations") else {
            return; // no PostgreSQL in this run
        };
        let hosts = Generation::new("hosts", &db);
        let (first, second) = (hosts.get(), hosts.get());
        assert!(second > first, "not listening yet: every get moves on");
        let heard = hosts.clone();
        db.listen(move |topics| {
            if topics.is_none_or(|t| t.contains(&"hosts")) {
                heard.bump();
            }
            true
        });
        let settled = |hosts: &Generation| {
            for _ in 0..100 {
                let g = hosts.get();
                if hosts.get() == g {
                    return g;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            panic!("the generation never held still");
        };
        let held = settled(&hosts);

        // Another node (another Db on the same database) announces a change.
        let crate::kv::Db::Pg(pg) = &db else {
            unreachable!()
        };
        let other = crate::kv::Db::Pg(pg.reopen_for_tests());
        other.announce(&["hosts"]);
        let mut moved = false;
        for _ in 0..100 {
            if hosts.get() > held {
                moved = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(moved, "another node's change was not heard");

        // The listening connection is cut: every get moves on again, until it is back.
        let before = settled(&hosts);
        pg.cut_listening_for_tests();
        let mut bypassed = false;
        for _ in 0..100 {
            let g = hosts.get();
            if hosts.get() > g {
                bypassed = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            bypassed,
            "caches were trusted while the node could not hear"
        );
        assert!(settled(&hosts) > before, "listening again");
    }
}
