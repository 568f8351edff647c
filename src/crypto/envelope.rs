//! The WXBizMsgCrypt envelope shared by WeCom, WeChat MP and DingTalk.
//! `msg_signature = sha1(sorted [token, timestamp, nonce, encrypt])`; AES-256-CBC with
//! IV = key[..16]; PKCS#7 to a multiple of 32; plaintext `random16 ‖ u32be len ‖ msg ‖ receive_id`.

use aes::cipher::{
    BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit, block_padding::NoPadding,
};
use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use sha1::{Digest, Sha1};

use super::{Freshness, OpenError, Verified, ct_eq, hex_lower};
use crate::secret::Secret;

/// `EncodingAESKey + "="` usually has non-zero trailing bits; the vendors' decoders ignore them.
const KEY_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The WXBizMsgCrypt padding block (not the AES block size).
const PAD_BLOCK: usize = 32;

/// A malformed EncodingAESKey (WXBizMsgCrypt `IllegalAesKey`, -40004).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be 43 characters, got {0}")]
    Length(usize),
    #[error("must be base64 ([A-Za-z0-9+/]), found {0:?}")]
    Char(char),
}

impl KeyError {
    pub const CODE: i32 = -40004;
}

/// One expanded AES key: built once per receiver at config load, used for every message.
#[derive(Clone)]
pub struct AesKey {
    dec: aes::Aes256Dec,
    enc: aes::Aes256Enc,
    iv: [u8; 16],
}

impl AesKey {
    /// `AESKey = base64decode(EncodingAESKey + "=")`: 43 characters → 32 bytes.
    pub fn from_encoding_aes_key(encoding_aes_key: &str) -> Result<Self, KeyError> {
        let n = encoding_aes_key.chars().count();
        if n != 43 {
            return Err(KeyError::Length(n));
        }
        if let Some(c) = encoding_aes_key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '+' || *c == '/'))
        {
            return Err(KeyError::Char(c));
        }
        let mut padded = String::with_capacity(44);
        padded.push_str(encoding_aes_key);
        padded.push('=');
        let mut key = [0u8; 32];
        // 43 base64 chars + "=" always decode to exactly 32 bytes.
        let n = KEY_B64
            .decode_slice(padded.as_bytes(), &mut key)
            .map_err(|_| KeyError::Length(43))?;
        debug_assert_eq!(n, 32);
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key[..16]);
        let out = Self {
            dec: aes::Aes256Dec::new(&key.into()),
            enc: aes::Aes256Enc::new(&key.into()),
            iv,
        };
        zeroize::Zeroize::zeroize(&mut key);
        Ok(out)
    }

    /// Decrypts `encrypt` and returns the message, checking every layer strictly.
    pub fn decrypt(&self, encrypt: &str, receive_id: &str) -> Result<Vec<u8>, OpenError> {
        let mut buf = Vec::with_capacity(encrypt.len() / 4 * 3 + 3);
        STANDARD
            .decode_vec(encrypt, &mut buf)
            .map_err(|_| OpenError::Base64)?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(OpenError::CipherLength(buf.len()));
        }
        cbc::Decryptor::<aes::Aes256Dec>::inner_iv_init(self.dec.clone(), &self.iv.into())
            .decrypt_padded::<NoPadding>(&mut buf)
            .map_err(|_| OpenError::Padding)?;
        let content_len = strip_pkcs7(&buf, PAD_BLOCK)?;
        let content = &buf[..content_len];
        if content.len() < 20 {
            return Err(OpenError::IllegalBuffer);
        }
        let msg_len = u32::from_be_bytes([content[16], content[17], content[18], content[19]]);
        let msg_end = usize::try_from(msg_len)
            .ok()
            .and_then(|n| n.checked_add(20))
            .filter(|end| *end <= content.len())
            .ok_or(OpenError::IllegalBuffer)?;
        let got = &content[msg_end..];
        if got != receive_id.as_bytes() {
            return Err(OpenError::ReceiveId {
                got: String::from_utf8_lossy(got).chars().take(64).collect(),
            });
        }
        buf.copy_within(20..msg_end, 0);
        buf.truncate(msg_end - 20);
        Ok(buf)
    }

    /// Encrypts `msg` for `receive_id` with the given 16-byte random prefix.
    pub fn encrypt(&self, random: &[u8; 16], msg: &[u8], receive_id: &str) -> String {
        let len = 20 + msg.len() + receive_id.len();
        let pad = PAD_BLOCK - len % PAD_BLOCK;
        let mut buf = Vec::with_capacity(len + pad);
        buf.extend_from_slice(random);
        // Messages are bounded by the body limit, far below 4 GiB.
        buf.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(msg);
        buf.extend_from_slice(receive_id.as_bytes());
        buf.resize(len + pad, pad as u8);
        let n = buf.len();
        let ct = cbc::Encryptor::<aes::Aes256Enc>::inner_iv_init(self.enc.clone(), &self.iv.into())
            .encrypt_padded::<NoPadding>(&mut buf, n)
            .expect("buffer is a whole number of blocks");
        STANDARD.encode(ct)
    }
}

