//! Byte sizes written the way redis.conf writes them.

/// Parses a byte size the way redis.conf does: `100`, `10kb`, `64mb`, `2gb`, `1k`
/// (k/m/g are ×1000, kb/mb/gb ×1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a byte size (examples: 100000, 64mb, 2gb)"))?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(format!("unknown unit '{unit}' (use b, kb, mb or gb)")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("'{s}' is too large"))
}
