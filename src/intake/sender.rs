//! Sender addresses (SPEC §3.1 `sourceaddress`): up to 11 Latin letters and digits
//! (alphanumeric sender) or up to 15 digits (numeric sender). Compared
//! case-sensitively against the account's approved list.

use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
/// Shared (`Arc`): every message of an archive carries its sender.
pub struct Sender(Arc<str>);

impl Sender {
    /// Validates the form of a sender; the error says why it is not one.
    pub fn parse(s: &str) -> Result<Sender, &'static str> {
        if s.is_empty() {
            return Err("empty sender");
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return if s.len() <= 15 {
                Ok(Sender(s.into()))
            } else {
                Err("a numeric sender has at most 15 digits")
            };
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("a sender has only Latin letters and digits");
        }
        if s.len() > 11 {
            return Err("an alphanumeric sender has at most 11 characters");
        }
        Ok(Sender(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_alphanumeric_and_numeric_senders() {
        for ok in [
            "TESTSMS",
            "A",
            "Shop24",
            "ABCDEFGHIJK",
            "79031234567",
            "123456789012345",
        ] {
            assert_eq!(Sender::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_what_is_not_a_sender() {
        for bad in [
            "",
            "ABCDEFGHIJKL",
            "1234567890123456",
            "TEST SMS",
            "TEST-SMS",
            "ТЕСТ",
            "Shop_24",
            " TESTSMS",
        ] {
            assert!(Sender::parse(bad).is_err(), "{bad:?}");
        }
    }
}
