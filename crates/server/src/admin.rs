//! The admin token: made at first start and printed once, kept only as a hash in the database;
//! `parley admin reset-token` makes a new one.

use anyhow::{Context, Result};

use crate::secret::{self, TokenHash};
use crate::store::Store;

const SETTING: &str = "admin_token_sha256";

fn to_hex(hash: &TokenHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<TokenHash> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new token when there is none yet (to print once), else `None`.
pub fn ensure_token(store: &Store) -> Result<Option<String>> {
    if store.setting(SETTING)?.and_then(|h| from_hex(&h)).is_some() {
        return Ok(None);
    }
    reset_token(store).map(Some)
}

/// Replaces the admin token; returns the new one (the only time it exists outside a hash).
pub fn reset_token(store: &Store) -> Result<String> {
    let token = secret::new_token().context("no randomness from the OS")?;
    store.set_setting(SETTING, &to_hex(&secret::hash_token(&token)))?;
    Ok(token)
}

/// The key recording download links are signed with: made once, kept in the database.
pub fn download_key(store: &Store) -> Result<[u8; 32]> {
    const KEY: &str = "download_key";
    if let Some(key) = store.setting(KEY)?.and_then(|h| from_hex(&h)) {
        return Ok(key);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    store.set_setting(KEY, &to_hex(&key))?;
    Ok(key)
}

pub fn token_hash(store: &Store) -> Result<TokenHash> {
    store
        .setting(SETTING)?
        .and_then(|h| from_hex(&h))
        .context("no admin token in the database")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = secret::hash_token("abc");
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }
}
