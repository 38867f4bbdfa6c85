//! Power loss, simulated: the store's redb runs on a disk that keeps every write since the last
//! `sync_data` apart from what is durable. At a random point of a random workload (transactions
//! over two trees, batches, removals, group-commit flushes) the power goes: the unsynced writes
//! are dropped, or a random subset of their pages is kept (a torn write). The database is opened
//! again (and, in some runs, the power goes again while that open repairs it) and must hold
//! exactly what the last acknowledged flush held, and pass redb's integrity check. A kill -9
//! keeps the page cache, so only this shows what a power cut does.

use super::{Batch, Db, Transactional};
use rand::{Rng, SeedableRng};
use redb::{BackendError, StorageBackend};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const PAGE: usize = 4096;

/// A disk: `volatile` is what reads see, `durable` what survives a power cut (it takes the
/// volatile image at each `sync_data`). Once `dead`, writes and syncs are ignored: the machine
/// is off, whatever the process still does. `die_after_writes` kills it after that many writes.
#[derive(Debug, Clone, Default)]
struct Disk {
    volatile: Arc<Mutex<Vec<u8>>>,
    durable: Arc<Mutex<Vec<u8>>>,
    dead: Arc<AtomicBool>,
    writes: Arc<AtomicUsize>,
    die_after_writes: Option<usize>,
}

impl Disk {
    /// The disk after the power came back: the durable image, plus (torn) a random subset of
    /// the pages written since the last sync.
    fn after_power_loss(&self, rng: &mut impl Rng, torn: bool) -> Disk {
        self.dead.store(true, Ordering::SeqCst);
        let volatile = self.volatile.lock().unwrap();
        let mut image = self.durable.lock().unwrap().clone();
        if torn {
            image.resize(image.len().max(volatile.len()), 0);
            for page in (0..volatile.len()).step_by(PAGE) {
                let end = (page + PAGE).min(volatile.len());
                if volatile[page..end] != image[page..end] && rng.gen_bool(0.5) {
                    image[page..end].copy_from_slice(&volatile[page..end]);
                }
            }
        }
        Disk {
            volatile: Arc::new(Mutex::new(image.clone())),
            durable: Arc::new(Mutex::new(image)),
            ..Default::default()
        }
    }

    fn alive(&self) -> bool {
        if self.dead.load(Ordering::SeqCst) {
            return false;
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if self.die_after_writes.is_some_and(|limit| n >= limit) {
            self.dead.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }
}

impl StorageBackend for Disk {
    fn len(&self) -> Result<u64, BackendError> {
        Ok(self.volatile.lock().unwrap().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        let v = self.volatile.lock().unwrap();
        let (start, end) = (offset as usize, offset as usize + out.len());
        if end > v.len() {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        out.copy_from_slice(&v[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        if self.alive() {
            self.volatile.lock().unwrap().resize(len as usize, 0);
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        if !self.dead.load(Ordering::SeqCst) {
            *self.durable.lock().unwrap() = self.volatile.lock().unwrap().clone();
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        if self.alive() {
            let mut v = self.volatile.lock().unwrap();
            let end = offset as usize + data.len();
            if end > v.len() {
                v.resize(end, 0);
            }
            v[offset as usize..end].copy_from_slice(data);
        }
        Ok(())
    }
}

type Model = BTreeMap<(u8, Vec<u8>), Vec<u8>>;

fn open(disk: Disk) -> super::Result<(Db, [super::Tree; 2])> {
    let db = Db::Redb(super::redb::Db::open_on(disk, 4 << 20)?);
    let trees = [db.open_tree("a")?, db.open_tree("b")?];
    Ok((db, trees))
}

fn contents(trees: &[super::Tree; 2]) -> Model {
    let mut out = Model::new();
    for (i, t) in trees.iter().enumerate() {
        for kv in t.iter() {
            let (k, v) = kv.unwrap();
            out.insert((i as u8, k.to_vec()), v.to_vec());
        }
    }
    out
}

/// One run: a random workload, a power cut at a random step, maybe a second one during the
/// repair, then the check. Returns how many flushes were acknowledged.
fn one_run(seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let disk = Disk::default();
    let (db, trees) = open(disk.clone()).unwrap();
    let (mut model, mut acked) = (Model::new(), Model::new());
    let mut flushes = 0;
    let cut_at = rng.gen_range(1..400);
    for _ in 0..cut_at {
        let key = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
            format!("k{:03}", rng.gen_range(0..300)).into_bytes()
        };
        let value: Vec<u8> = vec![rng.gen(); rng.gen_range(1..300)];
        match rng.gen_range(0..10) {
            0..=3 => {
                let (t, k) = (rng.gen_range(0..2), key(&mut rng));
                trees[t].insert(k.clone(), value.clone()).unwrap();
                model.insert((t as u8, k), value);
            }
            4 => {
                let (t, k) = (rng.gen_range(0..2), key(&mut rng));
                trees[t].remove(k.clone()).unwrap();
                model.remove(&(t as u8, k));
            }
            5..=6 => {
                // One transaction over both trees: all of it or none of it.
                let (ka, kb) = (key(&mut rng), key(&mut rng));
                (&trees[0], &trees[1])
                    .transaction(|(a, b)| {
                        a.insert(ka.as_slice(), value.as_slice())?;
                        b.insert(kb.as_slice(), value.as_slice())?;
                        Ok::<_, super::ConflictableTransactionError<()>>(())
                    })
                    .unwrap();
                model.insert((0, ka), value.clone());
                model.insert((1, kb), value);
            }
            7 => {
                let mut batch = Batch::default();
                for _ in 0..rng.gen_range(1..20) {
                    let k = key(&mut rng);
                    batch.insert(k.clone(), value.clone());
                    model.insert((1, k), value.clone());
                }
                trees[1].apply_batch(batch).unwrap();
            }
            _ => {
                // The group commit's flush: once it returns, everything before it is acknowledged.
                db.flush().unwrap();
                acked = model.clone();
                flushes += 1;
            }
        }
    }
    let torn = rng.gen_bool(0.5);
    let image = disk.after_power_loss(&mut rng, torn);
    drop((trees, db));
    // Sometimes the power goes again while the next open repairs the database.
    let image = if rng.gen_bool(0.3) {
        let mut again = image.clone();
        again.die_after_writes = Some(rng.gen_range(0..40));
        if let Ok((db, trees)) = open(again.clone()) {
            drop((trees, db));
        }
        let torn = rng.gen_bool(0.5);
        again.after_power_loss(&mut rng, torn)
    } else {
        image
    };
    let (db, trees) = open(image.clone()).unwrap();
    let found = contents(&trees);
    assert!(
        found == acked,
        "seed {seed}: after the power cut the store holds {} records, the last acknowledged flush {}",
        found.len(),
        acked.len()
    );
    drop((trees, db));
    let mut raw = redb::Database::builder()
        .create_with_backend(image)
        .unwrap();
    assert!(
        raw.check_integrity().unwrap(),
        "seed {seed}: integrity check failed"
    );
    flushes
}

/// A bounded number of runs in the test command; `POWER_LOSS_RUNS=n` runs more by hand
/// (`cargo test -p resellerd-store power_loss -- --nocapture`).
#[test]
fn every_acknowledged_write_survives_a_power_cut() {
    let runs: u64 = std::env::var("POWER_LOSS_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let base: u64 = std::env::var("POWER_LOSS_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(rand::random);
    let flushes: usize = (0..runs).map(|i| one_run(base.wrapping_add(i))).sum();
    eprintln!("{runs} power cuts (seeds from {base}), {flushes} acknowledged flushes checked");
}
