//! The two listeners on one actix server. The plain port speaks HTTP/1.1 (actix-http). The TLS
//! port offers `h2` and `http/1.1` by ALPN: HTTP/1.1 goes to actix-http as on the plain port,
//! HTTP/2 to hyper, which hands each request to the same actix app. (actix-http's own HTTP/2
//! runs on h2 0.3, which has an advisory with no fix in 0.3: RUSTSEC-2026-0258; hyper runs on
//! h2 0.4, fixed.)
//!
//! HTTP/2 limits: 128 concurrent streams, a 32 KiB header list (a CONTINUATION flood ends at it),
//! h2's cap on streams the client resets before they are answered (the rapid-reset attack), a
//! cap on streams the server has to reset, 128 KiB buffered per stream for a client that does not
//! read, pings that find dead peers, and an idle timeout.

use crate::http::Listener;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{HttpMessage as _, HttpService, HttpServiceBuilder, Request, Response};
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
    ServiceFactoryExt as _,
};
use actix_web::dev::AppConfig;
use actix_web::web::Bytes;
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A TLS handshake must be done within this.
const HANDSHAKE: Duration = Duration::from_secs(3);
/// An HTTP/2 connection with no open stream for this long is closed.
const H2_IDLE: Duration = Duration::from_secs(60);
const H2_MAX_STREAMS: u32 = 128;
const H2_MAX_HEADER_LIST: u32 = 32 * 1024;

/// How the listeners are bound and limited.
pub struct Options {
    pub workers: usize,
    /// Open connections per worker.
    pub max_connections: usize,
    /// How long a client may take to send a request's head.
    pub request_timeout: Duration,
    pub http: std::net::TcpListener,
    pub https: std::net::TcpListener,
    pub tls: rustls::ServerConfig,
}

/// A listening socket on `addr` (address reuse on, a backlog of 1024 as actix's own listeners).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// The app's service factory as the listeners take it: errors already turned into responses.
type AppFactory =
    actix_service::boxed::BoxServiceFactory<(), Request, Response<BoxBody>, Response<BoxBody>, ()>;

/// An actix app as the listeners take it (`serve`).
pub fn app_factory<I, S, B>(app: I) -> AppFactory
where
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig, InitError = ()> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::Response: Into<Response<B>> + 'static,
    S::Service: 'static,
    <S::Service as Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    // The app's config is the default one: which listener a request came in on is told by the
    // `Listener` each connection carries (see `http::listener`).
    let fac = app
        .into_factory()
        .map(|res| res.into().map_into_boxed_body())
        .map_err(|err| Response::from(err.into().error_response()));
    actix_service::boxed::factory(map_config(fac, |_| AppConfig::default()))
}

/// Binds both listeners with the app `app` makes (once per worker and listener, through
/// `app_factory`) and starts them.
pub fn serve<F>(app: F, o: Options) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn() -> AppFactory + Send + Clone + 'static,
{
    let builder = actix_server::Server::build()
        .workers(o.workers)
        .max_concurrent_connections(o.max_connections);
    let shutdown = builder.graceful_shutdown_signal();
    let (http_addr, https_addr) = (o.http.local_addr()?, o.https.local_addr()?);
    let (timeout, disconnect) = (o.request_timeout, Duration::from_secs(2));
    let plain_http1 = Http1 {
        local: http_addr,
        secure: false,
        timeout,
        disconnect,
        shutdown,
    };
    let tls_http1 = Http1 {
        local: https_addr,
        secure: true,
        ..plain_http1.clone()
    };
    let plain = app.clone();
    let builder = builder.listen("http", o.http, move || {
        plain_http1.clone().builder().finish(plain()).tcp()
    })?;
    let mut tls = o.tls;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let shutdown = builder.graceful_shutdown_signal();
    let builder = builder.listen("https", o.https, move || {
        let (app, acceptor, shutdown) = (app.clone(), acceptor.clone(), shutdown.clone());
        let tls_http1 = tls_http1.clone();
        fn_factory(move || {
            let h1 = tls_http1.clone().builder().h1(app());
            let h2 = app();
            let (acceptor, shutdown) = (acceptor.clone(), shutdown.clone());
            async move {
                let h1 = Rc::new(h1.new_service(()).await?);
                let h2 = Rc::new(h2.new_service(()).await?);
                let h2_conf = Rc::new(h2_builder());
                Ok::<_, ()>(fn_service(move |io: tokio::net::TcpStream| {
                    let conn = Conn {
                        h1: h1.clone(),
                        h2: h2.clone(),
                        h2_conf: h2_conf.clone(),
                        acceptor: acceptor.clone(),
                        shutdown: shutdown.clone(),
                        local: https_addr,
                    };
                    async move {
                        conn.run(io).await;
                        Ok::<_, ()>(())
                    }
                }))
            }
        })
    })?;
    Ok(builder.run())
}

