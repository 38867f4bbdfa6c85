//! Trees as ranges of the `kv` table: reads, buffered writes sent at the commit, SERIALIZABLE
//! transactions run again on a serialization failure, and iterators that page by key.

use super::*;

pub(super) const GET: &str = "SELECT v FROM kv WHERE t = $1 AND k = $2";
pub(super) const DELETE: &str = "DELETE FROM kv WHERE t = $1 AND k = $2 RETURNING v";
pub(super) const UPSERT_MANY: &str =
    "INSERT INTO kv (t, k, v) SELECT * FROM unnest($1::integer[], $2::bytea[], $3::bytea[]) \
     ON CONFLICT (t, k) DO UPDATE SET v = EXCLUDED.v";
pub(super) const DELETE_MANY: &str =
    "DELETE FROM kv WHERE (t, k) IN (SELECT * FROM unnest($1::integer[], $2::bytea[]))";

/// One tree of a PostgreSQL database.
#[derive(Clone)]
pub struct Tree {
    pub(super) db: Db,
    pub(super) id: i32,
    pub(super) name: IVec,
}

impl Tree {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn name(&self) -> IVec {
        self.name.clone()
    }

    /// This tree inside the transaction `state`.
    pub fn in_tx(&self, state: &Rc<TxState>) -> TxTree {
        TxTree {
            state: state.clone(),
            tree: self.id,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.db.0.pool.run(|c| {
            let rows = c.query(GET, &[&self.id, &key])?;
            Ok(rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0))))
        })
    }

    pub fn insert(&self, key: &[u8], value: IVec) -> Result<Option<IVec>> {
        // The old value and the write in one statement: the CTE reads before the upsert.
        const SQL: &str = "WITH old AS (SELECT v FROM kv WHERE t = $1 AND k = $2), \
             up AS (INSERT INTO kv (t, k, v) VALUES ($1, $2, $3) ON CONFLICT (t, k) DO UPDATE SET v = EXCLUDED.v) \
             SELECT v FROM old";
        self.db.0.pool.run(|c| {
            let rows = c.query(SQL, &[&self.id, &key, &value.as_ref()])?;
            Ok(rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0))))
        })
    }

    pub fn remove(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.db.0.pool.run(|c| {
            let rows = c.query(DELETE, &[&self.id, &key])?;
            Ok(rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0))))
        })
    }

    /// How many entries (a count: O(n)).
    pub fn count(&self) -> Result<usize> {
        self.db.0.pool.run(|c| {
            let rows = c.query("SELECT count(*) FROM kv WHERE t = $1", &[&self.id])?;
            Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as usize)
        })
    }

    pub fn clear(&self) -> Result<()> {
        self.db
            .0
            .pool
            .run(|c| c.execute("DELETE FROM kv WHERE t = $1", &[&self.id]))
            .map(drop)
    }

    pub fn apply_batch(&self, batch: &Batch) -> Result<()> {
        let writes: Vec<((i32, IVec), Option<IVec>)> = batch
            .settled()
            .into_iter()
            .map(|(k, v)| ((self.id, k), v))
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        self.db.0.pool.run(|c| {
            wait(c.client.batch_execute("BEGIN"))?;
            let done = write_all(c, writes.iter().map(|(k, v)| (k, v)))
                .and_then(|_| wait(c.client.batch_execute("COMMIT")));
            if done.is_err() {
                let _ = wait(c.client.batch_execute("ROLLBACK"));
            }
            done
        })
    }

    /// The entries between `lo` and `hi`, fetched in growing chunks from either end.
    pub fn range(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Iter {
        Iter {
            tree: self.clone(),
            lo,
            hi,
            front: VecDeque::new(),
            back: VecDeque::new(),
            done: false,
            chunk: 16,
        }
    }
}

