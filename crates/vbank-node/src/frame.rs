//! Length-delimited frames: a 4-byte big-endian length, then that many bytes of JSON.

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vbank_core::{Message, Sig};

use crate::{Error, Result};

/// The largest payload accepted, in bytes.
pub const MAX_FRAME: usize = 1 << 20;

/// Everything that crosses a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frame {
    /// First frame each way: who I claim to be, and a fresh challenge for you to sign.
    Hello {
        /// The sender's party address.
        address: Address,
        /// 32 random bytes.
        challenge: B256,
    },
    /// The signature over the other side's challenge (see [`crate::handshake`]).
    Auth {
        /// The signature.
        signature: Sig,
    },
    /// A protocol message for one channel.
    Channel {
        /// The channel's contract address.
        channel: Address,
        /// The message.
        message: Message,
    },
    /// The other side refused a frame; its channel state is unchanged.
    Refused {
        /// The channel, if the frame named one.
        channel: Option<Address>,
        /// Why.
        reason: String,
    },
}

/// The payload of a frame (without the length prefix).
pub fn encode(frame: &Frame) -> Result<Vec<u8>> {
    serde_json::to_vec(frame).map_err(|e| Error::Malformed(e.to_string()))
}

/// Decodes a frame's payload.
pub fn decode(payload: &[u8]) -> Result<Frame> {
    if payload.len() > MAX_FRAME {
        return Err(Error::Oversize(payload.len()));
    }
    serde_json::from_slice(payload).map_err(|e| Error::Malformed(e.to_string()))
}

/// Reads one frame; the declared length is checked before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Error::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(Error::Oversize(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::Closed,
        _ => e.into(),
    })?;
    decode(&buf)
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> Result<()> {
    let payload = encode(frame)?;
    let len = u32::try_from(payload.len()).map_err(|_| Error::Oversize(payload.len()))?;
    if payload.len() > MAX_FRAME {
        return Err(Error::Oversize(payload.len()));
    }
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&payload);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_typed_errors() {
        let f = Frame::Channel {
            channel: Address::repeat_byte(1),
            message: Message::Revoke { nonce: 3, secret: B256::repeat_byte(2) },
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &f).await.expect("write");
        let mut r = buf.as_slice();
        assert_eq!(read_frame(&mut r).await.expect("read"), f);
        // oversize: refused from the length alone
        let mut big = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        big.extend_from_slice(b"{}");
        assert!(matches!(read_frame(&mut big.as_slice()).await, Err(Error::Oversize(n)) if n == MAX_FRAME + 1));
        // malformed JSON, unknown kinds, wrong field types
        for bad in [&b"{"[..], b"{\"frame\":\"nope\"}", b"{\"frame\":\"auth\",\"signature\":\"0x12\"}", b"\xff\xfe"] {
            let mut framed = (bad.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(bad);
            assert!(matches!(read_frame(&mut framed.as_slice()).await, Err(Error::Malformed(_))), "{bad:?}");
        }
        // truncated
        let mut cut = buf.clone();
        cut.truncate(buf.len() - 1);
        assert!(matches!(read_frame(&mut cut.as_slice()).await, Err(Error::Closed)));
        assert!(matches!(read_frame(&mut &b""[..]).await, Err(Error::Closed)));
    }

    proptest::proptest! {
        /// The decoder never panics and never accepts more than the limit, whatever the bytes.
        #[test]
        fn decoder_survives_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let _ = rt.block_on(read_frame(&mut bytes.as_slice()));
        }
    }
}
