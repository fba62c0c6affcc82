//! Text decoding: an entry's bytes in the account's encoding → UTF-8, streaming.
//!
//! A leading BOM (UTF-8, UTF-16LE/BE) wins over the account's encoding and is
//! dropped. Invalid bytes are never replaced: they end the read with `BAD_ENCODING`
//! naming the line and the bytes. NUL characters, which only appear in binary files
//! or UTF-16 text read as 8-bit, are `BAD_ENCODING` too. Lines longer than
//! `max_line_bytes` (counted in UTF-8 after decoding, line end excluded) are
//! `LIMIT_EXCEEDED`. Errors travel as `io::Error`s wrapping a [`Rejection`].

use std::io::{self, BufRead, Read};

use encoding_rs::{DecoderResult, Encoding};

use crate::intake::error::{ErrorCode, Rejection, shown};

const CHUNK: usize = 64 * 1024;

pub struct DecodedText<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    /// Raw bytes read from `inner`, not yet decoded: `raw[raw_pos..raw_len]`.
    raw: Box<[u8]>,
    raw_pos: usize,
    raw_len: usize,
    raw_eof: bool,
    /// Decoded UTF-8 not yet consumed: `out[out_pos..out_len]`.
    out: Box<[u8]>,
    out_pos: usize,
    out_len: usize,
    finished: bool,
    /// 1-based line of the next decoded byte, and bytes of that line so far.
    line: u64,
    line_bytes: usize,
    max_line_bytes: usize,
    /// Name of the file, for messages.
    file: String,
}

