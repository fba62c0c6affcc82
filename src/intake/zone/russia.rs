//! Russian numbers: the numbering-plan registry (number range → region) and the
//! region → IANA zone table (SPEC §4.1).
//!
//! The registry is the official open-data CSV (`АВС/ DEF;От;До;Емкость;Оператор;
//! Регион;ИНН`, UTF-8 with BOM; older copies are windows-1251, which is accepted
//! too). Ranges are kept sorted in one flat vector of 16-byte entries and found
//! by binary search; region strings are interned, so the whole Russian registry
//! (a few hundred thousand ranges) costs a few megabytes.
//!
//! Region strings are not normalised in the registry (`г. Москва * Московская
//! область`, `г. Сочи|Краснодарский край`, `Республика Саха /Якутия/`), so the
//! table below matches word prefixes of the federal subjects and cities they name.
//! A string naming places in different zones, or a subject that spans several
//! zones (Yakutia), is `SeveralZones`; `Российская Федерация` is `NationWide`.
//! Zones are those in force since the last Russian change (Volgograd back to
//! UTC+3, December 2020).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use chrono_tz::{Asia, Europe};

use crate::intake::csv::Records;
use crate::intake::zone::Fallback;

/// What a registry region string says about the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionZone {
    Zone(Tz),
    NationWide,
    SeveralZones,
    /// No place in the string is in the table.
    Unknown,
}

impl RegionZone {
    pub fn as_result(self) -> Result<Tz, Fallback> {
        match self {
            RegionZone::Zone(tz) => Ok(tz),
            RegionZone::NationWide => Err(Fallback::NationWide),
            RegionZone::SeveralZones => Err(Fallback::SeveralZones),
            RegionZone::Unknown => Err(Fallback::UnknownRegion),
        }
    }
}

/// What a pattern stands for.
#[derive(Clone, Copy)]
enum Place {
    In(Tz),
    Several,
    Nation,
}

use Place::*;

