//! The build context sent to Docker for `--build`: a tar of the directory,
//! leaving out what `.dockerignore` excludes, by the rules `docker build`
//! applies (its CLI filters the context, not the daemon, so swap must do
//! the same filtering itself or it would send files the user excluded).
//!
//! # The rules, as Docker's pattern matcher has them
//! - One pattern per line; a line whose first character is `#` is a
//!   comment; surrounding space is trimmed; blank lines are skipped.
//! - A leading `!` makes an exception: a path it matches is sent after all.
//!   The last pattern that matches a path decides.
//! - A pattern is cleaned like a path (`./a/../b` is `b`, a trailing `/` goes,
//!   a leading `/` goes) and matches the whole slash-separated path relative
//!   to the context, or one of its parent directories (`build` excludes
//!   `build/out/x`).
//! - `*` matches any run of characters but `/`; `?` one character but `/`;
//!   `[…]` a character class (ranges, `^` negation); `\` escapes the next
//!   character; `**` matches any number of directories, none included, and
//!   a trailing `**` matches everything.
//! - An excluded directory is not walked unless an exception pattern starts
//!   with the directory's path (`!build/keep` keeps `build/keep`; `!*/keep`
//!   does not reach into an excluded directory, as with Docker).
//! - The Dockerfile and `.dockerignore` are always sent, whatever excludes
//!   them: the daemon needs the one, and the CLI sends the other.

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

/// Tars the context directory, `.dockerignore` applied, `dockerfile` (a
/// path relative to the context) always included.
pub fn tar(dir: &Path, dockerfile: &str) -> io::Result<Vec<u8>> {
    let mut patterns = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => parse_ignore(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e),
    };
    for always in [".dockerignore", dockerfile] {
        let always = clean(always);
        if is_ignored(&always, &patterns) {
            patterns.push(Pattern::new(true, &always));
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    add_dir(&mut builder, dir, "", &patterns)?;
    builder.into_inner()
}

fn add_dir(builder: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &str, patterns: &[Pattern]) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let ignored = is_ignored(&path, patterns);
        if entry.file_type()?.is_dir() {
            if !ignored {
                builder.append_dir(&path, root.join(&path))?;
            } else if !patterns.iter().any(|p| p.exception && format!("{}/", p.text).starts_with(&format!("{path}/"))) {
                continue;
            }
            add_dir(builder, root, &path, patterns)?;
        } else if !ignored {
            builder.append_path_with_name(root.join(&path), &path)?;
        }
    }
    Ok(())
}

/// One `.dockerignore` line.
#[derive(Debug, Clone)]
struct Pattern {
    /// A `!` line: what it matches is sent.
    exception: bool,
    /// The cleaned pattern, as written (for the directory-walk rule).
    text: String,
    /// The compiled pattern.
    tokens: Vec<Token>,
}

/// A piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// This character.
    Char(char),
    /// `?`: one character but `/`.
    One,
    /// `*`: any run of characters but `/`.
    Star,
    /// `**` followed by more: any run of whole directories, or none.
    Dirs,
    /// A trailing `**`: anything at all.
    Rest,
    /// `[…]`: ranges (single characters as `(c, c)`), negated or not.
    Class(Vec<(char, char)>, bool),
}

impl Pattern {
    fn new(exception: bool, text: &str) -> Pattern {
        Pattern { exception, text: text.to_string(), tokens: compile(text) }
    }

    /// Whether the pattern matches `path` or one of its parent directories.
    fn hits(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        if matches(&self.tokens, &chars) {
            return true;
        }
        path.match_indices('/').any(|(i, _)| matches(&self.tokens, &chars[..path[..i].chars().count()]))
    }
}

/// Cleans a path the way Go's `filepath.Clean` does, then drops a leading
/// `/` (patterns are relative to the context).
fn clean(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    match (absolute, parts.is_empty()) {
        (true, true) => "/".to_string(),
        (_, true) => ".".to_string(),
        _ => parts.join("/"),
    }
}

/// `.dockerignore` text as patterns, in order.
fn parse_ignore(text: &str) -> Vec<Pattern> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (exception, pattern) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        if pattern.is_empty() {
            continue;
        }
        out.push(Pattern::new(exception, &clean(pattern)));
    }
    out
}

