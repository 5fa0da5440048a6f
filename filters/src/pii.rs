//! PII scrubbing for the conversation block's `scrubPII` (inputs before
//! they reach the model, answers before they reach the app). The kinds
//! and placeholders are daprd's scrubber's: e-mail addresses
//! `<EMAIL_ADDRESS>`, phone numbers `<PHONE_NUMBER>`, IPv4/IPv6 addresses
//! `<IP>`, credit-card numbers `<CREDIT_CARD>`, US social security numbers
//! `<US_SSN>`, street addresses `<STREET_ADDRESS>`, ZIP codes `<ZIP_CODE>`,
//! PO boxes `<PO_BOX>`, ISBNs `<ISBN>`, MAC addresses `<MAC_ADDRESS>` and
//! IBANs `<IBAN>`; text inside a URL with a scheme or a git repository
//! address is left alone. Overlapping finds become one placeholder (the
//! earliest, longest find's), so no piece of a number leaks beside it.

use std::sync::LazyLock;

use regex::Regex;

struct Kind {
    placeholder: &'static str,
    re: Regex,
}

fn kind(placeholder: &'static str, pattern: &str) -> Kind {
    Kind {
        placeholder,
        re: Regex::new(pattern).expect("static PII pattern"),
    }
}

/// In priority order: when two kinds find the same span, the first names it.
static KINDS: LazyLock<Vec<Kind>> = LazyLock::new(|| {
    vec![
        kind(
            "<EMAIL_ADDRESS>",
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+",
        ),
        kind(
            "<CREDIT_CARD>",
            r"\b(?:[0-9]{4}[ \-]?){3}[0-9]{4}\b|\b[0-9]{4}[ \-]?[0-9]{6}[ \-]?[0-9]{5}\b|\b[0-9]{15,16}\b",
        ),
        kind("<US_SSN>", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"),
        kind(
            "<MAC_ADDRESS>",
            r"\b[0-9A-Fa-f]{2}(?:[:\-][0-9A-Fa-f]{2}){5}\b",
        ),
        kind(
            "<IP>",
            r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\b|\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?|::1\b",
        ),
        kind(
            "<ISBN>",
            r"(?i)\bISBN(?:-1[03])?:?\s*(?:[0-9][\- ]?){9,12}[0-9X]\b|\b97[89]-[0-9]{1,5}-[0-9]{1,7}-[0-9]{1,7}-[0-9]\b",
        ),
        kind(
            "<IBAN>",
            r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        ),
        kind(
            "<PHONE_NUMBER>",
            r"(?i)(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{2,4}\)[ .\-]?|\b[0-9]{2,4}[ .\-])[0-9]{3,4}[ .\-]?[0-9]{3,4}\b(?:\s*(?:#|x|ext\.?|extension)\s*[0-9]+)?|\+[0-9]{7,15}\b",
        ),
        kind("<PO_BOX>", r"(?i)\bP\.?\s?O\.?\s?Box\s+[0-9]+\b"),
        kind(
            "<STREET_ADDRESS>",
            r"(?i)\b[0-9]{1,5}(?:\s+[A-Za-z0-9.']+){1,4}?\s+(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|square|sq|highway|hwy|parkway|pkwy|circle|cir|trail|trl|terrace)\b\.?",
        ),
        kind("<ZIP_CODE>", r"\b[0-9]{5}(?:-[0-9]{4})?\b"),
    ]
});

/// Spans never scrubbed: URLs with a scheme and git repository addresses.
static KEPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\bhttps?://[^\s<>"']+|\bgit@[\w.\-]+:[\w./~\-]+\.git\b|\b(?:git|ssh)://[^\s<>"']+"#,
    )
    .expect("static pattern")
});

/// `text` with every PII find replaced by its kind's placeholder.
pub fn scrub(text: &str) -> String {
    // Every kind needs a digit, an `@` or a `:`; most text has none.
    if !text
        .bytes()
        .any(|b| b.is_ascii_digit() || b == b'@' || b == b':')
    {
        return text.to_string();
    }
    let mut finds: Vec<(usize, usize, usize)> = Vec::new();
    for (k, kind) in KINDS.iter().enumerate() {
        finds.extend(kind.re.find_iter(text).map(|m| (m.start(), m.end(), k)));
    }
    if finds.is_empty() {
        return text.to_string();
    }
    finds.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut merged: Vec<(usize, usize, usize)> = Vec::with_capacity(finds.len());
    for f in finds {
        match merged.last_mut() {
            Some(last) if f.0 < last.1 => last.1 = last.1.max(f.1),
            _ => merged.push(f),
        }
    }
    let kept: Vec<(usize, usize)> = KEPT.find_iter(text).map(|m| (m.start(), m.end())).collect();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, k) in merged {
        if kept.iter().any(|&(s, e)| start < e && s < end) {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(KINDS[k].placeholder);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn email_addresses() {
        assert_eq!(
            scrub("write to jane.doe+x@mail.example.co.uk today"),
            "write to <EMAIL_ADDRESS> today"
        );
    }

    #[test]
    fn phone_numbers() {
        for p in [
            "555-123-4567",
            "(555) 123-4567",
            "+1 555 123 4567",
            "+919140520809",
            "555.123.4567 ext. 12",
        ] {
            assert_eq!(
                scrub(&format!("call {p} now")),
                "call <PHONE_NUMBER> now",
                "{p}"
            );
        }
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(
            scrub("from 10.0.0.255 and 192.168.1.1"),
            "from <IP> and <IP>"
        );
        assert_eq!(
            scrub("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 and fe80::1ff:fe23"),
            "v6 <IP> and <IP>"
        );
        assert_eq!(scrub("not an IP: 999.1.1.1"), "not an IP: 999.1.1.1");
    }

    #[test]
    fn credit_cards() {
        for c in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111111111111111",
            "3782 822463 10005",
        ] {
            assert_eq!(scrub(&format!("card {c}.")), "card <CREDIT_CARD>.", "{c}");
        }
    }

    #[test]
    fn ssn_zip_po_box_street() {
        assert_eq!(scrub("SSN 078-05-1120"), "SSN <US_SSN>");
        assert_eq!(
            scrub("zip 94103-1234 or 10001"),
            "zip <ZIP_CODE> or <ZIP_CODE>"
        );
        assert_eq!(scrub("P.O. Box 1234"), "<PO_BOX>");
        assert_eq!(
            scrub("I live at 221 Baker Street, London"),
            "I live at <STREET_ADDRESS>, London"
        );
    }

    #[test]
    fn isbn_mac_iban() {
        assert_eq!(scrub("ISBN 978-3-16-148410-0"), "<ISBN>");
        assert_eq!(scrub("nic 00:1A:2b:3c:4D:5e up"), "nic <MAC_ADDRESS> up");
        assert_eq!(scrub("pay DE89 3704 0044 0532 0130 00"), "pay <IBAN>");
        assert_eq!(scrub("pay GB82WEST12345698765432"), "pay <IBAN>");
    }

    #[test]
    fn urls_and_plain_text_are_kept() {
        let t = "see https://10.1.2.3/x?id=12345 and git@github.com:dapr/dapr.git";
        assert_eq!(scrub(t), t);
        assert_eq!(scrub("nothing to see here"), "nothing to see here");
        assert_eq!(scrub(""), "");
    }

    #[test]
    fn several_kinds_in_one_text() {
        assert_eq!(
            scrub("mail a@b.io, call 555-123-4567, host 8.8.8.8"),
            "mail <EMAIL_ADDRESS>, call <PHONE_NUMBER>, host <IP>"
        );
    }
}