/// Word-prefix patterns of places. Each word is taken by the first pattern that
/// matches it, so a pattern comes before any shorter one it contains.
const PLACES: &[(&[&str], Place)] = &[
    (&["ямало", "ненец"], In(Asia::Yekaterinburg)),
    (&["российск", "федерац"], Nation),
    // UTC+2
    (&["калининградск"], In(Europe::Kaliningrad)),
    // UTC+3
    (&["москв"], In(Europe::Moscow)),
    (&["московск"], In(Europe::Moscow)),
    (&["санкт"], In(Europe::Moscow)),
    (&["петербург"], In(Europe::Moscow)),
    (&["ленинградск"], In(Europe::Moscow)),
    (&["адыг"], In(Europe::Moscow)),
    (&["архангельск"], In(Europe::Moscow)),
    (&["ненец"], In(Europe::Moscow)),
    (&["белгородск"], In(Europe::Moscow)),
    (&["брянск"], In(Europe::Moscow)),
    (&["владимирск"], In(Europe::Moscow)),
    (&["вологодск"], In(Europe::Moscow)),
    (&["воронежск"], In(Europe::Moscow)),
    (&["ивановск"], In(Europe::Moscow)),
    (&["кабардино"], In(Europe::Moscow)),
    (&["балкар"], In(Europe::Moscow)),
    (&["калужск"], In(Europe::Moscow)),
    (&["карачаево"], In(Europe::Moscow)),
    (&["черкес"], In(Europe::Moscow)),
    (&["карел"], In(Europe::Moscow)),
    (&["коми"], In(Europe::Moscow)),
    (&["костромск"], In(Europe::Moscow)),
    (&["краснодарск"], In(Europe::Moscow)),
    (&["сочи"], In(Europe::Moscow)),
    (&["курск"], In(Europe::Moscow)),
    (&["липецк"], In(Europe::Moscow)),
    (&["марий"], In(Europe::Moscow)),
    (&["мордов"], In(Europe::Moscow)),
    (&["мурманск"], In(Europe::Moscow)),
    (&["нижегородск"], In(Europe::Moscow)),
    (&["новгородск"], In(Europe::Moscow)),
    (&["орловск"], In(Europe::Moscow)),
    (&["пензенск"], In(Europe::Moscow)),
    (&["псков"], In(Europe::Moscow)),
    (&["ростовск"], In(Europe::Moscow)),
    (&["рязанск"], In(Europe::Moscow)),
    (&["смоленск"], In(Europe::Moscow)),
    (&["ставропольск"], In(Europe::Moscow)),
    (&["тамбовск"], In(Europe::Moscow)),
    (&["татарстан"], In(Europe::Moscow)),
    (&["тверск"], In(Europe::Moscow)),
    (&["тульск"], In(Europe::Moscow)),
    (&["чечен"], In(Europe::Moscow)),
    (&["чечн"], In(Europe::Moscow)),
    (&["чуваш"], In(Europe::Moscow)),
    (&["ярославск"], In(Europe::Moscow)),
    (&["дагестан"], In(Europe::Moscow)),
    (&["ингуш"], In(Europe::Moscow)),
    (&["осети"], In(Europe::Moscow)),
    (&["алания"], In(Europe::Moscow)),
    (&["калмык"], In(Europe::Moscow)),
    (&["кировск"], In(Europe::Kirov)),
    (&["волгоградск"], In(Europe::Volgograd)),
    (&["крым"], In(Europe::Simferopol)),
    (&["севастопол"], In(Europe::Simferopol)),
    // UTC+4
    (&["самарск"], In(Europe::Samara)),
    (&["удмурт"], In(Europe::Samara)),
    (&["астраханск"], In(Europe::Astrakhan)),
    (&["саратовск"], In(Europe::Saratov)),
    (&["ульяновск"], In(Europe::Ulyanovsk)),
    // UTC+5
    (&["башкир"], In(Asia::Yekaterinburg)),
    (&["башкортостан"], In(Asia::Yekaterinburg)),
    (&["абзелилов"], In(Asia::Yekaterinburg)),
    (&["белорецк"], In(Asia::Yekaterinburg)),
    (&["курганск"], In(Asia::Yekaterinburg)),
    (&["оренбургск"], In(Asia::Yekaterinburg)),
    (&["пермск"], In(Asia::Yekaterinburg)),
    (&["свердловск"], In(Asia::Yekaterinburg)),
    (&["екатеринбург"], In(Asia::Yekaterinburg)),
    (&["тюменск"], In(Asia::Yekaterinburg)),
    (&["челябинск"], In(Asia::Yekaterinburg)),
    (&["ханты"], In(Asia::Yekaterinburg)),
    (&["мансийск"], In(Asia::Yekaterinburg)),
    (&["югра"], In(Asia::Yekaterinburg)),
    (&["сургут"], In(Asia::Yekaterinburg)),
    // UTC+6
    (&["омск"], In(Asia::Omsk)),
    // UTC+7
    (&["новосибирск"], In(Asia::Novosibirsk)),
    (&["алтай"], In(Asia::Barnaul)),
    (&["томск"], In(Asia::Tomsk)),
    (&["кемеровск"], In(Asia::Novokuznetsk)),
    (&["кузбасс"], In(Asia::Novokuznetsk)),
    (&["красноярск"], In(Asia::Krasnoyarsk)),
    (&["норильск"], In(Asia::Krasnoyarsk)),
    (&["хакас"], In(Asia::Krasnoyarsk)),
    (&["тыва"], In(Asia::Krasnoyarsk)),
    (&["тува"], In(Asia::Krasnoyarsk)),
    // UTC+8
    (&["иркутск"], In(Asia::Irkutsk)),
    (&["бурят"], In(Asia::Irkutsk)),
    // UTC+9
    (&["забайкальск"], In(Asia::Chita)),
    (&["амурск"], In(Asia::Yakutsk)),
    // UTC+10
    (&["приморск"], In(Asia::Vladivostok)),
    (&["хабаровск"], In(Asia::Vladivostok)),
    (&["еврейск"], In(Asia::Vladivostok)),
    // UTC+11
    (&["сахалинск"], In(Asia::Sakhalin)),
    (&["магаданск"], In(Asia::Magadan)),
    // UTC+12
    (&["камчатск"], In(Asia::Kamchatka)),
    (&["корякск"], In(Asia::Kamchatka)),
    (&["чукотск"], In(Asia::Anadyr)),
    // Yakutia spans UTC+9, +10 and +11. Last, so that "сахалинск" is taken first.
    (&["саха"], Several),
    (&["якут"], Several),
];