/// Sends a transaction's writes (final value per (tree, key); None removes): one upsert and one
/// delete statement, pipelined.
pub(super) fn write_all<'a>(
    c: &mut Conn,
    writes: impl Iterator<Item = (&'a (i32, IVec), &'a Option<IVec>)>,
) -> PgResult<()> {
    let (mut up_t, mut up_k, mut up_v) = (Vec::new(), Vec::new(), Vec::new());
    let (mut del_t, mut del_k) = (Vec::new(), Vec::new());
    for ((t, k), v) in writes {
        match v {
            Some(v) => {
                up_t.push(*t);
                up_k.push(k.as_ref());
                up_v.push(v.as_ref());
            }
            None => {
                del_t.push(*t);
                del_k.push(k.as_ref());
            }
        }
    }
    let upsert = c.statement(UPSERT_MANY)?;
    let delete = c.statement(DELETE_MANY)?;
    let client = &c.client;
    let (a, b) = wait(async {
        let a = async {
            if up_t.is_empty() {
                Ok(0)
            } else {
                client.execute(&upsert, &[&up_t, &up_k, &up_v]).await
            }
        };
        let b = async {
            if del_t.is_empty() {
                Ok(0)
            } else {
                client.execute(&delete, &[&del_t, &del_k]).await
            }
        };
        futures_util::future::join(a, b).await
    });
    a?;
    b?;
    Ok(())
}

/// A transaction under way on one connection: its writes wait here until the commit.
pub struct TxState {
    conn: RefCell<Lease>,
    writes: RefCell<BTreeMap<(i32, IVec), Option<IVec>>>,
    reads: RefCell<HashMap<(i32, IVec), Option<IVec>>>,
    /// Committed or rolled back; until then, dropping the state rolls back (a closure that
    /// panicked must not hand an open transaction back to the pool).
    ended: std::cell::Cell<bool>,
}

impl Drop for TxState {
    fn drop(&mut self) {
        if !self.ended.get() {
            self.rollback();
        }
    }
}

impl TxState {
    pub(super) fn read(&self, tree: i32, key: &[u8]) -> PgResult<Option<IVec>> {
        let k = (tree, IVec::from(key));
        if let Some(v) = self.writes.borrow().get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.reads.borrow().get(&k) {
            return Ok(v.clone());
        }
        let rows = self.conn.borrow_mut().conn().query(GET, &[&tree, &key])?;
        let v = rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0)));
        self.reads.borrow_mut().insert(k, v.clone());
        Ok(v)
    }

    pub(super) fn commit(&self) -> PgResult<()> {
        let writes = self.writes.borrow();
        let mut lease = self.conn.borrow_mut();
        let c = lease.conn();
        write_all(c, writes.iter())?;
        wait(c.client.batch_execute("COMMIT"))?;
        self.ended.set(true);
        Ok(())
    }

    pub(super) fn rollback(&self) {
        let mut lease = self.conn.borrow_mut();
        let _ = wait(lease.conn().client.batch_execute("ROLLBACK"));
        self.ended.set(true);
    }
}

/// Runs `f` as one serializable transaction, again on a serialization failure or a conflict.
pub fn transaction<A, E>(
    db: &Db,
    f: impl Fn(&Rc<TxState>) -> ConflictableTransactionResult<A, E>,
) -> TransactionResult<A, E> {
    let mut attempt = 0;
    loop {
        let lease = db.0.pool.get().map_err(TransactionError::Storage)?;
        let state = Rc::new(TxState {
            conn: RefCell::new(lease),
            writes: RefCell::default(),
            reads: RefCell::default(),
            ended: std::cell::Cell::new(false),
        });
        let begun = wait(
            state
                .conn
                .borrow_mut()
                .conn()
                .client
                .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE"),
        );
        begun.map_err(|e| TransactionError::Storage(to_error(e)))?;
        let retry = match f(&state) {
            Ok(a) => match state.commit() {
                Ok(()) => return Ok(a),
                Err(e) if is_conflict(&e) => {
                    state.rollback();
                    true
                }
                Err(e) => {
                    state.rollback();
                    return Err(TransactionError::Storage(to_error(e)));
                }
            },
            Err(ConflictableTransactionError::Abort(e)) => {
                state.rollback();
                return Err(TransactionError::Abort(e));
            }
            Err(ConflictableTransactionError::Conflict) => {
                state.rollback();
                true
            }
            Err(ConflictableTransactionError::Storage(e)) => {
                state.rollback();
                return Err(TransactionError::Storage(e));
            }
        };
        drop(state);
        if retry {
            if attempt >= MAX_RETRIES {
                return Err(TransactionError::Storage(Error::Io(std::io::Error::other(
                    "PostgreSQL: a transaction kept conflicting with others",
                ))));
            }
            back_off(attempt);
            attempt += 1;
        }
    }
}

