//! Request parsing. Clients send either a RESP multibulk (`*N\r\n$len\r\n...`) or an
//! inline command (`GET foo\r\n`). Parsing never panics; malformed input yields a
//! [`ProtocolError`] whose text is sent as `-ERR Protocol error: ...` before the
//! connection is closed.

use bytes::{Buf, Bytes, BytesMut};

/// Limits on what one request may contain (Redis: `proto-max-bulk-len`,
/// multibulk length, inline size).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bulk_len: usize,
    pub max_multibulk_len: usize,
    pub max_inline_len: usize,
    /// The client has not authenticated on a server with a password: Redis then
    /// accepts at most 10 arguments of at most 16 KiB, so a stranger cannot make the
    /// server buffer a large request.
    pub unauthenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            // Redis 7 accepts any count up to INT_MAX; the query buffer limit bounds
            // what a request can really hold.
            max_multibulk_len: i32::MAX as usize,
            max_inline_len: 64 * 1024,
            unauthenticated: false,
        }
    }
}

/// Most arguments, and longest argument, a request may have before AUTH (Redis' values).
const UNAUTHENTICATED_MAX_MULTIBULK: i64 = 10;
const UNAUTHENTICATED_MAX_BULK: i64 = 16 * 1024;

impl Limits {
    /// These limits for a client that has not authenticated yet.
    pub fn unauthenticated(&self) -> Limits {
        Limits {
            unauthenticated: true,
            ..*self
        }
    }
}

/// A protocol violation; `Display` is the text after `ERR Protocol error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("invalid bulk length")]
    InvalidBulkLength,
    #[error("unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("too big bulk count string")]
    TooBigBulkCount,
    #[error("too big inline request")]
    TooBigInline,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("missing CRLF after bulk string")]
    MissingCrlf,
}

/// One parsed request: the command name and its arguments, as shared slices of the
/// connection's read buffer. An empty vector is never returned.
pub type Request = Vec<Bytes>;

/// Parses requests from the front of a connection's read buffer, remembering how far
/// it got into an incomplete multibulk request: when more bytes arrive it resumes at
/// the next argument instead of scanning the request again from its start, so a
/// large request sent in small pieces costs linear time (Redis keeps the same state).
/// The buffer must only grow at its end while a request is pending.
#[derive(Debug, Default)]
pub struct RequestParser {
    partial: Option<Partial>,
}

/// An incomplete multibulk request at the front of the buffer.
#[derive(Debug)]
struct Partial {
    /// Arguments the request announced.
    count: usize,
    /// Offset of the next argument's `$` line.
    pos: usize,
    /// (start, length) of the arguments found so far.
    spans: Vec<(usize, usize)>,
}

impl RequestParser {
    /// Parses one request from the front of `buf`, consuming it.
    /// `Ok(None)`: more bytes are needed (nothing consumed). Empty inline lines are
    /// consumed and skipped.
    pub fn parse(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, ProtocolError> {
        loop {
            if buf.is_empty() {
                return Ok(None);
            }
            if self.partial.is_some() || buf[0] == b'*' {
                match parse_multibulk(buf, limits, &mut self.partial)? {
                    Some(r) if r.is_empty() => continue,
                    other => return Ok(other),
                }
            }
            match parse_inline(buf, limits)? {
                Inline::Incomplete => return Ok(None),
                Inline::Empty => continue,
                Inline::Request(r) => return Ok(Some(r)),
            }
        }
    }
}

/// Parses one request from the front of `buf` without remembering progress (for
/// buffers parsed once, or in tests); a connection uses a [`RequestParser`].
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    RequestParser::default().parse(buf, limits)
}

