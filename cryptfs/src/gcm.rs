//! AES-256-GCM with 16-byte nonces through OpenSSL's EVP interface, whose stitched
//! AES-NI/CLMUL code is several times faster than the pure-Rust implementation. One context
//! per worker keeps the key schedule; only the nonce is reset per block.

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;

/// OpenSSL could not set up or run AES-256-GCM (not expected with any OpenSSL that has
/// AES-256-GCM; an authentication failure is not this error).
#[derive(Debug, thiserror::Error)]
#[error("OpenSSL AES-256-GCM failed")]
pub struct GcmError(#[source] Option<ErrorStack>);

impl GcmError {
    /// The same failure again, for a worker whose context already failed once (OpenSSL's
    /// detail went with the first report).
    pub(crate) fn again() -> Self {
        GcmError(None)
    }
}

impl From<ErrorStack> for GcmError {
    fn from(e: ErrorStack) -> Self {
        GcmError(Some(e))
    }
}

/// Which way a context works: fixed when it is keyed, because OpenSSL's encrypt and
/// decrypt contexts are initialised differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// A keyed AES-256-GCM context for one direction.
pub(crate) struct Gcm {
    ctx: CipherCtx,
    direction: Direction,
}

#[cfg(test)]
thread_local! {
    /// Test seam: contexts created on this thread fail as if OpenSSL lacked AES-256-GCM.
    static BROKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Test seam: makes every context created on the current thread fail (`true`) or work.
#[cfg(test)]
pub(crate) fn break_on_this_thread(broken: bool) {
    BROKEN.with(|b| b.set(broken));
}

impl Gcm {
    /// A context that encrypts with `key`.
    pub(crate) fn encryptor(key: &[u8; 32]) -> Result<Self, GcmError> {
        Self::new(key, Direction::Encrypt)
    }

    /// A context that decrypts and authenticates with `key`.
    pub(crate) fn decryptor(key: &[u8; 32]) -> Result<Self, GcmError> {
        Self::new(key, Direction::Decrypt)
    }

    fn new(key: &[u8; 32], direction: Direction) -> Result<Self, GcmError> {
        #[cfg(test)]
        if BROKEN.with(|b| b.get()) {
            return Err(GcmError(None));
        }
        let mut ctx = CipherCtx::new()?;
        match direction {
            Direction::Encrypt => ctx.encrypt_init(Some(Cipher::aes_256_gcm()), Some(key), None)?,
            Direction::Decrypt => ctx.decrypt_init(Some(Cipher::aes_256_gcm()), Some(key), None)?,
        }
        ctx.set_iv_length(16)?;
        Ok(Gcm { ctx, direction })
    }

    fn start(&mut self, nonce: &[u8; 16], aad: &[u8]) -> Result<(), ErrorStack> {
        match self.direction {
            Direction::Encrypt => self.ctx.encrypt_init(None, None, Some(nonce))?,
            Direction::Decrypt => self.ctx.decrypt_init(None, None, Some(nonce))?,
        }
        self.ctx.cipher_update(aad, None)?;
        Ok(())
    }

    /// Decrypts `data` in place and checks `tag`; `false` when it does not authenticate
    /// (any OpenSSL failure counts as that: nothing unauthenticated is ever accepted). On
    /// failure the buffer holds garbage that the caller must discard.
    pub(crate) fn open(
        &mut self,
        nonce: &[u8; 16],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; 16],
    ) -> bool {
        let mut run = || -> Result<(), ErrorStack> {
            self.start(nonce, aad)?;
            let n = data.len();
            self.ctx.cipher_update_inplace(data, n)?;
            self.ctx.set_tag(tag)?;
            self.ctx.cipher_final(&mut [])?;
            Ok(())
        };
        run().is_ok()
    }

    /// Decrypts `input` into `output` (same length) and checks `tag`, as [`Gcm::open`].
    /// On failure `output` holds unauthenticated bytes that the caller must overwrite.
    pub(crate) fn open_to(
        &mut self,
        nonce: &[u8; 16],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
        tag: &[u8; 16],
    ) -> bool {
        if input.len() != output.len() {
            return false;
        }
        let mut run = || -> Result<(), ErrorStack> {
            self.start(nonce, aad)?;
            self.ctx.cipher_update(input, Some(output))?;
            self.ctx.set_tag(tag)?;
            self.ctx.cipher_final(&mut [])?;
            Ok(())
        };
        run().is_ok()
    }

    /// Encrypts `input` into `output` (same length, else an error) and returns the tag.
    pub(crate) fn seal_to(
        &mut self,
        nonce: &[u8; 16],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; 16], GcmError> {
        if input.len() != output.len() {
            return Err(GcmError(None));
        }
        self.start(nonce, aad)?;
        self.ctx.cipher_update(input, Some(output))?;
        self.ctx.cipher_final(&mut [])?;
        let mut tag = [0u8; 16];
        self.ctx.tag(&mut tag)?;
        Ok(tag)
    }

    /// Encrypts `data` in place and returns the tag.
    pub(crate) fn seal(
        &mut self,
        nonce: &[u8; 16],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; 16], GcmError> {
        self.start(nonce, aad)?;
        let n = data.len();
        self.ctx.cipher_update_inplace(data, n)?;
        self.ctx.cipher_final(&mut [])?;
        let mut tag = [0u8; 16];
        self.ctx.tag(&mut tag)?;
        Ok(tag)
    }
}
