//! A raw HTTP/1.1 client: one request per connection (`connection: close`), bytes in, bytes out.

use std::io::{self, BufReader, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::wire::{self, Framing};

/// How long a request may take before [`send`] gives up.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Response heads larger than this are an error (Envoy's own limit is 60 KiB by default).
const MAX_HEAD: usize = 1 << 20;

/// A request to send. Header names and values are sent exactly as given, values as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    chunked: bool,
    trailers: Vec<(String, Vec<u8>)>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            trailers: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    pub fn put(path: &str) -> Request {
        Request::new("PUT", path)
    }

    pub fn delete(path: &str) -> Request {
        Request::new("DELETE", path)
    }

    pub fn method(mut self, method: &str) -> Request {
        self.method = method.to_owned();
        self
    }

    /// Adds a header (repeat the call for repeated headers). `host`, `content-length` and `connection` given here
    /// replace the defaults.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// A JSON body with its content type.
    pub fn json(self, value: &serde_json::Value) -> Request {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// A form body (`application/x-www-form-urlencoded`); pairs are sent as given, so encode them yourself.
    pub fn form(self, pairs: &[(&str, &str)]) -> Request {
        let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
    }

    /// Sends the body with `transfer-encoding: chunked` instead of a content length.
    pub fn chunked(mut self) -> Request {
        self.chunked = true;
        self
    }

    /// Adds a trailer after a chunked body (Envoy only passes them on with `enable_trailers`).
    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.chunked = true;
        self.trailers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let has = |name: &str| wire::header(&self.headers, name).is_some();
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        if !has("host") {
            out.extend_from_slice(b"host: localhost\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let wants_length =
            !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if self.chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        } else if wants_length && !has("content-length") && !has("transfer-encoding") {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        if !has("connection") {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if self.chunked {
            out.extend_from_slice(&wire::chunked(&self.body, &self.trailers));
        } else {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// A response as received; header values are raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (case-insensitive name), lossy UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        wire::header(&self.headers, name)
    }

    /// Every value of a header, in order.
    pub fn headers_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The body as JSON; panics (showing status and body) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body, lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The name of the echo [`Upstream`](crate::Upstream) that answered, if one did.
    pub fn upstream(&self) -> Option<String> {
        let echo: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        echo.get("upstream")?.as_str().map(str::to_owned)
    }
}

/// Sends `request` to 127.0.0.1:`port` and reads the whole response (10 s timeout).
pub fn send(port: u16, request: &Request) -> io::Result<Response> {
    send_to(SocketAddr::from(([127, 0, 0, 1], port)), request)
}

/// [`send`] to another address.
pub fn send_to(address: SocketAddr, request: &Request) -> io::Result<Response> {
    exchange(address, &request.method, &request.to_bytes())
}

/// Sends raw bytes (for requests [`Request`] cannot express) and reads the response as the answer to `GET`.
pub fn send_raw(port: u16, bytes: &[u8]) -> io::Result<Response> {
    exchange(SocketAddr::from(([127, 0, 0, 1], port)), "GET", bytes)
}

fn exchange(address: SocketAddr, method: &str, bytes: &[u8]) -> io::Result<Response> {
    let stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    // Write on another thread: a server may answer (e.g. 431) and close before reading all of an oversized
    // request, and the answer must be read before the reset that follows discards it.
    let mut writer = stream.try_clone()?;
    let bytes = bytes.to_vec();
    std::thread::spawn(move || writer.write_all(&bytes));
    let result = read_response(&stream, method);
    let _ = stream.shutdown(Shutdown::Both);
    result
}

pub(crate) fn read_response(stream: &TcpStream, method: &str) -> io::Result<Response> {
    let mut reader = BufReader::new(stream);
    loop {
        let head = wire::read_head(&mut reader, MAX_HEAD)?.ok_or_else(|| {
            io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed before any response",
            )
        })?;
        let status = parse_status(&head.start_line)?;
        // 100 Continue and friends precede the real answer.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let framing = wire::response_framing(method, status, &head)?;
        let body = match framing {
            Framing::UntilClose => read_until_close(&mut reader)?,
            framing => wire::read_body(&mut reader, framing)?,
        };
        return Ok(Response {
            status,
            headers: head.headers,
            body,
        });
    }
}

/// A body delimited by the close; a reset after some bytes still counts as the end.
fn read_until_close(reader: &mut BufReader<&TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match io::Read::read_to_end(reader, &mut body) {
        Ok(_) => Ok(body),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(body),
        Err(e) => Err(e),
    }
}

fn parse_status(line: &str) -> io::Result<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse().ok());
    match status {
        Some(status) if version.starts_with("HTTP/") => Ok(status),
        _ => Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("bad status line {line:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// A one-shot server: reads one request head, answers with `reply`, closes. Returns the port and a handle
    /// yielding what it read.
    fn one_shot(reply: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(&stream);
            let mut seen = Vec::new();
            loop {
                let mut line = Vec::new();
                reader.read_until(b'\n', &mut line).unwrap();
                seen.extend_from_slice(&line);
                if line == b"\r\n" || line.is_empty() {
                    break;
                }
            }
            (&stream).write_all(reply).unwrap();
            seen
        });
        (port, handle)
    }

    #[test]
    fn request_bytes_have_defaults_and_raw_values() {
        let bytes = Request::post("/p?q=1")
            .header("x-raw", b"\xff\x00")
            .body("abc")
            .to_bytes();
        assert_eq!(
            bytes,
            b"POST /p?q=1 HTTP/1.1\r\nhost: localhost\r\nx-raw: \xff\x00\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc"
        );
        let bytes = Request::get("/")
            .header("Host", "h")
            .header("Connection", "keep-alive")
            .to_bytes();
        assert_eq!(
            bytes,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
        );
        let bytes = Request::put("/").to_bytes();
        assert!(bytes.windows(17).any(|w| w == b"content-length: 0"));
    }

    #[test]
    fn chunked_and_form_and_json_requests() {
        let bytes = Request::post("/").body("hello").chunked().to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert!(!text.contains("content-length"));
        assert!(text.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
        let bytes = Request::post("/").body("hi").trailer("x-t", "1").to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert!(text.ends_with("\r\n\r\n2\r\nhi\r\n0\r\nx-t: 1\r\n\r\n"));
        let form = Request::post("/").form(&[("user_key", "k"), ("a", "b")]);
        assert_eq!(form.body, b"user_key=k&a=b");
        let json = Request::post("/").json(&serde_json::json!({"a": 1}));
        assert_eq!(json.body, br#"{"a":1}"#);
    }

    #[test]
    fn reads_a_length_framed_response_after_100_continue() {
        let (port, server) = one_shot(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 4\r\n\r\nbody");
        let response = send(port, &Request::get("/x")).unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.header("x-a").as_deref(), Some("1"));
        assert_eq!(response.headers_all("X-A"), vec!["1", "2"]);
        assert_eq!(response.text(), "body");
        assert!(server.join().unwrap().starts_with(b"GET /x HTTP/1.1\r\n"));
    }

    #[test]
    fn reads_chunked_and_close_delimited_responses() {
        let (port, _s) =
            one_shot(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
        let response = send(port, &Request::get("/")).unwrap();
        assert_eq!(response.json(), serde_json::json!({}));
        let (port, _s) = one_shot(b"HTTP/1.0 200 OK\r\n\r\nuntil close");
        assert_eq!(
            send(port, &Request::get("/")).unwrap().text(),
            "until close"
        );
        let (port, _s) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbody");
        assert_eq!(send(port, &Request::new("HEAD", "/")).unwrap().body, b"");
    }

    #[test]
    fn garbage_and_silence_are_errors() {
        let (port, _s) = one_shot(b"garbage\r\n\r\n");
        assert_eq!(
            send(port, &Request::get("/")).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
        let (port, _s) = one_shot(b"");
        assert_eq!(
            send(port, &Request::get("/")).unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
        let (port, _s) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        assert!(send(port, &Request::get("/")).is_err());
    }

    #[test]
    fn refused_connections_are_errors() {
        let port = crate::free_port();
        assert!(send(port, &Request::get("/")).is_err());
    }

    #[test]
    fn response_helpers() {
        let response = Response {
            status: 200,
            headers: vec![("Content-Type".into(), b"application/json".to_vec())],
            body: br#"{"upstream":"staging"}"#.to_vec(),
        };
        assert_eq!(response.upstream().as_deref(), Some("staging"));
        assert_eq!(
            response.header("content-type").as_deref(),
            Some("application/json")
        );
        let text = Response {
            status: 503,
            headers: vec![],
            body: b"no healthy upstream".to_vec(),
        };
        assert_eq!(text.upstream(), None);
        let panic = std::panic::catch_unwind(|| text.json()).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("503") && message.contains("no healthy upstream"),
            "{message}"
        );
    }
}
