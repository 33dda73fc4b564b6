//! Strict TOML config files.
//!
//! Guarantees: the target type's `deny_unknown_fields` is honoured (an
//! unknown key names itself); every error is one line, `FILE: MESSAGE`,
//! without toml's multi-line caret drawing (journald shows one line per
//! entry).

use std::path::Path;

use serde::de::DeserializeOwned;

/// A config error: one line naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

impl ConfigError {
    /// An error about `field` of `file`.
    pub fn field(file: &str, field: &str, message: impl std::fmt::Display) -> ConfigError {
        ConfigError { file: file.to_string(), message: format!("{field}: {message}") }
    }
}

/// Reads and parses `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError { file: file.clone(), message: e.to_string() })?;
    parse(&text, &file)
}

/// Parses `text`; `file` names it in errors.
pub fn parse<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError {
        file: file.to_string(),
        message: e
            .to_string()
            .split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('|'))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        port: u16,
    }

    #[test]
    fn errors_are_one_line_naming_the_file_and_the_key() {
        let e = parse::<Cfg>("port = 1\nprot = 2\n", "a.toml").unwrap_err().to_string();
        assert!(e.starts_with("a.toml: ") && e.contains("prot") && !e.contains('\n'), "{e}");
        let e = parse::<Cfg>("port = \"x\"\n", "a.toml").unwrap_err().to_string();
        assert!(e.contains("port") && !e.contains('\n'), "{e}");
        let e = load::<Cfg>(Path::new("/nonexistent/a.toml")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/a.toml: "), "{e}");
        assert_eq!(parse::<Cfg>("port = 8\n", "a.toml").unwrap().port, 8);
    }
}
