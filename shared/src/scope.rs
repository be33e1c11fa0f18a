//! Scopes (RFC 6749 §3.3): a space-delimited set of case-sensitive tokens.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens, ordered so that its string form is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(BTreeSet<String>);

/// A scope string with a character outside RFC 6749 §3.3's `scope-token` grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope contains a character not allowed by RFC 6749 section 3.3")]
pub struct ScopeSyntaxError;

impl Scope {
    /// Parses a space-delimited scope; empty tokens (double spaces) are ignored.
    pub fn parse(s: &str) -> Result<Self, ScopeSyntaxError> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(ScopeSyntaxError);
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    /// Parses a list separated by spaces or commas (as `TASKMANAGER_MCP_SCOPE=read,write`).
    pub fn parse_list(s: &str) -> Result<Self, ScopeSyntaxError> {
        Self::parse(&s.replace(',', " "))
    }

    /// Builds a scope from tokens known to be valid.
    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        Self(tokens.into_iter().map(Into::into).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }
    /// Every token of `self` is in `other`.
    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }
    /// The tokens in both.
    pub fn intersect(&self, other: &Scope) -> Scope {
        Scope(self.0.intersection(&other.0).cloned().collect())
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
            first = false;
        }
        Ok(())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Scope::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sorted() {
        let s = Scope::parse("write  read").unwrap();
        assert_eq!(s.to_string(), "read write");
        assert!(s.contains("read"));
    }

    #[test]
    fn rejects_bad_characters() {
        assert!(Scope::parse("read \"x\"").is_err());
        assert!(Scope::parse("r\\x").is_err());
    }

    #[test]
    fn subset_and_intersection() {
        let all = Scope::parse_list("read,write").unwrap();
        let r = Scope::parse("read").unwrap();
        assert!(r.is_subset(&all));
        assert!(!all.is_subset(&r));
        assert_eq!(Scope::parse("read admin").unwrap().intersect(&all), r);
    }
}
