//! SMS encoding and segment count (SPEC §5).
//!
//! A text made only of the GSM 03.38 default alphabet (and its extension table,
//! whose characters take two septets) is `gsm7`: 160 septets in one part, 153 per
//! part when concatenated. Anything else is `ucs2`: 70 UTF-16 units in one part,
//! 67 per part. The count is the plain ceiling the spec states.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsEncoding {
    Gsm7,
    Ucs2,
}

impl SmsEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "gsm7",
            SmsEncoding::Ucs2 => "ucs2",
        }
    }
}

/// Septets a character takes in the GSM 7-bit alphabet, `None` if it has none.
fn gsm_septets(c: char) -> Option<usize> {
    match c {
        // Basic table, ASCII part: everything printable except ` $ @ [ \ ] ^ _ { | } ~
        // plus LF and CR; '$', '@' and '_' are in the table at other positions.
        ' '..='#' | '%'..='?' | 'A'..='Z' | 'a'..='z' | '\n' | '\r' | '$' | '@' | '_' => Some(1),
        // Basic table, non-ASCII part.
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        // Extension table: escape + character.
        '\u{c}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

/// Encoding and number of parts for a message text.
pub fn count(text: &str) -> (SmsEncoding, u32) {
    let mut septets = 0usize;
    let mut gsm = true;
    for c in text.chars() {
        match gsm_septets(c) {
            Some(n) => septets += n,
            None => {
                gsm = false;
                break;
            }
        }
    }
    if gsm {
        (SmsEncoding::Gsm7, parts(septets, 160, 153))
    } else {
        let units = text.encode_utf16().count();
        (SmsEncoding::Ucs2, parts(units, 70, 67))
    }
}

fn parts(len: usize, single: usize, multi: usize) -> u32 {
    if len <= single {
        1
    } else {
        len.div_ceil(multi) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SmsEncoding::*;

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(count("a"), (Gsm7, 1));
        assert_eq!(count(&"a".repeat(160)), (Gsm7, 1));
        assert_eq!(count(&"a".repeat(161)), (Gsm7, 2));
        assert_eq!(count(&"a".repeat(306)), (Gsm7, 2));
        assert_eq!(count(&"a".repeat(307)), (Gsm7, 3));
    }

    #[test]
    fn extension_characters_count_twice() {
        assert_eq!(count(&"€".repeat(80)), (Gsm7, 1));
        assert_eq!(count(&format!("{}a", "€".repeat(80))), (Gsm7, 2));
        assert_eq!(count(&"{".repeat(81)), (Gsm7, 2));
    }

    #[test]
    fn ucs2_boundaries() {
        assert_eq!(count(&"ж".repeat(70)), (Ucs2, 1));
        assert_eq!(count(&"ж".repeat(71)), (Ucs2, 2));
        assert_eq!(count(&"ж".repeat(134)), (Ucs2, 2));
        assert_eq!(count(&"ж".repeat(135)), (Ucs2, 3));
    }

    #[test]
    fn one_foreign_character_makes_the_whole_text_ucs2() {
        assert_eq!(count(&format!("{}ж", "a".repeat(100))), (Ucs2, 2));
        // Backtick and the Cyrillic look-alike are not GSM characters.
        assert_eq!(count("`").0, Ucs2);
        assert_eq!(count("с").0, Ucs2);
    }

    #[test]
    fn astral_characters_take_two_utf16_units() {
        assert_eq!(count(&"😀".repeat(35)), (Ucs2, 1));
        assert_eq!(count(&"😀".repeat(36)), (Ucs2, 2));
    }

    #[test]
    fn gsm_specials() {
        for c in "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà".chars()
        {
            assert_eq!(gsm_septets(c), Some(1), "{c}");
        }
        for c in "^{}\\[~]|€".chars() {
            assert_eq!(gsm_septets(c), Some(2), "{c}");
        }
        assert_eq!(gsm_septets('\t'), None);
        assert_eq!(gsm_septets('ç'), None);
    }
}
