//! Peer authentication: each side signs the other's fresh challenge.

use alloy_primitives::{Address, B256, Signature, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use tokio::io::{AsyncRead, AsyncWrite};
use vbank_core::Sig;

use crate::{Error, Frame, Result, read_frame, write_frame};

const TAG: &[u8] = b"vbank/auth/v1";

/// What a party signs to prove, on this connection, that it controls `signer`.
fn auth_digest(challenge: &B256, signer: Address) -> B256 {
    let mut data = Vec::with_capacity(TAG.len() + 52);
    data.extend_from_slice(TAG);
    data.extend_from_slice(challenge.as_slice());
    data.extend_from_slice(signer.as_slice());
    keccak256(data)
}

/// Runs the handshake on a fresh connection and returns the authenticated peer address.
/// `expected` decides whether a proven address may talk to this node at all; messages from an
/// unauthenticated or unexpected peer are never read.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &PrivateKeySigner,
    expected: impl Fn(Address) -> bool,
) -> Result<Address> {
    let challenge = PrivateKeySigner::random().to_bytes();
    write_frame(stream, &Frame::Hello { address: me.address(), challenge }).await?;
    let Frame::Hello { address: peer, challenge: theirs } = read_frame(stream).await? else {
        return Err(Error::Auth("expected a hello".into()));
    };
    if !expected(peer) {
        return Err(Error::Auth(format!("{peer} is not a peer of any channel here")));
    }
    let sig = me.sign_hash_sync(&auth_digest(&theirs, me.address())).map_err(|e| Error::Auth(e.to_string()))?;
    write_frame(stream, &Frame::Auth { signature: Sig(sig.as_bytes()) }).await?;
    let Frame::Auth { signature } = read_frame(stream).await? else {
        return Err(Error::Auth("expected an auth signature".into()));
    };
    let parsed = Signature::from_raw(signature.as_bytes()).map_err(|e| Error::Auth(e.to_string()))?;
    let recovered =
        parsed.recover_address_from_prehash(&auth_digest(&challenge, peer)).map_err(|e| Error::Auth(e.to_string()))?;
    if recovered != peer {
        return Err(Error::Auth(format!("the peer claims {peer} but signed as {recovered}")));
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::with_last_byte(n)).expect("key")
    }

    #[tokio::test]
    async fn both_sides_learn_the_proven_address() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (ka, kb) = (key(1), key(2));
        let (aa, ab) = (ka.address(), kb.address());
        let (ra, rb) = tokio::join!(handshake(&mut a, &ka, |p| p == ab), handshake(&mut b, &kb, |p| p == aa));
        assert_eq!(ra.expect("a"), ab);
        assert_eq!(rb.expect("b"), aa);
    }

    #[tokio::test]
    async fn an_unexpected_peer_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (ka, kb) = (key(1), key(2));
        let refusing = async move {
            let r = handshake(&mut a, &ka, |_| false).await;
            drop(a); // hang up, as a node does
            r
        };
        let (ra, rb) = tokio::join!(refusing, handshake(&mut b, &kb, |_| true));
        assert!(matches!(ra, Err(Error::Auth(_))));
        assert!(matches!(rb, Err(Error::Closed)), "{rb:?}");
    }

    #[tokio::test]
    async fn an_impostor_is_refused() {
        // The impostor claims key 2's address but can only sign with key 3.
        let (mut a, mut b) = tokio::io::duplex(4096);
        let ka = key(1);
        let claimed = key(2).address();
        let impostor = key(3);
        let honest = handshake(&mut a, &ka, |p| p == claimed);
        let fake = async {
            write_frame(&mut b, &Frame::Hello { address: claimed, challenge: B256::ZERO }).await?;
            let Frame::Hello { challenge, .. } = read_frame(&mut b).await? else { panic!("hello") };
            let sig = impostor.sign_hash_sync(&auth_digest(&challenge, claimed)).expect("sign");
            write_frame(&mut b, &Frame::Auth { signature: Sig(sig.as_bytes()) }).await?;
            Ok::<_, Error>(())
        };
        let (r, _) = tokio::join!(honest, fake);
        assert!(matches!(r, Err(Error::Auth(ref m)) if m.contains("signed as")), "{r:?}");
    }
}
