//! sled's dump: every tree at one moment, without snapshots (a copy with the changes recorded
//! meanwhile laid over it).

use super::*;

/// The changes to one tree since recording began: each key's last value (`None`: removed).
type Overlay = std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Every tree at one moment. sled has no snapshots, so the trees are copied to a scratch file
/// while writes go on, every change made meanwhile is recorded, and the recorded changes up to
/// one cut are laid over the copy as it is read.
///
/// Why the result is the database at the cut T: recording starts at S, under `hold` (no write
/// half done). sled hands a subscriber each key's events in the order they were applied,
/// including writes inside transactions; one thread per tree keeps its last value per key. For
/// a key changed between S and T, its last recorded change is its value at T. For a key not
/// changed between S and T, the copy (read between S and T) saw its value at S, which is its
/// value at T. Changes after T are not applied. Writers that do not take the hold write one
/// record at a time, so the cut is consistent for them too.
pub struct Dump {
    file: std::fs::File,
    /// Each tree: its name, where its copy starts in `file`, its length, and its changes.
    trees: Vec<(String, u64, u64, Overlay)>,
    /// How long each hold lasted, and how many changes were recorded.
    pub held: [std::time::Duration; 2],
    pub changes: usize,
}

impl Dump {
    pub(super) fn take<G>(db: &Db, scratch: &Path, hold: impl Fn() -> G) -> Result<Dump> {
        let began = std::time::Instant::now();
        let mut held = [std::time::Duration::ZERO; 2];
        let trees: Vec<(String, ::sled::Tree)> =
            db.0.tree_names()
                .into_iter()
                .map(|name| {
                    let tree = db.0.open_tree(&name).map_err(to_error)?;
                    Ok((String::from_utf8_lossy(&name).into_owned(), tree))
                })
                .collect::<Result<_>>()?;
        let capture = {
            let _held = hold();
            let capture = Capture::start(&trees)?;
            held[0] = began.elapsed();
            capture
        };
        let mut file = BufWriter::new(scratch_file(scratch)?);
        let mut segments = Vec::with_capacity(trees.len());
        let mut at = 0u64;
        for (name, tree) in &trees {
            let start = at;
            for pair in tree.iter() {
                let (k, v) = pair.map_err(to_error)?;
                at += put_pair(&mut file, &k, &v)?;
            }
            segments.push((name.clone(), start, at - start));
        }
        let mut overlays = {
            let closing = std::time::Instant::now();
            let _held = hold();
            let overlays = capture.finish()?;
            held[1] = closing.elapsed();
            overlays
        };
        let file = file.into_inner().map_err(|e| e.into_error())?;
        let changes = overlays.values().map(|o| o.len()).sum();
        let trees = segments
            .into_iter()
            .map(|(name, start, len)| {
                let overlay = overlays.remove(&name).unwrap_or_default();
                (name, start, len, overlay)
            })
            .collect();
        Ok(Dump {
            file,
            trees,
            held,
            changes,
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.trees.iter().map(|t| t.0.clone()).collect()
    }

    /// The entries of the tree `name` at the cut, in key order (none for a tree that did not
    /// exist then).
    pub fn iter(&self, name: &str) -> Box<dyn Iterator<Item = Result<(IVec, IVec)>> + '_> {
        let Some((_, start, len, overlay)) = self.trees.iter().find(|t| t.0 == name) else {
            return Box::new(std::iter::empty());
        };
        let copy = BufReader::new(Segment {
            file: &self.file,
            at: *start,
            end: start + len,
        });
        Box::new(Merged {
            copy,
            next_copied: None,
            started: false,
            changes: overlay.iter().peekable(),
        })
    }
}

/// A part of a file, read by position (several can read one file).
struct Segment<'a> {
    file: &'a std::fs::File,
    at: u64,
    end: u64,
}

impl Read for Segment<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf.len().min((self.end - self.at) as usize);
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A tree's copy with its recorded changes laid over it, both in key order.
struct Merged<'a> {
    copy: BufReader<Segment<'a>>,
    next_copied: Option<(Vec<u8>, Vec<u8>)>,
    started: bool,
    changes: std::iter::Peekable<std::collections::btree_map::Iter<'a, Vec<u8>, Option<Vec<u8>>>>,
}

impl Merged<'_> {
    fn step(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        if !self.started {
            self.started = true;
            self.next_copied = get_pair(&mut self.copy)?;
        }
        loop {
            let take_change = match (&self.next_copied, self.changes.peek()) {
                (None, None) => return Ok(None),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((k, _)), Some((ck, _))) => *ck <= k,
            };
            if !take_change {
                let pair = self.next_copied.take();
                self.next_copied = get_pair(&mut self.copy)?;
                return Ok(pair);
            }
            let Some((ck, cv)) = self.changes.next() else {
                return Ok(None);
            };
            if self.next_copied.as_ref().is_some_and(|(k, _)| k == ck) {
                self.next_copied = get_pair(&mut self.copy)?;
            }
            if let Some(v) = cv {
                return Ok(Some((ck.clone(), v.clone())));
            }
        }
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step()
            .map_err(Error::Io)
            .transpose()
            .map(|r| r.map(|(k, v)| (IVec::from(k), IVec::from(v))))
    }
}

fn put_pair(out: &mut impl Write, k: &[u8], v: &[u8]) -> io::Result<u64> {
    for part in [k, v] {
        out.write_all(&(part.len() as u32).to_be_bytes())?;
        out.write_all(part)?;
    }
    Ok(8 + k.len() as u64 + v.len() as u64)
}

fn get_pair(r: &mut impl Read) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut k = vec![0; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut k)?;
    r.read_exact(&mut len)?;
    let mut v = vec![0; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut v)?;
    Ok(Some((k, v)))
}

/// Records every change to every tree while a dump copies them.
struct Capture {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<(String, std::thread::JoinHandle<Overlay>)>,
}

impl Capture {
    fn start(trees: &[(String, ::sled::Tree)]) -> Result<Capture> {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::with_capacity(trees.len());
        for (name, tree) in trees {
            let mut events = tree.watch_prefix(Vec::new());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name("dump-capture".into())
                .spawn(move || {
                    let mut overlay = Overlay::new();
                    loop {
                        match events.next_timeout(std::time::Duration::from_millis(5)) {
                            Ok(::sled::Event::Insert { key, value }) => {
                                overlay.insert(key.to_vec(), Some(value.to_vec()));
                            }
                            Ok(::sled::Event::Remove { key }) => {
                                overlay.insert(key.to_vec(), None);
                            }
                            // Nothing queued: after the cut, everything before it was taken.
                            Err(_) if stop.load(Ordering::Acquire) => return overlay,
                            Err(_) => {}
                        }
                    }
                })?;
            threads.push((name.clone(), thread));
        }
        Ok(Capture { stop, threads })
    }

    /// Stops recording (call under the hold: the cut) and returns each tree's changes.
    fn finish(self) -> Result<std::collections::HashMap<String, Overlay>> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.threads
            .into_iter()
            .map(|(name, t)| {
                t.join()
                    .map(|o| (name, o))
                    .map_err(|_| Error::ReportableBug("a dump's capture thread panicked".into()))
            })
            .collect()
    }
}

/// A file in `dir` for a dump's copy, unlinked at once (the open file is all it needs; the
/// dot name keeps backups from copying it if a crash leaves it).
fn scratch_file(dir: &Path) -> io::Result<std::fs::File> {
    let path: PathBuf = dir.join(format!(".dump-{:016x}.tmp", rand::random::<u64>()));
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}
