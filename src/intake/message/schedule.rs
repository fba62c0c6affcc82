//! Scheduling (SPEC §4): senddate parsing, local time → UTC, `send_at`, `expires_at`.
//!
//! All instants are UTC; zones are only used to read the customer's local senddate.
//! A local time in a DST gap moves forward by the gap (it is read with the offset in
//! force before the transition); an ambiguous one takes the earlier instant.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Parses a senddate in one of the three accepted forms:
/// `YYYYMMDDThh:mm:ss`, `YYYY-MM-DDThh:mm:ss`, `YYYY-MM-DD hh:mm:ss`.
pub fn parse_senddate(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    // Positions of year, month, day, hour, minute, second in each form.
    let (date, time): ([usize; 3], usize) = match b.len() {
        17 if b[8] == b'T' => ([0, 4, 6], 9),
        19 if b[4] == b'-' && b[7] == b'-' && (b[10] == b'T' || b[10] == b' ') => ([0, 5, 8], 11),
        _ => return None,
    };
    if b[time + 2] != b':' || b[time + 5] != b':' {
        return None;
    }
    let num = |at: usize, len: usize| -> Option<u32> {
        let digits = b.get(at..at + len)?;
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(date[0], 4)? as i32, num(date[1], 2)?, num(date[2], 2)?)?
        .and_hms_opt(num(time, 2)?, num(time + 3, 2)?, num(time + 6, 2)?)
}

/// The UTC instant of a local date-time in `tz`, applying the gap and overlap rules.
pub fn local_to_utc(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: read with the offset in force just before it. Transitions are
            // never less than a day apart, so a day earlier has that offset.
            let before = tz
                .from_local_datetime(&(local - Duration::days(1)))
                .earliest()
                .map(|t| t.offset().fix_offset())
                .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset"));
            (local - before).and_utc()
        }
    }
}

trait FixOffset {
    fn fix_offset(&self) -> chrono::FixedOffset;
}

impl FixOffset for chrono_tz::TzOffset {
    fn fix_offset(&self) -> chrono::FixedOffset {
        chrono::Offset::fix(self)
    }
}

/// When a message is sent and until when it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub send_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Schedule {
    /// `requested` is the senddate in UTC (`None`: send now). `Err` carries the
    /// computed expiry when it is not after `now` (the message is `EXPIRED`).
    pub fn compute(
        requested: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        validity_minutes: u32,
    ) -> Result<Schedule, DateTime<Utc>> {
        let requested = requested.unwrap_or(now);
        let expires_at = requested + Duration::minutes(i64::from(validity_minutes));
        if expires_at <= now {
            return Err(expires_at);
        }
        Ok(Schedule {
            send_at: requested.max(now),
            expires_at,
        })
    }
}

/// RFC 3339 in UTC with whole seconds: `2026-11-23T07:00:00Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Instants formatted as RFC 3339 text, kept for the next rows.
#[derive(Default)]
pub struct TimeText {
    /// The last few instants and their text: with `localtime=1` consecutive
    /// rows alternate between the zones' instants (eleven for Russia).
    seen: Vec<(DateTime<Utc>, String)>,
    /// The entry replaced next when `seen` is full.
    next: usize,
}

/// Instants [`TimeText`] keeps.
const TIME_TEXTS: usize = 32;

