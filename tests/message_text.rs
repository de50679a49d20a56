//! Message texts in the sources: a `\` line continuation that lost its backslash leaves the next
//! line's indentation inside the string ("every table is              loaded in full").

use std::path::Path;

/// String literals on one line of Rust, roughly: text between unescaped double quotes.
fn literals(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (c, start, escaped) {
            ('\\', Some(_), false) => escaped = true,
            ('"', None, _) => start = Some(i + 1),
            ('"', Some(s), false) => {
                out.push(&line[s..i]);
                start = None;
            }
            _ => escaped = false,
        }
    }
    out
}

fn scan(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("source folder") {
        let path = entry.expect("source entry").path();
        if path.is_dir() {
            scan(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source file");
            for (number, line) in text.lines().enumerate() {
                let gap = literals(line).into_iter().any(|literal| {
                    // A word, six or more spaces, a word; aligned columns after a colon are fine.
                    literal.match_indices("      ").any(|(at, _)| {
                        let before = literal[..at].chars().next_back();
                        let after = literal[at..].trim_start().chars().next();
                        matches!(before, Some(c) if c.is_alphanumeric() || matches!(c, ';' | ',' | '(' | ')'))
                            && after.is_some()
                    })
                });
                if gap {
                    found.push(format!("{}:{}", path.display(), number + 1));
                }
            }
        }
    }
}

#[test]
fn no_string_literal_holds_a_lost_line_continuation() {
    let mut found = Vec::new();
    scan(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(found.is_empty(), "gaps inside messages at {found:?}");
}
