//! Every loop in the crate's shaders ends. The runtime builds the crate's bodies without wgpu's
//! loop bounding (the counter it adds to each loop keeps lavapipe from unrolling the loops that
//! index register arrays), and that is only sound while no loop can run forever. So the bodies
//! keep to loops whose end is plain from their header:
//!
//! - no `loop { }` and no `while`: a search that would be a `while` is a `for` with a step
//!   count (a binary search over u32 halves to one within 32 steps);
//! - each `for` steps its variable by `++`, by `+=` a literal, an upper-case `const`/`override`
//!   (positive: workgroup sizes and tile widths) or a `let` of such constants or of
//!   `max(…, 1u)`, by doubling (`<<= 1u`, `x = x << 1u`) or by halving (`x = x / 2u` while
//!   `x > 0u`).
//!
//! The bounds the conditions compare with are element counts of bindings (at most 2^27
//! elements), so an increasing variable never wraps past them.

mod common;
use common::wgsl_files;
use std::path::Path;

/// The text without `//` comments.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        boundary(before) && boundary(after)
    })
}

/// The three clauses of each `for (init; condition; step)` header.
fn for_headers(text: &str) -> Vec<[String; 3]> {
    let mut headers = Vec::new();
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices("for (") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let mut depth = 0;
        let mut clauses = vec![String::new()];
        for c in text[at + 4..].chars() {
            match c {
                '(' => {
                    depth += 1;
                    if depth == 1 {
                        continue;
                    }
                }
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ';' if depth == 1 => {
                    clauses.push(String::new());
                    continue;
                }
                _ => {}
            }
            clauses.last_mut().unwrap().push(c);
        }
        assert_eq!(clauses.len(), 3, "for header at byte {at}: {clauses:?}");
        headers.push([0, 1, 2].map(|i| clauses[i].trim().to_string()));
    }
    headers
}

fn is_constant(term: &str) -> bool {
    let literal = term.trim_end_matches('u');
    (!literal.is_empty() && literal.chars().all(|c| c.is_ascii_digit()) && literal != "0")
        || (term.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && term
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
}

/// Whether `name` is a `let` of positive constants in `text`: a product of constants, or
/// `max(…, 1u)`.
fn is_positive_let(text: &str, name: &str) -> bool {
    let prefix = format!("let {name} = ");
    text.lines().any(|l| {
        let Some(expr) = l.trim().strip_prefix(&prefix) else {
            return false;
        };
        let expr = expr.trim_end_matches(';').trim();
        (expr.starts_with("max(") && expr.ends_with(", 1u)"))
            || expr.split('*').all(|t| is_constant(t.trim()))
    })
}

fn step_ends(text: &str, [_, condition, step]: &[String; 3]) -> bool {
    let var: String = step
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let rest = step[var.len()..].trim();
    if var.is_empty() {
        return false;
    }
    if rest == "++" || rest == "<<= 1u" || rest == format!("= {var} << 1u") {
        return true;
    }
    if rest == format!("= {var} / 2u") {
        return condition == &format!("{var} > 0u");
    }
    if let Some(by) = rest.strip_prefix("+= ") {
        return is_constant(by) || is_positive_let(text, by);
    }
    false
}

#[test]
fn every_shader_loop_ends() {
    let mut files = Vec::new();
    wgsl_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders"),
        &mut files,
    );
    assert!(files.len() > 20, "found only {} shaders", files.len());
    let mut loops = 0;
    let mut bad = Vec::new();
    for path in &files {
        let text = code(&std::fs::read_to_string(path).unwrap());
        let name = path.display();
        if has_word(&text, "while") {
            bad.push(format!("{name}: a while loop"));
        }
        if has_word(&text, "loop") {
            bad.push(format!("{name}: a loop {{ }} statement"));
        }
        for header in for_headers(&text) {
            loops += 1;
            if !step_ends(&text, &header) {
                bad.push(format!("{name}: for ({})", header.join("; ")));
            }
        }
    }
    assert!(loops > 100, "found only {loops} for loops");
    assert!(
        bad.is_empty(),
        "loops whose end the header does not show:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_sees_endless_loops() {
    let text = code("fn f() { loop { } }\nfn g() { var i = 0u; while (i < 4u) { } }");
    assert!(has_word(&text, "loop") && has_word(&text, "while"));
    let endless = "fn h() { for (var i = 0u; i < n; i += params.step) { } }";
    let headers = for_headers(endless);
    assert_eq!(headers.len(), 1);
    assert!(!step_ends(endless, &headers[0]));
    let zero = "for (var i = 0u; i < n; i += 0u) { }";
    assert!(!step_ends(zero, &for_headers(zero)[0]));
    let halving = "for (var s = 64u; s >= 0u; s = s / 2u) { }";
    assert!(!step_ends(halving, &for_headers(halving)[0]));
    let stride = "let stride = max(params.tpr, 1u);\nfor (var n = 0u; n < m; n += stride) { }";
    assert!(step_ends(stride, &for_headers(stride)[0]));
}
