//! The agent's secrets, read by the one rule for secrets shared with the
//! hub ([`conf::secret`]: the configured file, else the systemd credential,
//! else the file the unit loads it from; a blank file is an error, a blank
//! credential "not configured"). Used by every command: a blank or
//! unreadable file is exit 2 at start and a FAIL line in `invigil check`.
//! Secrets are re-read where rotation matters (the sync token, before each
//! attempt) with the same rule. A secret is never logged.

pub use conf::secret::{CredentialError, Secret, Sources};

pub const SYNC_TOKEN: Secret =
    Secret { id: "sync-token", key: "sync.token_file", system_file: "/etc/invigil/sync.token" };
pub const SERVER_TOKEN: Secret =
    Secret { id: "server-token", key: "server.token_file", system_file: "/etc/invigil/server.token" };
pub const S3_CREDENTIALS: Secret =
    Secret { id: "s3-credentials", key: "storage.credentials_file", system_file: "/etc/invigil/s3.credentials" };
pub const HUB_TOKEN: Secret = Secret { id: "hub-token", key: "hub.token_file", system_file: "/etc/invigil/hub.token" };

#[cfg(test)]
mod tests {
    use super::*;

    /// Each secret's id and system file are the ones the unit loads.
    #[test]
    fn the_secrets_are_the_ones_the_unit_loads() {
        let unit = include_str!("../../systemd/invigil.service");
        for s in [SYNC_TOKEN, SERVER_TOKEN, S3_CREDENTIALS, HUB_TOKEN] {
            let line = format!("LoadCredential={}:{}", s.id, s.system_file);
            assert!(unit.lines().any(|l| l == line), "{line} is not in systemd/invigil.service");
            assert!(unit.lines().any(|l| l == format!("SetCredential={}:\\n", s.id)), "{}: no blank fallback", s.id);
        }
    }
}