/// Finds `\r\n` starting at `from`; returns the index of `\r`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        match memchr_cr(&buf[i..buf.len() - 1]) {
            Some(off) => {
                let at = i + off;
                if buf[at + 1] == b'\n' {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

fn memchr_cr(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\r')
}

/// Parses a decimal integer as Redis does for lengths (optional '-', digits only).
fn parse_len(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Some(if neg { -v } else { v })
}

fn parse_multibulk(
    buf: &mut BytesMut,
    limits: &Limits,
    partial: &mut Option<Partial>,
) -> Result<Option<Request>, ProtocolError> {
    let Partial {
        count,
        mut pos,
        mut spans,
    } = match partial.take() {
        Some(p) => p,
        None => {
            let Some(line_end) = find_crlf(buf, 1) else {
                if buf.len() > limits.max_inline_len {
                    return Err(ProtocolError::TooBigMultibulkCount);
                }
                return Ok(None);
            };
            let count = parse_len(&buf[1..line_end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
            if count > limits.max_multibulk_len as i64 {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if limits.unauthenticated && count > UNAUTHENTICATED_MAX_MULTIBULK {
                return Err(ProtocolError::UnauthenticatedMultibulkLength);
            }
            let pos = line_end + 2;
            if count <= 0 {
                // `*0` and `*-1` are accepted and ignored, as Redis does.
                buf.advance(pos);
                return Ok(Some(Vec::new()));
            }
            let count = count as usize;
            Partial {
                count,
                pos,
                spans: Vec::with_capacity(count.min(64)),
            }
        }
    };
    // Validate and locate every argument without copying; stop (remembering where)
    // at the first one not fully in the buffer.
    while spans.len() < count {
        if pos >= buf.len() {
            *partial = Some(Partial { count, pos, spans });
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError::ExpectedBulk(char::from(buf[pos])));
        }
        let Some(end) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > limits.max_inline_len {
                return Err(ProtocolError::TooBigBulkCount);
            }
            *partial = Some(Partial { count, pos, spans });
            return Ok(None);
        };
        let len = parse_len(&buf[pos + 1..end]).ok_or(ProtocolError::InvalidBulkLength)?;
        if len < 0 || len as u64 > limits.max_bulk_len as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        if limits.unauthenticated && len > UNAUTHENTICATED_MAX_BULK {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        let start = end + 2;
        let len = len as usize;
        if buf.len() < start + len + 2 {
            // Reserve room for the whole bulk so large values are read in few syscalls.
            let need = start + len + 2 - buf.len();
            buf.reserve(need);
            *partial = Some(Partial { count, pos, spans });
            return Ok(None);
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        spans.push((start, len));
        pos = start + len + 2;
    }
    let frame = buf.split_to(pos).freeze();
    Ok(Some(spans.into_iter().map(|(s, l)| frame.slice(s..s + l)).collect()))
}

enum Inline {
    Incomplete,
    Empty,
    Request(Request),
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Inline, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(Inline::Incomplete);
    };
    if nl > limits.max_inline_len {
        return Err(ProtocolError::TooBigInline);
    }
    let line = buf.split_to(nl + 1);
    let mut content = &line[..nl];
    if let Some(stripped) = content.strip_suffix(b"\r") {
        content = stripped;
    }
    let args = split_args(content)?;
    if args.is_empty() {
        return Ok(Inline::Empty);
    }
    Ok(Inline::Request(args.into_iter().map(Bytes::from).collect()))
}

/// Splits an inline command line like Redis' `sdssplitargs`: whitespace separated,
/// with "double quotes" (supporting \n \r \t \b \a \\ \" \xHH) and 'single quotes'.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Ok(args);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 3 < n && line[i + 1] == b'x' {
                    if let (Some(h), Some(l)) = (hex(line[i + 2]), hex(line[i + 3])) {
                        cur.push(h * 16 + l);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < n {
                    cur.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    // The closing quote must be followed by a space or the end.
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                cur.push(c);
                i += 1;
            } else if in_sq {
                if i >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    cur.push(b'\'');
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                cur.push(c);
                i += 1;
            } else {
                if i >= n || line[i].is_ascii_whitespace() {
                    break;
                }
                match line[i] {
                    b'"' if cur.is_empty() => in_dq = true,
                    b'\'' if cur.is_empty() => in_sq = true,
                    c => cur.push(c),
                }
                i += 1;
            }
        }
        args.push(cur);
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Request>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(r) = parse_request(&mut buf, &Limits::default())? {
            out.push(r);
        }
        Ok(out)
    }

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn multibulk_and_pipelining() {
        let reqs = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").expect("valid");
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0], vec![Bytes::from("GET"), Bytes::from("k")]);
        assert_eq!(reqs[1], vec![Bytes::from("PING")]);
    }

    #[test]
    fn inline_with_quotes() {
        let reqs = parse_all(b"SET k \"a b\\x41\\n\"\r\nGET 'it\\'s'\n\r\n").expect("valid");
        assert_eq!(
            reqs[0],
            vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("a bA\n")]
        );
        assert_eq!(reqs[1], vec![Bytes::from("GET"), Bytes::from("it's")]);
        assert_eq!(reqs.len(), 2);
    }

    #[test]
    fn errors_match_redis_texts() {
        assert_eq!(parse_all(b"*x\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(parse_all(b"*1\r\n+OK\r\n"), Err(ProtocolError::ExpectedBulk('+')));
        assert_eq!(parse_all(b"*1\r\n$-5\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(parse_all(b"SET \"a\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(parse_all(b"*1\r\n$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
        assert_eq!(ProtocolError::ExpectedBulk('+').to_string(), "expected '$', got '+'");
    }

    #[test]
    fn unauthenticated_clients_get_redis_small_limits() {
        let limits = Limits::default().unauthenticated();
        let ten = format!("*10\r\n{}", "$1\r\na\r\n".repeat(10));
        assert_eq!(
            parse_request(&mut BytesMut::from(ten.as_bytes()), &limits).map(|r| r.map(|a| a.len())),
            Ok(Some(10))
        );
        assert_eq!(
            parse_request(&mut BytesMut::from(&b"*11\r\n"[..]), &limits),
            Err(ProtocolError::UnauthenticatedMultibulkLength)
        );
        assert_eq!(
            parse_request(&mut BytesMut::from(&b"*1\r\n$16385\r\n"[..]), &limits),
            Err(ProtocolError::UnauthenticatedBulkLength)
        );
        // Beyond the real limits the usual errors come first, as in Redis.
        assert_eq!(
            parse_request(&mut BytesMut::from(&b"*1\r\n$600000000\r\n"[..]), &limits),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parse_request(&mut BytesMut::from(&b"*3000000000\r\n"[..]), &limits),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        let ok = format!("*1\r\n$16384\r\n{}\r\n", "x".repeat(16384));
        assert!(matches!(
            parse_request(&mut BytesMut::from(ok.as_bytes()), &limits),
            Ok(Some(_))
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_bulk_len: 4,
            max_multibulk_len: 2,
            max_inline_len: 16,
            unauthenticated: false,
        };
        let mut buf = BytesMut::from(&b"*1\r\n$5\r\n"[..]);
        assert_eq!(parse_request(&mut buf, &limits), Err(ProtocolError::InvalidBulkLength));
        let mut buf = BytesMut::from(&b"*3\r\n"[..]);
        assert_eq!(
            parse_request(&mut buf, &limits),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        let mut buf = BytesMut::from(&[b'a'; 17][..]);
        assert_eq!(parse_request(&mut buf, &limits), Err(ProtocolError::TooBigInline));
    }

    proptest! {
        /// Pipelined requests fed in pieces of any sizes to one parser come out whole,
        /// in order, each exactly once.
        #[test]
        fn incremental_parsing_in_any_pieces(
            requests in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8), 1..6),
            pieces in proptest::collection::vec(1usize..50, 1..200),
        ) {
            let wire: Vec<u8> = requests.iter().flat_map(|r| encode(r)).collect();
            let limits = Limits::default();
            let mut parser = RequestParser::default();
            let mut buf = BytesMut::new();
            let mut got: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut fed = 0;
            let mut sizes = pieces.iter().cycle();
            while fed < wire.len() {
                let n = (*sizes.next().expect("cycle")).min(wire.len() - fed);
                buf.extend_from_slice(&wire[fed..fed + n]);
                fed += n;
                while let Some(req) = parser.parse(&mut buf, &limits).expect("valid input") {
                    got.push(req.iter().map(|b| b.to_vec()).collect());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, requests);
        }

        #[test]
        fn roundtrip_any_split(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8), cut in 0usize..400) {
            let wire = encode(&args);
            let cut = cut.min(wire.len());
            let mut buf = BytesMut::from(&wire[..cut]);
            let limits = Limits::default();
            let first = parse_request(&mut buf, &limits).expect("prefix of valid input is not an error");
            if cut < wire.len() {
                prop_assert!(first.is_none());
                buf.extend_from_slice(&wire[cut..]);
                let req = parse_request(&mut buf, &limits).expect("valid").expect("complete");
                prop_assert_eq!(req.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), args);
            } else {
                let req = first.expect("complete");
                prop_assert_eq!(req.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), args);
            }
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&data[..]);
            let limits = Limits::default();
            for _ in 0..64 {
                match parse_request(&mut buf, &limits) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
