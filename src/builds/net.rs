//! A build's only way out: an HTTP proxy the server runs for each build on a Unix socket in the
//! build's `net` directory. Inside the sandbox, `resellerd build-shim` listens on loopback port
//! `sandbox::PROXY_PORT` and passes each connection to that socket; `HTTP(S)_PROXY` point the
//! build's tools at it. The proxy resolves each target itself and connects only to public
//! addresses (`targets::is_private` refuses loopback, private ranges, link-local such as
//! 169.254.169.254, whatever `--allow-private-targets` says): `CONNECT host:port` tunnels (HTTPS,
//! anything over TLS), and an absolute-form `GET http://…` is forwarded with `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connections one build may have open through the proxy at once.
const MAX_CONNECTIONS: usize = 64;
const HEAD_LIMIT: usize = 16 * 1024;
pub const SOCKET: &str = "proxy.sock";

/// The proxy of one build; it stops when dropped.
pub struct Proxy {
    stop: Arc<AtomicBool>,
    path: std::path::PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        let _ = UnixStream::connect(&self.path);
    }
}

/// Starts the proxy of a build on `dir/proxy.sock`; `refused` is told each target it refused.
pub fn start(
    dir: &Path,
    uid: Option<u32>,
    refused: impl Fn(String) + Send + Sync + 'static,
) -> std::io::Result<Proxy> {
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    if let Some(uid) = uid {
        std::os::unix::fs::chown(&path, Some(uid), Some(uid))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(refused);
    let stopping = stop.clone();
    std::thread::Builder::new()
        .name("build-proxy".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let (open, refused) = (open.clone(), refused.clone());
                let _ = std::thread::Builder::new()
                    .name("build-proxy-conn".into())
                    .spawn(move || {
                        if let Err(target) = serve(conn) {
                            if !target.is_empty() {
                                refused(target);
                            }
                        }
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
            }
        })?;
    Ok(Proxy { stop, path })
}

fn answer(mut conn: &UnixStream, status: &str, why: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
        why.len() + 1
    );
}

/// Serves one connection; Err(target) when it was refused (or "" for a malformed request).
fn serve(conn: UnixStream) -> Result<(), String> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().map_err(|_| String::new())?);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = (&mut reader)
            .take((HEAD_LIMIT - head.len()) as u64)
            .read_until(b'\n', &mut head)
            .map_err(|_| String::new())?;
        if n == 0 || head.len() >= HEAD_LIMIT {
            answer(&conn, "400 Bad Request", "request head too large or cut");
            return Err(String::new());
        }
        if head[before..] == *b"\r\n" || head[before..] == *b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (host, port, rest) = if method.eq_ignore_ascii_case("CONNECT") {
        let (h, p) = split_host_port(target, 443);
        (h, p, None)
    } else if let Some(after) = target.strip_prefix("http://") {
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, "/"),
        };
        let (h, p) = split_host_port(authority, 80);
        let mut out = format!("{method} {path} HTTP/1.1\r\n");
        for l in lines {
            let lower = l.to_ascii_lowercase();
            if l.is_empty()
                || lower.starts_with("proxy-")
                || lower.starts_with("connection:")
                || lower.starts_with("keep-alive:")
            {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        (h, p, Some(out))
    } else {
        answer(
            &conn,
            "405 Method Not Allowed",
            "the build proxy takes CONNECT and absolute http:// requests",
        );
        return Err(String::new());
    };
    let shown = format!("{host}:{port}");
    let upstream = match connect(&host, port) {
        Ok(s) => s,
        Err(why) => {
            answer(
                &conn,
                "403 Forbidden",
                &format!("resellerd: {shown}: {why}"),
            );
            return Err(format!("{shown} ({why})"));
        }
    };
    let mut conn_w = conn.try_clone().map_err(|_| String::new())?;
    let mut up_w = upstream.try_clone().map_err(|_| String::new())?;
    match rest {
        None => {
            let _ = conn_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        }
        Some(head) => {
            let _ = up_w.write_all(head.as_bytes());
        }
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(300)));
    let _ = upstream.set_read_timeout(Some(Duration::from_secs(300)));
    // What the reader already buffered past the head goes first.
    let buffered = reader.buffer().to_vec();
    let up = std::thread::spawn(move || {
        if !buffered.is_empty() && up_w.write_all(&buffered).is_err() {
            return;
        }
        let _ = std::io::copy(&mut reader, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let mut upstream_r = upstream;
    let _ = std::io::copy(&mut upstream_r, &mut conn_w);
    let _ = conn_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

fn split_host_port(authority: &str, default: u16) -> (String, u16) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            let port = p.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h.to_string(), port.unwrap_or(default));
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().unwrap_or(0)),
        _ => (authority.to_string(), default),
    }
}

/// Connects to the first public address of `host`; refuses private ones.
fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    if port == 0 {
        return Err("no port".into());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let public: Vec<&SocketAddr> = addrs
        .iter()
        .filter(|a| !crate::targets::is_private(a.ip()))
        .collect();
    if public.is_empty() {
        return Err(
            "builds may reach public addresses only (not loopback, private ranges or link-local)"
                .into(),
        );
    }
    let mut last = String::new();
    for a in public {
        match TcpStream::connect_timeout(a, Duration::from_secs(15)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("cannot connect: {last}"))
}

/// `resellerd build-shim -- command…`: runs inside the sandbox. Listens on loopback
/// `PROXY_PORT`, passes each connection to the build's proxy socket, and runs the command; exits
/// with its status.
pub fn shim(args: &[String]) -> i32 {
    let socket = format!("/opt/resellerd/net/{SOCKET}");
    match std::net::TcpListener::bind(("127.0.0.1", super::sandbox::PROXY_PORT)) {
        Ok(listener) => {
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let socket = socket.clone();
                    std::thread::spawn(move || {
                        let Ok(unix) = UnixStream::connect(&socket) else {
                            return;
                        };
                        pipe(conn, unix);
                    });
                }
            });
        }
        Err(e) => eprintln!("resellerd: no network for this build: {e}"),
    }
    let Some((program, rest)) = args.split_first() else {
        eprintln!("resellerd build-shim: no command");
        return 2;
    };
    match std::process::Command::new(program).args(rest).status() {
        Ok(status) => status.code().unwrap_or(128 + 9),
        Err(e) => {
            eprintln!("resellerd: cannot run {program}: {e}");
            127
        }
    }
}

fn pipe(tcp: TcpStream, unix: UnixStream) {
    let (Ok(mut tcp_w), Ok(mut unix_w)) = (tcp.try_clone(), unix.try_clone()) else {
        return;
    };
    let (mut tcp_r, mut unix_r) = (tcp, unix);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut tcp_r, &mut unix_w);
        let _ = unix_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut unix_r, &mut tcp_w);
    let _ = tcp_w.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}
