//! Subscriber time zones for `localtime=1` (SPEC §4).
//!
//! The message builder asks a [`ZoneResolver`] for the zone of each number and
//! reports the zone it used. When the resolver has no single zone for a number it
//! answers the account's zone and says why ([`Fallback`]), so `check` can count
//! and explain those rows.

use chrono_tz::Tz;
use serde::Serialize;

use crate::message::phone::Msisdn;

/// Why a number's own zone could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The resolver has no data for numbers of this kind.
    NoZoneData,
    /// The number is in no known range.
    UnknownRange,
    /// The range covers the whole country, not one region.
    NationWide,
    /// The region or country spans several zones.
    SeveralZones,
}

impl Fallback {
    pub fn describe(self) -> &'static str {
        match self {
            Fallback::NoZoneData => "no subscriber time zone data for the number",
            Fallback::UnknownRange => "the number is in no known numbering range",
            Fallback::NationWide => "the number's range is nation-wide",
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

/// The resolver with no data: every number gets the account's zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountZoneOnly;

impl ZoneResolver for AccountZoneOnly {
    fn subscriber_zone(&self, _phone: &Msisdn, account_zone: Tz) -> ZoneAnswer {
        ZoneAnswer {
            tz: account_zone,
            fallback: Some(Fallback::NoZoneData),
        }
    }
}
