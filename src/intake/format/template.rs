//! Template format (SPEC §3.1): template.csv (one data row: message, sender,
//! validity, senddate, localtime) applied to every row of contacts.csv.
//!
//! template.csv is read first; any fault in it rejects the whole archive. Then
//! contacts.csv is streamed row by row; only row faults are left for the builder.

use chrono::NaiveDateTime;

use crate::intake::archive::{Archive, EntryRef};
use crate::intake::error::rejection_from_io;
use crate::intake::error::{ErrorCode, Rejection, shown};
use crate::intake::format::open_csv;
use crate::intake::message::schedule::parse_senddate;
use crate::intake::message::substitute::Template;
use crate::intake::message::{Builder, RowInput};
use crate::intake::row::{Context, RowSink, Tally};
use crate::intake::sender::Sender;

/// The validated data row of template.csv.
#[derive(Debug)]
pub struct TemplateRow {
    pub message: String,
    pub sender: Sender,
    pub validity_minutes: u32,
    pub senddate: Option<NaiveDateTime>,
    pub localtime: bool,
}

/// Reads and validates template.csv.
pub fn read_template(
    archive: &mut Archive,
    entry: &EntryRef,
    ctx: &Context<'_>,
) -> Result<TemplateRow, Rejection> {
    let file = &entry.name;
    let io = |e| rejection_from_io(e, file);
    let (header, mut records) = open_csv(archive, entry, ctx, "message")?;
    let message_col = header.require("message")?;
    let sender_col = header.require("sourceaddress")?;
    let validity_col = header.find("validity")?;
    let senddate_col = header.find("senddate")?;
    let localtime_col = header.find("localtime")?;

    let bad = |message: String| Rejection::new(ErrorCode::BadTemplate, message);
    let (line, values) = loop {
        match records.next_record().map_err(io)? {
            Some(r) if r.is_blank() => continue,
            Some(r) => break (r.line, r.iter().map(str::to_owned).collect::<Vec<_>>()),
            None => {
                return Err(bad(format!(
                    "{file}: no data row; template.csv takes exactly one row after the header"
                )));
            }
        }
    };
    // Read to the end: a second row is an error, and the end checks the CRC.
    while let Some(r) = records.next_record().map_err(io)? {
        if !r.is_blank() {
            return Err(bad(format!(
                "{file} line {}: a second data row; template.csv takes exactly one",
                r.line
            )));
        }
    }
    let cell = |col: Option<usize>| col.and_then(|i| values.get(i)).map(String::as_str);
    let at = |what: &str| format!("{file} line {line}: {what}");

    let message = cell(Some(message_col)).unwrap_or("");
    if message.trim().is_empty() {
        return Err(bad(at("the message is empty")));
    }
    let sender_text = cell(Some(sender_col)).unwrap_or("").trim();
    let sender = Sender::parse(sender_text).map_err(|why| {
        Rejection::new(
            ErrorCode::InvalidSender,
            at(&format!(
                "invalid sourceaddress {} ({why})",
                shown(sender_text)
            )),
        )
    })?;
    if !ctx.account.allows_sender(&sender) {
        let approved: Vec<&str> = ctx.account.senders.iter().map(Sender::as_str).collect();
        return Err(Rejection::new(
            ErrorCode::SenderNotAllowed,
            at(&format!(
                "sourceaddress {} is not approved for account {} (approved: {}; case matters)",
                shown(sender_text),
                ctx.account.login,
                approved.join(", ")
            )),
        ));
    }
    let validity_minutes = match cell(validity_col).map(str::trim).filter(|s| !s.is_empty()) {
        None => ctx.account.default_validity_minutes,
        Some(s) => parse_validity(s).ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidValidity,
                at(&format!(
                    "invalid validity {}; expected a positive whole number of minutes",
                    shown(s)
                )),
            )
        })?,
    };
    let senddate = match cell(senddate_col).map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_senddate(s).ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidSenddate,
                at(&format!(
                    "invalid senddate {}; use YYYYMMDDThh:mm:ss, YYYY-MM-DDThh:mm:ss or YYYY-MM-DD hh:mm:ss",
                    shown(s)
                )),
            )
        })?),
    };
    let localtime = match cell(localtime_col).map(str::trim).unwrap_or("") {
        "" | "0" => false,
        "1" => true,
        other => {
            return Err(Rejection::new(
                ErrorCode::InvalidLocaltime,
                at(&format!(
                    "invalid localtime {}; expected 1 or 0",
                    shown(other)
                )),
            ));
        }
    };
    Ok(TemplateRow {
        message: message.to_owned(),
        sender,
        validity_minutes,
        senddate,
        localtime,
    })
}

/// A positive whole number of minutes that fits the queue's range.
fn parse_validity(s: &str) -> Option<u32> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|&v| v > 0)
}

/// Streams contacts.csv through the builder into `sink`.
pub fn read_contacts(
    archive: &mut Archive,
    entry: &EntryRef,
    template: TemplateRow,
    ctx: &Context<'_>,
    sink: &mut dyn RowSink,
    tally: &mut Tally,
) -> Result<(), Rejection> {
    let file = &entry.name;
    let io = |e| rejection_from_io(e, file);
    let (header, mut records) = open_csv(archive, entry, ctx, "phone")?;
    let phone_col = header.require("phone")?;
    let senddate_col = header.find("senddate")?;
    let compiled = Template::compile(&template.message, &header.names);
    let builder = Builder {
        batch: ctx.batch.as_str().into(),
        account: ctx.account,
        zones: ctx.zones,
        now: ctx.now,
        sender: template.sender,
        validity_minutes: template.validity_minutes,
        default_senddate: template.senddate,
        localtime: template.localtime,
        file: file.clone(),
    };
    let mut text = String::new();
    while let Some(record) = records.next_record().map_err(io)? {
        if record.is_blank() {
            continue;
        }
        compiled.render_into(|i| record.get(i), &mut text);
        let row = RowInput {
            line: record.line,
            phone: record.get(phone_col).unwrap_or(""),
            senddate: senddate_col.map(|i| record.get(i).unwrap_or("")),
            text: &text,
        };
        let (outcome, fallback) = builder.build(&row);
        tally.count(&outcome, fallback);
        sink.row(&outcome)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_a_positive_whole_number() {
        assert_eq!(parse_validity("180"), Some(180));
        assert_eq!(parse_validity("0180"), Some(180));
        for bad in ["0", "-5", "+5", "1.5", "1e3", "abc", "99999999999", " 5"] {
            assert_eq!(parse_validity(bad), None, "{bad}");
        }
    }
}
