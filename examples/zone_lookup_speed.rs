//! Measures registry lookups per second and the registry's load time.
//!
//!     cargo run --release --example zone_lookup_speed -- ../shared/data/numbering/DEF-9xx.csv

use std::time::Instant;

use smsdrop::intake::zone::russia::Registry;

fn main() {
    let files: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    assert!(!files.is_empty(), "usage: zone_lookup_speed REGISTRY.csv…");
    let started = Instant::now();
    let registry = Registry::load(&files).expect("registry");
    println!(
        "loaded {} ranges, {} regions in {:.1} ms",
        registry.len(),
        registry.regions().count(),
        started.elapsed().as_secs_f64() * 1e3
    );
    // A cheap deterministic spread over the whole 9xx block.
    let count = 10_000_000u64;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let started = Instant::now();
    let mut found = 0u64;
    for _ in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let national = 9_000_000_000 + x % 1_000_000_000;
        found += u64::from(registry.lookup(national).is_some());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} lookups in {secs:.3} s: {:.1} M lookups/s ({found} found)",
        count as f64 / secs / 1e6
    );
}
