//! Custom errors of the contract, decoded and explained.

use std::fmt;

use alloy::{primitives::U256, sol_types::SolInterface};

use crate::VirtualBank::{self, VirtualBankErrors as E};

/// A decoded revert of the VirtualBank contract. `Display` explains it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert(pub VirtualBank::VirtualBankErrors);

/// Decodes revert data (selector and arguments) into a [`Revert`]; `None` when the data is not
/// one of the contract's custom errors.
pub fn decode_revert(data: &[u8]) -> Option<Revert> {
    E::abi_decode(data).ok().map(Revert)
}

fn state_name(s: u8) -> &'static str {
    match s {
        0 => "Funding",
        1 => "Running",
        2 => "Liquidating",
        3 => "Closed",
        _ => "unknown",
    }
}

fn eth(wei: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(18u64));
    let whole = wei / unit;
    let frac = wei % unit;
    if frac.is_zero() {
        return format!("{whole} ETH ({wei} wei)");
    }
    let frac = format!("{:018}", frac.to::<u128>());
    format!("{whole}.{} ETH ({wei} wei)", frac.trim_end_matches('0'))
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            E::VirtualBankZeroParty(_) => write!(f, "a party address is zero"),
            E::VirtualBankSameParty(e) => {
                write!(f, "both parties are the same address {}", e.party)
            }
            E::VirtualBankZeroDeposits(_) => write!(f, "both agreed deposits are zero"),
            E::VirtualBankZeroLockPeriod(_) => {
                write!(f, "the lock period must be at least one second")
            }
            E::VirtualBankDepositsTooLarge(e) => {
                write!(f, "deposits too large: {} wei in total, at most 2^128 - 1", e.total)
            }
            E::VirtualBankWrongState(e) => {
                write!(f, "the channel is {}, this needs it {}", state_name(e.actual), state_name(e.expected))
            }
            E::VirtualBankNotParty(e) => write!(f, "{} is not a party of this channel", e.caller),
            E::VirtualBankAlreadyDeposited(e) => write!(f, "{} has already deposited", e.party),
            E::VirtualBankWrongDeposit(e) => {
                write!(f, "wrong deposit: sent {}, the agreed amount is {}", eth(e.sent), eth(e.expected))
            }
            E::VirtualBankBalanceMismatch(e) => {
                write!(f, "balances add up to {} but the channel holds {}", eth(e.sum), eth(e.total))
            }
            E::VirtualBankNonceTooLarge(e) => {
                write!(f, "nonce {} does not fit in 64 bits", e.nonce)
            }
            E::VirtualBankZeroWaiver(_) => write!(f, "the sheet's waiver address is zero"),
            E::VirtualBankInvalidSignature(e) => write!(
                f,
                "invalid signature: {}",
                match e.reason {
                    1 => "no signer recovers from it (bad v, r or s)",
                    2 => "it is not 65 bytes long",
                    3 => "its s value is in the upper half order (malleable)",
                    _ => "unknown reason",
                }
            ),
            E::VirtualBankWrongSigner(e) => {
                write!(f, "signed by {}, but {} had to sign", e.recovered, e.expected)
            }
            E::VirtualBankLockNotExpired(e) => {
                let left = e.unlockTime.saturating_sub(e.currentTime);
                write!(f, "lock period not over: {left} s left (unlocks at {})", e.unlockTime)
            }
            E::VirtualBankWrongNonce(e) => {
                write!(f, "the waiver is for nonce {}, but the liquidated sheet has nonce {}", e.given, e.liquidated)
            }
            E::VirtualBankZeroRecipient(_) => write!(f, "cannot send to the zero address"),
            E::VirtualBankNothingOwed(e) => write!(f, "nothing is owed to {}", e.party),
            E::VirtualBankTransferFailed(e) => {
                write!(f, "sending {} to {} failed", eth(e.amount), e.to)
            }
            E::VirtualBankLockPeriodTooLarge(e) => {
                write!(f, "the lock period of {} s is over the limit of 2^32 - 1 s", e.lockPeriod)
            }
            E::SafeCastOverflowedUintDowncast(e) => {
                write!(f, "value {} does not fit in {} bits", e.value, e.bits)
            }
            E::ReentrancyGuardReentrantCall(_) => write!(f, "re-entrant call refused"),
            E::InvalidShortString(_) | E::StringTooLong(_) => write!(f, "invalid EIP-712 name or version string"),
        }
    }
}

impl std::error::Error for Revert {}

#[cfg(test)]
mod tests {
    use alloy::{
        primitives::{Address, address},
        sol_types::{SolError, SolInterface},
    };

    use super::*;
    use crate::VirtualBank as VB;

    const A: Address = address!("0x00000000000000000000000000000000000000a1");
    const B: Address = address!("0x00000000000000000000000000000000000000b2");

    fn explain(e: E) -> String {
        let data = e.abi_encode();
        decode_revert(&data).expect("decodes").to_string()
    }

