//! HTTP/1.1 on a socket: reading a request within size, time and memory limits, writing the
//! answer, keep-alive. The head is parsed by `httparse`; this file adds what the contract needs
//! around it and tiny_http 0.12 lacks (see ARCHITECTURE.md): a read timeout, a deadline for the
//! head and one for the whole request, a bound on the head, 413 answers, strict framing, and
//! every buffered byte counted against the server's memory budget. Accepting connections is
//! `listen.rs`; which connection may stay open is `slots.rs`.

use crate::http::memory::{MemoryBudget, OverBudget, Reservation};
use crate::http::slots::SlotId;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The limits one connection is held to.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Request line plus headers (§1.3).
    pub max_head: usize,
    /// Body, as sent and after decompression (§1.3).
    pub max_body: usize,
    /// The longest a read may wait for a byte, and a kept-alive connection for its next request.
    pub idle_timeout: Duration,
    /// From a request's first byte to the end of its head: a client trickling its headers a
    /// byte at a time (slowloris) is cut off early.
    pub head_timeout: Duration,
    /// From a request's first byte to its last: a client sending a byte a second is cut off.
    pub request_timeout: Duration,
    /// Connections served at once; when full, the one waiting longest makes room (`slots.rs`).
    pub max_connections: usize,
    /// Connections one peer address may hold at once.
    pub max_connections_per_peer: usize,
    /// Every request byte held at once: buffers, bodies, decompressed bodies, decoded forms.
    pub memory: MemoryBudget,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 1024 * 1024,
            max_body: 32 * 1024 * 1024,
            idle_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_peer: 256,
            memory: MemoryBudget::new(crate::http::memory::DEFAULT_BUDGET),
        }
    }
}

/// A request as read off the wire.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The part of the memory budget the body holds; decoding grows it (`body.rs`).
    pub memory: Reservation,
    /// The client's address; None for a request made in-process (tests, fuzzing).
    pub peer: Option<std::net::SocketAddr>,
}

impl HttpRequest {
    /// The first header of this name (names compare ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer to write.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl HttpResponse {
    /// The status of `dropped()`: never written, the connection is closed instead.
    pub const DROP: u16 = 0;

    /// No answer at all: the connection is closed as a crashed server or a broken proxy would
    /// (a fault rule's `drop_connection`).
    pub fn dropped() -> HttpResponse {
        HttpResponse {
            status: HttpResponse::DROP,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }
}

/// An answer's body: bytes in memory, or a file streamed from disk (an export's CSV).
#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    File(std::fs::File),
}

/// What answers a request; must not hold the connection's thread longer than it needs.
pub type Handler = dyn Fn(HttpRequest) -> HttpResponse + Send + Sync;
/// The answer to a request that broke the rules of HTTP or of §1.3 (status and message).
pub type Refusal = dyn Fn(u16, &str) -> HttpResponse + Send + Sync;

/// Why a request could not be read.
enum ReadFailure {
    /// The peer went away or was too slow: close without an answer.
    Gone,
    /// Answer with this status and message, then close.
    Refuse(u16, &'static str),
}

impl From<io::Error> for ReadFailure {
    fn from(_: io::Error) -> ReadFailure {
        ReadFailure::Gone
    }
}

impl From<OverBudget> for ReadFailure {
    fn from(_: OverBudget) -> ReadFailure {
        ReadFailure::Refuse(503, "the server holds too many request bytes; retry later")
    }
}

/// The most read from the socket at once, and the first read of a request.
const READ_CHUNK: usize = 64 * 1024;
const FIRST_READ: usize = 4 * 1024;

/// One client connection, served on its own thread.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read; those from `consumed` on are not used yet (the start of a pipelined
    /// request, say). A cursor rather than draining the front, so that a body of many tiny
    /// chunks costs linear time.
    buffer: Vec<u8>,
    consumed: usize,
    /// The budget held by `buffer`.
    buffer_memory: Reservation,
    limits: Limits,
    stopping: Arc<AtomicBool>,
}

impl Connection {
    pub fn new(stream: TcpStream, limits: Limits, stopping: Arc<AtomicBool>) -> Connection {
        Connection {
            stream,
            buffer: Vec::new(),
            consumed: 0,
            buffer_memory: limits.memory.reservation(),
            limits,
            stopping,
        }
    }

