//! The data directory's layout: the configuration, the signing key, the store and the control
//! socket, by name; and reading the signing key, which must be private to the node's user.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// File name of the configuration inside the data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the node's Ed25519 secret key (32-byte seed, hex) inside the data directory.
pub const KEY_FILE: &str = "node.key";
/// Directory of the RocksDB store inside the data directory.
pub const DB_DIR: &str = "db";
/// File name of the control socket in the data directory (backups of a running node).
pub const CONTROL_SOCKET: &str = "control.sock";

/// Reads the node's signing key seed from the data directory.
pub fn load_seed(data: &Path) -> Result<[u8; 32]> {
    let path = data.join(KEY_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("read the signing key {}", path.display()))?;
    check_key_permissions(&path)?;
    let bytes = hex::decode(text.trim()).context("the signing key is not hex")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("the signing key must be 32 bytes"))
}

/// Refuses a signing key that group or others may read (issue 13, item 9).
pub fn check_key_permissions(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("read the signing key {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the signing key {} has mode {:o}: group or others can read it; run chmod 600 {} (and consider the key exposed if others could read it)",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    Ok(())
}
