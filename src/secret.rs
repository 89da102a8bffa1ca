//! Secrets read from files: the cluster secret (peer authentication) and
//! the client password (Redis AUTH). DESIGN.md 9.
//!
//! A secret never appears in `Debug` output or in a log line, and is only
//! ever compared in constant time.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Largest secret file read: a secret is a line, not a document, and a
/// path pointing at a large file by mistake should fail, not be hashed.
pub const SECRET_FILE_BYTES_MAX: u64 = 4096;

/// Bytes of a secret, taken from a file or the environment.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from bytes already read; empty is refused by every loader,
    /// so this is only for the loaders and tests.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `candidate` is this secret, in time independent of where
    /// they differ and of their lengths: both sides are hashed first, so
    /// only equal-length digests are compared (a plain `ct_eq` on slices
    /// returns early on a length mismatch, which would leak the length).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = Sha256::digest(&self.0);
        let theirs = Sha256::digest(candidate);
        ours.as_slice().ct_eq(theirs.as_slice()).into()
    }

    /// Reads a secret file: the whole file, less trailing whitespace (so
    /// that `echo secret > file` works). Refused if group or others have
    /// any access to it (as ssh does for private keys: a secret that any
    /// local user can read protects nothing), if it is empty, or if it is
    /// larger than `SECRET_FILE_BYTES_MAX`.
    pub fn from_file(path: &Path) -> Result<Secret, SecretFileError> {
        let fail = |reason: String| SecretFileError {
            path: path.to_owned(),
            reason,
        };
        let metadata = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if !metadata.is_file() {
            return Err(fail("not a regular file".into()));
        }
        check_private(&metadata).map_err(fail)?;
        if metadata.len() > SECRET_FILE_BYTES_MAX {
            return Err(fail(format!(
                "{} bytes, more than the {SECRET_FILE_BYTES_MAX} a secret may have",
                metadata.len()
            )));
        }
        let mut bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let kept = bytes.trim_ascii_end().len();
        bytes.truncate(kept);
        if bytes.is_empty() {
            return Err(fail("empty".into()));
        }
        Ok(Secret(bytes))
    }
}

#[cfg(unix)]
fn check_private(metadata: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others read it; chmod 600 it"
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_metadata: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Settings compare equal when their secrets do; constant time all the same.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

/// A secret file that cannot be used, and why.
#[derive(Debug)]
pub struct SecretFileError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for SecretFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}': {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for SecretFileError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file_with(dir: &Path, text: &[u8], mode: u32) -> PathBuf {
        let path = dir.join("secret");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_private_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let secret = Secret::from_file(&file_with(dir.path(), b"s3cret\n", 0o600)).unwrap();
        assert_eq!(secret.as_bytes(), b"s3cret");
        assert!(secret.matches(b"s3cret"));
        assert!(!secret.matches(b"s3cret\n"));
        assert!(!secret.matches(b"s3cre"));
        assert!(!secret.matches(b""));
    }

    #[test]
    fn a_group_or_world_readable_file_is_refused_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            let err = Secret::from_file(&file_with(dir.path(), b"x", mode)).unwrap_err();
            assert!(
                err.reason.contains(&format!("mode {mode:04o}")),
                "{mode:o}: {err}"
            );
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn an_empty_or_missing_or_huge_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Secret::from_file(&file_with(dir.path(), b" \n\n", 0o600)).unwrap_err();
        assert_eq!(err.reason, "empty");
        let huge = vec![b'a'; SECRET_FILE_BYTES_MAX as usize + 1];
        let err = Secret::from_file(&file_with(dir.path(), &huge, 0o600)).unwrap_err();
        assert!(err.reason.contains("more than"), "{err}");
        let err = Secret::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let text = format!("{:?}", Secret::new("hunter2"));
        assert!(!text.contains("hunter2"), "{text}");
    }
}
