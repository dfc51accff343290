//! gzip, zlib and zip, each read through a guard that counts every byte it
//! produces against the limits.

use std::cell::Cell;
use std::io::{BufRead, Cursor, Read};
use std::rc::Rc;

use flate2::bufread::{GzDecoder, ZlibDecoder};

use super::{member_location, DecodeError, LimitKind, Limits, Origin, Visitor};

/// A decompressing reader that enforces the size and ratio limits and
/// remembers why it failed, so the error reported is "gzip stream truncated"
/// or "past the 512 MiB limit", not whatever the XML parser made of the EOF.
pub(super) struct Decompressed<'l> {
    decoder: Box<dyn Read + 'l>,
    guard: Guard<'l>,
}

impl<'l> Decompressed<'l> {
    pub(super) fn new<R: BufRead + 'l>(
        input: R,
        gzip: bool,
        limits: &'l Limits,
        location: String,
        format: &'static str,
    ) -> Self {
        let consumed = Rc::new(Cell::new(0));
        let counted = CountingBufRead {
            inner: input,
            consumed: Rc::clone(&consumed),
        };
        let decoder: Box<dyn Read + 'l> = if gzip {
            Box::new(GzipMembers::new(counted))
        } else {
            Box::new(ZlibDecoder::new(counted))
        };
        Decompressed {
            decoder,
            guard: Guard::new(limits, location, format, Source::Counted(consumed)),
        }
    }

    /// Replaces a downstream error with this stream's own failure, if any.
    pub(super) fn prefer_own_error<E: From<DecodeError>>(
        &mut self,
        result: Result<(), E>,
    ) -> Result<(), E> {
        match (result, self.guard.failure.take()) {
            (Err(_), Some(own)) => Err(own.into()),
            (result, _) => result,
        }
    }
}

impl Read for Decompressed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let result = self.decoder.read(buf);
        self.guard.check(result)
    }
}

/// Every member of a gzip stream, one after the other: RFC 1952 §2.2
/// allows several (`cat a.gz b.gz`, and some archivers write one member per
/// block). A gzip decoder over a BufRead reads exactly one member and leaves
/// what follows unread; the next member is read only if what follows starts
/// like one, so that bytes after the stream (Mimecast appends CRLF) are
/// still ignored.
struct GzipMembers<R: BufRead> {
    member: Option<GzDecoder<Peekable<R>>>,
}

impl<R: BufRead> GzipMembers<R> {
    fn new(input: R) -> Self {
        GzipMembers {
            member: Some(GzDecoder::new(Peekable {
                inner: input,
                stash: Vec::new(),
                position: 0,
            })),
        }
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(member) = self.member.as_mut() else {
                return Ok(0);
            };
            let read = member.read(buf)?;
            if read > 0 || buf.is_empty() {
                return Ok(read);
            }
            let Some(finished) = self.member.take() else {
                return Ok(0);
            };
            let mut rest = finished.into_inner();
            if rest.peek_two()? == [0x1f, 0x8b] {
                self.member = Some(GzDecoder::new(rest));
            }
        }
    }
}

/// A BufRead that can look two bytes ahead, even across the end of the
/// underlying buffer.
struct Peekable<R> {
    inner: R,
    stash: Vec<u8>,
    position: usize,
}

impl<R: BufRead> Peekable<R> {
    /// The next two bytes (fewer at the end), left unread.
    fn peek_two(&mut self) -> std::io::Result<&[u8]> {
        let mut next = self.stash.split_off(self.position);
        while next.len() < 2 {
            let available = self.inner.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let taken = available.len().min(2 - next.len());
            next.extend_from_slice(&available[..taken]);
            self.inner.consume(taken);
        }
        self.stash = next;
        self.position = 0;
        Ok(&self.stash)
    }
}

impl<R: BufRead> Read for Peekable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let copied = available.len().min(buf.len());
        buf[..copied].copy_from_slice(&available[..copied]);
        self.consume(copied);
        Ok(copied)
    }
}

impl<R: BufRead> BufRead for Peekable<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.position < self.stash.len() {
            return Ok(&self.stash[self.position..]);
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if self.position < self.stash.len() {
            self.position += amount;
        } else {
            self.inner.consume(amount);
        }
    }
}

/// Where the compressed size comes from.
enum Source {
    /// Bytes pulled from the compressed input so far.
    Counted(Rc<Cell<u64>>),
    /// The compressed size a zip member declares.
    Declared(u64),
}

/// Counts and limits produced bytes; records the first failure.
struct Guard<'l> {
    limits: &'l Limits,
    location: String,
    format: &'static str,
    source: Source,
    produced: u64,
    failure: Option<DecodeError>,
}

impl<'l> Guard<'l> {
    fn new(limits: &'l Limits, location: String, format: &'static str, source: Source) -> Self {
        Guard {
            limits,
            location,
            format,
            source,
            produced: 0,
            failure: None,
        }
    }

