//! The BOLT #8 handshake and frames over a byte stream.
//!
//! The three acts have fixed sizes (50, 50 and 66 bytes): nothing else is read before the peer
//! is authenticated. After the handshake every [`Frame`] is one BOLT #8 message: an encrypted,
//! authenticated 2-byte length, then the encrypted, authenticated JSON payload. A message that
//! fails authentication is an [`Error::Transport`] and ends the link before anything is parsed.

use alloy_signer_local::PrivateKeySigner;
use k256::PublicKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    Error, Frame, Result, frame,
    noise::{
        ACT_ONE_LEN, ACT_THREE_LEN, ACT_TWO_LEN, Decryptor, Encryptor, HEADER_LEN, Initiator, Responder, Session,
        TAG_LEN,
    },
};

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<()> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Closed),
        Err(e) => Err(e.into()),
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<()> {
    w.write_all(bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Runs the initiator's side of the handshake with the node whose static key is `remote`.
/// Success means the other end holds `remote`'s secret key.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: &PrivateKeySigner,
    remote: &PublicKey,
) -> Result<Session> {
    let mut hs = Initiator::new(local.credential().as_nonzero_scalar(), *remote);
    send(stream, &hs.act_one()).await?;
    let mut two = [0u8; ACT_TWO_LEN];
    read_exact(stream, &mut two).await?;
    let (three, session) = hs.act_two(&two)?;
    send(stream, &three).await?;
    Ok(session)
}

/// Runs the responder's side of the handshake; returns the initiator's proven static key.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: &PrivateKeySigner,
) -> Result<(PublicKey, Session)> {
    let mut hs = Responder::new(local.credential().as_nonzero_scalar());
    let mut one = [0u8; ACT_ONE_LEN];
    read_exact(stream, &mut one).await?;
    send(stream, &hs.act_one(&one)?).await?;
    let mut three = [0u8; ACT_THREE_LEN];
    read_exact(stream, &mut three).await?;
    Ok(hs.act_three(&three)?)
}

/// Encrypts a frame into the bytes that go on the wire.
pub fn seal(tx: &mut Encryptor, f: &Frame) -> Result<Vec<u8>> {
    Ok(tx.encrypt(&frame::encode(f)?)?)
}

/// Writes one frame, encrypted, and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, tx: &mut Encryptor, f: &Frame) -> Result<()> {
    let bytes = seal(tx, f)?;
    send(w, &bytes).await
}

/// Reads one frame: the length is authenticated before the body is read (at most
/// [`crate::MAX_FRAME`] plus a tag), and the body before it is parsed.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, rx: &mut Decryptor) -> Result<Frame> {
    let mut header = [0u8; HEADER_LEN];
    read_exact(r, &mut header).await?;
    let len = rx.decrypt_length(&header)?;
    let mut body = vec![0u8; len + TAG_LEN];
    read_exact(r, &mut body).await?;
    frame::decode(&rx.decrypt_body(body)?)
}

