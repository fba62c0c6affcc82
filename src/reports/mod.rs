//! What goes back to the customer: [`results`] of each archive (SPEC §7);
//! delivery reports (SPEC §13) will live beside it.

pub mod results;
