//! Validated tachyon paths: absolute, `/`-separated, no empty, `.` or `..` components.

use std::fmt;

use crate::error::FsError;

/// Longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// An absolute, normalised path in the tachyon namespace (`/` is the root).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FsPath {
    components: Vec<String>,
}

impl FsPath {
    /// The root directory `/`.
    pub fn root() -> Self {
        FsPath { components: Vec::new() }
    }

    /// Parses a user-given path. Accepts a `tachyon://host:port` or `alluxio://host:port`
    /// prefix (ignored: the master is found through configuration), folds repeated and
    /// trailing slashes, and rejects relative paths, `.`/`..` and over-long names.
    pub fn parse(raw: &str) -> Result<Self, FsError> {
        let invalid = |reason: &str| FsError::InvalidPath { path: crate::error::shorten(raw, MAX_PATH_BYTES), reason: reason.to_string() };
        let mut rest = raw;
        for scheme in ["tachyon://", "alluxio://"] {
            if let Some(after) = rest.strip_prefix(scheme) {
                rest = match after.find('/') {
                    Some(i) => &after[i..],
                    None => "/",
                };
            }
        }
        if rest.len() > MAX_PATH_BYTES {
            return Err(invalid("path is longer than 4096 bytes"));
        }
        if !rest.starts_with('/') {
            return Err(invalid("path must be absolute (start with '/')"));
        }
        let mut components = Vec::new();
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(invalid("'.' and '..' are not allowed"));
            }
            if part.len() > MAX_NAME_BYTES {
                return Err(invalid("a name is longer than 255 bytes"));
            }
            if part.chars().any(|c| c.is_control()) {
                return Err(invalid("control characters are not allowed"));
            }
            components.push(part.to_string());
        }
        Ok(FsPath { components })
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The names from the root down.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The last name, `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The parent directory, `None` for the root.
    pub fn parent(&self) -> Option<FsPath> {
        if self.is_root() {
            return None;
        }
        Some(FsPath { components: self.components[..self.components.len() - 1].to_vec() })
    }

    /// This path with `name` appended.
    pub fn join(&self, name: &str) -> FsPath {
        let mut components = self.components.clone();
        components.push(name.to_string());
        FsPath { components }
    }

    /// True if `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &FsPath) -> bool {
        self.components.starts_with(&other.components)
    }
}

impl fmt::Display for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.components.is_empty() {
            return f.write_str("/");
        }
        for c in &self.components {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(FsPath::parse("/a//b/").unwrap().to_string(), "/a/b");
        assert_eq!(FsPath::parse("/").unwrap(), FsPath::root());
        assert_eq!(FsPath::parse("tachyon://h:19998/x/y").unwrap().to_string(), "/x/y");
        assert_eq!(FsPath::parse("alluxio://h:19998").unwrap(), FsPath::root());
    }

    #[test]
    fn rejects_bad_paths_with_reason() {
        for bad in ["", "a/b", "/a/../b", "/./x", "/a\u{1}b"] {
            let err = FsPath::parse(bad).unwrap_err();
            assert!(matches!(err, FsError::InvalidPath { .. }), "{bad}: {err}");
        }
        let long = format!("/{}", "x".repeat(256));
        assert!(FsPath::parse(&long).is_err());
    }

    #[test]
    fn parent_join_and_prefix() {
        let p = FsPath::parse("/a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().to_string(), "/a/b");
        assert_eq!(p.name(), Some("c"));
        assert!(p.starts_with(&FsPath::parse("/a").unwrap()));
        assert!(!FsPath::parse("/ab").unwrap().starts_with(&FsPath::parse("/a").unwrap()));
        assert_eq!(FsPath::root().join("x").to_string(), "/x");
        assert_eq!(FsPath::root().parent(), None);
    }
}
