//! Secrets at rest: whether the config file holds a password in plain text, and whether users
//! other than its owner can read the file. Such a file is a warning (with the fix), or with
//! `"refuse_readable_secrets": true` a configuration error, for hardened hosts. A password
//! taken from the environment (`${env:NAME}`) is not in the file. The password itself is never
//! printed: only the key that holds it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::Config;
use crate::config::connection_string;
use crate::error::ConfigError;

/// What the config file holds of a password, and who can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretAtRest {
    /// The key whose value holds a plaintext password; `None` when no password is in the file.
    pub(crate) key: Option<&'static str>,
    /// `refuse_readable_secrets`: a readable (or uncheckable) file is an error, not a warning.
    pub(crate) refuse: bool,
    pub(crate) access: Access,
    /// The file that was checked.
    pub(crate) file: Option<PathBuf>,
}

/// Who can read the config file, as far as this program can tell. (The Unix variants are
/// only built on Unix; Windows reports `Unknown`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) enum Access {
    /// Not looked at: no password in the file, or config text that did not come from a file.
    NotChecked,
    /// Unix: only the owner can read it.
    OwnerOnly { mode: u32 },
    /// Unix: group or others can read it.
    Readable { mode: u32 },
    /// Windows: access lists are not read, so it is unknown who can read the file.
    Unknown,
}

impl SecretAtRest {
    /// Looks for a plaintext password in the config's keys.
    pub(crate) fn of(map: &Map<String, Value>, refuse: bool) -> SecretAtRest {
        let in_connection_string = match map.get("connection_string") {
            Some(Value::String(s)) => connection_string::secret_values(s)
                .into_iter()
                .any(is_plaintext),
            _ => false,
        };
        let in_password = match map.get("mssql_password") {
            Some(Value::String(s)) => is_plaintext(s),
            Some(Value::Number(_) | Value::Bool(_)) => true,
            _ => false,
        };
        let key = if in_connection_string {
            Some("connection_string")
        } else if in_password {
            Some("mssql_password")
        } else {
            None
        };
        SecretAtRest {
            key,
            refuse,
            access: Access::NotChecked,
            file: None,
        }
    }

    /// The finding as `check` prints it.
    pub(crate) fn describe(&self) -> String {
        let Some(key) = self.key else {
            return "no password in the config file".to_owned();
        };
        let path = self
            .file
            .as_deref()
            .map_or_else(|| "FILE".to_owned(), |f| f.display().to_string());
        match self.access {
            Access::OwnerOnly { mode } => format!(
                "a password in the config file ({key}), readable by its owner only (mode \
                 {mode:04o})"
            ),
            Access::Readable { mode } => format!(
                "WARNING: a password in the config file ({key}) that other users can read \
                 (mode {mode:04o}): run `chmod 600 {path}`, or give it as ${{env:NAME}}"
            ),
            Access::Unknown => format!(
                "a password in the config file ({key}); who else can read the file was not \
                 checked (Windows access lists are not read): give it as ${{env:NAME}}"
            ),
            Access::NotChecked => format!("a password in the config file ({key})"),
        }
    }
}

/// A password value that is not wholly taken from the environment: something but `${env:…}`
/// references, braces and blanks is left.
fn is_plaintext(value: &str) -> bool {
    let mut rest = value.trim();
    if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        rest = inner;
    }
    let mut left = String::new();
    while let Some(start) = rest.find("${env:") {
        left.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = "";
                left.push('?');
            }
        }
    }
    left.push_str(rest);
    !left.trim().is_empty()
}

/// Checks who can read the config file at `path` when it holds a password: a warning in the
/// config's warnings, or the error of `refuse_readable_secrets`.
pub(crate) fn check_file(path: &Path, config: &mut Config) -> Result<(), ConfigError> {
    let Some(key) = config.secret_at_rest.key else {
        return Ok(());
    };
    let access = access_of(path);
    config.secret_at_rest.access = access;
    config.secret_at_rest.file = Some(path.to_owned());
    let shown = path.display();
    let problem = match access {
        Access::Readable { mode } => format!(
            "the config file '{shown}' holds a password ({key}) and users other than its owner \
             can read it (mode {mode:04o}); run `chmod 600 {shown}`, or take the password from \
             the environment with ${{env:NAME}}"
        ),
        Access::Unknown => format!(
            "the config file '{shown}' holds a password ({key}) and ehi-sync cannot tell who \
             else can read it (it does not read Windows access lists); make sure only the \
             account that runs ehi-sync can read it (`icacls`), or take the password from the \
             environment with ${{env:NAME}}"
        ),
        Access::OwnerOnly { .. } | Access::NotChecked => return Ok(()),
    };
    if config.secret_at_rest.refuse {
        return Err(ConfigError::Other(format!(
            "{problem}. Refused: refuse_readable_secrets is true"
        )));
    }
    config.warnings.push(problem);
    Ok(())
}

#[cfg(unix)]
fn access_of(path: &Path) -> Access {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(metadata) => {
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o044 == 0 {
                Access::OwnerOnly { mode }
            } else {
                Access::Readable { mode }
            }
        }
        // The file was just read; a file that cannot be looked at now is not known to be private.
        Err(_) => Access::Unknown,
    }
}

#[cfg(windows)]
fn access_of(_path: &Path) -> Access {
    Access::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(json: serde_json::Value) -> Option<&'static str> {
        let serde_json::Value::Object(map) = json else {
            panic!("an object");
        };
        SecretAtRest::of(&map, false).key
    }

    #[test]
    fn plaintext_passwords_are_found_and_environment_references_are_not() {
        use serde_json::json;
        assert_eq!(
            found(json!({"connection_string": "Driver={x};Uid=u;Pwd=secret;"})),
            Some("connection_string")
        );
        assert_eq!(
            found(json!({"connection_string": "Driver={x};PASSWORD={se;cret}"})),
            Some("connection_string")
        );
        assert_eq!(
            found(json!({"connection_string": "Driver={x};Pwd=${env:PW};"})),
            None
        );
        assert_eq!(
            found(json!({"connection_string": "Driver={x};Pwd=a${env:PW};"})),
            Some("connection_string")
        );
        // An empty password (trust authentication) is no secret.
        assert_eq!(
            found(json!({"connection_string": "Driver={x};Pwd=;"})),
            None
        );
        assert_eq!(
            found(json!({"mssql_password": "hunter2"})),
            Some("mssql_password")
        );
        assert_eq!(
            found(json!({"mssql_password": 1234})),
            Some("mssql_password")
        );
        assert_eq!(
            found(json!({"mssql_password": "${env:EHI_SYNC_PASSWORD}"})),
            None
        );
        assert_eq!(found(json!({"mssql_password": ""})), None);
    }
}
