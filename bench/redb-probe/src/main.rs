//! Writes USERS users' worth of resellerd's per-user keys into a redb file, as the token issuer
//! does (200 users per write transaction, durable every tenth, like a group commit), printing the
//! rate and memory as it goes; then reopens the file in a fresh process and prints the open time,
//! the first and last page's read time, the resident memory after the open, and where the bytes
//! went.
//!
//! The keys and value sizes follow `bench/README.md`'s "Where the bytes go": per user an entry
//! in the reseller's user index (53-byte key, 140-byte record), the email index, a token record,
//! its hash index, the user's token list, the expiry index and an audit entry with its reseller
//! view key, about 830 bytes of keys and values. Ids are time-ordered, as resellerd's are.

use rand::{Rng, RngCore};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::time::Instant;

const TABLES: [TableDefinition<&[u8], &[u8]>; 7] = [
    TableDefinition::new("users_by_reseller"),
    TableDefinition::new("user_by_email"),
    TableDefinition::new("tokens"),
    TableDefinition::new("token_by_hash"),
    TableDefinition::new("user_tokens"),
    TableDefinition::new("token_expiry"),
    TableDefinition::new("audit_log"),
];

/// Resident and peak resident memory, MiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A time-ordered id like resellerd's: 10 characters of order, 16 random.
fn id(n: u64, rng: &mut impl RngCore) -> Vec<u8> {
    let mut s = format!("{n:010}").into_bytes();
    s.extend((0..16).map(|_| b'A' + (rng.next_u32() % 26) as u8));
    s
}

fn write(path: &str, users: u64) {
    let _ = std::fs::remove_file(path);
    let db = Database::builder()
        .set_cache_size(64 << 20)
        .create(path)
        .expect("create");
    let mut rng = rand::thread_rng();
    let reseller = id(0, &mut rng);
    let began = Instant::now();
    let (batch, mut n, mut window) = (200, 0u64, Instant::now());
    while n < users {
        let mut tx = db.begin_write().expect("begin");
        let durable = (n / batch) % 10 == 9;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        {
            let mut t: Vec<_> = TABLES
                .iter()
                .map(|d| tx.open_table(*d).expect("table"))
                .collect();
            for _ in 0..batch {
                let (uid, tid) = (id(n, &mut rng), id(n, &mut rng));
                let key = [&reseller[..], b"/", &uid].concat();
                let mut record = vec![0u8; 140];
                rng.fill(&mut record[..]);
                t[0].insert(&key[..], &record[..]).expect("insert");
                let email = [&reseller[..], format!("/user{n}@example.test").as_bytes()].concat();
                t[1].insert(&email[..], &uid[..]).expect("insert");
                let mut token = vec![0u8; 150];
                rng.fill(&mut token[..]);
                t[2].insert(&tid[..], &token[..]).expect("insert");
                let mut hash = [0u8; 32];
                rng.fill(&mut hash);
                t[3].insert(&hash[..], &tid[..]).expect("insert");
                t[4].insert(&uid[..], &tid[..]).expect("insert");
                let expiry = [&(n + 1_000_000_000).to_be_bytes()[..], &tid].concat();
                t[5].insert(&expiry[..], &[][..]).expect("insert");
                let entry_key = [&b"e"[..], &n.to_be_bytes()].concat();
                let mut entry = vec![0u8; 200];
                rng.fill(&mut entry[..]);
                t[6].insert(&entry_key[..], &entry[..]).expect("insert");
                let view = [&b"r"[..], &reseller, b"/", &n.to_be_bytes()].concat();
                t[6].insert(&view[..], &[][..]).expect("insert");
                n += 1;
            }
        }
        tx.commit().expect("commit");
        if n % 100_000 == 0 {
            let (rss, peak) = memory();
            println!(
                "{n} users: {:.0}/s over the last 100,000, RSS {rss} MiB (peak {peak} MiB)",
                100_000.0 / window.elapsed().as_secs_f64()
            );
            window = Instant::now();
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!("{users} users in {secs:.1} s: {:.0}/s", users as f64 / secs);
}

fn reopen(path: &str, users: u64) {
    let began = Instant::now();
    let db = Database::builder()
        .set_cache_size(64 << 20)
        .open(path)
        .expect("open");
    let opened = began.elapsed();
    let read = db.begin_read().expect("read");
    let table = read.open_table(TABLES[0]).expect("table");
    let paging = Instant::now();
    let first = table.iter().expect("iter").take(10).count();
    let last = table.iter().expect("iter").rev().take(10).count();
    println!(
        "open {opened:?}, first and last page of {} users {:?} ({first} + {last}), RSS {} MiB",
        table.len().expect("len"),
        paging.elapsed(),
        memory().0
    );
    drop((table, read));
    let tx = db.begin_write().expect("begin");
    let s = tx.stats().expect("stats");
    let allocated = s.allocated_pages() * s.page_size() as u64;
    let file = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "file {} MiB = {} B/user; pages allocated {} MiB = {} B/user; keys and values {} B/user; \
         half-empty pages {} B/user; metadata {} B/user",
        file >> 20,
        file / users,
        allocated >> 20,
        allocated / users,
        s.stored_bytes() / users,
        s.fragmented_bytes() / users,
        s.metadata_bytes() / users,
    );
    tx.abort().expect("abort");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/tmp/probe.redb".into());
    let users = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    if args.next().as_deref() == Some("--reopen") {
        return reopen(&path, users);
    }
    write(&path, users);
    // Reopened by a fresh process, so its memory is the open's alone.
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([&path, &users.to_string(), "--reopen"])
        .status()
        .expect("reopen");
    assert!(status.success());
}