impl<R: Read> DecodedText<R> {
    pub fn new(inner: R, encoding: &'static Encoding, max_line_bytes: usize, file: &str) -> Self {
        DecodedText {
            inner,
            decoder: encoding.new_decoder(),
            raw: vec![0; CHUNK].into_boxed_slice(),
            raw_pos: 0,
            raw_len: 0,
            raw_eof: false,
            out: vec![0; CHUNK * 3 + 16].into_boxed_slice(),
            out_pos: 0,
            out_len: 0,
            finished: false,
            line: 1,
            line_bytes: 0,
            max_line_bytes,
            file: file.to_owned(),
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        while self.out_pos == self.out_len && !self.finished {
            if self.raw_pos == self.raw_len && !self.raw_eof {
                let n = self.inner.read(&mut self.raw)?;
                self.raw_pos = 0;
                self.raw_len = n;
                self.raw_eof = n == 0;
            }
            let src = &self.raw[self.raw_pos..self.raw_len];
            let (result, read, written) =
                self.decoder
                    .decode_to_utf8_without_replacement(src, &mut self.out, self.raw_eof);
            self.raw_pos += read;
            self.out_pos = 0;
            self.out_len = written;
            self.scan(written)?;
            match result {
                DecoderResult::InputEmpty => self.finished = self.raw_eof,
                DecoderResult::OutputFull => {}
                DecoderResult::Malformed(bad, extra) => {
                    let end = (self.raw_pos - extra as usize).min(self.raw_len);
                    let start = end.saturating_sub(bad as usize);
                    let hex: Vec<String> = self.raw[start..end]
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect();
                    return Err(io::Error::other(Rejection::new(
                        ErrorCode::BadEncoding,
                        format!(
                            "{} line {}: bytes {} are not valid {} (after {})",
                            self.file,
                            self.line,
                            hex.join(" "),
                            self.decoder.encoding().name(),
                            shown(self.line_tail()),
                        ),
                    )));
                }
            }
        }
        Ok(())
    }

    /// The end of the current line's decoded text, for error context.
    fn line_tail(&self) -> &str {
        let end = self.out_len;
        let start = end - self.line_bytes.min(end);
        let text = std::str::from_utf8(&self.out[start..end]).unwrap_or("");
        let mut cut = text.len().saturating_sub(40);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        &text[cut..]
    }

    /// Tracks lines over freshly decoded bytes; checks NUL and line length.
    fn scan(&mut self, written: usize) -> io::Result<()> {
        for &b in &self.out[..written] {
            match b {
                b'\n' => {
                    self.line += 1;
                    self.line_bytes = 0;
                    continue;
                }
                0 => {
                    return Err(io::Error::other(Rejection::new(
                        ErrorCode::BadEncoding,
                        format!(
                            "{} line {}: NUL byte in the text; is it a binary or UTF-16 file?",
                            self.file, self.line
                        ),
                    )));
                }
                b'\r' => {}
                _ => {}
            }
            if b != b'\r' {
                self.line_bytes += 1;
                if self.line_bytes > self.max_line_bytes {
                    return Err(io::Error::other(Rejection::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "{} line {}: longer than {} bytes",
                            self.file, self.line, self.max_line_bytes
                        ),
                    )));
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for DecodedText<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for DecodedText<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.refill()?;
        Ok(&self.out[self.out_pos..self.out_len])
    }

    fn consume(&mut self, amt: usize) {
        self.out_pos = (self.out_pos + amt).min(self.out_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::error::rejection_from_io;

    fn decode(bytes: &[u8], label: &str, max_line: usize) -> Result<String, Rejection> {
        let enc = Encoding::for_label(label.as_bytes()).unwrap();
        let mut text = String::new();
        DecodedText::new(bytes, enc, max_line, "sms/contacts.csv")
            .read_to_string(&mut text)
            .map_err(|e| rejection_from_io(e, "test"))?;
        Ok(text)
    }

    #[test]
    fn utf8_bom_is_dropped() {
        assert_eq!(
            decode(b"\xEF\xBB\xBFphone\n", "utf-8", 100).unwrap(),
            "phone\n"
        );
    }

    #[test]
    fn windows_1251() {
        // "Привет" in windows-1251.
        let bytes = b"\xCF\xF0\xE8\xE2\xE5\xF2";
        assert_eq!(decode(bytes, "windows-1251", 100).unwrap(), "Привет");
        assert_eq!(decode(bytes, "cp1251", 100).unwrap(), "Привет");
    }

    #[test]
    fn a_bom_wins_over_the_account_encoding() {
        assert_eq!(
            decode("\u{feff}Привет".as_bytes(), "windows-1251", 100).unwrap(),
            "Привет"
        );
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hi\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode(&utf16, "utf-8", 100).unwrap(), "hi\n");
    }

    #[test]
    fn invalid_utf8_names_line_and_bytes() {
        let e = decode(
            b"phone;text\n79031234567;ok\n79031234567;bad \xC3\x28 here\n",
            "utf-8",
            100,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadEncoding);
        assert!(e.message.contains("line 3"), "{}", e.message);
        assert!(e.message.contains("C3"), "{}", e.message);
        assert!(e.message.contains("sms/contacts.csv"), "{}", e.message);
    }

    #[test]
    fn invalid_at_a_chunk_boundary_and_at_eof() {
        let mut bytes = vec![b'a'; CHUNK - 1];
        bytes.push(b'\n');
        bytes.extend_from_slice(b"x\xE2\x82");
        let e = decode(&bytes, "utf-8", CHUNK * 2).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadEncoding);
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn multibyte_split_across_reads_is_fine() {
        let text = "ж".repeat(CHUNK); // 2 bytes each: every chunk boundary splits one
        assert_eq!(decode(text.as_bytes(), "utf-8", CHUNK * 3).unwrap(), text);
    }

    #[test]
    fn nul_is_bad_encoding() {
        let e = decode(b"a\nb\0c\n", "utf-8", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadEncoding);
        assert!(e.message.contains("line 2"));
    }

    #[test]
    fn line_length_limit_excludes_line_end() {
        assert!(decode(b"12345\r\n12345\n", "utf-8", 5).is_ok());
        let e = decode(b"12345\n123456\n", "utf-8", 5).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("line 2"), "{}", e.message);
    }
}