/// How actix-http serves HTTP/1.1 on a listener.
#[derive(Clone)]
struct Http1 {
    local: SocketAddr,
    secure: bool,
    timeout: Duration,
    disconnect: Duration,
    shutdown: actix_server::GracefulShutdownSignal,
}

impl Http1 {
    fn builder<T>(self) -> HttpServiceBuilder<T, AppFactory> {
        let Http1 {
            local,
            secure,
            timeout,
            disconnect,
            shutdown,
        } = self;
        HttpService::build()
            .client_request_timeout(timeout)
            .client_disconnect_timeout(disconnect)
            .local_addr(local)
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .on_connect_ext(move |_, ext| {
                ext.insert(Listener { secure, local });
            })
    }
}

/// Runs hyper's tasks on the worker's own thread: the app's futures are not `Send`.
#[derive(Clone, Copy)]
struct Local;

impl<F: Future + 'static> hyper::rt::Executor<F> for Local {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

fn h2_builder() -> hyper::server::conn::http2::Builder<Local> {
    let mut b = hyper::server::conn::http2::Builder::new(Local);
    b.timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(256))
        // Per stream: 128 streams of a client that does not read must not pin much memory.
        .max_send_buf_size(128 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// One TLS connection, and what it may be handed to.
struct Conn<H1, H2> {
    h1: Rc<H1>,
    h2: Rc<H2>,
    h2_conf: Rc<hyper::server::conn::http2::Builder<Local>>,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: actix_server::GracefulShutdownSignal,
    local: SocketAddr,
}

impl<H1, H2> Conn<H1, H2>
where
    H1: Service<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        Option<SocketAddr>,
    )>,
    H2: Service<Request, Response = Response<BoxBody>, Error = Response<BoxBody>> + 'static,
{
    async fn run(self, io: tokio::net::TcpStream) {
        let peer = io.peer_addr().ok();
        let _ = io.set_nodelay(true);
        let stream = match tokio::time::timeout(HANDSHAKE, self.acceptor.accept(io)).await {
            Ok(Ok(stream)) => stream,
            _ => return,
        };
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            let _ = self.h1.call((stream, peer)).await;
            return;
        }
        // Open streams and when the last one ended, for the idle timeout.
        let activity = Rc::new(Activity::default());
        let (app, local, seen) = (self.h2.clone(), self.local, activity.clone());
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            let open = Open::new(seen.clone());
            async move {
                let res = bridge(&*app, req, peer, local).await;
                drop(open);
                Ok::<_, std::convert::Infallible>(res)
            }
        });
        let conn = self
            .h2_conf
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        tokio::pin!(conn);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = self.shutdown.notified() => break,
                _ = tick.tick() => {
                    if activity.open.get() == 0 && activity.since.get().elapsed() >= H2_IDLE {
                        break;
                    }
                }
            }
        }
        // GOAWAY: streams in flight finish, no new ones start.
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// An HTTP/2 connection's open streams, and when the last one ended.
struct Activity {
    open: Cell<usize>,
    since: Cell<Instant>,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            open: Cell::new(0),
            since: Cell::new(Instant::now()),
        }
    }
}

/// One open stream, counted until it is answered or dropped (a stream the client reset).
struct Open(Rc<Activity>);