impl TimeText {
    pub fn text(&mut self, t: DateTime<Utc>) -> &str {
        let i = match self.seen.iter().position(|(at, _)| *at == t) {
            Some(i) => i,
            None if self.seen.len() < TIME_TEXTS => {
                self.seen.push((t, rfc3339(t)));
                self.seen.len() - 1
            }
            None => {
                let i = self.next;
                self.next = (i + 1) % TIME_TEXTS;
                self.seen[i] = (t, rfc3339(t));
                i
            }
        };
        &self.seen[i].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn time_text_is_the_text_of_the_instant_asked_for() {
        let mut texts = TimeText::default();
        let base = utc("2030-06-01T07:00:00Z");
        // More instants than are kept, asked for again in another order.
        let instants: Vec<_> = (0..TIME_TEXTS as i64 + 5)
            .map(|h| base + chrono::Duration::hours(h))
            .collect();
        for round in 0..3 {
            for (n, t) in instants.iter().enumerate() {
                let t = if round == 1 {
                    instants[instants.len() - 1 - n]
                } else {
                    *t
                };
                assert_eq!(texts.text(t), rfc3339(t));
            }
        }
    }

    #[test]
    fn the_three_forms() {
        let want = NaiveDate::from_ymd_opt(2010, 6, 1)
            .unwrap()
            .and_hms_opt(19, 14, 0)
            .unwrap();
        assert_eq!(parse_senddate("20100601T19:14:00"), Some(want));
        assert_eq!(parse_senddate("2010-06-01T19:14:00"), Some(want));
        assert_eq!(parse_senddate("2010-06-01 19:14:00"), Some(want));
    }

    #[test]
    fn everything_else_is_not_a_senddate() {
        for bad in [
            "",
            "2010-06-01",
            "20100601 19:14:00",
            "20100601T191400",
            "2010-06-01T19:14",
            "2010-06-01T19:14:00Z",
            "2010-06-01T19:14:00+03:00",
            "2010/06/01 19:14:00",
            "2010-13-01T19:14:00",
            "2010-02-30T19:14:00",
            "2010-06-01T24:00:00",
            "2010-06-01T23:60:00",
            "2010-06-01T23:59:60",
            "2010-06-01t19:14:00",
            "2010-06-01T19:14:0a",
            "+010-06-01T19:14:00",
            "２０１０-06-01T19:14:00",
            "2010-6-01T19:14:00",
            " 2010-06-01T19:14:00",
        ] {
            assert_eq!(parse_senddate(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn moscow_is_utc_plus_3() {
        let local = parse_senddate("2026-11-23T10:00:00").unwrap();
        assert_eq!(
            local_to_utc(local, chrono_tz::Europe::Moscow),
            utc("2026-11-23T07:00:00Z")
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_moves_forward_by_the_gap() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let local = parse_senddate("2026-03-08T02:30:00").unwrap();
        assert_eq!(
            local_to_utc(local, chrono_tz::America::New_York),
            utc("2026-03-08T07:30:00Z") // = 03:30 EDT
        );
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let local = parse_senddate("2026-03-29 02:00:00").unwrap();
        assert_eq!(
            local_to_utc(local, chrono_tz::Europe::Berlin),
            utc("2026-03-29T01:00:00Z") // = 03:00 CEST
        );
        // Lord Howe's gap is half an hour.
        let local = parse_senddate("2026-10-04T02:15:00").unwrap();
        assert_eq!(
            local_to_utc(local, chrono_tz::Australia::Lord_Howe),
            utc("2026-10-03T15:45:00Z") // = 02:45 +11:00
        );
    }

    #[test]
    fn an_ambiguous_time_takes_the_earlier_instant() {
        // New York, 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
        let local = parse_senddate("2026-11-01T01:30:00").unwrap();
        assert_eq!(
            local_to_utc(local, chrono_tz::America::New_York),
            utc("2026-11-01T05:30:00Z")
        );
    }

    #[test]
    fn send_at_is_never_before_now_and_expiry_counts_from_the_request() {
        let now = utc("2026-11-23T12:00:00Z");
        let s = Schedule::compute(Some(utc("2026-11-23T11:00:00Z")), now, 120).unwrap();
        assert_eq!(s.send_at, now);
        assert_eq!(s.expires_at, utc("2026-11-23T13:00:00Z"));
        let s = Schedule::compute(None, now, 1440).unwrap();
        assert_eq!(s.send_at, now);
        assert_eq!(s.expires_at, utc("2026-11-24T12:00:00Z"));
        let s = Schedule::compute(Some(utc("2026-12-01T00:00:00Z")), now, 1).unwrap();
        assert_eq!(s.send_at, utc("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn expired_when_expiry_is_not_after_now() {
        let now = utc("2026-11-23T12:00:00Z");
        assert!(Schedule::compute(Some(utc("2026-11-23T11:00:00Z")), now, 60).is_err());
        assert!(Schedule::compute(Some(utc("2026-11-23T11:00:00Z")), now, 61).is_ok());
    }

    proptest! {
        #[test]
        fn send_at_within_validity(offset_min in -100_000i64..100_000, validity in 1u32..100_000) {
            let now = utc("2026-11-23T12:00:00Z");
            let requested = now + Duration::minutes(offset_min);
            match Schedule::compute(Some(requested), now, validity) {
                Ok(s) => {
                    prop_assert!(s.send_at >= now);
                    prop_assert!(s.send_at < s.expires_at);
                    prop_assert_eq!(s.expires_at, requested + Duration::minutes(validity as i64));
                }
                Err(expiry) => prop_assert!(expiry <= now),
            }
        }

        #[test]
        fn local_round_trip_outside_transitions(secs in 0i64..2_000_000_000) {
            // For any instant, its local reading maps back to it or (in an overlap)
            // to an instant no later.
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            for tz in [chrono_tz::Europe::Moscow, chrono_tz::America::New_York, chrono_tz::Europe::Berlin] {
                let local = t.with_timezone(&tz).naive_local();
                let back = local_to_utc(local, tz);
                prop_assert!(back <= t);
                prop_assert!(t - back <= Duration::hours(1));
            }
        }
    }
}
