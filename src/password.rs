//! Account passwords: argon2id PHC strings made by `smsdrop hash-password`,
//! verified at every FTP login.
//!
//! A verification is deliberately slow: it fills `m` KiB of memory (19 MiB
//! with the recommended `m=19456`) `t` times. Verifications take turns (see
//! `front::auth::Accounts`), and the memory of the last [`parallel`] of them is kept
//! for the next: the argon2 crate allocates it afresh every time, and where
//! the allocator hands it back to the system in between, touching it page by
//! page took as long as the hashing (36 vs 15 ms on the development VM).

use std::sync::Mutex;

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The argon2id PHC string for `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher;
    Ok(Argon2::default()
        .hash_password(password.as_bytes())?
        .to_string())
}

/// Verifications worth running at once: each keeps a core busy, so more only
/// add memory (an FTP login waits for its turn, see `front::auth::Accounts`).
pub fn parallel() -> usize {
    // Asked once: on Linux the answer reads the cgroup's CPU quota files,
    // which `verify` would otherwise do at every login.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Memory of finished verifications, at most [`parallel`] of them.
static KEPT: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Does `password` match the PHC string `hash`? The algorithm, version and
/// parameters are the hash's own, as with the argon2 crate's verifier, whose
/// results this matches (tests). Blocks for as long as argon2 takes: call it
/// off the async executor.
pub fn verify(password: &str, hash: &str) -> bool {
    verify_with(&KEPT, password, hash)
}

/// [`verify`], keeping memory in `kept`.
fn verify_with(kept: &Mutex<Vec<Vec<Block>>>, password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Some(argon) = hasher(&parsed) else {
        return false;
    };
    let needed = argon.params().block_count();
    let mut memory = kept
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_default();
    // Argon2 writes every block before it reads it: what a kept block holds
    // does not matter, and a bigger set's extra blocks are not used.
    if memory.len() < needed {
        memory.resize(needed, Block::default());
    }
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let ok = argon
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory)
        .is_ok()
        // `Output`'s comparison takes the same time wherever they differ.
        && Output::new(out).is_ok_and(|computed| computed == *expected);
    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() < parallel() {
        kept.push(memory);
    }
    ok
}

/// The hasher a PHC string asks for, or `None` when it asks for something
/// argon2 does not know.
fn hasher(parsed: &PasswordHash) -> Option<Argon2<'static>> {
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(parsed).ok()?;
    Some(Argon2::new(algorithm, version, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's own verifier, which `verify` replaces.
    fn crate_verify(password: &str, hash: &str) -> bool {
        use argon2::PasswordVerifier;
        PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    #[test]
    fn verify_agrees_with_the_argon2_crate() {
        use argon2::PasswordHasher;
        let mut hashes = vec![
            hash("guest").unwrap(),
            // The sample configuration's, and the recommended parameters.
            "$argon2id$v=19$m=19456,t=2,p=1$4K/ExbU+/nJAth9ogF2McQ$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE".into(),
        ];
        for (algorithm, version, m, t, p, len) in [
            (Algorithm::Argon2id, Version::V0x13, 8192, 3, 2, 32),
            (Algorithm::Argon2i, Version::V0x10, 4096, 2, 1, 16),
            (Algorithm::Argon2d, Version::V0x13, 2048, 1, 4, 64),
            (Algorithm::Argon2id, Version::V0x13, 65536, 1, 1, 32),
        ] {
            let params = Params::new(m, t, p, Some(len)).unwrap();
            let argon = Argon2::new(algorithm, version, params);
            hashes.push(argon.hash_password(b"guest").unwrap().to_string());
        }
        // Without `v=` (read as the default version, as the crate does).
        hashes.push(hashes[3].replace("$v=16", ""));
        // After a big memory set, the small ones run on its first blocks.
        hashes.push(hashes[0].clone());
        for hash in &hashes {
            for password in ["guest", "Guest", "", "guest "] {
                assert_eq!(
                    verify(password, hash),
                    crate_verify(password, hash),
                    "{password:?} against {hash}"
                );
            }
            assert_eq!(verify("guest", hash), !hash.starts_with("$argon2i$m=4096"));
        }
        for broken in [
            "",
            "guest",
            "$argon2id$v=19$m=19456,t=2,p=1$4K/ExbU+/nJAth9ogF2McQ",
            "$argon2id$v=18$m=19456,t=2,p=1$4K/ExbU+/nJAth9ogF2McQ$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE",
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
        ] {
            assert!(!verify("guest", broken), "{broken}");
        }
    }

    #[test]
    fn verification_memory_is_kept_for_the_next() {
        let kept = Mutex::new(Vec::new());
        let guest = hash("guest").unwrap();
        assert!(verify_with(&kept, "guest", &guest));
        let first = kept.lock().unwrap()[0].as_ptr();
        assert_eq!(kept.lock().unwrap()[0].len(), 19456);
        // The next verification runs on the same memory, and gives it back.
        assert!(!verify_with(&kept, "other", &guest));
        let kept = kept.into_inner().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].as_ptr(), first);
    }
}
