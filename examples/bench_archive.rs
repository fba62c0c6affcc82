//! Writes a template-format benchmark archive: `sms/contacts.csv` with N rows
//! (phone, senddate, three attributes) and a `sms/template.csv` with
//! `localtime=1` and a senddate.
//!
//! cargo run --release --example bench_archive -- ROWS OUT.zip [REGISTRY.csv]
//!
//! Phones are Russian mobile numbers drawn from the ranges of the registry file
//! when one is given (so zone lookups hit every region), otherwise from 79xx.
//! Deterministic: the same arguments give the same bytes.

use std::io::{BufRead, BufReader, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (first, last) ten-digit national numbers of each registry range.
fn ranges(path: &str) -> Vec<(u64, u64)> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    for line in BufReader::new(file).lines().skip(1) {
        let line = line.expect("UTF-8 registry");
        let mut cols = line.split(';');
        let (Some(code), Some(from), Some(to)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let (Ok(code), Ok(from), Ok(to)) = (
            code.trim().parse::<u64>(),
            from.trim().parse::<u64>(),
            to.trim().parse::<u64>(),
        ) else {
            continue;
        };
        out.push((code * 10_000_000 + from, code * 10_000_000 + to));
    }
    assert!(!out.is_empty(), "{path}: no ranges");
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_archive ROWS OUT.zip [REGISTRY.csv]");
        std::process::exit(2);
    }
    let rows: u64 = args[1].parse().expect("ROWS is a number");
    let out = &args[2];
    let ranges = args.get(3).map(|p| ranges(p));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let file = std::fs::File::create(out).unwrap_or_else(|e| panic!("{out}: {e}"));
    let mut zip = ZipWriter::new(std::io::BufWriter::new(file));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("sms/template.csv", options).unwrap();
    zip.write_all(
        "message;sourceaddress;validity;senddate;localtime\r\n\
         Здравствуйте, #attr1# #attr2#! Ваш заказ #attr3# готов к выдаче.;TESTSMS;1440;2030-06-01T10:00:00;1\r\n"
            .as_bytes(),
    )
    .unwrap();
    zip.start_file("sms/contacts.csv", options).unwrap();
    let mut csv = std::io::BufWriter::with_capacity(1 << 20, zip);
    csv.write_all(b"phone;senddate;attr1;attr2;attr3\r\n")
        .unwrap();
    const FIRST: [&str; 6] = ["Иван", "Анна", "Пётр", "Мария", "Olga", "Sergey"];
    const SECOND: [&str; 4] = ["Петрович", "Сергеевна", "Ивановна", "Smith"];
    for _ in 0..rows {
        let national = match &ranges {
            Some(ranges) => {
                let (lo, hi) = ranges[rng.below(ranges.len() as u64) as usize];
                lo + rng.below(hi - lo + 1)
            }
            None => 9_000_000_000 + rng.below(1_000_000_000),
        };
        writeln!(
            csv,
            "7{national};;{};{};{}\r",
            FIRST[rng.below(6) as usize],
            SECOND[rng.below(4) as usize],
            100_000 + rng.below(900_000)
        )
        .unwrap();
    }
    let zip = csv.into_inner().map_err(|e| e.into_error()).unwrap();
    zip.finish().unwrap().flush().unwrap();
}
