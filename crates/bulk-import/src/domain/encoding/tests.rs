//! Golden tests of encoding detection.

use super::*;

fn sniff_as(given: Option<&str>, chunks: &[&[u8]]) -> Result<Detected, String> {
    let given = given.map(|label| TextEncoding::from_label(label).unwrap().unwrap());
    let mut sniffer = Sniffer::new(given);
    for chunk in chunks {
        sniffer.feed(chunk);
    }
    sniffer.finish()
}

fn sniff(chunks: &[&[u8]]) -> Result<&'static str, String> {
    sniff_as(None, chunks).map(|detected| detected.encoding.name())
}

/// `text` in `encoding`, as a spreadsheet would save it.
fn encode(text: &str, encoding: &'static Encoding) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding.encode(text);
    assert!(!unmappable, "{text} in {}", encoding.name());
    bytes.into_owned()
}

const POLISH: &str = "First Name,Last Name,Job Title\n\
                      Łukasz,Wróbel,Kierownik działu\n\
                      Agnieszka,Dąbrowska,Główna księgowa\n\
                      Paweł,Wiśniewski,Specjalista ds. kadr i płac\n";
const RUSSIAN: &str = "First Name,Last Name,Job Title\n\
                       Иван,Петров,Менеджер по продажам\n\
                       Ольга,Смирнова,Бухгалтер\n\
                       Сергей,Кузнецов,Инженер\n";

#[test]
fn utf8_split_across_chunks_is_utf8() {
    let text = "Zoë Müller".as_bytes();
    for split in 0..text.len() {
        assert_eq!(
            sniff(&[&text[..split], &text[split..]]),
            Ok("UTF-8"),
            "split at {split}"
        );
    }
}

#[test]
fn windows_1252_is_recognised() {
    assert_eq!(
        sniff(&[b"First Name\nZo\xEB M\xFCller\n"]),
        Ok("windows-1252")
    );
    // Windows-1250 reads these bytes alike: the more common page is named.
    assert_eq!(sniff(&[b"First Name\nRen\xE9\n"]), Ok("windows-1252"));
}

#[test]
fn central_european_and_cyrillic_code_pages_are_detected_however_the_file_is_cut() {
    for (text, encoding) in [
        (POLISH, encoding_rs::WINDOWS_1250),
        (RUSSIAN, encoding_rs::WINDOWS_1251),
    ] {
        let file = encode(text, encoding);
        for piece in [1, 3, 7, 1024] {
            let chunks: Vec<&[u8]> = file.chunks(piece).collect();
            assert_eq!(sniff(&chunks), Ok(encoding.name()), "pieces of {piece}");
        }
    }
}

#[test]
fn an_unsure_guess_names_the_candidates_and_how_each_reads_a_word() {
    let file = encode(
        "First Name,Last Name\nJan,Dąbrowski\n",
        encoding_rs::WINDOWS_1250,
    );
    let error = sniff(&[&file]).unwrap_err();
    assert_eq!(
        error,
        "the file is not UTF-8 (byte 0xB9 on line 2 (offset 26) is not UTF-8), and its \
         encoding is not sure: it may be ISO-8859-2 (reads \"Dšbrowski\") or windows-1250 \
         (reads \"Dąbrowski\"); upload it again naming its encoding (`encoding` in the \
         request, --encoding in roster import upload), or save it as CSV UTF-8"
    );
    let named = sniff_as(Some("Windows-1250"), &[&file]).unwrap();
    assert_eq!(
        named,
        Detected {
            encoding: TextEncoding(encoding_rs::WINDOWS_1250),
            given: true
        }
    );
}

#[test]
fn a_named_encoding_must_fit_every_byte() {
    let error = sniff_as(Some("utf-8"), &[b"a\nb\n\xE8\n"]).unwrap_err();
    assert_eq!(
        error,
        "the file is not UTF-8, the encoding the request names: byte 0xE8 on line 3 \
         (offset 4) is not UTF-8; upload it again naming its encoding, or without one to \
         have it detected"
    );
    let error = sniff_as(Some("cp1250"), &[b"a\n", b"b\x81\n"]).unwrap_err();
    assert!(
        error.contains("byte 0x81 on line 2 (offset 3) is not a character of windows-1250"),
        "{error}"
    );
    let error = sniff_as(Some("shift_jis"), &[b"a\n\x82", b"\x20\n"]).unwrap_err();
    assert!(error.contains("on line 2"), "{error}");
    let error = sniff_as(Some("windows-1251"), &[b"\xEF\xBB\xBFa\n"]).unwrap_err();
    assert!(error.contains("byte-order mark"), "{error}");
    assert!(sniff_as(Some("latin1"), &[b"a\n\xE8\n"]).is_ok());
}

#[test]
fn labels_are_whatwg_labels() {
    assert_eq!(TextEncoding::from_label(" "), Ok(None));
    assert_eq!(
        TextEncoding::from_label("CP1251")
            .unwrap()
            .map(TextEncoding::name),
        Some("windows-1251")
    );
    assert!(
        TextEncoding::from_label("klingon")
            .unwrap_err()
            .starts_with("'klingon' is not an encoding label")
    );
    assert!(
        TextEncoding::from_label("utf-16le")
            .unwrap_err()
            .contains("not a superset of ASCII")
    );
    assert_eq!(
        TextEncoding::parse("Windows-1252"),
        Some(TextEncoding::WINDOWS_1252)
    );
}

#[test]
fn broken_utf8_after_a_bom_says_where() {
    let error = sniff(&[b"\xEF\xBB\xBFa,b\nZo\xEB,c\n"]).unwrap_err();
    assert!(error.contains("byte-order mark"), "{error}");
    assert!(error.contains("byte 0xEB on line 2 (offset 9)"), "{error}");
}

#[test]
fn mixed_encodings_are_refused() {
    let error = sniff(&["Zoë\n".as_bytes(), b"M\xFCller\n"]).unwrap_err();
    assert!(error.contains("mixes encodings"), "{error}");
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn workbooks_binary_and_utf16_are_named() {
    assert!(sniff(&[b"PK\x03\x04rest"]).unwrap_err().contains(".xlsx"));
    assert!(sniff(&[b"\xFF\xFEa\x00"]).unwrap_err().contains("UTF-16"));
    assert!(sniff(&[b"a,b\x00c"]).unwrap_err().contains("binary"));
    // Bytes that Windows-1252 leaves undefined: not it, whatever else they might be.
    let error = sniff(&[b"a\n\x81\x8D\x8F\x90\x98"]).unwrap_err();
    assert!(
        error.contains("its encoding is not sure: it may be IBM866 (reads \"БНПРШ\")"),
        "{error}"
    );
    assert_eq!(sniff(&[]).unwrap_err(), "the file is empty");
}
