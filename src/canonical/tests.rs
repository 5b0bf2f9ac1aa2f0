use super::*;

#[test]
fn smoke() {
    let out = format("f.yaml", "version: 1\ngroups: []\n").unwrap();
    assert_eq!(out, "version: 1\ngroups: []\n");
}