    pub fn serve(mut self, handler: &Handler, refusal: &Refusal, slot: &SlotId) {
        let _ = self.stream.set_nodelay(true);
        let _ = self
            .stream
            .set_write_timeout(Some(self.limits.request_timeout));
        loop {
            slot.waiting();
            if !self.wait_for_request() {
                return;
            }
            let started = Instant::now();
            let request = match self.read_request(started) {
                Ok(request) => request,
                Err(ReadFailure::Gone) => return,
                Err(ReadFailure::Refuse(status, message)) => {
                    slot.busy();
                    let _ = write_response(&self.stream, &refusal(status, message), false);
                    self.linger();
                    return;
                }
            };
            slot.busy();
            let keep_alive = wants_keep_alive(&request) && !self.stopping.load(Ordering::SeqCst);
            // HEAD is answered as GET would be, less the body.
            let with_body = request.method != "HEAD";
            let answer = catch_unwind(AssertUnwindSafe(|| handler(request))).unwrap_or_else(|_| {
                eprintln!("http: a request handler panicked; answered 500");
                refusal(500, "internal server error")
            });
            if answer.status == HttpResponse::DROP {
                let _ = self.stream.shutdown(Shutdown::Both);
                return;
            }
            if write_answer(&self.stream, &answer, keep_alive, with_body).is_err() || !keep_alive {
                let _ = self.stream.shutdown(Shutdown::Write);
                return;
            }
        }
    }

