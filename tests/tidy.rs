//! Layers point down: the lower modules never name the HTTP layers above
//! them. A tidy test in rust-analyzer's spirit: it reads the source, so the
//! rule survives the next deadline (ARCHITECTURE.md, "Invariants").
#![allow(clippy::unwrap_used)]

use std::{fs, path::Path};

/// Modules below the HTTP layers.
const LOWER: [&str; 6] = ["store", "domain", "policy", "audit", "limiter", "config"];
/// Modules of the HTTP side, which the lower ones must not import.
const UPPER: [&str; 5] = ["app", "layers", "routes", "openapi", "error"];

/// Every top-level module a source text names as `crate::name`, in paths
/// and in grouped imports (`use crate::{a::b, c}`), before its tests.
fn crate_modules_named(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let code: String = code.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut named = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split at commas outside braces.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        named.push(first_segment(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        named.push(first_segment(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            named.push(first_segment(rest));
        }
    }
    named.retain(|name| !name.is_empty());
    named
}

fn first_segment(path: &str) -> String {
    path.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

fn rust_files(path: &Path, files: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), files);
        }
    } else if path.is_file() && path.extension().is_some_and(|ext| ext == "rs") {
        files.push(path.to_owned());
    }
}

#[test]
fn lower_modules_never_import_the_http_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    let mut read = 0;
    for module in LOWER {
        let mut files = Vec::new();
        rust_files(&src.join(module), &mut files);
        rust_files(&src.join(format!("{module}.rs")), &mut files);
        for file in files {
            read += 1;
            let text = fs::read_to_string(&file).unwrap();
            for name in crate_modules_named(&text) {
                if UPPER.contains(&name.as_str()) {
                    offences.push(format!("{} imports crate::{name}", file.display()));
                }
            }
        }
    }
    assert!(read >= LOWER.len(), "read only {read} files: the source layout moved");
    assert!(offences.is_empty(), "layers must point down:\n{}", offences.join("\n"));
}

#[test]
fn the_reader_sees_paths_and_grouped_imports_but_not_comments_or_tests() {
    let text = "use crate::{auth::x, domain::{A, B}, error::ApiError};\n\
                // crate::app in a comment\n\
                fn f() { crate::openapi::date_time(); }\n\
                #[cfg(test)]\nmod tests { use crate::routes; }";
    assert_eq!(crate_modules_named(text), ["auth", "domain", "error", "openapi"]);
}
