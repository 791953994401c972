//! The README's library example is `examples/readme.rs`, which builds and is
//! run by the integration tests: the two must not drift apart.

#[test]
fn the_readme_example_is_the_example_file() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let section = readme
        .split_once("## In your application")
        .expect("the README's library section")
        .1;
    let block = section
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a rust block in the library section")
        .0;
    let example = include_str!("../examples/readme.rs");
    let code = example
        .split_once("// README: from here\n")
        .expect("the example's marker")
        .1;
    assert_eq!(
        block.trim(),
        code.trim(),
        "README.md's example and crates/gracedown/examples/readme.rs differ"
    );
}