/// What the fuzz target runs on each input, and a unit test on a corpus: any bytes as handshake
/// acts, as a received stream, and as a frame's plaintext must give a value or a typed error,
/// never a panic; what decrypts must be what was encrypted.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let _ = frame::decode(data);
    let key = |b: u8| {
        PrivateKeySigner::from_bytes(&alloy_primitives::B256::repeat_byte(b))
            .map(|k| *k.credential().as_nonzero_scalar())
    };
    let (Ok(a), Ok(b)) = (key(0x21), key(0x11)) else { return };
    match data.first() {
        // the responder facing arbitrary acts one and three
        Some(0) => {
            let mut r = Responder::new(&a);
            if let Some(one) = data.get(1..1 + ACT_ONE_LEN).and_then(|s| <[u8; ACT_ONE_LEN]>::try_from(s).ok())
                && r.act_one(&one).is_ok()
                && let Some(t) = data.get(51..51 + ACT_THREE_LEN).and_then(|s| s.try_into().ok())
            {
                let _ = r.act_three(&t);
            }
        }
        // the initiator facing an arbitrary act two
        Some(1) => {
            let mut i = Initiator::new(&b, PublicKey::from_secret_scalar(&a));
            let _ = i.act_one();
            if let Some(two) = data.get(1..1 + ACT_TWO_LEN).and_then(|s| <[u8; ACT_TWO_LEN]>::try_from(s).ok()) {
                let _ = i.act_two(&two);
            }
        }
        // arbitrary received bytes, decrypted as a stream
        Some(2) => {
            let (_, mut them) = Session::pair_for_tests([1; 32], [2; 32], [3; 32]);
            let (msgs, _) = them.receiver.decrypt_all(&data[1..]);
            for m in msgs {
                let _ = frame::decode(&m);
            }
        }
        // arbitrary plaintext through a real session: decrypts to itself, then parses or not
        _ => {
            let (mut us, mut them) = Session::pair_for_tests([1; 32], [2; 32], [3; 32]);
            let plain = data.get(1..).unwrap_or_default();
            let Ok(wire) = us.sender.encrypt(plain) else {
                assert!(plain.len() > crate::MAX_FRAME);
                return;
            };
            let (msgs, err) = them.receiver.decrypt_all(&wire);
            assert_eq!((msgs.as_slice(), err), (&[plain.to_vec()][..], None));
            if let Ok(f) = frame::decode(plain) {
                let again = frame::encode(&f).expect("a decoded frame encodes");
                assert_eq!(frame::decode(&again).expect("and decodes again"), f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, B256};
    use vbank_core::Message;

    use super::*;
    use crate::{NoiseError, uri::node_key};

    fn key(n: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::with_last_byte(n)).expect("key")
    }

    #[tokio::test]
    async fn both_sides_learn_the_proven_key_and_talk() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (ka, kb) = (key(1), key(2));
        let kb_pub = node_key(&kb);
        let (ra, rb) = tokio::join!(initiate(&mut a, &ka, &kb_pub), respond(&mut b, &kb));
        let mut sa = ra.expect("initiator");
        let (who, mut sb) = rb.expect("responder");
        assert_eq!(crate::noise::address_of(&who), ka.address());
        let f = Frame::Channel {
            more: Vec::new(),
            channel: Address::repeat_byte(1),
            message: Message::Revoke { nonce: 3, secret: B256::repeat_byte(2) },
            params: None,
        };
        for _ in 0..1200 {
            // past a key rotation both ways
            write_frame(&mut a, &mut sa.sender, &f).await.expect("write");
            assert_eq!(read_frame(&mut b, &mut sb.receiver).await.expect("read"), f);
            write_frame(&mut b, &mut sb.sender, &Frame::Init {}).await.expect("write");
            assert_eq!(read_frame(&mut a, &mut sa.receiver).await.expect("read"), Frame::Init {});
        }
    }

    #[tokio::test]
    async fn dialing_a_key_the_node_does_not_hold_fails_at_act_one() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (ka, kb) = (key(1), key(2));
        let responder = async {
            let r = respond(&mut b, &kb).await;
            drop(b); // hang up, as a node does
            r
        };
        let other = node_key(&key(3));
        let (ra, rb) = tokio::join!(initiate(&mut a, &ka, &other), responder);
        assert!(matches!(rb, Err(Error::Transport(NoiseError::BadHandshakeTag))), "{rb:?}");
        assert!(matches!(ra, Err(Error::Closed)), "{ra:?}");
    }

    #[tokio::test]
    async fn short_acts_and_streams_are_closed_connections() {
        // BOLT #8's short-read vectors: one byte short of an act.
        let (mut a, mut b) = tokio::io::duplex(4096);
        let short = async {
            tokio::io::AsyncWriteExt::write_all(&mut a, &[0u8; ACT_ONE_LEN - 1]).await.expect("write");
            drop(a);
        };
        let k2 = key(2);
        let (_, r) = tokio::join!(short, respond(&mut b, &k2));
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        let (mut us, mut them) = Session::pair_for_tests([1; 32], [2; 32], [3; 32]);
        let wire = seal(&mut us.sender, &Frame::Init {}).expect("seal");
        let r = read_frame(&mut &wire[..wire.len() - 1], &mut them.receiver).await;
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    }

    #[test]
    fn fuzz_entry_survives_a_few_shapes() {
        let (mut us, _) = Session::pair_for_tests([1; 32], [2; 32], [3; 32]);
        let mut stream = vec![2u8];
        stream.extend(seal(&mut us.sender, &Frame::Init {}).expect("seal"));
        for data in [&[][..], &[0; 117], &[1; 51], &stream, &[3, b'{'], b"\x03{\"init\":{}}"] {
            fuzz_one(data);
        }
    }
}
