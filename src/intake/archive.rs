//! Archive reader: opens an uploaded zip, enforces `[limits]`, rejects hostile
//! entries, detects the layout (SPEC §3.1/§3.2) and streams entries.
//!
//! Nothing is ever extracted to disk and no entry is held in memory: entries are read
//! through [`LimitedEntry`], which counts the bytes actually inflated so an entry that
//! lies about its size in the central directory (zip64 lies, bombs) is stopped while
//! it is read, not after. CRCs are checked by the zip crate when an entry is read to
//! its end; a mismatch surfaces as `NOT_A_ZIP`, and since rows are committed only
//! after the whole entry was read, a damaged archive queues nothing.
//!
//! Checks, in order: file size, entry count (read from the end-of-central-directory
//! record before the zip crate parses the directory, so a million-entry directory
//! costs nothing), zip structure, then per entry: name safety, symlinks, encryption,
//! declared sizes and ratio; then the layout.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use zip::ZipArchive;

use crate::intake::account::Limits;
use crate::intake::error::{ErrorCode, Rejection, shown};

/// The two archive layouts of SPEC §3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// contacts.csv + template.csv: their entry indexes and names.
    Template {
        contacts: EntryRef,
        template: EntryRef,
    },
    /// Exactly one other .csv/.txt file.
    Plain { data: EntryRef },
}

/// An entry chosen by layout detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    pub index: usize,
    /// The name as stored in the archive, e.g. `sms/contacts.csv`; used in messages.
    pub name: String,
}

/// An opened, checked archive.
pub struct Archive {
    zip: ZipArchive<BufReader<File>>,
    limits: Limits,
    /// Bytes inflated so far from all entries, for `max_uncompressed_bytes`.
    inflated_total: u64,
    layout: Layout,
}

fn limit(message: String) -> Rejection {
    Rejection::new(ErrorCode::LimitExceeded, message)
}

