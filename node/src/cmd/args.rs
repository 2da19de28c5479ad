//! Argument parsing shared by command families, with Redis' error semantics.

use std::time::Duration;

use bytes::Bytes;

use super::CmdError;

/// Parses a signed 64-bit integer exactly as Redis' `string2ll`: no spaces, no '+',
/// no leading zeros (except "0"), no overflow.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(digit)?
        } else {
            v.checked_add(digit)?
        };
    }
    if neg && v == 0 {
        return None;
    }
    Some(v)
}

/// An integer argument, or `ERR value is not an integer or out of range`.
pub fn int(b: &Bytes) -> Result<i64, CmdError> {
    parse_i64(b).ok_or(CmdError::NotInteger)
}

/// Parses a float like Redis' `string2ld`: no spaces, finite or ±inf, not NaN.
pub fn parse_f64(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return None;
    }
    let v: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => s.parse().ok()?,
    };
    if v.is_nan() {
        return None;
    }
    Some(v)
}

/// A float argument, or `ERR value is not a valid float`.
pub fn float(b: &Bytes) -> Result<f64, CmdError> {
    parse_f64(b).ok_or(CmdError::NotFloat)
}

/// The timeout of a blocking command (BLPOP, BZPOPMIN, …), in seconds as Redis reads
/// it (a float, rounded up to whole milliseconds); `None` waits forever (0). Redis
/// converts the milliseconds to a C `long long`: values beyond its range (and
/// infinities) come out negative there, so they are "negative" here too.
pub fn blocking_timeout(b: &[u8]) -> Result<Option<Duration>, CmdError> {
    let secs = parse_f64(b).ok_or_else(|| CmdError::Other("timeout is not a float or out of range".into()))?;
    let ms = (secs * 1000.0).ceil();
    if !(0.0..9.223_372_036_854_775e18).contains(&ms) {
        // `-0.0` (from a tiny negative timeout) is in range: it waits forever, as in Redis.
        return Err(CmdError::Other("timeout is negative".into()));
    }
    Ok((ms > 0.0).then(|| Duration::from_millis(ms as u64)))
}

/// Redis 7's errors for a container command (CLIENT, CONFIG, COMMAND, CLUSTER): a
/// subcommand it does not know, or a known one given the wrong number of arguments.
/// `subcommands` holds `(name, arity)` as COMMAND INFO gives arities: `n` exactly, `-n`
/// at least `n` (counting the container and the subcommand).
pub fn check_subcommand(container: &str, args: &[Bytes], subcommands: &[(&str, i32)]) -> Result<(), CmdError> {
    let sub = &args[1];
    let Some(&(name, arity)) = subcommands.iter().find(|(name, _)| is(sub, name)) else {
        let shown: String = text(sub).chars().take(128).collect();
        return Err(unknown_subcommand(container, &shown));
    };
    let n = args.len() as i32;
    if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
        return Err(CmdError::Other(format!(
            "wrong number of arguments for '{container}|{}' command",
            name.to_ascii_lowercase()
        )));
    }
    Ok(())
}

/// `ERR unknown subcommand 'x'. Try CONTAINER HELP.`
pub fn unknown_subcommand(container: &str, sub: &str) -> CmdError {
    CmdError::Other(format!(
        "unknown subcommand '{sub}'. Try {} HELP.",
        container.to_ascii_uppercase()
    ))
}

/// Case-insensitive comparison of an argument with an ASCII keyword.
pub fn is(b: &[u8], word: &str) -> bool {
    b.eq_ignore_ascii_case(word.as_bytes())
}

/// The argument as UTF-8 text (lossy), for names and error messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_redis_rules() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"9223372036854775808"[..],
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"",
            b"-",
            b"-0",
            b"1.0",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_follow_redis_rules() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"5e3"), Some(5000.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"abc"), None);
    }

    #[test]
    fn timeouts_follow_redis() {
        assert_eq!(blocking_timeout(b"0"), Ok(None));
        assert_eq!(blocking_timeout(b"-0.0001"), Ok(None));
        assert_eq!(blocking_timeout(b"0.0001"), Ok(Some(Duration::from_millis(1))));
        assert_eq!(blocking_timeout(b"1.5"), Ok(Some(Duration::from_millis(1500))));
        let negative = Err(CmdError::Other("timeout is negative".into()));
        for bad in [&b"-1"[..], b"inf", b"-inf", b"1e30"] {
            assert_eq!(blocking_timeout(bad), negative, "{bad:?}");
        }
        assert_eq!(
            blocking_timeout(b"x"),
            Err(CmdError::Other("timeout is not a float or out of range".into()))
        );
    }
}
