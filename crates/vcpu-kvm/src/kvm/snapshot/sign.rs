//! Signed snapshots: an HMAC-SHA-256 tag over the header and the state, and a SHA-256
//! digest of each chunk of memory data in the state. Restoring with the key checks the
//! tag before anything of the state is decoded, and every chunk against its digest
//! before memory is mapped. (The CRCs of an unsigned file catch accidents only: anyone
//! can forge a CRC.)

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub(crate) type Digest32 = [u8; 32];

/// The digest of no data: a chunk with no pages present.
pub(crate) fn empty_digest() -> Digest32 {
    Sha256::digest([]).into()
}

/// The HMAC of a file being checked or written, fed in order: header, then state.
pub(crate) struct Signer(Hmac<Sha256>);

impl Signer {
    /// `None` for an empty key (refused by the callers with their own message).
    pub(crate) fn new(key: &[u8]) -> Option<Signer> {
        if key.is_empty() {
            return None;
        }
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(key).ok().map(Signer)
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn tag(self) -> Digest32 {
        self.0.finalize().into_bytes().into()
    }

    /// Whether `tag` is this data's (in constant time).
    pub(crate) fn verify(self, tag: &Digest32) -> bool {
        self.0.verify_slice(tag).is_ok()
    }
}

/// A fingerprint of a key, to remember which files passed a check with it (never the
/// key itself).
pub(crate) fn key_id(key: &[u8]) -> Digest32 {
    Sha256::digest(key).into()
}

/// SHA-256 of each chunk's data, fed in ascending chunk order (a chunk may come in
/// several pieces); chunks never fed keep the digest of no data.
pub(crate) struct ChunkDigests {
    digests: Vec<Digest32>,
    open: Option<(usize, Sha256)>,
}

impl ChunkDigests {
    pub(crate) fn new(chunks: usize) -> Self {
        ChunkDigests {
            digests: vec![empty_digest(); chunks],
            open: None,
        }
    }

    pub(crate) fn update(&mut self, chunk: usize, data: &[u8]) {
        if self.open.as_ref().is_none_or(|(c, _)| *c != chunk) {
            self.close();
            self.open = Some((chunk, Sha256::new()));
        }
        if let Some((_, hasher)) = &mut self.open {
            hasher.update(data);
        }
    }

    fn close(&mut self) {
        if let Some((chunk, hasher)) = self.open.take() {
            self.digests[chunk] = hasher.finalize().into();
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Digest32> {
        self.close();
        self.digests
    }
}

/// SHA-256 of `data` (one chunk of a diff's packed pages).
pub(crate) fn digest(data: &[u8]) -> Digest32 {
    Sha256::digest(data).into()
}

/// A chunk's running SHA-256 while it is checked.
pub(crate) struct ChunkHasher(Sha256);

impl ChunkHasher {
    pub(crate) fn new() -> Self {
        ChunkHasher(Sha256::new())
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn matches(self, want: &Digest32) -> bool {
        let got: Digest32 = self.0.finalize().into();
        // Not secret: the digest is in the (authenticated) state.
        got == *want
    }
}
