//! Criterion benchmarks of the hot stages, one row's worth of work each:
//! CSV parsing, phone validation, substitution, zone lookup, segment counting,
//! and the queue insert (a whole staged batch, per row).
//!
//! cargo bench --bench stages
//!
//! The zone lookup uses the registry extract in ../shared/data/numbering when
//! it is there (otherwise libphonenumber's prefix map only, and says so).

use std::hint::black_box;
use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use smsdrop::intake::csv::Records;
use smsdrop::intake::message::segments;
use smsdrop::intake::message::substitute::Template;
use smsdrop::intake::message::{Message, RowOutcome};
use smsdrop::intake::phone::Msisdn;
use smsdrop::intake::sender::Sender;
use smsdrop::intake::zone::NumberZones;
use smsdrop::intake::{Status, Summary};
use smsdrop::queue::{Queue, SqliteQueue};

const ROWS: usize = 10_000;
/// Rows of the queue benchmark: enough that opening and committing do not dominate.
const QUEUE_ROWS: usize = 100_000;

/// Deterministic Russian mobile numbers.
fn phones(n: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            format!(
                "79{:09}",
                x.wrapping_mul(0x2545_f491_4f6c_dd1d) % 1_000_000_000
            )
        })
        .collect()
}

fn contacts(n: usize) -> Vec<u8> {
    let mut out = String::from("phone;senddate;attr1;attr2;attr3\r\n");
    for (i, phone) in phones(n).iter().enumerate() {
        out.push_str(&format!("{phone};;Иван;Петрович;{}\r\n", 100_000 + i));
    }
    out.into_bytes()
}

fn csv_parsing(c: &mut Criterion) {
    let data = contacts(ROWS);
    let mut group = c.benchmark_group("csv");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("records", |b| {
        b.iter(|| {
            let mut records = Records::new(&data[..], 65536, "contacts.csv");
            let mut fields = 0;
            while let Some(record) = records.next_record().unwrap() {
                fields += record.len();
            }
            black_box(fields)
        })
    });
    group.finish();
}

fn phone_validation(c: &mut Criterion) {
    let numbers = phones(ROWS);
    let mut group = c.benchmark_group("phone");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("russian_mobile_fast_path", |b| {
        b.iter(|| {
            for n in &numbers {
                black_box(Msisdn::parse(n).unwrap());
            }
        })
    });
    // Decorated numbers of other countries take libphonenumber's parser.
    let foreign: Vec<String> = (0..ROWS)
        .map(|i| format!("+49 151 {:08}", 10_000_000 + i))
        .collect();
    group.bench_function("libphonenumber_path", |b| {
        b.iter(|| {
            for n in &foreign {
                black_box(Msisdn::parse(n).ok());
            }
        })
    });
    group.finish();
}

fn substitution(c: &mut Criterion) {
    let columns: Vec<String> = ["phone", "senddate", "attr1", "attr2", "attr3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let template = Template::compile(
        "Здравствуйте, #attr1# #attr2#! Ваш заказ #attr3# готов к выдаче.",
        &columns,
    );
    let row = ["79031234567", "", "Иван", "Петрович", "123456"];
    let mut group = c.benchmark_group("substitute");
    group.throughput(Throughput::Elements(1));
    group.bench_function("render_into", |b| {
        let mut out = String::new();
        b.iter(|| {
            out.clear();
            template.render_into(|i| row.get(i).copied(), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn zone_lookup(c: &mut Criterion) {
    let registry =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/numbering/DEF-9xx.csv");
    let zones = if registry.exists() {
        NumberZones::from_files(&[registry]).unwrap()
    } else {
        eprintln!("zone bench: no registry extract, libphonenumber prefixes only");
        NumberZones::new(None)
    };
    let numbers: Vec<Msisdn> = phones(ROWS)
        .iter()
        .map(|n| Msisdn::parse(n).unwrap())
        .collect();
    let mut group = c.benchmark_group("zone");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("zone_of", |b| {
        b.iter(|| {
            for n in &numbers {
                black_box(zones.zone_of(n).ok());
            }
        })
    });
    group.finish();
}

fn segment_counting(c: &mut Criterion) {
    let mut group = c.benchmark_group("segments");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [
        (
            "gsm7",
            "Hello Ivan Petrovich! Your order 123456 is ready for pickup.",
        ),
        (
            "ucs2",
            "Здравствуйте, Иван Петрович! Ваш заказ 123456 готов к выдаче.",
        ),
    ] {
        group.bench_function(name, |b| b.iter(|| black_box(segments::count(text))));
    }
    group.finish();
}

fn message(i: usize, phone: &str) -> Message {
    let text = format!("Здравствуйте, Иван Петрович! Ваш заказ {i} готов к выдаче.");
    let (encoding, segments) = segments::count(&text);
    Message {
        batch: "guest_20261123070000".into(),
        line: i as u64 + 2,
        phone: Msisdn::parse(phone).unwrap(),
        sender: Sender::parse("TESTSMS").unwrap(),
        text,
        encoding,
        segments,
        send_at: Utc.with_ymd_and_hms(2030, 6, 1, 7, 0, 0).unwrap(),
        expires_at: Utc.with_ymd_and_hms(2030, 6, 2, 7, 0, 0).unwrap(),
        timezone: chrono_tz::Europe::Moscow,
    }
}

fn queue_insert(c: &mut Criterion) {
    let outcomes: Vec<RowOutcome> = phones(QUEUE_ROWS)
        .iter()
        .enumerate()
        .map(|(i, p)| RowOutcome::Accepted(message(i, p)))
        .collect();
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(QUEUE_ROWS as u64));
    group.sample_size(10);
    group.bench_function("sqlite_batch_commit", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let queue = SqliteQueue::open(&dir.path().join("queue.db")).unwrap();
                (dir, queue)
            },
            |(dir, mut queue)| {
                let staged = queue
                    .stage("guest", &mut |sink| {
                        for o in &outcomes {
                            sink.row(o).unwrap();
                        }
                        Summary {
                            batch: "guest_20261123070000".into(),
                            status: Status::Accepted,
                            format: None,
                            rows: QUEUE_ROWS as u64,
                            accepted: QUEUE_ROWS as u64,
                            rejected: 0,
                            error: None,
                            received_at: Utc::now(),
                            processed_at: Utc::now(),
                        }
                    })
                    .unwrap();
                black_box(staged.commit().unwrap());
                drop(queue);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    stages,
    csv_parsing,
    phone_validation,
    substitution,
    zone_lookup,
    segment_counting,
    queue_insert
);
criterion_main!(stages);