impl Archive {
    /// Opens `path` and runs every check that needs no entry content.
    pub fn open(path: &Path, limits: &Limits) -> Result<Archive, Rejection> {
        let internal = |e: io::Error| {
            Rejection::new(
                ErrorCode::InternalError,
                format!("cannot read archive {}: {e}", path.display()),
            )
        };
        let mut file = File::open(path).map_err(internal)?;
        let size = file.metadata().map_err(internal)?.len();
        if size > limits.max_archive_bytes {
            return Err(limit(format!(
                "archive is {size} bytes; the limit is {} bytes",
                limits.max_archive_bytes
            )));
        }
        if let Some(count) = declared_entry_count(&mut file, size).map_err(internal)?
            && count > limits.max_entries as u64
        {
            return Err(limit(format!(
                "archive has {count} entries; the limit is {}",
                limits.max_entries
            )));
        }
        file.seek(SeekFrom::Start(0)).map_err(internal)?;
        let zip = ZipArchive::new(BufReader::with_capacity(64 * 1024, file)).map_err(|e| {
            Rejection::new(
                ErrorCode::NotAZip,
                format!("the file is not a readable zip archive ({e}); was the upload complete?"),
            )
        })?;
        if zip.len() > limits.max_entries {
            return Err(limit(format!(
                "archive has {} entries; the limit is {}",
                zip.len(),
                limits.max_entries
            )));
        }
        if zip.metadata().has_duplicate_names() {
            return Err(Rejection::new(
                ErrorCode::UnsafeEntryName,
                "the archive holds two entries with the same name",
            ));
        }
        let mut declared_total: u64 = 0;
        let mut names = Vec::with_capacity(zip.len());
        for index in 0..zip.len() {
            let entry = zip.by_index_data(index).map_err(|e| {
                Rejection::new(ErrorCode::NotAZip, format!("entry {index} is damaged: {e}"))
            })?;
            let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
            if let Some(why) = unsafe_name(&name) {
                return Err(Rejection::new(
                    ErrorCode::UnsafeEntryName,
                    format!("entry {}: {why}", shown(&name)),
                ));
            }
            if entry.is_symlink() {
                return Err(Rejection::new(
                    ErrorCode::UnsafeEntryName,
                    format!("entry {} is a symbolic link", shown(&name)),
                ));
            }
            if entry.encrypted() {
                return Err(Rejection::new(
                    ErrorCode::EncryptedArchive,
                    format!(
                        "entry {} is password-protected; upload archives without a password",
                        shown(&name)
                    ),
                ));
            }
            if !entry.is_dir() {
                let (size, packed) = (entry.size(), entry.compressed_size());
                if exceeds_ratio(size, packed, limits.max_compression_ratio) {
                    return Err(limit(format!(
                        "entry {} inflates from {packed} to {size} bytes, more than {}:1",
                        shown(&name),
                        limits.max_compression_ratio
                    )));
                }
                declared_total = declared_total.saturating_add(size);
                if declared_total > limits.max_uncompressed_bytes {
                    return Err(limit(format!(
                        "archive inflates to more than {} bytes (entry {} declares {size})",
                        limits.max_uncompressed_bytes,
                        shown(&name)
                    )));
                }
                names.push((index, name));
            }
        }
        let layout = detect_layout(&names)?;
        Ok(Archive {
            zip,
            limits: *limits,
            inflated_total: 0,
            layout,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Streams one entry's inflated bytes, enforcing the size and ratio limits on
    /// what is actually inflated. Errors are `io::Error`s wrapping a [`Rejection`]
    /// (see [`rejection_from_io`](crate::intake::error::rejection_from_io)).
    pub fn entry(&mut self, entry: &EntryRef) -> Result<LimitedEntry<'_>, Rejection> {
        let file = self.zip.by_index(entry.index).map_err(|e| match e {
            zip::result::ZipError::UnsupportedArchive(what) => Rejection::new(
                ErrorCode::NotAZip,
                format!(
                    "entry {} cannot be read: {what} ({SUPPORTED_METHODS})",
                    shown(&entry.name)
                ),
            ),
            e => Rejection::new(
                ErrorCode::NotAZip,
                format!("entry {} is damaged: {e}", shown(&entry.name)),
            ),
        })?;
        use zip::CompressionMethod as M;
        let method = file.compression();
        if !matches!(
            method,
            M::Stored | M::Deflated | M::Deflate64 | M::Bzip2 | M::Lzma | M::Zstd
        ) {
            return Err(Rejection::new(
                ErrorCode::NotAZip,
                format!(
                    "entry {} is compressed with method {method}, which is not supported ({SUPPORTED_METHODS})",
                    shown(&entry.name)
                ),
            ));
        }
        let packed = file.compressed_size();
        Ok(LimitedEntry {
            inner: file,
            name: entry.name.clone(),
            packed,
            inflated: 0,
            inflated_total: &mut self.inflated_total,
            limits: &self.limits,
        })
    }
}

/// What a customer is told when an entry's compression cannot be read.
const SUPPORTED_METHODS: &str = "use Store, Deflate, Deflate64, BZIP2, LZMA or Zstandard";

/// An entry being read; see [`Archive::entry`].
pub struct LimitedEntry<'a> {
    inner: zip::read::ZipFile<'a, BufReader<File>>,
    name: String,
    packed: u64,
    inflated: u64,
    inflated_total: &'a mut u64,
    limits: &'a Limits,
}

impl Read for LimitedEntry<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| {
            if e.get_ref().is_some_and(|inner| inner.is::<Rejection>()) {
                return e;
            }
            io::Error::other(Rejection::new(
                ErrorCode::NotAZip,
                format!(
                    "entry {} is damaged or inconsistent ({e}); was the upload complete?",
                    shown(&self.name)
                ),
            ))
        })?;
        self.inflated += n as u64;
        *self.inflated_total += n as u64;
        if exceeds_ratio(
            self.inflated,
            self.packed,
            self.limits.max_compression_ratio,
        ) {
            return Err(io::Error::other(limit(format!(
                "entry {} inflates from {} to more than {} bytes, more than {}:1",
                shown(&self.name),
                self.packed,
                self.inflated,
                self.limits.max_compression_ratio
            ))));
        }
        if *self.inflated_total > self.limits.max_uncompressed_bytes {
            return Err(io::Error::other(limit(format!(
                "archive inflates to more than {} bytes (while reading entry {})",
                self.limits.max_uncompressed_bytes,
                shown(&self.name)
            ))));
        }
        Ok(n)
    }
}

