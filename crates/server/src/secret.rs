//! Secrets: random tokens (owner keys, invites, the admin token), kept only as SHA-256 hashes, and room
//! passwords, kept as argon2id hashes. A token is 128 random bits, so a fast hash is enough for it; a
//! password is chosen by people, so it gets a slow one.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// What is stored of a token.
pub type TokenHash = [u8; 32];

/// Longest password accepted (argon2 takes anything; a cap keeps hashing time bounded).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A new random token: 16 bytes from the OS, 22 characters of base64url.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A download link's signature: HMAC-SHA256 over the recording, the file and the expiry, base64url.
pub fn sign_download(key: &[u8; 32], recording: i64, file: &str, expires_ms: i64) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // A 32-byte key always fits HMAC.
        Err(_) => return String::new(),
    };
    mac.update(format!("{recording}/{file}/{expires_ms}").as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Checks a download link's signature (in constant time) and expiry.
pub fn verify_download(
    key: &[u8; 32],
    recording: i64,
    file: &str,
    expires_ms: i64,
    signature: &str,
    now_ms: i64,
) -> bool {
    use hmac::{KeyInit, Mac};
    if expires_ms < now_ms {
        return false;
    }
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(format!("{recording}/{file}/{expires_ms}").as_bytes());
    mac.verify_slice(&sig).is_ok()
}

pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// An argon2id hash in PHC form (salt and parameters included).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `hash` (false for a hash that cannot be read).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A password as it may be set: 1–128 characters, not only spaces.
pub fn validate_password(password: &str) -> Result<&str, &'static str> {
    let count = password.chars().count();
    if password.trim().is_empty() || count > MAX_PASSWORD_CHARS {
        return Err("passwords are 1 to 128 characters");
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_the_same_token_matches_its_hash() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a));
        // One character changed: another hash.
        let mut edited = a.clone().into_bytes();
        edited[5] = if edited[5] == b'A' { b'B' } else { b'A' };
        assert_ne!(
            hash_token(&a),
            hash_token(&String::from_utf8(edited).unwrap())
        );
    }

    #[test]
    fn passwords_verify_with_argon2id() {
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("s3cret", &hash));
        assert!(!verify_password("s3cret ", &hash));
        assert!(!verify_password("s3cret", "not a hash"));
        assert!(validate_password(" ").is_err());
        assert!(validate_password(&"x".repeat(129)).is_err());
    }
}
