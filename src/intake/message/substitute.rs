//! Placeholder substitution (SPEC §3.1, §5).
//!
//! `#name#` with `name` = `[A-Za-z_][A-Za-z0-9_]*` names a contacts.csv column,
//! case-insensitively. A column that does not exist, or an empty value, becomes the
//! empty string; anything else containing `#` is literal text. The template is
//! compiled once against the contacts header, so rendering a row is only copying,
//! and values are inserted verbatim (never re-expanded).

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// Index of the contacts column, `None` when no column has that name.
    Field(Option<usize>),
}

#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Template {
    /// Compiles `message` against the (already lower-cased) contacts column names.
    pub fn compile(message: &str, columns: &[String]) -> Template {
        let bytes = message.as_bytes();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        let mut lit_start = 0;
        while i < bytes.len() {
            if bytes[i] == b'#'
                && let Some(end) = placeholder_end(bytes, i)
            {
                literal.push_str(&message[lit_start..i]);
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                let name = message[i + 1..end].to_ascii_lowercase();
                parts.push(Part::Field(columns.iter().position(|c| *c == name)));
                i = end + 1;
                lit_start = i;
                continue;
            }
            i += 1;
        }
        literal.push_str(&message[lit_start..]);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Template { parts }
    }

    /// Renders the template for one contacts row into `out` (cleared first).
    pub fn render_into<'a>(&self, field: impl Fn(usize) -> Option<&'a str>, out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(Some(i)) => out.push_str(field(*i).unwrap_or("")),
                Part::Field(None) => {}
            }
        }
    }

    pub fn render<'a>(&self, field: impl Fn(usize) -> Option<&'a str>) -> String {
        let mut out = String::new();
        self.render_into(field, &mut out);
        out
    }
}

/// If a placeholder starts at `bytes[start] == b'#'`, the index of its closing `#`.
fn placeholder_end(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start + 1)?;
    if !is_name_start(first) {
        return None;
    }
    let mut j = start + 2;
    while j < bytes.len() && is_name_char(bytes[j]) {
        j += 1;
    }
    (bytes.get(j) == Some(&b'#')).then_some(j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_ascii_lowercase()).collect()
    }

    fn render(message: &str, names: &[&str], values: &[&str]) -> String {
        Template::compile(message, &cols(names)).render(|i| values.get(i).copied())
    }

    #[test]
    fn the_source_document_example() {
        assert_eq!(
            render(
                "Уважаемый #attr1# #attr2# #attr3#!",
                &["phone", "attr1", "attr2", "attr3"],
                &["79031234567", "Иван", "Петрович", "Сидоров"]
            ),
            "Уважаемый Иван Петрович Сидоров!"
        );
    }

    #[test]
    fn names_are_case_insensitive_and_any_column_works() {
        assert_eq!(
            render("#NAME# #Phone#", &["phone", "Name"], &["7903", "Ann"]),
            "Ann 7903"
        );
    }

    #[test]
    fn missing_columns_and_values_become_empty() {
        assert_eq!(render("a#nope#b", &["phone"], &["1"]), "ab");
        assert_eq!(render("a#x#b", &["phone", "x"], &["1"]), "ab");
    }

    #[test]
    fn non_placeholders_stay_literal() {
        for literal in [
            "Order #42 ready",
            "#",
            "##",
            "# name #",
            "#1abc#",
            "#a-b#",
            "50% #off",
            "#имя#",
            "a#",
        ] {
            assert_eq!(render(literal, &["phone"], &["1"]), literal);
        }
    }

    #[test]
    fn adjacent_and_overlapping_hashes() {
        assert_eq!(render("##a#", &["a"], &["X"]), "#X");
        assert_eq!(render("#a##a#", &["a"], &["X"]), "XX");
        assert_eq!(render("#a#a#", &["a"], &["X"]), "Xa#");
    }

    #[test]
    fn values_are_not_re_expanded() {
        assert_eq!(render("#a#", &["a", "b"], &["#b#", "B"]), "#b#");
    }

    proptest! {
        #[test]
        fn text_without_hash_is_unchanged(s in "[^#]*") {
            prop_assert_eq!(render(&s, &["a"], &["X"]), s);
        }

        #[test]
        fn any_value_is_inserted_verbatim(v in ".*", pre in "[^#]*", post in "[^#]*") {
            let msg = format!("{pre}#attr1#{post}");
            prop_assert_eq!(render(&msg, &["attr1"], &[v.as_str()]), format!("{pre}{v}{post}"));
        }
    }
}
