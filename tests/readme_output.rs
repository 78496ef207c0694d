//! The output comments in README.md's code blocks (`// prints: ...`) match
//! what that code prints today: each comment is checked against the same
//! call made here, with figures (elapsed times, line and column numbers)
//! and source paths left free, so a change to a message fails this test
//! instead of leaving the README wrong. (The README's code itself runs as
//! doctests: see `ReadmeDoctests` in `src/lib.rs`.)

use std::time::Duration;

const README: &str = include_str!("../README.md");

/// Every `// prints: ` comment in README.md's `rust` blocks, in order.
fn readme_prints() -> Vec<&'static str> {
    let mut prints = Vec::new();
    let mut in_rust = false;
    for line in README.lines() {
        let trimmed = line.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_rust = !in_rust && fence.trim() == "rust";
            continue;
        }
        // (Not a let-chain: the crate's MSRV predates them.)
        if let Some(printed) = trimmed.strip_prefix("// prints: ").filter(|_| in_rust) {
            prints.push(printed);
        }
    }
    prints
}

/// `text` with what legitimately varies run to run made uniform: every run
/// of digits (with decimal points) becomes `#`, and a source path before
/// `:line:col` becomes `<file>`.
fn shape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(c);
        }
    }
    // A path is a run of path characters ending in `.rs` before `:#:#`.
    let mut shaped = String::new();
    let mut rest = out.as_str();
    while let Some(at) = rest.find(".rs:#:#") {
        let (before, after) = rest.split_at(at);
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || "/_-.".contains(c)))
            .map_or(0, |i| i + 1);
        shaped.push_str(&before[..start]);
        shaped.push_str("<file>:#:#");
        rest = &after[".rs:#:#".len()..];
    }
    shaped.push_str(rest);
    shaped
}

/// The README comment that begins with `prefix`; fails if there is none.
fn readme_line(prefix: &str) -> &'static str {
    readme_prints()
        .into_iter()
        .find(|p| p.starts_with(prefix))
        .unwrap_or_else(|| panic!("README.md has no `// prints: {prefix}...` comment"))
}

fn assert_same_shape(readme: &str, printed: &str) {
    assert_eq!(
        shape(readme),
        shape(printed),
        "\nREADME.md says: {readme}\nthe code prints: {printed}"
    );
}

/// What each checked comment starts with: one check below per entry.
const CHECKED: &[&str] = &[
    "offload timed out",
    "block_on was refused",
    "runtime worker",
];

#[test]
fn every_output_comment_in_the_readme_is_checked_here() {
    let prints = readme_prints();
    assert!(prints.len() >= CHECKED.len(), "{prints:?}");
    for printed in prints {
        assert!(
            CHECKED.iter().any(|prefix| printed.starts_with(prefix)),
            "`// prints: {printed}` in README.md has no check in tests/readme_output.rs"
        );
    }
}

#[test]
fn the_install_section_names_the_msrv_cargo_toml_declares() {
    let manifest = include_str!("../Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .expect("Cargo.toml declares a rust-version")
        .trim_matches('"');
    let install = README
        .split("\n## ")
        .find(|section| section.starts_with("Install"))
        .expect("README.md has an Install section");
    assert!(install.contains("cargo add colorseam"), "{install}");
    assert!(
        install.contains(&format!("Rust {msrv} ")),
        "the Install section does not say `Rust {msrv} ` (Cargo.toml's rust-version):\n{install}"
    );
}

#[test]
fn the_shape_leaves_figures_and_paths_free_and_nothing_else() {
    assert_eq!(
        shape("after 50.4ms (called at src/main.rs:9:15)"),
        shape("after 3.0ms (called at tests/x_y.rs:120:7)")
    );
    assert_ne!(shape("after 50.4ms in pool"), shape("after 50.4s in pool"));
    assert_ne!(shape("worker \"a\""), shape("worker \"b\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_offload_timeout_snippet_prints_what_the_readme_says() {
    // As in the README: the default pool, a hung call, a 50 ms deadline.
    let err = colorseam::offload_timeout(
        || std::thread::sleep(Duration::from_secs(2)),
        Duration::from_millis(50),
    )
    .await
    .unwrap_err();
    assert_same_shape(readme_line("offload timed out"), &err.to_string());
}

#[test]
fn the_block_on_snippet_prints_what_the_readme_says() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(async { colorseam::block_on(async { 1 }) })
        .unwrap_err();
    assert_same_shape(readme_line("block_on was refused"), &err.to_string());
}

#[cfg(target_os = "linux")]
#[test]
fn the_watchdog_snippet_prints_what_the_readme_says() {
    use colorseam::detect::{StallState, Watchdog, instrument};
    use std::sync::{Arc, Mutex};

    let first = Arc::new(Mutex::new(None));
    let seen = first.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let watchdog = Watchdog::builder()
        .threshold(Duration::from_millis(100))
        .on_report(move |report| {
            let mut first = seen.lock().unwrap();
            if first.is_none() && report.state == StallState::Ongoing {
                *first = Some(report.to_string());
            }
        })
        .install(rt.handle())
        .unwrap();
    rt.block_on(async {
        tokio::spawn(instrument(
            async { std::thread::sleep(Duration::from_millis(250)) },
            "export",
        ))
        .await
        .unwrap();
    });
    drop(watchdog);
    let printed = first
        .lock()
        .unwrap()
        .clone()
        .expect("the stall was reported");
    assert_same_shape(readme_line("runtime worker"), &printed);
}
