//! The control room's web server: the page's few files (compiled into the
//! binary), and one websocket per viewer, all behind the access token;
//! over HTTPS when given a certificate (rustls, as `tls://` is served).
//!
//! A request's head is read and parsed by `httparse`; a websocket upgrade
//! is then handed to tungstenite with the head put back in front of the
//! stream, anything else answered and the connection closed
//! (`Connection: close`: the page loads four files once).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rigwire_ws::rustls::{ServerConnection, StreamOwned};
use rigwire_ws::ServerTls;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Message, WebSocket};

use rigwire_std::core::link::{AcceptFailures, Admission, Admitted, Refusal, Ticket};
use rigwire_std::core::{ExpRef, GroupStep, Step};
use rigwire_twin::lock;

use super::state::Control;

/// The page, compiled in: lab machines are often offline.
const FILES: [(&str, &str, &str); 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("page/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("page/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("page/style.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("page/favicon.svg"),
    ),
];

/// Longest request head accepted, and how long a client may take to send it.
const MAX_HEAD: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a viewer's thread looks for changes to send while it waits
/// for the page's messages.
const VIEWER_TICK: Duration = Duration::from_millis(20);

/// How long a write to a viewer may block before the viewer is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Open tabs at once; and connections at once that have not yet shown the
/// token (each holds a thread for up to [`HEAD_TIMEOUT`]). A browser loads
/// the page over a few connections; a crowd of strangers beyond this
/// evicts its own oldest, never a tab.
const MAX_VIEWERS: usize = 64;
const MAX_OPENING: usize = 64;

/// The page's connections, against the two budgets every rigwire server
/// keeps (the core's [`Admission`]), and each one's socket, to shut it
/// when it is evicted.
struct Doors {
    admission: Admission,
    sockets: BTreeMap<Ticket, TcpStream>,
}

/// A connection's place at the [`Doors`], given back when it ends.
struct Place {
    doors: Arc<Mutex<Doors>>,
    ticket: Ticket,
    viewing: bool,
}

impl Place {
    /// Takes a place for `stream`, shutting the oldest stranger's socket if
    /// the strangers' budget is full.
    fn take(doors: &Arc<Mutex<Doors>>, stream: &TcpStream) -> Result<Place, Refusal> {
        let mut d = lock(doors);
        let Admitted { ticket, evicted } = d.admission.admit()?;
        if let Some(socket) = evicted.and_then(|oldest| d.sockets.remove(&oldest)) {
            tracing::debug!(
                "control page: too many connections without the token; closing the oldest"
            );
            let _ = socket.shutdown(Shutdown::Both);
        }
        if let Ok(socket) = stream.try_clone() {
            d.sockets.insert(ticket, socket);
        }
        Ok(Place {
            doors: Arc::clone(doors),
            ticket,
            viewing: false,
        })
    }

    /// The connection is a tab that showed the token: it counts against
    /// the tabs' budget, and is evicted no more.
    fn view(&mut self) -> Result<(), Refusal> {
        let mut d = lock(&self.doors);
        d.sockets.remove(&self.ticket);
        d.admission.established(self.ticket)?;
        self.viewing = true;
        Ok(())
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut d = lock(&self.doors);
        d.sockets.remove(&self.ticket);
        d.admission.release(self.ticket, self.viewing);
    }
}

/// Serves until the process ends: one thread per connection, within the
/// [`Doors`]' budgets.
pub fn serve(
    listener: TcpListener,
    control: Arc<Control>,
    token: Arc<String>,
    tls: Option<ServerTls>,
) {
    // Out of file descriptors, accepting fails at once for as long as it
    // lasts: paced and told as every rigwire server does, not a spin.
    let mut failures = AcceptFailures::default();
    let url = listener.local_addr().map_or_else(
        |_| "the control page".to_owned(),
        |a| format!("the control page at {a}"),
    );
    let doors = Arc::new(Mutex::new(Doors {
        admission: Admission::new("control page", MAX_VIEWERS, MAX_OPENING),
        sockets: BTreeMap::new(),
    }));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                let until = rigwire_twin::accept_failed(&mut failures, e, &url, Instant::now());
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                continue;
            }
        };
        rigwire_twin::accepted(&mut failures, &url, Instant::now());
        let place = match Place::take(&doors, &stream) {
            Ok(place) => place,
            Err(refusal) => {
                refuse_at_once(stream, tls.is_some(), &refusal.reason);
                continue;
            }
        };
        let (control, token, tls) = (Arc::clone(&control), Arc::clone(&token), tls.clone());
        let _ = std::thread::Builder::new()
            .name("control-http".into())
            .spawn(move || {
                let conn = match tls.map(|t| t.session()).transpose() {
                    Ok(None) => Conn::Plain(stream),
                    Ok(Some(session)) => Conn::Tls(Box::new(StreamOwned::new(session, stream))),
                    Err(e) => return tracing::warn!("control page: {e}"),
                };
                if let Err(e) = handle(conn, place, &control, &token) {
                    tracing::debug!("control page connection: {e}");
                }
            });
    }
}

