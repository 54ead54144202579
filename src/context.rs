//! The build context sent to Docker for `--build`: a tar of the directory,
//! leaving out what `.dockerignore` excludes (patterns with `*`, `?`, `**`
//! and `!` exceptions, the last matching pattern winning, as Docker does).

use std::io;
use std::path::Path;

/// Checks a build context before anything changes: a directory holding the
/// Dockerfile.
pub fn validate(dir: &Path, dockerfile: &str) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("build context {} is not a directory", dir.display()));
    }
    if !dir.join(dockerfile).is_file() {
        return Err(format!("build context {} has no {dockerfile}", dir.display()));
    }
    Ok(())
}

/// Tars the context directory.
pub fn tar(dir: &Path) -> io::Result<Vec<u8>> {
    let patterns = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => parse_ignore(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e),
    };
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    add_dir(&mut builder, dir, "", &patterns)?;
    builder.into_inner()
}

fn add_dir(builder: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &str, patterns: &[(bool, String)]) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let ignored = is_ignored(&path, patterns);
        let ft = entry.file_type()?;
        if ft.is_dir() {
            // An ignored directory may still hold an exception (`!dir/keep`).
            if ignored && !patterns.iter().any(|(neg, p)| *neg && p.starts_with(&format!("{path}/"))) {
                continue;
            }
            add_dir(builder, root, &path, patterns)?;
        } else if !ignored {
            builder.append_path_with_name(root.join(&path), &path)?;
        }
    }
    Ok(())
}

/// `.dockerignore` lines as (is exception, cleaned pattern).
fn parse_ignore(text: &str) -> Vec<(bool, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (neg, p) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let p = p.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
            (neg, p.to_string())
        })
        .collect()
}

fn is_ignored(path: &str, patterns: &[(bool, String)]) -> bool {
    let mut ignored = false;
    for (neg, p) in patterns {
        // A pattern matching a parent directory matches everything below it.
        let hit = glob(p, path) || ancestors(path).any(|a| glob(p, a));
        if hit {
            ignored = !neg;
        }
    }
    ignored
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Matches a Docker-style glob against a slash-separated path.
fn glob(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    match_segments(&p, &s)
}

fn match_segments(p: &[&str], s: &[&str]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(&"**"), _) => match_segments(&p[1..], s) || (!s.is_empty() && match_segments(p, &s[1..])),
        (Some(pp), Some(ss)) => match_one(pp.as_bytes(), ss.as_bytes()) && match_segments(&p[1..], &s[1..]),
        _ => false,
    }
}

fn match_one(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => match_one(&p[1..], s) || (!s.is_empty() && match_one(p, &s[1..])),
        (Some(b'?'), Some(_)) => match_one(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => match_one(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let pats = parse_ignore("# comment\ntarget\n*.log\n!keep.log\n**/secret\n");
        assert!(is_ignored("target/x/y", &pats));
        assert!(is_ignored("a.log", &pats));
        assert!(!is_ignored("keep.log", &pats));
        assert!(is_ignored("deep/down/secret", &pats));
        assert!(!is_ignored("src/main.rs", &pats));
    }

    #[test]
    fn tar_leaves_out_ignored_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.secret\n").unwrap();
        std::fs::write(dir.path().join("x.secret"), "pw").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/app"), "bin").unwrap();
        let bytes = tar(dir.path()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        names.sort();
        assert_eq!(names, vec![".dockerignore", "Dockerfile", "sub/app"]);
    }
}
