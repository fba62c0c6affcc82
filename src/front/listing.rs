//! What a customer sees of its home (SPEC §2): listings and file status.
//!
//! - A client's path is resolved inside the home ([`inside`]): `..` never
//!   climbs above it.
//! - A listing names a folder, a file, or a `*`/`?` pattern in its last
//!   component (`NLST *.json`, `LIST results/x.json`); `-options` were
//!   stripped by the parser.
//! - An entry that goes away between reading the folder and its metadata (the
//!   poller took an archive, a result was published) is left out: a listing
//!   never fails for it. Hidden entries (uploads in progress) are left out.
//! - [`Recent`] keeps what each just-landed archive looked like for
//!   [`RECENT`], and a listing of the home or a status query shows it while it
//!   is gone from the folder: clients check an upload by listing its folder
//!   (rclone re-uploaded when the archive was already taken).

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use unftp_core::storage::{self, ErrorKind, Fileinfo, Metadata, Permissions};

/// How long a landed archive stays visible after its upload.
pub const RECENT: Duration = Duration::from_secs(10);

/// A file's or folder's status, as listings and `SIZE`/`MDTM`/`MLST` show it.
#[derive(Debug, Clone)]
pub struct Entry {
    len: u64,
    dir: bool,
    modified: SystemTime,
    mode: u32,
    uid: u32,
    gid: u32,
    links: u64,
}

impl Entry {
    pub fn of(meta: &std::fs::Metadata) -> Entry {
        use std::os::unix::fs::MetadataExt;
        Entry {
            len: meta.len(),
            dir: meta.is_dir(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            links: meta.nlink(),
        }
    }
}

impl Metadata for Entry {
    fn len(&self) -> u64 {
        self.len
    }

    fn is_dir(&self) -> bool {
        self.dir
    }

    fn is_file(&self) -> bool {
        !self.dir
    }

    fn is_symlink(&self) -> bool {
        false
    }

    fn modified(&self) -> storage::Result<SystemTime> {
        Ok(self.modified)
    }

    fn gid(&self) -> u32 {
        self.gid
    }

    fn uid(&self) -> u32 {
        self.uid
    }

    fn links(&self) -> u64 {
        self.links
    }

    fn permissions(&self) -> Permissions {
        Permissions(self.mode)
    }
}

/// A client's path as components inside the home: `.` and the root are
/// dropped, `..` goes up but never above the home.
pub fn inside(path: &Path) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts
}

fn has_pattern(name: &str) -> bool {
    name.contains(['*', '?'])
}

