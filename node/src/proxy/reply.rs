//! RESP *reply* framing for the proxy: finds where one reply ends so upstream bytes can
//! be relayed unchanged. Covers RESP2 (`+ - : $ *`) and RESP3 (`_ , # ! = ( % ~ > |`).
//! Parsing is iterative (a count of frames still owed, no recursion), so deep nesting
//! cannot overflow the stack, and lengths are checked, so no input panics.

/// Largest bulk payload accepted from an upstream (Redis' `proto-max-bulk-len` max).
pub const MAX_BULK: u64 = 512 * 1024 * 1024;
/// Largest aggregate element count accepted in one header.
pub const MAX_AGGREGATE: u64 = 1 << 32;
/// Longest header line (type byte to CRLF) accepted; simple strings and errors
/// can be long, so this is generous but finite.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// A malformed reply stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("unknown reply type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("invalid length in reply header")]
    InvalidLength,
    #[error("reply line too long")]
    LineTooLong,
    #[error("missing CRLF after bulk payload")]
    MissingCrlf,
    #[error("invalid integer reply")]
    InvalidInteger,
}

/// Position of the `\r\n` ending the line that starts at `from`, if complete.
fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, ReplyError> {
    let hay = &buf[from.min(buf.len())..];
    let limit = hay.len().min(MAX_LINE);
    match hay[..limit].iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && hay[i - 1] == b'\r' => Ok(Some(from + i - 1)),
        Some(_) => Err(ReplyError::InvalidLength),
        None if hay.len() >= MAX_LINE => Err(ReplyError::LineTooLong),
        None => Ok(None),
    }
}

/// Parses a decimal length (`-1` allowed when `allow_null`).
fn parse_len(digits: &[u8], allow_null: bool) -> Result<Option<u64>, ReplyError> {
    if allow_null && digits == b"-1" {
        return Ok(None);
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ReplyError::InvalidLength);
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(ReplyError::InvalidLength)?;
    }
    Ok(Some(n))
}

/// Where an incomplete reply scan stopped: the next frame header starts at `pos` and
/// `owed` frames (0 = a fresh reply) are still to be read. Lets a reader resume a
/// large reply without rescanning what it already checked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pos: usize,
    owed: u64,
}

/// Length of the complete reply at the front of `buf`, or `None` when more bytes are
/// needed. An attribute (`|`) is returned together with the reply it annotates.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ReplyError> {
    resume(buf, &mut Progress::default())
}

/// Like [`frame_len`], continuing from `progress` (which must come from earlier calls
/// on a prefix of the same `buf`). On `Ok(Some(_))` the progress is reset.
pub fn resume(buf: &[u8], progress: &mut Progress) -> Result<Option<usize>, ReplyError> {
    let mut pos = progress.pos;
    // Frames still to read before the reply is complete.
    let mut owed: u64 = progress.owed.max(1);
    while owed > 0 {
        *progress = Progress { pos, owed };
        let Some(&ty) = buf.get(pos) else { return Ok(None) };
        // The line ends after the type byte (a CR as type byte must not end it).
        let Some(end) = line_end(buf, pos + 1)? else {
            return Ok(None);
        };
        let body = &buf[pos + 1..end];
        let next = end + 2;
        owed -= 1;
        match ty {
            b'+' | b'-' | b',' | b'(' | b'#' | b'_' => pos = next,
            b':' => {
                let digits = body.strip_prefix(b"-").unwrap_or(body);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(ReplyError::InvalidInteger);
                }
                pos = next;
            }
            b'$' | b'!' | b'=' => match parse_len(body, ty == b'$')? {
                None => pos = next,
                Some(n) if n > MAX_BULK => return Err(ReplyError::InvalidLength),
                Some(n) => {
                    let payload_end = next + n as usize;
                    if buf.len() < payload_end + 2 {
                        return Ok(None);
                    }
                    if &buf[payload_end..payload_end + 2] != b"\r\n" {
                        return Err(ReplyError::MissingCrlf);
                    }
                    pos = payload_end + 2;
                }
            },
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = match parse_len(body, ty == b'*')? {
                    None => 0,
                    Some(n) if n > MAX_AGGREGATE => return Err(ReplyError::InvalidLength),
                    Some(n) => n,
                };
                let n = if matches!(ty, b'%' | b'|') { n * 2 } else { n };
                // An attribute precedes the reply it annotates, which is still owed.
                let extra = u64::from(ty == b'|');
                owed = owed.checked_add(n + extra).ok_or(ReplyError::InvalidLength)?;
                pos = next;
            }
            other => return Err(ReplyError::UnknownType(other)),
        }
    }
    *progress = Progress::default();
    Ok(Some(pos))
}

