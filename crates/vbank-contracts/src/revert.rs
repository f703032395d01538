//! Custom errors of the factory and the channels, decoded and explained.

use std::fmt;

use alloy::{primitives::U256, sol_types::SolInterface};

use crate::{VirtualBank::VirtualBankErrors as E, VirtualBankFactory::VirtualBankFactoryErrors as F};

/// A decoded revert of a VirtualBank channel or of the factory. `Display` explains it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// An error of a channel (the `VirtualBankV2` implementation behind every clone).
    Channel(E),
    /// An error of the `VirtualBankFactory` (opening a channel).
    Factory(F),
}

/// Decodes revert data (selector and arguments) into a [`Revert`]; `None` when the data is not
/// one of the contracts' custom errors. An error both contracts declare decodes as the channel's.
pub fn decode_revert(data: &[u8]) -> Option<Revert> {
    E::abi_decode(data).ok().map(Revert::Channel).or_else(|| F::abi_decode(data).ok().map(Revert::Factory))
}

fn state_name(s: u8) -> &'static str {
    match s {
        0 => "Funding",
        1 => "Running",
        2 => "Liquidating",
        3 => "Settling",
        4 => "Closed",
        _ => "in an unknown state",
    }
}

/// An amount in wei, also in whole units of 10^18 (ETH, or most tokens' units).
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

fn signature_reason(reason: u8) -> &'static str {
    match reason {
        1 => "no signer recovers from it (bad v, r or s)",
        2 => "it is not 65 bytes long",
        3 => "its s value is in the upper half order (malleable)",
        _ => "unknown reason",
    }
}

fn channel(f: &mut fmt::Formatter<'_>, e: &E) -> fmt::Result {
    match e {
        E::VirtualBankNotAChannel(_) => write!(f, "the address is the implementation or not a channel clone"),
        E::VirtualBankNotFactory(e) => write!(f, "only the factory may record a deposit, not {}", e.caller),
        E::VirtualBankWrongState(e) => write!(f, "the channel is {}, which does not allow this", state_name(e.actual)),
        E::VirtualBankNotParty(e) => write!(f, "{} is not a party of this channel", e.caller),
        E::VirtualBankAlreadyDeposited(e) => {
            write!(f, "{} has already deposited (or its agreed deposit is zero)", e.party)
        }
        E::VirtualBankWrongDeposit(e) => {
            write!(f, "wrong deposit: sent {}, the agreed amount is {}", eth(e.sent), eth(e.expected))
        }
        E::VirtualBankTokenAmountMismatch(e) => write!(
            f,
            "the token delivered {} wei instead of {} wei (a fee-on-transfer token cannot be used)",
            e.received, e.expected
        ),
        E::VirtualBankBalanceMismatch(e) => {
            write!(f, "balances add up to {} but the channel holds {}", eth(e.sum), eth(e.total))
        }
        E::VirtualBankLocksRootMismatch(e) => write!(
            f,
            "the locks root {} does not fit the locked amount of {} wei (empty locks exactly when nothing is locked)",
            e.locksRoot, e.locked
        ),
        E::VirtualBankNonceTooLarge(e) => write!(f, "nonce {} does not fit in 48 bits", e.nonce),
        E::VirtualBankZeroWaiver(_) => write!(f, "the sheet's waiver address is zero"),
        E::VirtualBankInvalidSignature(e) => write!(f, "invalid signature: {}", signature_reason(e.reason)),
        E::VirtualBankWrongSigner(e) => write!(f, "signed by {}, but {} had to sign", e.recovered, e.expected),
        E::VirtualBankLockNotExpired(e) => {
            let left = e.unlockTime.saturating_sub(e.currentTime);
            write!(f, "lock period not over: {left} s left (unlocks at {})", e.unlockTime)
        }
        E::VirtualBankWrongNonce(e) => {
            write!(f, "the waiver is for nonce {}, but the liquidated sheet has nonce {}", e.given, e.liquidated)
        }
        E::VirtualBankWrongLocks(e) => {
            write!(f, "the locks given hash to {}, not to the liquidated sheet's locks root {}", e.actual, e.expected)
        }
        E::VirtualBankLockBadReceiver(e) => write!(f, "lock {} names a receiver other than party 0 or 1", e.index),
        E::VirtualBankLockSumMismatch(e) => {
            write!(f, "the locks add up to {} wei, the locked amount is {} wei", e.sum, e.locked)
        }
        E::VirtualBankLockUnresolved(e) => write!(
            f,
            "lock {} is unresolved: its preimage was not revealed by its expiry and the expiry has not passed",
            e.index
        ),
        E::VirtualBankZeroRecipient(_) => write!(f, "cannot send to the zero address"),
        E::VirtualBankNothingOwed(e) => write!(f, "nothing is owed to {}", e.party),
        E::VirtualBankTransferFailed(e) => write!(f, "sending {} to {} failed", eth(e.amount), e.to),
        E::SafeERC20FailedOperation(e) => {
            write!(f, "the token {} refused the transfer (allowance or balance too low, or a blacklist)", e.token)
        }
        E::SafeCastOverflowedUintDowncast(e) => write!(f, "value {} does not fit in {} bits", e.value, e.bits),
        E::ReentrancyGuardReentrantCall(_) => write!(f, "re-entrant call refused"),
    }
}

