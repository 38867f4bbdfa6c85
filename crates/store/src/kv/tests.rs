//! The engines against each other: the same random operations on sled and on redb or
//! PostgreSQL give the same answers; redb's flush, snapshots, shared read trees and page fill.

use super::*;
use rand::{Rng, SeedableRng};

/// A fresh PostgreSQL database for one test, when the suite runs with one
/// (`RESELLERD_TEST_DATABASE_URL`, set by `scripts/test` for its PostgreSQL pass).
pub(crate) fn postgres(name: &str) -> Option<Db> {
    let admin = std::env::var("RESELLERD_TEST_DATABASE_URL").ok()?;
    let db = format!("kv_{name}_{}", std::process::id());
    let sql = |q: &str| {
        let out = std::process::Command::new("psql")
            .arg(&admin)
            .args(["-qc", q])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sql(&format!("DROP DATABASE IF EXISTS {db}"));
    sql(&format!("CREATE DATABASE {db}"));
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(Db::Pg(pg::Db::open(&format!("{base}/{db}"), 4).unwrap()))
}

fn entries(i: impl Iterator<Item = Result<(IVec, IVec)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    i.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

/// The same random writes, transactions and reads on sled and on PostgreSQL give the same
/// answers: order, ranges from either end, prefixes, batches, compare-and-swap.
#[test]
fn postgresql_answers_as_sled_does() {
    let Some(pg) = postgres("same") else {
        return; // no PostgreSQL in this run
    };
    answers_as_sled_does(pg);
}

#[test]
fn redb_answers_as_sled_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Db::open(&dir.path().join(redb::FILE), 8 << 20).unwrap();
    answers_as_sled_does(Db::Redb(db));
}

/// redb: what was flushed is there after a reopen; a write from inside a transaction's
/// closure to a tree outside it fails instead of waiting forever; a failed closure leaves
/// nothing behind.
#[test]
fn redb_flushes_and_refuses_a_nested_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(redb::FILE);
    {
        let db = Db::Redb(redb::Db::open(&path, 8 << 20).unwrap());
        assert!(!db.was_recovered());
        let t = db.open_tree("t").unwrap();
        t.insert(b"a", &b"1"[..]).unwrap();
        let nested: TransactionResult<(), ()> = t.transaction(|tx| {
            tx.insert(&b"b"[..], &b"2"[..])?;
            assert!(t.insert(b"c", &b"3"[..]).is_err());
            Err(ConflictableTransactionError::Abort(()))
        });
        assert!(matches!(nested, Err(TransactionError::Abort(()))));
        assert_eq!(t.get(b"b").unwrap(), None);
        db.flush().unwrap();
    }
    let db = Db::Redb(redb::Db::open(&path, 8 << 20).unwrap());
    assert!(db.was_recovered());
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(t.len(), 1);
    let names = db.tree_names();
    assert!(names.iter().any(|n| n.as_ref() == b"t"), "{names:?}");
}

/// A redb snapshot reads one moment while commits go on; its ladder of newer read
/// transactions is let go of once it is gone, so the file can be opened again afterwards
/// (no read transaction is left behind holding it).
#[test]
fn redb_snapshots_read_one_moment_and_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(redb::FILE);
    let db = redb::Db::open(&path, 8 << 20).unwrap();
    let t = Db::Redb(db.clone()).open_tree("t").unwrap();
    t.insert(b"a", &b"0"[..]).unwrap();
    db.flush().unwrap();
    let snapshot = db.snapshot().unwrap();
    // Long enough for the ladder to take rungs.
    for round in 1..=40u8 {
        t.insert(b"a", &[round][..]).unwrap();
        t.insert([round], &b"x"[..]).unwrap();
        db.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let seen: Vec<_> = snapshot.iter(b"t").map(|kv| kv.unwrap()).collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1.as_ref(), b"0");
    drop(snapshot);
    drop(t);
    drop(db);
    let mut reopened = None;
    for _ in 0..500 {
        match redb::Db::open(&path, 8 << 20) {
            Ok(db) => {
                reopened = Some(db);
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    let db = Db::Redb(reopened.expect("the ladder let go of the file"));
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&[40u8][..]));
    assert_eq!(t.len(), 41);
}

/// Readers share the trees they opened until the next commit (`redb::Inner::reading`): a
/// read after a write sees it, a dropped tree reads as empty, and a shared snapshot keeps no
/// pages that later commits freed (rewrites after one read reuse their pages).
#[test]
fn redb_readers_share_trees_until_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Db::open(&dir.path().join(redb::FILE), 8 << 20).unwrap();
    let kv = Db::Redb(db.clone());
    let t = kv.open_tree("t").unwrap();
    t.insert(b"a", &b"1"[..]).unwrap();
    assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    t.insert(b"a", &b"2"[..]).unwrap();
    assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
    t.insert(b"b", &b"3"[..]).unwrap();
    assert_eq!(t.iter().count(), 2);
    let other = kv.open_tree("other").unwrap();
    other.insert(b"x", &b"y"[..]).unwrap();
    assert_eq!(other.len(), 1);
    kv.drop_tree("other").unwrap();
    assert_eq!(other.get(b"x").unwrap(), None);
    assert_eq!(t.len(), 2);

    // One read, then rewrites with no read between them: each durable commit may reuse
    // the pages the one before freed, unless a reader's snapshot still holds them.
    let big = vec![7u8; 3000];
    t.insert(b"a", big.clone()).unwrap();
    db.flush().unwrap();
    assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&big[..]));
    for round in 0..1000u32 {
        let mut v = big.clone();
        v[..4].copy_from_slice(&round.to_be_bytes());
        t.insert(b"a", v).unwrap();
        db.flush().unwrap();
    }
    let (_, allocated) = db.stats().unwrap();
    assert!(
        allocated < 1 << 20,
        "{allocated} bytes of pages after rewriting one record"
    );
}

