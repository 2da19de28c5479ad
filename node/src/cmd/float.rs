//! INCRBYFLOAT / HINCRBYFLOAT arithmetic with Redis' digits. Redis parses both numbers
//! with `strtold`, adds them as C `long double` (80-bit on x86-64) and prints the sum
//! with "%.17Lf" minus trailing zeros, so 0.1 + 0.2 reads "0.3" and 2^63 + 1.5 reads
//! "9223372036854775808". Rust has no long double and an f64 gives other digits, so the
//! arithmetic is in csrc/long_double.c; only text crosses the boundary.

use std::os::raw::{c_char, c_int, c_long};

extern "C" {
    fn ringcache_ld_check(s: *const c_char, len: usize) -> c_int;
    fn ringcache_ld_add(
        base: *const c_char,
        base_len: usize,
        incr: *const c_char,
        incr_len: usize,
        out: *mut c_char,
        out_len: usize,
    ) -> c_long;
}

/// Room for "%.17Lf" of the largest long double (4,951 characters), as Redis sizes it.
const MAX_CHARS: usize = 5 * 1024;

/// What a float argument is, by Redis' rules (`string2ld`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Finite,
    Infinite,
    NotFloat,
}

/// Why a sum could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddError {
    BaseNotFloat,
    IncrNotFloat,
    /// The sum is NaN or infinite.
    NotFinite,
}

pub fn parse(s: &[u8]) -> Parsed {
    // SAFETY: the pointer and length describe `s`, which the C side only reads.
    match unsafe { ringcache_ld_check(s.as_ptr().cast(), s.len()) } {
        1 => Parsed::Finite,
        -1 => Parsed::Infinite,
        _ => Parsed::NotFloat,
    }
}

/// `base + incr` as Redis writes it (a missing base counts as 0).
pub fn add(base: Option<&[u8]>, incr: &[u8]) -> Result<Vec<u8>, AddError> {
    let mut out = [0u8; MAX_CHARS];
    let (base_ptr, base_len) = base.map_or((std::ptr::null(), 0), |b| (b.as_ptr(), b.len()));
    // SAFETY: every pointer/length pair describes a live slice; the C side reads the
    // inputs and writes at most `out.len()` bytes into `out`.
    let n = unsafe {
        ringcache_ld_add(
            base_ptr.cast(),
            base_len,
            incr.as_ptr().cast(),
            incr.len(),
            out.as_mut_ptr().cast(),
            out.len(),
        )
    };
    match n {
        -1 => Err(AddError::BaseNotFloat),
        -2 => Err(AddError::IncrNotFloat),
        // -3, or -4 (no room), which a finite long double cannot reach.
        n if n < 0 => Err(AddError::NotFinite),
        n => Ok(out[..n as usize].to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(a: &str, b: &str) -> String {
        String::from_utf8(add(Some(a.as_bytes()), b.as_bytes()).expect("finite")).expect("ascii")
    }

    #[test]
    fn sums_have_redis_digits() {
        assert_eq!(sum("0.1", "0.2"), "0.3");
        assert_eq!(sum("10.5", "0.1"), "10.6");
        assert_eq!(sum("9223372036854775807", "1.5"), "9223372036854775808");
        assert_eq!(sum("3", "0"), "3");
        assert_eq!(sum("1e3", "-0.25"), "999.75");
        assert_eq!(sum("5.0e-1", "-0.5"), "0");
        assert_eq!(sum("-0.5", "0.25"), "-0.25");
        assert_eq!(sum("0x10", "1"), "17");
        assert_eq!(sum("1", "1e18"), "1000000000000000001");
        // 64 bits of mantissa: at 1e20 the step is 8, so adding 1 rounds back.
        assert_eq!(sum("1", "1e20"), "100000000000000000000");
        assert_eq!(
            String::from_utf8(add(None, b"2.5").expect("finite")).expect("ascii"),
            "2.5"
        );
    }

    #[test]
    fn rejects_what_redis_rejects() {
        assert_eq!(add(Some(b"abc"), b"1"), Err(AddError::BaseNotFloat));
        assert_eq!(add(Some(b"1"), b" 1"), Err(AddError::IncrNotFloat));
        assert_eq!(add(Some(b"1"), b""), Err(AddError::IncrNotFloat));
        assert_eq!(add(Some(b"1"), b"nan"), Err(AddError::IncrNotFloat));
        assert_eq!(add(Some(b"\0\x003.5"), b"1"), Err(AddError::BaseNotFloat));
        assert_eq!(add(Some(b"1"), b"1e99999"), Err(AddError::IncrNotFloat));
        assert_eq!(add(Some(b"1"), b"inf"), Err(AddError::NotFinite));
        assert_eq!(add(Some(b"inf"), b"-inf"), Err(AddError::NotFinite));
        assert_eq!(parse(b"inf"), Parsed::Infinite);
        assert_eq!(parse(b"1.5"), Parsed::Finite);
        assert_eq!(parse(b"1.5 "), Parsed::NotFloat);
        assert_eq!(parse(&[b'1'; 6000]), Parsed::NotFloat);
    }
}
