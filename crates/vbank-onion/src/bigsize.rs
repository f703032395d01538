//! BigSize (BOLT #1): a big-endian, canonically encoded variable-length integer.

use crate::Error;

/// Number of bytes the BigSize encoding of `n` takes.
pub(crate) fn encoded_len(n: u64) -> usize {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Appends the BigSize encoding of `n` to `out`.
pub(crate) fn encode(n: u64, out: &mut Vec<u8>) {
    match encoded_len(n) {
        1 => out.push(n as u8),
        3 => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        5 => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Reads a BigSize from the front of `buf`: the value and the bytes it took.
/// Rejects truncated and non-canonical (not minimally encoded) values.
pub(crate) fn decode(buf: &[u8]) -> Result<(u64, usize), Error> {
    let (&first, rest) = buf.split_first().ok_or(Error::BadLengthPrefix)?;
    let (value, len, min) = match first {
        0xfd => {
            let b: [u8; 2] = take(rest)?;
            (u64::from(u16::from_be_bytes(b)), 3, 0xfd)
        }
        0xfe => {
            let b: [u8; 4] = take(rest)?;
            (u64::from(u32::from_be_bytes(b)), 5, 0x1_0000)
        }
        0xff => {
            let b: [u8; 8] = take(rest)?;
            (u64::from_be_bytes(b), 9, 0x1_0000_0000)
        }
        n => return Ok((u64::from(n), 1)),
    };
    if value < min {
        return Err(Error::BadLengthPrefix);
    }
    Ok((value, len))
}

fn take<const N: usize>(buf: &[u8]) -> Result<[u8; N], Error> {
    buf.get(..N).and_then(|s| s.try_into().ok()).ok_or(Error::BadLengthPrefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigsize_round_trips_and_rejects_non_canonical() {
        for n in [0u64, 1, 0xfc, 0xfd, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            let mut v = Vec::new();
            encode(n, &mut v);
            assert_eq!(v.len(), encoded_len(n));
            assert_eq!(decode(&v), Ok((n, v.len())));
        }
        // BOLT #1 vectors: non-canonical encodings and truncations.
        for bad in [
            &b"\xfd\x00\xfc"[..],
            b"\xfe\x00\x00\xff\xff",
            b"\xff\x00\x00\x00\x00\xff\xff\xff\xff",
            b"\xfd\x00",
            b"\xfe\xff\xff",
            b"\xff\xff\xff\xff\xff",
            b"",
        ] {
            assert_eq!(decode(bad), Err(Error::BadLengthPrefix), "{bad:02x?}");
        }
    }
}