fn factory(f: &mut fmt::Formatter<'_>, e: &F) -> fmt::Result {
    match e {
        F::VirtualBankZeroParty(_) => write!(f, "a party address is zero"),
        F::VirtualBankSameParty(e) => write!(f, "both parties are the same address {}", e.party),
        F::VirtualBankZeroDeposits(_) => write!(f, "both agreed deposits are zero"),
        F::VirtualBankDepositsTooLarge(e) => {
            write!(f, "deposits too large: {} wei in total, at most 2^128 - 1", e.total)
        }
        F::VirtualBankZeroLockPeriod(_) => write!(f, "the lock period must be at least one second"),
        F::VirtualBankLockPeriodTooLarge(e) => {
            write!(f, "the lock period of {} s is over the limit of 2^32 - 1 s", e.lockPeriod)
        }
        F::VirtualBankTokenNotContract(e) => {
            write!(f, "the token {} is not a contract (use the zero address for ETH)", e.token)
        }
        F::VirtualBankChannelExists(e) => {
            write!(f, "a channel with these parameters and salt already exists at {}", e.channel)
        }
        F::VirtualBankNotParty(e) => write!(f, "{} is not a party of the channel it opens", e.caller),
        F::VirtualBankWrongDeposit(e) => {
            write!(f, "wrong deposit: sent {}, the agreed amount is {}", eth(e.sent), eth(e.expected))
        }
        F::VirtualBankTokenAmountMismatch(e) => write!(
            f,
            "the token delivered {} wei instead of {} wei (a fee-on-transfer token cannot be used)",
            e.received, e.expected
        ),
        F::CloneArgumentsTooLong(_) => write!(f, "the channel's parameters are too long for a clone"),
        F::SafeERC20FailedOperation(e) => {
            write!(f, "the token {} refused the transfer (allowance or balance too low, or a blacklist)", e.token)
        }
    }
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(e) => channel(f, e),
            Self::Factory(e) => factory(f, e),
        }
    }
}

impl std::error::Error for Revert {}

#[cfg(test)]
mod tests {
    use alloy::{
        primitives::{Address, B256, address},
        sol_types::{SolError, SolInterface},
    };

    use super::*;
    use crate::{VirtualBank as VB, VirtualBankFactory as VF};

    const A: Address = address!("0x00000000000000000000000000000000000000a1");
    const B: Address = address!("0x00000000000000000000000000000000000000b2");

    enum Case {
        C(E),
        F(F),
    }

    impl Case {
        fn data(&self) -> Vec<u8> {
            match self {
                Self::C(e) => e.abi_encode(),
                Self::F(e) => e.abi_encode(),
            }
        }

        fn selector(&self) -> [u8; 4] {
            match self {
                Self::C(e) => e.selector(),
                Self::F(e) => e.selector(),
            }
        }
    }