/// Checks PKCS#7 padding of `block` bytes (every pad byte) and returns the content length.
pub(crate) fn strip_pkcs7(buf: &[u8], block: usize) -> Result<usize, OpenError> {
    let pad = usize::from(*buf.last().ok_or(OpenError::Padding)?);
    if pad == 0 || pad > block || pad > buf.len() {
        return Err(OpenError::Padding);
    }
    let (content, padding) = buf.split_at(buf.len() - pad);
    if padding.iter().any(|b| usize::from(*b) != pad) {
        return Err(OpenError::Padding);
    }
    Ok(content.len())
}

/// `hex(sha1(concat(sorted(parts))))`, lowercase: the signature of the whole family
/// (4 parts for `msg_signature`, 3 for WeChat MP's plain `signature`).
pub fn signature(parts: &mut [&[u8]]) -> [u8; 40] {
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts.iter() {
        h.update(p);
    }
    hex_lower(&h.finalize().into())
}

/// Checks a received signature in constant time.
pub fn verify_signature(parts: &mut [&[u8]], received: &str) -> Result<(), OpenError> {
    let expected = signature(parts);
    if ct_eq(received.as_bytes(), &expected) {
        Ok(())
    } else {
        Err(OpenError::BadSignature)
    }
}

/// The signature parameters of a request.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
}

/// A decrypted message and which key opened it (0 current, 1 previous).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub message: Vec<u8>,
    pub key_index: usize,
}

/// An encrypted reply with its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub encrypt: String,
    pub msg_signature: String,
}

impl Sealed {
    /// The passive-reply XML of the official SDKs (`AES_TEXT_RESPONSE_TEMPLATE`).
    pub fn to_xml(&self, timestamp: &str, nonce: &str) -> String {
        format!(
            "<xml>\n<Encrypt><![CDATA[{}]]></Encrypt>\n<MsgSignature><![CDATA[{}]]></MsgSignature>\n\
             <TimeStamp>{timestamp}</TimeStamp>\n<Nonce><![CDATA[{nonce}]]></Nonce>\n</xml>",
            self.encrypt, self.msg_signature
        )
    }
}

/// A receiver's credentials: Token, current and previous EncodingAESKey, receive id.
#[derive(Clone)]
pub struct Envelope {
    token: Secret<String>,
    keys: Vec<AesKey>,
    receive_id: String,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("token", &self.token)
            .field("keys", &self.keys.len())
            .field("receive_id", &self.receive_id)
            .finish()
    }
}

impl Envelope {
    pub fn new(token: Secret<String>, keys: Vec<AesKey>, receive_id: String) -> Self {
        assert!(!keys.is_empty(), "an envelope needs at least one key");
        Self {
            token,
            keys,
            receive_id,
        }
    }

    pub fn token(&self) -> &Secret<String> {
        &self.token
    }

    pub fn receive_id(&self) -> &str {
        &self.receive_id
    }