/// Tells a connection refused for room why, if that costs no wait (a
/// plain one: a fresh socket takes a short answer at once), and closes it.
/// What its peer sent already is read first, and again after our side is
/// shut: a socket closed with input unread is reset, and the reset can
/// destroy the answer before the peer reads it.
fn refuse_at_once(stream: TcpStream, tls: bool, reason: &str) {
    tracing::warn!("control page: refusing a connection: {reason}");
    if tls || stream.set_nonblocking(true).is_err() {
        return;
    }
    discard_arrived(&stream);
    if let Ok(answer) = stream.try_clone() {
        let _ = respond(
            Conn::Plain(answer),
            503,
            "text/plain; charset=utf-8",
            reason,
        );
    }
    let _ = stream.shutdown(Shutdown::Write);
    discard_arrived(&stream);
}

/// Reads and drops what has arrived on a non-blocking `stream` (a request
/// head's worth at most), without waiting for more.
fn discard_arrived(mut stream: &TcpStream) {
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            return;
        }
    }
}

/// One connection of the page: plain, or inside TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        self.socket().set_read_timeout(Some(timeout))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A connection whose first bytes (a request head already read) are given
/// back before the rest: tungstenite reads the upgrade request itself.
struct Replayed {
    head: Vec<u8>,
    at: usize,
    conn: Conn,
}

impl Read for Replayed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.conn.read(buf)
    }
}

impl Write for Replayed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.conn.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush()
    }
}

/// Whether `query` carries the access token (compared in constant time).
fn authorized(path: &str, token: &str) -> bool {
    let Some((_, query)) = path.split_once('?') else {
        return false;
    };
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .any(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

fn handle(
    mut conn: Conn,
    place: Place,
    control: &Arc<Control>,
    token: &str,
) -> std::io::Result<()> {
    conn.set_read_timeout(HEAD_TIMEOUT)?;
    let head = read_head(&mut conn)?;
    let Some((method, path, upgrade)) = parse_head(&head) else {
        return respond(conn, 400, "text/plain", "bad request");
    };
    let route = path.split('?').next().unwrap_or("/").to_owned();
    if !authorized(&path, token) {
        return respond(
            conn,
            401,
            "text/plain; charset=utf-8",
            "401: open the URL `rigwire control` printed; it carries the access token",
        );
    }
    if route == "/ws" && upgrade {
        return viewer(Replayed { head, at: 0, conn }, place, control, token);
    }
    if method != "GET" {
        return respond(conn, 405, "text/plain", "only GET");
    }
    match FILES.iter().find(|(p, _, _)| *p == route) {
        // The page names its files with the token, which it was opened with.
        Some((_, kind, body)) if route == "/" => {
            respond(conn, 200, kind, &body.replace("__TOKEN__", token))
        }
        Some((_, kind, body)) => respond(conn, 200, kind, body),
        None => respond(conn, 404, "text/plain", "not found"),
    }
}

/// Reads a request head: up to its blank line (what follows stays unread
/// unless it came in the same read), within the size and time limits.
fn read_head(conn: &mut Conn) -> std::io::Result<Vec<u8>> {
    let until = Instant::now() + HEAD_TIMEOUT;
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD || Instant::now() > until {
            return Err(std::io::Error::other(
                "the request head is too long or too slow",
            ));
        }
        match conn.read(&mut chunk)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(head)
}

/// The request's method, path, and whether it asks for a websocket;
/// `None` for a head that is not HTTP.
fn parse_head(head: &[u8]) -> Option<(String, String, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = request.parse(head).ok()? else {
        return None;
    };
    let upgrade = request.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && String::from_utf8_lossy(h.value).eq_ignore_ascii_case("websocket")
    });
    let method = request.method?.to_owned();
    Some((method, request.path?.to_owned(), upgrade))
}

fn respond(mut conn: Conn, status: u16, kind: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        503 => "Service Unavailable",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Bad Request",
    };
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()?;
    if let Conn::Tls(tls) = &mut conn {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    Ok(())
}

