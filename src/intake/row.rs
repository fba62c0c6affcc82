//! What the format parsers hand rows to, and what they are given: the
//! [`RowSink`] every row outcome goes to as soon as it is built, the
//! [`Context`] of the archive being read, and the [`Tally`] of rows.
//!
//! Its own module so that the parsers (below) and [`crate::intake::process`]
//! (above, which calls them) both depend on it and not on each other.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::intake::account::{Account, Limits};
use crate::intake::batch::BatchId;
use crate::intake::error::Rejection;
use crate::intake::message::RowOutcome;
use crate::intake::zone::{Fallback, ZoneResolver};

/// Receives row outcomes as they are built.
pub trait RowSink {
    /// An error here aborts the archive with that rejection.
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection>;
}

/// Hands every row to two sinks, the first first.
pub struct Tee<'a>(pub &'a mut dyn RowSink, pub &'a mut dyn RowSink);

impl RowSink for Tee<'_> {
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        self.0.row(outcome)?;
        self.1.row(outcome)
    }
}

/// What the format parsers need besides the archive.
pub struct Context<'a> {
    pub batch: &'a BatchId,
    pub account: &'a Account,
    pub limits: Limits,
    pub zones: &'a dyn ZoneResolver,
    pub now: DateTime<Utc>,
}

/// Row counters, and how often the subscriber zone fell back to the account's.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub fallbacks: BTreeMap<Fallback, u64>,
}

impl Tally {
    pub fn count(&mut self, outcome: &RowOutcome, fallback: Option<Fallback>) {
        self.rows += 1;
        match outcome {
            RowOutcome::Accepted(_) => self.accepted += 1,
            RowOutcome::Rejected { .. } => self.rejected += 1,
        }
        if let Some(f) = fallback {
            *self.fallbacks.entry(f).or_default() += 1;
        }
    }
}