/// The elements of a complete array reply (`*N`), as slices of `frame`; `None` when
/// `frame` is not a (non-null) array.
pub fn array_elements(frame: &[u8]) -> Option<Vec<&[u8]>> {
    if frame.first() != Some(&b'*') {
        return None;
    }
    let end = line_end(frame, 0).ok()??;
    let n = parse_len(&frame[1..end], true).ok()??;
    let mut pos = end + 2;
    let mut out = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let len = frame_len(&frame[pos..]).ok()??;
        out.push(&frame[pos..pos + len]);
        pos += len;
    }
    (pos == frame.len()).then_some(out)
}

/// The value of an integer reply (`:n`), if `frame` is one.
pub fn integer(frame: &[u8]) -> Option<i64> {
    let body = frame.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(body).ok()?.parse().ok()
}

/// Whether `frame` is an error reply (`-...` or RESP3 blob error `!`).
pub fn is_error(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(b'-') | Some(b'!'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_crlf_is_an_error_not_a_panic() {
        assert!(super::frame_len(b"\r\n").is_err());
        assert!(super::frame_len(b"\r\r\n").is_err());
        assert_eq!(super::frame_len(b"+OK\r\n"), Ok(Some(5)));
    }

    use super::*;
    use proptest::prelude::*;

    /// A reply value, to generate valid encodings.
    #[derive(Debug, Clone)]
    enum V {
        Simple(String),
        Error(String),
        Int(i64),
        Bulk(Vec<u8>),
        NullBulk,
        NullArray,
        Null,
        Double(String),
        Bool(bool),
        Big(String),
        BlobErr(Vec<u8>),
        Verbatim(Vec<u8>),
        Array(Vec<V>),
        Set(Vec<V>),
        Push(Vec<V>),
        Map(Vec<(V, V)>),
        Attr(Vec<(V, V)>, Box<V>),
    }

    fn enc(v: &V, out: &mut Vec<u8>) {
        fn agg(out: &mut Vec<u8>, t: char, items: &[V]) {
            out.extend(format!("{t}{}\r\n", items.len()).bytes());
            for i in items {
                enc(i, out);
            }
        }
        fn pairs(out: &mut Vec<u8>, t: char, items: &[(V, V)]) {
            out.extend(format!("{t}{}\r\n", items.len()).bytes());
            for (k, v) in items {
                enc(k, out);
                enc(v, out);
            }
        }
        match v {
            V::Simple(s) => out.extend(format!("+{s}\r\n").bytes()),
            V::Error(s) => out.extend(format!("-{s}\r\n").bytes()),
            V::Int(n) => out.extend(format!(":{n}\r\n").bytes()),
            V::Bulk(b) => {
                out.extend(format!("${}\r\n", b.len()).bytes());
                out.extend(b);
                out.extend(b"\r\n");
            }
            V::NullBulk => out.extend(b"$-1\r\n"),
            V::NullArray => out.extend(b"*-1\r\n"),
            V::Null => out.extend(b"_\r\n"),
            V::Double(s) => out.extend(format!(",{s}\r\n").bytes()),
            V::Bool(b) => out.extend(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            V::Big(s) => out.extend(format!("({s}\r\n").bytes()),
            V::BlobErr(b) => {
                out.extend(format!("!{}\r\n", b.len()).bytes());
                out.extend(b);
                out.extend(b"\r\n");
            }
            V::Verbatim(b) => {
                out.extend(format!("={}\r\ntxt:", b.len() + 4).bytes());
                out.extend(b);
                out.extend(b"\r\n");
            }
            V::Array(items) => agg(out, '*', items),
            V::Set(items) => agg(out, '~', items),
            V::Push(items) => agg(out, '>', items),
            V::Map(items) => pairs(out, '%', items),
            V::Attr(items, inner) => {
                pairs(out, '|', items);
                enc(inner, out);
            }
        }
    }

    fn line() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 :.]{0,20}"
    }

    fn value() -> impl Strategy<Value = V> {
        let leaf = prop_oneof![
            line().prop_map(V::Simple),
            line().prop_map(V::Error),
            any::<i64>().prop_map(V::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(V::Bulk),
            Just(V::NullBulk),
            Just(V::NullArray),
            Just(V::Null),
            "-?[0-9]{1,5}\\.[0-9]{1,3}".prop_map(V::Double),
            any::<bool>().prop_map(V::Bool),
            "[0-9]{1,30}".prop_map(V::Big),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(V::BlobErr),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(V::Verbatim),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(V::Array),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(V::Set),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(V::Push),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(V::Map),
                (proptest::collection::vec((inner.clone(), inner.clone()), 0..3), inner)
                    .prop_map(|(a, v)| V::Attr(a, Box::new(v))),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_valid_reply_is_framed_exactly_and_no_prefix_is_complete(vals in proptest::collection::vec(value(), 1..4)) {
            let mut stream = Vec::new();
            let mut lens = Vec::new();
            for v in &vals {
                let mut one = Vec::new();
                enc(v, &mut one);
                lens.push(one.len());
                stream.extend(one);
            }
            let first = lens[0];
            for cut in 0..first {
                prop_assert_eq!(frame_len(&stream[..cut]), Ok(None), "prefix {} of {}", cut, first);
            }
            let mut progress = Progress::default();
            for cut in (0..first).step_by(3) {
                prop_assert_eq!(resume(&stream[..cut], &mut progress), Ok(None));
            }
            prop_assert_eq!(resume(&stream, &mut progress), Ok(Some(first)));
            let mut pos = 0;
            for len in lens {
                prop_assert_eq!(frame_len(&stream[pos..]), Ok(Some(len)));
                pos += len;
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some(n)) = frame_len(&bytes) {
                prop_assert!(n <= bytes.len());
            }
            let _ = array_elements(&bytes);
            let _ = integer(&bytes);
        }

        #[test]
        fn array_elements_returns_each_encoded_element(items in proptest::collection::vec(value(), 0..6)) {
            let mut frame = Vec::new();
            enc(&V::Array(items.clone()), &mut frame);
            let parts = array_elements(&frame).expect("an array");
            prop_assert_eq!(parts.len(), items.len());
            for (p, v) in parts.iter().zip(&items) {
                let mut one = Vec::new();
                enc(v, &mut one);
                prop_assert_eq!(*p, &one[..]);
            }
        }
    }

    #[test]
    fn examples() {
        assert_eq!(frame_len(b"+OK\r\n"), Ok(Some(5)));
        assert_eq!(frame_len(b"$-1\r\n"), Ok(Some(5)));
        assert_eq!(frame_len(b"*2\r\n$1\r\na\r\n:1\r\n+x"), Ok(Some(15)));
        assert_eq!(frame_len(b"*2\r\n$1\r\na\r\n"), Ok(None));
        assert_eq!(frame_len(b"$3\r\nabcX\n"), Err(ReplyError::MissingCrlf));
        assert_eq!(frame_len(b"?\r\n"), Err(ReplyError::UnknownType(b'?')));
        assert_eq!(frame_len(b"*-2\r\n"), Err(ReplyError::InvalidLength));
        assert_eq!(frame_len(b":12a\r\n"), Err(ReplyError::InvalidInteger));
        assert_eq!(frame_len(b"|1\r\n+k\r\n+v\r\n:5\r\n"), Ok(Some(16)));
        assert_eq!(integer(b":-42\r\n"), Some(-42));
        assert_eq!(integer(b"+42\r\n"), None);
        assert!(array_elements(b"*-1\r\n").is_none());
        assert!(is_error(b"-ERR x\r\n"));
    }
}
