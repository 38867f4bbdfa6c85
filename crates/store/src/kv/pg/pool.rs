//! Connections: TLS as the URL asks, a bounded pool that waits at most `CONNECTION_WAIT`, and
//! leases that give a connection back when dropped.

use super::*;

/// The TLS connector the URL's `sslmode` asks for: none for `disable` and `prefer` (the
/// default: plain, as on a socket or a private network), verified TLS for `require`.
pub(super) fn tls_for(
    config: &tokio_postgres::Config,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>> {
    if config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
        return Ok(None);
    }
    let bad = |what: String| Error::Io(std::io::Error::other(format!("PostgreSQL TLS: {what}")));
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os("PGSSLROOTCERT") {
        Some(path) => {
            let pem = std::fs::read(&path)
                .map_err(|e| bad(format!("cannot read {}: {e}", path.to_string_lossy())))?;
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("{}: {e}", path.to_string_lossy())))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("{}: {e}", path.to_string_lossy())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: HashMap<String, Statement>,
}

impl Conn {
    pub(super) fn statement(&mut self, sql: &str) -> PgResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = wait(self.client.prepare(sql))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> PgResult<Vec<Row>> {
        let s = self.statement(sql)?;
        wait(self.client.query(&s, params))
    }

    pub(super) fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<u64> {
        let s = self.statement(sql)?;
        wait(self.client.execute(&s, params))
    }
}

/// Connects, and leaves the connection's I/O to a task of the runtime, which passes each
/// notification's payload on to `notices`, if given; returns the client.
pub(super) async fn open_connection<T>(
    config: &tokio_postgres::Config,
    tls: T,
    notices: Option<std::sync::mpsc::Sender<String>>,
) -> PgResult<Client>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if let Some(tx) = &notices {
                        if tx.send(n.payload().to_string()).is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "a PostgreSQL connection ended");
                    return;
                }
                None => return,
            }
        }
    });
    Ok(client)
}

/// Connections, opened on demand up to `max`, each used by one call at a time.
pub(super) struct Pool {
    pub(super) config: tokio_postgres::Config,
    /// TLS for `sslmode=require`: the server's certificate verified against the public roots,
    /// or the CA in the file `PGSSLROOTCERT` names (libpq's variable).
    pub(super) tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// (idle connections, how many are open)
    pub(super) idle: Mutex<(Vec<Conn>, usize)>,
    pub(super) freed: Condvar,
    pub(super) max: usize,
    /// How long a statement may wait for a lock (0: as long as it takes); the lock pool's
    /// connections wait at most `LOCK_WAIT` for a cluster lock.
    pub(super) lock_timeout_ms: u64,
}

/// A connection taken from the pool; back in it when dropped, unless it broke.
pub(super) struct Lease {
    pub(super) pool: Arc<Pool>,
    pub(super) conn: Option<Conn>,
}

impl Lease {
    /// Closes the connection instead of pooling it (its session may hold a lock).
    pub(super) fn forget(&mut self) {
        if self.conn.take().is_some() {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
            self.pool.freed.notify_one();
        }
    }

    pub(super) fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if conn.client.is_closed() {
            idle.1 -= 1;
        } else {
            idle.0.push(conn);
        }
        drop(idle);
        self.pool.freed.notify_one();
    }
}

impl Pool {
    /// A pool of at most `max` connections to `config`'s server, each waiting at most
    /// `lock_timeout_ms` for a lock (0: as long as it takes).
    pub(super) fn new(
        config: tokio_postgres::Config,
        max: usize,
        lock_timeout_ms: u64,
    ) -> Result<Arc<Pool>> {
        Ok(Arc::new(Pool {
            tls: tls_for(&config)?,
            config,
            idle: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
            max,
            lock_timeout_ms,
        }))
    }

    pub(super) fn get(self: &Arc<Self>) -> Result<Lease> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while let Some(conn) = idle.0.pop() {
                // One the server closed while it sat idle (a restart, a terminated backend, a
                // proxy's idle timeout) is dropped, not handed out to fail.
                if conn.client.is_closed() {
                    idle.1 -= 1;
                    continue;
                }
                return Ok(Lease {
                    pool: self.clone(),
                    conn: Some(conn),
                });
            }
            if idle.1 < self.max {
                idle.1 += 1;
                drop(idle);
                return match self.connect() {
                    Ok(conn) => Ok(Lease {
                        pool: self.clone(),
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.idle.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, waited) = self
                .freed
                .wait_timeout(idle, CONNECTION_WAIT)
                .unwrap_or_else(|e| e.into_inner());
            idle = next;
            if waited.timed_out() && idle.0.is_empty() && idle.1 >= self.max {
                return Err(Error::Io(std::io::Error::other(format!(
                    "PostgreSQL: all {} connections stayed busy for {} s (raise --database-connections)",
                    self.max,
                    CONNECTION_WAIT.as_secs()
                ))));
            }
        }
    }

    /// Opens a connection on the runtime (see `open_connection`) and waits for it.
    pub(super) fn open(&self, notices: Option<std::sync::mpsc::Sender<String>>) -> Result<Client> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        runtime().spawn(async move {
            let connected = match tls {
                Some(tls) => open_connection(&config, tls, notices).await,
                None => open_connection(&config, NoTls, notices).await,
            };
            let _ = tx.send(connected);
        });
        rx.recv()
            .map_err(|_| Error::Io(std::io::Error::other("the PostgreSQL runtime stopped")))?
            .map_err(to_error)
    }

    pub(super) fn connect(&self) -> Result<Conn> {
        let client = self.open(None)?;
        wait(client.batch_execute(&format!(
            "SET default_transaction_isolation TO serializable; SET synchronous_commit TO on; \
             SET tcp_keepalives_idle TO 5; SET tcp_keepalives_interval TO 2; \
             SET tcp_keepalives_count TO 3; SET tcp_user_timeout TO 15000; \
             SET lock_timeout TO {}",
            self.lock_timeout_ms
        )))
        .map_err(to_error)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Opens a connection of its own that listens on `CHANNEL`; returns it (dropping it stops
    /// the listening) and the payloads it hears, which end when the connection does.
    pub(super) fn listen(&self) -> Result<(Client, std::sync::mpsc::Receiver<String>)> {
        let (tx, notices) = std::sync::mpsc::channel();
        let client = self.open(Some(tx))?;
        wait(client.batch_execute(&format!("LISTEN {CHANNEL}"))).map_err(to_error)?;
        Ok((client, notices))
    }

    /// Runs `f` on a connection, again after a serialization failure.
    pub(super) fn run<T>(
        self: &Arc<Self>,
        mut f: impl FnMut(&mut Conn) -> PgResult<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let mut lease = self.get()?;
            match f(lease.conn()) {
                Ok(v) => return Ok(v),
                Err(e) if is_conflict(&e) && attempt < MAX_RETRIES => {
                    drop(lease);
                    back_off(attempt);
                    attempt += 1;
                }
                Err(e) => return Err(to_error(e)),
            }
        }
    }
}
