//! Docker's number and time wording, as the docker CLI prints and parses them (go-units):
//! memory sizes in (`64m` → bytes), CPU counts (`0.5` → NanoCpus), human durations and sizes out.
use std::time::Duration;

/// Parses a memory size the way docker's `RAMInBytes` does: a decimal number, an optional unit
/// `b k m g t p` (case-insensitive, binary multiples), an optional `i` and `b` after it.
pub fn ram_in_bytes(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid size: '{s}'");
    let t = s.trim();
    let digits_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, rest) = t.split_at(digits_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(invalid());
    }
    let value: f64 = num.parse().map_err(|_| invalid())?;
    let mut suffix = rest.trim_start_matches(' ').to_ascii_lowercase();
    let multiplier: f64 = match suffix.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            suffix.remove(0);
            1024f64.powi("kmgtp".find(c).map_or(0, |i| i as i32 + 1))
        }
        _ => 1.0,
    };
    let suffix = suffix.strip_prefix('i').unwrap_or(&suffix);
    if !(suffix.is_empty() || suffix == "b") {
        return Err(invalid());
    }
    Ok((value * multiplier) as i64)
}

/// `--cpus 1.5` → 1_500_000_000 NanoCpus; more than nine decimals is refused as docker does.
pub fn nano_cpus(s: &str) -> Result<i64, String> {
    let invalid = || format!("failed to parse {s} as a rational number");
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty() && frac.is_empty() || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    if frac.len() > 9 {
        return Err("value is too precise".to_string());
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| invalid())? };
    whole.checked_mul(1_000_000_000).and_then(|w| w.checked_add(frac)).ok_or_else(invalid)
}

/// go-units `HumanDuration`: "Less than a second", "5 seconds", "About a minute", "2 hours", …
/// (the engine's STATUS texts use the same function).
pub fn human_duration(d: Duration) -> String {
    engine_api::human_duration(d.as_secs() as i64)
}

/// "5 seconds ago" for a Unix timestamp, relative to `now` (seconds).
pub fn ago(created: i64, now: i64) -> String {
    let d = Duration::from_secs(now.saturating_sub(created).max(0) as u64);
    format!("{} ago", human_duration(d))
}

/// go-units `HumanSizeWithPrecision`: decimal units (kB, MB, …) with `precision` significant
/// digits, as Go's `%.*g` prints them ("4.26MB", "100B", "1.2GB").
pub fn human_size(size: f64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let (mut size, mut i) = (size, 0);
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", significant(size, precision), UNITS[i])
}

/// go-units `BytesSize`: binary units (KiB, MiB, …) with four significant digits ("1.944GiB").
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let (mut size, mut i) = (size, 0);
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", significant(size, 4), UNITS[i])
}

/// `%.{p}g` for the range human_size produces (0 ≤ x < 1000, so never exponent form).
fn significant(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    let int_digits = (x.abs().log10().floor() as i64 + 1).max(1) as usize;
    let decimals = precision.saturating_sub(int_digits);
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_are_binary_multiples() {
        assert_eq!(ram_in_bytes("64m"), Ok(64 * 1024 * 1024));
        assert_eq!(ram_in_bytes("1g"), Ok(1 << 30));
        assert_eq!(ram_in_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(ram_in_bytes("512k"), Ok(512 * 1024));
        assert_eq!(ram_in_bytes("100b"), Ok(100));
        assert_eq!(ram_in_bytes("100"), Ok(100));
        assert_eq!(ram_in_bytes("2MiB"), Ok(2 << 20));
        assert_eq!(ram_in_bytes("2 mb"), Ok(2 << 20));
    }

    #[test]
    fn malformed_memory_sizes_are_refused() {
        for bad in ["", "m", "12x", "1..2m", "-1m", "1mm", ".5m"] {
            assert!(ram_in_bytes(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cpus_become_nano_cpus_exactly() {
        assert_eq!(nano_cpus("0.5"), Ok(500_000_000));
        assert_eq!(nano_cpus("2"), Ok(2_000_000_000));
        assert_eq!(nano_cpus("1.25"), Ok(1_250_000_000));
        assert_eq!(nano_cpus(".1"), Ok(100_000_000));
        assert_eq!(nano_cpus("0.000000001"), Ok(1));
        assert_eq!(nano_cpus("0.0000000001"), Err("value is too precise".to_string()));
        assert!(nano_cpus("abc").is_err());
        assert!(nano_cpus("").is_err());
    }

    #[test]
    fn durations_read_like_docker() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(Duration::from_millis(300)), "Less than a second");
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(5)), "5 seconds");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(119)), "About a minute");
        assert_eq!(human_duration(s(120)), "2 minutes");
        assert_eq!(human_duration(s(59 * 60)), "59 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(2 * 3600)), "2 hours");
        assert_eq!(human_duration(s(47 * 3600)), "47 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(15 * 86400)), "2 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
    }

    #[test]
    fn ago_counts_from_now_and_never_goes_negative() {
        assert_eq!(ago(100, 105), "5 seconds ago");
        assert_eq!(ago(200, 100), "Less than a second ago");
    }

    #[test]
    fn sizes_use_decimal_units_and_significant_digits() {
        assert_eq!(human_size(4_260_000.0, 3), "4.26MB");
        assert_eq!(human_size(4_264_999.0, 3), "4.26MB");
        assert_eq!(human_size(100.0, 3), "100B");
        assert_eq!(human_size(0.0, 3), "0B");
        assert_eq!(human_size(1_200_000_000.0, 3), "1.2GB");
        assert_eq!(human_size(999_960.0, 3), "1000kB");
        assert_eq!(human_size(12_346.0, 4), "12.35kB");
        assert_eq!(human_size(1_000.0, 3), "1kB");
    }

    #[test]
    fn memory_totals_use_binary_units() {
        assert_eq!(bytes_size(2_087_354_368.0), "1.944GiB");
        assert_eq!(bytes_size(512.0), "512B");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
    }
}
