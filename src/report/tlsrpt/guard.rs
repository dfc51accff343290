//! A reader in front of the JSON parser that enforces the byte limits as
//! the bytes go by: the size of the whole document, and the length of any
//! one string. serde_json holds a string whole before handing it over, so a
//! 500 MB string must be stopped here, before it is read.

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;

use super::TlsRptError;
use crate::report::ParseLimits;

pub(super) struct JsonGuard<R> {
    inner: R,
    max_document: u64,
    max_string: u64,
    consumed: u64,
    in_string: bool,
    escaped: bool,
    string_bytes: u64,
    string_start: u64,
    /// Why reading stopped, for the caller: serde_json only sees an I/O error.
    pub(super) failure: Rc<RefCell<Option<TlsRptError>>>,
}

impl<R: Read> JsonGuard<R> {
    pub(super) fn new(inner: R, limits: &ParseLimits) -> Self {
        JsonGuard {
            inner,
            max_document: limits.max_tlsrpt_json_bytes,
            max_string: limits.max_json_string_bytes,
            consumed: 0,
            in_string: false,
            escaped: false,
            string_bytes: 0,
            string_start: 0,
            failure: Rc::new(RefCell::new(None)),
        }
    }

    /// Follows strings through `bytes` (which start at offset `consumed`).
    fn scan(&mut self, bytes: &[u8]) -> Result<(), TlsRptError> {
        let mut at = 0;
        while at < bytes.len() {
            if !self.in_string {
                match memchr::memchr(b'"', &bytes[at..]) {
                    Some(quote) => {
                        at += quote + 1;
                        self.in_string = true;
                        self.string_bytes = 0;
                        self.string_start = self.consumed + at as u64;
                    }
                    None => break,
                }
                continue;
            }
            if self.escaped {
                self.escaped = false;
                self.string_bytes += 1;
                at += 1;
            } else {
                match memchr::memchr2(b'"', b'\\', &bytes[at..]) {
                    Some(special) => {
                        self.string_bytes += special as u64;
                        at += special + 1;
                        if bytes[at - 1] == b'\\' {
                            self.escaped = true;
                            self.string_bytes += 1;
                        } else {
                            self.in_string = false;
                        }
                    }
                    None => {
                        self.string_bytes += (bytes.len() - at) as u64;
                        at = bytes.len();
                    }
                }
            }
            if self.string_bytes > self.max_string {
                return Err(TlsRptError::StringTooLong {
                    limit: self.max_string,
                    position: self.string_start,
                });
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for JsonGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.failure.borrow().is_some() {
            return Err(std::io::Error::other("stopped at a limit"));
        }
        let read = self.inner.read(buf)?;
        let outcome = if self.consumed + read as u64 > self.max_document {
            Err(TlsRptError::TooLarge {
                limit: self.max_document,
            })
        } else {
            self.scan(&buf[..read])
        };
        self.consumed += read as u64;
        match outcome {
            Ok(()) => Ok(read),
            Err(error) => {
                *self.failure.borrow_mut() = Some(error);
                Err(std::io::Error::other("stopped at a limit"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard_result(json: &[u8], max_string: u64, chunk: usize) -> Option<TlsRptError> {
        let limits = ParseLimits {
            max_json_string_bytes: max_string,
            ..ParseLimits::default()
        };
        let mut guard = JsonGuard::new(json, &limits);
        let mut buf = vec![0; chunk];
        while let Ok(read) = guard.read(&mut buf) {
            if read == 0 {
                break;
            }
        }
        let failure = guard.failure.borrow_mut().take();
        failure
    }

    #[test]
    fn measures_strings_across_reads_and_escapes() {
        let json = br#"{"a":"12345","b":"1\"34","c":"\\"}"#;
        for chunk in [1, 2, 3, 64] {
            assert!(guard_result(json, 5, chunk).is_none(), "chunk {chunk}");
            let failure = guard_result(json, 4, chunk);
            assert!(
                matches!(
                    failure,
                    Some(TlsRptError::StringTooLong {
                        limit: 4,
                        position: 6
                    })
                ),
                "chunk {chunk}: {failure:?}"
            );
        }
    }
}
