//! Amounts on the command line, one parser for all: "1.5" (ETH), "1.5eth", "1.5ether",
//! "30gwei", "100wei".

use anyhow::{Result, bail};

/// The forms an amount may take, quoted in every amount error.
pub(crate) const FORMS: &str =
    "an amount is a non-negative number with an optional unit: 1.5 or 1.5eth or 1.5ether (ETH), 30gwei, 100wei";

/// Parses an amount in wei; a bare number is ETH. Refuses what a person did not mean: a
/// fraction of a wei, a sign, an exponent, more than 2^128 - 1 wei.
pub(crate) fn parse_amount(s: &str) -> Result<u128> {
    let t = s.trim().to_ascii_lowercase();
    let (num, decimals) = if let Some(n) = t.strip_suffix("gwei") {
        (n, 9)
    } else if let Some(n) = t.strip_suffix("wei") {
        (n, 0)
    } else if let Some(n) = t.strip_suffix("ether").or_else(|| t.strip_suffix("eth")) {
        (n, 18)
    } else {
        (t.as_str(), 18)
    };
    let num = num.trim();
    if num.starts_with('-') {
        bail!("invalid amount {s:?}: an amount cannot be negative; {FORMS}");
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        bail!("invalid amount {s:?}: {FORMS}");
    }
    let frac_used = frac.trim_end_matches('0');
    if frac_used.len() > decimals {
        bail!("invalid amount {s:?}: it is not a whole number of wei (1 wei = 0.000000000000000001 ETH); {FORMS}");
    }
    let too_large =
        || anyhow::anyhow!("invalid amount {s:?}: it is over the largest amount, {}", format_eth(u128::MAX));
    let scale = |v: u128, places: usize| -> Result<u128> {
        10u128.checked_pow(u32::try_from(places)?).and_then(|p| v.checked_mul(p)).ok_or_else(too_large)
    };
    let int_part = if int.is_empty() { 0 } else { int.parse::<u128>().map_err(|_| too_large())? };
    let frac_part = if frac_used.is_empty() { 0 } else { frac_used.parse::<u128>().map_err(|_| too_large())? };
    let wei =
        scale(int_part, decimals)?.checked_add(scale(frac_part, decimals - frac_used.len())?).ok_or_else(too_large)?;
    Ok(wei)
}

/// Parses exactly two amounts separated by a comma ("1,2", "1000wei,5wei"): the deposits of
/// party 0 and party 1.
pub(crate) fn parse_pair(s: &str) -> Result<[u128; 2]> {
    let parts: Vec<&str> = s.split(',').collect();
    let [a, b] = parts[..] else {
        bail!(
            "{s:?} holds {} amount(s): two are expected, party 0's and party 1's deposits, separated by a comma: \"1,2\"",
            parts.len()
        );
    };
    Ok([parse_amount(a)?, parse_amount(b)?])
}

/// Formats wei as ETH.
pub(crate) fn format_eth(wei: u128) -> String {
    vbank::format_eth(wei)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_with_units() {
        assert_eq!(parse_amount("1.5").expect("eth"), 1_500_000_000_000_000_000);
        assert_eq!(parse_amount("1.5ETH").expect("eth"), 1_500_000_000_000_000_000);
        assert_eq!(parse_amount("1.5ether").expect("ether"), 1_500_000_000_000_000_000);
        assert_eq!(parse_amount(".5").expect("eth"), 500_000_000_000_000_000);
        assert_eq!(parse_amount("2gwei").expect("gwei"), 2_000_000_000);
        assert_eq!(parse_amount("30 gwei").expect("gwei"), 30_000_000_000);
        assert_eq!(parse_amount("1.5gwei").expect("gwei"), 1_500_000_000);
        assert_eq!(parse_amount("1000wei").expect("wei"), 1000);
        assert_eq!(parse_amount("1.0wei").expect("a whole wei"), 1);
        assert_eq!(parse_amount("0.000000000000000001").expect("one wei"), 1);
        assert_eq!(parse_amount("340282366920938463463374607431768211455wei").expect("max"), u128::MAX);
        assert_eq!(format_eth(1_500_000_000_000_000_000), "1.5 ETH");
        assert_eq!(format_eth(0), "0 ETH");
        assert_eq!(format_eth(10_000_000_000_000_000_000), "10 ETH");
        assert_eq!(format_eth(1), "0.000000000000000001 ETH");
        assert_eq!(parse_pair("1000wei,5wei").expect("pair"), [1000, 5]);
        assert!(parse_pair("1").is_err() && parse_pair("1,x").is_err());
        let three = parse_pair("1,1,1").expect_err("three").to_string();
        assert!(three.contains("3 amount(s): two are expected"), "{three}");
        for bad in ["", "eth", "-1", "1.2.3", "abc", "1e999999", "1e18", "1.5wei", "0.0000000000000000019", "+1", "."] {
            let e = parse_amount(bad).expect_err(bad).to_string();
            assert!(e.contains("1.5ether") || e.contains("largest"), "{bad:?}: {e}");
        }
        let huge = parse_amount("340282366920938463463374607431768211456wei").expect_err("over u128").to_string();
        assert!(huge.contains("over the largest amount") && huge.contains("ETH"), "{huge}");
        assert!(parse_amount("1.5wei").expect_err("fraction").to_string().contains("not a whole number of wei"));
        assert!(parse_amount("-1").expect_err("negative").to_string().contains("cannot be negative"));
    }
}
