//! JSON text written by hand where it is hot (log lines, problem bodies),
//! with serde_json doing any escaping, so the bytes are serde_json's.

/// `value` as a JSON string. Most values need no escaping; those are
/// copied as they are (serde_json's escaper goes byte by byte through its
/// formatter), the others go through serde_json.
pub fn write_str(out: &mut Vec<u8>, value: &str) {
    // Without short-circuiting, so that the compiler checks many bytes at once.
    let plain = !value
        .bytes()
        .fold(false, |special, byte| special | (byte < 0x20) | (byte == b'"') | (byte == b'\\') | (byte == 0x7f));
    if plain {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::write_str;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in
            ["", "plain", "quote \" and \\ slash", "new\nline\ttab\u{1}", "del \u{7f}", "ünïcødé ✓", "</script>"]
        {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }
}
