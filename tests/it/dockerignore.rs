//! The build context swap sends for `--build` holds exactly what
//! `docker build` would send: the same `.dockerignore` applied by Docker's
//! own CLI and swap's `context::tar`, compared file by file through an image
//! that copies its whole context.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support;

/// Paths in a tar, directories included, without trailing slashes.
fn tar_paths(bytes: &[u8], under: &str) -> BTreeSet<String> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = BTreeSet::new();
    for entry in archive.entries().expect("read the tar") {
        let entry = entry.expect("a tar entry");
        let path = entry.path().expect("a tar path").display().to_string();
        let path = path.trim_end_matches('/').to_string();
        if let Some(rel) = path.strip_prefix(under) {
            if !rel.is_empty() {
                out.insert(rel.to_string());
            }
        }
    }
    out
}

/// What `docker build` (the classic builder swap uses) puts in the image
/// for `COPY . /ctx/`: the context after Docker's CLI applied
/// `.dockerignore` (and its daemon took the Dockerfile and `.dockerignore`
/// out again where they were excluded).
fn what_docker_sends(dir: &Path) -> BTreeSet<String> {
    let tag = format!("swap-context-test:{}", std::process::id());
    let out = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--quiet", "-t", &tag])
        .arg(dir)
        .output()
        .expect("run docker build");
    assert!(out.status.success(), "docker build: {}", String::from_utf8_lossy(&out.stderr));
    let name = format!("swap-context-test-{}", std::process::id());
    let _ = support::docker_output(&["rm", "-f", &name]);
    support::docker_ok(&["create", "--name", &name, &tag, "/none"]);
    let export = std::process::Command::new("docker").args(["export", &name]).output().expect("docker export");
    let _ = support::docker_output(&["rm", "-f", &name]);
    let _ = support::docker_output(&["rmi", "-f", &tag]);
    assert!(export.status.success(), "docker export: {}", String::from_utf8_lossy(&export.stderr));
    tar_paths(&export.stdout, "ctx/")
}

#[test]
fn the_context_holds_what_docker_build_would_send() {
    support::docker();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ignore = "\
# a comment
*.log
!important.log
**/secret*
build/
!build/keep
docs/[a-c]*.md
weird\\*name
temp?
**/*.tmp
./sub/../cache
 #not-a-comment
empty
";
    std::fs::write(root.join(".dockerignore"), ignore).unwrap();
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /ctx/\n").unwrap();
    for file in [
        "a.log",
        "important.log",
        "x/secret.txt",
        "x/y/secret",
        "secretive",
        "build/out",
        "build/keep",
        "docs/a1.md",
        "docs/c2.md",
        "docs/d1.md",
        "weird*name",
        "weirdXname",
        "temp1",
        "temp12",
        "z/q.tmp",
        "q.tmp",
        "cache/c",
        "#not-a-comment",
        "src/main.rs",
        "src/lib/mod.rs",
    ] {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, file).unwrap();
    }
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("kept-empty")).unwrap();

    let docker = what_docker_sends(root);
    let tar = swap::context::tar(root, "Dockerfile").expect("swap's context tar");
    let swap = tar_paths(&tar, "");
    assert!(swap.contains("Dockerfile") && swap.contains(".dockerignore"), "{swap:?}");
    // An image has the parent directories of every file it holds, sent as
    // entries or not; the two build files are compared on their own above.
    let strip = |s: &BTreeSet<String>| -> BTreeSet<String> {
        let mut all: BTreeSet<String> =
            s.iter().filter(|p| *p != "Dockerfile" && *p != ".dockerignore").cloned().collect();
        for p in all.clone() {
            all.extend(p.match_indices('/').map(|(i, _)| p[..i].to_string()));
        }
        all
    };
    assert_eq!(strip(&swap), strip(&docker), "swap's context (left) differs from docker build's (right)");
    // The comparison means something: some of each kind were left out.
    for gone in ["a.log", "x/secret.txt", "build/out", "docs/a1.md", "weird*name", "temp1", "q.tmp", "cache/c"] {
        assert!(!docker.contains(gone), "docker sent {gone}");
    }
    for kept in ["important.log", "build/keep", "docs/d1.md", "weirdXname", "temp12", "kept-empty", "src/lib/mod.rs"] {
        assert!(docker.contains(kept), "docker left out {kept}: {docker:?}");
    }
}