    fn check(&mut self, result: std::io::Result<usize>) -> std::io::Result<usize> {
        if self.failure.is_some() {
            return Err(std::io::Error::other(
                "decompression stopped: limit or corruption",
            ));
        }
        let read = match result {
            Ok(read) => read,
            Err(error) => {
                self.failure = Some(DecodeError::Corrupt {
                    location: self.location.clone(),
                    format: self.format,
                    message: error.to_string(),
                });
                return Err(error);
            }
        };
        self.produced += read as u64;
        let limits = self.limits;
        if self.produced > limits.max_decompressed_bytes {
            return self.fail(
                LimitKind::DecompressedBytes,
                limits.max_decompressed_bytes,
                "unpacks past it".to_string(),
            );
        }
        let compressed = match &self.source {
            Source::Counted(consumed) => consumed.get(),
            Source::Declared(size) => *size,
        };
        if self.produced > limits.ratio_check_after_bytes
            && self.produced / compressed.max(1) > limits.max_compression_ratio
        {
            let detail = format!("{} bytes from {compressed} compressed", self.produced);
            return self.fail(
                LimitKind::CompressionRatio,
                limits.max_compression_ratio,
                detail,
            );
        }
        Ok(read)
    }

    fn fail(&mut self, limit: LimitKind, max: u64, detail: String) -> std::io::Result<usize> {
        self.failure = Some(DecodeError::Limit {
            location: self.location.clone(),
            limit,
            max,
            detail,
        });
        Err(std::io::Error::other(format!("{limit} limit exceeded")))
    }
}

/// A BufRead that counts the bytes consumed from it.
struct CountingBufRead<R> {
    inner: R,
    consumed: Rc<Cell<u64>>,
}

impl<R: BufRead> Read for CountingBufRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.consumed.set(self.consumed.get() + read as u64);
        Ok(read)
    }
}

impl<R: BufRead> BufRead for CountingBufRead<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.consumed.set(self.consumed.get() + amount as u64);
        self.inner.consume(amount);
    }
}

/// A zip member read through a guard.
struct GuardedMember<'l, R: Read> {
    inner: R,
    guard: Guard<'l>,
}

impl<R: Read> Read for GuardedMember<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let result = self.inner.read(buf);
        self.guard.check(result)
    }
}

/// Visits every member of a zip archive held in memory.
pub(super) fn visit_zip<E: From<DecodeError>>(
    visitor: &mut Visitor<'_, '_, E>,
    bytes: Vec<u8>,
    location: &str,
    depth: u32,
) -> Result<(), E> {
    let corrupt = |error: zip::result::ZipError| DecodeError::Corrupt {
        location: location.to_string(),
        format: "zip",
        message: error.to_string(),
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    let limits = visitor.limits;
    if archive.len() > limits.max_zip_members {
        return Err(DecodeError::Limit {
            location: location.to_string(),
            limit: LimitKind::ZipMembers,
            max: limits.max_zip_members as u64,
            detail: format!("the archive lists {} members", archive.len()),
        }
        .into());
    }
    for index in 0..archive.len() {
        let member = archive.by_index(index).map_err(corrupt)?;
        let name = member
            .name()
            .map(|name| name.into_owned())
            .unwrap_or_else(|_| format!("member #{index}"));
        if member.is_dir() {
            continue;
        }
        // The name is only ever a label (nothing is written to disk), but a
        // traversal name is a sign of a hostile archive: refuse it loudly.
        if member.enclosed_name().is_none() {
            return Err(DecodeError::UnsafeMemberName {
                location: location.to_string(),
                member: name,
            }
            .into());
        }
        if member.encrypted() {
            return Err(DecodeError::EncryptedMember {
                location: location.to_string(),
                member: name,
            }
            .into());
        }
        let member_location = member_location(location, &name);
        // The declared size can lie, so the guard counts real bytes too; a
        // declared size past the limit is refused before inflating anything.
        if member.size() > limits.max_decompressed_bytes {
            return Err(DecodeError::Limit {
                location: member_location,
                limit: LimitKind::DecompressedBytes,
                max: limits.max_decompressed_bytes,
                detail: format!("the member declares {} bytes", member.size()),
            }
            .into());
        }
        let compressed = member.compressed_size();
        let mut guarded = GuardedMember {
            inner: member,
            guard: Guard::new(
                limits,
                member_location.clone(),
                "zip",
                Source::Declared(compressed),
            ),
        };
        let result = visitor.visit(
            &mut guarded,
            member_location,
            depth + 1,
            Origin::ArchiveMember,
        );
        match (result, guarded.guard.failure.take()) {
            (Err(_), Some(own)) => return Err(own.into()),
            (result, _) => result?,
        }
    }
    Ok(())
}