impl Open {
    fn new(activity: Rc<Activity>) -> Open {
        activity.open.set(activity.open.get() + 1);
        Open(activity)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.since.set(Instant::now());
    }
}

/// An HTTP/2 request handed to the actix app as actix-http's HTTP/1.1 dispatcher would hand it
/// (origin-form URI, a Host header from `:authority`), and its answer handed back.
async fn bridge<H2>(
    app: &H2,
    req: hyper::Request<hyper::body::Incoming>,
    peer: Option<SocketAddr>,
    local: SocketAddr,
) -> hyper::Response<Body>
where
    H2: Service<Request, Response = Response<BoxBody>, Error = Response<BoxBody>>,
{
    let (parts, body) = req.into_parts();
    let head_only = parts.method == hyper::Method::HEAD;
    let Some(areq) = to_actix(parts, body, peer, local) else {
        return hyper::Response::builder()
            .status(400)
            .body(Body(BoxBody::new(Bytes::from_static(b"bad request"))))
            .unwrap_or_default();
    };
    areq.extensions_mut().insert(Listener {
        secure: true,
        local,
    });
    let res = match app.call(areq).await {
        Ok(res) | Err(res) => res,
    };
    from_actix(res, head_only)
}

fn to_actix(
    parts: hyper::http::request::Parts,
    body: hyper::body::Incoming,
    peer: Option<SocketAddr>,
    local: SocketAddr,
) -> Option<Request> {
    use futures_util::StreamExt as _;
    use http_body_util::BodyExt as _;
    let payload = body.into_data_stream().map(|chunk| {
        chunk.map_err(|e| actix_http::error::PayloadError::Io(std::io::Error::other(e)))
    });
    let payload: actix_http::BoxedPayloadStream = Box::pin(payload);
    let mut req = Request::with_payload(actix_http::Payload::Stream { payload });
    let head = req.head_mut();
    head.method = actix_http::Method::from_bytes(parts.method.as_str().as_bytes()).ok()?;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    head.uri = path.parse().ok()?;
    head.version = actix_http::Version::HTTP_2;
    head.peer_addr = peer;
    for (name, value) in &parts.headers {
        let name = actix_http::header::HeaderName::from_bytes(name.as_str().as_bytes()).ok()?;
        let value = actix_http::header::HeaderValue::from_bytes(value.as_bytes()).ok()?;
        head.headers.append(name, value);
    }
    if !head.headers.contains_key(actix_http::header::HOST) {
        let authority = parts
            .uri
            .authority()
            .map_or_else(|| local.to_string(), |a| a.to_string());
        head.headers.insert(
            actix_http::header::HOST,
            actix_http::header::HeaderValue::from_str(&authority).ok()?,
        );
    }
    Some(req)
}

fn from_actix(res: Response<BoxBody>, head_only: bool) -> hyper::Response<Body> {
    let (head, body) = res.into_parts();
    let mut out = hyper::Response::new(Body(BoxBody::new(())));
    *out.status_mut() = hyper::StatusCode::from_u16(head.status().as_u16()).unwrap_or_default();
    let headers = out.headers_mut();
    for (name, value) in head.headers() {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            hyper::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    if head_only {
        // The length GET would send, and no body (HTTP/2 forbids one).
        if let BodySize::Sized(n) = body.size() {
            headers.insert(hyper::header::CONTENT_LENGTH, n.into());
        }
    } else {
        *out.body_mut() = Body(body);
    }
    out
}

/// An actix body as an `http_body::Body` for hyper.
pub struct Body(BoxBody);

impl Default for Body {
    fn default() -> Body {
        Body(BoxBody::new(()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.0).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(http_body::Frame::data(chunk)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.to_string().into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0.size(), BodySize::None | BodySize::Sized(0))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.0.size() {
            BodySize::None => http_body::SizeHint::with_exact(0),
            BodySize::Sized(n) => http_body::SizeHint::with_exact(n),
            BodySize::Stream => http_body::SizeHint::default(),
        }
    }
}