/// The zone a registry region string stands for.
pub fn region_zone(region: &str) -> RegionZone {
    let normalized: String = region
        .chars()
        .map(|c| match c {
            'ё' | 'Ё' => 'е',
            c if c.is_alphabetic() => c,
            _ => ' ',
        })
        .collect::<String>()
        .to_lowercase();
    let words: Vec<&str> = normalized.split_whitespace().collect();
    let mut used = vec![false; words.len()];
    let mut zone: Option<Tz> = None;
    let (mut several, mut nation) = (false, false);
    for (pattern, place) in PLACES {
        for start in 0..words.len() {
            let end = start + pattern.len();
            if end > words.len() || used[start..end].iter().any(|&u| u) {
                continue;
            }
            let hit = pattern
                .iter()
                .zip(&words[start..end])
                .all(|(p, w)| w.starts_with(p));
            if !hit {
                continue;
            }
            used[start..end].iter_mut().for_each(|u| *u = true);
            match place {
                In(tz) => match zone {
                    Some(z) if z != *tz => several = true,
                    _ => zone = Some(*tz),
                },
                Several => several = true,
                Nation => nation = true,
            }
        }
    }
    match (several, zone, nation) {
        (true, _, _) => RegionZone::SeveralZones,
        (false, Some(tz), _) => RegionZone::Zone(tz),
        (false, None, true) => RegionZone::NationWide,
        (false, None, false) => RegionZone::Unknown,
    }
}

/// A registry file that cannot be used, with the file and line at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("numbering registry {path}: cannot read")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("numbering registry {path} line {line}: {message}")]
    Bad {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Range {
    /// First national number (10 digits: DEF/ABC code + 7-digit subscriber part).
    start: u64,
    /// Numbers in the range minus one.
    span: u32,
    region: u16,
}

/// Number range → region, loaded from registry files.
#[derive(Debug, Default)]
pub struct Registry {
    ranges: Vec<Range>,
    /// `first[p]`: the first range starting at or after the 4-digit prefix `p`
    /// (`p * 10^6`), so a lookup searches the few ranges of one prefix instead
    /// of all of them (half the time of a 1M-row archive's zone lookups).
    first: Vec<u32>,
    /// Interned region strings and their zones.
    regions: Vec<(String, RegionZone)>,
}

/// What the registry says about one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup<'a> {
    pub region: &'a str,
    pub zone: RegionZone,
}

/// National numbers have 10 digits: 10^4 prefixes of 10^6 numbers each.
const PREFIXES: u64 = 10_000;
const PREFIX_SIZE: u64 = 1_000_000;

impl Registry {
    /// Loads every file; the first bad file or line stops the load.
    pub fn load(paths: &[PathBuf]) -> Result<Registry, RegistryError> {
        let mut registry = Registry::default();
        let mut interned: HashMap<String, u16> = HashMap::new();
        for path in paths {
            registry.load_file(path, &mut interned)?;
        }
        registry.ranges.sort_unstable_by_key(|r| r.start);
        registry.ranges.shrink_to_fit();
        registry.first = (0..=PREFIXES)
            .map(|p| {
                registry
                    .ranges
                    .partition_point(|r| r.start < p * PREFIX_SIZE) as u32
            })
            .collect();
        Ok(registry)
    }

