//! README.md's tables, for the tests that check them against the code (the README is part of
//! the crate's source for that reason: see flake.nix).

const README: &str = include_str!("../README.md");

/// The rows of the first table under the heading `## {section}`, below its header, each
/// cell trimmed and without backticks.
pub fn table(section: &str) -> Vec<Vec<String>> {
    let heading = format!("\n## {section}\n");
    let start = README
        .find(&heading)
        .unwrap_or_else(|| panic!("README has no section {section:?}"));
    README[start + heading.len()..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            row.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().replace('`', ""))
                .collect()
        })
        .collect()
}
