//! Repository names and tags, checked against the distribution spec's grammar.
//!
//! A name is one or more `/`-separated components, each `[a-z0-9]+` runs joined by `.`, `_`,
//! `__` or one or more `-`. That grammar has no room for `..`, uppercase, empty components or
//! anything that means something to a file system, which matters less here than it might:
//! names are only ever keys in SQLite, never paths.

use std::fmt;

use crate::error::Error;

/// Longest name accepted: clients limit host, port and name together to 255 characters.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Name, Error> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(valid_component) {
            return Err(Error::NameInvalid(s.to_owned()));
        }
        Ok(Name(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of alphanumerics.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // One separator, then another run must follow.
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok
        && tag.len() <= MAX_TAG_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for good in [
            "a",
            "library/alpine",
            "artifacts/default",
            "a/b/c/d/e/f",
            "my-app__x.y_z",
            "a--b",
            "0",
        ] {
            assert!(Name::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "A",
            "Library/alpine",
            "a/../b",
            "..",
            "a/",
            "/a",
            "a//b",
            "a___b",
            "a..b",
            "-a",
            "a-",
            "a_",
            ".a",
            "a b",
            "a%2fb",
            &"a".repeat(256),
        ] {
            assert!(
                matches!(Name::parse(bad), Err(Error::NameInvalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn tags_follow_the_grammar() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(valid_tag(good), "{good}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", &"t".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
