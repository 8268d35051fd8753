//! Reading HTTP/1.1 messages off a socket, for both the client and the echo upstreams.
//!
//! Header values stay bytes: the tests send and check non-UTF-8 values, which a text API would mangle.

use std::io::{self, BufRead, ErrorKind, Read};

/// Bodies the harness is willing to buffer: far above anything a test sends, far below what a bogus length would
/// make it allocate.
const MAX_BODY: usize = 256 << 20;

/// A parsed start line plus headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The request line or status line, lossy UTF-8, without the line ending.
    pub start_line: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(&self.headers, name)
    }
}

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The first value of a header in a list, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Reads a start line and headers (at most `limit` bytes). `Ok(None)` when the peer closed before sending a byte:
/// that is how a kept-alive connection ends.
pub fn read_head(reader: &mut impl BufRead, limit: usize) -> io::Result<Option<Head>> {
    let mut total = 0;
    let Some(start_line) = read_line(reader, &mut total, limit)? else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut total, limit)?.ok_or_else(|| {
            io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed inside the headers",
            )
        })?;
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| {
            invalid(format!(
                "header line without a colon: {:?}",
                String::from_utf8_lossy(&line)
            ))
        })?;
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        headers.push((
            String::from_utf8_lossy(name).trim().to_owned(),
            trim_bytes(value).to_vec(),
        ));
    }
    Ok(Some(Head {
        start_line: String::from_utf8_lossy(&start_line).into_owned(),
        headers,
    }))
}

/// The framing a request declares: chunked, a length, or no body at all.
pub fn request_framing(head: &Head) -> io::Result<Framing> {
    match declared_framing(head)? {
        Some(framing) => Ok(framing),
        None => Ok(Framing::Empty),
    }
}

/// The framing of a response to `method` with `status`: no body for HEAD, 1xx, 204 and 304, else chunked, a length,
/// or everything until the server closes.
pub fn response_framing(method: &str, status: u16, head: &Head) -> io::Result<Framing> {
    if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(Framing::Empty);
    }
    Ok(declared_framing(head)?.unwrap_or(Framing::UntilClose))
}

fn declared_framing(head: &Head) -> io::Result<Option<Framing>> {
    if let Some(coding) = head.header("transfer-encoding")
        && String::from_utf8_lossy(coding)
            .to_ascii_lowercase()
            .contains("chunked")
    {
        return Ok(Some(Framing::Chunked));
    }
    match head.header("content-length") {
        Some(length) => {
            let text = String::from_utf8_lossy(length);
            let length = text
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad content-length {text:?}")))?;
            Ok(Some(Framing::Length(length)))
        }
        None => Ok(None),
    }
}

/// Reads a body as framed, de-chunking it.
pub fn read_body(reader: &mut impl BufRead, framing: Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        Framing::Empty => {}
        Framing::Length(length) => {
            if length > MAX_BODY {
                return Err(invalid(format!(
                    "content-length {length} is over the harness limit"
                )));
            }
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        Framing::UntilClose => {
            reader.read_to_end(&mut body)?;
        }
        Framing::Chunked => read_chunks(reader, &mut body)?,
    }
    Ok(body)
}

