//! Encryption at rest for integration credentials, tenant CA keys and
//! onboarding packages: AES-256-GCM (ring), a random nonce per value, and
//! a context string bound as associated data so a ciphertext cannot be moved
//! to another row or column. The key lives in a file the bootstrap creates
//! with mode 0600.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

const PREFIX: &str = "v1:";
const KEY_LEN: usize = 32;

/// A secrets failure. Messages never contain plaintext.
#[derive(Debug, Error)]
pub enum SecretsError {
    /// The key file could not be read or written.
    #[error("secrets key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file does not hold a 32-byte base64 key.
    #[error(
        "secrets key file {path} does not hold a base64 32-byte key; restore it from backup (credentials encrypted with another key cannot be read)"
    )]
    BadKey {
        /// The key file.
        path: String,
    },
    /// A ciphertext was damaged, or sealed under another key or context.
    #[error(
        "cannot decrypt {context}: the value is damaged or was encrypted with another secrets key"
    )]
    Decrypt {
        /// What was being decrypted.
        context: String,
    },
    /// The system random source failed.
    #[error("system random number generator failed")]
    Random,
}

/// Seals and opens values with the gateway's secrets key.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box over raw key bytes.
    pub fn from_key(key: &[u8; KEY_LEN]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| {
            // AES-256-GCM accepts every 32-byte key; this cannot happen.
            unreachable!("AES-256-GCM rejects no 32-byte key")
        });
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// Creates a new random key file (mode 0600). Refuses to overwrite.
    pub fn create_key_file(path: &Path) -> Result<(), SecretsError> {
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SecretsError::Random)?;
        let io = |source| SecretsError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = private_file(path).map_err(io)?;
        file.write_all(format!("{}\n", STANDARD.encode(key)).as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Loads the key file.
    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let bad = || SecretsError::BadKey {
            path: path.display().to_string(),
        };
        let bytes = STANDARD.decode(text.trim()).map_err(|_| bad())?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| bad())?;
        Ok(Self::from_key(&key))
    }

    /// Encrypts `plaintext`, binding `context` (e.g.
    /// `integration_source:<id>:credentials`).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| SecretsError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buffer.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Decrypts a value sealed with the same key and `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SecretsError> {
        let err = || SecretsError::Decrypt {
            context: context.to_string(),
        };
        let body = sealed.strip_prefix(PREFIX).ok_or_else(err)?;
        let mut bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| err())?;
        if bytes.len() < NONCE_LEN {
            return Err(err());
        }
        let nonce: [u8; NONCE_LEN] = bytes[..NONCE_LEN].try_into().map_err(|_| err())?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| err())?;
        Ok(plain.to_vec())
    }
}

/// Creates a new file readable by the owner only; fails if it exists.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `contents` to a new owner-only file; fails if it exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = private_file(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let b = SecretBox::from_key(&[7u8; 32]);
        let a1 = b.seal("ctx", b"hunter2").unwrap();
        let a2 = b.seal("ctx", b"hunter2").unwrap();
        assert_ne!(a1, a2, "nonce must differ per value");
        assert!(!a1.contains("hunter2"));
        assert_eq!(b.open("ctx", &a1).unwrap(), b"hunter2");
    }

    #[test]
    fn wrong_context_key_or_tampering_fails() {
        let b = SecretBox::from_key(&[7u8; 32]);
        let sealed = b.seal("source:1", b"hunter2-xyz").unwrap();
        assert!(b.open("source:2", &sealed).is_err());
        assert!(
            SecretBox::from_key(&[8u8; 32])
                .open("source:1", &sealed)
                .is_err()
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(b.open("source:1", &tampered).is_err());
        let message = b.open("source:2", &sealed).unwrap_err().to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn key_file_is_private_and_loads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        SecretBox::create_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            SecretBox::create_key_file(&path).is_err(),
            "never overwrite"
        );
        let a = SecretBox::load(&path).unwrap();
        let b = SecretBox::load(&path).unwrap();
        assert_eq!(b.open("c", &a.seal("c", b"x").unwrap()).unwrap(), b"x");
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(
            SecretBox::load(&path),
            Err(SecretsError::BadKey { .. })
        ));
    }
}
