//! Feishu/Lark event crypto: `key = sha256(encrypt_key)`, AES-256-CBC with the IV as the first
//! 16 bytes of the decoded ciphertext, PKCS#7 to 16; `X-Lark-Signature =
//! hex(sha256(timestamp + nonce + encrypt_key + raw_body))`.

use aes::cipher::{
    BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit, block_padding::NoPadding,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::envelope::strip_pkcs7;
use super::{OpenError, ct_eq, hex_lower};
use crate::secret::Secret;

/// A Feishu app's Encrypt Key with its AES key expanded once.
#[derive(Clone)]
pub struct FeishuKey {
    encrypt_key: Secret<String>,
    dec: aes::Aes256Dec,
    enc: aes::Aes256Enc,
}

impl std::fmt::Debug for FeishuKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeishuKey(***)")
    }
}

impl FeishuKey {
    pub fn new(encrypt_key: Secret<String>) -> Self {
        let key: [u8; 32] = Sha256::digest(encrypt_key.expose().as_bytes()).into();
        Self {
            dec: aes::Aes256Dec::new(&key.into()),
            enc: aes::Aes256Enc::new(&key.into()),
            encrypt_key,
        }
    }

    /// Decrypts the `encrypt` field of a callback body into the event JSON text.
    pub fn decrypt(&self, encrypt: &str) -> Result<String, OpenError> {
        let mut buf = STANDARD.decode(encrypt).map_err(|_| OpenError::Base64)?;
        // IV plus at least one block, whole blocks only (as lark-oapi requires).
        if buf.len() < 32 || buf.len() % 16 != 0 {
            return Err(OpenError::CipherLength(buf.len()));
        }
        let (iv, body) = buf.split_at_mut(16);
        let iv: [u8; 16] = (&*iv).try_into().map_err(|_| OpenError::CipherLength(16))?;
        cbc::Decryptor::<aes::Aes256Dec>::inner_iv_init(self.dec.clone(), &iv.into())
            .decrypt_padded::<NoPadding>(body)
            .map_err(|_| OpenError::Padding)?;
        let len = strip_pkcs7(body, 16)?;
        buf.drain(..16);
        buf.truncate(len);
        String::from_utf8(buf).map_err(|_| OpenError::NotUtf8)
    }

    /// Encrypts `plaintext` with the given IV (what Feishu does; used by tests and tools).
    pub fn encrypt(&self, iv: &[u8; 16], plaintext: &[u8]) -> String {
        let pad = 16 - plaintext.len() % 16;
        let mut buf = Vec::with_capacity(16 + plaintext.len() + pad);
        buf.extend_from_slice(iv);
        buf.extend_from_slice(plaintext);
        buf.resize(16 + plaintext.len() + pad, pad as u8);
        let n = buf.len() - 16;
        cbc::Encryptor::<aes::Aes256Enc>::inner_iv_init(self.enc.clone(), &(*iv).into())
            .encrypt_padded::<NoPadding>(&mut buf[16..], n)
            .expect("buffer is a whole number of blocks");
        STANDARD.encode(buf)
    }

    /// `hex(sha256(timestamp ‖ nonce ‖ encrypt_key ‖ raw_body))`.
    pub fn signature(&self, timestamp: &str, nonce: &str, raw_body: &[u8]) -> [u8; 64] {
        let mut h = Sha256::new();
        h.update(timestamp.as_bytes());
        h.update(nonce.as_bytes());
        h.update(self.encrypt_key.expose().as_bytes());
        h.update(raw_body);
        hex_lower(&h.finalize().into())
    }

    /// Checks `X-Lark-Signature` over the raw body bytes, in constant time.
    pub fn verify_signature(
        &self,
        timestamp: &str,
        nonce: &str,
        raw_body: &[u8],
        received: &str,
    ) -> Result<(), OpenError> {
        let expected = self.signature(timestamp, nonce, raw_body);
        if ct_eq(received.as_bytes(), &expected) {
            Ok(())
        } else {
            Err(OpenError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = FeishuKey::new("k".into());
        let ct = key.encrypt(&[7; 16], b"{\"a\":1}");
        assert_eq!(key.decrypt(&ct).unwrap(), "{\"a\":1}");
        let ct16 = key.encrypt(&[7; 16], &[b'x'; 16]);
        assert_eq!(key.decrypt(&ct16).unwrap(), "x".repeat(16));
    }
}