    fn load_file(
        &mut self,
        path: &Path,
        interned: &mut HashMap<String, u16>,
    ) -> Result<(), RegistryError> {
        let bytes = std::fs::read(path).map_err(|source| RegistryError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        // Current files are UTF-8; older ones were published in windows-1251.
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => {
                encoding_rs::WINDOWS_1251
                    .decode_without_bom_handling(bytes)
                    .0
            }
        };
        let bad = |line: u64, message: String| RegistryError::Bad {
            path: path.to_owned(),
            line,
            message,
        };
        let name = path.display().to_string();
        let mut records = Records::new(text.as_bytes(), 1 << 20, &name);
        // Record errors (an overlong record) carry their own line in the message.
        let io = |e| RegistryError::Read {
            path: path.to_owned(),
            source: std::io::Error::other(
                crate::intake::error::rejection_from_io(e, &name).message,
            ),
        };
        let header: Vec<String> =
            match records.next_record().map_err(io)? {
                Some(r) => r.iter().map(|h| h.trim().to_lowercase()).collect(),
                None => return Err(bad(
                    1,
                    "empty file; expected the header АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН"
                        .into(),
                )),
            };
        let column = |want: &dyn Fn(&str) -> bool, what: &str| {
            header.iter().position(|h| want(h)).ok_or_else(|| {
                bad(
                    1,
                    format!("no {what} column in the header {:?}", header.join(";")),
                )
            })
        };
        let code_col = column(
            &|h| h.contains("def") || h.contains("авс") || h.contains("abc"),
            "АВС/ DEF",
        )?;
        let from_col = column(&|h| h == "от", "От")?;
        let to_col = column(&|h| h == "до", "До")?;
        let region_col = column(&|h| h == "регион", "Регион")?;
        while let Some(record) = records.next_record().map_err(io)? {
            if record.is_blank() {
                continue;
            }
            let line = record.line;
            let field = |i: usize| record.get(i).unwrap_or("").trim();
            let number = |i: usize, digits: usize, what: &str| -> Result<u64, RegistryError> {
                let s = field(i);
                if s.is_empty() || s.len() > digits || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(
                        line,
                        format!("{what} {s:?} is not a number of at most {digits} digits"),
                    ));
                }
                Ok(s.parse().expect("digits"))
            };
            let code = number(code_col, 3, "АВС/ DEF")?;
            let from = number(from_col, 7, "От")?;
            let to = number(to_col, 7, "До")?;
            if code < 100 || from > to {
                return Err(bad(
                    line,
                    format!("range {code} {from}…{to} is not a range of numbers"),
                ));
            }
            let region = field(region_col);
            let id = match interned.get(region) {
                Some(&id) => id,
                None => {
                    let id = u16::try_from(self.regions.len())
                        .map_err(|_| bad(line, "more than 65535 distinct regions".into()))?;
                    interned.insert(region.to_owned(), id);
                    self.regions.push((region.to_owned(), region_zone(region)));
                    id
                }
            };
            self.ranges.push(Range {
                start: code * 10_000_000 + from,
                span: (to - from) as u32,
                region: id,
            });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Every distinct region string loaded, with its zone.
    pub fn regions(&self) -> impl Iterator<Item = (&str, RegionZone)> {
        self.regions.iter().map(|(r, z)| (r.as_str(), *z))
    }

    /// The region of a 10-digit national number (without the country code 7).
    pub fn lookup(&self, national: u64) -> Option<Lookup<'_>> {
        // The range holding `national` starts within its prefix or is the
        // last one before (which may reach into it).
        let prefix = national / PREFIX_SIZE;
        let (low, high) = match self.first.get(prefix as usize..=prefix as usize + 1) {
            Some(&[low, high]) => ((low as usize).saturating_sub(1), high as usize),
            _ => (0, self.ranges.len()),
        };
        let candidates = &self.ranges[low..high];
        let after = candidates.partition_point(|r| r.start <= national);
        let range = candidates[..after].last()?;
        if national - range.start > u64::from(range.span) {
            return None;
        }
        let (region, zone) = &self.regions[usize::from(range.region)];
        Some(Lookup {
            region,
            zone: *zone,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_strings_of_the_registry() {
        for (region, tz) in [
            ("г. Москва * Московская область", Europe::Moscow),
            ("Москва и Московская область", Europe::Moscow),
            ("г. Сочи|Краснодарский край", Europe::Moscow),
            ("Краснодарский край", Europe::Moscow),
            ("Красноярский край", Asia::Krasnoyarsk),
            ("г. Норильск|Красноярский край", Asia::Krasnoyarsk),
            ("Ямало-Ненецкий АО", Asia::Yekaterinburg),
            ("Ненецкий АО", Europe::Moscow),
            (
                "Архангельская область и Ненецкий автономный округ",
                Europe::Moscow,
            ),
            ("Ханты - Мансийский - Югра АО", Asia::Yekaterinburg),
            ("Сургутский район * г. Сургут", Asia::Yekaterinburg),
            ("Кемеровская область - Кузбасс область", Asia::Novokuznetsk),
            ("Томская обл.", Asia::Tomsk),
            ("Омская обл.", Asia::Omsk),
            ("Курганская обл.", Asia::Yekaterinburg),
            ("Курская обл.", Europe::Moscow),
            ("Сахалинская обл.", Asia::Sakhalin),
            ("Республика Крым * г. Севастополь", Europe::Simferopol),
            ("Корякский округ|Камчатский край", Asia::Kamchatka),
            (
                "р-ны Абзелиловский и Белорецкий|Абзелиловский район * Белорецкий район",
                Asia::Yekaterinburg,
            ),
            ("Калининградская обл.", Europe::Kaliningrad),
            ("Чукотский АО", Asia::Anadyr),
            ("Волгоградская обл.", Europe::Volgograd),
            ("Новгородская обл.", Europe::Moscow),
            ("Нижегородская обл.", Europe::Moscow),
            ("Республика Алтай", Asia::Barnaul),
        ] {
            assert_eq!(region_zone(region), RegionZone::Zone(tz), "{region}");
        }
        assert_eq!(region_zone("Российская Федерация"), RegionZone::NationWide);
        assert_eq!(
            region_zone("Республика Саха /Якутия/"),
            RegionZone::SeveralZones
        );
        assert_eq!(
            region_zone("Омская обл. * Новосибирская обл."),
            RegionZone::SeveralZones
        );
        assert_eq!(region_zone("Атлантида"), RegionZone::Unknown);
        assert_eq!(region_zone(""), RegionZone::Unknown);
    }

    fn registry_from(text: &str) -> Result<Registry, RegistryError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, text).unwrap();
        Registry::load(&[path])
    }