    fn cases() -> Vec<(Case, &'static str)> {
        use Case::{C, F as Fa};
        let w = |n: u64| U256::from(n) * U256::from(10u64).pow(U256::from(17u64));
        vec![
            (C(E::VirtualBankNotAChannel(VB::VirtualBankNotAChannel {})), "not a channel clone"),
            (C(E::VirtualBankNotFactory(VB::VirtualBankNotFactory { caller: A })), "only the factory"),
            (
                C(E::VirtualBankWrongState(VB::VirtualBankWrongState { actual: 3 })),
                "the channel is Settling, which does not allow this",
            ),
            (C(E::VirtualBankWrongState(VB::VirtualBankWrongState { actual: 4 })), "the channel is Closed"),
            (C(E::VirtualBankNotParty(VB::VirtualBankNotParty { caller: A })), "is not a party of this channel"),
            (C(E::VirtualBankAlreadyDeposited(VB::VirtualBankAlreadyDeposited { party: B })), "has already deposited"),
            (
                C(E::VirtualBankWrongDeposit(VB::VirtualBankWrongDeposit { expected: w(10), sent: w(5) })),
                "wrong deposit: sent 0.5 ETH (500000000000000000 wei), the agreed amount is 1 ETH",
            ),
            (
                C(E::VirtualBankTokenAmountMismatch(VB::VirtualBankTokenAmountMismatch {
                    expected: U256::from(100),
                    received: U256::from(99),
                })),
                "delivered 99 wei instead of 100 wei",
            ),
            (
                C(E::VirtualBankBalanceMismatch(VB::VirtualBankBalanceMismatch { sum: w(31), total: w(30) })),
                "balances add up to 3.1 ETH",
            ),
            (
                C(E::VirtualBankLocksRootMismatch(VB::VirtualBankLocksRootMismatch {
                    locksRoot: B256::ZERO,
                    locked: U256::from(5),
                })),
                "does not fit the locked amount of 5 wei",
            ),
            (
                C(E::VirtualBankNonceTooLarge(VB::VirtualBankNonceTooLarge { nonce: U256::MAX })),
                "does not fit in 48 bits",
            ),
            (C(E::VirtualBankZeroWaiver(VB::VirtualBankZeroWaiver {})), "waiver address is zero"),
            (C(E::VirtualBankInvalidSignature(VB::VirtualBankInvalidSignature { reason: 3 })), "upper half order"),
            (C(E::VirtualBankInvalidSignature(VB::VirtualBankInvalidSignature { reason: 2 })), "not 65 bytes long"),
            (C(E::VirtualBankInvalidSignature(VB::VirtualBankInvalidSignature { reason: 1 })), "no signer recovers"),
            (
                C(E::VirtualBankWrongSigner(VB::VirtualBankWrongSigner { expected: A, recovered: B })),
                "but 0x00000000000000000000000000000000000000A1 had to sign",
            ),
            (
                C(E::VirtualBankLockNotExpired(VB::VirtualBankLockNotExpired {
                    unlockTime: U256::from(10_000),
                    currentTime: U256::from(6_588),
                })),
                "lock period not over: 3412 s left",
            ),
            (
                C(E::VirtualBankWrongNonce(VB::VirtualBankWrongNonce {
                    liquidated: U256::from(7),
                    given: U256::from(6),
                })),
                "the waiver is for nonce 6, but the liquidated sheet has nonce 7",
            ),
            (
                C(E::VirtualBankWrongLocks(VB::VirtualBankWrongLocks {
                    expected: B256::repeat_byte(1),
                    actual: B256::repeat_byte(2),
                })),
                "not to the liquidated sheet's locks root 0x0101",
            ),
            (C(E::VirtualBankLockBadReceiver(VB::VirtualBankLockBadReceiver { index: U256::from(2) })), "lock 2 names"),
            (
                C(E::VirtualBankLockSumMismatch(VB::VirtualBankLockSumMismatch {
                    locked: U256::from(10),
                    sum: U256::from(9),
                })),
                "the locks add up to 9 wei, the locked amount is 10 wei",
            ),
            (
                C(E::VirtualBankLockUnresolved(VB::VirtualBankLockUnresolved { index: U256::from(1) })),
                "lock 1 is unresolved",
            ),
            (C(E::VirtualBankZeroRecipient(VB::VirtualBankZeroRecipient {})), "zero address"),
            (C(E::VirtualBankNothingOwed(VB::VirtualBankNothingOwed { party: A })), "nothing is owed to"),
            (C(E::VirtualBankTransferFailed(VB::VirtualBankTransferFailed { to: A, amount: w(10) })), "sending 1 ETH"),
            (C(E::SafeERC20FailedOperation(VB::SafeERC20FailedOperation { token: A })), "refused the transfer"),
            (
                C(E::SafeCastOverflowedUintDowncast(VB::SafeCastOverflowedUintDowncast { bits: 40, value: U256::MAX })),
                "does not fit in 40 bits",
            ),
            (C(E::ReentrancyGuardReentrantCall(VB::ReentrancyGuardReentrantCall {})), "re-entrant call refused"),
            (Fa(F::VirtualBankZeroParty(VF::VirtualBankZeroParty {})), "a party address is zero"),
            (Fa(F::VirtualBankSameParty(VF::VirtualBankSameParty { party: A })), "both parties are the same address"),
            (Fa(F::VirtualBankZeroDeposits(VF::VirtualBankZeroDeposits {})), "both agreed deposits are zero"),
            (
                Fa(F::VirtualBankDepositsTooLarge(VF::VirtualBankDepositsTooLarge { total: U256::MAX })),
                "deposits too large",
            ),
            (Fa(F::VirtualBankZeroLockPeriod(VF::VirtualBankZeroLockPeriod {})), "at least one second"),
            (
                Fa(F::VirtualBankLockPeriodTooLarge(VF::VirtualBankLockPeriodTooLarge {
                    lockPeriod: U256::from(1u64 << 40),
                    max: U256::from(u32::MAX),
                })),
                "over the limit of 2^32 - 1 s",
            ),
            (
                Fa(F::VirtualBankTokenNotContract(VF::VirtualBankTokenNotContract { token: B })),
                "is not a contract (use the zero address for ETH)",
            ),
            (
                Fa(F::VirtualBankChannelExists(VF::VirtualBankChannelExists { channel: A })),
                "already exists at 0x00000000000000000000000000000000000000A1",
            ),
            (Fa(F::CloneArgumentsTooLong(VF::CloneArgumentsTooLong {})), "too long for a clone"),
        ]
    }

