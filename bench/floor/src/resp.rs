//! Just enough RESP to answer redis-benchmark: split the input into multibulk requests
//! and append a canned reply for each, chosen by the command name alone. No store.

/// A GET reply as long as a hit on the benchmark's 64-byte values.
const GET_REPLY: &[u8] = b"$64\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
/// Longest header line (`*<count>` or `$<len>`) accepted.
const MAX_HEADER: usize = 32;
/// Largest argument accepted; the benchmark sends 64-byte values.
const MAX_ARG: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("expected '{expected}', got byte {got:#04x}")]
    UnexpectedByte { expected: char, got: u8 },
    #[error("bad length in header line")]
    BadLength,
}

/// Answers every complete request at the front of `input`, appending the replies to
/// `out`; returns how many bytes those requests took. An incomplete request at the end
/// is left for the next read.
pub fn serve(input: &[u8], out: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    let mut done = 0;
    while let Some((len, command)) = request(&input[done..])? {
        out.extend_from_slice(reply(command));
        done += len;
    }
    Ok(done)
}

fn reply(command: &[u8]) -> &'static [u8] {
    if command.eq_ignore_ascii_case(b"PING") {
        b"+PONG\r\n"
    } else if command.eq_ignore_ascii_case(b"GET") {
        GET_REPLY
    } else if command.eq_ignore_ascii_case(b"SET") {
        b"+OK\r\n"
    } else {
        // redis-benchmark asks `CONFIG GET save` and `CONFIG GET appendonly` first.
        b"*0\r\n"
    }
}

/// One request at the front of `buf`: its length and command name, or None if incomplete.
fn request(buf: &[u8]) -> Result<Option<(usize, &[u8])>, ProtocolError> {
    let Some((count, mut pos)) = header(buf, b'*')? else {
        return Ok(None);
    };
    let mut command: &[u8] = b"";
    for i in 0..count {
        let Some((len, start)) = header(&buf[pos..], b'$')? else {
            return Ok(None);
        };
        if len > MAX_ARG {
            return Err(ProtocolError::BadLength);
        }
        let start = pos + start;
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if buf[end] != b'\r' {
            return Err(ProtocolError::UnexpectedByte {
                expected: '\r',
                got: buf[end],
            });
        }
        if i == 0 {
            command = &buf[start..end];
        }
        pos = end + 2;
    }
    Ok(Some((pos, command)))
}

/// A `<kind><decimal>\r\n` line: the number and the offset after the line.
fn header(buf: &[u8], kind: u8) -> Result<Option<(usize, usize)>, ProtocolError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first != kind {
        return Err(ProtocolError::UnexpectedByte {
            expected: kind as char,
            got: first,
        });
    }
    let window = &buf[..buf.len().min(MAX_HEADER)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if buf.len() >= MAX_HEADER {
            Err(ProtocolError::BadLength)
        } else {
            Ok(None)
        };
    };
    if buf.len() < cr + 2 {
        return Ok(None);
    }
    let digits = &buf[1..cr];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || buf[cr + 1] != b'\n' {
        return Err(ProtocolError::BadLength);
    }
    let n = digits
        .iter()
        .try_fold(0usize, |n, &d| n.checked_mul(10)?.checked_add((d - b'0') as usize));
    n.map(|n| Some((n, cr + 2))).ok_or(ProtocolError::BadLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_each_complete_request_and_keeps_the_partial_one() {
        let input = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk";
        let mut out = Vec::new();
        let used = serve(input, &mut out).expect("valid input");
        assert_eq!(used, 14 + 20);
        assert_eq!(out, [&b"+PONG\r\n"[..], GET_REPLY].concat());
    }

    #[test]
    fn rejects_inline_and_bad_lengths() {
        let mut out = Vec::new();
        assert_eq!(
            serve(b"PING\r\n", &mut out),
            Err(ProtocolError::UnexpectedByte {
                expected: '*',
                got: b'P'
            })
        );
        assert_eq!(serve(b"*x\r\n", &mut out), Err(ProtocolError::BadLength));
        assert_eq!(
            serve(b"*1\r\n$99999999999999999999999\r\n", &mut out),
            Err(ProtocolError::BadLength)
        );
        assert_eq!(
            serve(b"*1\r\n$4\r\nPINGxx", &mut out),
            Err(ProtocolError::UnexpectedByte {
                expected: '\r',
                got: b'x'
            })
        );
        assert!(out.is_empty());
    }
}
