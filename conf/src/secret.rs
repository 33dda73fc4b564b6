//! One rule for secrets (tokens, database URLs, storage keys), the same in
//! the agent and the hub:
//!
//! 1. The file the config names (e.g. `sync.token_file`,
//!    `database.url_file`), if set.
//! 2. Else the systemd credential `$CREDENTIALS_DIRECTORY/ID`, if it holds
//!    something. The units' `SetCredential=ID:\n` fallback makes a blank
//!    credential when the admin set no secret: blank there means "not
//!    configured".
//! 3. Else the file the unit loads that credential from (`/etc/…`), if it
//!    exists: what an admin's command over ssh, outside the unit, reads.
//!
//! A file found by 1 or 3 must hold the secret: a blank or unreadable file
//! is an error naming the file and the config key, never "no secret". A
//! secret is never put in an error or a log.

use std::path::{Path, PathBuf};

/// A secret a program can be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secret {
    /// The systemd credential id (`LoadCredential=ID:…`).
    pub id: &'static str,
    /// The config key naming its file.
    pub key: &'static str,
    /// Where the unit loads it from.
    pub system_file: &'static str,
}

/// A secret's file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {path}: {message}")]
pub struct CredentialError {
    pub key: &'static str,
    pub path: PathBuf,
    pub message: String,
}

/// Where secrets are looked for; [`Sources::from_env`] in production.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sources {
    /// `$CREDENTIALS_DIRECTORY`.
    pub credentials_dir: Option<PathBuf>,
    /// Prefix of the system files (`/` in production; a temp dir in tests).
    pub root: PathBuf,
}

impl Sources {
    pub fn from_env() -> Self {
        Sources {
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            root: PathBuf::from("/"),
        }
    }
}

impl Secret {
    /// The file holding this secret by the rule above, if any.
    pub fn locate(&self, configured: Option<&Path>) -> Option<PathBuf> {
        self.locate_in(&Sources::from_env(), configured)
    }

    pub fn locate_in(&self, src: &Sources, configured: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = configured {
            return Some(p.to_path_buf());
        }
        if let Some(dir) = &src.credentials_dir {
            let p = dir.join(self.id);
            if std::fs::read_to_string(&p).is_ok_and(|t| !t.trim().is_empty()) {
                return Some(p);
            }
        }
        let system = src.root.join(self.system_file.trim_start_matches('/'));
        system.exists().then_some(system)
    }

    /// Reads a located file: its trimmed text, which must not be empty.
    pub fn read(&self, path: &Path) -> Result<String, CredentialError> {
        let err = |message: String| CredentialError { key: self.key, path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(err(format!("is empty; put the secret in it, or unset {} / remove the file", self.key)));
        }
        Ok(text.to_string())
    }

    /// Locates and reads: `Ok(None)` when no secret is configured anywhere.
    pub fn load(&self, configured: Option<&Path>) -> Result<Option<(PathBuf, String)>, CredentialError> {
        self.load_in(&Sources::from_env(), configured)
    }

    pub fn load_in(
        &self,
        src: &Sources,
        configured: Option<&Path>,
    ) -> Result<Option<(PathBuf, String)>, CredentialError> {
        match self.locate_in(src, configured) {
            None => Ok(None),
            Some(p) => self.read(&p).map(|s| Some((p, s))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: Secret = Secret { id: "a-token", key: "a.token_file", system_file: "/etc/prog/a.token" };

    fn sources(dir: &Path) -> Sources {
        std::fs::create_dir_all(dir.join("creds")).unwrap();
        std::fs::create_dir_all(dir.join("etc/prog")).unwrap();
        Sources { credentials_dir: Some(dir.join("creds")), root: dir.to_path_buf() }
    }

    #[test]
    fn a_configured_file_always_wins_and_must_hold_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let src = sources(dir.path());
        std::fs::write(dir.path().join("creds/a-token"), "from-systemd\n").unwrap();
        let own = dir.path().join("own.token");
        std::fs::write(&own, "  mine \n").unwrap();
        assert_eq!(TOKEN.load_in(&src, Some(&own)).unwrap(), Some((own.clone(), "mine".into())));
        std::fs::write(&own, "\n").unwrap();
        let e = TOKEN.load_in(&src, Some(&own)).unwrap_err().to_string();
        assert!(e.starts_with("a.token_file: ") && e.contains("own.token") && e.contains("empty"), "{e}");
        let e = TOKEN.load_in(&src, Some(&dir.path().join("missing"))).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn a_blank_systemd_credential_is_not_configured_and_the_system_file_comes_next() {
        let dir = tempfile::tempdir().unwrap();
        let src = sources(dir.path());
        std::fs::write(dir.path().join("creds/a-token"), "\n").unwrap();
        assert_eq!(TOKEN.load_in(&src, None).unwrap(), None, "blank fallback, no system file");
        let etc = dir.path().join("etc/prog/a.token");
        std::fs::write(&etc, "admin-token\n").unwrap();
        assert_eq!(TOKEN.load_in(&src, None).unwrap(), Some((etc.clone(), "admin-token".into())));
        std::fs::write(dir.path().join("creds/a-token"), "unit-token\n").unwrap();
        let (p, t) = TOKEN.load_in(&src, None).unwrap().unwrap();
        assert_eq!((p, t.as_str()), (dir.path().join("creds/a-token"), "unit-token"));
    }

    #[test]
    fn a_blank_system_file_is_an_error_not_an_absent_secret() {
        let dir = tempfile::tempdir().unwrap();
        let src = Sources { credentials_dir: None, ..sources(dir.path()) };
        std::fs::write(dir.path().join("etc/prog/a.token"), "").unwrap();
        let e = TOKEN.load_in(&src, None).unwrap_err();
        assert_eq!(e.key, "a.token_file");
    }
}