/// One viewer: the snapshot, then every change, while its messages (actions
/// and calls) run on threads of their own so that a slow rig blocks nothing.
fn viewer(
    stream: Replayed,
    mut place: Place,
    control: &Arc<Control>,
    token: &str,
) -> std::io::Result<()> {
    // The tab takes its place before the upgrade is answered: a tab told
    // `101` is never closed for want of room a moment later.
    let place = &mut place;
    // tungstenite's callback type; its error is the HTTP answer.
    #[allow(clippy::result_large_err)]
    let check = move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let path = request.uri().to_string();
        let (status, reason) = if !authorized(&path, token) {
            (
                tungstenite::http::StatusCode::UNAUTHORIZED,
                "the access token is missing or wrong".to_owned(),
            )
        } else {
            match place.view() {
                Ok(()) => return Ok(response),
                Err(refusal) => (
                    tungstenite::http::StatusCode::SERVICE_UNAVAILABLE,
                    refusal.reason,
                ),
            }
        };
        let mut refused = ErrorResponse::new(Some(reason));
        *refused.status_mut() = status;
        Err(refused)
    };
    // The error borrows the place and the token: its words suffice.
    let mut ws =
        tungstenite::accept_hdr(stream, check).map_err(|e| std::io::Error::other(e.to_string()))?;
    ws.get_ref().conn.set_read_timeout(VIEWER_TICK)?;
    // A tab that stops reading fails its writes instead of holding the thread.
    ws.get_ref()
        .conn
        .socket()
        .set_write_timeout(Some(WRITE_TIMEOUT))?;
    let (snapshot, changes) = control.subscribe();
    send(&mut ws, snapshot)?;
    loop {
        loop {
            match changes.try_recv() {
                Ok(change) => send(&mut ws, change)?,
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                // Dropped for falling behind.
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    return Ok(());
                }
            }
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                if let Err(why) = act(control, &text) {
                    send(
                        &mut ws,
                        json!({"type": "error", "message": why}).to_string(),
                    )?;
                }
            }
            Ok(Message::Close(_)) => return Ok(()),
            Ok(Message::Binary(_)) => {
                let why = "messages are JSON text";
                send(
                    &mut ws,
                    json!({"type": "error", "message": why}).to_string(),
                )?;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
}

fn send(ws: &mut WebSocket<Replayed>, text: String) -> std::io::Result<()> {
    ws.send(Message::text(text)).map_err(std::io::Error::other)
}

/// Runs one message from the page: `{"op": "lifecycle", "step": ...,
/// "exp_ref": ...}` or `{"op": "call", "rig": ..., "method": ..., "args":
/// ...}`. What it does runs on a thread of its own; a malformed message is
/// refused at once, with the reason.
fn act(control: &Arc<Control>, text: &str) -> Result<(), String> {
    let message: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |name: &str| message.get(name).and_then(Value::as_str).map(str::to_owned);
    let control = Arc::clone(control);
    match field("op").as_deref() {
        Some("lifecycle") => {
            let (step, what) = lifecycle_step(&field("step"), field("exp_ref").as_deref())?;
            run_action(control, move |control| {
                control.lifecycle(&step, &what);
                Ok(())
            })
        }
        Some("call") => {
            let rig = field("rig").ok_or("a call needs \"rig\"")?;
            let method = field("method").ok_or("a call needs \"method\"")?;
            let args = message.get("args").cloned().unwrap_or(Value::Null);
            run_action(control, move |control| control.call(&rig, &method, &args))
        }
        Some(other) => Err(format!(
            "no operation '{other}'; use \"lifecycle\" or \"call\""
        )),
        None => Err("a message needs \"op\": \"lifecycle\" or \"call\"".into()),
    }
}

/// Runs an action on a thread of its own, if a place among those running
/// at once is free; its failure goes to the log.
fn run_action(
    control: Arc<Control>,
    action: impl FnOnce(&Control) -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let slot = control.begin_action()?;
    std::thread::spawn(move || {
        let _slot = slot;
        if let Err(why) = action(&control) {
            control.log("error", None, &why);
        }
    });
    Ok(())
}

/// The plan of the lifecycle step a message names, and what to call it in
/// the log; or why the message is refused (checked here, so that the
/// sender hears it at once).
fn lifecycle_step(
    step: &Option<String>,
    exp_ref: Option<&str>,
) -> Result<(GroupStep, String), String> {
    let name = step
        .as_deref()
        .ok_or("a lifecycle message needs \"step\"")?;
    let step: Step = serde_json::from_value(Value::from(name))
        .map_err(|_| format!("no lifecycle step '{name}'"))?;
    let exp_ref = match (step, exp_ref) {
        (Step::Start, None) => return Err("start needs \"exp_ref\"".into()),
        (Step::Start, Some(text)) => Some(
            text.parse::<ExpRef>()
                .map_err(|e| format!("invalid experiment reference '{text}': {e}"))?,
        ),
        _ => None,
    };
    let plan = GroupStep::of(step, exp_ref.as_ref())?;
    let what = match (step, &exp_ref) {
        (Step::Start, Some(r)) => format!("{} {r}", plan.method),
        (Step::Interrupt, _) => format!("{} (interrupt)", plan.method),
        _ => plan.method.to_owned(),
    };
    Ok((plan, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crowd keeps the accept thread behind, so a newcomer's request has
    /// often arrived by the time it is refused: the refusal reaches it all
    /// the same, not a reset that destroys it.
    #[test]
    fn a_refusal_reaches_a_peer_whose_request_came_first() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tab = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        tab.write_all(b"GET /ws?x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
            .unwrap();
        let (refused, _) = listener.accept().unwrap();
        refused
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        refused.peek(&mut [0u8; 1]).unwrap(); // the request is there
        refuse_at_once(refused, false, "the control page is full");
        tab.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        tab.read_to_string(&mut answer)
            .expect("the refusal, not a reset");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.ends_with("the control page is full"), "{answer}");
    }
}