    fn cases() -> Vec<(E, &'static str)> {
        let w = |n: u64| U256::from(n) * U256::from(10u64).pow(U256::from(17u64));
        vec![
            (E::VirtualBankZeroParty(VB::VirtualBankZeroParty {}), "a party address is zero"),
            (E::VirtualBankSameParty(VB::VirtualBankSameParty { party: A }), "both parties are the same address"),
            (E::VirtualBankZeroDeposits(VB::VirtualBankZeroDeposits {}), "both agreed deposits are zero"),
            (E::VirtualBankZeroLockPeriod(VB::VirtualBankZeroLockPeriod {}), "at least one second"),
            (
                E::VirtualBankDepositsTooLarge(VB::VirtualBankDepositsTooLarge { total: U256::MAX }),
                "deposits too large",
            ),
            (
                E::VirtualBankWrongState(VB::VirtualBankWrongState { expected: 1, actual: 3 }),
                "the channel is Closed, this needs it Running",
            ),
            (E::VirtualBankNotParty(VB::VirtualBankNotParty { caller: A }), "is not a party of this channel"),
            (E::VirtualBankAlreadyDeposited(VB::VirtualBankAlreadyDeposited { party: B }), "has already deposited"),
            (
                E::VirtualBankWrongDeposit(VB::VirtualBankWrongDeposit { expected: w(10), sent: w(5) }),
                "wrong deposit: sent 0.5 ETH (500000000000000000 wei), the agreed amount is 1 ETH",
            ),
            (
                E::VirtualBankBalanceMismatch(VB::VirtualBankBalanceMismatch { sum: w(31), total: w(30) }),
                "balances add up to 3.1 ETH",
            ),
            (E::VirtualBankNonceTooLarge(VB::VirtualBankNonceTooLarge { nonce: U256::MAX }), "does not fit in 64 bits"),
            (E::VirtualBankZeroWaiver(VB::VirtualBankZeroWaiver {}), "waiver address is zero"),
            (E::VirtualBankInvalidSignature(VB::VirtualBankInvalidSignature { reason: 3 }), "upper half order"),
            (E::VirtualBankInvalidSignature(VB::VirtualBankInvalidSignature { reason: 2 }), "not 65 bytes long"),
            (E::VirtualBankInvalidSignature(VB::VirtualBankInvalidSignature { reason: 1 }), "no signer recovers"),
            (
                E::VirtualBankWrongSigner(VB::VirtualBankWrongSigner { expected: A, recovered: B }),
                "but 0x00000000000000000000000000000000000000A1 had to sign",
            ),
            (
                E::VirtualBankLockNotExpired(VB::VirtualBankLockNotExpired {
                    unlockTime: U256::from(10_000),
                    currentTime: U256::from(6_588),
                }),
                "lock period not over: 3412 s left",
            ),
            (
                E::VirtualBankWrongNonce(VB::VirtualBankWrongNonce { liquidated: U256::from(7), given: U256::from(6) }),
                "the waiver is for nonce 6, but the liquidated sheet has nonce 7",
            ),
            (E::VirtualBankZeroRecipient(VB::VirtualBankZeroRecipient {}), "zero address"),
            (E::ReentrancyGuardReentrantCall(VB::ReentrancyGuardReentrantCall {}), "re-entrant call refused"),
            (E::InvalidShortString(VB::InvalidShortString {}), "invalid EIP-712"),
            (E::StringTooLong(VB::StringTooLong { str: "x".into() }), "invalid EIP-712"),
            (E::VirtualBankNothingOwed(VB::VirtualBankNothingOwed { party: A }), "nothing is owed to"),
            (E::VirtualBankTransferFailed(VB::VirtualBankTransferFailed { to: A, amount: w(10) }), "sending 1 ETH"),
            (
                E::VirtualBankLockPeriodTooLarge(VB::VirtualBankLockPeriodTooLarge {
                    lockPeriod: U256::from(1u64 << 40),
                    max: U256::from(u32::MAX),
                }),
                "over the limit of 2^32 - 1 s",
            ),
            (
                E::SafeCastOverflowedUintDowncast(VB::SafeCastOverflowedUintDowncast { bits: 64, value: U256::MAX }),
                "does not fit in 64 bits",
            ),
        ]
    }

    #[test]
    fn every_custom_error_decodes_and_reads_well() {
        for (err, want) in cases() {
            let got = explain(err);
            assert!(got.contains(want), "{got:?} does not contain {want:?}");
        }
    }

    #[test]
    fn every_abi_error_has_a_case_above() {
        // A new custom error in the contract must get an explanation and a case here.
        let covered: Vec<[u8; 4]> = cases().iter().map(|(e, _)| e.selector()).collect();
        let abi = crate::embedded().expect("artifact").abi;
        for error in abi.errors() {
            assert!(covered.contains(&error.selector().0), "no explanation tested for {}", error.signature());
        }
        assert_eq!(VB::VirtualBankLockNotExpired::SIGNATURE, "VirtualBankLockNotExpired(uint256,uint256)");
    }

    #[test]
    fn foreign_data_is_not_decoded() {
        assert!(decode_revert(&[0xde, 0xad, 0xbe, 0xef]).is_none());
        assert!(decode_revert(&[]).is_none());
    }
}