/// A read that starts after a write returned sees it, while other readers open and share
/// trees around the commits (a tree opened before a commit must not be shared after it).
/// Without the count of commits that `redb::Inner::reading` checks before it keeps a tree,
/// this fails within a hundred writes.
#[test]
fn redb_a_read_after_a_write_sees_it_while_others_read() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Redb(redb::Db::open(&dir.path().join(redb::FILE), 8 << 20).unwrap());
    let t = db.open_tree("t").unwrap();
    let written = std::sync::Arc::new(AtomicU64::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let read = |t: &Tree| {
        t.get(b"n")
            .unwrap()
            .map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap()))
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (t, written, stop) = (t.clone(), written.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let before = written.load(Ordering::Acquire);
                    let seen = read(&t);
                    assert!(seen >= before, "read {seen} after {before} was written");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for n in 1..=3_000u64 {
        t.insert(b"n", &n.to_be_bytes()[..]).unwrap();
        written.store(n, Ordering::Release);
        assert_eq!(read(&t), n);
    }
    stop.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

/// Keys written in order (time-ordered ids, sequence numbers: most of the store's keys)
/// fill redb's leaves (upstream redb optimises inserts past a table's last key since 4.2;
/// with a split in the middle they stayed half full).
#[test]
fn redb_fills_its_pages_when_keys_come_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Db::open(&dir.path().join(redb::FILE), 8 << 20).unwrap();
    let t = Db::Redb(db.clone()).open_tree("t").unwrap();
    for i in 0..6_000u64 {
        let key = [b"u".as_slice(), &i.to_be_bytes()].concat();
        t.insert(key, vec![7u8; 150]).unwrap();
        if i % 100 == 0 {
            db.flush().unwrap();
        }
    }
    // Two durable commits: the pages the last commits freed are free after them.
    db.flush().unwrap();
    t.insert(b"v", &b""[..]).unwrap();
    db.flush().unwrap();
    let (stored, allocated) = db.stats().unwrap();
    let fill = stored as f64 / allocated as f64;
    assert!(
        fill > 0.8,
        "pages {fill:.2} full ({stored} of {allocated} bytes)"
    );
}

fn answers_as_sled_does(other: Db) {
    let pg = other;
    let sled = Db::Sled(sled::temporary().unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let key = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
        let len = rng.gen_range(0..4);
        (0..len).map(|_| rng.gen_range(0..4u8) * 85).collect()
    };
    let (a, b) = (
        (sled.open_tree("a").unwrap(), sled.open_tree("b").unwrap()),
        (pg.open_tree("a").unwrap(), pg.open_tree("b").unwrap()),
    );
    for round in 0..300 {
        let (k, v) = (key(&mut rng), vec![round as u8]);
        let op = rng.gen_range(0..8);
        let mut answers = Vec::new();
        for (t, u) in [&a, &b] {
            let answer = match op {
                0 | 1 => format!("{:?}", t.insert(&k, v.clone()).unwrap()),
                2 => format!("{:?}", t.remove(&k).unwrap()),
                3 => {
                    let mut batch = Batch::default();
                    batch.insert(k.clone(), v.clone());
                    batch.remove(key(&mut rand::rngs::StdRng::seed_from_u64(round)));
                    t.apply_batch(batch).unwrap();
                    String::new()
                }
                4 => {
                    let moved: TransactionResult<Option<IVec>, ()> =
                        (t, u).transaction(|(t, u)| {
                            let old = t.remove(k.clone())?;
                            if let Some(old) = &old {
                                u.insert(k.clone(), old.clone())?;
                            }
                            Ok(old)
                        });
                    format!("{:?}", moved.unwrap())
                }
                5 => format!(
                    "{:?}",
                    t.compare_and_swap(&k, Some(&[0u8][..]), Some(v.clone()))
                        .unwrap()
                        .is_ok()
                ),
                6 => {
                    let end = key(&mut rand::rngs::StdRng::seed_from_u64(round));
                    let (k, end) = (k.clone().min(end.clone()), k.clone().max(end));
                    let fwd = entries(t.range(k.clone()..end.clone()));
                    let back: Vec<_> = entries(t.range(k.clone()..=end).rev());
                    format!("{fwd:?} {back:?}")
                }
                _ => {
                    let mut both = t.scan_prefix(&k);
                    // Alternate ends, as paging does.
                    let mut got = Vec::new();
                    while let Some(e) = if got.len() % 2 == 0 {
                        both.next()
                    } else {
                        both.next_back()
                    } {
                        got.push(e.unwrap().0.to_vec());
                    }
                    format!("{got:?} {:?}", t.last().unwrap())
                }
            };
            answers.push(answer);
        }
        assert_eq!(answers[0], answers[1], "round {round}, op {op}, key {k:?}");
    }
    assert_eq!(entries(a.0.iter()), entries(b.0.iter()));
    assert_eq!(entries(a.1.iter()), entries(b.1.iter()));
    assert_eq!(a.0.len(), b.0.len());
}
