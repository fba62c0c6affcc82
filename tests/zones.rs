//! `localtime=1` with the real registry extract in `../shared/data/numbering/`:
//! senddates are read in the subscriber's zone, found from the number.
//! The expected UTC offsets are facts about Russia's zones, written here by hand.

mod common;

use std::path::PathBuf;

use common::*;
use smsdrop::intake::zone::russia::{RegionZone, Registry};

fn extract() -> Option<PathBuf> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/numbering/DEF-9xx.csv");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (the shared registry extract lives beside the repository)",
            path.display()
        );
        None
    }
}

#[test]
fn every_region_of_the_extract_maps_to_a_zone_or_is_deliberately_ambiguous() {
    let Some(path) = extract() else { return };
    let registry = Registry::load(&[path]).unwrap();
    assert!(registry.len() > 9000, "{} ranges", registry.len());
    let mut ambiguous = Vec::new();
    for (region, zone) in registry.regions() {
        match zone {
            RegionZone::Zone(_) => {}
            RegionZone::NationWide | RegionZone::SeveralZones => ambiguous.push(region.to_owned()),
            RegionZone::Unknown => panic!("region {region:?} is not in the zone table"),
        }
    }
    ambiguous.sort();
    assert_eq!(
        ambiguous,
        vec!["Республика Саха /Якутия/", "Российская Федерация"]
    );
}

/// First number of the first range of `region` in the extract.
fn number_in(path: &PathBuf, region: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(';').collect();
        if f[f.len() - 2] == region {
            return format!("7{}{:07}", f[0], f[1].parse::<u64>().unwrap());
        }
    }
    panic!("no range for {region}");
}

#[test]
fn localtime_reads_the_senddate_in_the_subscribers_zone() {
    let Some(path) = extract() else { return };
    // (region string in the registry, UTC offset in January in hours)
    let regions = [
        ("г. Москва * Московская область", 3),
        ("Калининградская обл.", 2),
        ("Самарская обл.", 4),
        ("Свердловская обл.", 5),
        ("Омская обл.", 6),
        ("Новосибирская обл.", 7),
        ("Красноярский край", 7),
        ("Иркутская обл.", 8),
        ("Забайкальский край", 9),
        ("Приморский край", 10),
        ("Магаданская обл.", 11),
        ("Камчатский край", 12),
        ("Чукотский АО", 12),
    ];
    let mut contacts = String::from("phone\n");
    for (region, _) in regions {
        contacts.push_str(&number_in(&path, region));
        contacts.push('\n');
    }
    // Abroad: single-zone prefixes, and one that libphonenumber gives several zones.
    contacts.push_str("4915112345678\n12125551234\n447911123456\n");
    // Nation-wide and multi-zone Russian ranges, and one outside the extract.
    contacts.push_str(&number_in(&path, "Российская Федерация"));
    contacts.push('\n');
    contacts.push_str(&number_in(&path, "Республика Саха /Якутия/"));
    contacts.push_str("\n73012345678\n");

    let env = Env::new();
    let config = env.config(
        &format!(
            "[numbering]\nregistry_files = [{:?}]",
            path.to_str().unwrap()
        ),
        "timezone = \"Europe/Berlin\"",
    );
    let archive = env.archive(
        "guest_20261123070000.zip",
        &template_zip(
            &contacts,
            "message;sourceaddress;senddate;localtime\nHi;TESTSMS;2027-01-15T20:00:00;1\n",
        ),
    );
    let out = check(&config, &archive, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (rows, _) = out.jsonl();
    for (i, (region, offset)) in regions.iter().enumerate() {
        let want = format!("2027-01-15T{:02}:00:00Z", 20 - offset);
        assert_eq!(rows[i]["send_at"], want.as_str(), "{region}: {:?}", rows[i]);
    }
    let n = regions.len();
    assert_eq!(rows[n]["timezone"], "Europe/Berlin"); // +49 151: Berlin itself
    assert_eq!(rows[n]["send_at"], "2027-01-15T19:00:00Z");
    assert_eq!(rows[n + 1]["timezone"], "America/New_York");
    assert_eq!(rows[n + 1]["send_at"], "2027-01-16T01:00:00Z");
    // The rest fall back to the account's zone (Berlin, UTC+1 in January).
    for row in &rows[n + 2..] {
        assert_eq!(row["timezone"], "Europe/Berlin", "{row:?}");
        assert_eq!(row["send_at"], "2027-01-15T19:00:00Z", "{row:?}");
    }

    // The text report counts the fallbacks and says why.
    let out = smsdrop(&[
        "check",
        archive.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--now",
        NOW,
    ]);
    assert!(
        out.stdout
            .contains("4 localtime=1 rows used the account zone"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("nation-wide"), "{}", out.stdout);
    assert!(out.stdout.contains("several time zones"), "{}", out.stdout);
    assert!(
        out.stdout.contains("no known numbering range"),
        "{}",
        out.stdout
    );
}

#[test]
fn without_localtime_the_account_zone_reads_every_senddate() {
    let Some(path) = extract() else { return };
    let env = Env::new();
    let config = env.config(
        &format!(
            "[numbering]\nregistry_files = [{:?}]",
            path.to_str().unwrap()
        ),
        "",
    );
    let phone = number_in(&path, "Камчатский край");
    let archive = env.archive(
        "guest_20261123070000.zip",
        &template_zip(
            &format!("phone\n{phone}\n"),
            "message;sourceaddress;senddate;localtime\nHi;TESTSMS;2027-01-15T10:00:00;0\n",
        ),
    );
    let (rows, _) = check(&config, &archive, &[]).jsonl();
    assert_eq!(rows[0]["send_at"], "2027-01-15T07:00:00Z");
    assert_eq!(rows[0]["timezone"], "Europe/Moscow");
}

#[test]
fn a_missing_or_bad_registry_is_a_startup_error_naming_file_and_line() {
    let env = Env::new();
    let archive = env.archive(
        "guest_20261123070000.zip",
        &template_zip(
            "phone\n79031234567\n",
            "message;sourceaddress\nHi;TESTSMS\n",
        ),
    );
    let missing = env.path("nowhere.csv");
    let config = env.config(
        &format!(
            "[numbering]\nregistry_files = [{:?}]",
            missing.to_str().unwrap()
        ),
        "",
    );
    let out = check(&config, &archive, &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nowhere.csv"), "{}", out.stderr);

    let bad = env.path("bad.csv");
    std::fs::write(
        &bad,
        "АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН\n900;0;99;100;x;Москва;1\n900;abc;99;1;x;Москва;1\n",
    )
    .unwrap();
    let config = env.config(
        &format!(
            "[numbering]\nregistry_files = [{:?}]",
            bad.to_str().unwrap()
        ),
        "",
    );
    let out = check(&config, &archive, &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("bad.csv line 3"), "{}", out.stderr);
}
