//! The gocryptfs v2 on-disk format (default feature flags of gocryptfs 2.3/2.4: HKDF,
//! GCMIV128, DirIV, EMENames, LongNames, Raw64) and a tree decryptor.
//!
//! Layers: [`config`] (gocryptfs.conf, scrypt key unwrap) → [`keys`] (HKDF working keys) →
//! [`names`] (EME + base64url + long names) and [`content`] (AES-256-GCM 4 KiB blocks with
//! 128-bit nonces) → [`tree`] (walks a cipher directory and writes plaintext). The cipher
//! directory is treated as hostile (the host controls its storage): see [`tree`] for what
//! decryption does and does not trust.
//!
//! Unlock a gocryptfs directory with its password and decrypt the whole tree (each file is
//! written whole or not at all; the summary lists what failed):
//!
//! ```no_run
//! use coffer_cryptfs::{tree, Config};
//! use std::path::Path;
//!
//! let cipher = Path::new("/mnt/cipher");
//! let config = Config::load_from_dir(cipher)?; // gocryptfs.conf, parsed as hostile input
//! let keys = config.unlock(b"the password")?.keys();
//! let summary = tree::decrypt_tree(&config, &keys, cipher, Path::new("/mnt/model"), &|_| {})?;
//! assert!(summary.failures.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod config;
pub mod content;
pub mod digest;
mod eme;
mod encrypt_tree;
mod fsat;
mod gcm;
pub mod keys;
pub mod names;
mod special;
pub mod tree;
pub mod xattrs;

pub use encrypt_tree::encrypt_tree;

pub use config::{Config, ConfigError, CreateError};
pub use digest::ModelDigest;
pub use gcm::GcmError;
pub use keys::{ContentKey, Keys, MasterKey, NameKey};
pub use tree::{EntryError, TreeError};
