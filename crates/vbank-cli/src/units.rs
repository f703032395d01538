//! Amounts on the command line: "1.5", "1.5eth", "2gwei", "1000wei".

use alloy::primitives::utils::{format_ether, parse_units};
use anyhow::{Context, Result, bail};

/// Parses an amount in wei; a bare number is ETH.
pub(crate) fn parse_amount(s: &str) -> Result<u128> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = if let Some(n) = t.strip_suffix("gwei") {
        (n, "gwei")
    } else if let Some(n) = t.strip_suffix("wei") {
        (n, "wei")
    } else if let Some(n) = t.strip_suffix("eth") {
        (n, "ether")
    } else {
        (t.as_str(), "ether")
    };
    let num = num.trim();
    if num.is_empty() || num.starts_with('-') {
        bail!("invalid amount {s:?}: expected a non-negative number like 1.5, 1.5eth, 2gwei or 1000wei");
    }
    let v = parse_units(num, unit).with_context(|| format!("invalid amount {s:?}"))?.get_absolute();
    u128::try_from(v).with_context(|| format!("amount {s:?} is too large"))
}

/// Parses two amounts separated by a comma ("1,2", "1000wei,5wei"): the deposits of a channel.
pub(crate) fn parse_pair(s: &str) -> Result<[u128; 2]> {
    let (a, b) = s.split_once(',').context("two amounts are expected, separated by a comma: \"1,2\"")?;
    Ok([parse_amount(a)?, parse_amount(b)?])
}

/// Formats wei as ETH.
pub(crate) fn format_eth(wei: u128) -> String {
    let s = format_ether(alloy::primitives::U256::from(wei));
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} ETH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_with_units() {
        assert_eq!(parse_amount("1.5").expect("eth"), 1_500_000_000_000_000_000);
        assert_eq!(parse_amount("1.5ETH").expect("eth"), 1_500_000_000_000_000_000);
        assert_eq!(parse_amount("2gwei").expect("gwei"), 2_000_000_000);
        assert_eq!(parse_amount("1000wei").expect("wei"), 1000);
        assert_eq!(format_eth(1_500_000_000_000_000_000), "1.5 ETH");
        assert_eq!(format_eth(0), "0 ETH");
        assert_eq!(format_eth(10_000_000_000_000_000_000), "10 ETH");
        assert_eq!(format_eth(1), "0.000000000000000001 ETH");
        assert_eq!(parse_pair("1000wei,5wei").expect("pair"), [1000, 5]);
        assert!(parse_pair("1").is_err() && parse_pair("1,x").is_err());
        for bad in ["", "eth", "-1", "1.2.3", "abc", "1e999999"] {
            assert!(parse_amount(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