/// Does `name` match `pattern` (`*` any run, `?` one character)?
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative wildcard matching with one backtrack point (linear in
    // practice, no recursion on hostile patterns).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Just-landed archives, by their path, with their status at landing.
#[derive(Debug, Default)]
pub struct Recent(Mutex<HashMap<PathBuf, (Instant, Entry)>>);

impl Recent {
    pub fn landed(&self, path: PathBuf, entry: Entry) {
        let mut map = self.0.lock().expect("recent lock");
        map.retain(|_, (at, _)| at.elapsed() < RECENT);
        map.insert(path, (Instant::now(), entry));
    }

    pub fn get(&self, path: &Path) -> Option<Entry> {
        let map = self.0.lock().expect("recent lock");
        map.get(path)
            .filter(|(at, _)| at.elapsed() < RECENT)
            .map(|(_, e)| e.clone())
    }

    /// The recent archives in `dir`: (file name, status).
    pub fn in_dir(&self, dir: &Path) -> Vec<(String, Entry)> {
        let map = self.0.lock().expect("recent lock");
        map.iter()
            .filter(|(path, (at, _))| at.elapsed() < RECENT && path.parent() == Some(dir))
            .filter_map(|(path, (_, e))| {
                Some((path.file_name()?.to_string_lossy().into_owned(), e.clone()))
            })
            .collect()
    }
}

fn not_found(what: &str) -> storage::Error {
    storage::Error::new(
        ErrorKind::PermanentFileNotAvailable,
        format!("{what}: not found"),
    )
}

/// The status of `path` in `home` (blocking), or of a recent archive gone
/// from it.
pub fn status(home: &Path, path: &Path, recent: &Recent) -> storage::Result<Entry> {
    let target = home.join(inside(path).join("/"));
    match std::fs::symlink_metadata(&target) {
        Ok(meta) => Ok(Entry::of(&meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => recent
            .get(&target)
            .ok_or_else(|| not_found(&path.display().to_string())),
        Err(e) => Err(storage::Error::new(ErrorKind::LocalError, e)),
    }
}

/// Lists `path` in `home` (blocking); see the module documentation.
pub fn list(
    home: &Path,
    path: &Path,
    recent: &Recent,
) -> storage::Result<Vec<Fileinfo<PathBuf, Entry>>> {
    let mut parts = inside(path);
    let pattern = match parts.last() {
        Some(last) if has_pattern(last) => parts.pop(),
        _ => None,
    };
    let target = home.join(parts.join("/"));
    let shown =
        |name: &str| !name.starts_with('.') && pattern.as_deref().is_none_or(|p| matches(p, name));
    let meta = match std::fs::metadata(&target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A file just landed and already taken is still shown.
            return match (pattern.is_none(), recent.get(&target), target.file_name()) {
                (true, Some(entry), Some(name)) => Ok(vec![Fileinfo {
                    path: PathBuf::from(name),
                    metadata: entry,
                }]),
                _ => Err(storage::Error::new(
                    ErrorKind::PermanentDirectoryNotAvailable,
                    format!("{}: not found", path.display()),
                )),
            };
        }
        Err(e) => return Err(storage::Error::new(ErrorKind::LocalError, e)),
    };
    if meta.is_file() {
        let name = target.file_name().map(PathBuf::from).unwrap_or_default();
        return Ok(vec![Fileinfo {
            path: name,
            metadata: Entry::of(&meta),
        }]);
    }
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(&target).map_err(|e| storage::Error::new(ErrorKind::LocalError, e))?;
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if !shown(&name) {
            continue;
        }
        // Gone meanwhile (picked up, published under another name): left out.
        let Ok(meta) = entry.metadata() else { continue };
        found.push(Fileinfo {
            path: PathBuf::from(name),
            metadata: Entry::of(&meta),
        });
    }
    for (name, entry) in recent.in_dir(&target) {
        if shown(&name) && !found.iter().any(|f| f.path.as_os_str() == name.as_str()) {
            found.push(Fileinfo {
                path: PathBuf::from(name),
                metadata: entry,
            });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_home() {
        let p = |s: &str| inside(Path::new(s)).join("/");
        assert_eq!(p("/results/x.json"), "results/x.json");
        assert_eq!(p("../../etc/passwd"), "etc/passwd");
        assert_eq!(p("/results/../.."), "");
        assert_eq!(p("./a/./b"), "a/b");
    }

    #[test]
    fn patterns() {
        assert!(matches("*.json", "a.json"));
        assert!(matches("guest_*.zip", "guest_20261123070000.zip"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*", ""));
        assert!(!matches("*.json", "a.csv"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*a*a*a*a*b", &format!("{}b", "a".repeat(100))));
        assert!(!matches("*a*a*a*a*b", &"a".repeat(100)));
    }

    #[test]
    fn listings_take_folders_files_and_patterns_and_skip_what_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir(home.join("results")).unwrap();
        std::fs::write(home.join("results/a.json"), b"{}").unwrap();
        std::fs::write(home.join("results/a.csv"), b"x").unwrap();
        std::fs::write(home.join(".x.zip.uploading"), b"x").unwrap();
        let recent = Recent::default();
        let names = |path: &str| -> Vec<String> {
            list(home, Path::new(path), &recent)
                .unwrap()
                .into_iter()
                .map(|f| f.path.display().to_string())
                .collect()
        };
        assert_eq!(names("/"), ["results"]);
        assert_eq!(names("/results"), ["a.csv", "a.json"]);
        assert_eq!(names("/results/*.json"), ["a.json"]);
        assert_eq!(names("/results/a.csv"), ["a.csv"]);
        assert!(names("/results/*.txt").is_empty());
        assert!(list(home, Path::new("/nothing"), &recent).is_err());
        // A landed archive already taken by the poller is still shown.
        let landed = home.join("guest_20261123070000.zip");
        std::fs::write(&landed, b"zip").unwrap();
        let entry = Entry::of(&std::fs::metadata(&landed).unwrap());
        recent.landed(landed.clone(), entry);
        std::fs::remove_file(&landed).unwrap();
        assert_eq!(names("/"), ["guest_20261123070000.zip", "results"]);
        assert_eq!(names("/guest_*"), ["guest_20261123070000.zip"]);
        assert_eq!(
            status(home, Path::new("/guest_20261123070000.zip"), &recent)
                .unwrap()
                .len(),
            3
        );
    }
}
