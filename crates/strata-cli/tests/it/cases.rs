//! Data-driven error cases: each folder under `tests/cases/` is a project and
//! an `expected` file whose first line is the exit code of `strata validate`
//! and whose other lines must each appear in its output.

use crate::support::{cases_dir, strata_in};

#[test]
fn every_case_gives_its_located_errors() {
    let mut ran = 0;
    let mut entries: Vec<_> = std::fs::read_dir(cases_dir())
        .expect("cases")
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let dir = entry.path();
        let expected = std::fs::read_to_string(dir.join("expected")).expect("expected file");
        let mut lines = expected.lines();
        let code: i32 = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("exit code on line 1");
        let out = strata_in(&dir, &["validate"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "case {}: wrong exit code\n{text}",
            dir.display()
        );
        for want in lines.filter(|l| !l.trim().is_empty()) {
            assert!(
                text.contains(want),
                "case {}: missing `{want}` in\n{text}",
                dir.display()
            );
        }
        ran += 1;
    }
    assert!(ran >= 6, "expected at least 6 cases, ran {ran}");
}
