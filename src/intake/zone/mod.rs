//! Subscriber time zones for `localtime=1` (SPEC §4).
//!
//! [`NumberZones`] answers in the order the spec gives: Russian numbers (+7 3xx,
//! 4xx, 8xx, 9xx) from the numbering-plan registry and the region table
//! ([`russia`]); other numbers from libphonenumber's prefix map when it names
//! exactly one zone ([`prefixes`]); otherwise the account's zone, with the reason
//! ([`Fallback`]) so `check` can count and explain those rows.

pub mod prefixes;
pub mod russia;

use chrono_tz::Tz;
use serde::Serialize;

use crate::intake::phone::Msisdn;
use russia::Registry;

/// Why a number's own zone could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// No numbering registry is loaded for Russian numbers.
    NoZoneData,
    /// The number is in no known range or prefix.
    UnknownRange,
    /// The registry names a region that the region table does not know.
    UnknownRegion,
    /// The range covers the whole country, not one region.
    NationWide,
    /// The region or country spans several zones.
    SeveralZones,
}

impl Fallback {
    pub fn describe(self) -> &'static str {
        match self {
            Fallback::NoZoneData => {
                "Russian number but no numbering registry is configured (numbering.registry_files)"
            }
            Fallback::UnknownRange => "the number is in no known numbering range",
            Fallback::UnknownRegion => "the registry's region is not in the region → zone table",
            Fallback::NationWide => "the number's range is nation-wide (Российская Федерация)",
            Fallback::SeveralZones => "the number's region or country spans several time zones",
        }
    }
}

/// The zone to read a subscriber's local senddate in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneAnswer {
    pub tz: Tz,
    /// `Some` when `tz` is the account's zone because the number's own was unknown.
    pub fallback: Option<Fallback>,
}

/// Finds a subscriber's time zone from the phone number.
pub trait ZoneResolver: Send + Sync {
    fn subscriber_zone(&self, phone: &Msisdn, account_zone: Tz) -> ZoneAnswer;
}

/// The resolver of SPEC §4: registry for Russia, prefix map elsewhere.
#[derive(Debug, Default)]
pub struct NumberZones {
    /// `None` when `numbering.registry_files` is empty.
    registry: Option<Registry>,
}

impl NumberZones {
    pub fn new(registry: Option<Registry>) -> NumberZones {
        NumberZones { registry }
    }

    /// Loads the registry files named in the configuration (none: no registry).
    pub fn from_files(files: &[std::path::PathBuf]) -> Result<NumberZones, russia::RegistryError> {
        let registry = if files.is_empty() {
            None
        } else {
            Some(Registry::load(files)?)
        };
        Ok(NumberZones { registry })
    }

    /// Ranges loaded from the registry files (0 without any).
    pub fn registry_len(&self) -> usize {
        self.registry.as_ref().map_or(0, Registry::len)
    }

    /// The zone of a number, or why it has none of its own.
    pub fn zone_of(&self, phone: &Msisdn) -> Result<Tz, Fallback> {
        let digits = phone.digits();
        let russian = phone.country_code() == 7
            && digits.len() == 11
            && matches!(digits.as_bytes()[1], b'3' | b'4' | b'8' | b'9');
        if !russian {
            return prefixes::zone_for(phone);
        }
        let registry = self.registry.as_ref().ok_or(Fallback::NoZoneData)?;
        let national: u64 = digits[1..].parse().expect("digits");
        match registry.lookup(national) {
            Some(found) => found.zone.as_result(),
            None => Err(Fallback::UnknownRange),
        }
    }
}

impl ZoneResolver for NumberZones {
    fn subscriber_zone(&self, phone: &Msisdn, account_zone: Tz) -> ZoneAnswer {
        match self.zone_of(phone) {
            Ok(tz) => ZoneAnswer { tz, fallback: None },
            Err(why) => ZoneAnswer {
                tz: account_zone,
                fallback: Some(why),
            },
        }
    }
}
