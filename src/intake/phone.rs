//! Phone numbers (SPEC §3.1 `phone`, §3.2 `TELRN_LONG`).
//!
//! `+`, spaces, `-`, `(` and `)` are stripped; what remains must be digits, read as
//! an international number (as if prefixed with `+`) and valid for its country by
//! libphonenumber's metadata. National forms (`89031234567`) are therefore invalid.
//! The result is the E.164 number without `+`.

use std::fmt;
#[cfg(test)]
use std::sync::LazyLock;

/// Whether `7` + `9` + nine digits may skip the phonenumber crate. Its parser
/// and its regex cache cost ~8 µs a number — most of an archive's processing
/// time — while every such number is, by the metadata, a valid Russian mobile
/// number `9\d{9}` that parses to itself: +7 numbers starting with 9 go to RU,
/// nothing strips a prefix from them, and RU's mobile pattern is `9\d{9}`.
/// That is checked here against the metadata compiled into the binary — by a
/// unit test, not at run time, because loading the metadata costs ~0.1 s that
/// an archive of Russian mobile numbers otherwise never pays; a crate update
/// that changed it fails the test. Another test compares both paths on random
/// numbers.
#[cfg(test)]
static RU_MOBILE_FAST: LazyLock<bool> = LazyLock::new(|| {
    let db = &*phonenumber::metadata::DATABASE;
    let compact = |s: &str| s.split_whitespace().collect::<String>();
    let Some(ru) = db.by_id("RU") else {
        return false;
    };
    let sample = "9000000000";
    db.region(&7).is_some_and(|r| r.first() == Some(&"RU"))
        && ru
            .leading_digits()
            .is_some_and(|l| l.find(sample).is_some_and(|m| m.start() == 0))
        && ru
            .national_prefix_for_parsing()
            .is_none_or(|p| p.find(sample).is_none_or(|m| m.start() != 0))
        && ru.national_prefix().is_none_or(|p| !sample.starts_with(p))
        && ru
            .descriptors()
            .mobile()
            .is_some_and(|m| compact(m.national_number().as_str()) == r"9\d{9}")
});

/// `7`, `9` and nine more digits (all digits already).
fn ru_mobile_shape(digits: &str) -> bool {
    digits.len() == 11 && digits.starts_with("79")
}

/// A valid international number: E.164 digits without `+`, plus its country code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Msisdn {
    digits: String,
    country_code: u16,
}

impl Msisdn {
    /// Validates a phone cell; the error says why it is not a usable number.
    pub fn parse(raw: &str) -> Result<Msisdn, &'static str> {
        let mut digits = String::with_capacity(raw.len());
        for c in raw.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '+' | ' ' | '-' | '(' | ')' => {}
                _ => return Err("only digits, '+', spaces, '-', '(' and ')' are allowed"),
            }
        }
        if digits.is_empty() {
            return Err("no digits");
        }
        if digits.len() > 15 {
            return Err("longer than 15 digits");
        }
        if digits.starts_with('0') {
            return Err("an international number does not start with 0");
        }
        if ru_mobile_shape(&digits) {
            return Ok(Msisdn {
                digits,
                country_code: 7,
            });
        }
        Msisdn::parse_digits(digits)
    }

    /// The general path: libphonenumber's parser and metadata.
    fn parse_digits(digits: String) -> Result<Msisdn, &'static str> {
        if digits.len() == 11 && digits.starts_with('8') {
            // The commonest mistake: a Russian number in national form.
            if let Ok(n) = phonenumber::parse(None, format!("+7{}", &digits[1..]))
                && n.is_valid()
            {
                return Err("national form: write the country code 7 instead of the leading 8");
            }
        }
        let number = phonenumber::parse(None, format!("+{digits}"))
            .map_err(|_| "not an international number (country code + number)")?;
        if !number.is_valid() {
            return Err("not a valid number for its country");
        }
        let national = number.national();
        let country_code = number.code().value();
        let canonical = format!(
            "{country_code}{}{}",
            "0".repeat(national.zeros() as usize),
            national.value()
        );
        Ok(Msisdn {
            digits: canonical,
            country_code,
        })
    }

    /// E.164 digits without `+`, e.g. `79031234567`.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    pub fn country_code(&self) -> u16 {
        self.country_code
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_russian_mobile_fast_path_is_on_and_agrees_with_the_crate() {
        assert!(
            *RU_MOBILE_FAST,
            "the phonenumber metadata changed: review RU_MOBILE_FAST"
        );
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000u64 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let n = x.wrapping_mul(0x2545_f491_4f6c_dd1d) % 1_000_000_000;
            // The edges too.
            let n = match i {
                0 => 0,
                1 => 999_999_999,
                _ => n,
            };
            let digits = format!("79{n:09}");
            let fast = Msisdn::parse(&digits);
            let slow = Msisdn::parse_digits(digits.clone());
            assert_eq!(fast, slow, "{digits}");
            assert!(fast.is_ok(), "{digits}");
        }
    }

    #[test]
    fn international_numbers_with_decoration() {
        for (raw, digits) in [
            ("79031234567", "79031234567"),
            ("+79031234567", "79031234567"),
            ("+7 (903) 123-45-67", "79031234567"),
            ("4915112345678", "4915112345678"),
            ("12125551234", "12125551234"),
            ("447911123456", "447911123456"),
        ] {
            let m = Msisdn::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(m.digits(), digits);
        }
        assert_eq!(Msisdn::parse("79031234567").unwrap().country_code(), 7);
    }

    #[test]
    fn national_and_malformed_forms_are_invalid() {
        for raw in [
            "89031234567",
            "9031234567",
            "",
            "   ",
            "+",
            "7903123456",
            "790312345678",
            "7903123456a",
            "7.903.123.45.67",
            "79031234567\u{feff}",
            "0079031234567",
            "1234567890123456",
            "７９０３１２３４５６７",
        ] {
            assert!(Msisdn::parse(raw).is_err(), "{raw:?}");
        }
    }
}
