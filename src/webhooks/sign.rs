//! Standard Webhooks 1.0 signatures: `webhook-signature: v1,<base64 of
//! HMAC-SHA256("{webhook-id}.{webhook-timestamp}.{body}")>`, keyed with the
//! bytes a `whsec_<base64>` secret encodes.

use base64::Engine;
use sha2::{Digest, Sha256};

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`.
#[must_use]
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The key a `whsec_<base64>` secret stands for; an error says what is wrong with it.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let Some(b64) = secret.strip_prefix("whsec_") else {
        return Err("must start with whsec_ (Standard Webhooks), then base64 of 24 to 64 random bytes".into());
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64.trim_end_matches('=')))
        .map_err(|e| format!("is not base64 after whsec_: {e}"))?;
    if key.is_empty() {
        return Err("is empty".into());
    }
    Ok(key)
}

/// The `webhook-signature` header for one attempt.
#[must_use]
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mac = hmac_sha256(key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The reference libraries' own test vector.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn hmac_matches_rfc_4231_with_a_key_longer_than_a_block() {
        // RFC 4231 test case 6.
        let key = [0xaa_u8; 131];
        let mac = hmac_sha256(&key, b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn secrets_without_the_prefix_or_with_nothing_in_them_are_refused() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err().contains("whsec_"));
        assert!(decode_secret("whsec_").unwrap_err().contains("empty"));
        assert!(decode_secret("whsec_***").unwrap_err().contains("base64"));
    }
}
