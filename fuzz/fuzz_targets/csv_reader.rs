//! The upload reader never panics on any bytes, in either encoding and however they are cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_bulk_import::domain::encoding::TextEncoding;
use roster_bulk_import::domain::reader::{Next, RecordReader};

fuzz_target!(|input: (&[u8], u8, bool)| {
    let (bytes, piece, windows) = input;
    let encoding = if windows {
        TextEncoding::WINDOWS_1252
    } else {
        TextEncoding::UTF_8
    };
    let mut reader = RecordReader::new(encoding, 4096);
    let mut chunks = bytes.chunks(usize::from(piece.max(1)));
    loop {
        match reader.next_record() {
            Ok(Next::Record(_)) => {}
            Ok(Next::NeedInput) => match chunks.next() {
                Some(chunk) => reader.push(chunk),
                None => reader.finish(),
            },
            Ok(Next::End) | Err(_) => break,
        }
    }
});