/// A tree inside a transaction.
#[derive(Clone)]
pub struct TxTree {
    state: Rc<TxState>,
    tree: i32,
}

impl TxTree {
    pub fn get(&self, key: &[u8]) -> UnabortableTransactionResult<Option<IVec>> {
        self.state.read(self.tree, key).map_err(unabortable)
    }

    /// Sets (Some) or removes (None) `key`; returns the value it had.
    pub fn insert(
        &self,
        key: IVec,
        value: Option<IVec>,
    ) -> UnabortableTransactionResult<Option<IVec>> {
        let old = self.state.read(self.tree, &key).map_err(unabortable)?;
        self.write(key, value);
        Ok(old)
    }

    /// Sets (Some) or removes (None) `key` without reading it: no round trip until the commit.
    pub fn write(&self, key: IVec, value: Option<IVec>) {
        self.state
            .writes
            .borrow_mut()
            .insert((self.tree, key), value);
    }
}

pub(super) fn unabortable(e: tokio_postgres::Error) -> UnabortableTransactionError {
    if is_conflict(&e) {
        UnabortableTransactionError::Conflict
    } else {
        UnabortableTransactionError::Storage(to_error(e))
    }
}

/// Entries of a tree between two bounds, read a chunk at a time from whichever end is asked.
pub struct Iter {
    tree: Tree,
    /// What is left unread: the front reads move `lo` up, the back reads move `hi` down.
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    /// Read from the front, ascending.
    front: VecDeque<(IVec, IVec)>,
    /// Read from the back, descending.
    back: VecDeque<(IVec, IVec)>,
    /// Nothing is left unread between `lo` and `hi` (or a read failed).
    done: bool,
    chunk: i64,
}

impl Iter {
    /// Reads the next chunk from the front (or the back, if `desc`) into its buffer.
    pub(super) fn fill(&mut self, desc: bool) -> Result<()> {
        let mut sql = String::from("SELECT k, v FROM kv WHERE t = $1");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.tree.id];
        let lo = match &self.lo {
            Bound::Included(k) => Some((">=", k)),
            Bound::Excluded(k) => Some((">", k)),
            Bound::Unbounded => None,
        };
        let hi = match &self.hi {
            Bound::Included(k) => Some(("<=", k)),
            Bound::Excluded(k) => Some(("<", k)),
            Bound::Unbounded => None,
        };
        for (op, k) in [lo, hi].into_iter().flatten() {
            params.push(k);
            sql.push_str(&format!(" AND k {op} ${}", params.len()));
        }
        params.push(&self.chunk);
        sql.push_str(&format!(
            " ORDER BY k {} LIMIT ${}",
            if desc { "DESC" } else { "ASC" },
            params.len()
        ));
        let rows = self.tree.db.0.pool.run(|c| c.query(&sql, &params))?;
        let got: Vec<(IVec, IVec)> = rows
            .iter()
            .map(|r| {
                (
                    IVec::from(r.get::<_, &[u8]>(0)),
                    IVec::from(r.get::<_, &[u8]>(1)),
                )
            })
            .collect();
        if (got.len() as i64) < self.chunk {
            self.done = true;
        }
        self.chunk = (self.chunk * 4).min(1024);
        if let Some((k, _)) = got.last() {
            if desc {
                self.hi = Bound::Excluded(k.to_vec());
            } else {
                self.lo = Bound::Excluded(k.to_vec());
            }
        }
        if desc {
            self.back.extend(got);
        } else {
            self.front.extend(got);
        }
        Ok(())
    }
}

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.front.is_empty() && !self.done {
            if let Err(e) = self.fill(false) {
                self.done = true;
                self.back.clear();
                return Some(Err(e));
            }
        }
        self.front
            .pop_front()
            .or_else(|| self.back.pop_back())
            .map(Ok)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.back.is_empty() && !self.done {
            if let Err(e) = self.fill(true) {
                self.done = true;
                self.front.clear();
                return Some(Err(e));
            }
        }
        self.back
            .pop_front()
            .or_else(|| self.front.pop_back())
            .map(Ok)
    }
}
