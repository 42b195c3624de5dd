//! RFC 8785 JSON canonicalisation, enough for runtime data: object members sorted by their
//! UTF-16 code units, no insignificant white space, strings escaped minimally.
//!
//! Written against `serde_json::Value` explicitly (rather than relying on serde_json's map
//! ordering) because another crate in the build may switch serde_json to insertion order.

use serde_json::Value;

/// Returns the canonical serialisation of `value`.
pub fn canonicalize(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &serde_json::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        // ECMAScript formatting for integral floats drops the fraction; others use the
        // shortest round-trip form, which Rust's Display also produces.
        if f.fract() == 0.0 && f.abs() < 1e21 {
            out.push_str(&format!("{}", f as i128));
        } else {
            out.push_str(&format!("{f}"));
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_and_compacts() {
        let v = json!({"b": [1, true, null], "a": {"z": "x\ny", "\u{e9}": 1, "B": 2.0}});
        assert_eq!(
            canonicalize(&v),
            "{\"a\":{\"B\":2,\"z\":\"x\\ny\",\"\u{e9}\":1},\"b\":[1,true,null]}"
        );
    }

    #[test]
    fn utf16_order() {
        // U+1F600 (surrogates D83D..) sorts before U+FB01 in UTF-16, after it in UTF-8.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2});
        assert_eq!(canonicalize(&v), "{\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }
}