    /// Waits for the first byte of the next request; false when the connection should end
    /// (closed by the peer, idle too long, or the server is stopping). One blocking read, not
    /// a poll: a thousand idle connections cost no CPU. A stopping server closes the sockets
    /// of waiting connections (`Slots::close_waiting`), and this connection was marked waiting
    /// before it looks at `stopping`, so one of the two always sees the other.
    fn wait_for_request(&mut self) -> bool {
        if !self.unread().is_empty() {
            return true;
        }
        // An idle connection holds no buffer.
        self.buffer = Vec::new();
        self.consumed = 0;
        let _ = self.buffer_memory.resize(0);
        if self.stopping.load(Ordering::SeqCst) {
            return false;
        }
        let _ = self.stream.set_read_timeout(Some(self.limits.idle_timeout));
        let mut first = [0u8; 1];
        loop {
            match self.stream.read(&mut first) {
                Ok(0) => return false,
                Ok(_) => {
                    self.buffer.push(first[0]);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Reads more bytes into `into`, waiting no longer than the idle timeout or the deadline.
    fn read_some(
        stream: &TcpStream,
        into: &mut Vec<u8>,
        room: usize,
        idle: Duration,
        deadline: Instant,
    ) -> Result<(), ReadFailure> {
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadFailure::Gone);
        }
        let wait = (deadline - now).min(idle);
        stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let start = into.len();
        into.resize(start + room, 0);
        loop {
            match (&mut &*stream).read(&mut into[start..]) {
                Ok(0) => {
                    into.truncate(start);
                    return Err(ReadFailure::Gone);
                }
                Ok(n) => {
                    into.truncate(start + n);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    into.truncate(start);
                    return Err(ReadFailure::Gone);
                }
            }
        }
    }

    fn unread(&self) -> &[u8] {
        &self.buffer[self.consumed..]
    }

    /// Marks `count` unread bytes used; the buffer is compacted once most of it is used.
    fn consume(&mut self, count: usize) {
        self.consumed += count;
        if self.consumed * 2 >= self.buffer.len() {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
    }

    /// Reads more bytes into the buffer, holding the budget for them first.
    /// Reads start small and grow with what has arrived: a request head is usually under a
    /// kilobyte, and a thousand stalled connections should hold a thousand small buffers.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadFailure> {
        let room = self.buffer.len().clamp(FIRST_READ, READ_CHUNK);
        self.buffer_memory.resize(self.buffer.len() + room)?;
        Self::read_some(
            &self.stream,
            &mut self.buffer,
            room,
            self.limits.idle_timeout,
            deadline,
        )
    }

    fn read_request(&mut self, started: Instant) -> Result<HttpRequest, ReadFailure> {
        let head_end = self.read_head(started + self.limits.head_timeout)?;
        let deadline = started + self.limits.request_timeout;
        let mut request = parse_head(&self.unread()[..head_end])?;
        self.consume(head_end);

        let chunked = transfer_coding(&request)?;
        let length = content_length(&request)?;
        if chunked && length.is_some() {
            return Err(ReadFailure::Refuse(
                400,
                "both Content-Length and Transfer-Encoding given",
            ));
        }
        if length.is_some_and(|n| n > self.limits.max_body) {
            return Err(ReadFailure::Refuse(413, "request body larger than 32 MiB"));
        }
        let expects_body = chunked || length.is_some_and(|n| n > 0);
        if expects_body
            && request
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && self.unread().is_empty()
        {
            (&self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        request.memory = self.limits.memory.reservation();
        request.peer = self.stream.peer_addr().ok();
        request.body = match (chunked, length) {
            (true, _) => self.read_chunked(&mut request.memory, deadline)?,
            (false, Some(n)) => self.read_exact_body(n, &mut request.memory, deadline)?,
            (false, None) => Vec::new(),
        };
        Ok(request)
    }

    /// Reads until the blank line that ends the head; returns the head's length in the buffer.
    fn read_head(&mut self, deadline: Instant) -> Result<usize, ReadFailure> {
        let mut searched = 0;
        loop {
            if let Some(end) = find_head_end(self.unread(), searched) {
                if end > self.limits.max_head {
                    return Err(ReadFailure::Refuse(
                        413,
                        "request line and headers larger than 1 MiB",
                    ));
                }
                return Ok(end);
            }
            if self.unread().len() > self.limits.max_head {
                return Err(ReadFailure::Refuse(
                    413,
                    "request line and headers larger than 1 MiB",
                ));
            }
            searched = self.unread().len().saturating_sub(3);
            self.fill(deadline)?;
        }
    }

    /// Appends `length` body bytes to `body`: first those already buffered, then from the socket
    /// straight into `body`, whose budget (`memory`) is held before anything is read.
    fn append_body(
        &mut self,
        body: &mut Vec<u8>,
        length: usize,
        memory: &mut Reservation,
        deadline: Instant,
    ) -> Result<(), ReadFailure> {
        // The budget is held for the bytes before they are allocated, then for what the
        // allocation really took (a chunked body grows by doubling).
        memory.resize(body.len() + length)?;
        body.reserve(length);
        memory.resize(body.capacity())?;
        let from_buffer = length.min(self.unread().len());
        body.extend_from_slice(&self.unread()[..from_buffer]);
        self.consume(from_buffer);
        let end = body.len() + (length - from_buffer);
        while body.len() < end {
            let room = (end - body.len()).min(READ_CHUNK);
            Self::read_some(&self.stream, body, room, self.limits.idle_timeout, deadline)?;
        }
        Ok(())
    }

    fn read_exact_body(
        &mut self,
        length: usize,
        memory: &mut Reservation,
        deadline: Instant,
    ) -> Result<Vec<u8>, ReadFailure> {
        let mut body = Vec::new();
        self.append_body(&mut body, length, memory, deadline)?;
        Ok(body)
    }

    fn read_chunked(
        &mut self,
        memory: &mut Reservation,
        deadline: Instant,
    ) -> Result<Vec<u8>, ReadFailure> {
        let mut body = Vec::new();
        loop {
            let size = chunk_size(&self.read_line(deadline)?)?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.read_line(deadline)?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > self.limits.max_body {
                return Err(ReadFailure::Refuse(413, "request body larger than 32 MiB"));
            }
            self.append_body(&mut body, size, memory, deadline)?;
            if !self.read_line(deadline)?.is_empty() {
                return Err(ReadFailure::Refuse(400, "malformed chunk"));
            }
        }
    }

    /// One CRLF- (or LF-) terminated line of a chunked body, without its end.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadFailure> {
        loop {
            if let Some(at) = memchr::memchr(b'\n', self.unread()) {
                let line = self.unread()[..at]
                    .strip_suffix(b"\r")
                    .unwrap_or(&self.unread()[..at])
                    .to_vec();
                self.consume(at + 1);
                return Ok(line);
            }
            if self.unread().len() > 4096 {
                return Err(ReadFailure::Refuse(400, "malformed chunk"));
            }
            self.fill(deadline)?;
        }
    }

    /// After refusing a request whose body may still be arriving, reads a little of it before
    /// closing, so that the peer gets the answer rather than a reset.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)));
        let until = Instant::now() + Duration::from_secs(2);
        let mut chunk = [0u8; 4096];
        while Instant::now() < until {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// The end of the head (after its blank line), searching from `from`.
fn find_head_end(buffer: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buffer.len());
    let crlf = memchr::memmem::find(&buffer[from..], b"\r\n\r\n").map(|at| from + at + 4);
    let lf = memchr::memmem::find(&buffer[from..], b"\n\n").map(|at| from + at + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_head(head: &[u8]) -> Result<HttpRequest, ReadFailure> {
    let lines = memchr::memchr_iter(b'\n', head).count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines.max(1)];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // An HTTP version this server does not speak, as opposed to no HTTP at all.
        Err(httparse::Error::Version) if asks_other_version(head) => {
            return Err(ReadFailure::Refuse(505, "HTTP/1.0 and HTTP/1.1 only"));
        }
        _ => {
            return Err(ReadFailure::Refuse(
                400,
                "malformed request line or headers",
            ));
        }
    }
    if parsed.version != Some(1) && parsed.version != Some(0) {
        return Err(ReadFailure::Refuse(505, "HTTP/1.0 and HTTP/1.1 only"));
    }
    let mut headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    if parsed.version == Some(0) {
        // Remembered as a pseudo-header so that keep-alive follows HTTP/1.0's default.
        headers.push((":http-version".into(), "1.0".into()));
    }
    Ok(HttpRequest {
        method: parsed.method.unwrap_or_default().to_string(),
        target: parsed.path.unwrap_or_default().to_string(),
        headers,
        body: Vec::new(),
        memory: Reservation::default(),
        peer: None,
    })
}

/// Whether the request line ends in an `HTTP/...` version token.
fn asks_other_version(head: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    line.trim_end()
        .rsplit(' ')
        .next()
        .is_some_and(|version| version.starts_with("HTTP/"))
}

/// The body's length from Content-Length: digits only (no sign, no space inside), every
/// header of that name agreeing.
fn content_length(request: &HttpRequest) -> Result<Option<usize>, ReadFailure> {
    let mut length = None;
    for (_, value) in request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        let parsed = digits(value.trim().as_bytes(), 10)
            .ok_or(ReadFailure::Refuse(400, "malformed Content-Length"))?;
        if length.is_some_and(|seen| seen != parsed) {
            return Err(ReadFailure::Refuse(
                400,
                "conflicting Content-Length headers",
            ));
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// Whether the body is chunked. Every Transfer-Encoding header is read, as one comma-separated
/// list (RFC 9112 §6.1), so that a second header cannot hide a coding: no coding but `chunked`
/// is served (501), and `chunked` comes once (400), so it is always the last.
fn transfer_coding(request: &HttpRequest) -> Result<bool, ReadFailure> {
    let codings: Vec<String> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty())
        .collect();
    if codings.iter().any(|coding| coding != "chunked") {
        return Err(ReadFailure::Refuse(
            501,
            "only chunked transfer coding is supported",
        ));
    }
    match codings.len() {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ReadFailure::Refuse(400, "chunked given more than once")),
    }
}

/// A chunk's size: hex digits, then optionally `;` and extensions.
fn chunk_size(line: &[u8]) -> Result<usize, ReadFailure> {
    let size = line.split(|b| *b == b';').next().unwrap_or_default();
    let size = size.trim_ascii_end();
    digits(size, 16).ok_or(ReadFailure::Refuse(400, "malformed chunk size"))
}

/// A number written in digits of `radix` alone: no sign, no spaces, no overflow.
fn digits(text: &[u8], radix: u32) -> Option<usize> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0usize, |number, byte| {
        let digit = (*byte as char).to_digit(radix)?;
        number
            .checked_mul(radix as usize)?
            .checked_add(digit as usize)
    })
}

fn wants_keep_alive(request: &HttpRequest) -> bool {
    let connection = request
        .header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if request.header(":http-version").is_some() {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes an answer, body included.
pub fn write_response(
    stream: &TcpStream,
    answer: &HttpResponse,
    keep_alive: bool,
) -> io::Result<()> {
    write_answer(stream, answer, keep_alive, true)
}

/// Writes an answer's head, and its body when `with_body` (not for HEAD); the Content-Length is
/// the body's either way.
fn write_answer(
    mut stream: &TcpStream,
    answer: &HttpResponse,
    keep_alive: bool,
    with_body: bool,
) -> io::Result<()> {
    let length = match &answer.body {
        Body::Bytes(bytes) => bytes.len() as u64,
        Body::File(file) => file.metadata()?.len(),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {length}\r\nConnection: {}\r\n",
        answer.status,
        reason(answer.status),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (name, value) in &answer.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    if !with_body {
        stream.write_all(head.as_bytes())?;
        return stream.flush();
    }
    match &answer.body {
        Body::Bytes(body) => {
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            stream.write_all(&bytes)?;
        }
        Body::File(file) => {
            stream.write_all(head.as_bytes())?;
            io::copy(
                &mut io::BufReader::with_capacity(1 << 16, file),
                &mut stream,
            )?;
        }
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_with_either_line_ending() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 0),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nA: b\n\nrest", 0), Some(21));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
    }

    #[test]
    fn heads_parse_or_are_refused() {
        let request =
            parse_head(b"POST /en/api/x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n")
                .ok()
                .expect("parses");
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/en/api/x?y=1");
        assert_eq!(request.header("content-length"), Some("3"));
        assert!(matches!(
            parse_head(b"NOT HTTP\r\n\r\n"),
            Err(ReadFailure::Refuse(400, _))
        ));
    }
}
