use std::fmt;
use std::path::PathBuf;

/// One problem in one YAML file, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Located(self))]
pub struct ConfigError {
    pub file: PathBuf,
    /// `Kind/name`, e.g. `Component/statestore`.
    pub resource: Option<String>,
    /// Dotted path of the offending field, e.g. `spec.metadata[2].name`.
    pub field: Option<String>,
    pub message: String,
}

/// `{file}: {resource}: {field}: {message}`, leaving out what is unknown.
struct Located<'a>(&'a ConfigError);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "{}", e.file.display())?;
        for part in [&e.resource, &e.field].into_iter().flatten() {
            write!(f, ": {part}")?;
        }
        write!(f, ": {}", e.message)
    }
}

/// Every problem found, not just the first: a user fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", OnePerLine(&self.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

struct OnePerLine<'a>(&'a [ConfigError]);

impl fmt::Display for OnePerLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
