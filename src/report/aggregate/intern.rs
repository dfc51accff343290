//! One shared allocation per distinct record-level string.

use std::sync::Arc;

/// Hands out one shared copy of each distinct string. Bounded: past
/// `MAX_INTERNED` distinct values it stops remembering new ones.
#[derive(Default)]
pub(super) struct Interner {
    known: std::collections::HashSet<Arc<str>, std::hash::BuildHasherDefault<FnvHasher>>,
}

/// FNV-1a: short keys (domains, selectors) from a document being parsed;
/// much cheaper than SipHash here, and an attacker who makes values collide
/// only slows their own report down, bounded by `MAX_INTERNED`.
struct FnvHasher(u64);

impl Default for FnvHasher {
    #[inline]
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

const MAX_INTERNED: usize = 200_000;

impl Interner {
    // Called for most values of every record: inlined into the parser, as
    // it was when this lived in state.rs (out of line it cost 4% of a
    // 100,000-record parse, most of it in memcmp calls).
    #[inline]
    pub(super) fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.known.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        if self.known.len() < MAX_INTERNED {
            self.known.insert(Arc::clone(&shared));
        }
        shared
    }
}