    #[test]
    fn every_custom_error_decodes_and_reads_well() {
        for (case, want) in cases() {
            let got = decode_revert(&case.data()).expect("decodes").to_string();
            assert!(got.contains(want), "{got:?} does not contain {want:?}");
        }
        // The factory's own errors read well too where they share a selector with the channel's.
        let e = F::VirtualBankNotParty(VF::VirtualBankNotParty { caller: A });
        assert!(Revert::Factory(e).to_string().contains("is not a party of the channel it opens"));
        let e = F::VirtualBankWrongDeposit(VF::VirtualBankWrongDeposit { expected: U256::from(1), sent: U256::ZERO });
        assert!(Revert::Factory(e).to_string().contains("wrong deposit"));
        let e = F::VirtualBankTokenAmountMismatch(VF::VirtualBankTokenAmountMismatch {
            expected: U256::from(2),
            received: U256::from(1),
        });
        assert!(Revert::Factory(e).to_string().contains("fee-on-transfer"));
        let e = F::SafeERC20FailedOperation(VF::SafeERC20FailedOperation { token: A });
        assert!(Revert::Factory(e).to_string().contains("refused the transfer"));
    }

    #[test]
    fn every_abi_error_of_every_embedded_artifact_has_a_case_above() {
        // A new custom error in a contract must get an explanation and a case here.
        let covered: Vec<[u8; 4]> = cases().iter().map(|(c, _)| c.selector()).collect();
        for artifact in crate::embedded().expect("artifacts") {
            for error in artifact.abi.errors() {
                assert!(
                    covered.contains(&error.selector().0),
                    "no explanation tested for {} of {}",
                    error.signature(),
                    artifact.contract_name
                );
            }
        }
        assert_eq!(VB::VirtualBankLockNotExpired::SIGNATURE, "VirtualBankLockNotExpired(uint256,uint256)");
    }

    #[test]
    fn foreign_data_is_not_decoded() {
        assert!(decode_revert(&[0xde, 0xad, 0xbe, 0xef]).is_none());
        assert!(decode_revert(&[]).is_none());
    }
}
