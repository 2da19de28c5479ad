//! Reply encoding into a connection's write buffer. The same calls produce RESP2 or
//! RESP3 depending on the protocol the client negotiated with `HELLO`.

use bytes::{BufMut, BytesMut};

/// A reply writer: the connection's output buffer plus the negotiated protocol.
#[derive(Debug, Default)]
pub struct Out {
    pub buf: BytesMut,
    pub resp3: bool,
}

impl Out {
    pub fn new() -> Self {
        Out {
            buf: BytesMut::with_capacity(16 * 1024),
            resp3: false,
        }
    }

    fn int_line(&mut self, prefix: u8, n: i64) {
        let mut tmp = itoa_buf();
        let s = fmt_i64(n, &mut tmp);
        self.buf.reserve(s.len() + 3);
        self.buf.put_u8(prefix);
        self.buf.put_slice(s);
        self.buf.put_slice(b"\r\n");
    }

    /// `+OK`
    pub fn ok(&mut self) {
        self.buf.put_slice(b"+OK\r\n");
    }

    /// A simple string (`+...`); must not contain CR or LF.
    pub fn simple(&mut self, s: &str) {
        self.buf.reserve(s.len() + 3);
        self.buf.put_u8(b'+');
        self.buf.put_slice(s.as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// An error reply; `msg` starts with the error code (`ERR ...`, `WRONGTYPE ...`).
    pub fn error(&mut self, msg: &str) {
        self.buf.reserve(msg.len() + 3);
        self.buf.put_u8(b'-');
        for &b in msg.as_bytes() {
            // CR/LF would break framing; Redis replaces them with spaces too.
            self.buf.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.buf.put_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.int_line(b':', n);
    }

    /// A boolean: `#t`/`#f` in RESP3, the integer 1/0 in RESP2.
    pub fn boolean(&mut self, v: bool) {
        if self.resp3 {
            self.buf.put_slice(if v { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(i64::from(v));
        }
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.int_line(b'$', data.len() as i64);
        self.buf.reserve(data.len() + 2);
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }

    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        if self.resp3 {
            self.buf.put_slice(b"_\r\n");
        } else {
            self.buf.put_slice(b"$-1\r\n");
        }
    }

    /// A missing array (`*-1` in RESP2, `_` in RESP3).
    pub fn null_array(&mut self) {
        if self.resp3 {
            self.buf.put_slice(b"_\r\n");
        } else {
            self.buf.put_slice(b"*-1\r\n");
        }
    }

    pub fn array(&mut self, len: usize) {
        self.int_line(b'*', len as i64);
    }

    /// A push of `len` elements (RESP3 only; out-of-band messages like invalidations).
    pub fn push(&mut self, len: usize) {
        self.int_line(b'>', len as i64);
    }

    /// A map of `len` pairs: `%` in RESP3, a flat array of 2×len in RESP2.
    pub fn map(&mut self, len: usize) {
        if self.resp3 {
            self.int_line(b'%', len as i64);
        } else {
            self.int_line(b'*', 2 * len as i64);
        }
    }

    /// A set: `~` in RESP3, an array in RESP2.
    pub fn set(&mut self, len: usize) {
        if self.resp3 {
            self.int_line(b'~', len as i64);
        } else {
            self.int_line(b'*', len as i64);
        }
    }

    /// A double: `,` in RESP3, a bulk string in RESP2.
    pub fn double(&mut self, v: f64) {
        let s = format_double(v);
        if self.resp3 {
            self.buf.put_u8(b',');
            self.buf.put_slice(s.as_bytes());
            self.buf.put_slice(b"\r\n");
        } else {
            self.bulk(s.as_bytes());
        }
    }

    /// Verbatim text (`=` in RESP3, bulk in RESP2), used by INFO and CLIENT INFO.
    pub fn verbatim(&mut self, text: &str) {
        if self.resp3 {
            self.int_line(b'=', text.len() as i64 + 4);
            self.buf.put_slice(b"txt:");
            self.buf.put_slice(text.as_bytes());
            self.buf.put_slice(b"\r\n");
        } else {
            self.bulk(text.as_bytes());
        }
    }

    pub fn bulk_str(&mut self, s: &str) {
        self.bulk(s.as_bytes());
    }
}

/// Formats a double the way Redis replies to INCRBYFLOAT / HINCRBYFLOAT: shortest
/// round-trip form, integers without a decimal point, `inf`/`-inf`.
pub fn format_double(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.is_nan() {
        return "nan".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    // Like Redis' "%.17Lg" on a long double: in practice 15 significant digits of an
    // f64 give the same text for the usual sums (0.1 + 0.2 prints "0.3").
    let exp = v.abs().log10().floor() as i32;
    if (-5..17).contains(&exp) {
        let decimals = (14 - exp).clamp(0, 20) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            return s.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        return s;
    }
    let s = format!("{v:.14e}");
    let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    let e: i32 = e.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

type ItoaBuf = [u8; 20];

fn itoa_buf() -> ItoaBuf {
    [0u8; 20]
}

fn fmt_i64(n: i64, buf: &mut ItoaBuf) -> &[u8] {
    let mut i = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        // i64::MIN has 19 digits, so one byte is always left for the sign.
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_and_resp3_shapes() {
        let mut o = Out::new();
        o.null();
        o.map(1);
        o.int(-42);
        o.int(i64::MIN);
        assert_eq!(&o.buf[..], b"$-1\r\n*2\r\n:-42\r\n:-9223372036854775808\r\n");
        let mut o = Out {
            resp3: true,
            ..Out::new()
        };
        o.null();
        o.map(1);
        o.double(1.5);
        assert_eq!(&o.buf[..], b"_\r\n%1\r\n,1.5\r\n");
    }

    #[test]
    fn doubles_format_like_redis() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(10.5), "10.5");
        assert_eq!(format_double(0.1 + 0.2), "0.3");
        assert_eq!(format_double(10.5 + 0.1), "10.6");
        assert_eq!(format_double(-2.5), "-2.5");
        assert_eq!(format_double(5200.0), "5200");
        assert_eq!(format_double(1.5e20), "1.5e+20");
        assert_eq!(format_double(f64::INFINITY), "inf");
    }
}
