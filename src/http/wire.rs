//! HTTP/1.1 on a socket: accepting connections, reading a request within size and time limits,
//! writing the answer, keep-alive. The head is parsed by `httparse`; this file adds what the
//! contract needs around it and tiny_http 0.12 lacks (see ARCHITECTURE.md): a read timeout and
//! a deadline per request, a bound on the head, 413 answers, and a bounded number of connections.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The limits one connection is held to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line plus headers (§1.3).
    pub max_head: usize,
    /// Body, as sent and after decompression (§1.3).
    pub max_body: usize,
    /// The longest a read may wait for a byte, and a kept-alive connection for its next request.
    pub idle_timeout: Duration,
    /// From a request's first byte to its last: a client sending a byte a second is cut off.
    pub request_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 1024 * 1024,
            max_body: 32 * 1024 * 1024,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
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

/// Serves connections until `stopping` is set and the listener is woken, then waits for the
/// requests in flight to be answered.
pub fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    refusal: Arc<Refusal>,
    limits: Limits,
    stopping: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        if active.load(Ordering::SeqCst) >= limits.max_connections {
            let answer = refusal(503, "too many connections; retry later");
            let _ = write_response(&stream, &answer, false);
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let connection = Connection {
            stream,
            buffer: Vec::new(),
            limits,
            stopping: stopping.clone(),
        };
        let (handler, refusal, active_here) = (handler.clone(), refusal.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                crate::priority::below_writer();
                connection.serve(&*handler, &*refusal);
                active_here.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    drop(listener);
    let give_up = Instant::now() + limits.request_timeout + limits.idle_timeout;
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(10));
    }
}

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

struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet used (the start of a pipelined request, say).
    buffer: Vec<u8>,
    limits: Limits,
    stopping: Arc<AtomicBool>,
}

impl Connection {
    fn serve(mut self, handler: &Handler, refusal: &Refusal) {
        let _ = self.stream.set_nodelay(true);
        let _ = self
            .stream
            .set_write_timeout(Some(self.limits.request_timeout));
        loop {
            if !self.wait_for_request() {
                return;
            }
            let deadline = Instant::now() + self.limits.request_timeout;
            let request = match self.read_request(deadline) {
                Ok(request) => request,
                Err(ReadFailure::Gone) => return,
                Err(ReadFailure::Refuse(status, message)) => {
                    let _ = write_response(&self.stream, &refusal(status, message), false);
                    self.linger();
                    return;
                }
            };
            let keep_alive = wants_keep_alive(&request) && !self.stopping.load(Ordering::SeqCst);
            let answer = catch_unwind(AssertUnwindSafe(|| handler(request))).unwrap_or_else(|_| {
                eprintln!("http: a request handler panicked; answered 500");
                refusal(500, "internal server error")
            });
            if write_response(&self.stream, &answer, keep_alive).is_err() || !keep_alive {
                let _ = self.stream.shutdown(Shutdown::Write);
                return;
            }
        }
    }

    /// Waits for the first byte of the next request; false when the connection should end
    /// (closed by the peer, idle too long, or the server is stopping).
    fn wait_for_request(&mut self) -> bool {
        if !self.buffer.is_empty() {
            return true;
        }
        let idle_until = Instant::now() + self.limits.idle_timeout;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if is_timeout(&e) => {
                    if self.stopping.load(Ordering::SeqCst) || Instant::now() >= idle_until {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Reads more bytes into the buffer, waiting no longer than the idle timeout or the deadline.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadFailure> {
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadFailure::Gone);
        }
        let wait = (deadline - now).min(self.limits.idle_timeout);
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadFailure::Gone),
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadFailure::Gone),
            }
        }
    }

    fn read_request(&mut self, deadline: Instant) -> Result<HttpRequest, ReadFailure> {
        let head_end = self.read_head(deadline)?;
        let mut request = parse_head(&self.buffer[..head_end])?;
        self.buffer.drain(..head_end);

        let chunked = match request.header("transfer-encoding") {
            None => false,
            Some(coding) if coding.trim().eq_ignore_ascii_case("chunked") => true,
            Some(_) => {
                return Err(ReadFailure::Refuse(
                    501,
                    "only chunked transfer coding is supported",
                ));
            }
        };
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
            && self.buffer.is_empty()
        {
            (&self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        request.body = match (chunked, length) {
            (true, _) => self.read_chunked(deadline)?,
            (false, Some(n)) => self.read_exact_body(n, deadline)?,
            (false, None) => Vec::new(),
        };
        Ok(request)
    }

    /// Reads until the blank line that ends the head; returns the head's length in the buffer.
    fn read_head(&mut self, deadline: Instant) -> Result<usize, ReadFailure> {
        let mut searched = 0;
        loop {
            if let Some(end) = find_head_end(&self.buffer, searched) {
                if end > self.limits.max_head {
                    return Err(ReadFailure::Refuse(
                        413,
                        "request line and headers larger than 1 MiB",
                    ));
                }
                return Ok(end);
            }
            if self.buffer.len() > self.limits.max_head {
                return Err(ReadFailure::Refuse(
                    413,
                    "request line and headers larger than 1 MiB",
                ));
            }
            searched = self.buffer.len().saturating_sub(3);
            self.fill(deadline)?;
        }
    }

    fn read_exact_body(
        &mut self,
        length: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, ReadFailure> {
        while self.buffer.len() < length {
            self.fill(deadline)?;
        }
        let rest = self.buffer.split_off(length);
        Ok(std::mem::replace(&mut self.buffer, rest))
    }

    fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadFailure> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(deadline)?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ReadFailure::Refuse(400, "malformed chunk size"))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.read_line(deadline)?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > self.limits.max_body {
                return Err(ReadFailure::Refuse(413, "request body larger than 32 MiB"));
            }
            body.extend_from_slice(&self.read_exact_body(size, deadline)?);
            if !self.read_line(deadline)?.is_empty() {
                return Err(ReadFailure::Refuse(400, "malformed chunk"));
            }
        }
    }

    /// One CRLF- (or LF-) terminated line of a chunked body, without its end.
    fn read_line(&mut self, deadline: Instant) -> Result<String, ReadFailure> {
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.buffer) {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            if self.buffer.len() > 4096 {
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
        let mut chunk = [0u8; 64 * 1024];
        while Instant::now() < until {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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

fn content_length(request: &HttpRequest) -> Result<Option<usize>, ReadFailure> {
    let mut length = None;
    for (_, value) in request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        let parsed: usize = value
            .trim()
            .parse()
            .map_err(|_| ReadFailure::Refuse(400, "malformed Content-Length"))?;
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

fn write_response(
    mut stream: &TcpStream,
    answer: &HttpResponse,
    keep_alive: bool,
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