fn exceeds_ratio(size: u64, packed: u64, ratio: u64) -> bool {
    size > packed.saturating_mul(ratio)
}

/// Why an entry name is unsafe, if it is: absolute, a drive, `..`, NUL.
fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.contains('\0') {
        return Some("the name contains a NUL byte");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Some("absolute path");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Some("absolute path with a drive letter");
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Some("the path leaves the archive ('..')");
    }
    None
}

/// Where a file entry sits, for layout detection.
fn placement(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split(['/', '\\']).collect();
    let file = match parts.as_slice() {
        [file] => file.to_lowercase(),
        [dir, file] if dir.eq_ignore_ascii_case("sms") => file.to_lowercase(),
        _ => return None,
    };
    // What macOS and Windows add to an archive made in their file managers
    // (SPEC §3): `._name` (AppleDouble, also under `__MACOSX/`), `.DS_Store`,
    // `Thumbs.db`, `desktop.ini`.
    let metadata = file.starts_with("._")
        || matches!(file.as_str(), ".ds_store" | "thumbs.db" | "desktop.ini");
    (!metadata).then_some(file)
}

fn detect_layout(files: &[(usize, String)]) -> Result<Layout, Rejection> {
    let unknown = |message: String| Rejection::new(ErrorCode::UnknownLayout, message);
    let mut contacts = Vec::new();
    let mut template = Vec::new();
    let mut others = Vec::new();
    for (index, name) in files {
        let Some(file) = placement(name) else {
            continue;
        };
        let entry = EntryRef {
            index: *index,
            name: name.clone(),
        };
        match file.as_str() {
            "contacts.csv" => contacts.push(entry),
            "template.csv" => template.push(entry),
            f if f.ends_with(".csv") || f.ends_with(".txt") => others.push(entry),
            _ => {}
        }
    }
    let listed = |entries: &[EntryRef]| {
        entries
            .iter()
            .map(|e| shown(&e.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (what, found) in [("contacts.csv", &contacts), ("template.csv", &template)] {
        if found.len() > 1 {
            return Err(unknown(format!(
                "the archive holds {} {what} files ({}); keep one, in sms/",
                found.len(),
                listed(found)
            )));
        }
    }
    match (contacts.pop(), template.pop()) {
        (Some(contacts), Some(template)) => Ok(Layout::Template { contacts, template }),
        (Some(_), None) => Err(unknown(
            "the archive has contacts.csv but template.csv is missing".into(),
        )),
        (None, Some(_)) => Err(unknown(
            "the archive has template.csv but contacts.csv is missing".into(),
        )),
        (None, None) => match others.len() {
            1 => Ok(Layout::Plain {
                data: others.remove(0),
            }),
            0 => Err(unknown(
                "no .csv or .txt file in sms/ or at the root of the archive; expected \
                 sms/contacts.csv + sms/template.csv, or one .csv/.txt file"
                    .into(),
            )),
            n => Err(unknown(format!(
                "{n} .csv/.txt files ({}); the template-less format takes exactly one",
                listed(&others)
            ))),
        },
    }
}

/// The entry count of the end-of-central-directory record (zip64 aware), or `None`
/// when no such record is found (the zip crate then reports the damage).
fn declared_entry_count(file: &mut File, size: u64) -> io::Result<Option<u64>> {
    const EOCD_MIN: u64 = 22;
    if size < EOCD_MIN {
        return Ok(None);
    }
    // The record ends the file, followed by a comment of at most 65535 bytes.
    let tail_len = size.min(EOCD_MIN + 65_535);
    let mut tail = vec![0u8; tail_len as usize];
    file.seek(SeekFrom::Start(size - tail_len))?;
    file.read_exact(&mut tail)?;
    let Some(at) = (0..=tail.len() - EOCD_MIN as usize)
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
    else {
        return Ok(None);
    };
    let count = u64::from(u16::from_le_bytes([tail[at + 10], tail[at + 11]]));
    if count != 0xFFFF {
        return Ok(Some(count));
    }
    // zip64: the locator sits just before the record and points at the zip64 record.
    let Some(loc) = at.checked_sub(20) else {
        return Ok(None);
    };
    if tail[loc..loc + 4] != [0x50, 0x4b, 0x06, 0x07] {
        return Ok(None);
    }
    let offset = u64::from_le_bytes(tail[loc + 8..loc + 16].try_into().expect("8 bytes"));
    if offset.saturating_add(56) > size {
        return Ok(None);
    }
    let mut record = [0u8; 56];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut record)?;
    if record[..4] != [0x50, 0x4b, 0x06, 0x06] {
        return Ok(None);
    }
    Ok(Some(u64::from_le_bytes(
        record[32..40].try_into().expect("8 bytes"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(names: &[&str]) -> Result<Layout, Rejection> {
        let files: Vec<(usize, String)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.to_string()))
            .collect();
        detect_layout(&files)
    }

    #[test]
    fn template_layout_in_sms_or_at_root_any_case() {
        for names in [
            &["sms/contacts.csv", "sms/template.csv"][..],
            &["contacts.csv", "template.csv"],
            &["SMS/Contacts.CSV", "sms/TEMPLATE.csv"],
            &["sms/contacts.csv", "template.csv", "readme.pdf"],
        ] {
            assert!(
                matches!(layout(names), Ok(Layout::Template { .. })),
                "{names:?}"
            );
        }
    }

    #[test]
    fn half_a_template_names_the_missing_file() {
        let e = layout(&["sms/contacts.csv"]).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownLayout);
        assert!(e.message.contains("template.csv is missing"));
        let e = layout(&["sms/template.csv", "sms/other.csv"]).unwrap_err();
        assert!(e.message.contains("contacts.csv is missing"));
    }

    #[test]
    fn plain_layout_needs_exactly_one_csv_or_txt() {
        assert!(matches!(
            layout(&["sms/data.txt"]),
            Ok(Layout::Plain { .. })
        ));
        assert!(matches!(
            layout(&["data.CSV", "logo.png"]),
            Ok(Layout::Plain { .. })
        ));
        assert!(layout(&["a.csv", "sms/b.txt"]).is_err());
        assert!(layout(&["logo.png"]).is_err());
        assert!(layout(&[]).is_err());
        // Only sms/ and the root count.
        assert!(layout(&["other/data.csv"]).is_err());
        assert!(layout(&["sms/deeper/data.csv"]).is_err());
    }

    #[test]
    fn two_contacts_files_are_ambiguous() {
        let e = layout(&["contacts.csv", "sms/contacts.csv", "sms/template.csv"]).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownLayout);
    }

    #[test]
    fn unsafe_names() {
        for bad in [
            "/etc/passwd",
            "\\x.csv",
            "C:/x.csv",
            "c:x.csv",
            "../x.csv",
            "sms/../../x",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(unsafe_name(bad).is_some(), "{bad:?}");
        }
        for ok in ["sms/contacts.csv", "a..b.csv", "..x", "sms/.hidden"] {
            assert!(unsafe_name(ok).is_none(), "{ok:?}");
        }
    }
}