fn read_chunks(reader: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<()> {
    let mut total = 0;
    let limit = 64 * 1024;
    loop {
        let line = read_line(reader, &mut total, limit)?.ok_or_else(|| {
            io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            )
        })?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {text:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while let Some(trailer) = read_line(reader, &mut total, limit)? {
                if trailer.is_empty() {
                    break;
                }
            }
            return Ok(());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if crlf != *b"\r\n" {
            return Err(invalid("chunk not followed by CRLF".into()));
        }
    }
}

/// One line without its `\r\n` (or bare `\n`); `None` at end of input before any byte.
fn read_line(
    reader: &mut impl BufRead,
    total: &mut usize,
    limit: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let remaining = limit.saturating_sub(*total) as u64 + 1;
    let read = reader
        .by_ref()
        .take(remaining)
        .read_until(b'\n', &mut line)?;
    *total += read;
    if read == 0 {
        return Ok(None);
    }
    if *total > limit {
        return Err(invalid(format!("message head larger than {limit} bytes")));
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "connection closed inside a line",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

fn trim_bytes(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn invalid(message: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message)
}

/// Encodes `body` as one chunk plus the last chunk, then `trailers` (usually none).
pub fn chunked(body: &[u8], trailers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    if !body.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn head(text: &[u8]) -> io::Result<Option<Head>> {
        read_head(&mut Cursor::new(text.to_vec()), 1024)
    }

    #[test]
    fn parses_headers_keeping_value_bytes() {
        let parsed = head(b"GET / HTTP/1.1\r\nHost: a\r\nX-Raw:  \xff\xfe ok \r\nEmpty:\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(parsed.start_line, "GET / HTTP/1.1");
        assert_eq!(parsed.header("host"), Some(&b"a"[..]));
        assert_eq!(parsed.header("x-raw"), Some(&b"\xff\xfe ok"[..]));
        assert_eq!(parsed.header("EMPTY"), Some(&b""[..]));
        assert_eq!(parsed.header("absent"), None);
    }

    #[test]
    fn accepts_bare_newlines() {
        let parsed = head(b"HTTP/1.1 200 OK\nA: b\n\n").unwrap().unwrap();
        assert_eq!(parsed.headers, vec![("A".to_owned(), b"b".to_vec())]);
    }

    #[test]
    fn clean_eof_is_none_and_truncation_is_an_error() {
        assert!(head(b"").unwrap().is_none());
        assert_eq!(
            head(b"GET / HTTP/1.1\r\nA: b\r\n").unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
        assert_eq!(
            head(b"GET / HT").unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
        assert_eq!(
            head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidData
        );
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 2000));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head(&big).unwrap_err().kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn framing_rules() {
        let chunked = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            response_framing("GET", 200, &chunked).unwrap(),
            Framing::Chunked
        );
        assert_eq!(
            response_framing("HEAD", 200, &chunked).unwrap(),
            Framing::Empty
        );
        assert_eq!(
            response_framing("GET", 204, &chunked).unwrap(),
            Framing::Empty
        );
        let length = head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            response_framing("GET", 200, &length).unwrap(),
            Framing::Length(12)
        );
        let none = head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            response_framing("GET", 200, &none).unwrap(),
            Framing::UntilClose
        );
        assert_eq!(request_framing(&none).unwrap(), Framing::Empty);
        let bad = head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(request_framing(&bad).is_err());
    }

    #[test]
    fn reads_chunked_bodies_with_extensions_and_trailers() {
        let mut input = Cursor::new(
            b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT".to_vec(),
        );
        let body = read_body(&mut input, Framing::Chunked).unwrap();
        assert_eq!(body, b"abc0123456789");
        let mut rest = String::new();
        input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn chunked_round_trips() {
        for body in [&b""[..], b"x", &[0u8, 255, 10, 13]] {
            let encoded = chunked(body, &[]);
            assert_eq!(
                read_body(&mut Cursor::new(encoded), Framing::Chunked).unwrap(),
                body
            );
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for input in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcXY0\r\n\r\n",
            b"5\r\nab",
        ] {
            assert!(read_body(&mut Cursor::new(input.to_vec()), Framing::Chunked).is_err());
        }
    }

    #[test]
    fn length_and_until_close_bodies() {
        let mut input = Cursor::new(b"hello world".to_vec());
        assert_eq!(read_body(&mut input, Framing::Length(5)).unwrap(), b"hello");
        assert_eq!(
            read_body(&mut input, Framing::UntilClose).unwrap(),
            b" world"
        );
        assert!(read_body(&mut Cursor::new(b"ab".to_vec()), Framing::Length(5)).is_err());
    }
}