    const HEADER: &str = "\u{feff}АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН\n";

    #[test]
    fn lookup_by_binary_search() {
        let r = registry_from(&format!(
            "{HEADER}913;0;99999;100000;\"ООО \"\"Оп\"\"\";Новосибирская обл.;1\n\
             900;0;61999;62000;x;Краснодарский край;2\n\
             900;62000;62999;1000;x;Ростовская обл.;3\n"
        ))
        .unwrap();
        assert_eq!(r.len(), 3);
        let zone = |n: u64| r.lookup(n).map(|l| l.zone);
        assert_eq!(zone(9000000000), Some(RegionZone::Zone(Europe::Moscow)));
        assert_eq!(zone(9000061999), Some(RegionZone::Zone(Europe::Moscow)));
        assert_eq!(r.lookup(9000062000).unwrap().region, "Ростовская обл.");
        assert_eq!(zone(9000063000), None);
        assert_eq!(zone(9130099999), Some(RegionZone::Zone(Asia::Novosibirsk)));
        assert_eq!(zone(9130100000), None);
        assert_eq!(zone(1), None);
    }

    #[test]
    fn ranges_reaching_across_prefixes_are_found() {
        // 900 0999999..900 2000000 starts in prefix 9000 and covers 9001 and
        // 9002; 9003 has no range; 9004 has two.
        let r = registry_from(&format!(
            "{HEADER}900;999999;2000000;1000002;x;Ростовская обл.;1\n\
             900;4000000;4000099;100;x;Краснодарский край;2\n\
             900;4500000;4999999;500000;x;Новосибирская обл.;3\n"
        ))
        .unwrap();
        let region = |n: u64| r.lookup(n).map(|l| l.region);
        assert_eq!(region(9000999998), None);
        for n in [9000999999, 9001000000, 9001999999, 9002000000] {
            assert_eq!(region(n), Some("Ростовская обл."), "{n}");
        }
        assert_eq!(region(9002000001), None);
        assert_eq!(region(9003500000), None);
        assert_eq!(region(9004000099), Some("Краснодарский край"));
        assert_eq!(region(9004000100), None);
        assert_eq!(region(9004999999), Some("Новосибирская обл."));
        assert_eq!(region(9005000000), None);
        assert_eq!(region(99_999_999_999), None);
    }

    #[test]
    fn bad_files_name_the_line() {
        for (body, line) in [
            ("900;5;1;1;x;Москва;1\n", 2),
            ("900;0;99;1;x;Москва;1\n9x0;0;1;1;x;Москва;1\n", 3),
            ("900;0;123456789;1;x;Москва;1\n", 2),
        ] {
            let e = registry_from(&format!("{HEADER}{body}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("line {line}")), "{e}");
            assert!(e.contains("r.csv"), "{e}");
        }
        let e = registry_from("a;b;c\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = Registry::load(&["/nonexistent/registry.csv".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/registry.csv"), "{e}");
    }

    #[test]
    fn windows_1251_files_are_read() {
        let (bytes, _, _) = encoding_rs::WINDOWS_1251
            .encode("АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН\n913;0;9;10;x;Омская обл.;1\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.csv");
        std::fs::write(&path, bytes).unwrap();
        let r = Registry::load(&[path]).unwrap();
        assert_eq!(
            r.lookup(9130000005).unwrap().zone,
            RegionZone::Zone(Asia::Omsk)
        );
    }
}
