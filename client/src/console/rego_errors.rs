//! Where a Rego compile error is. regorus reports
//! `--> <file>:<line>:<col>`, the source line with a caret, then `error: <message>`; the
//! console marks that line.

use serde::Serialize;

/// A compile error with its position (1-based), when the message names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegoError {
    /// Line, 1-based.
    pub line: Option<u32>,
    /// Column, 1-based.
    pub col: Option<u32>,
    /// The message, without the position and the source excerpt.
    pub message: String,
}

/// The first `:<line>:<col>` in `msg` (not followed by another digit).
fn position(msg: &str) -> Option<(u32, u32)> {
    let bytes = msg.as_bytes();
    let number = |start: usize| {
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        (end > start)
            .then(|| msg[start..end].parse::<u32>().ok().map(|n| (n, end)))
            .flatten()
    };
    (0..bytes.len())
        .filter(|&i| bytes[i] == b':')
        .find_map(|i| {
            let (line, j) = number(i + 1)?;
            if bytes.get(j) != Some(&b':') {
                return None;
            }
            let (col, _) = number(j + 1)?;
            Some((line, col))
        })
}

/// Finds regorus's position and message in an error text.
pub fn locate(msg: &str) -> RegoError {
    let (line, col) = position(msg).unzip();
    let message = msg
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("error:"))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| {
            msg.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or(msg)
                .to_string()
        });
    RegoError { line, col, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regorus_positions_are_found() {
        let e = locate("policy does not compile: \n--> policy.rego:4:12\n  |\n4 | x := {\n  |      ^\nerror: expecting `}`");
        assert_eq!((e.line, e.col), (Some(4), Some(12)));
        assert_eq!(e.message, "expecting `}`");
        let e = locate("policy must declare `package policy`");
        assert_eq!((e.line, e.col), (None, None));
        assert_eq!(e.message, "policy must declare `package policy`");
    }

    #[test]
    fn real_regorus_errors_name_the_line() {
        let text = "package policy\n\nallow if {\n    input.x ==\n}\n";
        let err = coffer_policy::PolicyEngine::default()
            .check(text)
            .unwrap_err()
            .to_string();
        let e = locate(&err);
        assert_eq!((e.line, e.col), (Some(5), Some(1)), "{err}");
        assert_eq!(e.message, "expecting expression");
    }
}
