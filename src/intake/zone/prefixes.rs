//! Numbers outside Russia: libphonenumber's number-prefix → time zone map
//! (SPEC §4.2), generated into `prefix_zones.tsv` by `tools/gen_prefix_zones.py`.
//!
//! The lookup mirrors libphonenumber's `PhoneNumberToTimeZonesMapper`: for
//! geographical numbers (fixed line, fixed-line-or-mobile, and mobile in the
//! countries where mobile numbers carry an area code) the longest matching prefix
//! of the whole number decides; for other numbers only the country code does.
//! A zone is used only when the answer is exactly one zone.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;
use phonenumber::Type;

use crate::intake::phone::Msisdn;
use crate::intake::zone::Fallback;

const TABLE: &str = include_str!("prefix_zones.tsv");

/// libphonenumber's `GEO_MOBILE_COUNTRIES`: mobile numbers have area codes.
const GEO_MOBILE_COUNTRIES: [u16; 5] = [52, 54, 55, 62, 86];

struct PrefixMap {
    /// `(prefix length, prefix value)` → the single zone, or why there is none.
    zones: HashMap<(u8, u64), Result<Tz, Fallback>>,
    longest: usize,
}

fn map() -> &'static PrefixMap {
    static MAP: OnceLock<PrefixMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut zones = HashMap::new();
        let mut longest = 0;
        for line in TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (prefix, names) = line.split_once('\t').expect("prefix<TAB>zones");
            let names: Vec<&str> = names.split('&').collect();
            let zone = match names.as_slice() {
                [one] => one.parse::<Tz>().map_err(|_| Fallback::UnknownRange),
                _ => Err(Fallback::SeveralZones),
            };
            longest = longest.max(prefix.len());
            zones.insert((prefix.len() as u8, prefix.parse().expect("digits")), zone);
        }
        PrefixMap { zones, longest }
    })
}

/// The zone of a number outside Russia, or why there is none.
pub fn zone_for(phone: &Msisdn) -> Result<Tz, Fallback> {
    let digits = phone.digits();
    let cc = phone.country_code().to_string();
    let geographic = match phonenumber::parse(None, format!("+{digits}")) {
        Ok(n) => match n.number_type(&phonenumber::metadata::DATABASE) {
            Type::FixedLine | Type::FixedLineOrMobile => true,
            Type::Mobile => GEO_MOBILE_COUNTRIES.contains(&phone.country_code()),
            // The number is known valid; the phonenumber crate types numbers with
            // a significant leading zero (Italy's fixed lines) as Unknown, since it
            // matches the national number without its zeros. Those are fixed lines.
            Type::Unknown => true,
            _ => false,
        },
        Err(_) => return Err(Fallback::UnknownRange),
    };
    let key = if geographic { digits } else { cc.as_str() };
    longest_prefix(key)
}

/// The entry for the longest prefix of `digits` in the map.
pub fn longest_prefix(digits: &str) -> Result<Tz, Fallback> {
    let map = map();
    for len in (1..=digits.len().min(map.longest)).rev() {
        let value: u64 = digits[..len].parse().expect("digits");
        if let Some(zone) = map.zones.get(&(len as u8, value)) {
            return *zone;
        }
    }
    Err(Fallback::UnknownRange)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Asia, Europe};

    fn zone(number: &str) -> Result<Tz, Fallback> {
        zone_for(&Msisdn::parse(number).unwrap())
    }

    #[test]
    fn every_zone_name_in_the_table_is_known_to_chrono_tz() {
        for line in TABLE.lines().filter(|l| !l.starts_with('#')) {
            for name in line.split('\t').nth(1).unwrap().split('&') {
                assert!(name.parse::<Tz>().is_ok(), "{name}");
            }
        }
    }

    #[test]
    fn the_spec_examples() {
        assert_eq!(zone("4915112345678"), Ok(Europe::Berlin));
        assert_eq!(zone("12125551234"), Ok(America::New_York));
    }

    #[test]
    fn longest_prefix_and_several_zones() {
        assert_eq!(zone("13105551234"), Ok(America::Los_Angeles));
        assert_eq!(zone("442079460000"), Ok(Europe::London));
        // UK mobiles are not geographical: the country code names four zones.
        assert_eq!(zone("447911123456"), Err(Fallback::SeveralZones));
        // Russia as a whole has 16 zones in libphonenumber.
        assert_eq!(longest_prefix("7"), Err(Fallback::SeveralZones));
        assert_eq!(longest_prefix("7301"), Ok(Asia::Irkutsk));
    }

    /// Example numbers of many countries with what Python `phonenumbers` 9.0.43
    /// `timezone.time_zones_for_number` answers ("-": not exactly one zone).
    #[test]
    fn agrees_with_libphonenumber_on_example_numbers() {
        for (number, want) in [
            ("12015550123", "America/New_York"),
            ("15062345678", "America/Halifax"),
            ("33123456789", "Europe/Paris"),
            ("33612345678", "Europe/Paris"),
            ("34612345678", "-"),
            ("34810123456", "Europe/Madrid"),
            ("375152450911", "Europe/Moscow"),
            ("375294911911", "Europe/Moscow"),
            ("380311234567", "Europe/Kyiv"),
            ("380501234567", "Europe/Kyiv"),
            ("390212345678", "Europe/Rome"),
            ("393123456789", "-"),
            ("441212345678", "Europe/London"),
            ("447400123456", "-"),
            ("48123456789", "Europe/Warsaw"),
            ("48512345678", "Europe/Warsaw"),
            ("4915123456789", "Europe/Berlin"),
            ("4930123456", "Europe/Berlin"),
            ("522001234567", "-"),
            ("522221234567", "America/Mexico_City"),
            ("541123456789", "America/Buenos_Aires"),
            ("5491123456789", "America/Buenos_Aires"),
            ("551123456789", "America/Sao_Paulo"),
            ("5511961234567", "America/Sao_Paulo"),
            ("61212345678", "Australia/Sydney"),
            ("61412345678", "-"),
            ("62218350123", "Asia/Jakarta"),
            ("62812345678", "Asia/Jakarta"),
            ("81312345678", "Asia/Tokyo"),
            ("819012345678", "Asia/Tokyo"),
            ("861012345678", "Asia/Shanghai"),
            ("8613123456789", "Asia/Shanghai"),
            ("902123456789", "Europe/Istanbul"),
            ("905012345678", "Europe/Istanbul"),
            ("917410410123", "Asia/Calcutta"),
            ("918123456789", "Asia/Calcutta"),
        ] {
            let got = match zone(number) {
                Ok(tz) => tz.name().to_owned(),
                Err(_) => "-".to_owned(),
            };
            assert_eq!(got, want, "{number}");
        }
    }
}