fn is_ignored(path: &str, patterns: &[Pattern]) -> bool {
    let mut ignored = false;
    for p in patterns {
        if p.hits(path) {
            ignored = !p.exception;
        }
    }
    ignored
}

fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                // `**/` is `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                out.push(if i == chars.len() { Token::Rest } else { Token::Dirs });
                continue;
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push(Token::Char(chars[i]));
            }
            '[' => match class(&chars[i + 1..]) {
                Some((token, used)) => {
                    out.push(token);
                    i += 1 + used;
                    continue;
                }
                None => out.push(Token::Char('[')),
            },
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    out
}

/// A character class after its `[`: the token and how many characters it
/// took, its `]` included; `None` if it is not closed.
fn class(chars: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < chars.len() {
        let mut c = chars[i];
        if c == ']' && !first {
            return Some((Token::Class(ranges, negated), i + 1));
        }
        first = false;
        if c == '\\' && i + 1 < chars.len() {
            i += 1;
            c = chars[i];
        }
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|e| *e != ']') {
            ranges.push((c, chars[i + 2]));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
    None
}

/// Whether `tokens` match all of `s`.
fn matches(tokens: &[Token], s: &[char]) -> bool {
    let Some(token) = tokens.first() else { return s.is_empty() };
    let rest = &tokens[1..];
    match token {
        Token::Char(c) => s.first() == Some(c) && matches(rest, &s[1..]),
        Token::One => s.first().is_some_and(|c| *c != '/') && matches(rest, &s[1..]),
        Token::Class(ranges, negated) => {
            s.first().is_some_and(|c| ranges.iter().any(|(a, b)| a <= c && c <= b) != *negated)
                && matches(rest, &s[1..])
        }
        Token::Star => (0..=s.len()).take_while(|&n| n == 0 || s[n - 1] != '/').any(|n| matches(rest, &s[n..])),
        // `(.*/)?`: nothing, or anything that ends with a `/`.
        Token::Dirs => matches(rest, s) || (1..=s.len()).any(|n| s[n - 1] == '/' && matches(rest, &s[n..])),
        Token::Rest => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(ignore: &str, path: &str) -> bool {
        is_ignored(path, &parse_ignore(ignore))
    }

    #[test]
    fn dockerignore_rules() {
        let pats = "# comment\ntarget\n*.log\n!keep.log\n**/secret\n";
        assert!(ignored(pats, "target/x/y"));
        assert!(ignored(pats, "a.log"));
        assert!(!ignored(pats, "keep.log"));
        assert!(ignored(pats, "deep/down/secret"));
        assert!(ignored(pats, "secret"));
        assert!(!ignored(pats, "src/main.rs"));
    }

    #[test]
    fn classes_escapes_and_cleaning() {
        assert!(ignored("docs/[a-c]*.md", "docs/b1.md"));
        assert!(!ignored("docs/[a-c]*.md", "docs/d1.md"));
        assert!(ignored("docs/[^a-c]*.md", "docs/d1.md"));
        assert!(ignored("weird\\*name", "weird*name"));
        assert!(!ignored("weird\\*name", "weirdXname"));
        assert!(ignored("./sub/../cache/", "cache/c"));
        assert!(ignored("/abs", "abs"));
        assert!(!ignored("temp?", "temp12"));
        assert!(ignored("temp?", "temp1"));
        assert!(ignored("*", "a/b"));
        // `*` stops at a slash, but the parent rule still excludes below it.
        assert!(ignored("a*", "ab/c"));
        assert!(!ignored("*/c", "c"));
        // `**` in front of a name that does not start a segment.
        assert!(!ignored("**.go", "a.go"));
        assert!(ignored("**/*.go", "a.go"));
        assert!(ignored("x/**", "x/y/z"));
        // The last match decides, exceptions included.
        assert!(ignored("*.log\n!*.log\n*.log", "a.log"));
        // `#` is a comment only in the first column.
        assert!(ignored(" #notcomment", "#notcomment"));
    }

    #[test]
    fn tar_leaves_out_ignored_files_but_never_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.secret\nDockerfile\n.dockerignore\n").unwrap();
        std::fs::write(dir.path().join("x.secret"), "pw").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/app"), "bin").unwrap();
        let bytes = tar(dir.path(), "Dockerfile").unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        names.sort();
        assert_eq!(names, vec![".dockerignore", "Dockerfile", "sub", "sub/app"]);
    }
}