    /// Verifies `msg_signature` over `encrypt`, then the timestamp, then decrypts with the
    /// current key and, if that fails, the previous one. Nothing is decrypted before the
    /// signature passed.
    pub fn open(
        &self,
        signed: &Signed<'_>,
        encrypt: &str,
        fresh: Freshness,
    ) -> Result<Verified<Opened>, OpenError> {
        let token = self.token.expose().as_bytes();
        let mut parts = [
            token,
            signed.timestamp.as_bytes(),
            signed.nonce.as_bytes(),
            encrypt.as_bytes(),
        ];
        verify_signature(&mut parts, signed.signature)?;
        fresh.check(signed.timestamp)?;
        let mut first_err = None;
        for (key_index, key) in self.keys.iter().enumerate() {
            match key.decrypt(encrypt, &self.receive_id) {
                Ok(message) => return Ok(Verified::new(Opened { message, key_index })),
                // Errors before the AES step do not depend on the key: no point trying another.
                Err(e @ (OpenError::Base64 | OpenError::CipherLength(_))) => return Err(e),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(OpenError::Padding))
    }

    /// Encrypts a reply with the key at `key_index` (the one that opened the request).
    pub fn seal(&self, key_index: usize, msg: &[u8], timestamp: &str, nonce: &str) -> Sealed {
        self.seal_with_random(key_index, &random_alnum(), msg, timestamp, nonce)
    }

    /// [`Envelope::seal`] with a fixed random prefix, for known-answer tests.
    pub fn seal_with_random(
        &self,
        key_index: usize,
        random: &[u8; 16],
        msg: &[u8],
        timestamp: &str,
        nonce: &str,
    ) -> Sealed {
        let key = &self.keys[key_index.min(self.keys.len() - 1)];
        let encrypt = key.encrypt(random, msg, &self.receive_id);
        let token = self.token.expose().as_bytes();
        let mut parts = [
            token,
            timestamp.as_bytes(),
            nonce.as_bytes(),
            encrypt.as_bytes(),
        ];
        let sig = signature(&mut parts);
        Sealed {
            msg_signature: String::from_utf8_lossy(&sig).into_owned(),
            encrypt,
        }
    }
}

/// 16 random ASCII letters and digits, as the official SDKs use for prefixes and nonces.
pub fn random_alnum() -> [u8; 16] {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes.map(|b| CHARS[usize::from(b) % CHARS.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

    #[test]
    fn key_with_trailing_bits_decodes() {
        assert!(AesKey::from_encoding_aes_key(KEY).is_ok());
        assert_eq!(
            AesKey::from_encoding_aes_key(&KEY[..42]).err(),
            Some(KeyError::Length(42))
        );
    }

    #[test]
    fn seal_then_open_round_trips_with_rotation() {
        let old = AesKey::from_encoding_aes_key(KEY).unwrap();
        let new =
            AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let before = Envelope::new("tok".into(), vec![old.clone()], "corp".into());
        let after = Envelope::new("tok".into(), vec![new, old], "corp".into());
        let sealed = before.seal(0, "héllo".as_bytes(), "1", "n");
        let signed = Signed {
            timestamp: "1",
            nonce: "n",
            signature: &sealed.msg_signature,
        };
        let fresh = Freshness {
            now_ms: 0,
            window_secs: 0,
        };
        let opened = after.open(&signed, &sealed.encrypt, fresh).unwrap();
        assert_eq!(opened.get().message, "héllo".as_bytes());
        assert_eq!(opened.get().key_index, 1);
    }

    #[test]
    fn padding_is_checked_byte_by_byte() {
        assert_eq!(strip_pkcs7(&[1, 2, 3, 2, 2], 32), Ok(3));
        assert_eq!(strip_pkcs7(&[1, 3, 2], 32), Err(OpenError::Padding));
        assert_eq!(strip_pkcs7(&[0], 32), Err(OpenError::Padding));
        assert_eq!(strip_pkcs7(&[33; 40], 32), Err(OpenError::Padding));
        assert_eq!(strip_pkcs7(&[], 32), Err(OpenError::Padding));
    }
}
