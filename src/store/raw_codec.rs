//! How the raw bytes of a message are kept in `inbox_raw`: each chunk on
//! its own, deflated (fast level) when that saves at least a tenth (report mail is
//! mostly base64, which deflate shrinks by about a quarter; an attachment
//! sent as plain XML by much more), else as received. Each chunk is
//! compressed alone so that reading a message still needs one chunk's
//! copy at a time, and a row says how it is kept, so rows written before
//! compression (all `none`) read as they always did.

use std::io::{Read, Write};

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::rows::RAW_CHUNK_BYTES;
use super::{StoreError, StoreResult};

/// Chunks shorter than this are kept as they are: too small to pay.
const MIN_COMPRESSED_BYTES: usize = 1024;
/// Level 1: on report XML a few times faster than level 6 for a few
/// percent more bytes; intake speed matters more here than the last bytes.
const LEVEL: u32 = 1;
/// Deflate is slowest on what it cannot shrink: a chunk's first bytes are
/// tried first, and a chunk whose sample does not shrink by a tenth is
/// kept as it is (after files known by their magic bytes, below).
const SAMPLE_BYTES: usize = 64 * 1024;

/// How one stored chunk is kept (`inbox_raw.compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    None,
    Deflate,
}

impl Codec {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Deflate => "deflate",
        }
    }

    fn parse(text: &str) -> StoreResult<Codec> {
        match text {
            "none" => Ok(Codec::None),
            "deflate" => Ok(Codec::Deflate),
            other => Err(StoreError::Corrupt(format!(
                "inbox_raw.compression {other:?} is not one this build reads"
            ))),
        }
    }
}

/// A chunk as it is to be stored, and how.
pub(super) fn encode(chunk: &[u8]) -> (Vec<u8>, Codec) {
    if chunk.len() < MIN_COMPRESSED_BYTES {
        return (chunk.to_vec(), Codec::None);
    }
    if is_compressed_already(chunk) {
        return (chunk.to_vec(), Codec::None);
    }
    if chunk.len() > SAMPLE_BYTES && !pays(&chunk[..SAMPLE_BYTES]) {
        return (chunk.to_vec(), Codec::None);
    }
    match deflate(chunk) {
        Some(deflated) if deflated.len() * 10 <= chunk.len() * 9 => (deflated, Codec::Deflate),
        _ => (chunk.to_vec(), Codec::None),
    }
}

/// A report file imported or posted as it is (gzip, zip, zlib, zstd):
/// its magic bytes say deflate would only spend time on it. Mail starts
/// with header text, never with these.
fn is_compressed_already(chunk: &[u8]) -> bool {
    const MAGIC: [&[u8]; 6] = [
        b"\x1f\x8b",
        b"PK\x03\x04",
        b"\x28\xb5\x2f\xfd",
        b"\x78\x01",
        b"\x78\x9c",
        b"\x78\xda",
    ];
    MAGIC.iter().any(|magic| chunk.starts_with(magic))
}

fn deflate(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder =
        DeflateEncoder::new(Vec::with_capacity(bytes.len() / 2), Compression::new(LEVEL));
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

/// Whether deflating `sample` saves at least a tenth.
fn pays(sample: &[u8]) -> bool {
    deflate(sample).is_some_and(|deflated| deflated.len() * 10 <= sample.len() * 9)
}

/// A stored chunk's bytes as received. A chunk never holds more than
/// `RAW_CHUNK_BYTES`; a row that inflates past that is damaged, and
/// reading stops there rather than fill memory.
pub(super) fn decode(stored: Vec<u8>, compression: &str) -> StoreResult<Vec<u8>> {
    match Codec::parse(compression)? {
        Codec::None => Ok(stored),
        Codec::Deflate => {
            let mut chunk = Vec::with_capacity(stored.len() * 2);
            DeflateDecoder::new(stored.as_slice())
                .take(RAW_CHUNK_BYTES as u64 + 1)
                .read_to_end(&mut chunk)
                .map_err(|error| {
                    StoreError::Corrupt(format!("a stored message chunk does not inflate: {error}"))
                })?;
            if chunk.len() > RAW_CHUNK_BYTES {
                return Err(StoreError::Corrupt(
                    "a stored message chunk inflates past the chunk size".into(),
                ));
            }
            Ok(chunk)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_back_as_received_however_they_are_kept() {
        let text = "Subject: report\r\n\r\n".repeat(2000).into_bytes();
        let (stored, codec) = encode(&text);
        assert_eq!(codec, Codec::Deflate);
        assert!(stored.len() < text.len() / 10);
        assert_eq!(decode(stored, codec.as_str()).unwrap(), text);

        // Random bytes do not shrink: kept as they are.
        let mut noise = Vec::with_capacity(256 * 1024);
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        while noise.len() < 256 * 1024 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            noise.extend_from_slice(&state.to_le_bytes());
        }
        let (stored, codec) = encode(&noise);
        assert_eq!(codec, Codec::None);
        assert_eq!(decode(stored, codec.as_str()).unwrap(), noise);

        // A gzip file stored as a message is not deflated again, even
        // where its first bytes would happen to shrink.
        let mut gzip = b"\x1f\x8b\x08\x00".to_vec();
        gzip.extend(std::iter::repeat_n(b'a', 8 * 1024));
        assert_eq!(encode(&gzip).1, Codec::None);

        let (stored, codec) = encode(b"tiny");
        assert_eq!((stored.as_slice(), codec), (&b"tiny"[..], Codec::None));
    }

    #[test]
    fn damaged_rows_are_errors_not_allocations() {
        assert!(decode(b"not deflate at all".to_vec(), "deflate").is_err());
        assert!(decode(b"x".to_vec(), "zstd").is_err());
        // A deflate bomb past the chunk size stops at the chunk size.
        let zeros = vec![0u8; RAW_CHUNK_BYTES + 4096];
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&zeros).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(decode(bomb, "deflate").is_err());
    }
}
