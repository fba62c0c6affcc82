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
const fn gsm_septets(c: char) -> Option<usize> {
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
    let mut rest = text;
    while let Some(&b) = rest.as_bytes().first() {
        // ASCII (most texts, and the start of most others) by table.
        if b.is_ascii() {
            match ASCII_SEPTETS[usize::from(b)] {
                0 => {
                    gsm = false;
                    break;
                }
                n => septets += usize::from(n),
            }
            rest = &rest[1..];
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        match gsm_septets(c) {
            Some(n) => septets += n,
            None => {
                gsm = false;
                break;
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    if gsm {
        (SmsEncoding::Gsm7, parts(septets, 160, 153))
    } else {
        // UTF-16 units without decoding: one per character (every byte but a
        // continuation byte starts one), two for a 4-byte (astral) character.
        // Counted per 127 bytes in a u8 (at most 254), which vectorises.
        let units: usize = text
            .as_bytes()
            .chunks(127)
            .map(|chunk| {
                let n = chunk.iter().fold(0u8, |n, &b| {
                    n + u8::from((b as i8) >= -0x40) + u8::from(b >= 0xF0)
                });
                usize::from(n)
            })
            .sum();
        (SmsEncoding::Ucs2, parts(units, 70, 67))
    }
}

/// [`gsm_septets`] of each ASCII character, 0 for none.
const ASCII_SEPTETS: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = match gsm_septets(b as u8 as char) {
            Some(n) => n as u8,
            None => 0,
        };
        b += 1;
    }
    table
};

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
    fn the_ascii_table_agrees_with_the_alphabet() {
        for b in 0..128u8 {
            let by_char = gsm_septets(char::from(b)).unwrap_or(0);
            assert_eq!(usize::from(ASCII_SEPTETS[usize::from(b)]), by_char, "{b}");
        }
    }

    #[test]
    fn utf16_units_are_counted_from_bytes() {
        for text in [
            "ж",
            "жa€",
            "😀ж",
            "ab\u{7ff}\u{800}\u{ffff}\u{10000}",
            "\u{10ffff}`",
        ] {
            let expected = text.encode_utf16().count();
            let (encoding, parts) = count(&text.repeat(80));
            assert_eq!(encoding, Ucs2, "{text}");
            assert_eq!(parts, super::parts(expected * 80, 70, 67), "{text}");
        }
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
